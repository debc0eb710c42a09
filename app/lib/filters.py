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
    start, end, clinics, _ = from_query_checked(params, lo, hi, clinic_options, today)
    return start, end, clinics


def _fmt(d: date | None) -> str:
    return "?" if d is None else f"{d:%b} {d.day}, {d.year}"


def from_query_checked(
    params: Mapping[str, object], lo: date | None, hi: date | None, clinic_options: list[str], today: date
) -> tuple[date, date, list[str], str | None]:
    """`from_query` plus a note for the user when the link's period could not be used as written.

    A period wholly outside the data (an old shared link) falls back to the default period, not to the one
    clamped day at the data's edge that would read like a real figure (100% conversion on one day); a period
    that only overhangs the data is trimmed to it. Either way the note says so."""
    start, end = default_range(lo, hi, today)
    note = None
    raw_from, raw_to = params.get("from"), params.get("to")
    q_start, q_end = _parse_date(raw_from), _parse_date(raw_to)
    data = f"the data covers {_fmt(lo)} to {_fmt(hi)}"
    if (raw_from or raw_to) and not (q_start and q_end and q_start <= q_end):
        note = f"The link's period could not be read; showing the last {DEFAULT_DAYS} days of data instead."
    elif q_start and q_end:
        outside = (hi is not None and q_start > hi) or (lo is not None and q_end < lo)
        if outside:
            note = (
                f"The link's period ({_fmt(q_start)} to {_fmt(q_end)}) is outside the data ({data}); "
                f"showing the last {DEFAULT_DAYS} days of data instead."
            )
        else:
            start, end = clamp(q_start, lo, hi), clamp(q_end, lo, hi)
            if (start, end) != (q_start, q_end):
                note = f"The link's period was trimmed to {_fmt(start)} to {_fmt(end)}: {data}."
    raw = params.get("clinics") or ""
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(x) for x in raw)
    wanted = [c for c in str(raw).split(",") if c]
    clinics = [c for c in wanted if c in clinic_options]
    return start, end, clinics, note


def to_query(start: date, end: date, clinics: list[str]) -> dict[str, str]:
    out = {"from": start.isoformat(), "to": end.isoformat()}
    if clinics:
        out["clinics"] = ",".join(clinics)
    return out
