"""Weekly demand: new referrals, initial evaluations and visits per clinic and for the whole practice.

The forecast (`demand_forecast`) is the equal-weight mean of three models that err differently: Prophet
(calendar-month effects + a smooth yearly term + a US-holiday regressor), a least-squares regression on the same
calendar regressors with AR(1) errors (`calendar_arx_forecast`), and last year's same week rescaled to this
quarter's level (`level_adjusted_naive`). It is judged by a rolling-origin backtest against a seasonal-naive
baseline, then refitted on all history to forecast the next weeks, and the visit forecast is set against
therapist capacity (the staffing gap). Prophet alone reached a relative MASE of 0.89 on the medium practice and
lost to a plain ARIMAX; the mean reaches 0.82 on two medium seeds with every metric ahead of the naive
(ml/README.md). Tried and dropped: visits already booked at the origin (bookings are made 1-12 days ahead, so
they cover the first two weeks only, and the booked-to-attended ratio varied 7% where the forecast erred 2-3%),
and evaluations as a distributed lag of referrals, visits of evaluations (no gain over the mean).

Why weekly: daily PT volumes are dominated by the weekday pattern and holidays a manager already knows;
staffing decisions are made per week. Why a holiday *regressor* rather than Prophet's holiday dates: on a
weekly series a holiday date only coincides with a data point when it falls on the week's Monday, so the
regressor counts the weekday holidays inside each week instead.

Baseline (declared): **seasonal naive, same week last year** (y[t-52]); when less than a year of history
precedes a forecast week the baseline uses the mean of the last 4 weeks for that series instead. The
backtest also reports a last-4-weeks-mean baseline so the comparison is not against a straw man only.

Why month effects: PT demand moves in calendar-month steps (deductibles reset in January and referrals
jump; December and late summer are slow). A low-order Fourier yearly term fitted on one or two seasonal
cycles smooths that step across December-February, and in those months it lost to the seasonal naive.
Each week carries the share of its weekdays falling in each month (12 additive regressors) and the Fourier
term keeps only a smooth residual shape (order 3). Holiday weeks were checked separately: with the
weekday-holiday count their errors were no larger than other weeks', so no holiday windows are added.

Backtest (`BACKTEST_METHOD`): evaluated origins every 4 weeks over the last full year (13 origins, 12-week
horizon), so every season is forecast from and coverage is not measured on summer weeks only; every origin
with at least a year of history before them serves for calibration only.

Young series: a series with fewer than MIN_WEEKS (8) complete weeks is not fitted; from BASELINE_MIN_WEEKS (3)
weeks it is forecast flat at its last (up to) 4 weeks' mean with a t-interval from its weekly spread
(`short_history_baseline`, not backtested), so a clinic opened a month or two ago is still weighed against its
therapists in the staffing gap; with fewer weeks it gets no forecast and no staffing gap.

Intervals: Prophet's 80% band (centred on the ensemble's point) assumes its trend and noise model; over a
12-week horizon it covered 60-70% out of sample. The band is therefore rescaled by split conformal prediction on
normalised scores (`calibrate_intervals`): the scale for a forecast made at cutoff c is the 80% quantile of
|actual - yhat| / (band half-width) over the 4 most recent earlier forecasts of the same level and metric whose
whole horizon was observed before c (nothing from c or later), so the reported coverage is out of sample. Why
the recent 4 and not every earlier origin: errors shrink as the history grows (the earliest origins train on
one year), so an expanding window over-widened the ensemble's bands (referrals covered 0.87-0.89). The
half-width carries Prophet's own growth of uncertainty with the horizon, so one scale serves all 12 steps.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import holidays
import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from ml.artifacts import code_fingerprint
from ml.evaluation import interval_coverage, mase, mase_scale, smape

METRICS = ("referrals", "evals", "visits")
_CODE_SHA = code_fingerprint(Path(__file__))  # a change of this code (not of a comment) refits every series
ALL = "ALL"
SEASON = 52
RAMP_SHARE = 0.9
# A series is closed after CLOSED_WEEKS or more trailing zero weeks that its earlier rate makes implausible: at
# least CLOSED_WEEKS events expected over the run, so Poisson chance alone gives it <= e^-8 (0.03%). Two months
# without a visit is a closed clinic (or a stopped feed), not a slow spell; a sparse series is left to the model.
CLOSED_WEEKS = 8
# A series with fewer than MIN_WEEKS complete weeks (after its ramp-up) is too short for the model: its month
# shares, trend and AR term would be fitted on a handful of points. One with BASELINE_MIN_WEEKS to MIN_WEEKS - 1
# (a clinic opened a month or two ago) is forecast by `short_history_baseline` instead, so the staffing gap
# still weighs it against its therapists; a shorter one gets no forecast (the Demand page names it).
MIN_WEEKS = 8
BASELINE_MIN_WEEKS = 3  # a series this long has lost its partial first week to the ramp-up (`ramp_up_weeks`)


@dataclass(frozen=True)
class DemandSettings:
    horizon_weeks: int = 12
    cutoffs: int = 13  # evaluated origins: with the 4-week step they span a full year of starting points
    calibration_cutoffs: int = 8  # at most this many earlier origins (a year of history each) only calibrate
    calibration_window: int | None = 4  # the most recent fully observed origins; None: every one (expanding)
    cutoff_step_weeks: int = 4
    backtest_clinics: int = 3  # the busiest clinics are backtested besides the practice-level series
    interval_width: float = 0.8
    yearly_order: int = 3  # the smooth part only: calendar-month regressors carry the steps
    month_effects: bool = True
    changepoint_prior_scale: float = 0.05
    min_weeks_for_yearly: int = 60
    uncertainty_samples: int = 1000
    seed: int = 0
    ensemble: bool = True  # Prophet + calendar regression with AR(1) errors + level-adjusted seasonal naive
    arx_window_weeks: int = 104  # the regression sees the last two years: older levels mislead it
    level_weeks: int = 13  # the seasonal naive is rescaled by the last quarter against the same weeks a year back
    # every fit (each backtest origin, the production forecast) sees at most the last five years: Prophet's yearly
    # terms need two or three cycles, the regression two years and the naive one; a practice whose records reach
    # back to 1928 would otherwise fit a century of (mostly zero) weeks at each of ~21 origins x 12 series
    history_weeks: int = 260


# ------------------------------------------------------------------------------------------------ series


def week_start(ts: pd.Series) -> pd.Series:
    """Monday of the week of each timestamp (as a datetime at midnight)."""
    d = pd.to_datetime(ts).dt.normalize()
    return d - pd.to_timedelta(d.dt.day_of_week, unit="D")


def last_complete_week(as_of: pd.Timestamp) -> pd.Timestamp:
    """Monday of the last full week before the week containing `as_of` (that week is still running)."""
    as_of = pd.Timestamp(as_of)
    return as_of.normalize() - pd.Timedelta(days=as_of.weekday() + 7)


def weekly_series(events: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Count events per (clinic, metric, week) and per (ALL, metric, week), zero-filled.

    `events` has columns clinic_id, metric, at, and optionally n (the events that row stands for, as
    warehouse.read_weekly_demand counts them in SQL; else each row is one event). Only complete weeks are kept
    (the week containing `as_of` is partial and would look like a collapse in demand). Each series starts after its ramp-up (see
    `ramp_up_weeks`), so a clinic that opened late does not get a run of fake zeros or a fake climb.
    """
    last = last_complete_week(as_of)
    ev = events.dropna(subset=["at"]).assign(week_start=lambda d: week_start(d["at"]))
    ev = ev[ev["week_start"] <= last]
    ev = ev if "n" in ev else ev.assign(n=1)
    per_clinic = ev.groupby(["clinic_id", "metric", "week_start"])["n"].sum().rename("y").reset_index()
    practice = ev.groupby(["metric", "week_start"])["n"].sum().rename("y").reset_index().assign(clinic_id=ALL)
    counts = pd.concat([per_clinic, practice], ignore_index=True).rename(columns={"clinic_id": "series"})
    frames = []
    for (series, metric), part in counts.groupby(["series", "metric"], sort=True):
        weeks = pd.date_range(part["week_start"].min(), last, freq="7D")
        filled = part.set_index("week_start")["y"].reindex(weeks, fill_value=0).to_numpy(float)
        start = ramp_up_weeks(filled)
        frames.append(
            pd.DataFrame({"series": series, "metric": metric, "week_start": weeks[start:], "y": filled[start:]})
        )
    if not frames:
        return pd.DataFrame(columns=["series", "metric", "week_start", "y"])
    return pd.concat(frames, ignore_index=True)


def ramp_up_weeks(y: np.ndarray, share: float = RAMP_SHARE) -> int:
    """How many leading weeks to drop: the first (partial) week, then weeks below `share` x the median.

    A series starts when its data starts, usually mid-week, and visits then climb for weeks while the
    caseload fills up (a new clinic, or an export window that begins with nobody in care). Fitting that
    climb teaches the model a trend and a noise level that do not exist any more.
    """
    if len(y) < 3:
        return 0
    median = float(np.median(y[1:]))
    steady = np.flatnonzero(y[1:] >= share * median)
    return 1 + (int(steady[0]) if len(steady) else 0)


def month_shares(weeks: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """(weeks x 12): the share of each week's five weekdays (Mon-Fri) that fall in each calendar month.

    Lets a weekly model carry a per-month level: a week spanning Dec 29 - Jan 2 is 3/5 December, 2/5 January.
    """
    weeks = pd.DatetimeIndex(weeks)
    out = np.zeros((len(weeks), 12))
    rows = np.arange(len(weeks))
    for day in range(5):
        out[rows, (weeks + pd.Timedelta(days=day)).month.to_numpy() - 1] += 0.2
    return out


def holiday_weekdays(weeks: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Number of US federal holidays falling Monday-Friday in each week starting at `weeks`."""
    weeks = pd.DatetimeIndex(weeks)
    if len(weeks) == 0:
        return np.zeros(0)
    years = range(weeks.min().year - 1, weeks.max().year + 2)
    days = pd.DatetimeIndex(sorted(holidays.US(years=years).keys()))
    days = days[days.day_of_week < 5]
    starts = (days - pd.to_timedelta(days.day_of_week, unit="D")).value_counts()
    return starts.reindex(weeks, fill_value=0).to_numpy(float)


# ---------------------------------------------------------------------------------------------- models

Forecaster = Callable[[pd.DataFrame, pd.DatetimeIndex, DemandSettings], pd.DataFrame]


def prophet_forecast(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: DemandSettings) -> pd.DataFrame:
    """Fit Prophet on `history` (week_start, y); return yhat/yhat_lower/yhat_upper for history + future.

    Regressors: weekday holidays per week, and (with a year of history) the calendar-month shares of the week.

    Counts cannot be negative, so forecasts and bounds are clipped at 0. The interval sampling uses
    numpy's global RNG, so it is seeded here for reproducible bounds.
    """
    from prophet import Prophet

    df = pd.DataFrame({"ds": pd.DatetimeIndex(history["week_start"]), "y": history["y"].to_numpy(float)})
    df["holiday_days"] = holiday_weekdays(df["ds"])
    yearly = cfg.yearly_order if len(df) >= cfg.min_weeks_for_yearly else False
    model = Prophet(
        yearly_seasonality=yearly,
        weekly_seasonality=False,
        daily_seasonality=False,
        changepoint_prior_scale=cfg.changepoint_prior_scale,
        interval_width=cfg.interval_width,
        uncertainty_samples=cfg.uncertainty_samples,
    )
    model.add_regressor("holiday_days", mode="additive")
    _quiet_stan()
    ds = pd.DatetimeIndex(df["ds"]).append(pd.DatetimeIndex(future))
    grid = pd.DataFrame({"ds": ds, "holiday_days": holiday_weekdays(ds)})
    if cfg.month_effects and len(df) >= cfg.min_weeks_for_yearly:
        # shares sum to 1 per week, so they stand in for a per-month level; unstandardised and with a wide prior
        # (Prophet's default), as the month steps are a first-order effect
        hist_shares, grid_shares = month_shares(df["ds"]), month_shares(ds)
        for m in range(12):
            df[f"month_{m + 1}"], grid[f"month_{m + 1}"] = hist_shares[:, m], grid_shares[:, m]
            model.add_regressor(f"month_{m + 1}", mode="additive", standardize=False)
    with warnings.catch_warnings():  # prophet's own pandas deprecations, not ours to fix
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        np.random.seed(cfg.seed)
        model.fit(df, algorithm="LBFGS", seed=cfg.seed)
        np.random.seed(cfg.seed)
        pred = model.predict(grid)
    out = pd.DataFrame({"week_start": ds})
    for col in ("yhat", "yhat_lower", "yhat_upper"):
        out[col] = np.clip(pred[col].to_numpy(float), 0, None)
    return out


def _quiet_stan() -> None:
    """cmdstanpy configures its logger (level DEBUG, an INFO handler) on first use; quiet it after that."""
    from cmdstanpy.utils import get_logger

    get_logger().setLevel(logging.CRITICAL)  # a failed LBFGS run is retried with Newton by prophet
    logging.getLogger("prophet").setLevel(logging.ERROR)


def calendar_arx_forecast(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: DemandSettings) -> np.ndarray:
    """Least squares on the same calendar regressors as Prophet (month shares, holiday weekdays), AR(1) errors.

    A regression with autoregressive errors (an ARIMAX(1,0,0) fitted in two steps, numpy only): the last
    residual decays by phi per week ahead, so a level shift of the last weeks carries into the first weeks of
    the horizon and fades. Only the last `arx_window_weeks` are fitted. Without a year of history the month
    shares cannot be told apart from the level, so the regression keeps an intercept and the holiday count.
    """
    hist = history.tail(cfg.arx_window_weeks)
    ds = pd.DatetimeIndex(hist["week_start"]).append(pd.DatetimeIndex(future))
    n, y = len(hist), hist["y"].to_numpy(float)
    if n < 3:
        return np.full(len(future), float(y.mean()) if n else 0.0)
    calendar = month_shares(ds) if n >= cfg.min_weeks_for_yearly else np.ones((len(ds), 1))
    x = np.column_stack([calendar, holiday_weekdays(ds)])
    beta, *_ = np.linalg.lstsq(x[:n], y, rcond=None)
    resid = y - x[:n] @ beta
    phi = float(np.clip(resid[1:] @ resid[:-1] / max(float(resid[:-1] @ resid[:-1]), 1e-9), 0.0, 0.99))
    return np.clip(x[n:] @ beta + resid[-1] * phi ** np.arange(1, len(future) + 1), 0, None)


def level_adjusted_naive(history: pd.DataFrame, future: pd.DatetimeIndex, weeks: int = 13) -> np.ndarray:
    """Same week last year x (the last `weeks` weeks / the same weeks a year earlier): last year's shape, today's level.

    Falls back to the plain seasonal naive (and its last-4-weeks fallback) when a year-back comparison is missing.
    """
    naive = seasonal_naive(history, future)
    hist = history.set_index("week_start")["y"]
    recent = hist.tail(weeks)
    year_back = hist.reindex(recent.index - pd.Timedelta(weeks=SEASON))
    if len(recent) < weeks or year_back.isna().any() or float(year_back.sum()) <= 0:
        return naive
    return naive * float(recent.sum()) / float(year_back.sum())


def demand_forecast(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: DemandSettings) -> pd.DataFrame:
    """The product forecaster: equal-weight mean of Prophet, the calendar ARX and the level-adjusted naive.

    Why an ensemble: the three err differently (Prophet's trend, the regression's fixed month levels, last
    year's week-to-week noise), and their mean beat each alone in the backtest on every metric (ml/README.md).
    Equal weights are fixed in advance, not chosen on the backtest, so nothing is tuned on the weeks it is
    scored on. The band is Prophet's half-widths around the ensemble's point; `calibrate_intervals` rescales it
    conformally. History rows keep Prophet's in-sample fit (the chart's fitted line).
    """
    fc = prophet_forecast(history, future, cfg)
    if not cfg.ensemble or len(future) == 0:
        return fc
    ahead = fc["week_start"].isin(pd.DatetimeIndex(future)).to_numpy()
    prophet = fc.loc[ahead, "yhat"].to_numpy(float)
    mean = (
        prophet + calendar_arx_forecast(history, future, cfg) + level_adjusted_naive(history, future, cfg.level_weeks)
    ) / 3
    shift = np.zeros(len(fc))
    shift[ahead] = mean - prophet
    out = fc.assign(yhat=fc["yhat"] + shift, yhat_lower=fc["yhat_lower"] + shift, yhat_upper=fc["yhat_upper"] + shift)
    for col in ("yhat", "yhat_lower", "yhat_upper"):
        out[col] = out[col].clip(lower=0)
    return out


def short_history_baseline(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: DemandSettings) -> pd.DataFrame:
    """The forecast of a series too short for the model (BASELINE_MIN_WEEKS to MIN_WEEKS - 1 weeks): flat at the
    mean of its last 4 weeks (or all of them, when fewer: `mean_last_4`, the declared secondary baseline), with an
    `interval_width` band.

    The band is a prediction interval for one week around that mean: the spread of the weeks seen (sample
    standard deviation, never below the Poisson sqrt(mean)), times sqrt(1 + 1/k) for the mean's own error over k
    weeks, times the Student-t quantile for that few weeks. It is not backtested (there is no past to test it
    on) and assumes the level holds: a clinic still filling its caseload will outrun it, so a staffing gap from
    it errs towards too small. The weeks it sees are those after the ramp-up (`weekly_series`). History rows
    have no fit.
    """
    y = history["y"].to_numpy(float)
    level = float(y[-4:].mean()) if len(y) else 0.0
    spread = max(float(np.std(y, ddof=1)) if len(y) > 1 else 0.0, float(np.sqrt(level)))
    quantile = float(student_t.ppf(0.5 + cfg.interval_width / 2, max(len(y) - 1, 1)))
    half = quantile * spread * float(np.sqrt(1 + 1 / max(min(len(y), 4), 1)))
    weeks = pd.DatetimeIndex(history["week_start"]).append(pd.DatetimeIndex(future))
    ahead = np.r_[np.zeros(len(history), bool), np.ones(len(future), bool)]
    return pd.DataFrame(
        {
            "week_start": weeks,
            "yhat": np.where(ahead, level, np.nan),
            "yhat_lower": np.where(ahead, max(level - half, 0.0), np.nan),
            "yhat_upper": np.where(ahead, level + half, np.nan),
        }
    )


def seasonal_naive(history: pd.DataFrame, future: pd.DatetimeIndex) -> np.ndarray:
    """Same week last year (y[t-52]); the last-4-weeks mean where no value 52 weeks back exists."""
    hist = history.set_index("week_start")["y"]
    lagged = hist.reindex(pd.DatetimeIndex(future) - pd.Timedelta(weeks=SEASON)).to_numpy(float)
    fallback = float(hist.tail(4).mean()) if len(hist) else 0.0
    return np.where(np.isnan(lagged), fallback, lagged)


def mean_last_4(history: pd.DataFrame, future: pd.DatetimeIndex) -> np.ndarray:
    """A flat forecast at the last 4 weeks' mean: the secondary, harder-to-beat baseline."""
    return np.full(len(future), float(history["y"].tail(4).mean()) if len(history) else 0.0)


# -------------------------------------------------------------------------------------------- backtest


def cutoff_weeks(weeks: pd.DatetimeIndex, cfg: DemandSettings) -> list[pd.Timestamp]:
    """Rolling origins, oldest first: the last leaves exactly `horizon` weeks to test; earlier ones step back.

    `cutoffs` evaluated origins plus `calibration_cutoffs` earlier ones whose errors only calibrate the
    intervals. A cutoff is the first forecast week; training uses the weeks strictly before it. Origins with
    less than a year of training history are dropped so each fit can see one seasonal cycle.
    """
    weeks = pd.DatetimeIndex(sorted(weeks))
    out = []
    for i in range(cfg.cutoffs + cfg.calibration_cutoffs):
        idx = len(weeks) - cfg.horizon_weeks - i * cfg.cutoff_step_weeks
        if idx >= SEASON:
            out.append(weeks[idx])
    return sorted(out)


def level_of(series_name: str) -> str:
    return ALL if series_name == ALL else "clinic"


def interval_scores(actual: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """How far each actual fell outside/inside its interval, in units of that side's half-width (1 = edge)."""
    up = np.maximum(upper - yhat, 1e-9)
    down = np.maximum(yhat - lower, 1e-9)
    return np.where(actual >= yhat, (actual - yhat) / up, (yhat - actual) / down)


def conformal_scale(scores: np.ndarray, coverage: float, min_points: int = 12) -> float:
    """The factor that widens (or narrows) the model's interval to cover `coverage` of past errors.

    The empirical `coverage` quantile of past scores (split conformal, without the finite-sample inflation:
    neighbouring weeks of one forecast share their error, so the correction assumes more independence than
    there is and over-widened bands in the backtest); 1.0 (the model's own interval) when there are too few
    past errors to say.
    """
    scores = np.asarray(scores, float)
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    if n < min_points:
        return 1.0
    return float(np.quantile(scores, coverage))


def _rescale(points: pd.DataFrame, scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    yhat = points["yhat"].to_numpy(float)
    lower = yhat - scale * (yhat - points["yhat_lower"].to_numpy(float))
    upper = yhat + scale * (points["yhat_upper"].to_numpy(float) - yhat)
    return np.clip(lower, 0, None), upper


def calibrate_intervals(points: pd.DataFrame, cfg: DemandSettings) -> pd.DataFrame:
    """Conformal interval widths for each forecast, learnt only from forecasts already fully observed.

    For a forecast made at cutoff c, the calibration errors are those of earlier origins (same metric, same
    level: practice or clinic) whose whole horizon ended by c - what a forecaster standing at c could know.
    By default the `calibration_window` (4) most recent such origins count: errors shrink as the training
    history grows, so the oldest origins over-widen the band (measured on two medium seeds, ml/README.md). With
    None every one counts (an expanding window), which Prophet alone needed: its recent errors were one season's.
    Prophet's own 80% band assumes its trend and noise model are right; over 12 weeks they often are not, so
    the band is rescaled by how well it covered out of sample. Adds interval_scale, lower_80, upper_80.
    """
    out = points.copy()
    out["score"] = interval_scores(
        out["actual"].to_numpy(float),
        out["yhat"].to_numpy(float),
        out["yhat_lower"].to_numpy(float),
        out["yhat_upper"].to_numpy(float),
    )
    out["level"] = out["series"].map(level_of)
    horizon_end = out.groupby("cutoff")["week_start"].transform("max") + pd.Timedelta(weeks=1)
    out["observed_by"] = horizon_end
    scale = np.ones(len(out))
    for (level, metric, cutoff), idx in out.groupby(["level", "metric", "cutoff"]).groups.items():
        past = out[(out["level"] == level) & (out["metric"] == metric) & (out["observed_by"] <= cutoff)]
        if cfg.calibration_window is not None:
            recent = sorted(past["cutoff"].unique())[-cfg.calibration_window :]
            past = past[past["cutoff"].isin(recent)]
        scale[out.index.get_indexer(idx)] = conformal_scale(past["score"].to_numpy(), cfg.interval_width)
    out["interval_scale"] = scale
    out["lower_80"], out["upper_80"] = _rescale(out, scale)
    return out.drop(columns=["observed_by"])


def backtest_method(cfg: DemandSettings) -> dict[str, object]:
    """How the backtest and its intervals were made, for backtest.json's `method` field."""
    window = (
        "every earlier origin whose whole horizon was observed before the cutoff (expanding window)"
        if cfg.calibration_window is None
        else f"the {cfg.calibration_window} most recent origins whose whole horizon was observed before the cutoff"
    )
    return {
        "origins": f"{cfg.cutoffs} evaluated cutoffs every {cfg.cutoff_step_weeks} weeks, the last leaving exactly "
        f"{cfg.horizon_weeks} weeks; they span a full year of starting points so every season is "
        f"scored; up to {cfg.calibration_cutoffs} earlier origins (each with >= {SEASON} weeks of "
        "training history) only calibrate the intervals",
        "model": f"equal-weight mean of Prophet, a calendar regression with AR(1) errors (last "
        f"{cfg.arx_window_weeks} weeks) and the seasonal naive rescaled by the last {cfg.level_weeks} weeks' level "
        f"{'(on)' if cfg.ensemble else '(off: Prophet alone)'}; Prophet weekly; calendar-month shares of each week's weekdays (12 additive regressors) "
        f"{'on' if cfg.month_effects else 'off'}; yearly Fourier order {cfg.yearly_order}; US federal "
        f"holiday weekdays regressor; interval_width {cfg.interval_width}, "
        f"{cfg.uncertainty_samples} uncertainty samples, seed {cfg.seed}",
        "intervals": "split conformal on normalised scores: score = |actual - yhat| / (Prophet band half-width on "
        f"that side); the band at cutoff c is scaled by the empirical {cfg.interval_width:.0%} "
        f"quantile of the scores of {window}, same level (practice / clinic) and metric; Prophet's "
        "own band when fewer than 12 such scores exist. No information from c or later is used.",
        "coverage": "share of evaluated weeks whose actual lies in the calibrated band (coverage_80); "
        "coverage_80_raw is Prophet's own band",
        "production_scale": "forecast_all uses the same quantile over the scores of the most recent "
        f"{cfg.calibration_window or 'all'} backtest origins",
    }


def final_interval_scales(points: pd.DataFrame, cfg: DemandSettings) -> dict[str, dict[str, float]]:
    """Scales for the production forecast, per level and metric: from the `calibration_window` latest origins' errors.

    All of them were observed by the last complete week, so this is the band the backtest would give next.
    """
    if points.empty:
        return {}
    if cfg.calibration_window is not None:
        recent = sorted(points["cutoff"].unique())[-cfg.calibration_window :]
        points = points[points["cutoff"].isin(recent)]
    scored = points.assign(
        level=points["series"].map(level_of),
        score=interval_scores(
            points["actual"].to_numpy(float),
            points["yhat"].to_numpy(float),
            points["yhat_lower"].to_numpy(float),
            points["yhat_upper"].to_numpy(float),
        ),
    )
    out: dict[str, dict[str, float]] = {}
    for (level, metric), part in scored.groupby(["level", "metric"]):
        out.setdefault(level, {})[metric] = conformal_scale(part["score"].to_numpy(), cfg.interval_width)
    return out


def backtest(
    series: pd.DataFrame,
    cfg: DemandSettings,
    forecaster: Forecaster = demand_forecast,
    select: list[str] | None = None,
    progress: Callable[[str, str, int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rolling-origin backtest of `forecaster` vs the baselines on each (series, metric).

    Returns (points, summary): one row per forecast week (every origin, with `evaluated` False for the
    calibration-only ones) with actual / forecast / raw and calibrated bounds / baselines, and one row per
    evaluated (series, metric, cutoff) with MASE (scaled by the in-sample one-step naive MAE of that
    origin's training window), sMAPE and coverage of the calibrated and of the raw interval.

    Each origin trains on at most the `history_weeks` weeks before it (as `forecast_all` does). `progress(series,
    metric, done, total)` is called after each fitted origin (total: every origin of every selected series).
    """
    points, scales = [], {}
    chosen = series if select is None else series[series["series"].isin(select)]
    groups = [(key, part.sort_values("week_start")) for key, part in chosen.groupby(["series", "metric"], sort=True)]
    plan = [(key, part, cutoff_weeks(pd.DatetimeIndex(part["week_start"]), cfg)) for key, part in groups]
    total, done = sum(len(cuts) for _, _, cuts in plan), 0
    for (name, metric), part, cuts in plan:
        evaluated = set(cuts[-cfg.cutoffs :])
        for cutoff in cuts:
            hist = part[part["week_start"] < cutoff].tail(cfg.history_weeks)
            test = part[(part["week_start"] >= cutoff)].head(cfg.horizon_weeks)
            future = pd.DatetimeIndex(test["week_start"])
            fc = forecaster(hist, future, cfg).set_index("week_start").reindex(future)
            scales[(name, metric, cutoff)] = mase_scale(hist["y"].to_numpy(float))
            points.append(
                pd.DataFrame(
                    {
                        "series": name,
                        "metric": metric,
                        "cutoff": cutoff,
                        "evaluated": cutoff in evaluated,
                        "week_start": future,
                        "actual": test["y"].to_numpy(float),
                        "yhat": fc["yhat"].to_numpy(),
                        "yhat_lower": fc["yhat_lower"].to_numpy(),
                        "yhat_upper": fc["yhat_upper"].to_numpy(),
                        "seasonal_naive": seasonal_naive(hist, future),
                        "mean_last_4": mean_last_4(hist, future),
                        "train_weeks": len(hist),
                    }
                )
            )
            done += 1
            if progress is not None:
                progress(str(name), str(metric), done, total)
    if not points:
        return pd.DataFrame(), pd.DataFrame()
    allpts = calibrate_intervals(pd.concat(points, ignore_index=True), cfg)
    rows = []
    for (name, metric, cutoff), g in allpts[allpts["evaluated"]].groupby(["series", "metric", "cutoff"]):
        a, scale = g["actual"].to_numpy(float), scales[(name, metric, cutoff)]
        rows.append(
            {
                "series": name,
                "metric": metric,
                "cutoff": cutoff.date().isoformat(),
                "train_weeks": int(g["train_weeks"].iloc[0]),
                "mase": mase(a, g["yhat"], scale),
                "baseline_mase": mase(a, g["seasonal_naive"], scale),
                "mean4_mase": mase(a, g["mean_last_4"], scale),
                "smape": smape(a, g["yhat"]),
                "baseline_smape": smape(a, g["seasonal_naive"]),
                "coverage_80": interval_coverage(a, g["lower_80"], g["upper_80"]),
                "coverage_80_raw": interval_coverage(a, g["yhat_lower"], g["yhat_upper"]),
                "interval_scale": float(g["interval_scale"].iloc[0]),
            }
        )
    return allpts, pd.DataFrame(rows)


def summarise(summary: pd.DataFrame, points: pd.DataFrame) -> dict[str, float | None]:
    """Headline figures: MASE and sMAPE averaged over evaluated forecasts, coverage pooled over their weeks."""
    if summary.empty:
        return {
            "mase": None,
            "baseline_mase": None,
            "relative_mase": None,
            "mean4_mase": None,
            "relative_mase_vs_mean4": None,
            "smape": None,
            "baseline_smape": None,
            "coverage_80": None,
            "coverage_80_raw": None,
            "forecasts": 0,
        }
    pts = points[points["evaluated"]]
    m, b = float(summary["mase"].mean()), float(summary["baseline_mase"].mean())
    m4 = float(summary["mean4_mase"].mean())
    return {
        "mase": m,
        "baseline_mase": b,
        "relative_mase": m / b if b > 0 else None,
        "mean4_mase": m4,
        "relative_mase_vs_mean4": m / m4 if m4 > 0 else None,
        "smape": float(summary["smape"].mean()),
        "baseline_smape": float(summary["baseline_smape"].mean()),
        "coverage_80": interval_coverage(pts["actual"], pts["lower_80"], pts["upper_80"]),
        "coverage_80_raw": interval_coverage(pts["actual"], pts["yhat_lower"], pts["yhat_upper"]),
        "forecasts": int(len(summary)),
    }


def backtest_series_names(series: pd.DataFrame, cfg: DemandSettings) -> list[str]:
    """ALL plus the `backtest_clinics` busiest clinics by visits (ties by id, deterministic)."""
    visits = series[(series["metric"] == "visits") & (series["series"] != ALL)]
    volume = visits.groupby("series")["y"].sum().sort_values(ascending=False, kind="stable")
    ranked = sorted(volume.index, key=lambda s: (-volume[s], s))
    return [ALL] + ranked[: cfg.backtest_clinics]


# -------------------------------------------------------------------------------------------- forecast


def closed_run(y: np.ndarray) -> int:
    """Length of the trailing run of zero weeks when it marks a closure (see CLOSED_WEEKS), else 0."""
    y = np.asarray(y, float)
    nonzero = np.flatnonzero(y != 0)
    run = len(y) - (int(nonzero[-1]) + 1 if len(nonzero) else 0)
    before = y[: len(y) - run]
    if run < CLOSED_WEEKS or not len(before) or run * float(before.mean()) < CLOSED_WEEKS:
        return 0
    return run


def closed_series(series: pd.DataFrame) -> list[dict[str, object]]:
    """Every (series, metric) that looks closed, with the Monday of its first zero week and the run's length:
    forecast_all forecasts them 0 and scoring records this list in models/status.json for the Demand page."""
    out: list[dict[str, object]] = []
    for (name, metric), part in series.groupby(["series", "metric"], sort=True):
        part = part.sort_values("week_start")
        run = closed_run(part["y"].to_numpy(float))
        if run:
            since = pd.Timestamp(part["week_start"].iloc[-run]).date().isoformat()
            out.append({"series": name, "metric": metric, "since": since, "zero_weeks": run})
    return out


def fit_key(part: pd.DataFrame, cfg: DemandSettings, scale: float) -> str:
    """What one series' forecast is a function of: this module's code, the settings, the band's scale and the
    series' history (week_start, y). Equal keys give equal forecasts (the fit is seeded), so a nightly build
    reuses the served rows of a series whose key did not change instead of refitting it."""
    digest = hashlib.sha256(_CODE_SHA.encode())
    digest.update(repr((cfg, float(scale))).encode())
    digest.update(pd.DatetimeIndex(part["week_start"]).asi8.tobytes())
    digest.update(part["y"].to_numpy(float).tobytes())
    return digest.hexdigest()


def forecast_all(
    series: pd.DataFrame,
    cfg: DemandSettings,
    forecaster: Forecaster = demand_forecast,
    scales: dict[str, dict[str, float]] | None = None,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Refit on the last `history_weeks` of each (series, metric) and forecast `horizon_weeks` ahead.

    Rows for history weeks carry the actual and the in-sample fit; future weeks have actual = null. The
    future interval is widened or narrowed by the backtest's conformal scale for that level and metric
    (`final_interval_scales`), so the 80% band covers about 80% out of sample. A closed series (`closed_run`)
    is forecast 0 with a zero band. A series shorter than MIN_WEEKS gets `short_history_baseline` (its band is
    not rescaled: the backtest's scale is the model's) from BASELINE_MIN_WEEKS weeks, nothing below that; its
    rows keep their actuals, so a reader can tell it by its count of history weeks. Each row carries its series'
    `fit_key`; a series whose key is in `previous` (the served forecast) takes those rows instead of a refit:
    only complete weeks count, so a night inside a week changes a series only through a late correction.
    """
    frames = []
    # keyed by (series, metric, fit_key): two series with one history (a one-clinic practice's ALL and its
    # clinic) share a fit_key, and a lookup by key alone gave each series both series' rows, doubling nightly
    reusable = (
        {}
        if previous is None or "fit_key" not in previous
        else dict(tuple(previous.groupby(["series", "metric", "fit_key"], sort=False)))
    )
    for (name, metric), part in series.groupby(["series", "metric"], sort=True):
        part = part.sort_values("week_start").tail(cfg.history_weeks)  # what the backtest's origins fit on too
        if len(part) < BASELINE_MIN_WEEKS:  # too short to say anything; better no forecast than a wild one
            continue
        short = len(part) < MIN_WEEKS  # a young series: the flat baseline, not the model (nor its scale)
        scale = 1.0 if short else (scales or {}).get(level_of(name), {}).get(metric, 1.0)
        key = fit_key(part, cfg, scale)
        kept = reusable.get((name, metric, key))
        if kept is not None and not kept["week_start"].duplicated().any():  # a doubled served copy is refitted
            frames.append(kept)
            continue
        last = part["week_start"].max()
        future = pd.date_range(last + pd.Timedelta(weeks=1), periods=cfg.horizon_weeks, freq="7D")
        fc = (short_history_baseline if short else forecaster)(part, future, cfg)
        ahead = (fc["week_start"] > last).to_numpy()
        if closed_run(part["y"].to_numpy(float)):  # closed: the month shares of two years would forecast it open
            fc.loc[ahead, ["yhat", "yhat_lower", "yhat_upper"]] = 0.0
        lower, upper = _rescale(fc, scale)
        fc["yhat_lower"] = np.where(ahead, lower, fc["yhat_lower"])
        fc["yhat_upper"] = np.where(ahead, upper, fc["yhat_upper"])
        fc = fc.merge(part[["week_start", "y"]], on="week_start", how="left").rename(columns={"y": "actual"})
        frames.append(fc.assign(series=name, metric=metric, fit_key=key))
    cols = ["series", "metric", "week_start", "actual", "yhat", "yhat_lower", "yhat_upper", "fit_key"]
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["week_start"] = pd.to_datetime(out["week_start"])
    return out


# ------------------------------------------------------------------------------------------- staffing


def staffing_gap(
    forecast: pd.DataFrame, therapists: pd.DataFrame, visit_minutes: pd.Series, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Forecast visits vs therapist capacity per clinic and future week.

    capacity_visits = sum of available minutes of therapists employed that week (hired on or before the
    week, not terminated before it), scaled by the share of weekdays that are not federal holidays, divided
    by the clinic's typical (median) visit length. gap_visits = forecast_visits - capacity_visits: positive
    means more demand than therapist time (hire, add hours, or slow intake), negative means slack. A clinic-week
    with neither forecast visits nor capacity (a closed clinic, `closed_run`) is left out: it has no gap. Only
    clinics with a visit forecast are assessed: a young clinic's comes from `short_history_baseline`, and one
    with fewer than BASELINE_MIN_WEEKS weeks has none, so it is not here (the Demand page says which).

    `therapists`: clinic_id, available_minutes_week, hired_on, terminated_on.
    `visit_minutes`: median minutes per visit, indexed by clinic_id (ALL = practice-wide fallback).
    """
    fut = forecast[
        (forecast["metric"] == "visits")
        & (forecast["series"] != ALL)
        & (forecast["week_start"] > pd.Timestamp(as_of) - pd.Timedelta(days=7))
        & forecast["actual"].isna()
    ]
    cols = ["clinic_id", "week_start", "forecast_visits", "capacity_visits", "gap_visits"]
    if fut.empty:
        return pd.DataFrame(columns=cols)
    grid = fut[["series", "week_start", "yhat"]].rename(columns={"series": "clinic_id", "yhat": "forecast_visits"})
    th = therapists.copy()
    th["hired_on"] = pd.to_datetime(th["hired_on"])
    th["terminated_on"] = pd.to_datetime(th["terminated_on"])
    pairs = grid[["clinic_id", "week_start"]].merge(th, on="clinic_id", how="left")
    employed = (pairs["hired_on"].isna() | (pairs["hired_on"] <= pairs["week_start"])) & (
        pairs["terminated_on"].isna() | (pairs["terminated_on"] > pairs["week_start"])
    )
    pairs["minutes"] = np.where(employed, pairs["available_minutes_week"].fillna(0), 0.0)
    minutes = pairs.groupby(["clinic_id", "week_start"], as_index=False)["minutes"].sum()
    out = grid.merge(minutes, on=["clinic_id", "week_start"], how="left")
    open_share = 1 - holiday_weekdays(out["week_start"]) / 5
    fallback = float(visit_minutes.get(ALL, visit_minutes.median() if len(visit_minutes) else 45.0))
    per_visit = out["clinic_id"].map(visit_minutes).fillna(fallback).clip(lower=5)
    out["capacity_visits"] = out["minutes"].fillna(0) * open_share / per_visit
    out["gap_visits"] = out["forecast_visits"] - out["capacity_visits"]
    out = out[(out["forecast_visits"] > 0) | (out["capacity_visits"] > 0)]  # a closed clinic: nothing to staff
    return out[cols].sort_values(cols[:2]).reset_index(drop=True)
