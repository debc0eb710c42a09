"""What training may serve: each model is measured against what needs no model, and a loser is not served.

- no-show: the better of trees and regression must rank above the patient's own history rate (ROC AUC) and
  predict better than always saying the training no-show rate (Brier); else the history rate is served, or
  nothing when even that is no better than chance (`no_show.serving_choice`), and the card and page say so;
- lead: the same choice as no-show and denial (trees vs regression on the test period), trees only when
  their fit slice has room for a split, and nothing served when the deployed model is no better than the
  source-type rate or the constant rate (`lead.serving_choice`);
- features: appointments without an episode have no episode counts (not one pooled "episode").

Small synthetic practices (tests/ml/conftest.py make_marts, test_ml_lead.make_referrals) with fixed seeds, no
dbt build: each case was chosen because it shows the situation a young practice is in.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_ml_lead import AS_OF as LEAD_AS_OF
from test_ml_lead import make_referrals

from app.lib import model_cards
from ml import artifacts, lead, no_show, sufficiency, train_score, warehouse
from ml.features import build_features, labelled_targets
from ptpulse.core.config import get_settings
from tests.ml.conftest import make_marts

# ------------------------------------------------------------------------------------ features: episode


def test_appointments_without_an_episode_get_no_episode_counts(synthetic):
    """5% of appointments exported without an episode_id were pooled into one 'episode' of every such
    appointment (counts in the hundreds); they must read as unknown, and the others must not move."""
    marts, _ = synthetic
    a = marts.appointments.copy()
    blank = np.random.default_rng(0).random(len(a)) < 0.05
    a.loc[blank, "episode_id"] = None
    blanked = marts.__class__(a, marts.episodes, marts.referrals, marts.patients, marts.as_of)
    targets = labelled_targets(a)
    f = build_features(targets, blanked)
    none = targets["episode_id"].isna().to_numpy()
    assert none.sum() > 100
    for col in ("episode_visits", "episode_no_shows", "visits_left"):
        assert f.loc[none, col].isna().all(), col
    before = build_features(labelled_targets(marts.appointments), marts).set_index("appointment_id")
    kept = f.loc[~none].set_index("appointment_id")
    assert kept["episode_visits"].notna().all() and kept["episode_visits"].max() < 40  # real episodes, not the pool
    hit = set(marts.appointments.loc[blank, "episode_id"])  # episodes that lost a row to the blanking
    untouched = ~targets.loc[~none, "episode_id"].isin(hit).to_numpy()
    assert untouched.sum() > 1000
    for col in ("episode_visits", "episode_no_shows"):
        np.testing.assert_array_equal(
            kept.loc[untouched, col].to_numpy(float), before.loc[kept.index[untouched], col].to_numpy(float)
        )


def test_an_appointment_without_an_episode_has_a_plain_reason():
    f = pd.DataFrame(
        {
            "prior_appts": [3],
            "prior_no_shows": [0],
            "no_shows_last5": [0],
            "last_k": [3],
            "prior_cancels": [0],
            "late_cancels_last5": [0],
            "lead_time_days": [2.0],
            "days_since_last_visit": [4.0],
            "visit_type": ["follow_up"],
            "episode_visits": [np.nan],
            "planned_visits": [np.nan],
            "hour": [9.0],
            "day_of_week": ["Tue"],
            "payer_class": ["commercial"],
            "age_band": ["35-49"],
            "clinic_id": ["C1"],
            "source_type": ["physician"],
        }
    )
    assert no_show.reason_texts(f).loc[0, "visit"] == "visit without an episode on record"


# ------------------------------------------------------------------------------------ no-show serving rule


def test_serving_choice_gates_on_the_history_rate_and_the_constant_rate():
    good = {"roc_auc": 0.70, "brier": 0.100}
    # the young practice the review measured: regression 0.631 / Brier 0.1039, history 0.678 / 0.0975, constant 0.1031
    young = no_show.serving_choice(
        no_show.LOGISTIC, {"roc_auc": 0.631, "brier": 0.1039}, {"roc_auc": 0.678, "brier": 0.0975}, 0.1031
    )
    assert young[0] == no_show.HISTORY and "0.631 vs 0.678" in young[1]
    assert no_show.serving_choice(no_show.BOOSTED, good, {"roc_auc": 0.65, "brier": 0.101}, 0.11)[0] == no_show.BOOSTED
    # ranks better than the history rate, but its probabilities are worse than a constant
    worse = no_show.serving_choice(no_show.BOOSTED, good, {"roc_auc": 0.65, "brier": 0.095}, 0.099)
    assert worse[0] == no_show.HISTORY and "Brier" in worse[1]
    # a tie with the history rate is not better than it
    assert no_show.serving_choice(no_show.BOOSTED, good, {"roc_auc": 0.70, "brier": 0.099}, 0.11)[0] == no_show.HISTORY
    # nothing beats chance and the constant: nothing is served
    none = no_show.serving_choice(no_show.BOOSTED, good, {"roc_auc": 0.50, "brier": 0.12}, 0.099)
    assert none[0] is None and "chance" in none[1]


def _labelled(n_patients: int, seed: int):
    marts, _ = make_marts(n_patients, seed=seed)
    targets = labelled_targets(marts.appointments)
    return marts, targets, (targets["status"] == "no_show").to_numpy(int)


def test_a_young_practice_is_served_the_history_rate_and_says_so(tmp_path):
    """150 patients (~1,100 labelled appointments): the regression (ROC AUC 0.687) ranks worse than the patients'
    own history rate (0.740). The history rate is served, the card and the page say so, the scores are it."""
    marts, targets, y = _labelled(150, seed=5)
    settings = get_settings(tmp_path / "home").ensure()
    card = train_score.train_no_show(None, settings, marts, "2025-01-01T00:00:00+00:00", None)
    cmp = card["baseline_comparison"]
    assert card["status"] == sufficiency.TRAINED
    assert card["deployed_model"] == cmp["deployed"] == no_show.HISTORY
    assert max(cmp[no_show.BOOSTED], cmp[no_show.LOGISTIC]) < cmp["history_rate"] == card["roc_auc"]
    assert card["brier"] == card["baselines"]["history_rate"]["brier"] < card["baselines"]["constant_rate"]["brier"]
    assert card["features"] == ["prior_appts", "prior_no_shows"]
    assert card["withheld"] is None and "test period" in cmp["chosen_on"]

    model = artifacts.load_model(artifacts.model_path(settings))
    assert model.kind == no_show.HISTORY
    features = build_features(targets, marts)
    np.testing.assert_allclose(model.predict(features), no_show.history_rate(features, model.base_rate))
    out = no_show.explain(model, features.head(300))
    assert out["reason_1"].str.len().gt(0).all()

    md = artifacts.card_path(settings).with_suffix(".md").read_text()
    assert "No trained model: the score is each patient's own no-show rate" in md
    kind, text = model_cards.no_show_verdict(json.loads(artifacts.card_path(settings).read_text()))
    assert kind == "fallback" and "own no-show rate" in text and "not a trained model" in text
    assert f"{cmp[no_show.LOGISTIC]:.3f} vs {cmp['history_rate']:.3f}" in text


def test_a_practice_where_nothing_beats_chance_gets_no_no_show_scores(tmp_path):
    """200 patients, seed 2: trees 0.51, regression 0.53, history rate 0.50 on the test period. Nothing is served:
    no model file, a not_trained card that keeps the measured figures, and the page withholds scores."""
    marts, _, _ = _labelled(200, seed=2)
    settings = get_settings(tmp_path / "home").ensure()
    artifacts.save_model(artifacts.model_path(settings), {"an": "older model"})
    card = train_score.train_no_show(None, settings, marts, "2025-01-01T00:00:00+00:00", None)
    assert card["status"] == sufficiency.NOT_TRAINED and card["withheld"] is True
    assert card["reason"].startswith("not served: on the test period") and "chance" in card["reason"]
    assert card["deployed_model"] is None and card["roc_auc"] is not None  # measured, on the card
    assert not artifacts.model_path(settings).exists()
    kind, text = model_cards.no_show_verdict(card)
    assert kind == "refuse" and text.startswith("No-show scores are withheld")


def test_history_verdict_is_plain_and_a_withheld_card_is_refused():
    history = {
        "roc_auc": 0.678,
        "deployed_model": "history_rate",
        "baselines": {"logistic_regression": {"roc_auc": 0.631}},
        "baseline_comparison": {"why": "the logistic regression ranked no-shows no better than ... (0.631 vs 0.678)"},
    }
    kind, text = model_cards.no_show_verdict(history)
    assert kind == "fallback" and "own no-show rate" in text and "0.631 vs 0.678" in text
    # the history rate served because the model's probabilities lost to a constant: its lower AUC is no refusal
    assert model_cards.no_show_verdict({**history, "roc_auc": 0.60})[0] == "fallback"
    withheld = {"status": "not_trained", "withheld": True, "reason": "not served: ...", "roc_auc": 0.5}
    assert model_cards.no_show_verdict(withheld)[0] == "refuse"


# ------------------------------------------------------------------------------------ lead serving rule


def test_trees_need_room_for_a_split():
    fit = {n: len(np.flatnonzero(np.argsort(np.arange(n)) < int(n * 0.75))) for n in (266, 267, 268)}
    for n, k in fit.items():
        assert lead.trees_possible(np.arange(n)) == (k >= 2 * lead.MIN_LEAF)
    assert not lead.trees_possible(np.arange(228)) and lead.trees_possible(np.arange(400))


def test_lead_serving_choice():
    src = {"roc_auc": 0.54}
    assert lead.serving_choice(lead.BOOSTED, {"roc_auc": 0.79, "brier": 0.13}, src, 0.20)[0]
    assert not lead.serving_choice(lead.BOOSTED, {"roc_auc": 0.50, "brier": 0.18}, src, 0.20)[0]  # constant trees
    assert not lead.serving_choice(lead.LOGISTIC, {"roc_auc": 0.53, "brier": 0.15}, src, 0.20)[0]  # below the rate
    assert not lead.serving_choice(lead.LOGISTIC, {"roc_auc": 0.80, "brier": 0.21}, src, 0.20)[0]  # worse than constant
    assert not lead.serving_choice(lead.LOGISTIC, {"roc_auc": 0.49, "brier": 0.15}, {"roc_auc": 0.40}, 0.20)[0]


def _train_lead(monkeypatch, tmp_path, referrals: pd.DataFrame):
    settings = get_settings(tmp_path / "home").ensure()
    monkeypatch.setattr(warehouse, "as_of", lambda con: LEAD_AS_OF)
    monkeypatch.setattr(warehouse, "read_lead_referrals", lambda con: referrals)
    return settings, train_score.train_lead(None, settings, "2025-01-01T00:00:00+00:00")


def test_a_young_practice_serves_the_evaluated_lead_model(monkeypatch, tmp_path):
    """60 referrals (332 snapshots): the trees' fit slice holds 171 rows, too few for one split of 100-row leaves
    (they scored every referral the same: ROC AUC 0.500, yet were served). The regression is the candidate, is
    what the card measures and what is saved, and is served because it beats the baselines."""
    settings, card = _train_lead(monkeypatch, tmp_path, make_referrals(60, seed=3))
    cmp = card["baseline_comparison"]
    assert card["status"] == sufficiency.TRAINED and card["served"] is True
    assert card["deployed_model"] == cmp["deployed"] == lead.LOGISTIC
    assert cmp[lead.BOOSTED] is None and cmp["trees"].startswith("not fitted")
    assert card["roc_auc"] == cmp[lead.LOGISTIC] == card["baselines"]["logistic_regression"]["roc_auc"]
    assert card["roc_auc"] > card["baseline_roc_auc"] and card["brier"] < card["baselines"]["constant_rate"]["brier"]
    assert card["calibration"].startswith("none: logistic regression")
    model = artifacts.load_model(artifacts.lead_model_path(settings))
    assert model.kind == lead.LOGISTIC
    _, snap, _ = lead.snapshots(make_referrals(60, seed=3), LEAD_AS_OF)
    p = model.predict(snap)
    assert np.unique(p.round(6)).size > 20 and ((p > 0) & (p < 1)).all()


def test_a_lead_model_no_better_than_the_baseline_is_not_served(monkeypatch, tmp_path):
    """Conversion decided by a coin: the better model ranks test referrals at ROC AUC 0.483 against 0.501 for
    the source-type rate. Not served: no model file (no lead scores, so the Work queue says nothing about
    conversion), a not_trained card keeping the measured figures, and the build status says why."""
    refs = make_referrals(1500, seed=5)
    conv = np.random.default_rng(9).random(len(refs)) < 0.5
    received = pd.to_datetime(refs["received_at"])
    refs["scheduled_at"] = pd.NaT
    refs["evaluated_at"] = (received + pd.Timedelta(days=3)).where(conv)
    refs["exit_at"] = (received + pd.Timedelta(days=3)).where(~conv)
    settings = get_settings(tmp_path / "home").ensure()
    artifacts.save_model(artifacts.lead_model_path(settings), {"an": "older model"})
    settings, card = _train_lead(monkeypatch, tmp_path, refs)
    assert card["status"] == sufficiency.NOT_TRAINED and card["withheld"] is True and card["served"] is False
    assert card["reason"].startswith("not served: on the test period") and "no better than" in card["reason"]
    assert card["roc_auc"] <= max(0.5, card["baseline_roc_auc"])
    assert not artifacts.lead_model_path(settings).exists()
    status = train_score._card_status(artifacts.lead_card_path(settings), None)
    assert status["status"] == sufficiency.NOT_TRAINED and status["reason"] == card["reason"]
    assert status["withheld"] is True


@pytest.mark.parametrize("n", [60, 120])
def test_the_final_lead_model_is_the_evaluated_recipe(n):
    """The final fit refits what the evaluation measured and chose: never trees the card did not measure."""
    rows, feats, y = lead.snapshots(make_referrals(n, seed=3), LEAD_AS_OF)
    ev = lead.evaluate(rows, feats, y)
    cmp = ev["baseline_comparison"]
    assert ev["deployed_model"] == lead.choose_deployed(cmp[lead.BOOSTED], cmp[lead.LOGISTIC])
    assert (cmp[lead.BOOSTED] is None) == (n == 60)  # 60 referrals: no room for a split
    model = lead.fit_final(rows, feats, y, "t", "v", kind=ev["deployed_model"])
    assert model.kind == ev["deployed_model"]


def test_chance_auc_is_what_a_signal_free_ranking_stays_below():
    """ml.evaluation.chance_auc: 0.5 + 2 standard errors of a random ranking; random scores stay below it ~97.5%
    of the time (checked on 400 draws of the small practice's denial test size), and unknown counts give 0.5."""
    from ml.evaluation import chance_auc, classification_metrics

    m = {"n": 1855, "positives": 130}
    assert abs(chance_auc(m) - 0.553) < 0.001
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(130, int), np.zeros(1725, int)]
    aucs = [classification_metrics(y, rng.random(len(y)))["roc_auc"] for _ in range(400)]
    assert 0.95 <= np.mean(np.array(aucs) < chance_auc(m)) <= 1.0
    assert chance_auc({"roc_auc": 0.7}) == 0.5 and chance_auc({"n": 10, "positives": 0}) == 0.5
