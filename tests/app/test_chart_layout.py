"""Charts that read right: monthly measures on monthly ticks, young months shaded, and one layout whose
legend sits at the bottom of the figure (never over the title), with labels rather than codes."""

from __future__ import annotations

import pandas as pd

from app.lib import charts

MONTHS = pd.to_datetime(["2026-09-01", "2026-10-01", "2026-11-01"])


def test_a_short_monthly_series_gets_monthly_ticks_not_weekly_ones():
    df = pd.DataFrame(
        {
            "month": list(MONTHS) * 2,
            "channel": ["Search ads"] * 3 + ["Social media"] * 3,
            "roi": [0.5, 0.4, 0.1, 0.3, 0.2, 0.05],
            "is_maturing": [False, True, True] * 2,
        }
    )
    fig = charts.monthly_metric(df, "roi", "ROI", "pct")
    assert fig.layout.xaxis.dtick == "M1" and fig.layout.xaxis.tickformat == "%b %Y"
    shaded = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(shaded) == 1  # one band over the trailing maturing months
    assert pd.Timestamp(shaded[0].x0) < MONTHS[1] < MONTHS[2] < pd.Timestamp(shaded[0].x1)
    assert pd.Timestamp(shaded[0].x0) > MONTHS[0]
    assert {t.name for t in fig.data} == {"Search ads", "Social media"}


def test_two_years_of_months_tick_every_quarter():
    months = pd.date_range("2025-01-01", periods=24, freq="MS")
    df = pd.DataFrame({"month": months, "value": range(24), "is_maturing": [False] * 24})
    fig = charts.kpi_trend(df, "No-show rate", "pct", None, 0.1, target=0.08)
    assert fig.layout.xaxis.dtick == "M3"
    assert any(a.text == "target" for a in fig.layout.annotations)


def test_every_chart_shares_the_layout_legend_at_the_bottom_title_at_the_top():
    df = pd.DataFrame({"month": MONTHS, "label": ["No-shows"] * 3, "low_usd": [1, 2, 3], "high_usd": [2, 3, 4]})
    for fig in (charts.leakage_trend(df), charts.empty("Nothing")):
        legend, title = fig.layout.legend, fig.layout.title
        assert (legend.yref, legend.y, legend.yanchor, legend.orientation) == ("container", 0, "bottom", "h")
        assert legend.title.text == "" and title.x == 0
    assert charts.leakage_trend(df).layout.xaxis.dtick == "M1"


def test_risk_bands_are_labelled():
    fig = charts.risk_bands(pd.DataFrame({"risk_band": ["low", "high", "medium"], "appointments": [5, 2, 3]}))
    assert list(fig.data[0].x) + list(fig.data[1].x) + list(fig.data[2].x) == ["Low", "Medium", "High"]
