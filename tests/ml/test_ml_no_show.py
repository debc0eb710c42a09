"""No-show model on the synthetic practice: signal, calibration, bands, reasons, baselines, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.evaluation import serving_decision
from ml.features import build_features, labelled_targets, upcoming_targets
from ml.no_show import (
    BOOSTED,
    GROUPS,
    HISTORY,
    LOGISTIC,
    WORDS,
    NoShowModel,
    contributions,
    encode,
    evaluate,
    explain,
    fit_final,
    reason_texts,
    risk_bands,
)


@pytest.fixture(scope="module")
def labelled(synthetic):
    marts, truth = synthetic
    targets = labelled_targets(marts.appointments)
    features = build_features(targets, marts)
    y = (targets["status"] == "no_show").to_numpy(int)
    p_true = targets[["appointment_id"]].merge(truth, how="left")["p_no_show"]
    return marts, targets, features, y, p_true


@pytest.fixture(scope="module")
def evaluation(labelled):
    _, targets, features, y, p_true = labelled
    return evaluate(features, y, targets["scheduled_start"], p_true)


def test_time_split_trains_on_the_past_only(labelled, evaluation):
    _, targets, _, _, _ = labelled
    card = evaluation.card
    split = pd.Timestamp(card["split_date"])
    assert card["n_train"] == int((targets["scheduled_start"] < split).sum())
    assert card["n_test"] == int((targets["scheduled_start"] >= split).sum())
    assert card["n_train"] > 3 * card["n_test"] > 0


def test_model_finds_signal_and_is_calibrated(evaluation):
    card = evaluation.card
    assert card["roc_auc"] > card["baseline_roc_auc"]  # beats the patient's own history rate
    assert card["roc_auc"] > 0.85 * card["oracle_roc_auc"]
    assert card["brier"] < card["brier_reference"]
    assert 0.75 < card["calibration_slope"] < 1.25
    assert card["ece"] < 0.04
    bins = evaluation.calibration_bins
    assert sum(b["n"] for b in bins) == card["n_test"]
    assert card["risk_bands_test"]["high"]["observed_rate"] > card["risk_bands_test"]["low"]["observed_rate"]
    assert {"clinic", "payer_class", "age_band", "visit_type"} == set(card["subgroups"])
    cmp = card["baseline_comparison"]
    # the candidate chosen on the validation slice is what is measured on the test period and served
    assert card["deployed_model"] == cmp["deployed"] == cmp["best_model"]
    assert cmp["chosen_on"].startswith("the validation slice") and not cmp["chosen_by_default"]
    val = cmp["validation"]
    assert val[cmp["best_model"]]["roc_auc"] == max(val[BOOSTED]["roc_auc"], val[LOGISTIC]["roc_auc"])
    assert card["candidates"][cmp["best_model"]]["roc_auc"] == card["roc_auc"]
    gate = serving_decision(
        cmp["best_model"],
        card["candidates"][cmp["best_model"]],
        card["baselines"]["history_rate"],
        cmp["brier_constant_rate"],
        WORDS,
        (HISTORY, card["baselines"]["history_rate"]),
    )
    assert cmp["serving_gate"]["served"] == gate.served and cmp["why"] == gate.reason
    assert set(card["subgroups"]["clinic"]) == {"C1", "C2"}


@pytest.fixture(scope="module")
def model(labelled) -> NoShowModel:
    _, targets, features, y, _ = labelled
    return fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v")


def test_bands_are_the_top_tenth_and_next_fifth_by_rank(model, labelled):
    _, _, features, _, _ = labelled
    p = model.predict(features)
    band = model.band(p)
    n = len(p)
    assert (band == "high").sum() == int(np.floor(0.1 * n + 0.5))
    assert (band != "low").sum() == int(np.floor(0.3 * n + 0.5))
    assert p[band == "high"].min() >= p[band == "medium"].max() >= p[band == "low"].max()
    assert model.thresholds["high"] > model.thresholds["medium"]


def test_risk_bands_rank_within_each_clinic_and_break_ties_by_id():
    p = np.array([0.9, 0.1, 0.2, 0.3, 0.05, 0.5] + [0.2] * 14)
    clinic = ["A"] * 6 + ["B"] * 14
    ids = [f"X{i:02d}" for i in range(20)][::-1]
    band = risk_bands(p, clinic, ids)
    assert list(band[:6]) == ["high", "low", "low", "low", "low", "medium"]  # A (6): 1 high, 2 in the top 30%
    b = band[6:]
    assert (b == "high").sum() == 1 and (b == "medium").sum() == 3  # B: ties of 0.2, split by id
    assert band[19] == "high"  # the smallest id among the tied
    assert list(risk_bands(p, clinic, ids)) == list(band)
    assert risk_bands(np.array([]), None).size == 0
    assert list(risk_bands(np.array([0.3, 0.1, 0.2]))) == ["medium", "low", "low"]


def test_logistic_fallback_is_calibrated_and_explained(labelled):
    marts, targets, features, y, _ = labelled
    fallback = fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v", kind=LOGISTIC)
    assert fallback.kind == LOGISTIC
    p = fallback.predict(features)
    assert abs(p.mean() - y.mean()) < 0.01
    up = upcoming_targets(marts.appointments)
    out = explain(fallback, build_features(up, marts))
    assert len(out) == len(up) and out["reason_1"].str.len().gt(0).all()
    assert (out["risk_band"] == "high").sum() == int(np.floor(0.1 * len(up) + 0.5))


def test_all_missing_features_are_dropped_not_a_crash(labelled):
    """A basic scheduler export has no plan of care and no referral date: the recipe must still train."""
    marts, targets, features, y, _ = labelled
    empty = ["planned_visits", "visits_left", "frequency_per_week", "days_since_referral", "body_region"]
    stripped = features.copy()
    stripped[empty] = np.nan
    ev = evaluate(stripped, y, targets["scheduled_start"])
    optional = {"reminder_sent", "sex", "comorbidities"}  # extra fields the synthetic practice does not have
    assert set(ev.card["dropped_features"]) == set(empty) | optional
    assert ev.card["roc_auc"] > 0.6
    for kind in (BOOSTED, LOGISTIC):
        m = fit_final(stripped, y, targets["scheduled_start"], trained_at="t", version="v", kind=kind)
        assert set(m.dropped) == set(empty) | optional and not set(empty) & (set(m.numeric) | set(m.categories))
        up = build_features(upcoming_targets(marts.appointments), marts)
        assert np.isfinite(explain(m, up)["probability"]).all()  # scoring rows that do have the field is fine


def _basic_scheduler_export(marts, extra_patient_columns: dict | None = None):
    """The practice's export stripped to what a basic scheduler has: patient, booked at, appointment at,
    status (plus the appointment id) and an age band; no episodes, referrals, clinic, visit type or length."""
    from dataclasses import replace

    from ml.features import BASIC_APPOINTMENT, age_band

    appts = marts.appointments[list(BASIC_APPOINTMENT)].copy()
    birth = marts.patients.set_index("patient_id")["birth_date"]
    age = (marts.as_of - pd.to_datetime(birth)).dt.days / 365.25
    patients = pd.DataFrame({"patient_id": birth.index, "age_band": age_band(age).to_numpy()})
    for name, values in (extra_patient_columns or {}).items():
        patients[name] = values
    return replace(marts, appointments=appts, episodes=pd.DataFrame(), referrals=pd.DataFrame(), patients=patients)


def test_trains_on_a_basic_scheduler_export(synthetic):
    """Issue 12: real, partial data. Only patient, booked at, appointment at, status and age band: the recipe
    still trains and scores, names every feature it could not use, and beats the patient-history baseline."""
    marts, truth = synthetic
    basic = _basic_scheduler_export(marts)
    targets = labelled_targets(basic.appointments)
    assert len(targets) == len(labelled_targets(marts.appointments))  # no is_future: outcome recorded = past
    features = build_features(targets, basic)
    y = (targets["status"] == "no_show").to_numpy(int)
    p_true = targets[["appointment_id"]].merge(truth, how="left")["p_no_show"]
    ev = evaluate(features, y, targets["scheduled_start"], p_true)
    gone = {"planned_visits", "visit_type", "clinic_id", "duration_min", "episode_visits", "source_type", "sex"}
    assert gone <= set(ev.card["dropped_features"])
    assert "age_band" not in ev.card["dropped_features"] and "lead_time_days" not in ev.card["dropped_features"]
    assert ev.card["roc_auc"] > ev.card["baseline_roc_auc"] and ev.card["roc_auc"] > 0.65
    for kind in (BOOSTED, LOGISTIC):
        m = fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v", kind=kind)
        out = explain(m, build_features(upcoming_targets(basic.appointments), basic))
        assert len(out) > 0 and np.isfinite(out["probability"]).all() and out["reason_1"].str.len().gt(0).all()


def test_optional_columns_are_used_when_present(synthetic):
    """A practice's extra field (here `sex`) becomes a feature when its export has it, and is dropped when not."""
    marts, _ = synthetic
    rng = np.random.default_rng(3)
    basic = _basic_scheduler_export(marts, {"sex": rng.choice(["F", "M"], len(marts.patients))})
    targets = labelled_targets(basic.appointments)
    features = build_features(targets, basic)
    assert features["sex"].notna().all()
    y = (targets["status"] == "no_show").to_numpy(int)
    m = fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v")
    assert "sex" in m.categories and "sex" not in m.dropped


def test_reasons_are_plain_words_for_the_right_direction(model, labelled):
    marts = labelled[0]
    up = upcoming_targets(marts.appointments)
    feats = build_features(up, marts)
    out = explain(model, feats)
    assert len(out) == len(up)
    assert out["reason_1"].str.len().gt(0).all()
    assert set(out["risk_band"]) <= {"low", "medium", "high"}
    # a patient with three recent no-shows is high risk and told so first
    risky = feats.iloc[[0]].copy()
    risky[["prior_appts", "prior_no_shows", "no_shows_last5", "episode_no_shows", "last_k"]] = [5, 3, 3, 3, 5]
    risky["prior_no_show_rate"] = 0.6
    risky["days_since_last_no_show"] = 4.0
    one = explain(model, risky)
    assert one["reason_1"].iloc[0] == "3 no-shows in the last 5 visits"


def test_reason_texts_templates():
    f = pd.DataFrame(
        {
            "prior_appts": [0, 5],
            "prior_no_shows": [0, 1],
            "no_shows_last5": [0, 1],
            "last_k": [0, 5],
            "prior_cancels": [0, 2],
            "late_cancels_last5": [0, 0],
            "lead_time_days": [0.3, 24.6],
            "days_since_last_visit": [np.nan, 9.2],
            "visit_type": ["initial_eval", "follow_up"],
            "episode_visits": [0, 4],
            "planned_visits": [np.nan, 12.0],
            "hour": [8.0, 15.5],
            "day_of_week": ["Mon", "Fri"],
            "payer_class": ["medicaid", "commercial"],
            "age_band": ["18-34", None],
            "clinic_id": ["C1", "C2"],
            "source_type": ["physician", "direct_access"],
        }
    )
    t = reason_texts(f)
    assert list(t["history"]) == ["first appointment on record", "1 no-show in the last 5 visits"]
    assert list(t["lead"]) == ["booked less than a day ahead", "booked 24 days ahead"]
    assert list(t["gap"]) == ["no visit attended yet", "9 days since the last visit"]
    assert list(t["visit"]) == ["initial evaluation", "visit 5 of 12 planned"]
    assert list(t["slot"]) == ["Monday 8 am slot", "Friday 3 pm slot"]
    assert list(t["cancels"]) == ["no earlier cancellations", "2 earlier cancellations"]
    assert list(t["payer"]) == ["Medicaid", "commercial insurance"]
    assert list(t["age"]) == ["age 18-34", "age unknown"]
    assert set(t.columns) == set(GROUPS)


def test_a_history_that_raises_the_risk_never_reads_as_reassurance(model, labelled):
    """5 no-shows in 18 visits, none in the last 5: the history raises the risk, and its reason said only
    "no no-shows in the last 5 visits". Every count is worded now, and a clean record said to raise the risk
    is stated without "no no-shows"."""
    features = labelled[2]
    f = features.head(6).copy()
    f["prior_appts"] = [18, 18, 9, 12, 3, 3]
    f["prior_no_shows"] = [5, 5, 2, 0, 0, 0]
    f["no_shows_last5"] = [0, 2, 2, 0, 0, 0]
    f["last_k"] = [5, 5, 5, 5, 3, 3]
    history = list(reason_texts(f, history_up=np.array([1, 1, 1, 0, 1, 0], bool))["history"])
    assert history == [
        "5 no-shows in 18 earlier visits (none in the last 5)",
        "2 no-shows in the last 5 visits, 5 in all 18",
        "2 no-shows in the last 5 visits",
        "no no-shows in 12 earlier visits",
        "3 earlier visits on record",
        "no no-shows in 3 earlier visits",
    ]
    # on the trained model: wherever history pushes a row's risk up, its sentence is no reassurance
    history_rows = features[features["prior_no_shows"] > 0].head(400).reset_index(drop=True)
    p, contrib = contributions(model, history_rows)
    out = explain(model, history_rows)
    texts = reason_texts(history_rows, history_up=contrib["history"].to_numpy() > 0)["history"]
    raising = contrib["history"].to_numpy() > 0
    assert raising.any() and not texts[raising].str.startswith("no no-shows").any()
    said = out["reason_1"].where(raising & (p >= model.base_rate)).dropna()
    assert not said.str.contains("no no-shows").any()


def test_training_is_deterministic(labelled, model):
    _, targets, features, y, _ = labelled
    again = fit_final(features, y, targets["scheduled_start"], trained_at="t", version="v")
    assert np.array_equal(model.predict(features), again.predict(features))
    assert model.thresholds == again.thresholds


def test_unseen_categories_do_not_break_scoring(model, labelled):
    feats = labelled[2].head(5).copy()
    feats["clinic_id"] = "NEW_CLINIC"
    feats["payer_class"] = None
    x = encode(feats, model.categories)
    assert x["clinic_id"].isna().all()
    assert np.isfinite(model.predict(feats)).all()
