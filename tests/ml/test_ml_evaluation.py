"""Metric definitions: calibration slope/intercept, ECE, MASE, sMAPE, coverage, Spearman."""

from __future__ import annotations

import numpy as np
import pytest

from ml.evaluation import (
    calibration_slope_intercept,
    classification_metrics,
    expected_calibration_error,
    interval_coverage,
    mase,
    mase_scale,
    reliability_bins,
    smape,
    spearman,
)


def _calibrated_sample(n: int = 40_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-2.2, 1.0, n)))
    y = (rng.random(n) < p).astype(int)
    return y, p


def test_perfectly_calibrated_probabilities():
    y, p = _calibrated_sample()
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)
    assert expected_calibration_error(y, p) < 0.01


def test_overconfident_probabilities_have_slope_below_one():
    y, p = _calibrated_sample()
    logit = np.log(p / (1 - p))
    sharp = 1 / (1 + np.exp(-(2.0 * (logit + 2.2) - 2.2)))  # twice as extreme around the centre
    slope, _ = calibration_slope_intercept(y, sharp)
    assert slope == pytest.approx(0.5, abs=0.05)
    shifted = 1 / (1 + np.exp(-(logit + 0.7)))  # systematically too high
    _, intercept = calibration_slope_intercept(y, shifted)
    assert intercept == pytest.approx(-0.7, abs=0.05)


def test_reliability_bins_are_equal_mass_and_complete():
    y, p = _calibrated_sample(1003)
    bins = reliability_bins(y, p, 10)
    assert sum(b["n"] for b in bins) == 1003
    assert max(b["n"] for b in bins) - min(b["n"] for b in bins) <= 1
    assert all(bins[i]["mean_predicted"] <= bins[i + 1]["mean_predicted"] for i in range(9))


def test_classification_metrics_handle_one_class():
    m = classification_metrics(np.zeros(20, int), np.full(20, 0.1))
    assert m["roc_auc"] is None and m["calibration_slope"] is None
    assert m["brier"] == pytest.approx(0.01)


def test_forecast_metrics():
    history = np.array([10, 12, 11, 13, 12.0])
    assert mase_scale(history) == pytest.approx(np.mean([2, 1, 2, 1]))
    assert mase([10, 20], [12, 18], scale=2.0) == pytest.approx(1.0)
    assert smape([100, 0], [100, 0]) == 0.0
    assert smape([100], [300]) == pytest.approx(100.0)
    assert interval_coverage([1, 5, 9], [0, 6, 8], [2, 7, 10]) == pytest.approx(2 / 3)
    assert mase_scale(np.ones(10)) == 1.0  # flat history does not divide by zero


def test_spearman_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert spearman([1, 2], [1, 2]) is None
