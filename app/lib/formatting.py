"""How numbers read on screen: one formatter per KPI unit, deltas against the previous period, bands."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


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


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    delta: str | None
    delta_color: str  # streamlit: normal (up is good), inverse (down is good), off
    help: str
    status: str


def kpi_tile(row: dict) -> Tile:
    """Turn one kpi_summary row into what st.metric shows."""
    unit = row.get("unit")
    better = row.get("better")
    band = band_text(row.get("healthy_low"), row.get("healthy_high"), unit)
    color = "normal" if better == "higher" else "inverse" if better == "lower" else "off"
    label = str(row.get("label") or row.get("kpi"))
    if row.get("is_maturing"):
        # a young cohort: outcomes are not in yet, so neither a verdict nor a trend colour would be honest
        resolved = (1 - float(row["pending"]) / float(row["cohort"])) if row.get("cohort") else 0.0
        n_res = float(row["cohort"]) - float(row["pending"])
        status = "maturing"
        help_text = (
            f"{row.get('definition') or ''}\n\nStill maturing: {n_res:,.0f} of {float(row['cohort']):,.0f} "
            f"({resolved * 100:.0f}%) have an outcome. {row.get('maturity') or ''} "
            f"The {band} verdict is withheld until the period matures."
        )
        return Tile(
            label=f"{label} (maturing)",
            value=fmt(row.get("value"), unit),
            delta=fmt_delta(row.get("value"), row.get("previous"), unit),
            delta_color="off",
            help=help_text.strip(),
            status=status,
        )
    status = band_status(row.get("value"), row.get("healthy_low"), row.get("healthy_high"))
    help_text = (
        f"{row.get('definition') or ''}\n\n{band.capitalize()} — now {status}. "
        "Change is against the previous period of the same length."
    )
    if row.get("previous_is_maturing"):
        help_text += " The previous period is itself still maturing."
    return Tile(
        label=label,
        value=fmt(row.get("value"), unit),
        delta=fmt_delta(row.get("value"), row.get("previous"), unit),
        delta_color=color,
        help=help_text.strip(),
        status=status,
    )


def countdown(due_at: Any, now: datetime) -> tuple[str, float]:
    """SLA countdown: ('due in 3 h', hours) or ('overdue by 2 d', -hours)."""
    if _missing(due_at) or due_at is None:
        return "no due time", math.inf
    try:
        due = due_at.to_pydatetime() if hasattr(due_at, "to_pydatetime") else due_at
    except (TypeError, ValueError):
        return "no due time", math.inf
    if due is None or (hasattr(due, "year") and str(due) == "NaT"):
        return "no due time", math.inf
    if getattr(due, "tzinfo", None) is not None:
        due = due.replace(tzinfo=None)
    hours = (due - now) / timedelta(hours=1)
    span = abs(hours)
    text = f"{span:.0f} min" if span < 1 else f"{span:.0f} h" if span < 48 else f"{span / 24:.0f} d"
    return (f"due in {text}" if hours >= 0 else f"overdue by {text}"), hours


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
