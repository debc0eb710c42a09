"""The tabular modelling recipe shared by the no-show, denial and lead models, parameterised by their columns.

All three are gradient-boosted trees (LightGBM) on a few numeric and categorical features, stopped early and
calibrated on the *latest* slice of their training rows (the direction in time they will be used in), with a
logistic-regression baseline on the same features and plain-word reasons measured against a typical row. Only
the columns and the booster's settings differ, so those are the parameters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

THREADS_ENV = "PTPULSE_ML_THREADS"
MAX_CATEGORIES = 250  # rarer levels become missing: a level seen a handful of times is noise to the trees


def fit_categories(
    features: pd.DataFrame, categorical: Sequence[str], max_categories: int = MAX_CATEGORIES
) -> dict[str, list[str]]:
    """Category levels seen in training, most frequent first, capped (rarer levels become missing)."""
    out = {}
    for col in categorical:
        counts = features[col].astype("string").value_counts(dropna=True)
        ranked = sorted(counts.index, key=lambda v: (-counts[v], v))
        out[col] = [str(v) for v in ranked[:max_categories]]
    return out


def encode(features: pd.DataFrame, categories: dict[str, list[str]], numeric: Sequence[str]) -> pd.DataFrame:
    """The model matrix: floats for numerics, pandas categoricals with fixed levels (unseen -> NaN)."""
    x = pd.DataFrame(index=features.index)
    for col in numeric:
        x[col] = pd.to_numeric(features[col], errors="coerce").astype(float)
    for col, levels in categories.items():
        values = features[col].astype(object)
        known = values.isin(levels) & values.notna()
        x[col] = pd.Categorical(values.where(known, None), categories=levels)
    return x


def present_columns(features: pd.DataFrame, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): columns with at least one known value in these rows, and the entirely empty ones.

    Real exports often lack a field altogether (no plan of care, no referral date). An all-missing column
    carries no signal and crashes the booster's binning ("window shape cannot be larger than input array
    shape"), so it is dropped and the model card names it.
    """
    kept, dropped = [], []
    for col in columns:
        known = col in features and bool(features[col].notna().any())
        (kept if known else dropped).append(col)
    return kept, dropped


def threads() -> int:
    """Threads for model fitting: 1 unless $PTPULSE_ML_THREADS says otherwise.

    Measured on the 2-core box while dbt and tests ran beside us: HistGradientBoosting took 12 s with two
    OpenMP threads and 1.5 s with one (spinning threads starve each other under contention). One thread is
    the predictable choice on a shared machine; an idle dedicated box may set 2. LightGBM ignores
    threadpoolctl's limits, so the boosters get this number explicitly (`n_jobs`).
    """
    try:
        return max(1, int(os.environ.get(THREADS_ENV, "1")))
    except ValueError:
        return 1


class ShallowBooster(ClassifierMixin, BaseEstimator):
    """The one tree recipe of every PT Pulse model: LightGBM with few leaves and regularised leaves, because each
    signal is a sum of a few effects with noisy labels; early stopping on the log loss of the later validation
    slice passed to `fit` (X_val), so the number of trees is chosen on the future, the way the model is used.

    Why LightGBM (not scikit-learn's HistGradientBoosting): on the medium practice's no-show split its
    categorical split finding and leaf-wise growth gave a higher ROC AUC than HistGradientBoosting with any of
    the settings tried, including LightGBM's own, in less CPU time (~5 vs ~9 s; bench/peers_noshow.py, ml/README.md).
    `monotone` names the features whose risk may only rise (+1) or fall (-1); it is turned into LightGBM's
    per-column list at fit time, so a model works with whatever columns the practice's export has.
    Deterministic (fixed seed, deterministic row-wise histograms): the same rows give the same model.
    """

    def __init__(
        self,
        seed: int = 0,
        min_child_samples: int = 200,
        max_trees: int = 400,
        monotone: dict[str, int] | None = None,
        learning_rate: float = 0.1,
        num_leaves: int = 15,
        reg_lambda: float = 5.0,
        stopping_rounds: int = 15,
        n_jobs: int | None = None,
    ) -> None:
        self.seed = seed
        self.min_child_samples = min_child_samples
        self.max_trees = max_trees
        self.monotone = monotone
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.reg_lambda = reg_lambda
        self.stopping_rounds = stopping_rounds
        self.n_jobs = n_jobs

    def fit(self, X: pd.DataFrame, y: Any, X_val: pd.DataFrame | None = None, y_val: Any = None) -> ShallowBooster:
        """Fit on (X, y); with (X_val, y_val), stop when the validation log loss has not improved for
        `stopping_rounds` trees and keep the best count. Categoricals are pandas category columns (see `encode`)."""
        monotone = self.monotone or {}
        model = lgb.LGBMClassifier(
            n_estimators=self.max_trees,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            reg_lambda=self.reg_lambda,
            monotone_constraints=[int(monotone.get(c, 0)) for c in X.columns],
            random_state=self.seed,
            n_jobs=self.n_jobs or threads(),
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        stop: dict[str, Any] = {}
        if X_val is not None:
            stop = {
                "eval_X": X_val,
                "eval_y": y_val,
                "callbacks": [lgb.early_stopping(self.stopping_rounds, first_metric_only=True, verbose=False)],
            }
        self.booster_ = model.fit(X, y, **stop)
        self.classes_ = self.booster_.classes_
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        best = self.booster_.best_iteration_
        self.n_iter_ = int(best) if best and best > 0 else int(self.booster_.n_estimators_)
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The raw log-odds. The sigmoid calibration reads these (scikit-learn prefers them to probabilities):
        Platt scaling is a line in log-odds, and a line through skewed probabilities miscalibrates the tail
        (medium practice: test ECE 0.012 on probabilities vs 0.003 on log-odds)."""
        return self.booster_.predict(X, raw_score=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities from the best number of trees (LightGBM keeps the early-stopped count)."""
        return self.booster_.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def shallow_booster(
    seed: int,
    min_samples_leaf: int,
    max_iter: int,
    monotone: dict[str, int] | None = None,
    learning_rate: float = 0.1,
    num_leaves: int = 15,
) -> ShallowBooster:
    """The shared recipe (`ShallowBooster`) with a model's leaf size, tree cap, monotone risks and step."""
    return ShallowBooster(
        seed=seed,
        min_child_samples=min_samples_leaf,
        max_trees=max_iter,
        monotone=monotone or None,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
    )


def fit_rows(order: np.ndarray, cal_share: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibration) row positions: the earlier rows by `order` fit the booster, the latest calibrate it."""
    ranks = np.argsort(np.argsort(order, kind="stable"), kind="stable")
    cut = int(len(order) * (1 - cal_share))
    return np.flatnonzero(ranks < cut), np.flatnonzero(ranks >= cut)


def integer_codes(x: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """The model matrix with categoricals as integer codes (-1 = missing or unseen).

    One-hot encoding integers is an order of magnitude faster than encoding Python strings at a million rows.
    """
    out = x.copy()
    for col in categorical:
        out[col] = out[col].cat.codes.astype(np.int32)
    return out


def fit_calibrated(
    booster: ShallowBooster,
    x: pd.DataFrame,
    y: np.ndarray,
    order: np.ndarray,
    cal_share: float = 0.25,
    method: str = "sigmoid",
) -> CalibratedClassifierCV:
    """Fit the booster on the earlier rows; stop it and fit the calibrator on the last `cal_share` in time.

    `order` is each row's time. Using the later slice for early stopping and calibration keeps both out of
    sample and in the same direction in time as deployment (never shuffled folds).
    """
    fit_idx, cal_idx = fit_rows(order, cal_share)
    booster = booster.fit(x.iloc[fit_idx], y[fit_idx], X_val=x.iloc[cal_idx], y_val=y[cal_idx])
    model = CalibratedClassifierCV(FrozenEstimator(booster), method=method)
    return model.fit(x.iloc[cal_idx], y[cal_idx])


def _log1p_nonnegative(x: Any) -> Any:
    return np.log1p(np.clip(x, 0, None))


def logistic_baseline(numeric: Sequence[str], categorical: Sequence[str], log_columns: Sequence[str] = ()) -> Pipeline:
    """Logistic regression on the same features (categoricals as integer codes, see `integer_codes`).

    `log_columns` (non-negative, right-skewed: days, counts) enter as log(1 + x): a straight line in raw days
    would extrapolate a 20-day lead time's risk far past what the data shows (effects flatten out).
    """
    logged = [c for c in numeric if c in set(log_columns)]
    plain = [c for c in numeric if c not in set(log_columns)]
    num = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    log = make_pipeline(
        FunctionTransformer(_log1p_nonnegative, feature_names_out="one-to-one"),
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
    )
    cats = OneHotEncoder(handle_unknown="ignore", min_frequency=20)
    parts = [("num", num, plain), ("cat", cats, list(categorical))]
    if logged:
        parts.insert(1, ("log", log, logged))
    return make_pipeline(ColumnTransformer(parts), LogisticRegression(max_iter=1000, C=1.0))


def reference_values(features: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """A typical row: median of each numeric feature, most frequent level of each categorical."""
    ref: dict[str, Any] = {}
    for col in numeric:
        med = pd.to_numeric(features[col], errors="coerce").median()
        ref[col] = float(med) if pd.notna(med) else np.nan
    for col in categorical:
        mode = features[col].dropna().astype(str).mode()
        ref[col] = str(mode.iloc[0]) if len(mode) else None
    return ref
