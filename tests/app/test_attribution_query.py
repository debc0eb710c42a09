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
