"""What every page's questions share: the Reader a query runs on, the shared Filters, the clinic scope bound as
parameters, the identity columns a role may get, and the few questions the app shell itself asks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

import pandas as pd

from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.privacy import deidentify


class Reader(Protocol):
    scope: Scope

    def df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame: ...

    def has(self, table: str) -> bool: ...


@dataclass
class DbReader:
    """A Reader straight on the database (tests, benchmarks); the app wraps one with a cache."""

    db: AnalyticsDb
    scope: Scope

    def df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        frame = self.db.query(sql, dict(params or {}))
        return frame if self.scope.phi else deidentify(frame)

    def has(self, table: str) -> bool:
        return self.db.has_table(table)


@dataclass(frozen=True)
class Filters:
    """The shared filters: a date range and the clinics asked for (None = all the user may see)."""

    start: date
    end: date
    clinics: tuple[str, ...] | None = None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def previous(self) -> Filters:
        """The period of the same length just before this one (for KPI deltas)."""
        return Filters(self.start - timedelta(days=self.days), self.start - timedelta(days=1), self.clinics)


def clinic_params(r: Reader, f: Filters) -> dict[str, Any]:
    """Bound parameters for the clinic filter: `$all_clinics` (bool) and `$clinics` (list)."""
    eff = r.scope.effective_clinics(f.clinics)
    return {"all_clinics": eff is None, "clinics": list(eff or [])}


CLINIC_FILTER = "($all_clinics or list_contains($clinics, clinic_id))"


def range_params(f: Filters) -> dict[str, Any]:
    return {"start": f.start, "end": f.end}


def received_in_range(f: Filters) -> str:
    """Referrals received in the date range, in the user's clinics (Funnel and Referral sources)."""
    return f"received_at::date between $start and $end and {CLINIC_FILTER}"


# The build's maturity bar (share of a cohort with an outcome before its KPI counts as mature).
MATURITY_BAR = "(select max(maturity_resolved_share) from marts.build_info)"


def identity_select(r: Reader, left: str, alias: str = "p") -> str:
    """Columns that identify the patient: name and phone for PHI roles, the pseudonymous key otherwise."""
    if r.scope.phi:
        return (
            f"{alias}.first_name || ' ' || {alias}.last_name as patient_name, {alias}.phone as phone, "
            f"{left}.patient_key as patient_key"
        )
    return f"{left}.patient_key as patient_key"


def patients_join(r: Reader, left: str, alias: str = "p") -> str:
    """Join dim_patients only for PHI roles: de-identified roles' queries never touch the table."""
    if r.scope.phi:
        return f"left join marts.dim_patients {alias} on {alias}.patient_id = {left}.patient_id"
    return ""


def build_info(r: Reader) -> dict[str, Any]:
    if not r.has("marts.build_info"):
        return {}
    df = r.df("select * from marts.build_info limit 1")
    return {} if df.empty else df.iloc[0].to_dict()


def clinics(r: Reader) -> pd.DataFrame:
    """Clinics the user may see (id and name), for the shared filter."""
    p = clinic_params(r, Filters(date.min, date.max))
    return r.df(
        f"select clinic_id, coalesce(clinic_name, clinic_id) as clinic_name from marts.dim_clinics "
        f"where {CLINIC_FILTER} order by clinic_id",
        p,
    )


def data_date_range(r: Reader) -> tuple[date | None, date | None]:
    """First referral and the as_of day: the bounds of the date filter."""
    df = r.df(
        "select min(received_at)::date as lo, (select max(as_of)::date from marts.build_info) as hi "
        "from marts.referral_funnel"
    )
    if df.empty:
        return None, None
    lo, hi = df.iloc[0]["lo"], df.iloc[0]["hi"]
    return (None if pd.isna(lo) else pd.Timestamp(lo).date(), None if pd.isna(hi) else pd.Timestamp(hi).date())
