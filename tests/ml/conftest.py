"""A synthetic practice in the shape of the marts, for ML unit tests that need no dbt build.

The no-show probability has a known form (patient propensity, lead time, age, Monday mornings), so the
tests can check that the model finds signal, stays calibrated and never reads the future, in a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.features import MartFrames

AS_OF = pd.Timestamp("2024-12-31 12:00")


def make_marts(n_patients: int = 1500, seed: int = 0, as_of: pd.Timestamp = AS_OF) -> tuple[MartFrames, pd.DataFrame]:
    """(marts, truth) where truth has appointment_id, p_no_show."""
    rng = np.random.default_rng(seed)
    pid = np.array([f"P{i:05d}" for i in range(n_patients)])
    birth = pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 365 * 60, n_patients), unit="D")
    patients = pd.DataFrame({"patient_id": pid, "birth_date": birth.date})
    eval_date = pd.Timestamp("2023-01-02") + pd.to_timedelta(rng.integers(0, 740, n_patients), unit="D")
    clinic = rng.choice(["C1", "C2"], n_patients, p=[0.6, 0.4])
    payer = rng.choice(["commercial", "medicare", "medicaid", "self_pay"], n_patients, p=[0.5, 0.3, 0.15, 0.05])
    source = rng.choice(["physician", "direct_access", "marketing"], n_patients, p=[0.6, 0.25, 0.15])
    planned = rng.integers(4, 14, n_patients)
    episodes = pd.DataFrame(
        {
            "episode_id": [f"E{i:05d}" for i in range(n_patients)],
            "referral_id": [f"R{i:05d}" for i in range(n_patients)],
            "patient_id": pid,
            "clinic_id": clinic,
            "payer_class": payer,
            "body_region": rng.choice(["knee", "back"], n_patients),
            "eval_date": eval_date.date,
            "planned_visits": planned,
            "frequency_per_week": 2,
        }
    )
    referrals = pd.DataFrame(
        {
            "referral_id": episodes["referral_id"],
            "source_type": source,
            "received_at": eval_date - pd.Timedelta(days=5),
            "payer_class": payer,
        }
    )
    propensity = rng.normal(0, 1, n_patients)

    idx = np.repeat(np.arange(n_patients), planned)
    visit = np.concatenate([np.arange(k) for k in planned])
    day = eval_date[idx] + pd.to_timedelta(visit * 3.5 + rng.integers(0, 2, len(idx)), unit="D")
    hour = rng.integers(7, 18, len(idx))
    start = day.normalize() + pd.to_timedelta(hour, unit="h")
    lead = rng.exponential(6.0, len(idx)) + 0.2
    booked = start - pd.to_timedelta(lead, unit="D")
    age = (start - pd.to_datetime(birth[idx])).days / 365.25
    logit = (
        -2.4
        + 1.1 * propensity[idx]
        + 0.05 * np.minimum(lead, 30)
        + 0.5 * (age < 35)
        + 0.4 * ((start.day_of_week == 0) & (hour < 10))
        - 0.02 * visit
    )
    p = 1 / (1 + np.exp(-logit))
    u = rng.random(len(idx))
    status = np.where(u < p, "no_show", np.where(u > 0.93, "cancelled", "completed"))
    status_at = pd.Series(pd.NaT, index=range(len(idx)), dtype="datetime64[ns]")
    cancelled = status == "cancelled"
    status_at[cancelled] = (start - pd.to_timedelta(rng.uniform(1, 6, len(idx)), unit="D"))[cancelled]
    status_at = status_at.where(status_at >= booked, booked + pd.Timedelta(minutes=5))
    status_at[~cancelled] = pd.NaT
    future = start > as_of
    status = np.where(future, "scheduled", status)
    appointments = pd.DataFrame(
        {
            "appointment_id": [f"A{i:07d}" for i in range(len(idx))],
            "episode_id": episodes["episode_id"].to_numpy()[idx],
            "referral_id": episodes["referral_id"].to_numpy()[idx],
            "patient_id": pid[idx],
            "clinic_id": clinic[idx],
            "therapist_id": "T1",
            "visit_type": np.where(visit == 0, "initial_eval", "follow_up"),
            "booked_at": booked,
            "scheduled_start": start,
            "duration_min": np.where(visit == 0, 60, 45),
            "status": status,
            "status_at": status_at.to_numpy(),
            "lead_time_days": lead,
            "reschedule_count": 0,
            "visit_number": visit + 1,
            "is_future": future,
        }
    )
    appointments = appointments[booked <= as_of].reset_index(drop=True)
    truth = pd.DataFrame({"appointment_id": [f"A{i:07d}" for i in range(len(idx))], "p_no_show": p})
    return MartFrames(appointments, episodes, referrals, patients, as_of), truth


@pytest.fixture(scope="session")
def synthetic():
    return make_marts()
