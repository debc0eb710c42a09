"""The best ROC AUC any point-in-time no-show model could reach on a generated practice (the *ceiling*).

The oracle (`oracle_roc_auc`) ranks by the generator's true probability, which includes two hidden traits no
export holds: each patient's propensity (a normal effect, sd `NS_PATIENT_SD` on the log-odds, drawn once per
patient) and the intent to drop out (the last appointment before a patient quits). A model of the exports can
only infer the propensity from the patient's earlier outcomes. This module computes that inference exactly:

- every other part of the draw is taken as known (`logit_observable` in truth/appointment_truth.csv: lead
  time, gap, prior no-shows, age, payer, weekday, visit type, clinic), which no model is told either;
- the propensity's posterior over a grid, from the prior and the likelihood of *every* earlier kept or missed
  appointment of the patient (all episodes), including the ones whose outcome is not yet known 48 hours
  ahead, when the product scores;
- the dropout intent is taken as known (`ceiling_roc_auc`) or ignored (`ceiling_without_intent_roc_auc`).

Each choice gives the ceiling more than a model has, so the ceiling is an upper bound for any model of the
exports and `roc_auc / ceiling_roc_auc` a lower bound on how much of the reachable ranking the model gets.
Population and label are the model's: appointments that were kept or missed, from `split_date` on.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from seed_data import params as P

KEPT_OR_MISSED = ("completed", "no_show")
GRID_POINTS = 41  # over +-4 sd; finer grids change the AUC in the 4th decimal
NEEDED = ("patient_id", "scheduled_start", "p_no_show", "logit_observable", "dropout_intent", "outcome")


def _p_given_not_cancelled(logit: np.ndarray) -> np.ndarray:
    """The label's probability: the draw is no-show (p), a cancel (a fixed share), else attended."""
    p = 1.0 / (1.0 + np.exp(-logit))
    cancel = P.P_LATE_CANCEL + P.P_CANCEL
    return p / (p + np.clip(1.0 - p - cancel, 1e-9, None))


def _propensity_posterior(patient: np.ndarray, known: np.ndarray, missed: np.ndarray) -> tuple[np.ndarray, ...]:
    """Posterior weights over the propensity grid for each row, from the patient's rows *before* it.

    Rows are sorted by (patient, start). Log-likelihoods are summed per patient with one cumulative sum
    (float64, since it runs over every row) minus the sum at the patient's first row.
    """
    grid = np.linspace(-4 * P.NS_PATIENT_SD, 4 * P.NS_PATIENT_SD, GRID_POINTS)
    q = _p_given_not_cancelled(known[:, None] + grid[None, :])
    loglik = np.where(missed[:, None], np.log(q), np.log1p(-q))
    before = np.vstack([np.zeros((1, GRID_POINTS)), np.cumsum(loglik, axis=0)])
    rows = np.arange(len(patient))
    first = np.maximum.accumulate(np.where(np.r_[True, patient[1:] != patient[:-1]], rows, 0))
    log_post = before[rows] - before[first] - 0.5 * (grid / P.NS_PATIENT_SD) ** 2
    log_post -= log_post.max(axis=1, keepdims=True)
    weights = np.exp(log_post)
    weights /= weights.sum(axis=1, keepdims=True)
    return grid, weights


def point_in_time_ceiling(truth_dir: Path, split_date: date | str) -> dict[str, float | int] | None:
    """Ceiling, ceiling without the intent, no-history floor and the oracle, on the same truth rows.

    None when the truth folder predates the columns this needs (an older generator).
    """
    path = Path(truth_dir) / "appointment_truth.csv"
    if not path.exists() or not set(NEEDED) <= set(pl.read_csv(path, n_rows=1).columns):
        return None
    t = (
        pl.read_csv(path, columns=list(NEEDED), try_parse_dates=True)
        .filter(pl.col("outcome").is_in(KEPT_OR_MISSED))
        .sort(["patient_id", "scheduled_start"])
    )
    missed = (t["outcome"] == "no_show").to_numpy()
    observable = t["logit_observable"].to_numpy()
    intent = P.NS_DROPOUT_INTENT * t["dropout_intent"].cast(pl.Float64).to_numpy()
    # earlier rows' likelihood uses the full draw (their intent included): that is how they were drawn
    grid, weights = _propensity_posterior(t["patient_id"].to_numpy(), observable + intent, missed)
    test = (t["scheduled_start"].dt.date() >= date.fromisoformat(str(split_date))).to_numpy()
    y = missed[test]

    def auc(logit: np.ndarray, w: np.ndarray) -> float:
        return float(roc_auc_score(y, (w[test] * _p_given_not_cancelled(logit[test, None] + grid[None, :])).sum(1)))

    prior = np.exp(-0.5 * (grid / P.NS_PATIENT_SD) ** 2)
    prior_only = np.broadcast_to(prior / prior.sum(), weights.shape)
    return {
        "ceiling_roc_auc": auc(observable + intent, weights),
        "ceiling_without_intent_roc_auc": auc(observable, weights),
        "no_history_roc_auc": auc(observable, prior_only),
        "oracle_roc_auc_same_rows": float(roc_auc_score(y, t["p_no_show"].to_numpy()[test])),
        "n_test": int(test.sum()),
    }
