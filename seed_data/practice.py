"""The practice's reference entities (payers, clinics, therapists, referring physicians) and the per-clinic
context every simulation step reads: calendar, staff schedules, random stream, clinic effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from seed_data import params as P
from seed_data.reference import (
    EPOCH,
    LOCATIONS,
    SPECIALTIES,
    SPECIALTY_CRED,
    SPECIALTY_P,
    WEEKDAYS,
    Calendar,
    Pools,
    npi_ids,
)

DAY = 86400


def payers_frame(updated: int) -> pl.DataFrame:
    """One payers file for the whole network."""
    rows = [
        dict(payer_id=p[0], payer_name=p[1], payer_class=p[2], requires_auth=p[3], auth_visit_limit=p[4])
        for p in P.PAYERS
    ]
    return pl.DataFrame(
        rows,
        schema={
            "payer_id": pl.String,
            "payer_name": pl.String,
            "payer_class": pl.String,
            "requires_auth": pl.Boolean,
            "auth_visit_limit": pl.Int64,
        },
    ).with_columns(updated_at=pl.lit(updated, dtype=pl.Int64))


@dataclass
class PayerTable:
    """Payer attributes as arrays indexed by payer position."""

    ids: np.ndarray
    cls: np.ndarray
    auth: np.ndarray
    limit: np.ndarray
    share_young: np.ndarray
    share_old: np.ndarray


def payer_table() -> PayerTable:
    ids = np.array([p[0] for p in P.PAYERS])
    cls = np.array([p[2] for p in P.PAYERS])
    auth = np.array([p[3] for p in P.PAYERS])
    limit = np.array([p[4] or 0 for p in P.PAYERS])
    young = np.array([p[5] for p in P.PAYERS], dtype=float)
    old = np.array([p[6] for p in P.PAYERS], dtype=float)
    return PayerTable(ids, cls, auth, limit, young / young.sum(), old / old.sum())


@dataclass
class ClinicCtx:
    """Everything one clinic's simulation needs; built deterministically from the clinic's seed."""

    ci: int
    clinic_id: str
    rng: np.random.Generator
    cal: Calendar
    start: int  # first day index of history
    as_of: int  # last day index of history
    city: str
    state: str
    t_ids: np.ndarray
    t_cred: np.ndarray
    t_hours: np.ndarray
    t_work: np.ndarray  # (T, 7) bool
    t_start_min: np.ndarray
    t_end_min: np.ndarray
    ph_ids: np.ndarray
    ph_weight: np.ndarray
    ph_fading: np.ndarray
    ns_effect: float
    size: float  # capacity relative to a 5-therapist clinic
    clinic: pl.DataFrame
    therapists: pl.DataFrame
    physicians: pl.DataFrame


def day_index(d: date) -> int:
    return int((np.datetime64(d, "D") - EPOCH).astype(int))


def clinic_npi(ci: int) -> str:
    """The clinic's organisation NPI, from its own seeded stream so the practice's other draws do not move (the
    same value seed_data/formats/_native.clinic_npis gives files written before clinics carried one)."""
    return str(npi_ids(np.random.default_rng(7_000_000 + ci + 1), 1)[0])


def build_clinic(ci: int, rng: np.random.Generator, pools: Pools, cal: Calendar, start: int, as_of: int) -> ClinicCtx:
    """Draw one clinic, its staff and its referring physicians."""
    loc = LOCATIONS[ci % len(LOCATIONS)]
    city = loc[2][rng.integers(len(loc[2]))]
    clinic_id = f"CL{ci + 1:03d}"
    updated = (start - 30) * DAY + 9 * 3600
    opened = day_index(date(int(rng.integers(1995, 2022)), int(rng.integers(1, 13)), 1))
    clinic = pl.DataFrame(
        dict(
            clinic_id=[clinic_id],
            clinic_name=[f"PT Pulse Physical Therapy - {city}"],
            address_line=[str(pools.street[rng.integers(len(pools.street))])],
            city=[city],
            state=[loc[0]],
            zip=[f"{rng.integers(10000, 99999):05d}"],
            timezone=[loc[1]],
            opened_on=[min(opened, start - 365)],
            treatment_tables=[int(rng.integers(6, 21))],
            npi=[clinic_npi(ci)],
            updated_at=[updated],
        )
    )

    n_t = int(rng.integers(P.THERAPISTS_MIN, P.THERAPISTS_MAX + 1))
    cred = rng.choice(["DPT", "PT", "PTA"], size=n_t, p=[0.6, 0.2, 0.2])
    cred[0] = "DPT"  # every clinic has an evaluating therapist
    hours = rng.choice(P.WEEKLY_HOURS, size=n_t, p=P.WEEKLY_HOURS_P)
    work = np.zeros((n_t, 7), dtype=bool)
    ndays = np.where(hours >= 36, 5, np.where(hours >= 30, 4, 4))
    sat = rng.random(n_t) < P.SATURDAY_THERAPIST_P
    for i in range(n_t):  # per-therapist schedule (a handful of rows)
        if ndays[i] == 5 and not sat[i]:
            work[i, :5] = True
        elif sat[i]:
            work[i, 1:6] = True
        else:
            off = int(rng.integers(0, 5))
            work[i, :5] = True
            work[i, off] = False
    day_len_min = (hours * 60 / work.sum(axis=1)).round().astype(int)
    start_min = rng.choice([7 * 60, 7 * 60 + 30, 8 * 60, 9 * 60], size=n_t)
    end_min = start_min + (day_len_min + 30 + 14) // 15 * 15  # plus lunch, on the quarter hour
    first = pools.first_f[rng.integers(len(pools.first_f), size=n_t)]
    male = rng.random(n_t) < 0.4
    first[male] = pools.first_m[rng.integers(len(pools.first_m), size=int(male.sum()))]
    t_ids = np.array([f"TH{ci + 1:03d}{i + 1:02d}" for i in range(n_t)])
    hired = start - rng.integers(200, 3000, size=n_t)
    therapists = pl.DataFrame(
        dict(
            therapist_id=t_ids,
            clinic_id=[clinic_id] * n_t,
            first_name=first,
            last_name=pools.last[rng.integers(len(pools.last), size=n_t)],
            credential=cred,
            npi=npi_ids(rng, n_t),
            hired_on=hired.astype(np.int64),
            terminated_on=pl.Series([None] * n_t, dtype=pl.Int64),
            weekly_hours=hours,
            work_days=["|".join(WEEKDAYS[d] for d in range(7) if work[i, d]) for i in range(n_t)],
            day_start=[f"{m // 60:02d}:{m % 60:02d}" for m in start_min],
            day_end=[f"{m // 60:02d}:{m % 60:02d}" for m in end_min],
            updated_at=np.full(n_t, updated, dtype=np.int64),
        )
    )

    n_ph = int(rng.integers(*P.PHYSICIANS_PER_CLINIC))
    spec = rng.choice(len(SPECIALTIES), size=n_ph, p=SPECIALTY_P)
    spec_name = np.array(SPECIALTIES)[spec]
    cred_ph = rng.choice(["MD", "DO", "NP", "PA"], size=n_ph, p=[0.62, 0.14, 0.14, 0.10]).astype(object)
    for s, c in SPECIALTY_CRED.items():
        cred_ph[spec_name == s] = c
    weight = rng.lognormal(0.0, 1.0, size=n_ph) * np.where(np.isin(spec, [0, 1]), 2.0, 1.0)
    fading = np.zeros(n_ph, dtype=bool)
    n_fade = max(3, int(round(P.FADING_SHARE * n_ph)))
    top = np.argsort(-weight)[: n_fade * 3]
    fading[rng.choice(top, size=n_fade, replace=False)] = True
    ph_ids = npi_ids(rng, n_ph)
    physicians = pl.DataFrame(
        dict(
            physician_id=ph_ids,
            first_name=pools.first_f[rng.integers(len(pools.first_f), size=n_ph)],
            last_name=pools.last[rng.integers(len(pools.last), size=n_ph)],
            credential=cred_ph.astype(str),
            specialty=spec_name,
            practice_name=pools.practice[rng.integers(len(pools.practice), size=n_ph)],
            city=[city] * n_ph,
            state=[loc[0]] * n_ph,
            updated_at=np.full(n_ph, updated, dtype=np.int64),
        )
    )
    return ClinicCtx(
        ci=ci,
        clinic_id=clinic_id,
        rng=rng,
        cal=cal,
        start=start,
        as_of=as_of,
        city=city,
        state=loc[0],
        t_ids=t_ids,
        t_cred=cred,
        t_hours=hours,
        t_work=work,
        t_start_min=start_min,
        t_end_min=end_min,
        ph_ids=ph_ids,
        ph_weight=weight / weight.sum(),
        ph_fading=fading,
        ns_effect=float(rng.normal(0, P.NS_CLINIC_SD)),
        size=float(hours.sum() / (5 * 33.0)),
        clinic=clinic,
        therapists=therapists,
        physicians=physicians,
    )
