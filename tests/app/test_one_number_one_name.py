"""Issue 13 items 6, 7, 9: a figure shown under one name is one statistic on every page.

Each test recomputes what one page shows from what another page (or the KPI mart) shows for the same period,
so a page that quietly redefines a number fails here.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import pytest

from app.lib import auth, leakage
from app.lib.db import AnalyticsDb
from app.lib.queries.attribution import attribution_by_channel, marketing_new_patients, marketing_totals
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.funnel import funnel_summary
from app.lib.queries.leakage import revenue_leakage
from app.lib.queries.overview import kpi_summary


@pytest.fixture(scope="module")
def reader(app_home):
    return DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))


def _whole_months(reader, months: int) -> Filters:
    _, hi = data_date_range(reader)
    end = date(hi.year, hi.month, 1) - timedelta(days=1)  # last complete month
    start = date(end.year, end.month, 1)
    for _ in range(months - 1):
        start = date((start - timedelta(days=1)).year, (start - timedelta(days=1)).month, 1)
    return Filters(start, end)


def _kpi(reader, f: Filters, kpi: str) -> float:
    s = kpi_summary(reader, f)
    return float(s.loc[s["kpi"] == kpi, "value"].iloc[0])


def test_attribution_page_roi_is_the_overview_roi_under_the_linear_model(reader):
    f = _whole_months(reader, 3)
    by_channel = attribution_by_channel(reader, f)
    paid = marketing_totals(by_channel, "linear")
    assert paid["roi"] == pytest.approx(_kpi(reader, f, "attributed_roi"), rel=1e-9)
    # the defect: free referral sources' revenue divided by marketing spend
    linear = by_channel[by_channel["model"] == "linear"]
    free = linear[~linear["is_marketing"]]
    assert set(free["channel"]) >= {"physician_referral"} and free["attributed_revenue_usd"].sum() > 0
    assert float(free["spend_usd"].fillna(0).sum()) == 0.0


@pytest.mark.parametrize("model", ["first", "position", "markov"])
def test_every_model_roi_counts_paid_channels_only(reader, model):
    f = _whole_months(reader, 3)
    by_channel = attribution_by_channel(reader, f)
    rows = by_channel[(by_channel["model"] == model) & by_channel["is_marketing"]]
    paid = marketing_totals(by_channel, model)
    assert paid["spend_usd"] == pytest.approx(by_channel[by_channel["model"] == model]["spend_usd"].fillna(0).sum())
    assert paid["attributed_revenue_usd"] == pytest.approx(rows["attributed_revenue_usd"].sum())
    assert paid["roi"] == pytest.approx((paid["attributed_revenue_usd"] - paid["spend_usd"]) / paid["spend_usd"])


def test_attribution_cost_per_new_patient_is_the_overview_kpi(reader):
    f = _whole_months(reader, 3)
    assert marketing_new_patients(reader, f)["cost_per_new_patient"] == pytest.approx(
        _kpi(reader, f, "cost_per_new_patient"), rel=1e-9
    )


def test_roi_has_one_unit_everywhere(reader):
    units = reader.df("select kpi, unit from marts.kpi_definitions where kpi = 'attributed_roi'")
    assert units["unit"].tolist() == ["pct"]


@pytest.mark.parametrize("days", [30, 90, 365])
def test_funnel_times_are_the_overview_kpis(reader, days):
    _, hi = data_date_range(reader)
    f = Filters(hi - timedelta(days=days - 1), hi)
    s = funnel_summary(reader, f).iloc[0]
    # the KPI sums whole microseconds (an exact, order-independent total), the page averages doubles
    assert s["hours_to_first_contact"] == pytest.approx(_kpi(reader, f, "hours_to_first_contact"), abs=1e-6)
    assert s["business_days_to_first_visit"] == pytest.approx(_kpi(reader, f, "business_days_to_first_visit"), rel=1e-9)


def test_leakage_visit_value_is_net_revenue_per_visit(reader):
    """revenue_leakage's per-visit value = the KPI net_revenue_per_visit over each clinic's 365 days to as_of."""
    as_of = pd.Timestamp(reader.df("select as_of from marts.build_info")["as_of"].iloc[0]).date()
    kpi = reader.df(
        """
        select clinic_id, sum(numerator) / sum(denominator) as per_visit
        from marts.practice_kpis
        where kpi = 'net_revenue_per_visit' and grain = 'day' and clinic_id <> 'ALL'
          and period_start > $as_of::date - 365 and period_start <= $as_of::date
        group by clinic_id""",
        {"as_of": as_of},
    )
    mart = reader.df("""select distinct clinic_id, unit_value_usd from marts.revenue_leakage
                        where category in ('no_shows', 'late_cancels', 'unfinished_plans')""")
    both = mart.merge(kpi, on="clinic_id", how="left")
    assert len(both) and both["per_visit"].notna().all()
    assert (both["unit_value_usd"] - both["per_visit"]).abs().max() < 1e-6


def test_leakage_is_a_range_with_adjustable_conservative_shares(reader):
    _, hi = data_date_range(reader)
    raw = revenue_leakage(reader, Filters(hi - timedelta(days=89), hi))
    assert not raw.empty
    df = leakage.with_range(raw)
    totals = leakage.by_category(df)
    assert (totals["low_usd"] <= totals["high_usd"] + 1e-9).all()
    assert (totals["high_usd"] <= totals["dollars_at_stake"] + 1e-9).all()
    denials = totals[totals["category"] == "unrecovered_denials"]
    if len(denials):  # actual dollars: never scaled
        assert float(denials["low_usd"].iloc[0]) == pytest.approx(float(denials["dollars_at_stake"].iloc[0]))
    # every estimated category is below its at-stake ceiling at the low end
    est = totals[totals["category"] != "unrecovered_denials"]
    assert (est["low_usd"] < est["dollars_at_stake"]).all()
    # the user's choice replaces the default; out-of-range and reversed input is clamped and ordered
    moved = leakage.by_category(
        leakage.with_range(raw, {"unfinished_plans": (1.2, 0.1), "unrecovered_denials": (0.0, 0.0)})
    )
    up = moved.set_index("category")
    assert up.loc["unfinished_plans", "low_usd"] == pytest.approx(0.1 * up.loc["unfinished_plans", "dollars_at_stake"])
    assert up.loc["unfinished_plans", "high_usd"] == pytest.approx(up.loc["unfinished_plans", "dollars_at_stake"])
    if "unrecovered_denials" in up.index:
        assert up.loc["unrecovered_denials", "low_usd"] == pytest.approx(
            up.loc["unrecovered_denials", "dollars_at_stake"]
        )
    assert set(leakage.ASSUMPTIONS) == {
        "no_shows",
        "late_cancels",
        "unfinished_plans",
        "unconverted_referrals",
        "unrecovered_denials",
    }


def test_monthly_kpis_agree_with_attribution_for_a_range_that_is_not_whole_months(reader):
    """Review #2: a range starting after the 1st (the default 90 days) used to drop the Overview's first month."""
    whole = _whole_months(reader, 3)
    f = Filters(whole.start + timedelta(days=2), whole.end)
    assert marketing_new_patients(reader, f)["cost_per_new_patient"] == pytest.approx(
        _kpi(reader, f, "cost_per_new_patient"), rel=1e-9
    )
    paid = marketing_totals(attribution_by_channel(reader, f), "linear")
    assert paid["roi"] == pytest.approx(_kpi(reader, f, "attributed_roi"), rel=1e-9)
