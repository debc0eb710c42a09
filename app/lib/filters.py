"""The shared filters (date range, clinics) and their round trip through the URL query string, so a view
can be shared as a link. Pure functions: Streamlit only supplies and receives the dict."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

DEFAULT_DAYS = 90


def _parse_date(text: object) -> date | None:
    try:
        return date.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def clamp(d: date, lo: date | None, hi: date | None) -> date:
    if lo is not None and d < lo:
        return lo
    if hi is not None and d > hi:
        return hi
    return d


def default_range(lo: date | None, hi: date | None, today: date) -> tuple[date, date]:
    """The last 90 days of data (ending at the data's as_of, not the wall clock)."""
    end = hi or today
    start = clamp(end - timedelta(days=DEFAULT_DAYS - 1), lo, end)
    return start, end


def from_query(
    params: Mapping[str, object], lo: date | None, hi: date | None, clinic_options: list[str], today: date
) -> tuple[date, date, list[str]]:
    """Filters from ?from=YYYY-MM-DD&to=YYYY-MM-DD&clinics=C1,C2 with bad or out-of-range values ignored."""
    start, end = default_range(lo, hi, today)
    q_start, q_end = _parse_date(params.get("from")), _parse_date(params.get("to"))
    if q_start and q_end and q_start <= q_end:
        start, end = clamp(q_start, lo, hi), clamp(q_end, lo, hi)
    raw = params.get("clinics") or ""
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(x) for x in raw)
    wanted = [c for c in str(raw).split(",") if c]
    clinics = [c for c in wanted if c in clinic_options]
    return start, end, clinics


def to_query(start: date, end: date, clinics: list[str]) -> dict[str, str]:
    out = {"from": start.isoformat(), "to": end.isoformat()}
    if clinics:
        out["clinics"] = ",".join(clinics)
    return out
