"""Attribution & ROI compares models over the same period: data-driven credit is re-based onto it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.lib import auth
from app.lib.db import AnalyticsDb
from app.lib.queries.attribution import attribution_by_channel
from app.lib.queries.base import DbReader, Filters, data_date_range


@pytest.mark.parametrize("days", [90, 10_000])
def test_every_model_distributes_the_same_period_total(app_home, days):
    reader = DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("marketing"))
    lo, hi = data_date_range(reader)
    f = Filters(max(lo, hi - timedelta(days=days)), hi)
    df = attribution_by_channel(reader, f)
    totals = df.groupby("model")[["attributed_conversions", "attributed_revenue_usd"]].sum()
    assert {"linear", "markov", "shapley"} <= set(totals.index)
    linear = totals.loc["linear"]
    assert linear["attributed_revenue_usd"] > 0
    for model in totals.index:
        assert totals.loc[model, "attributed_revenue_usd"] == pytest.approx(linear["attributed_revenue_usd"], rel=1e-6)
        assert totals.loc[model, "attributed_conversions"] == pytest.approx(linear["attributed_conversions"], rel=1e-6)
    # spend is the period's, the same for every model of a channel
    assert (df.groupby("channel")["spend_usd"].nunique(dropna=False) <= 1).all()


def test_incremental_effect_sits_beside_path_credit(app_home):
    """The MMM's shares (negative allowed) beside Markov's credit shares, one row per channel, and the figure
    shows both with the MMM's interval."""
    from app.lib import charts
    from app.lib.queries.attribution import budget_guidance, incrementality

    reader = DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("marketing"))
    inc = incrementality(reader)
    assert len(inc) == 6 and inc["channel"].is_unique
    assert set(inc["path_model"]) == {"markov"}
    assert inc["share"].sum() == pytest.approx(1.0)
    assert inc["path_share"].sum() == pytest.approx(1.0)  # over the marketing channels, like the MMM share
    social = inc.set_index("channel").loc["social"]
    assert social["share"] < 0 < social["path_share"]  # what paths cannot see
    assert (inc["share_lo"] <= inc["share"]).all() and (inc["share"] <= inc["share_hi"]).all()

    guide = budget_guidance(inc)
    assert "social" in guide["negative"] + guide["uncertain"]
    assert sorted(guide["negative"] + guide["uncertain"] + guide["positive"]) == sorted(inc["channel"])
    assert "rank correlation" in guide["text"] and "budget decisions" in guide["text"]

    fig = charts.incrementality_vs_credit(inc, "Markov")
    path_bar, mmm_bar = fig.data
    assert list(path_bar.y) == pytest.approx(inc["path_share"].tolist())
    assert list(mmm_bar.y) == pytest.approx(inc["share"].tolist())
    assert list(mmm_bar.error_y.array) == pytest.approx((inc["share_hi"] - inc["share"]).tolist())
    assert list(mmm_bar.error_y.arrayminus) == pytest.approx((inc["share"] - inc["share_lo"]).tolist())
    empty = charts.incrementality_vs_credit(inc.iloc[0:0], "Markov")
    assert not empty.data and "marketing-mix model" in empty.layout.annotations[0].text
