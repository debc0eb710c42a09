"""Metrics for probabilities and forecasts, written once so every model is judged the same way.

Why hand-written pieces beside scikit-learn: calibration slope/intercept and ECE are not in sklearn, and
the forecast metrics (MASE, sMAPE, interval coverage) must use the exact definitions the backtest report
states. Everything here is a pure function of arrays.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_logistic(x: np.ndarray, y: np.ndarray, offset: np.ndarray | None = None, iters: int = 50) -> np.ndarray:
    """Unpenalised logistic regression by Newton-Raphson (few columns, so exact and fast).

    sklearn's LogisticRegression has no offset term, which the calibration intercept needs.
    """
    n, k = x.shape
    beta = np.zeros(k)
    off = np.zeros(n) if offset is None else offset
    for _ in range(iters):
        eta = x @ beta + off
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = np.clip(mu * (1 - mu), 1e-10, None)
        grad = x.T @ (y - mu)
        hess = (x * w[:, None]).T @ x + 1e-9 * np.eye(k)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept (Van Calster et al. 2019 definitions).

    slope: b in logit P(y=1) = a + b * logit(p)  (1 = ideal; < 1 means predictions too extreme);
    intercept: a in logit P(y=1) = a + 1 * logit(p), slope fixed at 1 (calibration-in-the-large, 0 = ideal).
    """
    y = np.asarray(y, dtype=float)
    lp = _logit(p)
    if y.min() == y.max():
        return float("nan"), float("nan")
    slope = _fit_logistic(np.column_stack([np.ones_like(lp), lp]), y)[1]
    intercept = _fit_logistic(np.ones((len(lp), 1)), y, offset=lp)[0]
    return float(slope), float(intercept)


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Equal-mass bins of predicted probability: mean predicted vs observed rate per bin.

    Equal-mass rather than equal-width because no-show probabilities crowd near the base rate (~10%):
    equal-width bins would leave most bins empty and one bin holding nearly every appointment.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(p) == 0:
        return []
    order = np.argsort(p, kind="stable")
    chunks = np.array_split(order, min(n_bins, len(p)))
    return [
        {"bin": i + 1, "mean_predicted": float(p[c].mean()), "observed_rate": float(y[c].mean()), "n": int(len(c))}
        for i, c in enumerate(chunks)
        if len(c)
    ]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE over equal-mass bins: the n-weighted mean |observed - predicted| (see reliability_bins)."""
    bins = reliability_bins(y, p, n_bins)
    total = sum(b["n"] for b in bins)
    if not total:
        return float("nan")
    return float(sum(b["n"] * abs(b["observed_rate"] - b["mean_predicted"]) for b in bins) / total)


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | int | None]:
    """Discrimination and calibration of probabilities `p` for binary outcomes `y`.

    Undefined metrics (a subgroup with one class only) are None rather than a misleading number.
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    out: dict[str, float | int | None] = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if len(y) else None,
        "mean_predicted": float(p.mean()) if len(p) else None,
    }
    two_classes = len(y) > 0 and 0 < y.sum() < len(y)
    out["roc_auc"] = float(roc_auc_score(y, p)) if two_classes else None
    out["pr_auc"] = float(average_precision_score(y, p)) if two_classes else None
    out["brier"] = float(brier_score_loss(y, p)) if len(y) else None
    slope, intercept = calibration_slope_intercept(y, p) if two_classes else (float("nan"), float("nan"))
    out["calibration_slope"] = None if math.isnan(slope) else slope
    out["calibration_intercept"] = None if math.isnan(intercept) else intercept
    out["ece"] = expected_calibration_error(y, p) if len(y) else None
    return out


def chance_auc(m: dict[str, Any]) -> float:
    """The ROC AUC a ranking with no signal stays below 97.5% of the time on these test rows: 0.5 plus two
    standard errors of the Mann-Whitney statistic under no signal, sqrt((P + N + 1) / (12 P N)). A model must
    clear it to be served: on ~1,900 test claims with 130 denials it is 0.553, and labels shuffled across the
    claims scored up to 0.52 (ml/README.md, Serving rule). 0.5 when the counts are unknown."""
    n, pos = m.get("n"), m.get("positives")
    if not n or pos is None or not 0 < pos < n:
        return 0.5
    neg = n - pos
    return 0.5 + 2.0 * math.sqrt((pos + neg + 1) / (12.0 * pos * neg))


# ---------------------------------------------------------------------------------------------- forecasts


def mase_scale(history: np.ndarray, m: int = 1) -> float:
    """In-sample MAE of the m-step naive forecast on the training history (Hyndman & Koehler 2006).

    m = 1 by default: weekly series here have two to three years of history, too little for a stable
    52-week-lag scale. A flat history (scale 0) falls back to 1 so the ratio stays finite.
    """
    h = np.asarray(history, dtype=float)
    if len(h) <= m:
        return 1.0
    scale = float(np.mean(np.abs(h[m:] - h[:-m])))
    return scale if scale > 0 else 1.0


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: MAE of the forecast over the in-sample naive MAE `scale`."""
    return float(np.mean(np.abs(np.asarray(actual, float) - np.asarray(forecast, float))) / scale)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent, 0..200; a 0/0 week counts as a perfect forecast (0)."""
    a = np.asarray(actual, float)
    f = np.asarray(forecast, float)
    denom = np.abs(a) + np.abs(f)
    ratio = np.divide(2 * np.abs(a - f), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100 * ratio.mean())


def interval_coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actuals inside [lower, upper]."""
    a = np.asarray(actual, float)
    return float(np.mean((a >= np.asarray(lower, float)) & (a <= np.asarray(upper, float))))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 pairs or no spread."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if len(a) < 3:
        return None
    ra = _rank(a)
    rb = _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    # average ranks of ties
    vals, inverse = np.unique(x, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]
