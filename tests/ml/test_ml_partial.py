"""ML on partial and small data: a refresh over any subset of sources succeeds and says why a model is skipped.

Real refreshes (ingest -> dbt build -> ML scoring -> swap) over subsets of the tiny practice and over a
two-week slice of the small generated practice: each build is served, every model card / `models/status.json`
entry is `trained` or `not_trained` with a plain reason, and every `ml` table exists with its normal columns
(empty where its model was skipped). Plus the sufficiency checks at their boundaries (ml/sufficiency.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml import artifacts, demand, no_show, sufficiency
from ml.train_score import score
from ml.warehouse import ML_TABLES
from ptpulse.core.config import get_settings
from ptpulse.refresh import refresh
from tests.app.app_helpers import app_test

TINY = Path(__file__).resolve().parents[1] / "dbt" / "tiny_practice"
MODELS = (
    "no_show",
    "lead",
    "denial",
    "demand_backtest",
    "demand_forecast",
    "staffing_gap",
    "attribution",
    "channel_incrementality",
)
# the ml tables each model writes (work_queue_tasks is a union that also reads marts: not checked for emptiness)
TABLES = {
    "no_show": ("no_show_scores", "no_show_calibration"),
    "lead": ("lead_scores",),
    "denial": ("denial_scores",),
    "demand_forecast": ("demand_forecast",),
    "staffing_gap": ("staffing_gap",),
    "attribution": ("attribution_credit",),
    "channel_incrementality": ("channel_incrementality",),
}
CARDS = {"no_show": artifacts.card_path, "lead": artifacts.lead_card_path, "denial": artifacts.denial_card_path}


def _copy_sources(target: Path, names: tuple[str, ...], source: Path = TINY) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(source / f"{name}.csv", target / f"{name}.csv")
    return target


def _refresh(home: Path, folder: Path):
    settings = get_settings(home)
    result = refresh(settings, [folder])
    return settings, result


def _ml_tables(settings) -> dict[str, tuple[list[tuple[str, str]], int]]:
    con = duckdb.connect(str(settings.analytics_db), read_only=True)
    try:
        out = {}
        for name in ML_TABLES:
            cols = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'ml' and table_name = ? order by ordinal_position",
                [name],
            ).fetchall()
            n = con.execute(f"select count(*) from ml.{name}").fetchall()[0][0] if cols else -1
            out[name] = (cols, n)
        return out
    finally:
        con.close()


def _check_build(settings, result) -> dict[str, dict]:
    """The shared assertions: served build, a status for every model, tables with their schema."""
    assert result.build.ok, result.build.message
    assert settings.analytics_db.exists()
    status = json.loads(artifacts.status_path(settings).read_text())["models"]
    assert set(status) == set(MODELS)
    tables = _ml_tables(settings)
    for name, types in ML_TABLES.items():
        cols, _ = tables[name]
        assert [c for c, _ in cols] == list(types), f"ml.{name} lost its interface columns"
    for model, entry in status.items():
        assert entry["status"] in (sufficiency.TRAINED, sufficiency.NOT_TRAINED)
        if entry["status"] == sufficiency.NOT_TRAINED:
            assert entry["reason"] and entry["reason"].startswith("not "), (model, entry)
            assert "needs" in entry["reason"] or "no " in entry["reason"] or "load" in entry["reason"]
            for table in TABLES.get(model, ()):
                assert tables[table][1] == 0, f"ml.{table} should be empty when {model} was skipped"
        else:
            assert entry["reason"] is None
    for model, path in CARDS.items():
        card = json.loads(path(settings).read_text())
        assert card["status"] == status[model]["status"]
        if card["status"] == sufficiency.NOT_TRAINED:
            assert card["reason"] == status[model]["reason"]
            assert not path(settings).with_name("model.joblib").exists()
            assert "Not enough data yet" in path(settings).with_suffix(".md").read_text()
    backtest = json.loads(artifacts.backtest_path(settings).read_text())
    assert backtest["status"] == status["demand_backtest"]["status"]
    return status


@pytest.fixture(scope="module")
def patients_and_scheduling(tmp_path_factory):
    base = tmp_path_factory.mktemp("partial_sched")
    folder = _copy_sources(base / "in", ("clinics", "patients", "intake_events", "scheduling_events"))
    return _refresh(base / "home", folder)


def test_scheduling_subset_builds_and_says_why(patients_and_scheduling):
    settings, result = patients_and_scheduling
    status = _check_build(settings, result)
    for model in MODELS:  # 47 scheduling events over 3 weeks: nothing can be trained
        assert status[model]["status"] == sufficiency.NOT_TRAINED
    assert "past appointments with an outcome" in status["no_show"]["reason"]
    assert "needs at least 200" in status["no_show"]["reason"]
    assert "claims the payer has decided" in status["denial"]["reason"]
    assert "needs at least 64" in status["demand_backtest"]["reason"]
    assert "needs at least 8" in status["demand_forecast"]["reason"]


@pytest.mark.parametrize("page", ["no_show", "forecast", "attribution", "leakage"])
def test_pages_say_not_enough_data(patients_and_scheduling, tmp_path, page):
    """The pages that show ML output say why it is missing (from the status file) instead of empty charts."""
    import sys

    from ptpulse.core.config import scoped_environ

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root)) if str(root) not in sys.path else None
    settings, _ = patients_and_scheduling
    home = tmp_path / "home"
    shutil.copytree(settings.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    with scoped_environ({"PTPULSE_HOME": str(home), "PTPULSE_DEMO_ROLE": "owner"}):
        at = app_test()
        at.run()
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    infos = " ".join(i.value for i in at.info).lower()
    if page == "attribution":  # without marketing exports the page already says which export lights it up
        assert "not enough data yet" in infos or "load a marketing touches export" in infos, infos
    else:
        assert "not enough data yet" in infos and "needs" in infos, infos


def test_rerun_on_same_home_is_stable(patients_and_scheduling, tmp_path):
    """Scoring the served file again on the same data writes the same statuses without training again (the card's
    `decided_on` fingerprint is unchanged: ml/README.md "Training once per data")."""
    settings, _ = patients_and_scheduling
    home = tmp_path / "home"
    shutil.copytree(settings.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    copy = get_settings(home)
    first = json.loads(artifacts.status_path(copy).read_text())["models"]
    out = score(copy, copy.analytics_db)
    assert out["model_version"] is None and out["trained"] is None and out["training"]["no_show"]["ran"] is False
    assert {k: v["reason"] for k, v in out["status"].items()} == {k: v["reason"] for k, v in first.items()}


@pytest.mark.parametrize(
    "names",
    [("claims", "charges", "remittances"), ("remittances",)],
    ids=["billing_only", "remittances_only"],
)
def test_billing_subsets_build(tmp_path, names):
    settings, result = _refresh(tmp_path / "home", _copy_sources(tmp_path / "in", names))
    status = _check_build(settings, result)
    for model in MODELS:
        assert status[model]["status"] == sufficiency.NOT_TRAINED, model


def _two_week_slice(practice: Path, target: Path) -> Path:
    """Every dimension file whole, every event file cut to the last two weeks of scheduling activity."""
    time_cols = {
        "intake_events": "event_at",
        "scheduling_events": "event_at",
        "claims": "submitted_at",
        "charges": "posted_at",
        "remittances": "event_at",
        "documentation_events": "created_at",
        "authorizations": "received_at",
        "marketing_touches": "touched_at",
        "marketing_spend": "reported_at",
    }
    target.mkdir(parents=True, exist_ok=True)
    sched = pd.read_csv(practice / "scheduling_events.csv", dtype=str, keep_default_na=False)
    end = pd.to_datetime(sched["event_at"], errors="coerce", format="mixed").max()
    start = end - pd.Timedelta(days=14)
    for path in sorted(practice.glob("*.csv")):
        col = time_cols.get(path.stem)
        if col is None:
            shutil.copy2(path, target / path.name)
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        at = pd.to_datetime(df[col], errors="coerce", format="mixed")
        df[(at > start) & (at <= end)].to_csv(target / path.name, index=False)
    return target


def test_two_week_slice_of_a_generated_practice(tmp_path, small_practice):
    folder = _two_week_slice(small_practice, tmp_path / "in")
    settings, result = _refresh(tmp_path / "home", folder)
    status = _check_build(settings, result)
    for model in ("demand_backtest", "demand_forecast", "staffing_gap", "lead"):
        assert status[model]["status"] == sufficiency.NOT_TRAINED, model
    assert "referrals received at least 45 days before as_of" in status["lead"]["reason"]


def test_unexpected_error_still_fails(tmp_path):
    """Only missing data is a skip: an analytics file without the marts ML reads is an error, not a skip."""
    path = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.execute("create table marts.build_info as select timestamp '2025-01-01' as as_of")
    con.close()
    with pytest.raises(duckdb.CatalogException):
        score(get_settings(tmp_path / "home"), path)


# ------------------------------------------------------------------------------------ boundaries


def _daily(n: int) -> pd.Series:
    return pd.Series(pd.date_range("2024-01-01 09:00", periods=n, freq="D"))


def _check(y: np.ndarray, n: int) -> str | None:
    return sufficiency.binary(
        y, _daily(n), no_show.time_split, rows="appointments", positive="no-shows", negative="attended"
    )


def test_binary_minimum_rows_boundary():
    y = (np.arange(200) % 4 == 0).astype(int)  # 10 no-shows in each 40-row slice
    assert _check(y, 200) is None
    reason = _check(y[:199], 199)
    assert reason.startswith("not trained: 199 appointments (50 no-shows, 149 attended); needs at least 200")


def test_binary_needs_both_classes_in_every_slice():
    y = (np.arange(200) % 4 == 0).astype(int)
    y[196] = 0  # the test slice (last 40 days) now holds 9 no-shows
    reason = _check(y, 200)
    assert reason is not None and "the test slice" in reason and "9 no-shows" in reason
    y = (np.arange(200) % 4 == 0).astype(int)
    y[120] = 0  # the calibration slice (days 120-159) now holds 9
    assert "the calibration slice" in _check(y, 200)
    assert "0 no-shows" in _check(np.zeros(500, dtype=int), 500)


def test_binary_lead_split_by_receipt():
    """Lead scoring splits by receipt date and orders by snapshot time: both are honoured."""
    received = pd.Series(np.repeat(pd.date_range("2024-01-01", periods=100, freq="D"), 3))
    at = received + pd.to_timedelta(np.tile([0.25, 2.0, 7.0], 100), unit="D")
    y = np.tile([1, 0, 0], 100)
    reason = sufficiency.binary(
        y, at, lambda s: s.sort_values().iloc[int(len(s) * 0.8)].normalize(), train_times=received,
        rows="snapshots", positive="evaluated", negative="not evaluated",
    )  # fmt: skip
    assert reason is None


def _series(weeks: int, name: str = demand.ALL, metric: str = "visits") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series": name,
            "metric": metric,
            "week_start": pd.date_range("2023-01-02", periods=weeks, freq="7D"),
            "y": 10.0,
        }
    )


def test_forecast_and_backtest_boundaries():
    assert sufficiency.forecast(_series(8)) is None
    assert "has 7 complete weeks" in sufficiency.forecast(_series(7))
    assert "needs at least 8" in sufficiency.forecast(_series(0).iloc[:0])
    assert sufficiency.backtest(_series(64), demand.SEASON, 12) is None
    assert "63 complete weeks" in sufficiency.backtest(_series(63), demand.SEASON, 12)
    assert sufficiency.backtest(_series(80, name="C1"), demand.SEASON, 12) is not None  # only ALL counts


def test_staffing_needs_forecast_and_roster():
    fc = pd.DataFrame(
        {"series": ["C1"], "metric": ["visits"], "week_start": [pd.Timestamp("2025-01-06")], "actual": [np.nan]}
    )
    roster = pd.DataFrame({"clinic_id": ["C1"], "available_minutes_week": [2400.0]})
    assert sufficiency.staffing(fc, roster) is None
    assert "therapist roster" in sufficiency.staffing(fc, roster.iloc[:0])
    assert "therapist roster" in sufficiency.staffing(fc, roster.assign(clinic_id="C2"))
    assert "no clinic has a visit forecast" in sufficiency.staffing(fc.iloc[:0], roster)


def test_attribution_boundaries():
    def paths(conv: list[float], names: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"path": names, "conversions": conv, "non_conversions": 1.0, "revenue_usd": 0.0})

    assert sufficiency.attribution(paths([5, 5], ["search > social", "search"])) is None
    assert "9 converting journeys" in sufficiency.attribution(paths([5, 4], ["search > social", "search"]))
    assert "1 channel" in sufficiency.attribution(paths([10], ["search"]))
    assert "no marketing journeys" in sufficiency.attribution(paths([], []))


def test_as_of_missing():
    assert sufficiency.as_of_missing(pd.NaT) is not None
    assert sufficiency.as_of_missing(pd.Timestamp("2025-01-01")) is None


def test_page_helper_reads_the_status_file(tmp_path):
    """app.lib.model_cards.not_enough_data: the reason for a skipped model, None for a trained or unknown one."""
    import sys

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from app.lib.model_cards import forecast_verdict, not_enough_data

    settings = get_settings(tmp_path / "home")
    assert not_enough_data(settings, "no_show") is None  # before any build
    artifacts.write_json(
        artifacts.status_path(settings),
        {
            "models": {
                "no_show": {"status": "not_trained", "reason": "not trained: 3 past appointments; needs at least 200"},
                "lead": {"status": "trained", "reason": None},
            }
        },
    )
    assert not_enough_data(settings, "no_show") == (
        "Not enough data yet: not trained: 3 past appointments; needs at least 200."
    )
    assert not_enough_data(settings, "lead") is None
    assert not_enough_data(settings, "denial") is None
    kind, sentence = forecast_verdict({"status": "not_trained", "reason": "not backtested: 3 complete weeks"})
    assert kind == "warn" and "3 complete weeks" in sentence
