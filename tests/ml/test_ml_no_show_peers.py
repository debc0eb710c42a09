"""The no-show peers bench: its paired AUC interval and the issue-12 checks it records (bench/ only, no lightgbm
needed here: the checks are judged on figures, the interval on arrays)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.bench_ml_peers import checks  # noqa: E402
from bench.peers_noshow import paired_auc_difference  # noqa: E402


def _passing() -> tuple[dict, dict, dict]:
    noshow = {
        "models": {
            "recipe": {"roc_auc": 0.706, "fit_cpu_s": 6.0, "calibration_slope": 1.0},
            "lightgbm": {"roc_auc": 0.705, "fit_cpu_s": 5.0},
        }
    }
    demand = {"models": {"product": {"pooled": {"relative_mase": 0.84, "coverage_80": 0.8}}}}
    attribution = {
        "models": [{"model": "markov", "spearman_incremental": 0.7}, {"model": "mmm", "spearman_incremental": 0.95}],
        "negative_channel_negative": True,
    }
    return noshow, demand, attribution


def test_checks_pass_on_target_figures():
    assert all(checks(*_passing()).values())


@pytest.mark.parametrize(
    ("part", "path", "value", "failing"),
    [
        (0, ("models", "recipe", "roc_auc"), 0.704, "no-show: recipe roc_auc >= lightgbm"),
        (0, ("models", "recipe", "fit_cpu_s"), 10.5, "no-show: recipe fit cpu <= 2x lightgbm"),
        (0, ("models", "recipe", "calibration_slope"), 1.2, "no-show: recipe calibration_slope in 0.9-1.1"),
        (1, ("models", "product", "pooled", "relative_mase"), 0.86, "demand: product relative_mase <= 0.85"),
        (1, ("models", "product", "pooled", "coverage_80"), 0.9, "demand: product coverage_80 in 0.75-0.85"),
    ],
)
def test_each_check_fails_past_its_target(part, path, value, failing):
    parts = list(_passing())
    node = parts[part]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    result = checks(*parts)
    assert not result[failing]
    assert sum(not v for v in result.values()) == 1


def test_a_failed_part_fails_its_checks_not_the_others():
    noshow, demand, attribution = _passing()
    result = checks({"error": "SystemExit: lightgbm is not installed"}, demand, attribution)
    assert not any(v for k, v in result.items() if k.startswith("no-show"))
    assert all(v for k, v in result.items() if not k.startswith("no-show"))
    attribution["models"][1]["spearman_incremental"] = 0.85
    attribution["negative_channel_negative"] = False
    result = checks(noshow, demand, attribution)
    assert not result["attribution: mmm spearman >= 0.9"]
    assert not result["attribution: negative channel negative"]


def test_paired_auc_difference_separates_a_better_model_from_noise():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=20_000)
    y = (rng.random(20_000) < 1 / (1 + np.exp(-(signal - 2)))).astype(int)
    good = signal + rng.normal(scale=0.5, size=signal.size)
    worse = signal + rng.normal(scale=2.0, size=signal.size)
    same = paired_auc_difference(y, good, good, reps=30)
    assert same == {"difference": 0.0, "p05": 0.0, "p95": 0.0}
    better = paired_auc_difference(y, good, worse, reps=30)
    assert 0 < better["p05"] <= better["difference"] <= better["p95"]
