"""The tree engine every model shares (ml/tabular.ShallowBooster, LightGBM): reproducible, monotone where told,
stopped on the later slice, on the configured thread count, and a saved no-show model scores the same after
loading."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml import artifacts, tabular
from ml.features import build_features, labelled_targets, upcoming_targets
from ml.no_show import BOOSTED, explain, fit_final, tree_count


def _toy(n: int = 6000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Risk falls with `visits` (against a +1 constraint we set in one test), rises with `lead`, depends on a level."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "visits": rng.integers(0, 20, n).astype(float),
            "lead": rng.exponential(5.0, n),
            "payer": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c"]),
        }
    )
    x.loc[rng.random(n) < 0.1, "lead"] = np.nan  # missing values go through untouched
    logit = -1.5 - 0.12 * x["visits"] + 0.15 * x["lead"].fillna(5.0) + np.where(x["payer"] == "c", 0.8, 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return x, y


def test_booster_is_lightgbm_reproducible_and_threaded_as_configured(monkeypatch):
    x, y = _toy()
    monkeypatch.setenv(tabular.THREADS_ENV, "2")
    a = tabular.shallow_booster(7, min_samples_leaf=50, max_iter=60).fit(x, y)
    b = tabular.shallow_booster(7, min_samples_leaf=50, max_iter=60).fit(x, y)
    assert type(a.booster_).__module__.startswith("lightgbm")
    assert a.booster_.get_params()["n_jobs"] == 2  # explicit: threadpoolctl does not reach LightGBM
    assert a.booster_.get_params()["deterministic"] is True
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    assert a.n_iter_ == 60  # no validation slice: every tree is kept
    monkeypatch.setenv(tabular.THREADS_ENV, "many")
    assert tabular.threads() == 1


def test_monotone_risk_only_rises_along_the_constrained_feature():
    x, y = _toy()
    free = tabular.shallow_booster(1, min_samples_leaf=50, max_iter=80).fit(x, y)
    tied = tabular.shallow_booster(1, min_samples_leaf=50, max_iter=80, monotone={"visits": 1}).fit(x, y)
    grid = pd.concat([x.iloc[:200]] * 20, ignore_index=True)
    grid["visits"] = np.repeat(np.arange(20.0), 200)
    curve = lambda m: m.predict_proba(grid)[:, 1].reshape(20, 200)  # noqa: E731  rows: visits 0..19
    assert (np.diff(curve(tied), axis=0) >= -1e-12).all()
    assert (np.diff(curve(free), axis=0) < 0).any()  # the data falls; only the constraint keeps it flat or up
    assert tied.booster_.get_params()["monotone_constraints"] == [1, 0, 0]  # by column, categoricals free


def test_early_stopping_keeps_the_trees_that_help_the_later_slice():
    x, y = _toy(seed=1)
    order = np.arange(len(y))
    fit_idx, cal_idx = tabular.fit_rows(order, 0.25)
    noise = np.random.default_rng(2).integers(0, 2, len(cal_idx))  # a slice where no tree helps
    stopped = tabular.shallow_booster(3, min_samples_leaf=50, max_iter=400).fit(
        x.iloc[fit_idx], y[fit_idx], X_val=x.iloc[cal_idx], y_val=noise
    )
    assert 1 <= stopped.n_iter_ < 400
    assert stopped.n_iter_ == stopped.booster_.best_iteration_
    model = tabular.fit_calibrated(tabular.shallow_booster(3, min_samples_leaf=50, max_iter=400), x, y, order)
    assert 1 <= model.calibrated_classifiers_[0].estimator.estimator.n_iter_ < 400
    p = model.predict_proba(x.iloc[cal_idx])[:, 1]
    assert abs(p.mean() - y[cal_idx].mean()) < 0.02  # Platt-calibrated on that slice


def test_saved_no_show_model_loads_and_scores_the_same(synthetic, tmp_path):
    marts, _ = synthetic
    targets = labelled_targets(marts.appointments)
    features = build_features(targets, marts)
    y = (targets["status"] == "no_show").to_numpy(int)
    model = fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v")
    assert model.kind == BOOSTED and 1 <= tree_count(model.estimator) <= 400
    path = tmp_path / "model.joblib"
    artifacts.save_model(path, model)
    loaded = artifacts.load_model(path)
    assert loaded is not None
    upcoming = build_features(upcoming_targets(marts.appointments), marts)
    before, after = explain(model, upcoming), explain(loaded, upcoming)
    pd.testing.assert_frame_equal(before, after)
    assert len(after) == len(upcoming) and after["probability"].between(0, 1).all()


def test_thread_count_does_not_change_the_model(monkeypatch):
    """deterministic + row-wise histograms: one or two threads give the same probabilities."""
    x, y = _toy(seed=3)
    monkeypatch.setenv(tabular.THREADS_ENV, "1")
    one = tabular.shallow_booster(5, min_samples_leaf=50, max_iter=50).fit(x, y).predict_proba(x)
    monkeypatch.setenv(tabular.THREADS_ENV, "2")
    other = tabular.shallow_booster(5, min_samples_leaf=50, max_iter=50).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(one, other, rtol=0, atol=1e-12)
