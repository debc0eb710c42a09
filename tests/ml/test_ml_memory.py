"""ML's memory bounds at chain scale (docs/scale.md): scoring reads only the history of the patients it scores,
and training over $PTPULSE_ML_ROW_BUDGET uses a hash share of patients and says so on the model card."""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from ml import artifacts, warehouse
from ml.features import build_features, labelled_targets, upcoming_targets
from ml.train_score import ROW_BUDGET_ENV, train


def test_scoring_reads_only_upcoming_patients_and_their_features_are_unchanged(built_home):
    with duckdb.connect(str(built_home.analytics_db), read_only=True) as con:
        full = warehouse.read_marts(con)
        scored = warehouse.read_marts(con, upcoming_only=True)
    upcoming = upcoming_targets(full.appointments)
    assert len(upcoming) > 0
    assert len(scored.appointments) < len(full.appointments)
    a = build_features(upcoming, full).set_index(upcoming["appointment_id"])
    kept = upcoming_targets(scored.appointments)
    b = build_features(kept, scored).set_index(kept["appointment_id"])
    pd.testing.assert_frame_equal(a, b.loc[a.index], check_dtype=False)


def test_training_over_the_row_budget_samples_patients_and_says_so(built_home, copy_home, monkeypatch):
    settings = copy_home(built_home)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        total = con.execute("select count(*) from marts.appointments").fetchone()[0]
        share = warehouse.training_share(con, total // 2)
        sample = warehouse.read_marts(con, patient_share=share)
        full = warehouse.read_marts(con)
    assert 0.4 <= share <= 0.5
    patients = full.appointments["patient_id"].nunique()
    assert 0.3 * patients < sample.appointments["patient_id"].nunique() < 0.7 * patients
    kept = set(sample.appointments["patient_id"])
    whole = full.appointments[full.appointments["patient_id"].isin(kept)]
    assert len(whole) == len(sample.appointments)  # a kept patient keeps every appointment (exact features)

    monkeypatch.setenv(ROW_BUDGET_ENV, str(total // 2))
    summary = train(settings)
    card = json.loads(artifacts.card_path(settings).read_text())
    assert card["training_sample"]["patient_share"] == share
    assert summary["no_show"]["n_train"] + summary["no_show"]["n_test"] < len(labelled_targets(full.appointments))
    assert "Sampled for memory" in artifacts.card_path(settings).with_suffix(".md").read_text()
