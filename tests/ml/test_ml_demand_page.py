"""The Demand page says plainly where the forecast loses to "same week last year", even when the pooled
figure wins (issue 12): real build, real backtest file, real AppTest run of the page.

The losing backtest is the real one with the practice's visits row raised above 1, as a seed where visits
lost (1.19) behind a pooled 0.89 looked.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from app.lib.queries.forecast import backtest_row, coverage_off, losses_to_naive
from ml import artifacts
from ptpulse.core.config import get_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from app_helpers import open_page, rendered_text  # noqa: E402

BREAKDOWN = [
    {"series": "ALL", "metric": "referrals", "relative_mase": 0.80, "coverage_80": 0.81, "loses_to_naive": False},
    {"series": "ALL", "metric": "visits", "relative_mase": 1.19, "coverage_80": 0.885, "loses_to_naive": True},
    {"series": "ALL", "metric": "pooled", "relative_mase": 0.89, "coverage_80": 0.83, "loses_to_naive": False},
    {"series": "C9", "metric": "evals", "relative_mase": 1.05, "coverage_80": 0.70, "loses_to_naive": True},
]


def test_row_lookup_losses_and_coverage_band():
    backtest = {"breakdown": BREAKDOWN}
    assert backtest_row(backtest, "ALL", "visits")["relative_mase"] == 1.19
    assert backtest_row(backtest, "C1", "visits") is None and backtest_row(None, "ALL", "visits") is None
    # every losing series x measure, not only those the practice's pooled figure hides; never a pooled row
    assert [(r["series"], r["metric"]) for r in losses_to_naive(backtest)] == [("ALL", "visits"), ("C9", "evals")]
    assert coverage_off(BREAKDOWN[1]) and coverage_off(BREAKDOWN[3]) and not coverage_off(BREAKDOWN[0])
    assert not coverage_off(None) and losses_to_naive({}) == []


def _home_with_backtest(built_home, tmp_path_factory, edit) -> object:
    target = tmp_path_factory.mktemp("demand_page") / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    settings = get_settings(target)
    path = artifacts.backtest_path(settings)
    backtest = json.loads(path.read_text())
    edit(backtest)
    path.write_text(json.dumps(backtest))
    return settings


def _visits_lose(backtest: dict) -> None:
    """The practice's visits row loses to naive while the pooled practice figure still wins."""
    for row in backtest["breakdown"]:
        if row["series"] == "ALL" and row["metric"] == "visits":
            row.update(relative_mase=1.19, loses_to_naive=True, coverage_80=0.885)
    backtest["hidden_losses"] = [r for r in backtest["breakdown"] if r["loses_to_naive"] and r["metric"] != "pooled"]
    backtest["pooled_hides_loss"] = True


@pytest.fixture(scope="module")
def losing_home(built_home, tmp_path_factory):
    return _home_with_backtest(built_home, tmp_path_factory, _visits_lose)


def test_the_built_backtest_has_a_row_per_metric_and_a_pooled_row(built_home):
    backtest = json.loads(artifacts.backtest_path(built_home).read_text())
    if backtest.get("status") != "trained":
        pytest.skip("the small practice is too short for a backtest")
    rows = {(r["series"], r["metric"]) for r in backtest["breakdown"]}
    assert {("ALL", m) for m in ("referrals", "evals", "visits", "pooled")} <= rows
    assert "equal-weight mean of Prophet" in backtest["method"]["model"]


def test_the_page_names_a_losing_measure_the_pooled_figure_hides(losing_home):
    backtest = json.loads(artifacts.backtest_path(losing_home).read_text())
    if not backtest.get("breakdown"):
        pytest.skip("the small practice is too short for a backtest")
    at = open_page(losing_home, "owner", "forecast")
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.warning)
    assert "The pooled figure beats the baseline, but these lose to it" in warnings
    assert "whole practice visits 1.19" in warnings
    # visits is the measure on screen by default: the page says so for it, and that its range is too wide
    assert "For whole practice visits this forecast lost to 'same week last year'" in warnings
    assert "outside the honest 75–85%" in rendered_text(at)


def _other_clinics_and_practice_marked(backtest: dict) -> None:
    """CL002 and CL003 rows beside CL001's, every non-CL001 figure marked (relative MASE 1.37, a loss), and a
    practice headline of 0.42: none of those may reach a manager of CL001."""
    mine = [r for r in backtest["breakdown"] if r["series"] == "CL001"]
    for row in backtest["breakdown"]:
        if row["series"] == "ALL":
            row.update(relative_mase=1.37, loses_to_naive=True)
    others = [
        {**r, "series": s, "relative_mase": 1.37, "loses_to_naive": True} for s in ("CL002", "CL003") for r in mine
    ]
    backtest["breakdown"] += others
    for row in mine:
        row.update(relative_mase=0.64, coverage_80=0.8, loses_to_naive=False)
    backtest["hidden_losses"] = [r for r in backtest["breakdown"] if r["loses_to_naive"] and r["metric"] != "pooled"]
    backtest["pooled_hides_loss"] = True
    backtest["series"] = ["ALL", "CL001", "CL002", "CL003"]
    backtest.update(relative_mase=0.42, coverage_80=0.52, smape=42.42)


def test_a_scoped_manager_reads_only_their_clinics_backtest(built_home, tmp_path_factory):
    """A manager of CL001 sees CL001's backtest (tiles from its pooled row, its own rows in the table) and
    nothing of CL002, CL003 or the whole practice: no row, no headline tile, no loss warning."""
    home = _home_with_backtest(built_home, tmp_path_factory, _other_clinics_and_practice_marked)
    if not json.loads(artifacts.backtest_path(home).read_text()).get("breakdown"):
        pytest.skip("the small practice is too short for a backtest")
    at = open_page(home, "manager", "forecast")
    assert not at.exception, [e.value for e in at.exception]
    text = rendered_text(at)
    for leak in ("CL002", "CL003", "Whole practice", "whole practice", "1.37", "0.42", "52.0%", "42.4"):
        assert leak not in text, leak
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Relative error (MASE vs baseline)"] == "0.64" and tiles["80% range coverage"] == "80.0%"
    table = at.dataframe[-1].value
    assert set(table["series"]) == {"CL001"}
    owner = open_page(home, "owner", "forecast")  # a practice-wide user still gets the practice's figures
    assert {m.label: m.value for m in owner.metric}["Relative error (MASE vs baseline)"] == "0.42"
    assert "CL003 visits 1.37" in " ".join(w.value for w in owner.warning)


def test_the_page_says_why_a_closed_clinic_is_forecast_zero(built_home, tmp_path_factory):
    """models/status.json lists the clinic's visits as closed (demand.closed_series): the page says so."""
    home = _home_with_backtest(built_home, tmp_path_factory, lambda backtest: None)
    path = home.models_dir / "status.json"
    status = json.loads(path.read_text())
    status["models"]["demand_forecast"]["closed"] = [
        {"series": "CL001", "metric": "visits", "since": "2026-06-01", "zero_weeks": 21}
    ]
    path.write_text(json.dumps(status))
    at = open_page(home, "manager", "forecast")
    assert not at.exception, [e.value for e in at.exception]
    assert any("No visits in the last 21 complete weeks" in i.value and "forecast is 0" in i.value for i in at.info)
