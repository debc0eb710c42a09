"""No-show peers: the product's recipe against what a practitioner would pick instead, on the SAME split.

    .venv/bin/python bench/peers_noshow.py HOME TRUTH   # HOME holds a built analytics.duckdb, TRUTH its truth/

`run(home, truth)` builds the product's point-in-time features (`ml.features.build_features`) and its time
split (`ml.no_show.time_split`: train before the day the last 20% of labelled appointments begins, test after)
and fits on the same training rows:

- `recipe`: the product's calibrated shallow trees (`ml.no_show.fit_calibrated`: LightGBM with 15 leaves,
  monotone history, stopped and Platt-calibrated on the latest quarter of the training period);
- `lightgbm`: LightGBM with its defaults (100 trees of 31 leaves, no calibration), the usual first pick;
- `logistic`: the product's logistic baseline on the same features (`ml.no_show.logistic_baseline`);
- `oracle`: the generator's true probability (truth/appointment_truth.csv) on the same test rows: the ceiling.

Each model's fit seconds are wall and CPU time with the same thread count (PTPULSE_ML_THREADS, default 1, as
the product trains), the fastest of two identical fits for the recipe and LightGBM. CPU seconds are the fair
comparison on a shared machine (wall time counts the waits while other processes run); both are recorded,
with every run. `recipe_auc_minus_lightgbm` is the paired difference with a 90% bootstrap interval. LightGBM
is the product's tree engine too (ml/tabular.py), so the peer measures the recipe around it (early stopping on
the future, monotone history, calibration), not a second library.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import artifacts, no_show, tabular, warehouse  # noqa: E402
from ml.evaluation import classification_metrics  # noqa: E402
from ml.features import build_features, labelled_targets  # noqa: E402

METRICS = ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece")


def _timed(fit: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fit()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _best_of(fit: Callable[[], Any], runs: int) -> tuple[Any, float, float, list[list[float]]]:
    """The fastest of `runs` identical fits (deterministic, so the same model), as timeit does: on a shared box
    the spread between runs is other processes' load, not the method. Returns every run's (wall, cpu) too."""
    times = []
    for _ in range(runs):
        out, wall, cpu = _timed(fit)
        times.append([round(wall, 2), round(cpu, 2)])
    return out, min(t[0] for t in times), min(t[1] for t in times), times


def _lightgbm(seed: int, threads: int) -> Any:
    """LightGBM with its defaults (the same thread count as the recipe: LightGBM ignores threadpoolctl)."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=threads, verbose=-1)


def _figures(y: np.ndarray, p: np.ndarray, wall: float | None, cpu: float | None) -> dict[str, Any]:
    m = classification_metrics(y, p)
    out: dict[str, Any] = {k: m[k] for k in METRICS}
    if wall is not None:
        out["fit_s"] = round(wall, 2)
        out["fit_cpu_s"] = round(cpu or 0.0, 2)
    return out


def paired_auc_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, reps: int = 100) -> dict[str, float]:
    """ROC AUC of a minus b and a 90% interval from a paired bootstrap of the test rows (same resample for both):
    tells a real loss from sampling noise when the two differ in the third decimal."""
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(reps):
        idx = rng.integers(0, len(y), len(y))
        diffs.append(roc_auc_score(y[idx], p_a[idx]) - roc_auc_score(y[idx], p_b[idx]))
    lo, hi = np.quantile(diffs, [0.05, 0.95])
    return {"difference": float(roc_auc_score(y, p_a) - roc_auc_score(y, p_b)), "p05": float(lo), "p95": float(hi)}


def run(home: Path, truth: Path | None, timing_runs: int = 2) -> dict[str, Any]:
    """Recipe, LightGBM default, logistic baseline and oracle on the product's time split (see module doc).

    The recipe and LightGBM are each fitted `timing_runs` times and timed by their fastest run (`_best_of`)."""
    con = duckdb.connect(str(Path(home) / "analytics.duckdb"), read_only=True)
    try:
        marts = warehouse.read_marts(con)
    finally:
        con.close()
    targets = labelled_targets(marts.appointments)
    y = (targets["status"] == "no_show").to_numpy(int)
    (features, feature_s, _) = _timed(lambda: build_features(targets, marts))
    starts = pd.to_datetime(targets["scheduled_start"]).reset_index(drop=True)
    split = no_show.time_split(starts)
    train = (starts < split).to_numpy()
    test = ~train
    t_sec = starts.astype("int64").to_numpy()
    numeric, categorical, dropped = no_show.usable_columns(features[train].reset_index(drop=True), t_sec[train])
    cats = no_show.fit_categories(features[train], categorical)
    x = no_show.encode(features, cats, numeric)
    x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    threads = tabular.threads()

    models: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=threads, user_api="openmp"):
        lgbm = _lightgbm(no_show.SEED, threads)
        _, wall, cpu, runs = _best_of(lambda: lgbm.fit(x_train, y_train), timing_runs)
        p_lgbm = lgbm.predict_proba(x_test)[:, 1]
        models["lightgbm"] = {**_figures(y_test, p_lgbm, wall, cpu), "trees": int(lgbm.n_estimators_), "runs": runs}

        recipe, wall, cpu, runs = _best_of(lambda: no_show.fit_calibrated(x_train, y_train, t_sec[train]), timing_runs)
        p_recipe = recipe.predict_proba(x_test)[:, 1]
        models["recipe"] = {**_figures(y_test, p_recipe, wall, cpu), "trees": no_show.tree_count(recipe), "runs": runs}

        codes_train, codes_test = no_show._codes(x_train), no_show._codes(x_test)
        logit, wall, cpu = _timed(lambda: no_show.logistic_baseline(numeric, categorical).fit(codes_train, y_train))
        models["logistic"] = _figures(y_test, logit.predict_proba(codes_test)[:, 1], wall, cpu)

    oracle = None
    truth_probs = artifacts.read_truth(
        Path(truth) if truth else None, "appointment_truth.csv", ("appointment_id", "p_no_show")
    )
    if truth_probs is not None:
        p_true = targets[["appointment_id"]].merge(truth_probs, on="appointment_id", how="left")["p_no_show"]
        tv = pd.to_numeric(p_true, errors="coerce").to_numpy(float)[test]
        ok = ~np.isnan(tv)
        oracle = {**_figures(y_test[ok], tv[ok], None, None), "coverage": float(ok.mean())}

    lgb, rec = models["lightgbm"], models["recipe"]
    return {
        "split_date": split.date().isoformat(),
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "base_rate_test": float(y_test.mean()),
        "features": numeric + categorical,
        "dropped_features": dropped,
        "feature_s": round(feature_s, 2),
        "threads": threads,
        "timing": f"fit seconds: the fastest of {timing_runs} identical fits (recipe, lightgbm); one fit (logistic)",
        "models": models,
        "oracle": oracle,
        "oracle_roc_auc": oracle["roc_auc"] if oracle else None,
        "recipe_auc_minus_lightgbm": paired_auc_difference(y_test, p_recipe, p_lgbm),
        "recipe_fit_cpu_over_lightgbm": rec["fit_cpu_s"] / max(lgb["fit_cpu_s"], 1e-9),
        "recipe_fit_wall_over_lightgbm": rec["fit_s"] / max(lgb["fit_s"], 1e-9),
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: bench/peers_noshow.py HOME [TRUTH]  (HOME holds a built analytics.duckdb)")
    result = run(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(json.dumps(result, indent=2, default=str))
