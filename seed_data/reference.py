"""Static reference data: ICD-10-CM codes by body region, name/address pools, NPI ids, holidays, calendars.

Faker is slow per call, so it is only used once per run to fill seeded pools; rows draw from the pools
with numpy (vectorised and deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import holidays
import numpy as np
from faker import Faker

if TYPE_CHECKING:  # for the annotations; the functions that build frames import polars when called
    import polars as pl

# (code, body_region) -- valid billable ICD-10-CM codes commonly treated in outpatient PT
ICD10: tuple[tuple[str, str], ...] = (
    ("M54.50", "lumbar"),
    ("M54.59", "lumbar"),
    ("M54.51", "lumbar"),
    ("M51.16", "lumbar"),
    ("M54.16", "lumbar"),
    ("M48.061", "lumbar"),
    ("M54.41", "lumbar"),
    ("M54.42", "lumbar"),
    ("M54.2", "cervical"),
    ("M54.12", "cervical"),
    ("M50.20", "cervical"),
    ("S13.4XXA", "cervical"),
    ("M54.6", "thoracic"),
    ("M54.14", "thoracic"),
    ("M75.101", "shoulder"),
    ("M75.41", "shoulder"),
    ("M75.42", "shoulder"),
    ("M25.511", "shoulder"),
    ("M25.512", "shoulder"),
    ("M75.01", "shoulder"),
    ("M19.011", "shoulder"),
    ("M77.11", "elbow"),
    ("M77.12", "elbow"),
    ("M25.521", "elbow"),
    ("M25.531", "wrist_hand"),
    ("G56.01", "wrist_hand"),
    ("S52.501A", "wrist_hand"),
    ("M25.551", "hip"),
    ("M25.552", "hip"),
    ("M16.11", "hip"),
    ("M70.61", "hip"),
    ("Z96.641", "hip"),
    ("M25.561", "knee"),
    ("M25.562", "knee"),
    ("M17.11", "knee"),
    ("M17.12", "knee"),
    ("S83.511A", "knee"),
    ("S83.241A", "knee"),
    ("Z96.651", "knee"),
    ("M22.2X1", "knee"),
    ("S93.401A", "ankle_foot"),
    ("M72.2", "ankle_foot"),
    ("M25.571", "ankle_foot"),
    ("M76.61", "ankle_foot"),
    ("I69.351", "neuro"),
    ("G20.A1", "neuro"),
    ("M62.81", "other"),
    ("M79.604", "other"),
    ("R26.2", "other"),
    ("R26.81", "other"),
)
REGION_P = {
    "lumbar": 0.25,
    "cervical": 0.11,
    "thoracic": 0.03,
    "shoulder": 0.16,
    "elbow": 0.03,
    "wrist_hand": 0.04,
    "hip": 0.09,
    "knee": 0.18,
    "ankle_foot": 0.07,
    "neuro": 0.02,
    "other": 0.02,
}
# outcome measure by region: (measure, higher_is_better, scale max, eval mean, MCID)
MEASURE = {
    "lumbar": "ODI",
    "thoracic": "ODI",
    "cervical": "NDI",
    "shoulder": "QuickDASH",
    "elbow": "QuickDASH",
    "wrist_hand": "QuickDASH",
    "hip": "LEFS",
    "knee": "LEFS",
    "ankle_foot": "LEFS",
    "neuro": "LEFS",
    "other": "LEFS",
}
MEASURE_SPEC = {
    "LEFS": (True, 80.0, 38.0, 9.0),
    "ODI": (False, 100.0, 38.0, 10.0),
    "NDI": (False, 100.0, 34.0, 7.5),
    "QuickDASH": (False, 100.0, 42.0, 8.0),
}

SPECIALTIES = (
    "orthopedic_surgery",
    "sports_medicine",
    "primary_care",
    "neurology",
    "pain_management",
    "physiatry",
    "chiropractic",
    "podiatry",
    "obstetrics_gynecology",
    "neurosurgery",
    "rheumatology",
)
SPECIALTY_P = (0.30, 0.12, 0.26, 0.03, 0.06, 0.06, 0.06, 0.04, 0.02, 0.03, 0.02)
SPECIALTY_CRED = {"chiropractic": "DC", "podiatry": "DPM"}

# (state, timezone, a few cities) for clinic locations
LOCATIONS = (
    ("TX", "America/Chicago", ("Austin", "Plano", "Round Rock", "Frisco", "San Antonio")),
    ("IL", "America/Chicago", ("Naperville", "Evanston", "Schaumburg", "Oak Park")),
    ("CO", "America/Denver", ("Denver", "Boulder", "Aurora", "Lakewood")),
    ("AZ", "America/Phoenix", ("Scottsdale", "Tempe", "Mesa", "Chandler")),
    ("CA", "America/Los_Angeles", ("Irvine", "Pasadena", "San Jose", "Sacramento")),
    ("NY", "America/New_York", ("Albany", "Rochester", "White Plains", "Buffalo")),
    ("FL", "America/New_York", ("Tampa", "Orlando", "Naples", "Sarasota")),
    ("NC", "America/New_York", ("Raleigh", "Durham", "Charlotte", "Cary")),
    ("WA", "America/Los_Angeles", ("Bellevue", "Tacoma", "Spokane", "Redmond")),
    ("GA", "America/New_York", ("Marietta", "Alpharetta", "Savannah", "Athens")),
)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
STAFF = ("fd_amy", "fd_jose", "fd_kim", "fd_lee", "fd_maria", "fd_sam", "intake_bot")
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class Pools:
    """Seeded pools of fake identities; rows pick from these with numpy."""

    first_f: np.ndarray
    first_m: np.ndarray
    last: np.ndarray
    street: np.ndarray
    practice: np.ndarray


def make_pools(seed: int, size: int = 1500) -> Pools:
    """Build name/address pools with Faker once per run (seeded, so output is reproducible)."""
    fk = Faker("en_US")
    fk.seed_instance(seed)
    first_f = np.array([fk.first_name_female() for _ in range(size)])
    first_m = np.array([fk.first_name_male() for _ in range(size)])
    last = np.array([fk.last_name() for _ in range(size)])
    street = np.array([fk.street_address() for _ in range(size)])
    practice = np.array(
        [
            f"{fk.last_name()} {s}"
            for s in np.resize(
                [
                    "Orthopedics",
                    "Family Medicine",
                    "Spine Center",
                    "Sports Medicine",
                    "Medical Group",
                    "Health Partners",
                    "Internal Medicine",
                    "Pain Clinic",
                ],
                300,
            )
        ]
    )
    return Pools(first_f, first_m, last, street, practice)


def npi_ids(rng: np.random.Generator, n: int, taken: set[str] | None = None) -> np.ndarray:
    """NPI-shaped ids: 9 digits starting with 1 or 2 plus a Luhn check digit (80840 prefix rule)."""
    base = rng.integers(0, 10, size=(n, 9))
    base[:, 0] = rng.choice([1, 2], size=n)
    # Luhn over "80840" + base: double every other digit starting from the rightmost base digit;
    # the 80840 prefix contributes a constant 24.
    dbl = base[:, ::-2] * 2
    dbl = dbl // 10 + dbl % 10
    total = 24 + dbl.sum(axis=1) + base[:, -2::-2].sum(axis=1)
    check = (10 - total % 10) % 10
    digits = np.concatenate([base, check[:, None]], axis=1)
    return (digits @ (10 ** np.arange(9, -1, -1, dtype=np.int64))).astype(str)


def npi_valid(npi: str) -> bool:
    """Reference Luhn check on '80840' + npi (used by tests, deliberately not vectorised)."""
    s = "80840" + npi
    total = 0
    for i, ch in enumerate(reversed(s)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return total % 10 == 0


class Calendar:
    """Day-index calendar (days since 1970-01-01) with US holidays and weekdays, for vectorised date math."""

    def __init__(self, first: date, last: date) -> None:
        self.d0 = int((np.datetime64(first, "D") - EPOCH).astype(int))
        self.d1 = int((np.datetime64(last, "D") - EPOCH).astype(int))
        n = self.d1 - self.d0 + 1
        days = np.arange(self.d0, self.d1 + 1)
        years = range(first.year, last.year + 1)
        hol = holidays.US(years=years)
        hol_idx = np.array([int((np.datetime64(d, "D") - EPOCH).astype(int)) for d in hol], dtype=np.int64)
        self.holiday = np.zeros(n, dtype=bool)
        inside = (hol_idx >= self.d0) & (hol_idx <= self.d1)
        self.holiday[hol_idx[inside] - self.d0] = True
        self.weekday = (days + 3) % 7  # 0 = Monday
        self.business = (self.weekday < 5) & ~self.holiday
        dates = EPOCH + days
        self.month = dates.astype("datetime64[M]").astype(int) % 12  # 0 = January
        self.year = dates.astype("datetime64[Y]").astype(int) + 1970

    def is_holiday(self, day: np.ndarray) -> np.ndarray:
        return self.holiday[np.clip(day - self.d0, 0, len(self.holiday) - 1)]

    def wd(self, day: np.ndarray) -> np.ndarray:
        return (day + 3) % 7

    def next_business(self, day: np.ndarray) -> np.ndarray:
        """Same day if a business day, else the next one."""
        day = day.copy()
        for _ in range(10):
            bad = ~self.business[np.clip(day - self.d0, 0, len(self.business) - 1)]
            if not bad.any():
                break
            day[bad] += 1
        return day

    def add_business(self, day: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Add n business days (n >= 0) to each day, skipping weekends and holidays."""
        day = day.copy()
        left = n.astype(np.int64).copy()
        for _ in range(int(left.max(initial=0)) * 2 + 10):
            go = left > 0
            if not go.any():
                break
            day[go] += 1
            ok = self.business[np.clip(day - self.d0, 0, len(self.business) - 1)]
            left[go & ok] -= 1
        return day

    def snap_workday(self, day: np.ndarray, workmask: np.ndarray) -> np.ndarray:
        """Move each day forward to the next day its therapist works (workmask: rows x 7) and not a holiday."""
        day = day.copy()
        for _ in range(14):
            ok = workmask[np.arange(len(day)), self.wd(day)] & ~self.is_holiday(day)
            if ok.all():
                break
            day[~ok] += 1
        return day


def ids(prefix: str, ci: int, idx: np.ndarray, width: int) -> pl.Series:
    """Stable ids like AP0010000042 (prefix + clinic number + running number), built vectorised."""
    import polars as pl

    num = pl.Series(np.asarray(idx, dtype=np.int64) + 1).cast(pl.String).str.zfill(width)
    return pl.select(pl.lit(f"{prefix}{ci + 1:03d}") + num).to_series()


def opt(keep: np.ndarray, values) -> pl.Series:
    """A column that is `values` where `keep`, else null (numpy has no nullable arrays)."""
    import polars as pl

    vals = np.broadcast_to(np.asarray(values), np.shape(keep))
    if vals.dtype == object:
        vals = vals.astype(str)
    s = pl.Series(vals)
    return pl.select(pl.when(pl.Series(np.asarray(keep, dtype=bool))).then(s).otherwise(None)).to_series()
