"""No-show risk: a calibrated gradient-boosted model, two baselines, risk bands and plain-word reasons.

Why this shape:
- LightGBM trees (ml/tabular.py) handle missing values (no prior visit) and categoricals natively and train
  on half a million rows in a few CPU seconds; on the medium practice they rank better than scikit-learn's
  HistGradientBoosting with any settings tried and as well as a default LightGBM (bench/peers_noshow.py).
- Boosted trees rank well but their raw probabilities drift; a front desk reads "30%" literally, so the
  model is calibrated (Platt / sigmoid) on a *later* slice of the training period than it was fitted on -
  the same direction in time as deployment - never on shuffled folds.
- Baselines keep us honest: the patient's own (smoothed) no-show rate is what a desk does by memory;
  logistic regression on the same features is the other candidate and shows what the trees add.
- Which of the two is deployed is decided on the validation slice, the latest 20% of the training period, with
  both fitted on the rows before it (`evaluation.choose_candidate`; ties keep the trees, too few outcomes there
  mean the regression by default); the chosen one is refitted on the whole training period and measured once on
  the test period, the card's headline. The loser is not measured on the test rows, so nothing is re-chosen there
  (`chosen_on` on the card). Falling back to the regression rather than refusing to score: the regression is
  cheap, calibrated by its likelihood fit and explained the same way.
- The chosen model must also beat what needs no model (`evaluation.serving_decision`, the one rule of the
  no-show, lead and denial models): the patient's own history rate and chance on ranking (ROC AUC) and always
  saying the training no-show rate on accuracy (Brier), on the test period. When it does not (a young practice:
  a few hundred appointments), the history rate itself is served as the score (`deployed_model` =
  `history_rate`, said on the card and the page); when even that ranks no better than chance or predicts no
  better than the constant rate, nothing is served (`served` None: withheld).
- Risk bands are ranks, not thresholds: "high" is the top 10% of the appointments scored together (per
  clinic), so the desk's call list has the size the band promises whatever the week looks like.
- Reasons: for each feature group, how much the probability moves when that group is set to a typical
  value (the training median / mode). The two groups that push the risk most become plain sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline

from ml import tabular
from ml.evaluation import (
    VALIDATION_SHARE,
    Words,
    choose_candidate,
    classification_metrics,
    reliability_bins,
    serving_decision,
)
from ml.features import CATEGORICAL, FEATURES, NUMERIC

SEED = 20240601
# 2: body region / episode payer only once the evaluation is known; rank bands; 3: optional columns; 4: episode
# counts NaN without an episode, the serving rule against the history rate (an older model file is retrained); 5: the
# candidate chosen on a validation slice of the training period, not on the test rows (retrained once)
FEATURE_VERSION = 5
BOOSTED = "boosted_trees"
LOGISTIC = "logistic_regression"
HISTORY = "history_rate"  # the patient's own smoothed no-show rate, served when both models lose to it
HISTORY_FEATURES = ["prior_appts", "prior_no_shows"]
CAL_SHARE = 0.25
HIGH_SHARE = 0.10  # the top 10% of appointments are "high": a desk can call them all
MEDIUM_SHARE = 0.30  # the next 20% are "medium": confirm by text
HISTORY_PRIOR = 5.0  # pseudo-appointments at the base rate that smooth a patient's own rate

GROUPS: dict[str, list[str]] = {
    "history": [
        "prior_appts",
        "prior_no_shows",
        "no_shows_last5",
        "prior_no_show_rate",
        "days_since_last_no_show",
        "episode_no_shows",
    ],
    "cancels": ["prior_cancels", "late_cancels_last5"],
    "lead": ["lead_time_days"],
    "gap": ["days_since_last_visit"],
    "visit": ["visit_type", "episode_visits", "planned_visits", "visits_left", "frequency_per_week", "duration_min"],
    "slot": ["day_of_week", "hour"],
    "payer": ["payer_class"],
    "age": ["age", "age_band"],
    "clinic": ["clinic_id"],
    "source": ["source_type", "days_since_referral", "body_region"],
    "extra": ["reminder_sent", "sex", "comorbidities"],
}
assert sorted(c for cols in GROUPS.values() for c in cols) == sorted(FEATURES)


@dataclass
class NoShowModel:
    """Everything scoring needs, pickled as one object."""

    estimator: Any
    categories: dict[str, list[str]]
    reference: dict[str, Any]
    thresholds: dict[str, float]
    base_rate: float
    trained_at: str
    version: str
    train_rows: int
    feature_version: int = FEATURE_VERSION
    calibration: str = "sigmoid"
    extra: dict[str, Any] = field(default_factory=dict)
    numeric: list[str] = field(default_factory=lambda: list(NUMERIC))
    kind: str = BOOSTED
    dropped: list[str] = field(default_factory=list)

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        x = tabular.encode(features, self.categories, self.numeric)
        return tabular.integer_codes(x, list(self.categories)) if self.kind == LOGISTIC else x

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        if self.kind == HISTORY:  # no estimator: the patient's own rate, smoothed toward the training rate
            return history_rate(features, self.base_rate)
        return self.estimator.predict_proba(self.matrix(features))[:, 1]

    def band(self, p: np.ndarray, groups: Any = None, tiebreak: Any = None) -> np.ndarray:
        return risk_bands(p, groups, tiebreak)


def risk_bands(p: np.ndarray, groups: Any = None, tiebreak: Any = None) -> np.ndarray:
    """'high' for the top HIGH_SHARE of rows by probability within each group, 'medium' up to MEDIUM_SHARE.

    By rank, so the high list always has the size the band promises (round(10% of n)); ties are broken by
    `tiebreak` (e.g. appointment id) so the same scores always give the same bands.
    """
    p = np.asarray(p, dtype=float)
    n_rows = len(p)
    if n_rows == 0:
        return np.array([], dtype=object)
    keys = (
        np.zeros(n_rows, np.int64)
        if groups is None
        else pd.factorize(pd.Series(np.asarray(groups, dtype=object)).astype("string").fillna("<na>"), sort=True)[0]
    )
    ties = (
        np.arange(n_rows)
        if tiebreak is None
        else pd.factorize(pd.Series(np.asarray(tiebreak, dtype=object)).astype("string"), sort=True)[0]
    )
    order = np.lexsort((ties, -np.nan_to_num(p, nan=-1.0), keys))
    sorted_keys = keys[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_keys)) + 1]
    sizes = np.diff(np.r_[starts, n_rows])
    rank = np.arange(n_rows) - np.repeat(starts, sizes)
    n = np.repeat(sizes, sizes)
    n_high, n_top = np.floor(HIGH_SHARE * n + 0.5), np.floor(MEDIUM_SHARE * n + 0.5)
    out = np.empty(n_rows, dtype=object)
    out[order] = np.where(rank < n_high, "high", np.where(rank < n_top, "medium", "low"))
    return out


# ------------------------------------------------------------------------------------------- encoding


def fit_categories(features: pd.DataFrame, categorical: list[str] | None = None) -> dict[str, list[str]]:
    return tabular.fit_categories(features, CATEGORICAL if categorical is None else categorical)


def encode(features: pd.DataFrame, categories: dict[str, list[str]], numeric: list[str] | None = None) -> pd.DataFrame:
    return tabular.encode(features, categories, NUMERIC if numeric is None else numeric)


def usable_columns(features: pd.DataFrame, order: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical, dropped): features known for at least one of the rows the booster is fitted on."""
    fit_idx, _ = tabular.fit_rows(order, CAL_SHARE)
    rows = features.iloc[fit_idx]
    numeric, dropped_num = tabular.present_columns(rows, NUMERIC)
    categorical, dropped_cat = tabular.present_columns(rows, CATEGORICAL)
    return numeric, categorical, dropped_num + dropped_cat


# Risk can only rise with more missed appointments and late cancellations: a well-documented pattern in
# outpatient therapy. Saying so keeps the trees from fitting noise wiggles. Lead time is NOT constrained: among
# appointments that were not cancelled its effect is not monotone (long waits are cancelled more, short notice
# cannot be), and forcing it cost 0.0012 ROC AUC on the validation slice of the medium practice.
MONOTONE_UP = ("prior_no_shows", "no_shows_last5", "episode_no_shows", "late_cancels_last5")
MAX_TREES = 400
# Tuned on the training period only (fit on its earlier 75%, scored on its latest 25%) of the medium practice:
# 15 leaves of >= 200 appointments, L2 5, step 0.1; 7 or 31 leaves, 100 or 500 per leaf, L2 1 or 20 and step
# 0.15 were within 0.0006 validation ROC AUC or worse.
LEARNING_RATE = 0.1
NUM_LEAVES = 15
MIN_LEAF = 200


def _booster(numeric: list[str] | None = None) -> tabular.ShallowBooster:
    """The shared shallow-tree recipe (tabular.shallow_booster) with the no-show's leaf size, step and monotone
    risks."""
    monotone = {c: 1 for c in MONOTONE_UP if numeric is None or c in numeric}
    return tabular.shallow_booster(
        SEED,
        min_samples_leaf=MIN_LEAF,
        max_iter=MAX_TREES,
        monotone=monotone,
        learning_rate=LEARNING_RATE,
        num_leaves=NUM_LEAVES,
    )


def fit_calibrated(
    x: pd.DataFrame, y: np.ndarray, order: np.ndarray, cal_share: float = CAL_SHARE, method: str = "sigmoid"
) -> CalibratedClassifierCV:
    """The booster stopped and calibrated on the latest `cal_share` of rows by scheduled start."""
    numeric = [c for c in x.columns if not isinstance(x[c].dtype, pd.CategoricalDtype)]
    return tabular.fit_calibrated(_booster(numeric), x, y, order, cal_share, method)


def tree_count(model: CalibratedClassifierCV) -> int:
    return int(model.calibrated_classifiers_[0].estimator.estimator.n_iter_)


# right-skewed day counts: the regression sees log(1 + days) (the trees are indifferent to the scale)
LOG_SCALE = (
    "lead_time_days",
    "days_since_last_visit",
    "days_since_last_no_show",
    "days_since_referral",
    "prior_appts",
    "prior_cancels",
)


def logistic_baseline(numeric: list[str] | None = None, categorical: list[str] | None = None) -> Pipeline:
    return tabular.logistic_baseline(
        NUMERIC if numeric is None else numeric, CATEGORICAL if categorical is None else categorical, LOG_SCALE
    )


def _codes(x: pd.DataFrame) -> pd.DataFrame:
    return tabular.integer_codes(x, [c for c in CATEGORICAL if c in x])


def history_rate(features: pd.DataFrame, base_rate: float) -> np.ndarray:
    """The patient's own no-show rate so far, shrunk toward the base rate when there is little history."""
    prior = features["prior_appts"].to_numpy(float)
    ns = features["prior_no_shows"].to_numpy(float)
    return (ns + HISTORY_PRIOR * base_rate) / (prior + HISTORY_PRIOR)


def reference_values(features: pd.DataFrame) -> dict[str, Any]:
    return tabular.reference_values(features, NUMERIC, CATEGORICAL)


# ---------------------------------------------------------------------------------------- training


@dataclass
class Evaluation:
    card: dict[str, Any]
    calibration_bins: list[dict[str, Any]]
    test_predictions: pd.DataFrame


def time_split(starts: pd.Series, test_share: float = 0.2) -> pd.Timestamp:
    """The split date: the day at which the last `test_share` of labelled appointments begins."""
    s = pd.to_datetime(starts).sort_values()
    return s.iloc[int(len(s) * (1 - test_share))].normalize()


def _subgroups(frame: pd.DataFrame, min_n: int = 30) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for col in ("clinic_id", "payer_class", "age_band", "visit_type"):
        key = "clinic" if col == "clinic_id" else col
        out[key] = {}
        for level, part in frame.groupby(frame[col].astype("string").fillna("unknown"), sort=True):
            if len(part) < min_n:
                out[key][str(level)] = {"n": int(len(part)), "note": f"fewer than {min_n} test appointments"}
            else:
                out[key][str(level)] = classification_metrics(part["y"].to_numpy(), part["p"].to_numpy())
    return out


WORDS = Words(
    positives="no-shows",
    negatives="attended",
    rows="appointments",
    ranked="no-shows",
    baseline="the patient's own history rate",
    constant="the constant no-show rate",
    fallback="the history rate",
)
RULE = (
    "the boosted trees and the logistic regression are fitted on the training window minus its latest 20% and "
    "compared on that latest part (the validation slice: ROC AUC, ties keep the trees; with fewer than 10 of "
    "either outcome there, or in the slices the candidates are fitted and calibrated on before it, the logistic "
    "regression by default); the chosen one is refitted on the whole training window and measured on the test "
    "period; it is served only if its ROC AUC there is above the patient's own history rate's and chance's and its "
    "Brier score below always saying the training no-show rate; else the history rate is served if its ROC AUC is "
    "above chance and its Brier below the constant rate's; else no score is served"
)


@dataclass
class _Fitted:
    p: np.ndarray
    dropped: list[str]
    trees: int | None


def _fit_predict(
    features: pd.DataFrame, y: np.ndarray, t_sec: np.ndarray, kind: str, fit: np.ndarray, score: np.ndarray
) -> _Fitted:
    """Candidate `kind` fitted on the rows `fit` by the recipe (columns and categories from those rows; trees stopped
    and calibrated on their latest quarter), and its probabilities on the rows `score`."""
    numeric, categorical, dropped = usable_columns(features[fit].reset_index(drop=True), t_sec[fit])
    cats = fit_categories(features[fit], categorical)
    rows = fit | score
    x = encode(features[rows], cats, numeric)
    on_fit, on_score = fit[rows], score[rows]
    if kind == BOOSTED:
        model = fit_calibrated(x[on_fit], y[fit], t_sec[fit])
        return _Fitted(model.predict_proba(x[on_score])[:, 1], dropped, tree_count(model))
    logit = logistic_baseline(numeric, categorical).fit(_codes(x[on_fit]), y[fit])
    return _Fitted(logit.predict_proba(_codes(x[on_score]))[:, 1], dropped, None)


def evaluate(
    features: pd.DataFrame, y: np.ndarray, starts: pd.Series, truth: pd.Series | None = None, test_share: float = 0.2
) -> Evaluation:
    """Time-based evaluation: choose on the training period, fit on it, measure once on the test period after it.

    The candidates (calibrated boosted trees, logistic regression) are compared on the validation slice, the latest
    20% of the training period, fitted on the rows before it (`evaluation.choose_candidate`); the chosen one is
    refitted on the whole training period and measured on the test rows beside the two model-free baselines (the
    patient's history rate, the constant training rate), which decide whether it is served
    (`evaluation.serving_decision`). The card's headline metrics, bands, subgroups and calibration bins are those
    of what is served (`deployed_model`), or, when nothing is (`deployed_model` None, `withheld`), of the chosen
    model. `truth` (optional, aligned with rows) holds the generator's true probabilities; its ROC AUC on the
    same test rows is the ceiling (oracle_roc_auc).
    """
    starts = pd.to_datetime(starts).reset_index(drop=True)
    features = features.reset_index(drop=True)
    split = time_split(starts, test_share)
    train = (starts < split).to_numpy()
    test = ~train
    t_sec = starts.astype("int64").to_numpy()
    cut = time_split(starts[train], VALIDATION_SHARE)
    before = train & (starts < cut).to_numpy()

    def fit_predict(kind: str, fit: np.ndarray, score: np.ndarray) -> np.ndarray:
        return _fit_predict(features, y, t_sec, kind, fit, score).p

    choice = choose_candidate(
        (BOOSTED, LOGISTIC),
        fit_predict,
        y,
        before,
        train & ~before,
        t_sec,
        default=LOGISTIC,
        start=cut.date().isoformat(),
        words=WORDS,
        cal_share=CAL_SHARE,
    )
    fitted = _fit_predict(features, y, t_sec, choice.kind, train, test)
    base_rate = float(y[train].mean())
    p_hist = history_rate(features[test], base_rate)
    m_model = classification_metrics(y[test], fitted.p)
    m_hist = classification_metrics(y[test], p_hist)
    brier_constant = float(np.mean((y[test] - base_rate) ** 2))  # always saying the training no-show rate
    serving = serving_decision(choice.kind, m_model, m_hist, brier_constant, WORDS, fallback=(HISTORY, m_hist))
    served = serving.served
    deployed = served or choice.kind  # the headline figures: what is served, else the chosen model (withheld)
    p = p_hist if deployed == HISTORY else fitted.p
    metrics = m_hist if deployed == HISTORY else m_model
    other = LOGISTIC if choice.kind == BOOSTED else BOOSTED
    tested = {choice.kind: m_model, other: choice.unmeasured(other)}
    band = risk_bands(p)
    bands = {
        b: {
            "n": int((band == b).sum()),
            "observed_rate": float(y[test][band == b].mean()) if (band == b).any() else None,
        }
        for b in ("low", "medium", "high")
    }
    frame = features[test][["clinic_id", "payer_class", "age_band", "visit_type"]].assign(y=y[test], p=p)
    oracle = None
    if truth is not None:
        tv = pd.to_numeric(truth.reset_index(drop=True)[test], errors="coerce").to_numpy(float)
        ok = ~np.isnan(tv)
        if ok.sum() > 0 and 0 < y[test][ok].sum() < ok.sum():
            oracle = classification_metrics(y[test][ok], tv[ok])
            oracle["coverage"] = float(ok.mean())
            oracle["model_roc_auc_same_rows"] = classification_metrics(y[test][ok], p[ok])["roc_auc"]
    test_rate = float(y[test].mean())
    comparison = {
        "metric": "ROC AUC on the test period of the chosen model and the history rate (the candidates' figures on "
        "the validation slice, where the choice was made, are under `validation`)",
        BOOSTED: tested[BOOSTED]["roc_auc"],
        LOGISTIC: tested[LOGISTIC]["roc_auc"],
        "history_rate": m_hist["roc_auc"],
        "brier": {BOOSTED: tested[BOOSTED]["brier"], LOGISTIC: tested[LOGISTIC]["brier"], HISTORY: m_hist["brier"]},
        "brier_constant_rate": brier_constant,
        "trees_beat_logistic": bool(choice.kind == BOOSTED),
        "best_model": choice.kind,
        "deployed": served,
        "why": serving.reason,
        "chosen_on": choice.chosen_on,
        "chosen_by_default": choice.by_default,
        "validation": choice.validation,
        "serving_gate": serving.figures(),
        "rule": RULE,
    }
    card = {
        **{k: metrics[k] for k in ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece")},
        "deployed_model": served,
        "withheld": None if served else serving.reason,
        "baseline_comparison": comparison,
        "dropped_features": fitted.dropped,
        "oracle_roc_auc": oracle["roc_auc"] if oracle else None,
        "baseline_roc_auc": m_hist["roc_auc"],
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "trees": fitted.trees,
        "split_date": split.date().isoformat(),
        "base_rate_test": test_rate,
        "brier_reference": test_rate * (1 - test_rate),
        "mean_predicted_test": float(p.mean()),
        "baselines": {
            "history_rate": m_hist,
            "logistic_regression": tested[LOGISTIC],
            "constant_rate": {"rate": base_rate, "brier": brier_constant, "roc_auc": 0.5},
        },
        "candidates": tested,
        "oracle": oracle,
        "risk_bands_test": {
            "rule": f"rank: top {HIGH_SHARE:.0%} high, next {MEDIUM_SHARE - HIGH_SHARE:.0%} medium",
            **bands,
        },
        "subgroups": _subgroups(frame),
    }
    preds = pd.DataFrame({"y": y[test], "p": p, f"p_{choice.kind}": fitted.p, "p_history": p_hist})
    return Evaluation(card, reliability_bins(y[test], p), preds)


def fit_final(
    features: pd.DataFrame,
    y: np.ndarray,
    starts: pd.Series,
    trained_at: str,
    version: str,
    recent_share: float = 0.2,
    kind: str = BOOSTED,
) -> NoShowModel:
    """The deployed model: the chosen recipe on every labelled appointment.

    Trees are stopped and calibrated on the most recent slice; the logistic regression (kind=LOGISTIC, the
    fallback when the trees lost to it) is fitted on all rows; the history rate (kind=HISTORY, when both lost
    to it) fits nothing but the base rate it is smoothed toward. `thresholds` are for reference only (the
    probabilities above which the top 10% / 30% of the most recent `recent_share` fell): bands are ranks.
    """
    features = features.reset_index(drop=True)
    t_sec = pd.to_datetime(starts).reset_index(drop=True).astype("int64").to_numpy()
    numeric, categorical, dropped = usable_columns(features, t_sec)
    cats = fit_categories(features, categorical)
    x = encode(features, cats, numeric)
    if kind == HISTORY:
        estimator: Any = None
        calibration = (
            f"none: each patient's own no-show rate, smoothed toward the practice rate with {HISTORY_PRIOR:g} "
            "pseudo-appointments"
        )
    elif kind == LOGISTIC:
        estimator = logistic_baseline(numeric, categorical).fit(_codes(x), y)
        calibration = "none: logistic regression fitted by likelihood on every labelled appointment"
    else:
        estimator = fit_calibrated(x, y, t_sec)
        calibration = "sigmoid"
    model = NoShowModel(
        estimator=estimator,
        categories=cats,
        reference=reference_values(features),
        thresholds={},
        base_rate=float(y.mean()),
        trained_at=trained_at,
        version=version,
        train_rows=int(len(y)),
        calibration=calibration,
        numeric=numeric,
        kind=kind,
        dropped=dropped,
    )
    recent = t_sec >= np.quantile(t_sec, 1 - recent_share)
    p_recent = model.predict(features[recent])
    q_med, q_high = np.quantile(p_recent, [1 - MEDIUM_SHARE, 1 - HIGH_SHARE])
    model.thresholds = {"medium": float(q_med), "high": float(q_high)}
    return model


# ------------------------------------------------------------------------------------------- reasons

_PAYER_WORDS = {
    "commercial": "commercial insurance",
    "medicare": "Medicare",
    "medicare_advantage": "Medicare Advantage",
    "medicaid": "Medicaid",
    "workers_comp": "workers' comp",
    "auto_pi": "auto / personal injury",
    "self_pay": "self-pay",
}
_SOURCE_WORDS = {
    "physician": "physician referral",
    "direct_access": "direct access (self-referred)",
    "marketing": "came in through marketing",
}
_DAYS = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}


def _int(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").round().astype("Int64").astype("string")


def _plural(n: pd.Series, word: str) -> pd.Series:
    return np.where(pd.to_numeric(n, errors="coerce") == 1, word, word + "s")


def reason_texts(f: pd.DataFrame, history_up: np.ndarray | None = None) -> pd.DataFrame:
    """One plain sentence per feature group and appointment (vectorised string building).

    The history sentence is worded from every count of the group, not the last 5 alone: "no no-shows in the last
    5 visits" was the main reason of patients whose 5 earlier no-shows raised their risk. `history_up` (rows
    where the history group raises the risk, from `explain`): a clean record there is stated without the
    reassuring "no no-shows", since the lift comes from something else in the record (its length).
    """
    prior, ns = f["prior_appts"], f["prior_no_shows"]
    k = f["last_k"] if "last_k" in f else np.minimum(prior, 5)
    ns5 = f["no_shows_last5"]
    up = np.zeros(len(f), bool) if history_up is None else np.asarray(history_up, bool)
    earlier = " in " + _int(prior) + " earlier " + _plural(prior, "visit")
    recent = _int(ns5) + " " + _plural(ns5, "no-show") + " in the last " + _int(k) + " " + _plural(k, "visit")
    history = np.select(
        [prior == 0, (ns == 0) & up, ns == 0, ns5 == 0, ns5 == ns],
        [
            "first appointment on record",
            _int(prior) + " earlier " + _plural(prior, "visit") + " on record",
            "no no-shows" + earlier,
            _int(ns) + " " + _plural(ns, "no-show") + earlier + " (none in the last " + _int(k) + ")",
            recent,
        ],
        recent + ", " + _int(ns) + " in all " + _int(prior),
    )
    late = f["late_cancels_last5"]
    canc = f["prior_cancels"]
    cancels = np.where(
        late > 0,
        _int(late) + " late " + _plural(late, "cancellation") + " recently",
        np.where(canc > 0, _int(canc) + " earlier " + _plural(canc, "cancellation"), "no earlier cancellations"),
    )
    lead_d = pd.to_numeric(f["lead_time_days"], errors="coerce")
    lead = np.where(
        lead_d < 1,
        "booked less than a day ahead",
        "booked " + _int(np.floor(lead_d)) + " " + _plural(np.floor(lead_d), "day") + " ahead",
    )
    gap_d = pd.to_numeric(f["days_since_last_visit"], errors="coerce")
    gap = np.where(
        gap_d.isna(),
        "no visit attended yet",
        _int(np.floor(gap_d)) + " " + _plural(np.floor(gap_d), "day") + " since the last visit",
    )
    n_visit = _int(f["episode_visits"] + 1)
    visit = np.where(
        f["visit_type"] == "initial_eval",
        "initial evaluation",
        np.where(
            f["visit_type"] == "re_eval",
            "re-evaluation visit",
            np.where(
                f["episode_visits"].isna(),
                "visit without an episode on record",
                np.where(
                    f["planned_visits"].notna(),
                    "visit " + n_visit + " of " + _int(f["planned_visits"]) + " planned",
                    "visit " + n_visit + " of the episode",
                ),
            ),
        ),
    )
    hour = np.floor(pd.to_numeric(f["hour"], errors="coerce")).astype("Int64")
    h12 = ((hour + 11) % 12 + 1).astype("string")
    ampm = pd.Series(np.where(hour < 12, " am", " pm"), index=f.index)
    slot = f["day_of_week"].map(_DAYS).fillna("") + " " + h12 + ampm + " slot"
    payer = f["payer_class"].map(_PAYER_WORDS).fillna("payer unknown")
    age = np.where(f["age_band"].isna(), "age unknown", "age " + f["age_band"].astype("string"))
    clinic = "clinic " + f["clinic_id"].astype("string").fillna("unknown")
    source = f["source_type"].map(_SOURCE_WORDS).fillna("referral source unknown")
    reminder = (
        pd.to_numeric(f["reminder_sent"], errors="coerce") if "reminder_sent" in f else pd.Series(np.nan, index=f.index)
    )
    extra = np.where(
        reminder == 1, "reminder sent", np.where(reminder == 0, "no reminder sent", "the practice's extra fields")
    )
    texts = {
        "history": history,
        "cancels": cancels,
        "lead": lead,
        "gap": gap,
        "visit": visit,
        "slot": slot,
        "payer": payer,
        "age": age,
        "clinic": clinic,
        "source": source,
        "extra": extra,
    }
    return pd.DataFrame({g: pd.Series(np.asarray(v, dtype=object), index=f.index).fillna("") for g, v in texts.items()})


def contributions(model: NoShowModel, features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """(p, contributions): per group, p(x) - p(x with that group set to the reference appointment).

    All perturbed copies are predicted in one call (rows x groups), so this costs one batch prediction.
    """
    f = features.reset_index(drop=True)
    copies = [f]
    for cols in GROUPS.values():
        g = f.copy()
        for c in cols:
            g[c] = model.reference[c]
        copies.append(g)
    stacked = pd.concat(copies, ignore_index=True)
    p_all = model.predict(stacked).reshape(len(copies), len(f))
    p = p_all[0]
    contrib = pd.DataFrame((p[None, :] - p_all[1:]).T, columns=list(GROUPS))
    return p, contrib


def explain(model: NoShowModel, features: pd.DataFrame) -> pd.DataFrame:
    """probability, risk_band, reason_1, reason_2 per row.

    Bands rank the rows passed in together (per clinic): pass the whole upcoming set, not one row at a time.
    Reasons are the groups that move this appointment's risk furthest from a typical appointment in the
    direction of its band: the biggest upward pushes when the risk is above the base rate, the biggest
    downward ones when below (so a low-risk row says why it is low).
    """
    f = features.reset_index(drop=True)
    if f.empty:
        return pd.DataFrame(columns=["probability", "risk_band", "reason_1", "reason_2"])
    p, contrib = contributions(model, f)
    texts = reason_texts(f, history_up=contrib["history"].to_numpy() > 0)
    signed = contrib.to_numpy() * np.where(p >= model.base_rate, 1.0, -1.0)[:, None]
    top = np.argsort(-signed, axis=1, kind="stable")[:, :2]
    tx = texts[list(GROUPS)].to_numpy(dtype=object)
    rows = np.arange(len(f))
    r1 = tx[rows, top[:, 0]]
    r2 = np.where(signed[rows, top[:, 1]] > 0, tx[rows, top[:, 1]], None)
    groups = f["clinic_id"] if "clinic_id" in f else None
    ids = f["appointment_id"] if "appointment_id" in f else None
    return pd.DataFrame({"probability": p, "risk_band": model.band(p, groups, ids), "reason_1": r1, "reason_2": r2})
