"""The tabular modelling recipe shared by the no-show and lead models, parameterised by their columns.

Both models are gradient-boosted trees on a few numeric and categorical features, stopped early and
calibrated on the *latest* slice of their training rows (the direction in time they will be used in),
with a logistic-regression baseline on the same features and plain-word reasons measured against a
typical row. Only the columns and the booster's settings differ, so those are the parameters.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MAX_CATEGORIES = 250  # HistGradientBoosting allows at most 255 categories per feature


def fit_categories(features: pd.DataFrame, categorical: Sequence[str],
                   max_categories: int = MAX_CATEGORIES) -> dict[str, list[str]]:
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


def integer_codes(x: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """The model matrix with categoricals as integer codes (-1 = missing or unseen).

    One-hot encoding integers is an order of magnitude faster than encoding Python strings at a million rows.
    """
    out = x.copy()
    for col in categorical:
        out[col] = out[col].cat.codes.astype(np.int32)
    return out


def fit_calibrated(booster: HistGradientBoostingClassifier, x: pd.DataFrame, y: np.ndarray, order: np.ndarray,
                   cal_share: float = 0.25, method: str = "sigmoid") -> CalibratedClassifierCV:
    """Fit the booster on the earlier rows; stop it and fit the calibrator on the last `cal_share` in time.

    `order` is each row's time. Using the later slice for early stopping and calibration keeps both out of
    sample and in the same direction in time as deployment (never shuffled folds).
    """
    ranks = np.argsort(np.argsort(order, kind="stable"), kind="stable")
    cut = int(len(y) * (1 - cal_share))
    fit_idx = np.flatnonzero(ranks < cut)
    cal_idx = np.flatnonzero(ranks >= cut)
    booster = booster.fit(x.iloc[fit_idx], y[fit_idx], X_val=x.iloc[cal_idx], y_val=y[cal_idx])
    model = CalibratedClassifierCV(FrozenEstimator(booster), method=method)
    return model.fit(x.iloc[cal_idx], y[cal_idx])


def logistic_baseline(numeric: Sequence[str], categorical: Sequence[str]) -> Pipeline:
    """Logistic regression on the same features (categoricals as integer codes, see `integer_codes`)."""
    num = make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler())
    cats = OneHotEncoder(handle_unknown="ignore", min_frequency=20)
    pre = ColumnTransformer([("num", num, list(numeric)), ("cat", cats, list(categorical))])
    return make_pipeline(pre, LogisticRegression(max_iter=1000, C=1.0))


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
