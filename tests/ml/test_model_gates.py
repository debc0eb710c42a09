"""What training may choose and serve: one rule for the three classifiers (ml/evaluation.py), each model measured
against what needs no model, and a loser is not served.

- the choice: trees or regression is decided on the validation slice, the latest 20% of the training period, never
  on the test rows (rewriting the test labels to favour either candidate leaves it as it is); too few outcomes to
  compare means the regression by default, said on the card (`evaluation.choose_candidate`);
- the gate (`evaluation.serving_decision`): no-show: the chosen model must rank above the patient's own history
  rate and chance (ROC AUC) and predict better than always saying the training no-show rate (Brier); else the
  history rate is served, or nothing when even that is no better than chance, and the card and page say so;
  lead and denial: the same bars against the source-type rate / the payer's rate, nothing served otherwise;
- lead: trees a candidate only when their fit slice has room for a split;
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
from ml import artifacts, denial, lead, no_show, sufficiency, tabular, train_score, warehouse
from ml.evaluation import choose_candidate, classification_metrics, serving_decision
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


def _decide(module, kind, m, m_base, brier_constant, fallback=None):
    return serving_decision(kind, m, m_base, brier_constant, module.WORDS, fallback)


def test_serving_decision_gates_on_the_baseline_chance_and_the_constant_rate():
    """The one rule (ml/evaluation.serving_decision), with the no-show model's history-rate fallback."""
    good = {"roc_auc": 0.70, "brier": 0.100}
    hist = no_show.HISTORY
    # the young practice the review measured: regression 0.631 / Brier 0.1039, history 0.678 / 0.0975, constant 0.1031
    young_hist = {"roc_auc": 0.678, "brier": 0.0975}
    young = _decide(
        no_show, no_show.LOGISTIC, {"roc_auc": 0.631, "brier": 0.1039}, young_hist, 0.1031, (hist, young_hist)
    )
    assert young.served == hist and "0.631 vs 0.678" in young.reason and young.baseline_roc_auc == 0.678
    better = {"roc_auc": 0.65, "brier": 0.101}
    assert _decide(no_show, no_show.BOOSTED, good, better, 0.11, (hist, better)).served == no_show.BOOSTED
    # ranks better than the history rate, but its probabilities are worse than a constant
    worse = _decide(
        no_show, no_show.BOOSTED, good, {"roc_auc": 0.65, "brier": 0.095}, 0.099, (hist, better | {"brier": 0.095})
    )
    assert worse.served == hist and "Brier" in worse.reason
    # a tie with the history rate is not better than it
    tie = {"roc_auc": 0.70, "brier": 0.099}
    assert _decide(no_show, no_show.BOOSTED, good, tie, 0.11, (hist, tie)).served == hist
    # nothing beats chance and the constant: nothing is served
    flat = {"roc_auc": 0.50, "brier": 0.12}
    none = _decide(no_show, no_show.BOOSTED, good, flat, 0.099, (hist, flat))
    assert none.served is None and none.withheld and "chance" in none.reason
    assert none.figures()["fallback"] == hist and none.figures()["brier_constant"] == 0.099


@pytest.mark.parametrize("module", [no_show, lead, denial], ids=["no_show", "lead", "denial"])
def test_the_three_models_share_one_serving_rule(module):
    """One rule, each model's own words: served only strictly above its baseline's and chance's ROC AUC and strictly
    below the constant rate's Brier; no fallback for lead and denial. The three used to differ on an unknown
    baseline ROC AUC (lead ignored it and served; no-show and denial withheld): it cannot be beaten now."""
    ok, base = {"roc_auc": 0.80, "brier": 0.05, "n": 1855, "positives": 130}, {"roc_auc": 0.70}
    served = _decide(module, module.BOOSTED, ok, base, 0.06)
    assert served.served == module.BOOSTED and not served.withheld and module.WORDS.baseline in served.reason
    assert served.chance_auc == pytest.approx(0.553, abs=0.001)
    tie = _decide(module, module.LOGISTIC, ok, {"roc_auc": 0.80}, 0.06)
    assert tie.withheld and module.WORDS.baseline in tie.reason and "logistic regression" in tie.reason
    brier = _decide(module, module.BOOSTED, ok, base, 0.05)
    assert brier.withheld and module.WORDS.constant in brier.reason
    lucky = _decide(
        module, module.BOOSTED, ok | {"roc_auc": 0.55}, {"roc_auc": 0.52}, 0.06
    )  # above the rate, not chance
    assert lucky.withheld and "chance" in lucky.reason and "0.553" in lucky.reason
    assert _decide(module, module.BOOSTED, {"roc_auc": None, "brier": 0.01}, base, 0.05).withheld
    assert _decide(module, module.BOOSTED, ok, {"roc_auc": None}, 0.06).withheld  # unknown baseline: not beaten


def test_choose_candidate_reads_only_the_slices_it_is_given():
    """The choice (ml/evaluation.choose_candidate): the higher validation ROC AUC, ties to the earlier candidate,
    fitted only on the rows before the slice and scored only on the slice; a candidate that cannot be fitted is
    left out; too few outcomes in the slices mean the default, said in `chosen_on`."""
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.2).astype(int)
    order = np.arange(n)
    fit, val = order < 1200, (order >= 1200) & (order < 1600)  # rows from 1600 on stand for the test period
    calls = []

    def fit_predict(kind, fit_rows, score_rows):
        calls.append((kind, fit_rows.copy(), score_rows.copy()))
        noise = {"a": 1.0, "b": 0.5, "c": 1.0}[kind]
        return 1 / (1 + np.exp(-(2 * y[score_rows] - 1 + noise * rng.standard_normal(int(score_rows.sum())))))

    words = no_show.WORDS
    choice = choose_candidate(("a", "b"), fit_predict, y, fit, val, order, default="a", start="d", words=words)
    assert choice.kind == "b" and not choice.by_default and choice.chosen_on.startswith("the validation slice")
    assert choice.validation_auc("b") > choice.validation_auc("a")
    assert all((f == fit).all() and (s == val).all() for _, f, s in calls)  # never the rows after the slice
    same = choose_candidate(
        ("a", "c"), lambda k, f, s: y[s] * 1.0, y, fit, val, order, default="c", start="d", words=words
    )
    assert same.kind == "a"  # a tie keeps the earlier candidate
    skipped = choose_candidate(
        ("a", "b"),
        lambda k, f, s: "not fitted: too few" if k == "a" else y[s] * 1.0,
        y,
        fit,
        val,
        order,
        default="a",
        start="d",
        words=words,
    )
    assert skipped.kind == "b" and "the only candidate: not fitted: too few" in skipped.chosen_on
    few = val & (np.cumsum(y * val) <= 9)  # a slice with 9 positives
    default = choose_candidate(("a", "b"), fit_predict, y, fit, few, order, default="b", start="d", words=words)
    assert default.kind == "b" and default.by_default and "9 no-shows" in default.chosen_on
    assert default.chosen_on.startswith("default: the b")


def _labelled(n_patients: int, seed: int):
    marts, _ = make_marts(n_patients, seed=seed)
    targets = labelled_targets(marts.appointments)
    return marts, targets, (targets["status"] == "no_show").to_numpy(int)


def test_a_young_practice_is_served_the_history_rate_and_says_so(tmp_path):
    """150 patients (~1,100 labelled appointments): the trees, chosen over the regression on the validation slice
    (ROC AUC 0.692 vs 0.689), rank the test period worse than the patients' own history rate (0.643 vs 0.740). The
    history rate is served, the card and the page say so, the scores are it."""
    marts, targets, y = _labelled(150, seed=5)
    settings = get_settings(tmp_path / "home").ensure()
    card = train_score.train_no_show(None, settings, marts, "2025-01-01T00:00:00+00:00", None)
    cmp = card["baseline_comparison"]
    assert card["status"] == sufficiency.TRAINED
    assert card["deployed_model"] == cmp["deployed"] == no_show.HISTORY
    chosen, loser = cmp["best_model"], ({no_show.BOOSTED, no_show.LOGISTIC} - {cmp["best_model"]}).pop()
    assert cmp[chosen] < cmp["history_rate"] == card["roc_auc"] and cmp[loser] is None  # the loser: not on test
    assert card["brier"] == card["baselines"]["history_rate"]["brier"] < card["baselines"]["constant_rate"]["brier"]
    assert card["features"] == ["prior_appts", "prior_no_shows"]
    assert card["withheld"] is None and cmp["chosen_on"].startswith("the validation slice")

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
    assert f"{cmp[chosen]:.3f} vs {cmp['history_rate']:.3f}" in text


def test_a_practice_where_nothing_beats_chance_gets_no_no_show_scores(tmp_path):
    """200 patients, seed 2: the trees (chosen on the validation slice) 0.51, history rate 0.50 on the test period,
    chance reaches 0.59. Nothing is served:
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


def _rigged(y: np.ndarray, test: np.ndarray, p: np.ndarray) -> np.ndarray:
    """y with the test period's labels replaced: as many positives as before, on the rows `p` ranks highest."""
    out = y.copy()
    rows = np.flatnonzero(test)
    out[rows] = 0
    out[rows[np.argsort(-p, kind="stable")[: int(y[test].sum())]]] = 1
    return out


def _no_show_test_predictions(features, y, starts):
    """(test rows, {candidate: its probabilities on them}): both candidates fitted on the whole training period by
    the recipe, as the card's headline is."""
    starts = pd.to_datetime(starts).reset_index(drop=True)
    train = (starts < no_show.time_split(starts)).to_numpy()
    t = starts.astype("int64").to_numpy()
    numeric, categorical, _ = no_show.usable_columns(features[train].reset_index(drop=True), t[train])
    x = no_show.encode(features, no_show.fit_categories(features[train], categorical), numeric)
    trees = no_show.fit_calibrated(x[train], y[train], t[train]).predict_proba(x[~train])[:, 1]
    logit = no_show.logistic_baseline(numeric, categorical).fit(tabular.integer_codes(x[train], categorical), y[train])
    return ~train, {
        no_show.BOOSTED: trees,
        no_show.LOGISTIC: logit.predict_proba(tabular.integer_codes(x[~train], categorical))[:, 1],
    }


def _lead_test_predictions(rows, features, y):
    train = (rows["received_at"] < lead.time_split(rows["received_at"])).to_numpy()
    t = rows["at"].astype("int64").to_numpy()
    x = lead.encode(features, lead.fit_categories(features[train]))
    trees = lead.fit_calibrated(x[train], y[train], t[train]).predict_proba(x[~train])[:, 1]
    logit = lead.logistic_baseline().fit(lead._codes(x[train]), y[train]).predict_proba(lead._codes(x[~train]))[:, 1]
    return ~train, {lead.BOOSTED: trees, lead.LOGISTIC: logit}


def test_the_no_show_choice_never_reads_the_test_period(synthetic):
    """The test period's labels rewritten twice, once so that the trees rank it perfectly, once so that the regression
    does: choosing on the test rows picked each in turn. The choice, made on the validation slice, stays what it is
    on the real labels, and the headline is the chosen model (refitted on the whole training period) on the test
    rows; the other candidate is not measured there."""
    marts, _ = synthetic
    targets = labelled_targets(marts.appointments)
    features = build_features(targets, marts)
    y = (targets["status"] == "no_show").to_numpy(int)
    starts = targets["scheduled_start"]
    test, preds = _no_show_test_predictions(features, y, starts)
    real = no_show.evaluate(features, y, starts).card["baseline_comparison"]
    for favoured in (no_show.BOOSTED, no_show.LOGISTIC):
        y_rig = _rigged(y, test, preds[favoured])
        card = no_show.evaluate(features, y_rig, starts).card
        cmp = card["baseline_comparison"]
        chosen = cmp["best_model"]
        assert chosen == real["best_model"] and cmp["validation"] == real["validation"], favoured
        assert cmp["chosen_on"] == real["chosen_on"] and cmp["chosen_on"].startswith("the validation slice")
        assert cmp[chosen] == pytest.approx(classification_metrics(y_rig[test], preds[chosen])["roc_auc"], abs=1e-9)
        loser = ({no_show.BOOSTED, no_show.LOGISTIC} - {chosen}).pop()
        assert cmp[loser] is None and card["candidates"][loser]["roc_auc"] is None


def test_the_lead_choice_never_reads_the_test_period():
    """The same for lead scoring (1,500 synthetic referrals): the test period's labels favouring either candidate
    leave the choice and its validation figures as they are."""
    rows, feats, y = lead.snapshots(make_referrals(1500, seed=4), LEAD_AS_OF)
    test, preds = _lead_test_predictions(rows, feats, y)
    real = lead.evaluate(rows, feats, y)["baseline_comparison"]
    assert real[lead.BOOSTED] is not None or real[lead.LOGISTIC] is not None
    for favoured in (lead.BOOSTED, lead.LOGISTIC):
        y_rig = _rigged(y, test, preds[favoured])
        ev = lead.evaluate(rows, feats, y_rig)
        cmp = ev["baseline_comparison"]
        assert cmp["best_model"] == real["best_model"] and cmp["validation"] == real["validation"], favoured
        chosen = cmp["best_model"]
        assert ev["roc_auc"] == pytest.approx(classification_metrics(y_rig[test], preds[chosen])["roc_auc"], abs=1e-9)


def test_a_practice_too_small_to_choose_gets_the_documented_default(tmp_path):
    """60 patients, seed 3 (478 labelled appointments): enough to train and test (ml/sufficiency.py), but the
    slice the trees would be calibrated on before the validation slice holds 9 no-shows. The logistic regression
    is chosen by default, and the card and its text say so and why; it is still gated on the test period."""
    marts, _, _ = _labelled(60, seed=3)
    settings = get_settings(tmp_path / "home").ensure()
    card = train_score.train_no_show(None, settings, marts, "2025-01-01T00:00:00+00:00", None)
    cmp = card["baseline_comparison"]
    assert card["status"] == sufficiency.TRAINED and cmp["chosen_by_default"] is True
    assert cmp["best_model"] == no_show.LOGISTIC and card["deployed_model"] in (no_show.LOGISTIC, no_show.HISTORY)
    assert cmp["chosen_on"].startswith("default: the logistic regression") and "9 no-shows" in cmp["chosen_on"]
    assert cmp[no_show.BOOSTED] is None and no_show.BOOSTED not in cmp["validation"]
    md = artifacts.card_path(settings).with_suffix(".md").read_text()
    assert "Chosen by default: the logistic regression, because" in md and "9 no-shows" in md


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


def test_lead_serving_decision():
    src = {"roc_auc": 0.54}

    def served(kind, m, base=src):
        return not serving_decision(kind, m, base, 0.20, lead.WORDS).withheld

    assert served(lead.BOOSTED, {"roc_auc": 0.79, "brier": 0.13})
    assert not served(lead.BOOSTED, {"roc_auc": 0.50, "brier": 0.18})  # constant trees
    assert not served(lead.LOGISTIC, {"roc_auc": 0.53, "brier": 0.15})  # below the rate
    assert not served(lead.LOGISTIC, {"roc_auc": 0.80, "brier": 0.21})  # worse than constant
    assert not served(lead.LOGISTIC, {"roc_auc": 0.49, "brier": 0.15}, {"roc_auc": 0.40})  # below chance


def _train_lead(monkeypatch, tmp_path, referrals: pd.DataFrame):
    settings = get_settings(tmp_path / "home").ensure()
    monkeypatch.setattr(warehouse, "as_of", lambda con: LEAD_AS_OF)
    monkeypatch.setattr(warehouse, "lead_training_share", lambda con, budget: 1.0)
    monkeypatch.setattr(warehouse, "read_lead_referrals", lambda con, **_: referrals)
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
    # nothing is deployed (it said the candidate's name, unlike the no-show and denial cards)
    assert card["deployed_model"] is None and card["baseline_comparison"]["best_model"] in (lead.BOOSTED, lead.LOGISTIC)
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
    chosen = cmp["best_model"]
    assert ev["deployed_model"] in (chosen, None) and cmp[chosen] == ev["roc_auc"]
    trees = cmp["validation"].get(lead.BOOSTED) or {}
    assert (trees.get("roc_auc") is None) == (n == 60)  # 60 referrals: no room for a split, not a candidate
    model = lead.fit_final(rows, feats, y, "t", "v", kind=chosen)
    assert model.kind == chosen


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
