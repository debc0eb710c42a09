"""The forecast page's trust verdict comes from the backtest, in words a manager can act on."""

from __future__ import annotations

import pytest
from app_helpers import open_page

from app.lib import model_cards
from ptpulse.core.config import get_settings


def test_forecast_that_beats_the_baseline_says_by_how_much():
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 0.9, "coverage_80": 0.82})
    assert kind == "ok"
    assert "90%" in sentence and "82%" in sentence


def test_forecast_that_does_not_beat_the_baseline_is_flagged():
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 1.05, "coverage_80": 0.6})
    assert kind == "warn" and "no better" in sentence and "1.05" in sentence


def test_a_range_that_holds_too_few_or_too_many_weeks_is_a_warning_even_when_the_point_wins():
    """Coverage 0.52 with a winning point was 'ok': a manager would plan on an 80% range that held half the weeks."""
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 0.99, "coverage_80": 0.52})
    assert kind == "warn" and "52%" in sentence and "75%–85%" in sentence and "more weeks outside" in sentence
    kind, sentence = model_cards.forecast_verdict({"relative_mase": 0.8, "coverage_80": 0.95})
    assert kind == "warn" and "wider than it needs to be" in sentence
    assert model_cards.forecast_verdict({"relative_mase": 0.8, "coverage_80": 0.75})[0] == "ok"  # band edges honest
    assert model_cards.forecast_verdict({"relative_mase": 0.8, "coverage_80": 0.85})[0] == "ok"


def test_missing_backtest_figures_are_a_warning_not_a_crash(tmp_path):
    from ptpulse.core.config import get_settings

    assert model_cards.demand_backtest(get_settings(tmp_path)) is None
    assert model_cards.forecast_verdict({"relative_mase": None})[0] == "warn"


def test_backtest_of_the_built_practice_is_read(app_home):
    backtest = model_cards.demand_backtest(app_home)
    assert backtest is not None and backtest["horizon_weeks"] == 12 and backtest["relative_mase"] > 0


# ------------------------------------------------ review #7: damaged JSON artifacts never become a traceback


@pytest.fixture
def damaged_models(app_home, copy_home):
    home = copy_home(app_home)
    for name in ("status.json", "no_show/model_card.json", "demand/backtest.json"):
        (home.models_dir / name).write_text('{"trunc', encoding="utf-8")
    return home


def test_unreadable_status_file_is_model_status_unavailable(damaged_models):
    assert model_cards.status_unavailable(damaged_models) == model_cards.STATUS_UNAVAILABLE
    assert model_cards.not_enough_data(damaged_models, "no_show") is None  # as with no file: pages go on
    assert model_cards.is_unreadable(model_cards.demand_backtest(damaged_models))
    kind, sentence = model_cards.forecast_verdict(model_cards.demand_backtest(damaged_models))
    assert kind == "warn" and "cannot be read" in sentence
    verdict, text = model_cards.no_show_verdict(model_cards.no_show_card(damaged_models))
    assert verdict == "unknown" and "cannot be read" in text
    assert model_cards.no_show_servable(damaged_models)


@pytest.mark.parametrize("content", ["[1, 2]", '{"models": [1]}', "\udcff"])
def test_status_file_that_is_not_a_mapping_is_unavailable_too(tmp_path, content):
    home = get_settings(tmp_path).ensure()
    home.models_dir.mkdir()
    (home.models_dir / "status.json").write_text(content, encoding="utf-8", errors="surrogateescape")
    assert model_cards.status_unavailable(home) and model_cards.not_enough_data(home, "no_show") is None


def test_readable_status_file_still_says_why_a_model_was_skipped(tmp_path):
    home = get_settings(tmp_path).ensure()
    home.models_dir.mkdir()
    (home.models_dir / "status.json").write_text(
        '{"models": {"no_show": {"status": "not_trained", "reason": "only 12 appointments"}}}', encoding="utf-8"
    )
    assert model_cards.status_unavailable(home) is None
    assert model_cards.not_enough_data(home, "no_show") == "Not enough data yet: only 12 appointments."


def test_a_withheld_model_is_not_called_short_of_data(tmp_path):
    """A model trained, measured and found no better than its baselines is withheld: the page says that, not
    "not enough data"."""
    home = get_settings(tmp_path).ensure()
    home.models_dir.mkdir()
    (home.models_dir / "status.json").write_text(
        '{"models": {"no_show": {"status": "not_trained", "withheld": true, "reason": "not served: it ranked no '
        'better than the history rate"}}}',
        encoding="utf-8",
    )
    assert model_cards.not_enough_data(home, "no_show") == "Scores withheld: it ranked no better than the history rate."


@pytest.mark.parametrize(
    ("role", "page"), [("owner", "attribution"), ("owner", "leakage"), ("manager", "no_show"), ("manager", "forecast")]
)
def test_pages_with_a_damaged_models_folder_say_so_without_a_traceback(damaged_models, role, page):
    at = open_page(damaged_models, role, page)
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "Model status unavailable" in warnings, warnings
    assert str(damaged_models.home) not in warnings


# ------------------------------------------------ review #5: the card's clinic subgroup rows in the user's scope

_CARD = """# No-show risk model card

## How well (time-based split)

Trained on 11,977 appointments before 2026-08-27, tested on the 3,014 after it. Test no-show rate 0.088.

| metric | deployed model |
|---|---|
| ROC AUC | 0.648 |

Brier score of always predicting the test period's own rate: 0.080; of always predicting the training rate: 0.0805.

## Risk bands

| band (test period) | appointments | observed no-show rate |
|---|---|---|
| high | 301 | 0.209 |

## By subgroup (test period)

### clinic

| level | n | no-show rate |
|---|---|---|
| CL001 | 1,933 | 0.091 |
| CL002 | 1,081 | 0.083 |

### payer_class

| level | n | no-show rate |
|---|---|---|
| CL002 | 5 | 0.1 |
| commercial | 1,377 | 0.071 |

## Limits

- Cancellations are not predicted.
"""


def test_card_markdown_keeps_only_the_users_clinics_in_the_clinic_table():
    scoped = model_cards.scoped_card_markdown(_CARD, ("CL001",))
    clinic = scoped.split("### clinic")[1].split("###")[0]
    assert "| CL001 | 1,933" in clinic and "CL002" not in clinic and "| level |" in clinic and "|---|" in clinic
    # no practice-wide count is left: practice n and rate minus the user's clinic row gave the other clinic's
    for count in ("11,977", "3,014", "0.088", "0.080", "| high | 301", "| commercial | 1,377", "| CL002 | 5 |"):
        assert count not in scoped, count
    assert "| ROC AUC | 0.648 |" in scoped and "Cancellations are not predicted" in scoped  # the model's quality stays
    assert scoped.count(model_cards.PRACTICE_ONLY) == 2  # risk bands, payer_class
    assert model_cards.scoped_card_markdown(_CARD, None) == _CARD  # unscoped: the whole card
    none_left = model_cards.scoped_card_markdown(_CARD, ("CL009",)).split("### clinic")[1].split("###")[0]
    assert "CL001" not in none_left and "no clinic of yours" in none_left


def test_card_json_keeps_only_the_users_clinics():
    card = {
        "roc_auc": 0.6,
        "n_test": 3014,
        "base_rate_test": 0.088,
        "risk_bands_test": {"high": {"n": 301}},
        "baselines": {"history_rate": {"n": 3014}},
        "subgroups": {"clinic": {"CL001": {"n": 1}, "CL002": {"n": 2}}, "sex": {"F": {}}},
    }
    scoped = model_cards.scoped_card_json(card, ("CL001",))
    assert scoped["subgroups"] == {"clinic": {"CL001": {"n": 1}}} and scoped["roc_auc"] == 0.6
    assert not {"n_test", "base_rate_test", "risk_bands_test", "baselines"} & set(scoped)
    assert model_cards.scoped_card_json(card, None) is card


def test_scoped_manager_sees_no_other_clinics_row_in_the_no_show_card(app_home, copy_home):
    home = copy_home(app_home)
    md = home.models_dir / "no_show" / "model_card.md"
    text = md.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| CL001 |"))
    md.write_text(
        text.replace(row, row + "\n" + row.replace("CL001", "CL002").replace("| 0.", "| 0.9")), encoding="utf-8"
    )
    at = open_page(home, "manager", "no_show")  # demo manager: the first clinic, CL001
    assert not at.exception, [e.value for e in at.exception]
    card = next(m.value for m in at.markdown if "By subgroup" in m.value)
    assert "| CL001 |" in card and "CL002" not in card
    assert "Trained on" not in card and "| payer_class" not in card  # no practice-wide count to subtract from
    assert any("shown to users of every clinic" in i.value for i in at.info)  # calibration bins count every clinic
    owner = open_page(home, "owner", "no_show")
    assert "| CL002 |" in next(m.value for m in owner.markdown if "By subgroup" in m.value)


def test_backtest_cut_to_a_scoped_user_keeps_their_clinic_only():
    """No row, loss or headline figure of another clinic or of the whole practice; the headline is the on-screen
    clinic's pooled row, and a clinic that was not backtested says so instead of 'not enough history'."""
    backtest = {
        "status": "trained",
        "relative_mase": 0.5,
        "coverage_80": 0.8,
        "by_metric": {"visits": {"relative_mase": 0.5}},
        "clinics": {"relative_mase": 0.6},
        "series": ["ALL", "CL001", "CL002"],
        "cutoffs": ["2025-01-06"],
        "breakdown": [
            {"series": s, "metric": m, "relative_mase": r, "coverage_80": 0.8, "loses_to_naive": r > 1}
            for s, r in (("ALL", 0.5), ("CL001", 0.9), ("CL002", 1.2))
            for m in ("visits", "pooled")
        ],
        "hidden_losses": [{"series": "CL002", "metric": "visits", "relative_mase": 1.2}],
        "pooled_hides_loss": True,
    }
    mine = model_cards.scoped_backtest(backtest, ("CL001",), "CL001")
    assert {r["series"] for r in mine["breakdown"]} == {"CL001"} and mine["hidden_losses"] == []
    assert mine["relative_mase"] == 0.9 and "by_metric" not in mine and "clinics" not in mine
    assert mine["series"] == ["CL001"] and mine["cutoffs"] == ["2025-01-06"] and not mine["pooled_hides_loss"]
    assert model_cards.scoped_backtest(backtest, None, "ALL") is backtest  # practice-wide: unchanged
    unseen = model_cards.scoped_backtest(backtest, ("CL009",), "CL009")
    assert unseen["relative_mase"] is None and unseen["breakdown"] == []
    kind, sentence = model_cards.forecast_verdict(unseen)
    assert kind == "warn" and "not backtested on its own" in sentence


def test_a_closed_series_is_explained_from_the_status_file(tmp_path):
    home = get_settings(tmp_path).ensure()
    home.models_dir.mkdir()
    (home.models_dir / "status.json").write_text(
        '{"models": {"demand_forecast": {"status": "trained", "reason": null, "closed": '
        '[{"series": "CL003", "metric": "visits", "since": "2026-06-01", "zero_weeks": 21}]}}}',
        encoding="utf-8",
    )
    sentence = model_cards.closed_forecast(home, "CL003", "visits", "Visits")
    assert "No visits in the last 21 complete weeks" in sentence and "2026-06-01" in sentence
    assert "forecast is 0" in sentence
    assert model_cards.closed_forecast(home, "CL003", "referrals", "Referrals") is None
    assert model_cards.closed_forecast(home, "CL001", "visits", "Visits") is None
