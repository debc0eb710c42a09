"""The forecast page's trust verdict comes from the backtest, in words a manager can act on."""

from __future__ import annotations

from app.lib import model_cards


def test_forecast_that_beats_the_baseline_says_by_how_much():
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 0.9, "coverage_80": 0.82})
    assert kind == "ok"
    assert "90%" in sentence and "82%" in sentence


def test_forecast_that_does_not_beat_the_baseline_is_flagged():
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 1.05, "coverage_80": 0.6})
    assert kind == "warn" and "no better" in sentence and "1.05" in sentence


def test_missing_backtest_figures_are_a_warning_not_a_crash(tmp_path):
    from ptpulse.core.config import get_settings

    assert model_cards.demand_backtest(get_settings(tmp_path)) is None
    assert model_cards.forecast_verdict({"relative_mase": None})[0] == "warn"


def test_backtest_of_the_built_practice_is_read(app_home):
    backtest = model_cards.demand_backtest(app_home)
    assert backtest is not None and backtest["horizon_weeks"] == 12 and backtest["relative_mase"] > 0
