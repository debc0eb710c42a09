"""The tabular modelling recipe shared by the no-show and lead models, parameterised by their columns.

Both models are gradient-boosted trees on a few numeric and categorical features, stopped early and
calibrated on the *latest* slice of their training rows (the direction in time they will be used in),
with a logistic-regression baseline on the same features and plain-word reasons measured against a
typical row. Only the columns and the booster's settings differ, so those are the parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

MAX_CATEGORIES = 250  # HistGradientBoosting allows at most 255 categories per feature


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


def shallow_booster(
    seed: int,
    min_samples_leaf: int,
    max_iter: int,
    monotone: dict[str, int] | None = None,
    learning_rate: float = 0.08,
) -> HistGradientBoostingClassifier:
    """The one tree recipe of every PT Pulse model: shallow (depth 3), regularised trees, because each signal
    is a sum of a few effects with noisy labels; early stopping on the loss of the later validation slice
    passed to `fit` (X_val), so the number of trees is chosen on the future, the way the model is used.
    Models differ only in leaf size, the tree cap, which features may only push risk one way and the step
    (a larger step on a large training set needs half the trees for the same held-out loss: fit time is
    proportional to the trees, and each tree scans every row)."""
    return HistGradientBoostingClassifier(
        learning_rate=learning_rate,
        max_iter=max_iter,
        max_depth=3,
        min_samples_leaf=min_samples_leaf,
        l2_regularization=5.0,
        categorical_features="from_dtype",
        monotonic_cst=monotone or None,
        early_stopping=True,
        scoring="loss",
        n_iter_no_change=15,
        tol=1e-5,
        random_state=seed,
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
    booster: HistGradientBoostingClassifier,
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
