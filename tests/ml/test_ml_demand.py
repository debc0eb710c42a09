"""Weekly series, baselines, the rolling-origin harness and the staffing gap, on synthetic data."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml.demand import (
    ALL,
    DemandSettings,
    backtest,
    backtest_method,
    backtest_series_names,
    calendar_arx_forecast,
    calibrate_intervals,
    closed_series,
    conformal_scale,
    cutoff_weeks,
    demand_forecast,
    forecast_all,
    holiday_weekdays,
    level_adjusted_naive,
    mean_last_4,
    month_shares,
    prophet_forecast,
    ramp_up_weeks,
    seasonal_naive,
    staffing_gap,
    summarise,
    weekly_series,
)
from ml.warehouse import read_served_forecast, write_table

AS_OF = pd.Timestamp("2025-12-31 15:00")  # a Wednesday: that week is partial


def _events(seed: int = 0) -> pd.DataFrame:
    """Daily Poisson arrivals with a yearly cycle for two clinics and three metrics."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2023-01-02", AS_OF.normalize(), freq="D")
    t = np.arange(len(days))
    frames = []
    for clinic, base in (("C1", 30.0), ("C2", 12.0)):
        lam = base * (1 + 0.2 * np.sin(2 * np.pi * t / 365.25)) * (days.day_of_week < 5)
        for metric, share in (("visits", 1.0), ("evals", 0.15), ("referrals", 0.2)):
            n = rng.poisson(lam * share)
            frames.append(
                pd.DataFrame(
                    {
                        "clinic_id": clinic,
                        "metric": metric,
                        "at": np.repeat(days.to_numpy(), n) + pd.Timedelta(hours=10),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return weekly_series(_events(), AS_OF)


def test_weekly_series_complete_weeks_and_practice_total(series):
    assert series["week_start"].max() == pd.Timestamp("2025-12-22")  # the week of AS_OF is partial
    assert (series["week_start"].dt.day_of_week == 0).all()
    wide = series.pivot_table(index=["metric", "week_start"], columns="series", values="y")
    both = wide.dropna()
    assert np.allclose(both[ALL], both["C1"] + both["C2"])
    lengths = series.groupby(["series", "metric"]).size()
    assert lengths.min() > 150


def test_ramp_up_and_zero_fill():
    y = np.array([3, 10, 40, 95, 100, 0, 104, 98], float)
    assert ramp_up_weeks(y) == 3  # partial first week, then 10 and 40 are below 90% of the median
    ev = pd.DataFrame(
        {
            "clinic_id": "C1",
            "metric": "visits",
            "at": pd.to_datetime(["2025-01-06", "2025-01-13", "2025-01-13", "2025-02-03"]),
        }
    )
    s = weekly_series(ev, pd.Timestamp("2025-02-12"))
    assert list(s[s["series"] == "C1"]["y"]) == [2, 0, 0, 1]  # weeks without events are zeros, not gaps


def test_holiday_weekdays_counts_weekday_holidays():
    weeks = pd.DatetimeIndex(["2025-11-24", "2025-12-22", "2025-07-07", "2025-12-29"])
    # Thanksgiving (Thu), Christmas (Thu), nothing, New Year's Day (Thu 2026-01-01)
    assert list(holiday_weekdays(weeks)) == [1, 1, 0, 1]


def test_baselines():
    hist = pd.DataFrame(
        {"week_start": pd.date_range("2024-01-01", periods=60, freq="7D"), "y": np.arange(60, dtype=float)}
    )
    future = pd.date_range(hist["week_start"].iloc[-1] + pd.Timedelta(weeks=1), periods=3, freq="7D")
    assert list(seasonal_naive(hist, future)) == [8.0, 9.0, 10.0]  # same week last year
    assert list(mean_last_4(hist, future)) == [57.5] * 3
    short = hist.head(10)
    soon = pd.date_range(short["week_start"].iloc[-1] + pd.Timedelta(weeks=1), periods=3, freq="7D")
    assert list(seasonal_naive(short, soon)) == [7.5] * 3  # no y[t-52]: last-4-weeks mean


def test_cutoffs_leave_a_full_horizon_and_a_year_of_history(series):
    cfg = DemandSettings()
    weeks = pd.DatetimeIndex(series[(series["series"] == ALL) & (series["metric"] == "visits")]["week_start"])
    cuts = cutoff_weeks(weeks, cfg)
    assert len(cuts) == cfg.cutoffs + cfg.calibration_cutoffs and cfg.cutoffs >= 4
    assert cuts[-1] == weeks[-cfg.horizon_weeks]
    assert all(weeks.get_loc(c) >= 52 for c in cuts)


def test_month_shares_split_weeks_across_months():
    shares = month_shares(pd.DatetimeIndex(["2025-12-29", "2026-03-09"]))
    assert shares.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert shares[0, 11] == pytest.approx(0.6) and shares[0, 0] == pytest.approx(0.4)  # Mon-Wed Dec, Thu-Fri Jan
    assert shares[1, 2] == pytest.approx(1.0)


def test_evaluated_cutoffs_span_a_full_year(series):
    cfg = DemandSettings()
    weeks = pd.DatetimeIndex(series[(series["series"] == ALL) & (series["metric"] == "visits")]["week_start"])
    evaluated = cutoff_weeks(weeks, cfg)[-cfg.cutoffs :]
    assert len(evaluated) >= 8
    assert (evaluated[-1] - evaluated[0]).days >= 7 * 48  # starting points in every season
    assert {c.month for c in evaluated} >= {1, 4, 7, 10}
    assert set(backtest_method(cfg)) >= {"origins", "model", "intervals", "coverage"}


def _naive_forecaster(history, future, cfg):
    """A cheap forecaster for harness tests: last-4 mean with a +-10% band."""
    f = mean_last_4(history, future)
    weeks = pd.DatetimeIndex(history["week_start"]).append(pd.DatetimeIndex(future))
    y = np.concatenate([history["y"].to_numpy(float), f])
    return pd.DataFrame({"week_start": weeks, "yhat": y, "yhat_lower": 0.9 * y, "yhat_upper": 1.1 * y})


def test_backtest_harness_never_trains_on_the_test_weeks(series):
    cfg = DemandSettings()
    seen = []

    def spy(history, future, c):
        seen.append((history["week_start"].max(), min(future)))
        return _naive_forecaster(history, future, c)

    points, summary = backtest(series, cfg, forecaster=spy, select=[ALL])
    assert all(last < first for last, first in seen)
    origins = cfg.cutoffs + cfg.calibration_cutoffs
    assert len(summary) == 3 * cfg.cutoffs and len(points) == 3 * origins * cfg.horizon_weeks
    assert points["evaluated"].sum() == 3 * cfg.cutoffs * cfg.horizon_weeks
    head = summarise(summary, points)
    assert head["relative_mase"] == pytest.approx(head["mase"] / head["baseline_mase"])
    assert 0 <= head["coverage_80"] <= 1
    assert backtest_series_names(series, cfg)[:2] == [ALL, "C1"]


def test_interval_calibration_uses_only_forecasts_observed_before_the_cutoff():
    cfg = DemandSettings(calibration_window=10)
    weeks = pd.date_range("2025-01-06", periods=40, freq="7D")
    rows = []
    for i, cutoff in enumerate(weeks[[0, 4, 8, 12, 16, 20]]):  # origins every 4 weeks, 12-week horizons
        future = pd.date_range(cutoff, periods=12, freq="7D")
        miss = 3.0 if i < 3 else 0.5  # early forecasts missed by 3 band-widths, later ones by half
        rows.append(
            pd.DataFrame(
                {
                    "series": ALL,
                    "metric": "visits",
                    "cutoff": cutoff,
                    "week_start": future,
                    "yhat": 100.0,
                    "yhat_lower": 90.0,
                    "yhat_upper": 110.0,
                    "actual": 100.0 + miss * 10 * np.where(np.arange(12) % 2, 1, -1),
                }
            )
        )
    out = calibrate_intervals(pd.concat(rows, ignore_index=True), cfg)
    scale = out.groupby("cutoff")["interval_scale"].first()
    assert list(scale.iloc[:3]) == [1.0, 1.0, 1.0]  # nothing fully observed yet (12 points minimum)
    assert scale.iloc[3] == pytest.approx(3.0)  # only origin 0 ended before origin 3
    assert scale.iloc[5] == pytest.approx(3.0)  # origins 0-2 (3.0) are all that ended before origin 5
    assert conformal_scale(np.linspace(0, 2, 101), 0.8) == pytest.approx(1.6)
    assert conformal_scale(np.ones(5), 0.8) == 1.0  # too few errors: keep the model's own band


def test_conformal_scale_ignores_errors_not_yet_observed_at_the_cutoff():
    """Changing the errors of forecasts that end after cutoff c leaves c's band alone."""
    cfg = DemandSettings()
    weeks = pd.date_range("2024-01-01", periods=120, freq="7D")
    rng = np.random.default_rng(3)
    rows = []
    for cutoff in weeks[:100:4]:
        future = pd.date_range(cutoff, periods=12, freq="7D")
        rows.append(
            pd.DataFrame(
                {
                    "series": ALL,
                    "metric": "visits",
                    "cutoff": cutoff,
                    "week_start": future,
                    "yhat": 100.0,
                    "yhat_lower": 90.0,
                    "yhat_upper": 110.0,
                    "actual": 100.0 + rng.normal(0, 15, 12),
                }
            )
        )
    points = pd.concat(rows, ignore_index=True)
    base = calibrate_intervals(points, cfg).groupby("cutoff")["interval_scale"].first()
    c = weeks[60]
    unseen = (points["cutoff"] + pd.Timedelta(weeks=12)) > c  # horizons not finished by c
    shocked = points.assign(actual=np.where(unseen, points["actual"] + 500.0, points["actual"]))
    after = calibrate_intervals(shocked, cfg).groupby("cutoff")["interval_scale"].first()
    assert after[after.index <= c].equals(base[base.index <= c])
    assert (after[after.index > c + pd.Timedelta(weeks=12)] > base[base.index > c + pd.Timedelta(weeks=12)]).all()
    # the default window: the scale at the last cutoff is the quantile over the 4 latest fully observed origins
    last = points["cutoff"].max()
    past = calibrate_intervals(points, cfg)
    past = past[past["cutoff"] + pd.Timedelta(weeks=12) <= last]
    latest = past[past["cutoff"].isin(sorted(past["cutoff"].unique())[-4:])]
    assert cfg.calibration_window == 4 and base[last] == pytest.approx(np.quantile(latest["score"], 0.8))
    # the expanding window (None): every fully observed origin
    expanding = calibrate_intervals(points, DemandSettings(calibration_window=None))
    assert expanding.groupby("cutoff")["interval_scale"].first()[last] == pytest.approx(np.quantile(past["score"], 0.8))


def test_calibrated_coverage_lands_near_nominal_on_known_noise():
    """Gaussian noise (sd 5) around a known level; the forecaster's band is far too narrow (+-2).

    The raw band covers ~31%; the conformally calibrated one must cover close to 80% out of sample.
    """
    rng = np.random.default_rng(11)
    weeks = pd.date_range("2022-01-03", periods=170, freq="7D")
    series = pd.concat(
        [
            pd.DataFrame({"series": ALL, "metric": m, "week_start": weeks, "y": 100.0 + rng.normal(0, 5, len(weeks))})
            for m in ("visits", "evals", "referrals")
        ],
        ignore_index=True,
    )

    def narrow(history, future, cfg):
        ds = pd.DatetimeIndex(history["week_start"]).append(pd.DatetimeIndex(future))
        return pd.DataFrame({"week_start": ds, "yhat": 100.0, "yhat_lower": 98.0, "yhat_upper": 102.0})

    ideal = 5 * 1.2816 / 2  # z_0.9 * sd / half-width
    points, summary = backtest(series, DemandSettings(calibration_window=None), forecaster=narrow)
    head = summarise(summary, points)
    assert head["coverage_80_raw"] < 0.4
    assert 0.74 <= head["coverage_80"] <= 0.86
    assert points.loc[points["evaluated"], "interval_scale"].between(ideal * 0.75, ideal * 1.25).all()
    # the default: the 4 latest origins only (48 errors), so each origin's scale is noisier, coverage as good
    points, summary = backtest(series, DemandSettings(), forecaster=narrow)
    assert 0.74 <= summarise(summary, points)["coverage_80"] <= 0.86
    assert points.loc[points["evaluated"], "interval_scale"].between(ideal * 0.6, ideal * 1.4).all()


def test_prophet_beats_seasonal_naive_on_a_seasonal_series(series):
    cfg = DemandSettings(cutoffs=4, calibration_cutoffs=2)
    one = series[(series["series"] == "C1") & (series["metric"] == "visits")]
    points, summary = backtest(one, cfg, forecaster=prophet_forecast)
    head = summarise(summary, points)
    assert head["relative_mase"] < 1.0
    assert 0.5 < head["coverage_80"] <= 1.0
    again = backtest(one, cfg, forecaster=prophet_forecast)[1]
    pd.testing.assert_frame_equal(summary, again)  # seeded: reproducible to the last digit


def test_forecast_all_and_staffing_gap(series):
    cfg = DemandSettings()
    fc = forecast_all(series, cfg, forecaster=_naive_forecaster)
    future = fc[fc["actual"].isna()]
    assert set(future.groupby(["series", "metric"]).size()) == {cfg.horizon_weeks}
    therapists = pd.DataFrame(
        {
            "clinic_id": ["C1", "C1", "C2"],
            "available_minutes_week": [2400.0, 2400.0, 1800.0],
            "hired_on": ["2020-01-01", "2026-02-01", "2020-01-01"],
            "terminated_on": [None, None, "2026-01-20"],
        }
    )
    minutes = pd.Series({"C1": 48.0, "C2": 45.0, ALL: 45.0})
    gap = staffing_gap(fc, therapists, minutes, AS_OF)
    c1 = gap[gap["clinic_id"] == "C1"].set_index("week_start")
    assert c1.loc["2026-01-12", "capacity_visits"] == pytest.approx(2400 / 48)
    assert c1.loc["2026-02-02", "capacity_visits"] == pytest.approx(4800 / 48)
    # the week of Jan 19 has MLK day: four open weekdays of five
    assert c1.loc["2026-01-19", "capacity_visits"] == pytest.approx(2400 * 0.8 / 48)
    c2 = gap[gap["clinic_id"] == "C2"].set_index("week_start")
    assert c2.loc["2026-01-26", "capacity_visits"] == 0  # terminated before that week
    assert np.allclose(gap["gap_visits"], gap["forecast_visits"] - gap["capacity_visits"])


def test_per_metric_and_series_figures_flag_a_loss_the_pooled_figure_hides():
    """Issue 12: a pooled pass (practice, all metrics) must not hide a metric that loses to seasonal naive."""
    from ml.train_score import per_series_metric

    rows = []
    for series, metric, mase, base in (
        ("ALL", "referrals", 0.5, 1.0),
        ("ALL", "evals", 0.6, 1.0),
        ("ALL", "visits", 1.3, 1.0),  # loses to naive, hidden by the pooled 0.80
        ("C1", "visits", 0.9, 1.0),
    ):
        for cutoff in range(3):
            rows.append(
                dict(
                    series=series,
                    metric=metric,
                    cutoff=cutoff,
                    mase=mase,
                    baseline_mase=base,
                    mean4_mase=base,
                    smape=5.0,
                    baseline_smape=6.0,
                )
            )
    summary = pd.DataFrame(rows)
    points = summary[["series", "metric"]].assign(
        evaluated=True, actual=1.0, lower_80=0.0, upper_80=2.0, yhat_lower=0.0, yhat_upper=2.0
    )
    out = per_series_metric(summary, points)
    pooled = next(r for r in out["breakdown"] if r["series"] == "ALL" and r["metric"] == "pooled")
    assert pooled["relative_mase"] == pytest.approx(0.8) and not pooled["loses_to_naive"]
    assert out["pooled_hides_loss"] and [(h["series"], h["metric"]) for h in out["hidden_losses"]] == [
        ("ALL", "visits")
    ]
    assert {(r["series"], r["metric"]) for r in out["breakdown"]} >= {("C1", "visits"), ("C1", "pooled")}
    assert per_series_metric(summary.iloc[0:0], points.iloc[0:0]) == {
        "breakdown": [],
        "hidden_losses": [],
        "pooled_hides_loss": False,
    }


def test_calendar_arx_recovers_month_levels_holidays_and_decays_the_last_shock():
    """y = a level per calendar month - 8 per holiday weekday; the last weeks run 30 above it."""
    weeks = pd.date_range("2023-01-02", periods=120, freq="7D")
    level = month_shares(weeks) @ np.linspace(100, 155, 12) - 8 * holiday_weekdays(weeks)
    y = level.copy()
    y[-3:] += 30.0
    history = pd.DataFrame({"week_start": weeks, "y": y})
    future = pd.date_range(weeks[-1] + pd.Timedelta(weeks=1), periods=12, freq="7D")
    truth = month_shares(future) @ np.linspace(100, 155, 12) - 8 * holiday_weekdays(future)
    fc = calendar_arx_forecast(history, future, DemandSettings())
    gap = fc - truth
    assert np.abs(gap[-1]) < 3  # far ahead: back on the calendar levels
    assert gap[0] > gap[-1]  # the recent shock carries into the first weeks and fades
    short = calendar_arx_forecast(history.tail(20), future, DemandSettings())  # < a year: intercept + holidays
    assert np.isfinite(short).all() and (short >= 0).all()


def test_level_adjusted_naive_rescales_last_year_and_falls_back():
    weeks = pd.date_range("2024-01-01", periods=70, freq="7D")
    y = np.where(weeks < weeks[52], 100.0, 120.0)  # this year runs 20% above last year
    y[20] = 150.0  # last year's odd week carries into the forecast 52 weeks on, scaled
    history = pd.DataFrame({"week_start": weeks, "y": y})
    future = pd.date_range(weeks[-1] + pd.Timedelta(weeks=1), periods=12, freq="7D")
    fc = level_adjusted_naive(history, future, weeks=13)
    naive = seasonal_naive(history, future)
    assert fc == pytest.approx(naive * 1.2) and fc[2] == pytest.approx(180.0)
    young = history.head(55)  # only 3 weeks with a year-back twin: no level ratio, the plain naive
    soon = pd.date_range(weeks[54] + pd.Timedelta(weeks=1), periods=4, freq="7D")
    assert list(level_adjusted_naive(young, soon)) == list(seasonal_naive(young, soon))


def test_demand_forecast_never_reads_the_weeks_it_forecasts(series):
    """Point in time: shocking every actual from a cutoff on leaves that cutoff's forecast (and earlier) unchanged.

    Like the no-show leakage test: the same backtest on altered futures must give byte-identical forecasts for
    origins that could not have seen them, and different ones for an origin that could.
    """
    cfg = DemandSettings(cutoffs=2, calibration_cutoffs=0, uncertainty_samples=50)
    one = series[(series["series"] == ALL) & (series["metric"] == "visits")].reset_index(drop=True)
    base, _ = backtest(one, cfg)
    last = base["cutoff"].max()
    cols = ["cutoff", "week_start", "yhat", "yhat_lower", "yhat_upper"]

    def shocked_from(start):
        return backtest(one.assign(y=np.where(one["week_start"] >= start, one["y"] + 500.0, one["y"])), cfg)[0]

    same = shocked_from(last)
    pd.testing.assert_frame_equal(base[cols], same[cols])
    leaked = shocked_from(last - pd.Timedelta(weeks=1))  # the week before the cutoff is history: it must count
    at_last = leaked["cutoff"] == last
    assert not np.allclose(leaked.loc[at_last, "yhat"], base.loc[at_last, "yhat"])
    pd.testing.assert_frame_equal(base.loc[~at_last, cols], leaked.loc[~at_last, cols])


def test_the_ensemble_beats_seasonal_naive_and_its_band_is_prophets_width(series):
    cfg = DemandSettings(cutoffs=4, calibration_cutoffs=2)
    one = series[(series["series"] == "C1") & (series["metric"] == "visits")]
    hist = one[one["week_start"] < one["week_start"].max() - pd.Timedelta(weeks=11)]
    future = pd.DatetimeIndex(one["week_start"].tail(12))
    ens, alone = demand_forecast(hist, future, cfg), prophet_forecast(hist, future, cfg)
    ahead = ens["week_start"].isin(future).to_numpy()
    assert np.allclose(ens.loc[~ahead, "yhat"], alone.loc[~ahead, "yhat"])  # history: Prophet's fitted line
    parts = (
        alone.loc[ahead, "yhat"].to_numpy()
        + calendar_arx_forecast(hist, future, cfg)
        + level_adjusted_naive(hist, future, cfg.level_weeks)
    ) / 3
    assert ens.loc[ahead, "yhat"].to_numpy() == pytest.approx(parts)
    width = (ens["yhat_upper"] - ens["yhat_lower"])[ahead & (ens["yhat_lower"] > 0).to_numpy()]
    assert width.to_numpy() == pytest.approx((alone["yhat_upper"] - alone["yhat_lower"])[width.index].to_numpy())
    points, summary = backtest(one, cfg)
    assert summarise(summary, points)["relative_mase"] < 1.0


def test_a_nightly_forecast_refits_only_the_series_whose_history_changed(series, tmp_path):
    """The served forecast, read back from a real DuckDB file, is reused series by series: a late correction in
    one clinic's visits refits that series (and the practice total it sums into), nothing else; the result is
    what a refit of everything gives. A new band scale (a retrained backtest) refits the series it applies to."""
    cfg = DemandSettings()
    fits = []

    def counted(history, future, c):
        fits.append(1)
        return _naive_forecaster(history, future, c)

    served = forecast_all(series, cfg, forecaster=counted)
    n_series = len(fits)
    assert served["fit_key"].notna().all() and served.groupby(["series", "metric"])["fit_key"].nunique().max() == 1
    served_file = tmp_path / "served.duckdb"
    con = duckdb.connect(str(served_file))
    write_table(con, "demand_forecast", served.assign(week_start=served["week_start"].dt.date))
    con.close()
    previous = read_served_forecast(served_file, tmp_path / "new.duckdb")
    assert read_served_forecast(served_file, served_file) is None  # scoring the served file itself: no reuse

    late = series.copy()
    one_week = late.index[(late["series"] == "C1") & (late["metric"] == "visits")][5]
    late.loc[one_week, "y"] += 1
    late.loc[
        (late["series"] == ALL)
        & (late["metric"] == "visits")
        & (late["week_start"] == late.at[one_week, "week_start"]),
        "y",
    ] += 1
    fits.clear()
    night = forecast_all(late, cfg, forecaster=counted, previous=previous)
    assert len(fits) == 2  # C1 visits and ALL visits
    key = ["series", "metric", "week_start"]
    expected = forecast_all(late, cfg, forecaster=_naive_forecaster).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(night.sort_values(key, ignore_index=True), expected, check_dtype=False)

    fits.clear()
    forecast_all(late, cfg, forecaster=counted, scales={"clinic": {"visits": 1.3}}, previous=previous)
    clinic_visits = series.loc[(series["series"] != ALL) & (series["metric"] == "visits"), "series"].nunique()
    assert len(fits) == clinic_visits + 1 < n_series  # the rescaled clinic visits series, and ALL visits (changed)


def test_a_one_clinic_practice_reused_night_after_night_keeps_one_row_per_week(series):
    """A one-clinic practice: ALL and the clinic share their history, hence their fit_key. Reusing the served
    forecast must give each (series, metric, week) one row, the same as a fresh fit, however many nights."""
    cfg = DemandSettings()
    one = series[series["series"] == "C1"]
    twin = pd.concat([one, one.assign(series=ALL)], ignore_index=True)
    scales = {ALL: {"visits": 1.3}, "clinic": {"visits": 1.3}}  # one clinic: both levels get the same scale
    fresh = forecast_all(twin, cfg, forecaster=_naive_forecaster, scales=scales)
    served = fresh
    for _night in range(3):
        served = forecast_all(twin, cfg, forecaster=_naive_forecaster, scales=scales, previous=served)
    key = ["series", "metric", "week_start"]
    assert not served.duplicated(key).any()
    pd.testing.assert_frame_equal(served.sort_values(key, ignore_index=True), fresh.sort_values(key, ignore_index=True))
    doubled = pd.concat([fresh, fresh], ignore_index=True)  # what the old reuse already served: refitted, not kept
    healed = forecast_all(twin, cfg, forecaster=_naive_forecaster, scales=scales, previous=doubled)
    assert not healed.duplicated(key).any() and len(healed) == len(fresh)


def test_a_closed_clinic_is_forecast_zero_and_has_no_staffing_gap():
    """A clinic with 21 zero weeks after two busy years: the calendar regression alone forecast it near full
    demand (its month shares span two open years) and the staffing gap reported it short against no staff."""
    rng = np.random.default_rng(0)
    weeks = pd.date_range("2024-12-16", "2026-10-19", freq="7D")
    y = rng.poisson(200, len(weeks)).astype(float)
    y[weeks >= "2026-06-01"] = 0.0
    sparse = np.r_[rng.poisson(0.3, len(weeks) - 8), np.zeros(8)]  # 8 zeros at 0.3 a week: chance, not closure
    busy = np.r_[rng.poisson(50, len(weeks) - 7), np.zeros(7)]  # 7 zero weeks: too short to call closed
    series = pd.concat(
        [
            pd.DataFrame({"series": s, "metric": "visits", "week_start": weeks, "y": v})
            for s, v in (("CL003", y), ("CL004", sparse), ("CL005", busy))
        ],
        ignore_index=True,
    )
    assert closed_series(series) == [{"series": "CL003", "metric": "visits", "since": "2026-06-01", "zero_weeks": 21}]
    fc = forecast_all(series, DemandSettings(uncertainty_samples=100))
    future = fc[fc["actual"].isna()]
    closed = future[future["series"] == "CL003"]
    assert len(closed) == 12 and (closed[["yhat", "yhat_lower", "yhat_upper"]] == 0).all().all()
    assert (future.loc[future["series"] == "CL005", "yhat"] > 0).any()  # not closed: left to the model
    therapists = pd.DataFrame(
        {
            "clinic_id": ["CL003", "CL005"],
            "available_minutes_week": [2400.0, 2400.0],
            "hired_on": ["2020-01-01", "2020-01-01"],
            "terminated_on": ["2026-05-31", None],
        }
    )
    gap = staffing_gap(fc, therapists, pd.Series({"CL003": 45.0, "CL005": 45.0}), pd.Timestamp("2026-10-31"))
    assert "CL003" not in set(gap["clinic_id"]) and "CL005" in set(gap["clinic_id"])
