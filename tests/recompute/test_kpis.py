"""marts.practice_kpis (day, week and month grains, every clinic and ALL) against the independent
recomputation from the CSVs: counts exact, money to the cent, everything else (hours, business days, minutes,
rates) to 1e-6.

A comparison that differs because of a defect issue 13 lists is marked xfail with the item (non-strict, so it
turns XPASS the moment the model is fixed); a comparison that differs by definition goes in DEFINITIONAL with
its name and reason (a strict xfail, documented in docs/kpi_recomputation.md), never in a tolerance.
"""

from __future__ import annotations

import polars as pl
import pytest
import recompute as R

pytestmark = pytest.mark.slow

# part -> kind of quantity (tolerance below); "value" is always compared to 1e-6
KINDS = {
    "no_show_rate": ("count", "count"),
    "cancel_no_show_rate": ("count", "count"),
    "arrival_rate": ("count", "count"),
    "referral_conversion": ("count", "count"),
    "conversion_7day": ("count", "count"),
    "hours_to_first_contact": ("float", "count"),
    "business_days_to_first_visit": ("count", "count"),
    "visits_per_discharge": ("count", "count"),
    "poc_completion_rate": ("count", "count"),
    "early_dropout_rate": ("count", "count"),
    "units_per_visit": ("count", "count"),
    "net_revenue_per_visit": ("money", "count"),
    "days_in_ar": ("money", "float"),
    "net_collection_rate": ("money", "money"),
    "denial_rate": ("count", "count"),
    "therapist_utilization": ("float", "count_or_float"),
    "cost_per_new_patient": ("money", "count"),
}
TOL = {"count": 1e-9, "money": 0.005, "float": 1e-6, "count_or_float": 1e-6}
PARTS = ("numerator", "denominator", "value")

# (kpi, part) -> the known defect that makes the mart differ (a non-strict xfail); delete an entry once fixed.
# Empty: on the models before issue 13's fixes, item 1 (cash and contractual adjustments of a quarantined claim
# dropped), item 5 (outcomes left 'scheduled') and the denial / early-dropout maturity rules broke 15 of the 17
# KPIs here (docs/kpi_recomputation.md); with the fixes every comparison matches.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {}

# (kpi, part) -> (name of the definition in docs/kpi_recomputation.md, why the two differ by definition).
# Empty today: every comparison not tied to a defect matches. An entry is a strict xfail, so the day the two
# agree again the test says so and the entry goes.
DEFINITIONAL: dict[tuple[str, str], tuple[str, str]] = {}

# Not recomputed here (named, so the omission is not silent): attributed_roi needs the linear attribution of
# collected episode revenue over touch paths; its axioms (credit sums to the value) are tested with the marts.
NOT_RECOMPUTED = {"attributed_roi": "attribution credit over touch paths: covered by the attribution axioms tests"}


def _params():
    out = []
    for kpi in KINDS:
        for part in PARTS:
            reason = KNOWN_DEFECTS.get((kpi, part))
            marks = [pytest.mark.xfail(strict=False, reason=reason)] if reason else []
            if (kpi, part) in DEFINITIONAL:
                name, why = DEFINITIONAL[(kpi, part)]
                marks = [pytest.mark.xfail(strict=True, reason=f"by definition ({name}): {why}")]
            out.append(pytest.param(kpi, part, marks=marks, id=f"{kpi}-{part}"))
    return out


@pytest.fixture(scope="module")
def tables(case) -> tuple[pl.DataFrame, pl.DataFrame]:
    mine = pl.concat([R.kpis(case.practice, g).with_columns(grain=pl.lit(g)) for g in R.GRAINS])
    mart = case.mart(
        "select clinic_id, grain, period_start, kpi, numerator, denominator, value from marts.practice_kpis"
    )
    return mine, mart


def _compare(mine: pl.DataFrame, mart: pl.DataFrame, kpi: str, part: str) -> pl.DataFrame:
    """Rows (grain x clinic x period) where the two disagree; a month missing on one side counts as 0 / 0."""
    key = ["grain", "clinic_id", "period_start"]
    a = mine.filter(pl.col("kpi") == kpi).select(*key, mine=pl.col(part))
    b = mart.filter(pl.col("kpi") == kpi).select(*key, mart=pl.col(part))
    j = a.join(b, on=key, how="full", coalesce=True)
    if part != "value":
        j = j.with_columns(pl.col("mine", "mart").fill_null(0.0))
    kind = "float" if part == "value" else KINDS[kpi][PARTS.index(part)]
    one_sided = pl.col("mine").is_null() != pl.col("mart").is_null()
    differs = ((pl.col("mine") - pl.col("mart")).abs() > TOL[kind]) | one_sided
    return j.filter(differs).sort(key)


def test_definitional_differences_are_documented():
    doc = (R.ROOT / "docs" / "kpi_recomputation.md").read_text()
    missing = [name for name, _ in DEFINITIONAL.values() if name not in doc] + [
        k for k in NOT_RECOMPUTED if k not in doc
    ]
    assert not missing, f"docs/kpi_recomputation.md does not name: {missing}; add a line saying why it stays"


def test_every_kpi_is_recomputed_or_named(tables):
    _, mart = tables
    assert set(mart["kpi"].unique()) == set(KINDS) | set(NOT_RECOMPUTED)


@pytest.mark.parametrize("kpi,part", _params())
def test_kpi_matches_recomputation(tables, case, kpi, part):
    mine, mart = tables
    bad = _compare(mine, mart, kpi, part)
    assert bad.is_empty(), (
        f"{case.name}: marts.practice_kpis {kpi}.{part} differs from the recomputation in {bad.height} "
        f"periods (tests/recompute/recompute.py states the definition); first: {bad.head(5).rows()}"
    )


def test_denied_claims_match(tables, case):
    """The denial numerator is the same under either denominator (a denied claim is adjudicated), so it is
    compared whatever the maturity rule's state."""
    mine, mart = tables
    bad = _compare(mine, mart, "denial_rate", "numerator")
    assert bad.is_empty(), f"{case.name}: denied claims per submission period differ: {bad.head(5).rows()}"


def test_total_cash_landed_equals_cash_in_kpis(tables, case):
    """Money never vanishes (issue 13 item 1): every payment landed counts practice-wide."""
    mine, mart = tables
    rows = (pl.col("kpi") == "net_revenue_per_visit") & (pl.col("clinic_id") == "ALL") & (pl.col("grain") == "month")
    landed, served = mine.filter(rows)["numerator"].sum(), mart.filter(rows)["numerator"].sum()
    assert abs(landed - served) <= 0.005, f"{case.name}: {landed - served:.2f} USD of {landed:.2f} landed is missing"
