"""Point-in-time no-show features, computed from the marts as they were at each appointment's scoring time.

The scoring time of an appointment is 48 hours before its start (when the front desk makes confirmation
calls), or its booking time if it was booked later than that, but always before the start (a slot entered
after it happened is scored a second before its start); for appointments still ahead of `as_of` it is never
later than `as_of`. A feature may only use:

- other appointments of the patient whose outcome was known by the scoring time: slots that had *ended*
  (scheduled_start + duration), and cancels recorded (`status_at`) before it;
- facts fixed at booking: booked_at, the slot (day, hour, length), visit type, clinic;
- facts fixed at intake: payer class (the referral's), referral source type, birth date (-> age band);
- what the evaluation records - the episode's plan of care (planned visits, frequency), its body region, and
  its payer when the referral had none (the mart takes it from a claim) - only once the evaluation note was
  signed. The episode mart lists an episode only after it was evaluated, so any episode field read before
  that would be present for evaluations that happened and missing for those that were missed: the label
  itself. (Reading the body region early made every upcoming initial evaluation look like a past missed
  one, scored 76-88% against 12% observed.)

Deliberately *not* used, although the mart has them: `visit_number`, `lead_time_days` (recomputed here
from booked_at), `reschedule_count` (a reschedule may happen after the scoring time), the episode's
attended visits, status, discharge - all known only later. tests/ml/test_ml_features.py proves it by
scrambling everything after the scoring time and checking the features do not move.

Everything is vectorised: history look-ups are binary searches on (patient, time) keys, not loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LEAD_HOURS = 48
ATTENDED = "completed"
NO_SHOW = "no_show"
CANCELS = ("cancelled", "late_cancelled")
RESOLVED = (ATTENDED, NO_SHOW, *CANCELS)
AGE_BANDS = ("<18", "18-34", "35-49", "50-64", "65-74", "75+")
_AGE_EDGES = [-np.inf, 18, 35, 50, 65, 75, np.inf]
_KEY = np.int64(10**10)  # > seconds between 2000 and 2300, so (entity, time) packs into one int64

NUMERIC = [
    "prior_appts",
    "prior_no_shows",
    "no_shows_last5",
    "prior_no_show_rate",
    "prior_cancels",
    "late_cancels_last5",
    "episode_visits",
    "episode_no_shows",
    "days_since_last_visit",
    "days_since_last_no_show",
    "lead_time_days",
    "hour",
    "duration_min",
    "age",
    "planned_visits",
    "visits_left",
    "frequency_per_week",
    "days_since_referral",
    "reminder_sent",
    "comorbidities",
]
CATEGORICAL = [
    "visit_type",
    "day_of_week",
    "payer_class",
    "age_band",
    "clinic_id",
    "source_type",
    "body_region",
    "sex",
]
FEATURES = NUMERIC + CATEGORICAL
# Columns a practice's export may add: used when present (appointments: reminder_sent, taken as known at the
# scoring time, so send it only if the reminder goes out before then; patients: sex, comorbidities count),
# otherwise empty and dropped before fitting like any feature with no value.
OPTIONAL_APPOINTMENT = ("reminder_sent",)
OPTIONAL_PATIENT = ("sex", "comorbidities")
# What a basic scheduler export has; everything else is optional (missing -> the features it feeds are empty)
BASIC_APPOINTMENT = ("appointment_id", "patient_id", "booked_at", "scheduled_start", "status")
_APPOINTMENT_COLUMNS = (
    *BASIC_APPOINTMENT,
    "episode_id",
    "referral_id",
    "clinic_id",
    "visit_type",
    "duration_min",
    "status_at",
    "is_future",
)


@dataclass(frozen=True)
class MartFrames:
    """The mart tables the no-show model reads (pandas, columns as in docs/interfaces.md)."""

    appointments: pd.DataFrame
    episodes: pd.DataFrame
    referrals: pd.DataFrame
    patients: pd.DataFrame
    as_of: pd.Timestamp


def scoring_times(appts: pd.DataFrame, as_of: pd.Timestamp | None = None, lead_hours: int = LEAD_HOURS) -> pd.Series:
    """When each appointment is scored: start - 48 h, not before booking, always before the slot starts, not after
    `as_of`. A slot entered after it happened (a walk-in typed in later) was scored at its booking and counted its
    own outcome in its history (days since the last visit < 0); a second before the start is the latest moment
    nothing of its own outcome is known."""
    start = pd.to_datetime(appts["scheduled_start"])
    booked = pd.to_datetime(appts["booked_at"])
    t = (start - pd.Timedelta(hours=lead_hours)).where(lambda s: booked.isna() | (s >= booked), booked)
    t = t.where(t < start, start - pd.Timedelta(seconds=1))
    if as_of is not None:
        t = t.where(t <= pd.Timestamp(as_of), pd.Timestamp(as_of))
    return t


def _seconds(ts: pd.Series) -> np.ndarray:
    return ((pd.to_datetime(ts) - pd.Timestamp("2000-01-01")).dt.total_seconds()).to_numpy().astype(np.int64)


class _History:
    """Events of one kind sorted by (entity, time), answering 'how many before t' by binary search."""

    def __init__(self, entity: np.ndarray, times: np.ndarray, flags: dict[str, np.ndarray]):
        keys = entity.astype(np.int64) * _KEY + times
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.times = times[order]
        self.cum = {k: np.concatenate([[0], np.cumsum(v[order].astype(np.int64))]) for k, v in flags.items()}

    def locate(self, entity: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first, end) positions: rows of the entity with time <= t are keys[first:end]."""
        base = entity.astype(np.int64) * _KEY
        return np.searchsorted(self.keys, base, "left"), np.searchsorted(self.keys, base + t, "right")

    def count(self, first: np.ndarray, end: np.ndarray, flag: str, last: int | None = None) -> np.ndarray:
        lo = first if last is None else np.maximum(first, end - last)
        return self.cum[flag][end] - self.cum[flag][lo]

    def last_time(self, first: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Time of the latest row at or before t, NaN when there is none."""
        has = end > first
        out = np.full(len(end), np.nan)
        out[has] = self.times[end[has] - 1]
        return out


def _codes(values: pd.Series, universe: pd.Series) -> np.ndarray:
    cats = pd.Index(pd.unique(universe.astype("string").fillna("<na>")))
    return cats.get_indexer(values.astype("string").fillna("<na>")).astype(np.int64)


def known_at(appts: pd.DataFrame) -> pd.Series:
    """When an appointment's outcome became known: the end of its slot, or the recorded cancel time.

    A cancel is known when it was recorded (`status_at`, often days before the slot); every other
    outcome is taken as known only once the slot has ended, which is never too early.
    """
    end = pd.to_datetime(appts["scheduled_start"]) + pd.to_timedelta(appts["duration_min"].fillna(0), unit="m")
    if "status_at" not in appts:
        return end
    status_at = pd.to_datetime(appts["status_at"])
    early_cancel = appts["status"].isin(CANCELS) & status_at.notna() & (status_at < end)
    return end.where(~early_cancel, status_at)


def age_band(age: pd.Series) -> pd.Series:
    return pd.cut(age, _AGE_EDGES, right=False, labels=list(AGE_BANDS)).astype("string")


def build_features(
    targets: pd.DataFrame, marts: MartFrames, lead_hours: int = LEAD_HOURS, score_at: pd.Series | None = None
) -> pd.DataFrame:
    """One row of features per target appointment (same order), as of its scoring time.

    `targets` are rows of marts.appointments; `marts.appointments` is the full history they are looked
    up against. `score_at` overrides the scoring times (the leakage test pins them).
    """
    appts = _complete(marts.appointments)
    targets = _complete(targets)
    t_at = scoring_times(targets, marts.as_of, lead_hours) if score_at is None else pd.to_datetime(score_at)
    t_sec = _seconds(t_at.reset_index(drop=True))
    start = pd.to_datetime(targets["scheduled_start"]).reset_index(drop=True)
    start_sec = _seconds(start)

    universe = pd.concat([appts["patient_id"], targets["patient_id"]])
    h = appts[appts["status"].isin(RESOLVED)]
    h_end = known_at(h)
    h_pat = _codes(h["patient_id"], universe)
    t_pat = _codes(targets["patient_id"], universe)
    status = h["status"].to_numpy()

    # patient history, kept-or-missed appointments only (cancels are a separate signal)
    kept = np.isin(status, (ATTENDED, NO_SHOW))
    visits = _History(
        h_pat[kept], _seconds(h_end[kept]), {"no_show": status[kept] == NO_SHOW, "one": np.ones(kept.sum(), bool)}
    )
    first, end = visits.locate(t_pat, t_sec)
    prior = visits.count(first, end, "one")
    no_shows = visits.count(first, end, "no_show")
    f = pd.DataFrame(
        {
            "prior_appts": prior,
            "prior_no_shows": no_shows,
            "no_shows_last5": visits.count(first, end, "no_show", last=5),
            "last_k": np.minimum(prior, 5),
        }
    )
    f["prior_no_show_rate"] = np.where(prior > 0, no_shows / np.maximum(prior, 1), np.nan)

    # attended visits only: recency
    att = status == ATTENDED
    attended = _History(h_pat[att], _seconds(h_end[att]), {"one": np.ones(att.sum(), bool)})
    a_first, a_end = attended.locate(t_pat, t_sec)
    last_visit_end = attended.last_time(a_first, a_end)
    f["days_since_last_visit"] = (start_sec - last_visit_end) / 86400.0
    ns = status == NO_SHOW
    missed = _History(h_pat[ns], _seconds(h_end[ns]), {"one": np.ones(ns.sum(), bool)})
    m_first, m_end = missed.locate(t_pat, t_sec)
    f["days_since_last_no_show"] = (start_sec - missed.last_time(m_first, m_end)) / 86400.0

    # cancellations
    canc = np.isin(status, CANCELS)
    cancels = _History(h_pat[canc], _seconds(h_end[canc]), {"one": np.ones(canc.sum(), bool)})
    c_first, c_end = cancels.locate(t_pat, t_sec)
    f["prior_cancels"] = cancels.count(c_first, c_end, "one")
    every = _History(h_pat, _seconds(h_end), {"late": status == "late_cancelled"})
    e_first, e_end = every.locate(t_pat, t_sec)
    f["late_cancels_last5"] = every.count(e_first, e_end, "late", last=5)

    # this episode so far
    ep_universe = pd.concat([appts["episode_id"], targets["episode_id"]])
    h_ep = _codes(h["episode_id"], ep_universe)
    t_ep = _codes(targets["episode_id"], ep_universe)
    episode = _History(
        h_ep[kept], _seconds(h_end[kept]), {"attended": status[kept] == ATTENDED, "no_show": status[kept] == NO_SHOW}
    )
    ep_first, ep_end = episode.locate(t_ep, t_sec)
    f["episode_visits"] = episode.count(ep_first, ep_end, "attended")
    f["episode_no_shows"] = episode.count(ep_first, ep_end, "no_show")
    # an appointment without an episode (a walk-in, an export without episodes) has no episode so far: NaN, not
    # the counts of one big "episode" pooling every episode-less appointment of the practice (null ids share a code)
    no_episode = targets["episode_id"].isna().to_numpy()
    f["episode_visits"] = np.where(no_episode, np.nan, f["episode_visits"].to_numpy(float))
    f["episode_no_shows"] = np.where(no_episode, np.nan, f["episode_no_shows"].to_numpy(float))

    # the slot, fixed at booking
    booked = pd.to_datetime(targets["booked_at"]).reset_index(drop=True)
    f["lead_time_days"] = ((start - booked).dt.total_seconds() / 86400.0).clip(lower=0).to_numpy()
    f["hour"] = (start.dt.hour + start.dt.minute / 60.0).to_numpy()
    f["day_of_week"] = start.dt.day_name().str[:3].to_numpy()
    f["duration_min"] = targets["duration_min"].to_numpy(float)
    f["visit_type"] = targets["visit_type"].astype("string").to_numpy()
    f["clinic_id"] = targets["clinic_id"].astype("string").to_numpy()

    # intake facts and the plan of care once evaluated
    tgt = targets[["episode_id", "referral_id", "patient_id"]].reset_index(drop=True)
    ep_cols = [
        "episode_id",
        "payer_class",
        "body_region",
        "eval_date",
        "eval_note_signed_at",
        "planned_visits",
        "frequency_per_week",
    ]
    ep = marts.episodes.reindex(columns=ep_cols).drop_duplicates("episode_id")
    ref = marts.referrals.reindex(columns=["referral_id", "source_type", "received_at", "payer_class"])
    ref = ref.drop_duplicates("referral_id").rename(columns={"payer_class": "ref_payer_class"})
    pat = marts.patients.reindex(columns=["patient_id", "birth_date", "age_band", *OPTIONAL_PATIENT])
    pat = pat.drop_duplicates("patient_id").rename(columns={"age_band": "given_age_band"})
    ctx = (
        tgt.merge(ep, on="episode_id", how="left")
        .merge(ref, on="referral_id", how="left")
        .merge(pat, on="patient_id", how="left")
    )
    # the plan of care is known once the evaluation note is signed (else the day after the evaluation)
    plan_at = pd.to_datetime(ctx["eval_note_signed_at"]).fillna(pd.to_datetime(ctx["eval_date"]) + pd.Timedelta(days=1))
    planned_known = (plan_at <= pd.to_datetime(t_at.reset_index(drop=True))).to_numpy()
    f["planned_visits"] = ctx["planned_visits"].astype(float).where(planned_known).to_numpy()
    f["frequency_per_week"] = ctx["frequency_per_week"].astype(float).where(planned_known).to_numpy()
    f["visits_left"] = f["planned_visits"] - f["episode_visits"]
    # payer at intake first: the episode's payer may come from a claim filed later, so only after evaluation
    episode_payer = ctx["payer_class"].astype("string").where(planned_known)
    f["payer_class"] = ctx["ref_payer_class"].astype("string").fillna(episode_payer).to_numpy()
    f["body_region"] = ctx["body_region"].astype("string").where(planned_known).to_numpy()
    f["source_type"] = ctx["source_type"].astype("string").to_numpy()
    received = pd.to_datetime(ctx["received_at"])
    f["days_since_referral"] = ((start - received).dt.total_seconds() / 86400.0).to_numpy()
    birth = pd.to_datetime(ctx["birth_date"])
    age = (start - birth).dt.days / 365.25
    f["age"] = age.to_numpy()
    # an export with an age band but no birth date (a basic scheduler) keeps its band
    f["age_band"] = age_band(age).fillna(ctx["given_age_band"].astype("string")).to_numpy()
    f["sex"] = ctx["sex"].astype("string").to_numpy()
    f["comorbidities"] = pd.to_numeric(ctx["comorbidities"], errors="coerce").to_numpy(float)
    f["reminder_sent"] = pd.to_numeric(targets["reminder_sent"].reset_index(drop=True), errors="coerce").to_numpy(float)

    f.insert(0, "appointment_id", targets["appointment_id"].to_numpy())
    f.insert(1, "scoring_at", t_at.reset_index(drop=True).to_numpy())
    return f


def _complete(appts: pd.DataFrame) -> pd.DataFrame:
    """The appointment columns the features read, missing ones added empty (a basic scheduler export has
    only BASIC_APPOINTMENT). Without `is_future`, an appointment with no outcome yet is the future."""
    if all(c in appts for c in (*_APPOINTMENT_COLUMNS, *OPTIONAL_APPOINTMENT)):
        return appts
    out = appts.reindex(columns=list(dict.fromkeys([*appts.columns, *_APPOINTMENT_COLUMNS, *OPTIONAL_APPOINTMENT])))
    if appts.get("is_future") is None:
        out["is_future"] = ~appts["status"].isin(RESOLVED)
    return out


def labelled_targets(appts: pd.DataFrame) -> pd.DataFrame:
    """Past appointments with a known show / no-show outcome: the training population.

    Cancelled appointments are left out: at 48 h a cancel with notice has usually happened already, and a
    cancelled slot is a different problem (the front desk refills it) from a patient who does not come.
    """
    appts = _complete(appts)
    past = ~appts["is_future"].fillna(False).astype(bool)
    return appts[past & appts["status"].isin((ATTENDED, NO_SHOW))].reset_index(drop=True)


def upcoming_targets(appts: pd.DataFrame) -> pd.DataFrame:
    """Appointments still ahead (is_future) and not cancelled: what the front desk can act on."""
    appts = _complete(appts)
    fut = appts["is_future"].fillna(False).astype(bool)
    return appts[fut & ~appts["status"].isin(CANCELS)].reset_index(drop=True)
