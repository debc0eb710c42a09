"""Revenue leakage as a range, not one number.

The mart (`marts.revenue_leakage`) says what each leak puts at stake: units (visit slots, unattended planned
visits, episodes, claims) times what one unit is worth by the KPI definitions. How much of that was really
lost is a judgement, so it is an explicit, adjustable share per category with a conservative default low
and high. Unrecovered denials are actual write-offs: their share is fixed at 100%.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Assumption:
    label: str
    low: float  # share of the dollars at stake lost, conservative end
    high: float  # share of the dollars at stake lost, generous end
    why: str
    adjustable: bool = True


ASSUMPTIONS: Mapping[str, Assumption] = {
    "no_shows": Assumption(
        "No-shows",
        0.50,
        1.00,
        "A missed slot is lost unless it was refilled; many patients make the visit up later, so at least half "
        "is assumed lost, at most all of it.",
    ),
    "late_cancels": Assumption(
        "Late cancellations",
        0.50,
        1.00,
        "Under 24 h notice a slot is rarely refilled; made-up visits recover some of it, as for no-shows.",
    ),
    "unfinished_plans": Assumption(
        "Unfinished plans of care",
        0.25,
        0.60,
        "Planned visits are a ceiling: some patients recover early and would not have attended them all. "
        "Counts visits beyond the no-shows above, which may overlap a little.",
    ),
    "unconverted_referrals": Assumption(
        "Referrals that never started care",
        0.25,
        0.65,
        "A referral that was worked might still not have converted: about two in three convert at a good "
        "practice, so at most 65% of an episode's value is assumed, at least 25%.",
    ),
    "unrecovered_denials": Assumption(
        "Denials never recovered", 1.00, 1.00, "Actual dollars written off after a denial.", adjustable=False
    ),
}


def label(category: str) -> str:
    a = ASSUMPTIONS.get(category)
    return a.label if a else category.replace("_", " ").capitalize()


def shares(overrides: Mapping[str, tuple[float, float]] | None = None) -> dict[str, tuple[float, float]]:
    """(low, high) share per category: the defaults, replaced by the user's choices where given."""
    out = {k: (a.low, a.high) for k, a in ASSUMPTIONS.items()}
    for k, (lo, hi) in (overrides or {}).items():
        if k in out and ASSUMPTIONS[k].adjustable:
            lo, hi = sorted((min(max(float(lo), 0.0), 1.0), min(max(float(hi), 0.0), 1.0)))
            out[k] = (lo, hi)
    return out


def with_range(df: pd.DataFrame, chosen: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Add low_usd and high_usd to leakage rows (category, dollars_at_stake, ...)."""
    s = shares(chosen)
    lo = df["category"].map(lambda c: s.get(c, (1.0, 1.0))[0]).astype(float)
    hi = df["category"].map(lambda c: s.get(c, (1.0, 1.0))[1]).astype(float)
    return df.assign(low_usd=df["dollars_at_stake"] * lo, high_usd=df["dollars_at_stake"] * hi)


def by_category(df: pd.DataFrame) -> pd.DataFrame:
    """One row per category: events, units, low/high dollars, the label and both assumptions in words."""
    if df.empty:
        return df.assign(label=pd.Series(dtype=str), why=pd.Series(dtype=str))
    totals = df.groupby("category", as_index=False).agg(
        events=("events", "sum"),
        units_at_stake=("units_at_stake", "sum"),
        dollars_at_stake=("dollars_at_stake", "sum"),
        low_usd=("low_usd", "sum"),
        high_usd=("high_usd", "sum"),
        assumption=("assumption", "first"),
    )
    totals["label"] = totals["category"].map(label)
    totals["why"] = totals["category"].map(lambda c: ASSUMPTIONS[c].why if c in ASSUMPTIONS else "")
    return totals.sort_values("high_usd", ascending=False).reset_index(drop=True)
