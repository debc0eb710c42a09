"""Shared by the leakage tests: rewrite everything the world learnt after a cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import MartFrames, known_at


def scramble_after(marts: MartFrames, cutoff: pd.Timestamp, keep: set[str], seed: int = 1) -> MartFrames:
    """Rewrite everything the world learnt after `cutoff`; rows in `keep` keep their booking facts."""
    rng = np.random.default_rng(seed)
    a = marts.appointments.copy()
    later = (known_at(a) > cutoff).to_numpy()
    # outcomes not yet known at the cutoff: any status at all, recorded any time after the cutoff
    a.loc[later, "status"] = rng.choice(
        ["completed", "no_show", "cancelled", "late_cancelled", "scheduled"], later.sum()
    )
    a.loc[later, "status_at"] = cutoff + pd.to_timedelta(rng.integers(1, 10**6, later.sum()), unit="s")
    # mart columns derived from the whole history: garbage
    a["visit_number"] = rng.integers(1, 40, len(a))
    a["reschedule_count"] = rng.integers(0, 5, len(a))
    a["lead_time_days"] = rng.random(len(a)) * 100
    # appointments booked after the cutoff: moved around, some deleted, plus new ones for the same patients
    booked_later = (a["booked_at"] > cutoff) & ~a["appointment_id"].isin(keep)
    moved = a[booked_later].copy()
    moved["scheduled_start"] = cutoff + pd.to_timedelta(rng.integers(1, 60 * 24 * 20, len(moved)), unit="m")
    moved["status"] = rng.choice(["completed", "no_show"], len(moved))
    extra = moved.assign(
        appointment_id=moved["appointment_id"] + "x",
        booked_at=cutoff + pd.Timedelta(minutes=1),
        scheduled_start=cutoff + pd.Timedelta(hours=1),
        status="no_show",
    )
    a = pd.concat([a[~booked_later], moved.sample(frac=0.5, random_state=seed), extra], ignore_index=True)
    # the plan of care of episodes evaluated after the cutoff
    e = marts.episodes.copy()
    signed = (
        pd.to_datetime(e["eval_note_signed_at"]) if "eval_note_signed_at" in e else pd.Series(pd.NaT, index=e.index)
    )
    plan_at = signed.fillna(pd.to_datetime(e["eval_date"]) + pd.Timedelta(days=1))
    later_eval = (plan_at > cutoff).to_numpy()
    e.loc[later_eval, "planned_visits"] = rng.integers(1, 60, later_eval.sum())
    # what the evaluation note records (body region), and whether an episode row exists at all: the mart
    # lists an episode only once it was evaluated, so a missed evaluation leaves no row
    e.loc[later_eval, "body_region"] = rng.choice(["knee", "lumbar", "shoulder", None], later_eval.sum())
    e.loc[later_eval, "payer_class"] = rng.choice(["medicaid", "self_pay", None], later_eval.sum())
    e = e[~later_eval | (rng.random(len(e)) < 0.5)]
    e["attended_visits"] = rng.integers(0, 30, len(e))
    return MartFrames(a, e, marts.referrals, marts.patients, marts.as_of)
