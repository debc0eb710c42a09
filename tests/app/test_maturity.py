"""Issue 13, the design flaw: cohort KPIs of young periods say they are maturing, and denial rate counts only
claims a payer has answered. Recomputed from the claims and episodes marts, not from practice_kpis' SQL."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from app_helpers import open_page

from app.lib import auth
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.overview import kpi_summary, kpi_trend


@pytest.fixture(scope="module")
def reader(app_home):
    return DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))


def test_denial_rate_is_denied_over_adjudicated_by_submission_month(reader):
    got = reader.df("""select period_start, numerator, denominator, cohort, pending from marts.practice_kpis
                       where kpi = 'denial_rate' and grain = 'month' and clinic_id = 'ALL' order by 1""")
    claims = reader.df("""select cast(date_trunc('month', submitted_at) as date) as period_start,
                                 count(*) filter (where is_denied) as denied,
                                 count(*) filter (where is_denied or payer_paid_usd > 0 or contractual_adj_usd <> 0)
                                   as adjudicated,
                                 count(*) as submitted
                          from marts.claims, marts.build_info b where submitted_at::date <= b.as_of::date
                            -- the cohort: claims sent to a payer (no payer answers a self-pay or payer-less one)
                            and payer_id is not null and payer_class is distinct from 'self_pay'
                          group by 1 order by 1""")
    both = got.merge(claims, on="period_start", how="outer")
    assert both[["numerator", "denied"]].notna().all().all()
    assert (both["numerator"] == both["denied"]).all()
    assert (both["denominator"] == both["adjudicated"]).all()
    assert (both["cohort"] == both["submitted"]).all()
    assert (both["pending"] == both["submitted"] - both["adjudicated"]).all()


def test_recent_periods_are_maturing_and_old_ones_are_not(reader):
    lo, hi = data_date_range(reader)
    recent = kpi_summary(reader, Filters(hi - timedelta(days=89), hi)).set_index("kpi")
    # claims submitted in the last days of the period cannot all have a payer answer yet
    assert recent.loc["denial_rate", "pending"] > 0
    share = 1 - recent.loc["denial_rate", "pending"] / recent.loc["denial_rate", "cohort"]
    assert bool(recent.loc["denial_rate", "is_maturing"]) == (share < 0.95)
    # flow KPIs never mature
    assert not recent.loc[["no_show_rate", "net_revenue_per_visit", "units_per_visit"], "is_maturing"].any()
    year_ago = Filters(hi - timedelta(days=365 + 89), hi - timedelta(days=365))
    old = kpi_summary(reader, year_ago).set_index("kpi")
    assert not old.loc[
        ["denial_rate", "early_dropout_rate", "referral_conversion", "conversion_7day"], "is_maturing"
    ].any()


def test_early_dropout_counts_only_episodes_with_an_outcome(reader):
    got = reader.df("""select sum(numerator) as n, sum(denominator) as d, sum(cohort) as c, sum(pending) as p
                       from marts.practice_kpis where kpi = 'early_dropout_rate' and grain = 'month'
                         and clinic_id = 'ALL'""").iloc[0]
    eps = reader.df("""select count(*) filter (where early_dropout) as n,
                              count(*) filter (where is_closed or attended_visits >= 3) as d,
                              count(*) as c
                       from marts.episodes, marts.build_info b
                       where eval_date is not null and eval_date <= b.as_of::date""").iloc[0]
    assert (got["n"], got["d"], got["c"]) == (eps["n"], eps["d"], eps["c"])
    assert got["p"] == eps["c"] - eps["d"]


def test_trend_marks_each_months_maturity(reader):
    _, hi = data_date_range(reader)
    trend = kpi_trend(reader, Filters(hi - timedelta(days=30), hi), "denial_rate")
    assert trend["is_maturing"].iloc[-1]  # the current month waits for payers
    assert not trend["is_maturing"].iloc[:-6].any()  # half a year back everything is in
    assert isinstance(trend["resolved_share"], pd.Series)


def test_overview_tile_says_maturing(app_home):
    at = open_page(app_home, "owner", "overview")
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert "Denial rate (maturing)" in labels, labels
    assert any("maturing" in c.value for c in at.caption)
