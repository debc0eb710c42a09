"""Lead scoring: the probability that an open referral converts, times what a converted episode is worth.

What "open" and "converts" mean (marts.referral_funnel):
- open at time t: received before t, no evaluation at or before t (`evaluated_at`), no exit at or before t
  (`exit_at`: declined, unreachable, insurance denied, lost, evaluation no-show). At scoring, t = the build's
  as_of.
- converts: the referral reaches an initial evaluation (`evaluated_at` is set), at any time after t.

Point in time. Training rows are historical referrals scored at fixed ages after receipt (`AGES_DAYS`: 6 h,
1, 2, 3, 5, 7, 10, 14, 21 and 30 days), each row keeping only what was known at that moment: the referral's
attributes at receipt (source, channel / physician specialty, payer class, clinic, intake kind) and the
funnel timestamps compared with t (called yet? spoken to yet? how many hours to the first call? booked?).
A timestamp after t is never read as a value, only as "not yet" (`features_at`; the leakage test rewrites
everything after t and checks the features do not move). The marts carry the referral's final outreach
count but not when each attempt happened, so the attempt count is NOT a feature (it would leak the
unreachable ones' later calls); "called yet" and "hours to the first call" are what can be known.

Censoring: only referrals received at least `LABEL_DAYS` before as_of are labelled (99.9% of evaluations
happen within 20 days of receipt), so a still-open recent referral is never taught as "did not convert".

Model: shallow LightGBM trees (ml/tabular.py) with sigmoid calibration on the later quarter of the training period (same
recipe and direction in time as the no-show model); time split on the referral's receipt date (every
snapshot of a referral lands on the same side). Baselines: the conversion rate by source type (what a desk
knows), and logistic regression on the same features.

Serving rule (the no-show and denial models' protocol, ml/evaluation.py): the trees and the logistic regression
are fitted on the training referrals received before the latest 20% of the training window and compared on that
latest part, the validation slice (`evaluation.choose_candidate`: ROC AUC, ties keep the trees; too few outcomes
there mean the regression by default); the chosen one (`deployed_model`) is refitted on the whole training window
and measured on the test period. The trees are a candidate only when their fit slice holds at least 2 x MIN_LEAF
rows, room for one split (`trees_possible`; a young practice's 171 rows gave a constant); else the regression is
the candidate alone. The chosen model is served only when, on the test period, it ranks referrals better than the
source-type rate and chance (ROC AUC) and predicts better than always saying the training conversion rate (Brier;
`evaluation.serving_decision`); else nothing is served (the card says why, `ml.lead_scores` stays empty).

Expected value: the mean collected net revenue (`episodes.net_revenue_usd`, payer plus patient payments) of
closed episodes, by payer class x source type, shrunk toward the payer-class mean and that toward the overall
mean (`EV_SHRINK` pseudo-episodes). Episodes closed within the last `EV_SETTLE_DAYS` are left out while their
claims are still being paid (unless too few remain). value at stake = p_convert x expected value.
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

SEED = 20240602
FEATURE_VERSION = 3  # 2: the serving rule (trees or regression, served only above the baselines); 3: chosen on the
# validation slice, not the test rows (an older model file is retrained once)
BOOSTED = "boosted_trees"
LOGISTIC = "logistic_regression"
MIN_LEAF = 100  # rows per tree leaf: the trees need a fit slice of 2 x MIN_LEAF to split at all
CAL_SHARE = 0.25
AGES_DAYS = (0.25, 1, 2, 3, 5, 7, 10, 14, 21, 30)
LABEL_DAYS = 45
EV_SHRINK = 30.0
EV_SETTLE_DAYS = 60
EV_MIN_EPISODES = 200

CATEGORICAL = ["source_type", "source_detail", "payer_class", "clinic_id", "intake_kind"]
NUMERIC = ["days_open", "called", "hours_to_first_call", "reached", "days_since_reached", "booked"]
FEATURES = CATEGORICAL + NUMERIC

GROUPS: dict[str, list[str]] = {
    "progress": ["called", "reached", "days_since_reached", "booked"],
    "wait": ["days_open"],
    "speed": ["hours_to_first_call"],
    "source": ["source_type", "source_detail", "intake_kind"],
    "payer": ["payer_class"],
    "clinic": ["clinic_id"],
}
assert sorted(c for cols in GROUPS.values() for c in cols) == sorted(FEATURES)

# referral_funnel columns the features may read (plus specialty from dim_referring_physicians)
FUNNEL_COLUMNS = [
    "referral_id",
    "clinic_id",
    "intake_kind",
    "source_type",
    "channel",
    "specialty",
    "payer_class",
    "received_at",
    "first_contact_at",
    "contacted_at",
    "scheduled_at",
    "evaluated_at",
    "exit_at",
    "exit_stage",
]  # exit_stage only to select the open referrals at as_of, never as a feature


# ------------------------------------------------------------------------------------ point in time


def _ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[ns]")


def open_at(referrals: pd.DataFrame, at: pd.Series) -> np.ndarray:
    """True where the referral was received, not evaluated and not exited at or before `at`."""
    at = _ts(at)
    received = _ts(referrals["received_at"])
    evaluated = _ts(referrals["evaluated_at"])
    exited = _ts(referrals["exit_at"])
    return (received.notna() & (received <= at) & ~(evaluated <= at) & ~(exited <= at)).to_numpy()


def features_at(referrals: pd.DataFrame, at: pd.Series) -> pd.DataFrame:
    """Features of each referral row as known at its scoring time `at` (aligned, same index).

    Every funnel timestamp is used only through `x <= at` (did it happen yet?) and, when it did, its value;
    a later timestamp reads as missing.
    """
    at = _ts(pd.Series(np.asarray(at), index=referrals.index))
    received = _ts(referrals["received_at"])

    def known(col: str) -> pd.Series:
        ts = _ts(referrals[col])
        return ts.where(ts <= at)

    first_call = known("first_contact_at")
    reached_at = known("contacted_at")
    booked_at = known("scheduled_at")
    day = pd.Timedelta(days=1)
    source = referrals["source_type"].astype(object)
    detail = np.where(
        source == "physician",
        referrals["specialty"].astype(object),
        np.where(source == "marketing", referrals["channel"].astype(object), source),
    )
    return pd.DataFrame(
        {
            "source_type": source,
            "source_detail": pd.Series(detail, index=referrals.index, dtype=object),
            "payer_class": referrals["payer_class"].astype(object),
            "clinic_id": referrals["clinic_id"].astype(object),
            "intake_kind": referrals["intake_kind"].astype(object),
            "days_open": (at - received) / day,
            "called": first_call.notna().astype(float),
            "hours_to_first_call": (first_call - received) / pd.Timedelta(hours=1),
            "reached": reached_at.notna().astype(float),
            "days_since_reached": (at - reached_at) / day,
            "booked": booked_at.notna().astype(float),
        },
        index=referrals.index,
    )


def snapshots(
    referrals: pd.DataFrame, as_of: pd.Timestamp, ages: tuple[float, ...] = AGES_DAYS, label_days: int = LABEL_DAYS
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(rows, features, y): each labelled referral at each age at which it was still open.

    rows has referral_id, received_at, at (the scoring time) and age_days.
    """
    r = referrals[_ts(referrals["received_at"]) <= as_of - pd.Timedelta(days=label_days)].reset_index(drop=True)
    n, k = len(r), len(ages)
    idx = np.repeat(np.arange(n), k)
    age = np.tile(np.asarray(ages, dtype=float), n)
    # which (referral, age) pairs are still open, decided on the three timestamps alone: the whole row is copied
    # only for the pairs kept (every referral x every age would hold ten copies of the funnel at chain scale)
    times = r[["received_at", "evaluated_at", "exit_at"]].iloc[idx].reset_index(drop=True)
    at = _ts(times["received_at"]) + pd.to_timedelta(age, unit="D")
    keep = open_at(times, at)
    del times
    rep, at, age = r.iloc[idx[keep]].reset_index(drop=True), at[keep].reset_index(drop=True), age[keep]
    feats = features_at(rep, at)
    y = rep["evaluated_at"].notna().to_numpy(int)
    rows = pd.DataFrame(
        {
            "referral_id": rep["referral_id"],
            "received_at": _ts(rep["received_at"]),
            "at": at,
            "age_days": age,
            "source_type": rep["source_type"],
        }
    )
    return rows, feats, y


def oldest_scored(as_of: pd.Timestamp) -> pd.Timestamp:
    """The earliest receipt time a referral open at `as_of` is scored from (the oldest age training saw)."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=max(AGES_DAYS))


def open_now(referrals: pd.DataFrame, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, features) for the referrals open at as_of (not evaluated, not exited) and no older than the oldest
    age the model learns from (`AGES_DAYS`: 30 days). An older one is outside what training saw (a referral left
    open for a year scored "60% likely" from the habits of 30-day-old ones): it is not scored, and its Work queue
    task keeps its rule's place without a "Likely to convert" figure."""
    at = pd.Series(as_of, index=referrals.index)
    keep = open_at(referrals, at) & referrals["evaluated_at"].isna().to_numpy()
    keep &= (_ts(referrals["received_at"]) >= oldest_scored(as_of)).to_numpy()
    if "exit_stage" in referrals:
        keep &= referrals["exit_stage"].isna().to_numpy()
    r = referrals[keep].reset_index(drop=True)
    return r, features_at(r, pd.Series(as_of, index=r.index))


# ------------------------------------------------------------------------------------------ encoding


def fit_categories(features: pd.DataFrame) -> dict[str, list[str]]:
    return tabular.fit_categories(features, CATEGORICAL)


def encode(features: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    return tabular.encode(features, categories, NUMERIC)


def _codes(x: pd.DataFrame) -> pd.DataFrame:
    return tabular.integer_codes(x, CATEGORICAL)


def _booster() -> tabular.ShallowBooster:
    return tabular.shallow_booster(SEED, min_samples_leaf=MIN_LEAF, max_iter=300)


def trees_possible(order: np.ndarray, cal_share: float = CAL_SHARE) -> bool:
    """Whether the booster's fit slice (all but the latest `cal_share` by `order`) holds 2 x MIN_LEAF rows: fewer
    cannot make one split, and the calibrated trees would score every referral the same."""
    fit_idx, _ = tabular.fit_rows(order, cal_share)
    return len(fit_idx) >= 2 * MIN_LEAF


def fit_calibrated(
    x: pd.DataFrame, y: np.ndarray, order: np.ndarray, cal_share: float = CAL_SHARE
) -> CalibratedClassifierCV:
    """The booster stopped and calibrated on the latest `cal_share` of rows by scoring time."""
    return tabular.fit_calibrated(_booster(), x, y, order, cal_share)


def logistic_baseline() -> Pipeline:
    return tabular.logistic_baseline(NUMERIC, CATEGORICAL)


def source_rate_baseline(features: pd.DataFrame, y: np.ndarray) -> tuple[dict[str, float], float]:
    """Conversion rate by source type (training rows), and the overall rate for unseen types."""
    s = features["source_type"].astype("string").fillna("unknown")
    rates = pd.Series(y, index=features.index).groupby(s).mean()
    return {str(k): float(v) for k, v in rates.items()}, float(np.mean(y))


def apply_source_rate(features: pd.DataFrame, rates: dict[str, float], overall: float) -> np.ndarray:
    s = features["source_type"].astype("string").fillna("unknown")
    return s.map(rates).fillna(overall).to_numpy(float)


def reference_values(features: pd.DataFrame) -> dict[str, Any]:
    return tabular.reference_values(features, NUMERIC, CATEGORICAL)


# ------------------------------------------------------------------------------------------- model


@dataclass
class LeadModel:
    estimator: Any
    categories: dict[str, list[str]]
    reference: dict[str, Any]
    base_rate: float
    trained_at: str
    version: str
    train_rows: int
    feature_version: int = FEATURE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = BOOSTED

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        x = encode(features, self.categories)
        return self.estimator.predict_proba(_codes(x) if self.kind == LOGISTIC else x)[:, 1]


def time_split(received: pd.Series, test_share: float = 0.2) -> pd.Timestamp:
    """The day at which the last `test_share` of labelled referrals (by receipt) begins."""
    s = _ts(received).drop_duplicates().sort_values()
    return s.iloc[int(len(s) * (1 - test_share))].normalize()


def _by(frame: pd.DataFrame, col: str, min_n: int = 30) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level, part in frame.groupby(frame[col].astype("string").fillna("unknown"), sort=True):
        out[str(level)] = (
            classification_metrics(part["y"].to_numpy(), part["p"].to_numpy())
            if len(part) >= min_n
            else {"n": int(len(part)), "note": f"fewer than {min_n} test rows"}
        )
    return out


WORDS = Words(
    positives="evaluated",
    negatives="not evaluated",
    rows="snapshots",
    ranked="referrals",
    baseline="the conversion rate by source type",
    constant="the constant conversion rate",
)
RULE = (
    "the boosted trees (a candidate only when their fit slice holds 2 x the minimum leaf) and the logistic "
    "regression are fitted on the referrals of the training window received before its latest 20% and compared on "
    "that latest part (the validation slice: ROC AUC, ties keep the trees; with fewer than 10 of either outcome "
    "there, or in the slices the candidates are fitted and calibrated on before it, the logistic regression by "
    "default); the chosen one is refitted on the whole training window and measured on the test period; it is "
    "served only if its ROC AUC there is above the source-type conversion rate's and chance's and its Brier score "
    "below always saying the training conversion rate; else no lead score is served"
)


def _fit_predict(
    rows: pd.DataFrame, features: pd.DataFrame, y: np.ndarray, kind: str, fit: np.ndarray, score: np.ndarray
) -> np.ndarray | str:
    """Candidate `kind` fitted on the snapshots `fit` (categories from them; trees stopped and calibrated on their
    latest quarter) and its probabilities on the snapshots `score`, or why the trees cannot be fitted there."""
    t_ns = rows["at"].astype("int64").to_numpy()
    if kind == BOOSTED and not trees_possible(t_ns[fit]):
        n_fit = len(tabular.fit_rows(t_ns[fit], CAL_SHARE)[0])
        return (
            f"not fitted: their fit slice holds {n_fit:,} snapshot rows, fewer than 2 x {MIN_LEAF} (one split "
            "needs two leaves of at least that many)"
        )
    cats = fit_categories(features[fit])
    keep = fit | score
    x = encode(features[keep], cats)
    on_fit, on_score = fit[keep], score[keep]
    if kind == BOOSTED:
        return fit_calibrated(x[on_fit], y[fit], t_ns[fit]).predict_proba(x[on_score])[:, 1]
    return logistic_baseline().fit(_codes(x[on_fit]), y[fit]).predict_proba(_codes(x[on_score]))[:, 1]


def evaluate(rows: pd.DataFrame, features: pd.DataFrame, y: np.ndarray, test_share: float = 0.2) -> dict[str, Any]:
    """Time-based evaluation by receipt date: choose on the training referrals, fit on them, measure on the later ones.

    The candidates (calibrated trees, when their fit slice leaves room for a split; logistic regression) are
    compared on the validation slice, the referrals of the latest 20% of the training window, fitted on the earlier
    ones (`evaluation.choose_candidate`); the chosen one (`deployed_model`) is refitted on the whole training window
    and measured on the test rows, and `served` says whether it passed `evaluation.serving_decision` there.
    """
    split = time_split(rows["received_at"], test_share)
    train = (rows["received_at"] < split).to_numpy()
    test = ~train
    cut = time_split(rows.loc[train, "received_at"], VALIDATION_SHARE)
    before = train & (rows["received_at"] < cut).to_numpy()
    t_ns = rows["at"].astype("int64").to_numpy()
    choice = choose_candidate(
        (BOOSTED, LOGISTIC),
        lambda kind, fit, score: _fit_predict(rows, features, y, kind, fit, score),
        y,
        before,
        train & ~before,
        t_ns,
        default=LOGISTIC,
        start=cut.date().isoformat(),
        words=WORDS,
        cal_share=CAL_SHARE,
    )
    kind = choice.kind
    p = _fit_predict(rows, features, y, kind, train, test)
    if isinstance(p, str):  # trees possible before the validation slice are possible on the whole window
        raise AssertionError(p)
    rates, overall = source_rate_baseline(features[train], y[train])
    p_src = apply_source_rate(features[test], rates, overall)
    m = classification_metrics(y[test], p)
    m_src = classification_metrics(y[test], p_src)
    train_rate = float(y[train].mean())
    brier_constant = float(np.mean((y[test] - train_rate) ** 2))
    serving = serving_decision(kind, m, m_src, brier_constant, WORDS)
    other = LOGISTIC if kind == BOOSTED else BOOSTED
    trees_note = (choice.validation.get(BOOSTED) or {}).get("note")
    trees = trees_note or (
        "fitted" if BOOSTED in choice.validation or kind == BOOSTED else f"not fitted: {choice.chosen_on}"
    )
    tested = {kind: m, other: choice.unmeasured(other)}
    rate = float(y[test].mean())
    frame = pd.DataFrame(
        {
            "y": y[test],
            "p": p,
            "age_days": rows.loc[test, "age_days"].to_numpy(),
            "source_type": features.loc[test, "source_type"].to_numpy(),
            "clinic": features.loc[test, "clinic_id"].to_numpy(),
            "payer_class": features.loc[test, "payer_class"].to_numpy(),
        }
    )
    return {
        **{k: m[k] for k in ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece")},
        "deployed_model": serving.served,
        "served": not serving.withheld,
        "serving": serving.reason,
        "baseline_comparison": {
            "metric": "ROC AUC on the test period of the chosen model and the source-type rate (the candidates' "
            "figures on the validation slice, where the choice was made, are under `validation`)",
            BOOSTED: tested[BOOSTED]["roc_auc"],
            LOGISTIC: tested[LOGISTIC]["roc_auc"],
            "source_type_rate": m_src["roc_auc"],
            "brier": {BOOSTED: tested[BOOSTED]["brier"], LOGISTIC: tested[LOGISTIC]["brier"]},
            "brier_constant_rate": brier_constant,
            "trees": trees,
            "best_model": kind,
            "deployed": serving.served,
            "served": not serving.withheld,
            "why": serving.reason,
            "chosen_on": choice.chosen_on,
            "chosen_by_default": choice.by_default,
            "validation": choice.validation,
            "serving_gate": serving.figures(),
            "rule": RULE,
        },
        "candidates": tested,
        "baseline_roc_auc": m_src["roc_auc"],
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "n_train_referrals": int(rows.loc[train, "referral_id"].nunique()),
        "n_test_referrals": int(rows.loc[test, "referral_id"].nunique()),
        "split_date": split.date().isoformat(),
        "base_rate_test": rate,
        "brier_reference": rate * (1 - rate),
        "mean_predicted_test": float(p.mean()),
        "baselines": {
            "source_type_rate": m_src,
            "logistic_regression": tested[LOGISTIC],
            "constant_rate": {"rate": train_rate, "brier": brier_constant, "roc_auc": 0.5},
        },
        "calibration_bins": reliability_bins(y[test], p),
        "subgroups": {
            "age_days": _by(frame, "age_days"),
            "source_type": _by(frame, "source_type"),
            "clinic": _by(frame, "clinic"),
            "payer_class": _by(frame, "payer_class"),
        },
    }


def fit_final(
    rows: pd.DataFrame, features: pd.DataFrame, y: np.ndarray, trained_at: str, version: str, kind: str = BOOSTED
) -> LeadModel:
    """The deployed recipe (`kind`, the one evaluated and chosen) on every labelled snapshot: trees stopped and
    calibrated on the latest quarter, or the logistic regression fitted on all rows."""
    cats = fit_categories(features)
    x = encode(features, cats)
    if kind == LOGISTIC:
        model: Any = logistic_baseline().fit(_codes(x), y)
    else:
        model = fit_calibrated(x, y, rows["at"].astype("int64").to_numpy())
    return LeadModel(
        estimator=model,
        categories=cats,
        reference=reference_values(features),
        base_rate=float(np.mean(y)),
        trained_at=trained_at,
        version=version,
        train_rows=int(len(y)),
        kind=kind,
    )


# ---------------------------------------------------------------------------------- expected value


def expected_values(episodes: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """payer_class x source_type -> expected_value_usd (shrunk means of closed episodes' collected revenue).

    `episodes`: payer_class, source_type, status, closed_on, net_revenue_usd. Returns one row per observed
    cell plus per-payer rows (source_type null) and one overall row (both null), with n.
    """
    closed = episodes[episodes["status"].isin(["discharged", "self_discharged"])].copy()
    settled = closed[pd.to_datetime(closed["closed_on"]) <= as_of - pd.Timedelta(days=EV_SETTLE_DAYS)]
    hist = settled if len(settled) >= EV_MIN_EPISODES else closed
    hist = hist.assign(
        v=pd.to_numeric(hist["net_revenue_usd"], errors="coerce").fillna(0.0),
        payer_class=hist["payer_class"].astype(object).where(hist["payer_class"].notna(), "unknown"),
        source_type=hist["source_type"].astype(object).where(hist["source_type"].notna(), "unknown"),
    )
    overall = float(hist["v"].mean()) if len(hist) else 0.0
    payer = hist.groupby("payer_class")["v"].agg(["sum", "count"])
    payer["ev"] = (payer["sum"] + EV_SHRINK * overall) / (payer["count"] + EV_SHRINK)
    cell = hist.groupby(["payer_class", "source_type"])["v"].agg(["sum", "count"]).reset_index()
    prior = cell["payer_class"].map(payer["ev"])
    cell["ev"] = (cell["sum"] + EV_SHRINK * prior) / (cell["count"] + EV_SHRINK)
    out = pd.concat(
        [
            cell.rename(columns={"ev": "expected_value_usd", "count": "n"})[
                ["payer_class", "source_type", "expected_value_usd", "n"]
            ],
            payer.reset_index()
            .assign(source_type=None)
            .rename(columns={"ev": "expected_value_usd", "count": "n"})[
                ["payer_class", "source_type", "expected_value_usd", "n"]
            ],
            pd.DataFrame(
                {"payer_class": [None], "source_type": [None], "expected_value_usd": [overall], "n": [len(hist)]}
            ),
        ],
        ignore_index=True,
    )
    return out


def lookup_values(table: pd.DataFrame, payer: pd.Series, source: pd.Series) -> np.ndarray:
    """Expected value per row: the payer x source cell, else the payer's, else the overall mean."""
    payer = payer.astype(object).where(payer.notna(), "unknown").to_numpy()
    source = source.astype(object).where(source.notna(), "unknown").to_numpy()
    cells = table[table["payer_class"].notna() & table["source_type"].notna()]
    by_cell = {
        (p, s): v
        for p, s, v in zip(cells["payer_class"], cells["source_type"], cells["expected_value_usd"], strict=False)
    }
    payers = table[table["payer_class"].notna() & table["source_type"].isna()]
    by_payer = dict(zip(payers["payer_class"], payers["expected_value_usd"], strict=False))
    overall = float(table.loc[table["payer_class"].isna(), "expected_value_usd"].iloc[0])
    keys = pd.Series(list(zip(payer, source, strict=False)))
    out = keys.map(by_cell).to_numpy(float)
    fallback = pd.Series(payer).map(by_payer).fillna(overall).to_numpy(float)
    return np.where(np.isnan(out), fallback, out)


# ------------------------------------------------------------------------------------------ reasons

_PAYER_WORDS = {
    "commercial": "commercial insurance",
    "medicare": "Medicare",
    "medicare_advantage": "Medicare Advantage",
    "medicaid": "Medicaid",
    "workers_comp": "workers' comp",
    "auto_pi": "auto / personal injury",
    "self_pay": "self-pay",
}


def _words(s: pd.Series) -> pd.Series:
    return s.astype("string").str.replace("_", " ")


def _n(x: pd.Series) -> pd.Series:
    return np.floor(pd.to_numeric(x, errors="coerce")).astype("Int64").astype("string")


def _unit(x: pd.Series, word: str) -> np.ndarray:
    return np.where(np.floor(pd.to_numeric(x, errors="coerce")) == 1, word, word + "s")


def reason_texts(f: pd.DataFrame) -> pd.DataFrame:
    """One plain sentence per feature group and referral (vectorised)."""
    dsr = f["days_since_reached"]
    progress = np.where(
        f["booked"] > 0,
        "evaluation booked",
        np.where(
            f["reached"] > 0,
            "spoken to "
            + np.where(dsr < 1, "today", _n(dsr) + " " + _unit(dsr, "day") + " ago")
            + ", evaluation not booked yet",
            np.where(f["called"] > 0, "called but not reached yet", "not called yet"),
        ),
    )
    d = f["days_open"]
    wait = np.where(d < 1, "received today", "received " + _n(d) + " " + _unit(d, "day") + " ago")
    h = f["hours_to_first_call"]
    speed = np.where(
        h.isna(),
        "no call yet",
        np.where(h < 1, "called within the hour", "first call " + _n(h) + " h after it came in"),
    )
    st = f["source_type"].astype(object)
    detail = _words(f["source_detail"]).fillna("unknown")
    source = np.where(
        st == "physician",
        "physician referral (" + detail + ")",
        np.where(
            st == "marketing",
            "marketing lead (" + detail + ")",
            np.where(st == "direct_access", "direct access (self-referred)", "referral source unknown"),
        ),
    )
    payer = f["payer_class"].map(_PAYER_WORDS).fillna("payer unknown")
    clinic = "clinic " + f["clinic_id"].astype("string").fillna("unknown")
    texts = {"progress": progress, "wait": wait, "speed": speed, "source": source, "payer": payer, "clinic": clinic}
    return pd.DataFrame({g: pd.Series(np.asarray(v, dtype=object), index=f.index).fillna("") for g, v in texts.items()})


def explain(model: LeadModel, features: pd.DataFrame) -> pd.DataFrame:
    """p_convert and reason_1: the feature group that moves this referral furthest from a typical one, in
    the direction of its score (up when above the base rate, down when below). One batch prediction."""
    f = features.reset_index(drop=True)
    if f.empty:
        return pd.DataFrame({"p_convert": pd.Series(dtype=float), "reason_1": pd.Series(dtype=object)})
    copies = [f]
    for cols in GROUPS.values():
        g = f.copy()
        for c in cols:
            g[c] = model.reference[c]
        copies.append(g)
    p_all = model.predict(pd.concat(copies, ignore_index=True)).reshape(len(copies), len(f))
    p = p_all[0]
    signed = (p[None, :] - p_all[1:]).T * np.where(p >= model.base_rate, 1.0, -1.0)[:, None]
    top = np.argmax(signed, axis=1)
    tx = reason_texts(f)[list(GROUPS)].to_numpy(dtype=object)
    return pd.DataFrame({"p_convert": p, "reason_1": tx[np.arange(len(f)), top]})


def score_open(model: LeadModel, referrals: pd.DataFrame, episodes: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The ml.lead_scores rows for every referral open at as_of."""
    r, feats = open_now(referrals, as_of)
    if r.empty:  # nothing open: the table stays empty with its normal columns (ml/warehouse.py ML_TABLES)
        return pd.DataFrame()
    scored = explain(model, feats)
    ev = lookup_values(expected_values(episodes, as_of), r["payer_class"], r["source_type"])
    return pd.DataFrame(
        {
            "referral_id": r["referral_id"].to_numpy(),
            "clinic_id": r["clinic_id"].to_numpy(),
            "p_convert": scored["p_convert"].to_numpy(float),
            "expected_value_usd": np.round(ev, 2),
            "value_at_stake_usd": np.round(scored["p_convert"].to_numpy(float) * ev, 2),
            "reason_1": scored["reason_1"].to_numpy(),
            "model_version": model.version,
            "scored_at": as_of,
        }
    )
