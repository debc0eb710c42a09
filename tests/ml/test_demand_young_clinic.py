"""A clinic opened a month or two ago: forecast by the flat baseline and weighed against its therapists, and the
Demand page names every clinic it did not assess instead of saying "No clinic is short of capacity" about a
clinic it never forecast (review: a branch with one therapist seeing ~4x its capacity, left out silently).

The forecast and staffing gap are the real `forecast_all` / `staffing_gap`; the page runs (AppTest) on a copy of
the real small-practice build whose CL001 history is cut to a young clinic's few weeks, written with
`warehouse.write_table` into the copy's served DuckDB file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from app.lib.queries import forecast as forecast_queries
from ml import demand, warehouse
from ptpulse.core.config import get_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from app_helpers import open_page, rendered_text  # noqa: E402

AS_OF = pd.Timestamp("2026-10-31 12:00")


def _weeks(n: int, end: str = "2026-10-19") -> pd.DatetimeIndex:
    return pd.date_range(end=end, periods=n, freq="7D")


def _series() -> pd.DataFrame:
    """C1: two years at ~40 visits a week; NEW: 5 weeks at ~170; TINY: 2 weeks (too few even for the baseline)."""
    rng = np.random.default_rng(3)
    parts = [
        ("C1", _weeks(104), rng.poisson(40, 104)),
        ("NEW", _weeks(5), np.array([166.0, 158.0, 186.0, 171.0, 169.0])),
        ("TINY", _weeks(2), np.array([30.0, 34.0])),
    ]
    return pd.concat(
        [pd.DataFrame({"series": s, "metric": "visits", "week_start": w, "y": y.astype(float)}) for s, w, y in parts],
        ignore_index=True,
    )


def _model(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: demand.DemandSettings) -> pd.DataFrame:
    """A cheap stand-in for the ensemble on the long series (the baseline path under test never calls it)."""
    level = float(history["y"].tail(4).mean())
    weeks = pd.DatetimeIndex(history["week_start"]).append(future)
    return pd.DataFrame({"week_start": weeks, "yhat": level, "yhat_lower": level - 5, "yhat_upper": level + 5})


def test_a_young_series_gets_the_flat_baseline_and_a_too_short_one_nothing():
    cfg = demand.DemandSettings()
    fc = demand.forecast_all(_series(), cfg, forecaster=_model, scales={"clinic": {"visits": 3.0}})
    assert set(fc["series"]) == {"C1", "NEW"}  # TINY: 2 weeks, below BASELINE_MIN_WEEKS
    new = fc[fc["series"] == "NEW"]
    hist, future = new[new["actual"].notna()], new[new["actual"].isna()]
    assert len(hist) == 5 and hist["yhat"].isna().all()  # its weeks carry their actuals, and no fitted line
    assert len(future) == cfg.horizon_weeks
    assert np.allclose(future["yhat"], np.mean([158.0, 186.0, 171.0, 169.0]))  # the last 4 weeks' mean, flat
    lo, hi = future["yhat_lower"].iloc[0], future["yhat_upper"].iloc[0]
    assert 0 <= lo < future["yhat"].iloc[0] < hi
    # the model's conformal scale (3.0 here) is not applied to the baseline: t(0.9, 4) x sd x sqrt(1 + 1/4)
    sd = max(np.std([166.0, 158.0, 186.0, 171.0, 169.0], ddof=1), np.sqrt(171.0))
    assert hi - future["yhat"].iloc[0] == pytest.approx(1.5332 * sd * np.sqrt(1.25), rel=1e-3)
    # the same history next night: reused by its fit_key, not refitted differently
    again = demand.forecast_all(_series(), cfg, forecaster=_model, scales={"clinic": {"visits": 3.0}}, previous=fc)
    pd.testing.assert_frame_equal(again.reset_index(drop=True), fc.reset_index(drop=True))


def test_the_staffing_gap_weighs_a_young_clinic_against_its_one_therapist():
    """The review's branch: one therapist (1,920 min a week, 45-minute visits: ~43 visits) seeing ~170."""
    fc = demand.forecast_all(_series(), demand.DemandSettings(), forecaster=_model)
    roster = pd.DataFrame(
        {
            "clinic_id": ["C1", "NEW", "TINY"],
            "available_minutes_week": [2400.0, 1920.0, 1920.0],
            "hired_on": ["2020-01-01", "2026-09-01", "2026-10-01"],
            "terminated_on": [None, None, None],
        }
    )
    gap = demand.staffing_gap(fc, roster, pd.Series({"C1": 45.0, "NEW": 45.0, "TINY": 45.0}), AS_OF)
    new = gap[gap["clinic_id"] == "NEW"]
    assert len(new) == 12 and (new["gap_visits"] > 100).all()  # short every week, by ~4x its capacity
    assert "TINY" not in set(gap["clinic_id"])  # no forecast, so not assessed (the page names it)


def test_the_baseline_band_covers_about_80_percent_of_next_weeks():
    """Poisson weeks around a steady level: the t-interval's coverage of the next week is near its nominal 80%."""
    rng = np.random.default_rng(0)
    cfg = demand.DemandSettings()
    hits = []
    for _ in range(400):
        y = rng.poisson(60, 7).astype(float)
        hist = pd.DataFrame({"week_start": _weeks(6), "y": y[:6]})
        fc = demand.short_history_baseline(hist, _weeks(1, "2026-10-26"), cfg).iloc[-1]
        hits.append(fc["yhat_lower"] <= y[6] <= fc["yhat_upper"])
    assert 0.75 <= np.mean(hits) <= 0.9


def test_the_page_constants_are_the_models():
    assert forecast_queries.MODEL_MIN_WEEKS == demand.MIN_WEEKS
    assert forecast_queries.BASELINE_MIN_WEEKS == demand.BASELINE_MIN_WEEKS


# ------------------------------------------------------------------------------------------- the page


def _young_home(built_home, tmp_path_factory, weeks: int):
    """A copy of the real build whose CL001 has only its last `weeks` complete weeks (every metric): the real
    forecast_all and staffing_gap on that history replace CL001's rows; the practice (ALL) rows stay served."""
    target = tmp_path_factory.mktemp(f"young_{weeks}") / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    settings = get_settings(target)
    con = duckdb.connect(str(settings.analytics_db))
    try:
        as_of = warehouse.read_marts(con, upcoming_only=True).as_of
        series = demand.weekly_series(warehouse.read_weekly_demand(con), as_of)
        clinic = series[series["series"] == "CL001"].groupby("metric", group_keys=False).tail(weeks)
        young = demand.forecast_all(clinic, demand.DemandSettings())
        served = con.sql("select * from ml.demand_forecast where series = 'ALL'").df()
        forecast = pd.concat(
            [served, young.assign(week_start=pd.to_datetime(young["week_start"]).dt.date)], ignore_index=True
        )
        warehouse.write_table(con, "demand_forecast", forecast)
        gap = demand.staffing_gap(
            young, warehouse.read_therapists(con), warehouse.read_visit_minutes(con, as_of), as_of
        )
        warehouse.write_table(con, "staffing_gap", gap.assign(week_start=pd.to_datetime(gap["week_start"]).dt.date))
    finally:
        con.close()
    return settings


def _infos(at) -> str:
    return " | ".join([i.value for i in at.info] + [w.value for w in at.warning])


def test_the_page_names_a_clinic_it_did_not_forecast_and_judges_only_the_assessed(built_home, tmp_path_factory):
    home = _young_home(built_home, tmp_path_factory, weeks=2)  # below the baseline's 3 weeks: no forecast
    at = open_page(home, "owner", "forecast")
    assert not at.exception, [e.value for e in at.exception]
    text = _infos(at)
    assert "Not forecast, so not assessed for capacity" in text and "CL001" in text
    assert "No clinic is short of capacity." not in rendered_text(at)  # a verdict on a clinic never assessed
    assert "The whole-practice forecast was fitted on" in text  # ALL's history is mostly without that clinic
    manager = open_page(home, "manager", "forecast")  # CL001's manager: no series at all, and told why
    assert not manager.exception, [e.value for e in manager.exception]
    assert "fewer than 3 complete weeks of visits" in _infos(manager)


def test_the_page_says_a_young_clinic_is_on_the_baseline_and_assesses_it(built_home, tmp_path_factory):
    home = _young_home(built_home, tmp_path_factory, weeks=5)
    con = duckdb.connect(str(home.analytics_db), read_only=True)
    try:
        assessed = con.sql("select count(*) from ml.staffing_gap where clinic_id = 'CL001'").fetchall()[0][0]
    finally:
        con.close()
    assert assessed == 12  # the young clinic is in the staffing gap
    at = open_page(home, "owner", "forecast")
    assert not at.exception, [e.value for e in at.exception]
    text = _infos(at)
    assert "Too young for the model" in text and "5 complete weeks of visits, needs 8" in text
    assert "Not forecast" not in text
    manager = open_page(home, "manager", "forecast")  # the clinic on screen: said once, beside its chart
    assert not manager.exception, [e.value for e in manager.exception]
    assert _infos(manager).count("Too young for the model") == 1
