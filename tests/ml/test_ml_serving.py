"""The app never serves a no-show model that lost to its logistic baseline (page and work queue).

Real build, real model card, real AppTest run of the page; the losing card is the real one with its
headline ROC AUC lowered below the baseline's, as a card from before the deploy-the-winner rule looked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from app.lib import auth, model_cards
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, data_date_range
from app.lib.queries.work_queue import queue_candidates
from ml import artifacts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from app_helpers import open_page, rendered_text  # noqa: E402

LOSING = {"roc_auc": 0.698, "baselines": {"logistic_regression": {"roc_auc": 0.709}}, "deployed_model": "boosted_trees"}


def test_verdicts():
    kind, text = model_cards.no_show_verdict(LOSING)
    assert kind == "refuse" and "0.698 vs 0.709" in text and "ptpulse train" in text
    fallback = {
        "roc_auc": 0.661,
        "deployed_model": "logistic_regression",
        "baselines": {"logistic_regression": {"roc_auc": 0.661}},
        "baseline_comparison": {"boosted_trees": 0.650, "logistic_regression": 0.661},
    }
    kind, text = model_cards.no_show_verdict(fallback)
    assert kind == "fallback" and "logistic regression" in text and "0.650 vs 0.661" in text
    winner = {
        "roc_auc": 0.75,
        "deployed_model": "boosted_trees",
        "baselines": {"logistic_regression": {"roc_auc": 0.74}},
    }
    assert model_cards.no_show_verdict(winner) == ("ok", None)
    assert model_cards.no_show_verdict(None) == ("unknown", None)


def test_the_built_practice_serves_a_model_that_does_not_lose(built_home):
    """The candidate is chosen on the validation slice and only it is measured on the test period, so the card
    never shows a served model below a regression measured on the same test rows (which the page refuses: a card
    from before the choice moved off the test rows)."""
    card = model_cards.no_show_card(built_home)
    assert card is not None and model_cards.no_show_servable(built_home)
    cmp = card["baseline_comparison"]
    logit = card["baselines"]["logistic_regression"]["roc_auc"]
    assert (logit is None) == (cmp["best_model"] != "logistic_regression")
    assert logit is None or card["roc_auc"] >= logit
    assert card["deployed_model"] == cmp["deployed"]
    md = artifacts.card_path(built_home).with_suffix(".md").read_text()
    assert ("deployed instead of the gradient-boosted trees" in md) == (card["deployed_model"] == "logistic_regression")


def _copy(built_home, tmp_path_factory, name: str):
    """A writable copy of the built home: the app writes app.sqlite and its audit log there."""
    import shutil

    from ptpulse.core.config import get_settings

    target = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(target)


@pytest.fixture(scope="module")
def serving_home(built_home, tmp_path_factory):
    return _copy(built_home, tmp_path_factory, "serving_home")


@pytest.fixture(scope="module")
def losing_home(built_home, tmp_path_factory):
    settings = _copy(built_home, tmp_path_factory, "losing_home")
    path = artifacts.card_path(settings)
    card = json.loads(path.read_text())
    card["roc_auc"] = card["baselines"]["logistic_regression"]["roc_auc"] - 0.011
    card["deployed_model"] = "boosted_trees"
    path.write_text(json.dumps(card))
    return settings


def _high_risk_tasks(settings, servable: bool):
    reader = DbReader(AnalyticsDb(settings.analytics_db), auth.Scope("manager"))
    f = Filters(*data_date_range(reader))
    tasks = queue_candidates(reader, f, scores_servable=servable)
    return tasks[tasks["rule"] == "confirm_high_risk"]


def test_a_losing_model_is_refused_on_the_page_and_in_the_queue(losing_home, serving_home):
    assert not model_cards.no_show_servable(losing_home)
    at = open_page(losing_home, "manager", "no_show")
    assert not at.exception
    assert any("withheld" in e.value for e in at.error)
    text = rendered_text(at)
    assert "High-risk appointments to confirm" not in text and "Expected no-show rate" not in text
    assert _high_risk_tasks(losing_home, model_cards.no_show_servable(losing_home)).empty
    # the same build with its real card serves the scores and the tasks
    assert len(_high_risk_tasks(serving_home, model_cards.no_show_servable(serving_home))) > 0
    ok = open_page(serving_home, "manager", "no_show")
    assert not ok.exception and not any("withheld" in e.value for e in ok.error)
    assert "Expected no-show rate" in rendered_text(ok)
    # the sums are of no-shows among kept appointments (the training population), not of missed slots
    helps = {m.label: m.help for m in ok.metric}
    for label in ("Expected no-shows", "Expected no-show rate"):
        assert "if they are kept" in helps[label] and "never cancelled" in helps[label]
        assert "expects to be missed" not in helps[label]


def test_a_regression_chosen_by_default_is_not_said_to_have_beaten_the_trees(built_home, tmp_path_factory):
    """A practice too small to compare the two models on the validation slice gets the regression by default
    (ml/README.md, "Minimum data per model"): the trees were never measured, so the No-show page must not say they
    ranked no-shows worse; it says the regression was chosen by default. The card is a real training's (60
    synthetic patients, seed 3) written into a copy of the built home."""
    from ml import no_show, train_score
    from tests.ml.conftest import make_marts

    settings = _copy(built_home, tmp_path_factory, "default_home")
    card = train_score.train_no_show(None, settings, make_marts(60, seed=3)[0], "2025-01-01T00:00:00+00:00", None)
    assert card["deployed_model"] == no_show.LOGISTIC and card["baseline_comparison"]["chosen_by_default"] is True
    at = open_page(settings, "manager", "no_show")
    assert not at.exception
    infos = [i.value for i in at.info]
    assert any("chosen by default" in t for t in infos), infos
    assert not any("ranked no-shows worse" in t for t in infos)
