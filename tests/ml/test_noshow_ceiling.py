"""The point-in-time ceiling of the no-show bench (bench/noshow_ceiling.py): its posterior, and where it sits
between what no history gives and the oracle on a generated practice."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.noshow_ceiling import (  # noqa: E402
    _p_given_not_cancelled,
    _propensity_posterior,
    point_in_time_ceiling,
)
from seed_data import params as P  # noqa: E402


def test_posterior_uses_only_the_patients_earlier_rows():
    patient = np.array(["A", "A", "A", "B", "B"])
    logit = np.array([-2.0, -1.5, -2.5, -1.0, -3.0])
    missed = np.array([True, False, True, False, True])
    grid, weights = _propensity_posterior(patient, logit, missed)
    prior = np.exp(-0.5 * (grid / P.NS_PATIENT_SD) ** 2)
    for i in range(len(patient)):
        brute = prior.copy()
        for j in range(i):  # earlier rows of the same patient, one by one
            if patient[j] == patient[i]:
                q = _p_given_not_cancelled(logit[j] + grid)
                brute *= q if missed[j] else 1 - q
        np.testing.assert_allclose(weights[i], brute / brute.sum(), rtol=1e-9)
    # a patient's first row knows nothing yet: the prior
    np.testing.assert_allclose(weights[3], prior / prior.sum(), rtol=1e-9)
    # a no-show moves the propensity up
    assert weights[1] @ grid > weights[0] @ grid


def test_ceiling_sits_between_no_history_and_the_oracle(small_practice):
    figures = point_in_time_ceiling(small_practice / "truth", "2025-01-01")
    assert figures is not None and figures["n_test"] > 1000
    assert figures["no_history_roc_auc"] < figures["ceiling_without_intent_roc_auc"] < figures["ceiling_roc_auc"]
    assert figures["ceiling_roc_auc"] < figures["oracle_roc_auc_same_rows"]


def test_older_truth_without_the_draws_parts_gives_none(tmp_path):
    pl.DataFrame({"appointment_id": ["AP1"], "p_no_show": [0.1], "p_no_show_any": [0.09]}).write_csv(
        tmp_path / "appointment_truth.csv"
    )
    assert point_in_time_ceiling(tmp_path, "2025-01-01") is None
