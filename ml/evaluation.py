"""Metrics for probabilities and forecasts, written once so every model is judged the same way.

Why hand-written pieces beside scikit-learn: calibration slope/intercept and ECE are not in sklearn, and
the forecast metrics (MASE, sMAPE, interval coverage) must use the exact definitions the backtest report
states. Everything here is a pure function of arrays, and so is the one rule by which the no-show, lead and denial
models choose their candidate and decide whether it is served (`choose_candidate`, `serving_decision`, at the end):
each model passes its own fitting, baseline, fallback and words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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


# ------------------------------------------------------------------------------ choosing and serving a model
#
# The no-show, lead and denial models share one protocol (ml/README.md, "Serving rule"):
# 1. the candidates (boosted trees, logistic regression) are fitted on the training window minus its latest
#    VALIDATION_SHARE and compared on that latest part, the validation slice (`choose_candidate`); the test rows
#    play no part in the choice;
# 2. the chosen candidate is refitted on the whole training window and measured once on the test rows: the
#    headline figures. The other candidate is not measured there, so nothing can be re-chosen on the test rows;
# 3. the chosen model is served only if, on the test rows, it beats its model-free baseline and chance on ranking
#    and the constant training rate on Brier (`serving_decision`); else a model-free fallback is served when the
#    model has one and it passes the same bars against chance and the constant, else nothing (withheld).

VALIDATION_SHARE = 0.2  # the latest fifth of the training window (by time) chooses between the candidates
MIN_PER_CLASS = 10  # each outcome in each slice of the choice (ml/sufficiency.py MIN_PER_CLASS: the same bar)
MODEL_NAMES = {"boosted_trees": "boosted trees", "logistic_regression": "logistic regression"}


@dataclass(frozen=True)
class Words:
    """How a model's choice and gate are said on its card: its outcome, rows and baselines in plain words."""

    positives: str  # the outcome, counted: "no-shows"
    negatives: str  # the other outcome: "attended"
    rows: str  # "appointments"
    ranked: str  # what the model ranks, in the gate's reasons: "no-shows"
    baseline: str  # the model-free ranking the model must beat: "the patient's own history rate"
    constant: str  # "the constant no-show rate"
    fallback: str | None = None  # the model-free score served instead of a losing model, if any


def not_measured(note: str) -> dict[str, Any]:
    """The test figures of a candidate that was not measured on the test rows (it lost the choice, or was not
    fitted): None where a figure would be, and why."""
    return {"roc_auc": None, "brier": None, "note": note}


@dataclass(frozen=True)
class Choice:
    """Which candidate a model deploys, chosen on the validation slice, and why (`chosen_on`, for the card)."""

    kind: str
    chosen_on: str
    by_default: bool
    validation: dict[str, Any]  # the slice (from, n, positives, n_fit) and each candidate's figures on it

    def validation_auc(self, kind: str) -> float | None:
        return (self.validation.get(kind) or {}).get("roc_auc")

    def unmeasured(self, kind: str) -> dict[str, Any]:
        """The test figures of candidate `kind` when it is not the chosen one: none, and why (`not_measured`)."""
        note = (self.validation.get(kind) or {}).get("note")  # could not be fitted before the validation slice
        if note is None:
            note = (
                f"not measured: {self.chosen_on}"
                if self.by_default
                else f"not measured on the test period: the {MODEL_NAMES.get(self.kind, self.kind)} was chosen "
                "over it on the validation slice"
            )
        return not_measured(note)


def _too_few_to_choose(
    y: np.ndarray,
    fit: np.ndarray,
    validation: np.ndarray,
    order: np.ndarray,
    cal_share: float,
    words: Words,
    min_n: int,
) -> str | None:
    """Why the validation slice cannot choose (too few of an outcome in it, or in the slices the candidates are
    fitted and calibrated on before it), else None."""
    from ml.tabular import fit_rows  # the recipe's own split of the fit window (lazy: lightgbm is heavy to import)

    fit_idx = np.flatnonzero(fit)
    booster, calibration = fit_rows(order[fit_idx], cal_share)
    for name, idx in (
        ("validation slice", np.flatnonzero(validation)),
        ("trees' fit slice before it", fit_idx[booster]),
        ("calibration slice before it", fit_idx[calibration]),
    ):
        pos = int(y[idx].sum())
        neg = len(idx) - pos
        if pos < min_n or neg < min_n:
            return (
                f"the {name} holds {pos:,} {words.positives} and {neg:,} {words.negatives} (fewer than {min_n} of each)"
            )
    return None


def choose_candidate(
    candidates: Sequence[str],
    fit_predict: Callable[[str, np.ndarray, np.ndarray], np.ndarray | str],
    y: np.ndarray,
    fit: np.ndarray,
    validation: np.ndarray,
    order: np.ndarray,
    *,
    default: str,
    start: str,
    words: Words,
    cal_share: float = 0.25,
    min_per_class: int = MIN_PER_CLASS,
) -> Choice:
    """The candidate with the highest ROC AUC on the validation slice (ties go to the earlier in `candidates`).

    `fit_predict(kind, fit_rows, score_rows)` fits candidate `kind` on the boolean rows `fit_rows` (the model's own
    recipe: columns, categories, calibration) and returns its probabilities on `score_rows`, or a sentence saying
    why it cannot be fitted there (that candidate is then left out). `fit` is the training window before the
    validation slice, `validation` the slice (the latest part of the training window, `start` its first day),
    `order` each row's time. When the slice or the fit window before it holds fewer than `min_per_class` of an
    outcome, or no candidate can be scored, `default` is chosen and `chosen_on` says so.
    """
    y = np.asarray(y, dtype=int)
    fit, validation = np.asarray(fit, dtype=bool), np.asarray(validation, dtype=bool)
    info: dict[str, Any] = {
        "from": start,
        "n": int(validation.sum()),
        "positives": int(y[validation].sum()),
        "n_fit": int(fit.sum()),
        "share_of_training": VALIDATION_SHARE,
    }
    default_text = (
        f"default: the {MODEL_NAMES.get(default, default)}, because the candidates could not be compared on the "
        f"validation slice (the latest {VALIDATION_SHARE:.0%} of the training window, from {start}): "
    )
    why = _too_few_to_choose(y, fit, validation, order, cal_share, words, min_per_class)
    if why:
        return Choice(default, default_text + why, True, info)
    for kind in candidates:
        p = fit_predict(kind, fit, validation)
        info[kind] = {"note": p} if isinstance(p, str) else classification_metrics(y[validation], p)
    scored = [k for k in candidates if info[k].get("roc_auc") is not None]
    if not scored:
        return Choice(default, default_text + "no candidate could be fitted before it", True, info)
    best = scored[0]
    for kind in scored[1:]:
        if info[kind]["roc_auc"] > info[best]["roc_auc"]:
            best = kind
    versus = ", ".join(f"{MODEL_NAMES.get(k, k)} {info[k]['roc_auc']:.3f}" for k in scored)
    alone = (
        ""
        if len(scored) > 1
        else f" (the only candidate: {'; '.join(info[k]['note'] for k in candidates if k not in scored)})"
    )
    return Choice(
        best,
        f"the validation slice: the latest {VALIDATION_SHARE:.0%} of the training window (from {start}: "
        f"{info['n']:,} {words.rows}), the candidates fitted on the {info['n_fit']:,} before it; ROC AUC {versus}"
        f"{alone}. The test rows were not used to choose (ml/README.md, Serving rule)",
        False,
        info,
    )


@dataclass(frozen=True)
class Serving:
    """What `serving_decision` decided: the kind served (the candidate, the fallback, or None: withheld), why in
    plain words, and the numbers it compared (all on the test rows)."""

    served: str | None
    reason: str
    candidate: str
    roc_auc: float
    baseline_roc_auc: float
    chance_auc: float
    brier: float
    brier_constant: float
    fallback: str | None = None
    fallback_roc_auc: float | None = None
    fallback_chance_auc: float | None = None
    fallback_brier: float | None = None

    @property
    def withheld(self) -> bool:
        return self.served is None

    def figures(self) -> dict[str, Any]:
        """The compared numbers, for the card (NaN as None)."""
        out = {k: v for k, v in asdict(self).items() if k != "reason"}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def serving_decision(
    candidate: str,
    m: dict[str, Any],
    m_baseline: dict[str, Any],
    brier_constant: float,
    words: Words,
    fallback: tuple[str, dict[str, Any]] | None = None,
) -> Serving:
    """May the chosen model be served? The one rule of the no-show, lead and denial models.

    `m` are the candidate's test metrics, `m_baseline` the model-free ranking's (the patient's history rate, the
    source-type rate, the payer's rate), `brier_constant` the Brier score of always saying the training rate on
    the same rows. The candidate is served when its ROC AUC is strictly above the baseline's and above `chance_auc`
    (0.5 plus two standard errors of a signal-free ranking on these rows) and its Brier strictly below the
    constant's. An unknown baseline ROC AUC cannot be beaten. Else `fallback` (kind, test metrics), a model-free
    score, is served when its ROC AUC is above chance and its Brier below the constant's; else nothing is served.
    """
    name = MODEL_NAMES.get(candidate, candidate)
    auc, base, brier = _num(m.get("roc_auc")), _num(m_baseline.get("roc_auc")), _num(m.get("brier"))
    chance = chance_auc(m)
    figures = {
        "candidate": candidate,
        "roc_auc": auc,
        "baseline_roc_auc": base,
        "chance_auc": chance,
        "brier": brier,
        "brier_constant": brier_constant,
    }
    ranks = auc > base and auc > chance  # False when any is NaN
    if ranks and brier < brier_constant:
        return Serving(
            candidate,
            f"the {name} ranked {words.ranked} better than {words.baseline} (ROC AUC {auc:.3f} vs {base:.3f}) and "
            f"than chance ({chance:.3f}), and predicted them better than {words.constant} (Brier {brier:.4f} vs "
            f"{brier_constant:.4f})",
            **figures,
        )
    if ranks:
        lost = (
            f"the {name} predicted {words.ranked} no better than {words.constant} (Brier {brier:.4f} vs "
            f"{brier_constant:.4f})"
        )
    elif not auc > chance and not base >= chance:  # chance is the higher bar (or the baseline is unknown)
        lost = (
            f"the {name} ranked {words.ranked} no better than chance on these {words.rows} (ROC AUC {auc:.3f}, "
            f"chance reaches {chance:.3f})"
        )
    else:
        lost = (
            f"the {name} ranked {words.ranked} no better than {words.baseline} (ROC AUC {auc:.3f} vs {base:.3f}; "
            f"chance reaches {chance:.3f})"
        )
    if fallback is None:
        return Serving(None, lost, **figures)
    kind, m_fb = fallback
    fb_auc, fb_brier, fb_chance = _num(m_fb.get("roc_auc")), _num(m_fb.get("brier")), chance_auc(m_fb)
    extra = {"fallback": kind, "fallback_roc_auc": fb_auc, "fallback_chance_auc": fb_chance, "fallback_brier": fb_brier}
    if fb_auc > fb_chance and fb_brier < brier_constant:
        return Serving(kind, f"{lost}, so {words.fallback} is served (Brier {fb_brier:.4f})", **figures, **extra)
    return Serving(
        None,
        f"{lost}, and {words.fallback} itself ranked no better than chance or predicted no better than "
        f"{words.constant} (ROC AUC {fb_auc:.3f}, chance reaches {fb_chance:.3f}; Brier {fb_brier:.4f} vs "
        f"{brier_constant:.4f})",
        **figures,
        **extra,
    )
