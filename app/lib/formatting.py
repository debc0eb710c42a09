"""How numbers read on screen: one formatter per KPI unit, deltas against a comparison (previous period, same
period last year or the owner's target), healthy bands, goal status and how fresh the data is."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, unit: str | None) -> str:
    """A value in its unit: pct 0.123 -> 12.3%, usd 1234 -> $1,234, hours 5.25 -> 5.3 h."""
    if _missing(value):
        return "–"
    v = float(value)
    if unit == "pct":
        return f"{v * 100:.1f}%"
    if unit == "usd":
        return f"${v:,.0f}" if abs(v) >= 100 else f"${v:,.2f}"
    if unit == "hours":
        return f"{v:.1f} h"
    if unit == "days":
        return f"{v:.1f} d"
    if unit == "count":
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def fmt_delta(value: Any, previous: Any, unit: str | None) -> str | None:
    """Change against the previous period in the KPI's own unit (percentage points for rates)."""
    if _missing(value) or _missing(previous):
        return None
    d = float(value) - float(previous)
    if unit == "pct":
        return f"{d * 100:+.1f} pts"
    if unit == "usd":
        return f"{'+' if d >= 0 else '-'}${abs(d):,.0f}" if abs(d) >= 100 else f"{'+' if d >= 0 else '-'}${abs(d):,.2f}"
    if unit == "count":
        return f"{d:+,.0f}"
    suffix = {"hours": " h", "days": " d"}.get(unit or "", "")
    return f"{d:+.1f}{suffix}" if unit in ("hours", "days") else f"{d:+.2f}"


def band_text(low: Any, high: Any, unit: str | None) -> str:
    if _missing(low) and _missing(high):
        return "no published benchmark"
    if _missing(low):
        return f"healthy ≤ {fmt(high, unit)}"
    if _missing(high):
        return f"healthy ≥ {fmt(low, unit)}"
    return f"healthy {fmt(low, unit)}–{fmt(high, unit)}"


def band_status(value: Any, low: Any, high: Any) -> str:
    """'in band', 'below band', 'above band' or 'no band'."""
    if _missing(value) or (_missing(low) and _missing(high)):
        return "no band"
    v = float(value)
    if not _missing(low) and v < float(low):
        return "below band"
    if not _missing(high) and v > float(high):
        return "above band"
    return "in band"


COMPARISONS: dict[str, str] = {
    "previous": "previous period",
    "last_year": "same period last year",
    "target": "target",
}


def goal_status(value: Any, target: Any, better: str | None, maturing: bool = False) -> str:
    """A KPI against the owner's target: 'met', 'missed', 'maturing' (no verdict yet), 'no target' or
    'no value'. 'Met' means at or beyond the target in the KPI's better direction (lower is better for
    no-show rate, higher for arrival rate)."""
    if _missing(target):
        return "no target"
    if _missing(value):
        return "no value"
    if maturing:
        return "maturing"
    d = float(value) - float(target)
    return "met" if (d <= 0 if better == "lower" else d >= 0) else "missed"


def _gap(value: float, target: float, unit: str | None) -> str:
    span = abs(value - target)
    return f"{span * 100:.1f} pts" if unit == "pct" else fmt(span, unit)


@dataclass(frozen=True)
class TileStatus:
    band: str  # 'in band', 'below band', 'above band', 'no band' or 'maturing'
    goal: str  # goal_status()
    goal_text: str  # e.g. "Target 8.0% · met, 1.2 pts better"; "" without a target


def tile_status(
    value: Any,
    unit: str | None,
    better: str | None,
    low: Any = None,
    high: Any = None,
    target: Any = None,
    maturing: bool = False,
) -> TileStatus:
    """Where a tile stands against the published healthy band and against the owner's target.

    A maturing period (outcomes still coming in) gets neither verdict: it would judge a number that is still
    moving."""
    band = "maturing" if maturing else band_status(value, low, high)
    goal = goal_status(value, target, better, maturing)
    if goal == "no target":
        text = ""
    elif goal == "met":
        text = f"Target {fmt(target, unit)} · met" + (
            f", {_gap(float(value), float(target), unit)} better" if float(value) != float(target) else ""
        )
    elif goal == "missed":
        text = f"Target {fmt(target, unit)} · missed by {_gap(float(value), float(target), unit)}"
    elif goal == "maturing":
        text = f"Target {fmt(target, unit)} · judged once the period matures"
    else:
        text = f"Target {fmt(target, unit)} · no value in this period"
    return TileStatus(band=band, goal=goal, goal_text=text)


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    delta: str | None
    delta_color: str  # streamlit: normal (up is good), inverse (down is good), off
    help: str
    status: str  # the band verdict (tile_status().band)
    goal: str = "no target"  # tile_status().goal
    goal_text: str = ""
    note: str = ""  # shown under the tile: the months a monthly KPI covers, or why it has no value


def _month_span(first: Any, last: Any) -> str:
    """'Sep 2026', 'Aug – Oct 2026', 'Dec 2025 – Feb 2026'."""
    a, b = pd.Timestamp(first), pd.Timestamp(last)
    if (a.year, a.month) == (b.year, b.month):
        return f"{a:%b %Y}"
    return f"{a:%b} – {b:%b %Y}" if a.year == b.year else f"{a:%b %Y} – {b:%b %Y}"


def covers_text(row: dict, prefix: str = "") -> str:
    """The calendar months a KPI kept by month only covers when its dates are not whole months ('' otherwise):
    `prefix` '' for the period itself, 'previous_' or 'last_year_' for its comparisons (each with its own
    `<prefix>period_grain`, the grain read, and `<prefix>asked_grain`, the grain of its dates; kpi_summary).
    The previous period of July is June 1-30 for such a KPI, not the 31 days May 31 - June 30: 'Jun 2026'."""
    first, last = row.get(f"{prefix}first_period"), row.get(f"{prefix}last_period")
    grain = row.get(f"{prefix}period_grain", row.get("period_grain"))
    asked = row.get(f"{prefix}asked_grain", row.get("asked_grain"))
    if grain != "month" or asked == "month" or pd.isna(first) or pd.isna(last):
        return ""
    return _month_span(first, last)


# A ratio's numerator in words, for a month whose numerator is not reported (practice_kpis NULL numerator, left
# out of a range: app/lib/queries/overview.py known_numerator).
_NUMERATOR_WORDS: dict[str, str] = {"cost_per_new_patient": "spend"}


def month_list(months: Any) -> list[pd.Timestamp]:
    """A query's list of months (array, list, None or NaN) as sorted distinct month starts."""
    if not isinstance(months, list | tuple | np.ndarray | pd.Series):
        return []  # None, NaN or pd.NA: no month
    return sorted({pd.Timestamp(m).to_period("M").to_timestamp() for m in months if not pd.isna(m)})


def months_text(months: Any) -> str:
    """'Oct 2026'; consecutive months as one span 'Sep – Oct 2026'; else 'Jun 2026, Oct 2026'."""
    ms = month_list(months)
    if not ms:
        return ""
    if len(ms) == (ms[-1].year - ms[0].year) * 12 + ms[-1].month - ms[0].month + 1:
        return _month_span(ms[0], ms[-1])
    return ", ".join(f"{m:%b %Y}" for m in ms)


def unreported_text(months: Any, kpi: str | None = None) -> str:
    """The months a ratio leaves out because their numerator is not reported: 'Oct 2026: spend not reported yet,
    left out' ('' when none). One wording for the Overview tile and the Attribution page."""
    span = months_text(months)
    if not span:
        return ""
    return f"{span}: {_NUMERATOR_WORDS.get(kpi or '', 'numerator')} not reported yet, left out"


def no_value_reason(row: dict) -> str:
    """Why a ratio KPI has no value: its denominator summed to zero or less over the period ('' otherwise).
    A net collection rate over days with adjustments but no charges would otherwise read -104.6%."""
    d = row.get("denominator")
    if not _missing(row.get("value")) or row.get("unit") == "count" or _missing(d) or float(d) > 0:
        return ""
    return f"No rate: its denominator is {'zero' if float(d) == 0 else 'negative'} for these dates"


def kpi_tile(row: dict, compare: str = "previous") -> Tile:
    """Turn one kpi_summary row into what st.metric shows; the delta is against `compare` (COMPARISONS):
    the row's `previous`, `last_year` or `target` value."""
    unit = row.get("unit")
    better = row.get("better")
    band = band_text(row.get("healthy_low"), row.get("healthy_high"), unit)
    color = "normal" if better == "higher" else "inverse" if better == "lower" else "off"
    label = str(row.get("label") or row.get("kpi"))
    maturing = bool(row.get("is_maturing"))
    status = tile_status(
        row.get("value"), unit, better, row.get("healthy_low"), row.get("healthy_high"), row.get("target"), maturing
    )
    baseline = row.get(compare)
    delta = fmt_delta(row.get("value"), baseline, unit)
    against = COMPARISONS.get(compare, "previous period")
    if compare == "target" and _missing(baseline):
        against = "target (none set for this KPI)"
    notes, extra = [], ""
    covers = covers_text(row)
    compared = covers_text(row, f"{compare}_") if compare in ("previous", "last_year") else ""
    if covers:
        notes.append(f"Whole months: {covers}")
        extra += (
            f"\n\nKept by calendar month only: covers every month the dates touch ({covers}), as on the "
            "Attribution & ROI page."
        )
        if compared:
            extra += f" The {against} covers {compared}."
    elif compared:
        extra += f"\n\nKept by calendar month only: the {against} covers {compared}" + (
            ", the same number of whole calendar months just before these." if compare == "previous" else "."
        )
    if compared:
        notes.append(f"{against.capitalize()}: {compared}")
    what = _NUMERATOR_WORDS.get(str(row.get("kpi") or ""), "numerator")
    unreported = month_list(row.get("unreported_periods"))
    if unreported:
        notes.append(unreported_text(unreported, row.get("kpi")))
        extra += (
            f"\n\n{months_text(unreported)}: no {what} reported yet. A month without its {what} has no value (not "
            "$0), so it is left out of both the numerator and the denominator of the range."
        )
    compared_unreported = (
        months_text(row.get(f"{compare}_unreported_periods")) if compare in ("previous", "last_year") else ""
    )
    if compared_unreported:
        extra += f" The {against} leaves out {compared_unreported} ({what} not reported)."
    reason = no_value_reason(row)
    if reason:
        notes.append(reason)
        extra += (
            f"\n\n{reason} ({row.get('denominator_definition') or 'denominator'}: "
            f"{fmt(row.get('denominator'), None)}), so the rate is undefined."
        )
    note = " · ".join(notes)
    if maturing:
        # a young cohort: outcomes are not in yet, so neither a verdict nor a trend colour would be honest
        resolved = (1 - float(row["pending"]) / float(row["cohort"])) if row.get("cohort") else 0.0
        n_res = float(row["cohort"]) - float(row["pending"])
        help_text = (
            f"{row.get('definition') or ''}\n\nStill maturing: {n_res:,.0f} of {float(row['cohort']):,.0f} "
            f"({resolved * 100:.0f}%) have an outcome. {row.get('maturity') or ''} "
            f"The {band} verdict is withheld until the period matures. Change is against the {against}." + extra
        )
        return Tile(
            label=f"{label} (maturing)",
            value=fmt(row.get("value"), unit),
            delta=delta,
            delta_color="off",
            help=help_text.strip(),
            status="maturing",
            goal=status.goal,
            goal_text=status.goal_text,
            note=note,
        )
    help_text = (
        f"{row.get('definition') or ''}\n\n{band.capitalize()} — now {status.band}. Change is against the {against}."
        + extra
    )
    if compare == "previous" and row.get("previous_is_maturing"):
        help_text += " The previous period is itself still maturing."
    if compare == "last_year" and row.get("last_year_is_maturing"):
        help_text += " Last year's period is itself still maturing."
    return Tile(
        label=label,
        value=fmt(row.get("value"), unit),
        delta=delta,
        delta_color=color,
        help=help_text.strip(),
        status=status.band,
        goal=status.goal,
        goal_text=status.goal_text,
        note=note,
    )


def clock(ts: datetime) -> str:
    """'8:08 pm': how people say a time of day."""
    return f"{ts.hour % 12 or 12}:{ts.minute:02d} {'am' if ts.hour < 12 else 'pm'}"


def moment(ts: datetime, now: datetime) -> str:
    """'Nov 29, 8:08 pm' (the year only when it is not this year's)."""
    day = f"{ts:%b} {ts.day}" + (f", {ts.year}" if ts.year != now.year else "")
    return f"{day}, {clock(ts)}"


def _part_of_day(ts: datetime) -> str:
    return "morning" if ts.hour < 12 else "afternoon" if ts.hour < 17 else "evening"


def ago(ts: datetime, now: datetime) -> str:
    """When something happened, as people say it: 'just now', '25 minutes ago', 'this morning',
    'yesterday evening', 'on Monday', 'on Nov 3'."""
    seconds = (now - ts).total_seconds()
    if seconds < 90:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} minutes ago"
    days = (now.date() - ts.date()).days
    if days == 0:
        return f"this {_part_of_day(ts)}" if seconds >= 3 * 3600 else f"{round(seconds / 3600)} h ago"
    if days == 1:
        return f"yesterday {_part_of_day(ts)}"
    if days < 7:
        return f"on {ts:%A}"
    return f"on {ts:%b} {ts.day}" + (f", {ts.year}" if ts.year != now.year else "")


def _as_datetime(value: Any) -> datetime | None:
    if _missing(value) or value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(ts):
        return None
    return ts.tz_localize(None).to_pydatetime() if ts.tzinfo is not None else ts.to_pydatetime()


def freshness(as_of: Any, built_at: Any, now: datetime) -> str:
    """The line under every title: 'Data through Nov 29, 8:08 pm · updated this morning'."""
    data, built = _as_datetime(as_of), _as_datetime(built_at)
    parts = [f"Data through {moment(data, now)}" if data else "Data date not recorded"]
    if built:
        parts.append(f"updated {ago(built, now)}")
    return " · ".join(parts)


def countdowns(due_at: pd.Series, now: datetime | pd.Series) -> tuple[pd.Series, pd.Series]:
    """SLA countdowns of a column of due times, all at once (a chain's work queue holds ~100k tasks): (texts
    such as 'due in 3 h', 'overdue by 2 d' or 'due in 30 min', hours left: negative when overdue, NaN and
    'no due time' without one). `now`: one time, or one per due time (each task's clinic clock)."""
    due = pd.to_datetime(pd.Series(due_at).reset_index(drop=True), errors="coerce")
    if isinstance(due.dtype, pd.DatetimeTZDtype):
        due = due.dt.tz_localize(None)  # wall time in its own zone, as countdown's replace(tzinfo=None)
    start = pd.to_datetime(now.reset_index(drop=True)) if isinstance(now, pd.Series) else pd.Timestamp(now)
    hours = (due - start) / pd.Timedelta(hours=1)
    span = hours.abs()
    amount = np.where(span < 1, span * 60, np.where(span < 48, span, span / 24))
    unit = np.where(span < 1, " min", np.where(span < 48, " h", " d"))
    number = pd.Series(np.round(np.nan_to_num(amount)), dtype="int64").astype(str)
    text = np.where(hours >= 0, "due in ", "overdue by ") + number + unit
    return pd.Series(np.where(hours.isna(), "no due time", text)), hours


def reference_now(as_of: Any, wall_now: datetime, stale_after: timedelta = timedelta(days=2)) -> datetime:
    """'Now' for SLA clocks: the wall clock when the data is current, else the data's as_of.

    A demo or a historical snapshot would otherwise show every task overdue by months.
    """
    if _missing(as_of) or as_of is None:
        return wall_now
    as_of_dt = as_of.to_pydatetime() if hasattr(as_of, "to_pydatetime") else as_of
    if getattr(as_of_dt, "tzinfo", None) is not None:
        as_of_dt = as_of_dt.replace(tzinfo=None)
    if wall_now - as_of_dt > stale_after:
        return as_of_dt
    return max(wall_now, as_of_dt)


# Words that stay upper-case in a column header; `usd` becomes a unit in brackets.
_HEADER_ACRONYMS = {
    "id": "ID",
    "mase": "MASE",
    "smape": "sMAPE",
    "roi": "ROI",
    "cpt": "CPT",
    "carc": "CARC",
    "npi": "NPI",
    "kpi": "KPI",
    "sla": "SLA",
    "ar": "A/R",
    "auc": "AUC",
    "icd": "ICD",
}


def column_header(name: str) -> str:
    """A snake_case column name as a person reads it ("last_loaded_at" -> "Last loaded at", "amount_usd" ->
    "Amount ($)"): the fallback header of every table column a page did not label itself."""
    words = [w for w in str(name).split("_") if w]
    if not words:
        return str(name)
    unit = ""
    if words[-1] == "usd" and len(words) > 1:
        words, unit = words[:-1], " ($)"
    shown = [_HEADER_ACRONYMS.get(w.lower(), w.lower()) for w in words]
    first = shown[0]
    shown[0] = first if first.isupper() or first in _HEADER_ACRONYMS.values() else first.capitalize()
    return " ".join(shown) + unit
