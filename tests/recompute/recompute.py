"""An independent recomputation of the owner-facing numbers straight from the generated source CSVs.

Why it exists: the marts are the only place a KPI is computed, so a join that drops rows or a precedence
rule that hides an exit cannot be caught by tests that read the marts back. This module rebuilds the KPI
table, the funnel and the source scorecard from the export files with polars, from the written definitions
(docs/architecture.md, docs/interfaces.md, dbt_project/seeds/kpi_definitions.csv and issue 13), never from the
dbt SQL or the marts. Rows are cleaned by the contracts (ingestion/contracts/*.yml) read here directly: a row
that breaks a rule is dropped, and the latest version of a natural key wins (event time, then later line).

Money is kept in integer cents so "to the cent" comparisons are exact.

The generated practices send one source system (native CSVs), so the rules that only act across systems or on
standard files have nothing to recompute here: which system's money of a claim counts (per claim, kind of money and
payer: int_remittances_linked), an 835 reversal of a denial (it counts only what cancels money the denial landed),
and a claim sent several times in one 837P / FHIR file (the latest version only). They are tested built, night by
night, in tests/dbt/test_billing_money_sources.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "ingestion" / "contracts"
ATTENDED = "completed"
OUTCOMES = ("completed", "no_show", "cancelled", "late_cancelled")
PAYMENTS = ("payer_payment", "patient_payment")
SELF_DISCHARGE_DAYS = 30  # docs/interfaces.md: no visit and no future appointment for 30 days
FADING_DAYS = 90


# --- contract cleaning --------------------------------------------------------------------------------------


@cache
def contract(source: str) -> dict:
    return yaml.safe_load((CONTRACTS / f"{source}.yml").read_text())


def _bound(value, typ: str):
    """A contract bound as a python value (relative `today+Nd` bounds resolve against today)."""
    if isinstance(value, str) and value.startswith("today"):
        m = re.match(r"^today([+-]\d+)d$", value)
        d = date.today() + timedelta(days=int(m.group(1)))
        return d if typ == "date" else datetime.combine(d, datetime.max.time())
    if typ == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if typ == "timestamp" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if typ == "timestamp" and isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    return value


def _typed(col: str, typ: str) -> pl.Expr:
    c = pl.col(col)
    if typ == "date":
        return c.str.strptime(pl.Date, "%Y-%m-%d", strict=False)
    if typ == "timestamp":
        return c.str.replace("T", " ").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False)
    if typ == "integer":
        return pl.when(c.str.contains(r"^[+-]?\d+$")).then(c.cast(pl.Int64, strict=False))
    if typ == "decimal":
        return c.cast(pl.Float64, strict=False)
    if typ == "boolean":
        return pl.when(c.str.to_lowercase() == "true").then(True).when(c.str.to_lowercase() == "false").then(False)
    return c


def load_source(folder: Path, source: str) -> pl.DataFrame:
    """The valid, typed, current rows of one source file (decimals whose column ends in _usd become cents)."""
    spec = contract(source)
    cols = spec["columns"]
    raw = pl.read_csv(folder / f"{source}.csv", infer_schema=False).with_row_index("_line")
    raw = raw.with_columns(
        [
            pl.when(pl.col(c).str.strip_chars() == "").then(None).otherwise(pl.col(c)).alias(c)
            for c in cols
            if c in raw.columns
        ]
    )
    raw = raw.with_columns([pl.lit(None, dtype=pl.String).alias(c) for c in cols if c not in raw.columns])
    typed = raw.with_columns([_typed(c, s["type"]).alias(f"_t_{c}") for c, s in cols.items()])
    bad = pl.lit(False)
    for c, s in cols.items():
        t, text = pl.col(f"_t_{c}"), pl.col(c)
        if s.get("required"):
            bad = bad | text.is_null()
        bad = bad | (text.is_not_null() & t.is_null())
        if "accepted" in s:
            bad = bad | (text.is_not_null() & ~text.is_in([str(a) for a in s["accepted"]]))
        if "pattern" in s:
            bad = bad | (text.is_not_null() & ~text.str.contains(f"^(?:{s['pattern'].strip('^$')})$"))
        # a code-list miss (`codes`) is a warning: the row lands (ingestion/validation.py)
        for key, op in (("min", "lt"), ("max", "gt")):
            if key in s:
                b = _bound(s[key], s["type"])
                bad = bad | getattr(t, op)(pl.lit(b)).fill_null(False)
    good = typed.filter(~bad)
    out = good.select(["_line"] + [pl.col(f"_t_{c}").alias(c) for c in cols])
    money = [c for c, s in cols.items() if s["type"] == "decimal" and c.endswith("_usd")]
    out = out.with_columns([(pl.col(c) * 100).round(0).cast(pl.Int64) for c in money])
    key, ev = spec["natural_key"], spec["event_time"]
    out = out.sort([ev, "_line"], descending=True, nulls_last=True).unique(
        subset=key, keep="first", maintain_order=True
    )
    return out.sort("_line").drop("_line")


SOURCES = (
    "clinics",
    "therapists",
    "referring_physicians",
    "payers",
    "intake_events",
    "marketing_touches",
    "marketing_spend",
    "scheduling_events",
    "documentation_events",
    "charges",
    "claims",
    "remittances",
)


def load_practice(folder: Path) -> dict[str, pl.DataFrame]:
    return {s: load_source(Path(folder), s) for s in SOURCES}


# --- helpers ------------------------------------------------------------------------------------------------


def business_days(start: pl.Expr, end: pl.Expr) -> pl.Expr:
    """Mon-Fri days after `start`'s day up to and including `end`'s day; negative when `end` is earlier (an
    evaluation dated before the referral's receipt counts the business days back, as the mart does)."""
    s, e = start.dt.date() + pl.duration(days=1), end.dt.date() + pl.duration(days=1)
    return pl.when(e >= s).then(pl.business_day_count(s, e)).otherwise(-pl.business_day_count(e, s))


GRAINS = {"day": "1d", "week": "1w", "month": "1mo"}  # weeks start on Monday


def period(e: pl.Expr, grain: str) -> pl.Expr:
    """The first day of the day / week / month a timestamp or date falls in."""
    return e.cast(pl.Date).dt.truncate(GRAINS[grain])


# --- the practice model -------------------------------------------------------------------------------------


@dataclass
class Practice:
    as_of: datetime
    src: dict[str, pl.DataFrame]
    appointments: pl.DataFrame
    episodes: pl.DataFrame
    funnel: pl.DataFrame
    payments: pl.DataFrame  # cash events with the clinic they belong to


# the sources whose latest event is the practice's "now": activity, money and notes
EVENT_TIMES = {
    "intake_events": "event_at",
    "scheduling_events": "event_at",
    "charges": "posted_at",
    "claims": "submitted_at",
    "remittances": "event_at",
    "documentation_events": "created_at",
}


ACTIVITY_SOURCES = ("intake_events", "scheduling_events")


def as_of_of(src: dict[str, pl.DataFrame]) -> datetime:
    """docs/architecture.md "Now in a warehouse": the latest intake or scheduling event, or the latest charge,
    claim, remittance or note when that falls on a later day (authorizations and marketing run on other systems'
    clocks and do not move it). The build also keeps a money or note event from making "now" later than the newest
    file's load time; a generated practice's events are all in the past, so that cap never binds here."""
    latest = {s: t for s, col in EVENT_TIMES.items() if (t := src[s][col].max()) is not None}
    activity = max(latest[s] for s in ACTIVITY_SOURCES)
    money = max((t for s, t in latest.items() if s not in ACTIVITY_SOURCES), default=None)
    return money if money is not None and money.date() > activity.date() else activity


def local_to_utc(ts: datetime | None, zone: str | None) -> datetime | None:
    """A clinic's wall-clock time as the UTC wall clock (dbt macro local_to_utc): a repeated hour when clocks fall
    back reads as its first occurrence (fold 0), a skipped one as if the clock had not moved yet; an unknown or
    missing zone leaves the time as it is."""
    if ts is None or not zone:
        return ts
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return ts
    return ts.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def elapsed_hours(start: str, end: str, zone: str) -> pl.Expr:
    """Hours elapsed between two wall-clock columns of the clinic in `zone` (a DST change counts as it happened)."""

    def hours(row: dict) -> float | None:
        a, b = local_to_utc(row["a"], row["z"]), local_to_utc(row["b"], row["z"])
        return None if a is None or b is None else (b - a).total_seconds() / 3600.0

    return pl.struct(a=pl.col(start), b=pl.col(end), z=pl.col(zone)).map_elements(hours, return_dtype=pl.Float64)


def referral_owners(src: dict[str, pl.DataFrame], appts: pl.DataFrame) -> pl.DataFrame:
    """One episode, one owning referral (docs/architecture.md): a referral's episode is its first booking's; the
    owner is the referral of the episode's attended initial evaluation (the earliest), else of its earliest
    initial-evaluation appointment, else the earliest received (then the lowest id). referral_id, episode_id,
    is_secondary (another referral owns the episode)."""
    ap = appts.filter(pl.col("referral_id").is_not_null())
    first = ap.sort("booked_at").group_by("referral_id").agg(pl.col("episode_id").first())
    ie = src["intake_events"]
    received = ie.group_by("referral_id").agg(
        received_at=pl.coalesce(
            pl.col("event_at").filter(pl.col("event_type") == "received").min(), pl.col("event_at").min()
        )
    )
    evals = (
        ap.join(first, on=["referral_id", "episode_id"])
        .group_by("referral_id", "episode_id")
        .agg(
            evaluated_at=pl.col("scheduled_start")
            .filter((pl.col("visit_type") == "initial_eval") & (pl.col("status") == ATTENDED))
            .min(),
            eval_booked_for=pl.col("scheduled_start").filter(pl.col("visit_type") == "initial_eval").min(),
        )
        .join(received, on="referral_id")
    )
    owners = (
        evals.sort(["evaluated_at", "eval_booked_for", "received_at", "referral_id"], nulls_last=True)
        .group_by("episode_id", maintain_order=True)
        .agg(owner=pl.col("referral_id").first())
    )
    return first.join(owners, on="episode_id", how="left").select(
        "referral_id",
        "episode_id",
        is_secondary=(pl.col("owner").is_not_null() & (pl.col("owner") != pl.col("referral_id"))),
        owner="owner",
    )


def collapse_appointments(sched: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """One row per appointment, by its lifecycle (issue 13 item 5): booked -> rescheduled -> outcome. The
    outcome event decides the status even when a reschedule was logged after it; arrived means completed."""
    s = sched.with_columns(kind=pl.col("event_type").replace({"arrived": "completed"}))
    latest = (
        s.sort(["event_at"])
        .group_by("appointment_id")
        .agg(
            pl.col(
                "episode_id",
                "referral_id",
                "patient_id",
                "clinic_id",
                "therapist_id",
                "visit_type",
                "duration_min",
                "scheduled_start",
            ).last(),
            booked_at=pl.col("event_at").min(),  # the booking, or the earliest event left when it was quarantined
            outcome=pl.col("kind").filter(pl.col("kind").is_in(OUTCOMES)).last(),
        )
    )
    return latest.with_columns(status=pl.col("outcome").fill_null("scheduled")).drop("outcome")


def build_episodes(
    src: dict[str, pl.DataFrame], appts: pl.DataFrame, as_of: datetime, owners: pl.DataFrame
) -> pl.DataFrame:
    notes = src["documentation_events"]
    asof_day = as_of.date()
    ep_of_appt = appts.group_by("episode_id").agg(
        clinic_id=pl.col("clinic_id").first(),
        attended_visits=(pl.col("status") == ATTENDED).sum(),
        first_visit_at=pl.col("scheduled_start").filter(pl.col("status") == ATTENDED).min(),
        last_visit_at=pl.col("scheduled_start").filter(pl.col("status") == ATTENDED).max(),
        eval_at=pl.col("scheduled_start")
        .filter((pl.col("status") == ATTENDED) & (pl.col("visit_type") == "initial_eval"))
        .min(),
        second_visit_at=pl.col("scheduled_start").filter(pl.col("status") == ATTENDED).sort().get(1, null_on_oob=True),
        future=((pl.col("status") == "scheduled") & (pl.col("scheduled_start") > as_of)).sum(),
    )
    plan = (
        notes.filter(pl.col("note_type").is_in(["initial_eval", "re_eval"]) & pl.col("planned_visits").is_not_null())
        .sort(["service_date", "created_at"])
        .group_by("episode_id")
        .agg(planned_visits=pl.col("planned_visits").last())
    )
    ev_note = (
        notes.filter(pl.col("note_type") == "initial_eval")
        .sort("created_at")
        .group_by("episode_id")
        .agg(
            eval_note_at=pl.col("created_at").first(),
            eval_note_signed_at=pl.col("signed_at").first(),
            eval_note_date=pl.col("service_date").first(),
            note_clinic=pl.col("clinic_id").first(),
        )
    )
    summary = (
        notes.filter(pl.col("note_type") == "discharge_summary")
        .sort("created_at")
        .group_by("episode_id")
        .agg(
            summary_at=pl.col("created_at").last(),
            summary_date=pl.col("service_date").last(),
            summary_reason=pl.col("discharge_reason").last(),
        )
    )
    # the episode's referral is its owner: a second referral of the same episode takes none of it
    owner_of = owners.filter(pl.col("owner").is_not_null()).select("episode_id", referral_id="owner").unique()
    e = (
        ep_of_appt.join(plan, on="episode_id", how="full", coalesce=True)
        .join(ev_note, on="episode_id", how="full", coalesce=True)
        .join(summary, on="episode_id", how="left")
        .join(owner_of, on="episode_id", how="left")
    )
    e = e.with_columns(
        clinic_id=pl.coalesce("clinic_id", "note_clinic"),
        attended_visits=pl.col("attended_visits").fill_null(0),
        future=pl.col("future").fill_null(0),
    )
    e = e.filter((pl.col("attended_visits") > 0) | pl.col("eval_note_at").is_not_null())
    idle = (pl.lit(asof_day) - pl.col("last_visit_at").dt.date()).dt.total_days() >= SELF_DISCHARGE_DAYS
    plan_done = pl.col("attended_visits") >= pl.col("planned_visits")
    quiet = idle.fill_null(False) & (pl.col("future") == 0)
    status = (
        pl.when(pl.col("summary_reason").is_not_null() & (pl.col("summary_reason") != "self_discharged"))
        .then(pl.lit("discharged"))
        .when(pl.col("summary_reason") == "self_discharged")
        .then(pl.lit("self_discharged"))
        .when(quiet & plan_done.fill_null(False))
        .then(pl.lit("discharged"))
        .when(quiet)
        .then(pl.lit("self_discharged"))
        .otherwise(pl.lit("active"))
    )
    e = e.with_columns(status=status)
    documented = pl.col("summary_reason").is_not_null()
    e = e.with_columns(
        is_closed=pl.col("status") != "active",
        discharge_date=pl.when(pl.col("status") == "active")
        .then(None)
        .when(documented)
        .then(pl.col("summary_date"))
        .otherwise(pl.col("last_visit_at").dt.date()),
        discharged_at=pl.when(pl.col("status") == "discharged").then(
            pl.when(documented).then(pl.col("summary_at")).otherwise(pl.col("last_visit_at"))
        ),
        eval_date=pl.coalesce(pl.col("eval_at").dt.date(), pl.col("eval_note_date")),
    )
    return e.with_columns(
        plan_completed=pl.col("is_closed") & ((pl.col("status") == "discharged") | plan_done.fill_null(False)),
        early_dropout=pl.col("is_closed") & (pl.col("attended_visits") < 3),
    )


def build_funnel(
    src: dict[str, pl.DataFrame], appts: pl.DataFrame, eps: pl.DataFrame, as_of: datetime, owners: pl.DataFrame
) -> pl.DataFrame:
    ie = src["intake_events"]
    # a referral is any referral id with intake events; its received event carries the source, and when that
    # row was quarantined the referral still counts, received at its earliest intake event
    rec = ie.filter(pl.col("event_type") == "received").select(
        "referral_id", "intake_kind", "source_type", "referring_physician_id", "channel", received_ev="event_at"
    )
    rec = (
        ie.sort("event_at")
        .group_by("referral_id")
        .agg(pl.col("clinic_id").first(), first_ev=pl.col("event_at").min())
        .join(rec, on="referral_id", how="left")
        .with_columns(received_at=pl.coalesce("received_ev", "first_ev"))
        .drop("received_ev", "first_ev")
    )
    agg = ie.group_by("referral_id").agg(
        first_contact_at=pl.col("event_at").filter(pl.col("event_type").is_in(["outreach", "contacted"])).min(),
        reached_at=pl.col("event_at")
        .filter((pl.col("event_type") == "contacted") | (pl.col("outreach_outcome") == "reached"))
        .min(),
    )
    exits = (
        ie.filter(pl.col("event_type").is_in(["declined", "unreachable", "insurance_denied", "lost"]))
        .sort("event_at")
        .group_by("referral_id")
        .agg(
            intake_exit=pl.col("event_type").last(),
            # the reason as a category (int_referrals_pivoted): the free text lower-cased, each run of other
            # characters one underscore ("EVAL no-show" is eval_no_show); only eval_no_show is read below
            intake_reason=pl.col("reason")
            .last()
            .str.to_lowercase()
            .str.replace_all(r"[^a-z0-9]+", "_")
            .str.strip_chars("_"),
            intake_exit_at=pl.col("event_at").last(),
        )
    )
    agg = agg.join(exits, on="referral_id", how="left")
    ap = (
        appts.filter(pl.col("referral_id").is_not_null())
        .group_by("referral_id")
        .agg(
            scheduled_at=pl.col("booked_at").min(),
            last_booked_at=pl.col("booked_at").max(),
            first_attended_at=pl.col("scheduled_start").filter(pl.col("status") == ATTENDED).min(),
            own_eval_at=pl.col("scheduled_start")
            .filter((pl.col("status") == ATTENDED) & (pl.col("visit_type") == "initial_eval"))
            .min(),
            last_eval_status=pl.col("status")
            .filter(pl.col("visit_type") == "initial_eval")
            .sort_by(pl.col("scheduled_start").filter(pl.col("visit_type") == "initial_eval"))
            .last(),
        )
    )
    ep = eps.filter(pl.col("referral_id").is_not_null()).select(
        "referral_id",
        "episode_id",
        "eval_at",
        "eval_note_at",
        "eval_note_signed_at",
        "second_visit_at",
        "discharged_at",
        "status",
        "discharge_date",
        "summary_at",
        "last_visit_at",
        "attended_visits",
    )
    # the episode's stages are its owner's (ep joins on the episode's owning referral); a secondary referral is
    # evaluated only by its own initial evaluation and has no first visit of its own for the 7-day conversion
    secondary = owners.select("referral_id", "is_secondary")
    f = (
        rec.join(agg, on="referral_id", how="left")
        .join(ap, on="referral_id", how="left")
        .join(ep, on="referral_id", how="left")
        .join(secondary, on="referral_id", how="left")
        .with_columns(pl.col("is_secondary").fill_null(False))
        .join(src["clinics"].select("clinic_id", "timezone"), on="clinic_id", how="left")
    )
    # an intake exit followed by a booking is superseded: the patient came back (docs/architecture.md "The
    # funnel's exits"); that booking's cancellation or no-show is then judged as any other
    superseded = (pl.col("last_booked_at") > pl.col("intake_exit_at")).fill_null(False)
    f = f.with_columns(
        [pl.when(superseded).then(None).otherwise(pl.col(c)).alias(c) for c in ("intake_exit", "intake_reason")]
    ).with_columns(intake_exit_at=pl.when(superseded).then(None).otherwise(pl.col("intake_exit_at")))
    f = f.with_columns(
        eval_at=pl.when(pl.col("is_secondary")).then(pl.col("own_eval_at")).otherwise(pl.col("eval_at")),
        first_attended_at=pl.when(pl.col("is_secondary")).then(None).otherwise(pl.col("first_attended_at")),
    )
    evaluated = pl.col("eval_at").is_not_null()
    f = f.with_columns(
        contacted_at=pl.min_horizontal("reached_at", "scheduled_at"),
        evaluated_at=pl.col("eval_at"),
        plan_of_care_at=pl.when(evaluated).then(pl.min_horizontal("eval_note_at", "second_visit_at", "discharged_at")),
        active_at=pl.col("second_visit_at"),
    )
    # exits, in the design's precedence: an evaluated referral can only leave by self-discharge; before the
    # evaluation a missed evaluation is the design's eval_no_show exit (issue 13 item 3), whatever the intake
    # team logged afterwards
    eval_no_show = ~evaluated & (
        (pl.col("last_eval_status") == "no_show").fill_null(False)
        | (pl.col("intake_reason") == "eval_no_show").fill_null(False)
    )
    f = f.with_columns(
        exit_stage=pl.when(evaluated)
        .then(pl.when(pl.col("status") == "self_discharged").then(pl.lit("self_discharged")))
        .when(eval_no_show)
        .then(pl.lit("eval_no_show"))
        .otherwise(pl.col("intake_exit")),
    )
    return f.with_columns(
        hours_to_contact=elapsed_hours("received_at", "first_contact_at", "timezone"),
        business_days_to_eval=business_days(pl.col("received_at"), pl.col("evaluated_at")),
        converted_webpt=pl.col("eval_note_signed_at").is_not_null(),
        converted_7day=(
            (pl.col("first_attended_at").dt.date() - pl.col("received_at").dt.date()).dt.total_days() <= 7
        ).fill_null(False),
        is_evaluated=evaluated,
    )


def build_payments(src: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every money event with the clinic it belongs to: the claim's clinic, else the clinic of the claim's charge
    lines, else 'unattributed' (issue 13 item 1: money never vanishes in a join)."""
    claim_clinic = src["claims"].select("claim_id", claim_clinic="clinic_id", claim_episode="episode_id")
    charge_clinic = (
        src["charges"]
        .group_by("claim_id")
        .agg(charge_clinic=pl.col("clinic_id").first(), charge_episode=pl.col("episode_id").first())
    )
    r = src["remittances"].join(claim_clinic, on="claim_id", how="left").join(charge_clinic, on="claim_id", how="left")
    return r.with_columns(
        clinic_id=pl.coalesce("claim_clinic", "charge_clinic", pl.lit("unattributed")),
        episode_id=pl.coalesce("claim_episode", "charge_episode"),
    )


def practice(folder: Path) -> Practice:
    src = load_practice(folder)
    as_of = as_of_of(src)
    appts = collapse_appointments(src["scheduling_events"], as_of)
    owners = referral_owners(src, appts)
    eps = build_episodes(src, appts, as_of, owners)
    funnel = build_funnel(src, appts, eps, as_of, owners)
    return Practice(as_of=as_of, src=src, appointments=appts, episodes=eps, funnel=funnel, payments=build_payments(src))


# --- the KPI table (day, week, month) ------------------------------------------------------------------------


def _ratio(df: pl.DataFrame, kpi: str, per: pl.Expr, num: pl.Expr, den: pl.Expr) -> pl.DataFrame:
    """Numerator and denominator per clinic and for ALL, per period."""
    d = df.with_columns(period_start=per).filter(pl.col("period_start").is_not_null())
    by = d.group_by("clinic_id", "period_start").agg(numerator=num, denominator=den)
    al = d.group_by("period_start").agg(numerator=num, denominator=den).with_columns(clinic_id=pl.lit("ALL"))
    return pl.concat([by, al.select(by.columns)], how="vertical_relaxed").with_columns(
        kpi=pl.lit(kpi),
        numerator=pl.col("numerator").cast(pl.Float64),
        denominator=pl.col("denominator").cast(pl.Float64),
    )


def kpis(p: Practice, g: str) -> pl.DataFrame:
    """The KPI table at grain `g` (clinic_id, period_start, kpi, numerator, denominator, value); money
    numerators and denominators in dollars."""
    a, e, f, src = p.appointments, p.episodes, p.funnel, p.src
    as_of = p.as_of
    out = []
    resolved = a.filter(pl.col("status").is_in(OUTCOMES) & (pl.col("scheduled_start") <= as_of))
    per = period(pl.col("scheduled_start"), g)
    out.append(_ratio(resolved, "no_show_rate", per, (pl.col("status") == "no_show").sum(), pl.len()))
    out.append(_ratio(resolved, "cancel_no_show_rate", per, (pl.col("status") != ATTENDED).sum(), pl.len()))
    out.append(_ratio(resolved, "arrival_rate", per, (pl.col("status") == ATTENDED).sum(), pl.len()))
    rper = period(pl.col("received_at"), g)
    out.append(_ratio(f, "referral_conversion", rper, pl.col("converted_webpt").sum(), pl.len()))
    out.append(_ratio(f, "conversion_7day", rper, pl.col("converted_7day").sum(), pl.len()))
    out.append(
        _ratio(
            f.filter(pl.col("hours_to_contact").is_not_null()),
            "hours_to_first_contact",
            rper,
            pl.col("hours_to_contact").sum(),
            pl.len(),
        )
    )
    out.append(
        _ratio(
            f.filter(pl.col("evaluated_at").is_not_null()),
            "business_days_to_first_visit",
            rper,
            pl.col("business_days_to_eval").sum(),
            pl.len(),
        )
    )
    closed = e.filter(pl.col("is_closed"))
    dper = period(pl.col("discharge_date"), g)
    out.append(_ratio(closed, "visits_per_discharge", dper, pl.col("attended_visits").sum(), pl.len()))
    out.append(_ratio(closed, "poc_completion_rate", dper, pl.col("plan_completed").sum(), pl.len()))
    # maturity rule (issue 13): only episodes whose outcome is known, closed or past visit 2
    known = pl.col("eval_date").is_not_null() & (pl.col("is_closed") | (pl.col("attended_visits") >= 3))
    out.append(
        _ratio(
            e.filter(known),
            "early_dropout_rate",
            period(pl.col("eval_date"), g),
            pl.col("early_dropout").sum(),
            pl.len(),
        )
    )
    # units per visit: the lines linked to an attended visit, in the numerator and the denominator alike; a line
    # with no appointment id (polars' n_unique would count the null as one more visit) or whose appointment was
    # not attended counts in neither
    attended = a.filter(pl.col("status") == ATTENDED).select("appointment_id")
    ch = src["charges"].filter(~pl.col("cpt_code").str.slice(0, 1).is_in(["G", "L"]))
    ch = ch.join(attended, on="appointment_id", how="semi")  # a null id matches nothing
    out.append(
        _ratio(
            ch,
            "units_per_visit",
            period(pl.col("service_date"), g),
            pl.col("units").sum(),
            pl.col("appointment_id").n_unique(),
        )
    )
    # money: cash basis
    cash = p.payments.filter(pl.col("event_type").is_in(PAYMENTS)).with_columns(
        period_start=period(pl.col("event_at"), g)
    )
    visits = a.filter((pl.col("status") == ATTENDED) & (pl.col("scheduled_start") <= as_of)).with_columns(
        period_start=per
    )
    contractual = p.payments.filter(pl.col("event_type") == "contractual_adjustment").with_columns(
        period_start=period(pl.col("event_at"), g)
    )
    charges = src["claims"].with_columns(period_start=period(pl.col("service_date"), g))
    out.append(_flows("net_revenue_per_visit", [(cash, "amount_usd", 1)], [(visits, None, 1)]))
    out.append(
        _flows(
            "net_collection_rate",
            [(cash, "amount_usd", 1)],
            [(charges, "billed_usd", 1), (contractual, "amount_usd", -1)],
        )
    )
    out.append(denial_rate(p, g))
    out.append(therapist_utilization(p, g))
    if g == "month":  # a monthly KPI only (kpi_definitions.grains)
        out.append(cost_per_new_patient(p, g))
    out.append(days_in_ar(p, g))
    k = pl.concat(out, how="diagonal_relaxed")
    k = k.with_columns(value=pl.when(pl.col("denominator") != 0).then(pl.col("numerator") / pl.col("denominator")))
    return k.select("clinic_id", "period_start", "kpi", "numerator", "denominator", "value")


def _flows(kpi: str, nums: list, dens: list) -> pl.DataFrame:
    """Sum of signed flows (frame, cents column or None for a count, sign) per clinic and period."""

    def total(parts: list) -> pl.DataFrame:
        frames = []
        for df, col, sign in parts:
            amt = (pl.col(col).cast(pl.Float64) / 100.0) if col else pl.lit(1.0)
            frames.append(df.select("clinic_id", "period_start", x=amt * sign))
        d = pl.concat(frames)
        by = d.group_by("clinic_id", "period_start").agg(x=pl.col("x").sum())
        al = d.group_by("period_start").agg(x=pl.col("x").sum()).with_columns(clinic_id=pl.lit("ALL"))
        return pl.concat([by, al.select(by.columns)])

    n, d = total(nums).rename({"x": "numerator"}), total(dens).rename({"x": "denominator"})
    j = n.join(d, on=["clinic_id", "period_start"], how="full", coalesce=True)
    return j.with_columns(
        kpi=pl.lit(kpi),
        numerator=pl.col("numerator").fill_null(0.0).round(2),
        denominator=pl.col("denominator").fill_null(0.0).round(2),
    )


def adjudicated_claims(p: Practice) -> pl.DataFrame:
    """Claims sent to a payer with their submission month and whether they were denied / adjudicated (any payer
    decision: a denial, a payer payment or a contractual adjustment). kpi_definitions.csv: only claims a payer can
    answer are in the cohort, so a self-pay claim (payer_class self_pay: its discount is the practice's own
    contractual adjustment) and a claim naming no payer are left out; a payer missing from the payers file counts."""
    r = (
        p.src["remittances"]
        .group_by("claim_id")
        .agg(
            denied=(pl.col("event_type") == "denial").any(),
            adjudicated=pl.col("event_type").is_in(["denial", "payer_payment", "contractual_adjustment"]).any(),
        )
    )
    self_pay = p.src["payers"].filter(pl.col("payer_class") == "self_pay").select("payer_id")
    return (
        p.src["claims"]
        .filter(pl.col("payer_id").is_not_null())
        .join(self_pay, on="payer_id", how="anti")
        .join(r, on="claim_id", how="left")
        .with_columns(denied=pl.col("denied").fill_null(False), adjudicated=pl.col("adjudicated").fill_null(False))
    )


def denial_rate(p: Practice, g: str) -> pl.DataFrame:
    """Issue 13's maturity rule: denied / adjudicated payer claims, cohort by submission month."""
    c = adjudicated_claims(p).filter(pl.col("adjudicated"))
    return _ratio(c, "denial_rate", period(pl.col("submitted_at"), g), pl.col("denied").sum(), pl.len())


def therapist_utilization(p: Practice, g: str) -> pl.DataFrame:
    """Booked minutes (completed, no-show, late-cancelled) / available minutes: weekly hours spread evenly over
    each therapist's working weekdays while employed, at the home clinic, up to as_of."""
    t = p.src["therapists"]
    first = p.appointments["scheduled_start"].min().date()
    days = pl.DataFrame({"day": pl.date_range(first, p.as_of.date(), "1d", eager=True)}).with_columns(
        wd=pl.col("day").dt.strftime("%a")
    )
    avail = t.join(days, how="cross").filter(
        (pl.col("day") >= pl.col("hired_on"))
        & (pl.col("terminated_on").is_null() | (pl.col("day") <= pl.col("terminated_on")))
        & pl.col("work_days").str.split("|").list.contains(pl.col("wd"))
    )
    avail = avail.with_columns(
        minutes=pl.col("weekly_hours") * 60.0 / pl.col("work_days").str.split("|").list.len(),
        period_start=period(pl.col("day"), g),
    )
    booked = p.appointments.filter(
        pl.col("status").is_in(["completed", "no_show", "late_cancelled"]) & (pl.col("scheduled_start") <= p.as_of)
    ).with_columns(period_start=period(pl.col("scheduled_start"), g), minutes=pl.col("duration_min").cast(pl.Float64))

    def tot(d: pl.DataFrame, name: str) -> pl.DataFrame:
        by = d.group_by("clinic_id", "period_start").agg(pl.col("minutes").sum().alias(name))
        al = d.group_by("period_start").agg(pl.col("minutes").sum().alias(name)).with_columns(clinic_id=pl.lit("ALL"))
        return pl.concat([by, al.select(by.columns)])

    j = tot(booked, "numerator").join(
        tot(avail, "denominator"), on=["clinic_id", "period_start"], how="full", coalesce=True
    )
    return j.with_columns(
        kpi=pl.lit("therapist_utilization"),
        numerator=pl.col("numerator").fill_null(0.0),
        denominator=pl.col("denominator").fill_null(0.0),
    )


def cost_per_new_patient(p: Practice, g: str) -> pl.DataFrame:
    """Marketing spend in the month / marketing-sourced referrals evaluated in the month."""
    spend = p.src["marketing_spend"].with_columns(period_start=pl.col("month"))
    new = p.funnel.filter((pl.col("source_type") == "marketing") & pl.col("evaluated_at").is_not_null()).with_columns(
        period_start=period(pl.col("evaluated_at"), g)
    )
    out = _flows("cost_per_new_patient", [(spend, "spend_usd", 1)], [(new, None, 1)])
    # a month the practice reported no spend for at all: the cost is unknown, not $0
    reported = pl.col("period_start").is_in(spend["period_start"].unique().implode())
    return out.with_columns(numerator=pl.when(reported).then(pl.col("numerator")))


def days_in_ar(p: Practice, g: str) -> pl.DataFrame:
    """Open A/R at the end of each period (or as_of) / average daily charges over the 90 days ending then.
    A/R = billed (claims by service date) - payer payments - contractual adjustments - write-offs - patient
    payments posted by then, over the claims on file (a quarantined claim has no balance to reduce)."""
    claims, pay = p.src["claims"], p.payments
    moves = pay.filter(
        pl.col("claim_clinic").is_not_null()
        & pl.col("event_type").is_in(["payer_payment", "contractual_adjustment", "write_off", "patient_payment"])
    ).select("clinic_id", day=pl.col("event_at").dt.date(), ar=-pl.col("amount_usd"), billed=pl.lit(0, pl.Int64))
    billed = claims.select(
        "clinic_id", day=pl.col("service_date"), ar=pl.col("billed_usd"), billed=pl.col("billed_usd")
    )
    flows = pl.concat([billed, moves])
    flows = pl.concat([flows, flows.with_columns(clinic_id=pl.lit("ALL"))])
    first, last = claims["service_date"].min(), p.as_of.date()
    days = pl.DataFrame({"day": pl.date_range(first - timedelta(days=90), last, "1d", eager=True)})
    daily = flows.filter(pl.col("day") <= last).group_by("clinic_id", "day").agg(pl.col("ar", "billed").sum())
    grid = daily.select("clinic_id").unique().join(days, how="cross").join(daily, on=["clinic_id", "day"], how="left")
    grid = (
        grid.with_columns(pl.col("ar", "billed").fill_null(0))
        .sort("clinic_id", "day")
        .with_columns(
            ar=pl.col("ar").cum_sum().over("clinic_id"),
            billed_90=pl.col("billed").rolling_sum(window_size=90, min_samples=1).over("clinic_id"),
        )
    )
    ends = (
        grid.filter(pl.col("day") >= first)
        .with_columns(period_start=period(pl.col("day"), g))
        .filter(pl.col("day") == pl.col("day").max().over("clinic_id", "period_start"))
    )
    return ends.select(
        "clinic_id",
        "period_start",
        kpi=pl.lit("days_in_ar"),
        numerator=pl.col("ar") / 100.0,
        denominator=pl.col("billed_90") / 100.0 / 90.0,
    )


# --- the funnel and the scorecard ---------------------------------------------------------------------------

STAGES = (
    "received_at",
    "contacted_at",
    "scheduled_at",
    "evaluated_at",
    "plan_of_care_at",
    "active_at",
    "discharged_at",
)


def funnel_counts(f: pl.DataFrame) -> pl.DataFrame:
    """Per clinic: referrals with each stage reached, and referrals per exit."""
    stages = f.group_by("clinic_id").agg([pl.col(s).is_not_null().sum().alias(s) for s in STAGES])
    stages = stages.unpivot(index="clinic_id", variable_name="measure", value_name="n")
    exits = (
        f.group_by("clinic_id", "exit_stage")
        .agg(n=pl.len())
        .select("clinic_id", measure=pl.concat_str([pl.lit("exit:"), pl.col("exit_stage").fill_null("none")]), n="n")
    )
    return pl.concat([stages, exits.with_columns(pl.col("n").cast(stages["n"].dtype))]).sort("clinic_id", "measure")


def source_scorecard(p: Practice) -> pl.DataFrame:
    """One row per source (physician NPI, marketing channel, direct_access): volume, conversion, median
    business days to evaluation, visits per started episode, plan-of-care completion, collected net revenue,
    last referral and 90-day trend."""
    # a referral whose received row was quarantined has no known source: it counts in the funnel, not here
    f = p.funnel.filter(pl.col("source_type").is_not_null()).with_columns(
        source_id=pl.when(pl.col("source_type") == "physician")
        .then(pl.col("referring_physician_id"))
        .when(pl.col("source_type") == "marketing")
        .then(pl.col("channel"))
        .otherwise(pl.lit("direct_access"))
    )
    net = (
        p.payments.filter(pl.col("event_type").is_in(PAYMENTS))
        .group_by("episode_id")
        .agg(net_cents=pl.col("amount_usd").sum())
    )
    e = p.episodes.select("episode_id", "attended_visits", "is_closed", "plan_completed").join(
        net, on="episode_id", how="left"
    )
    f = f.drop("attended_visits").join(e, on="episode_id", how="left")
    asof_day = p.as_of.date()
    age = (pl.lit(asof_day) - pl.col("received_at").dt.date()).dt.total_days()
    has_ep = pl.col("episode_id").is_not_null() & pl.col("attended_visits").is_not_null()
    return (
        f.group_by("source_type", "source_id")
        .agg(
            referrals=pl.len(),
            evaluated=pl.col("is_evaluated").sum(),
            converted=pl.col("converted_webpt").sum(),
            median_business_days_to_eval=pl.col("business_days_to_eval").median(),
            visits_per_episode=pl.col("attended_visits").filter(has_ep).mean(),
            closed_episodes=pl.col("is_closed").fill_null(False).sum(),
            plan_completed=pl.col("plan_completed").fill_null(False).sum(),
            net_revenue_usd=pl.col("net_cents").sum() / 100.0,
            last_referral_date=pl.col("received_at").max().dt.date(),
            referrals_last_90d=(age < FADING_DAYS).sum(),
            referrals_prior_90d=((age >= FADING_DAYS) & (age < 2 * FADING_DAYS)).sum(),
        )
        .with_columns(
            conversion_rate=pl.col("converted") / pl.col("referrals"),
            poc_completion_rate=pl.when(pl.col("closed_episodes") > 0).then(
                pl.col("plan_completed") / pl.col("closed_episodes")
            ),
        )
        .drop("plan_completed")
    )
