"""Does a model have enough data to be trained honestly? Checked before any fitting, from counts alone.

Why: a practice that sends only some exports (billing without scheduling, two weeks of a new EMR) must
still get its build. Fitting on three appointments used to crash inside scikit-learn and fail the whole
refresh after dbt. Each check here returns None (enough) or a plain sentence saying what is there and what
the model needs; the caller then writes the model card with `status: not_trained` and that reason, and the
model's `ml` tables empty with their normal columns. Unexpected errors are not caught anywhere: a real bug
still fails the build.

The minimums (ml/README.md "Minimum data per model" repeats them):
- classifiers (no-show, lead, denial): MIN_ROWS labelled rows, and at least MIN_PER_CLASS of each outcome
  in every time slice the recipe uses: the booster's fit slice, its calibration slice (the last 25% of the
  training period; Platt scaling runs five stratified folds there), the test period (last 20%), and the
  final fit's calibration slice (the last 25% of all rows);
- demand forecast: FORECAST_MIN_WEEKS complete weeks in a series; backtest: a year (52 weeks) of training
  history plus the horizon (12 weeks) in the practice series;
- staffing gap: a clinic-level visit forecast and a therapist roster with available minutes;
- attribution: ATTRIBUTION_MIN_CONVERSIONS converting journeys over at least ATTRIBUTION_MIN_CHANNELS
  marketing channels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ml import tabular
from ml.attribution import SEPARATOR

TRAINED = "trained"
NOT_TRAINED = "not_trained"

MIN_ROWS = 200  # labelled rows: below this a test period of 20% has too few outcomes to measure anything
MIN_PER_CLASS = 10  # each outcome per time slice: 5 stratified calibration folds need 2 per fold at least
CAL_SHARE = 0.25  # the recipes' calibration slice (ml/no_show.py, ml/lead.py, ml/denial.py CAL_SHARE)
TEST_SHARE = 0.2
FORECAST_MIN_WEEKS = 8  # ml/demand.py MIN_WEEKS: the practice needs one series this long to forecast at all;
# beside it, a clinic's shorter series (from ml/demand.py BASELINE_MIN_WEEKS) gets the flat young-clinic baseline
ATTRIBUTION_MIN_CONVERSIONS = 10
ATTRIBUTION_MIN_CHANNELS = 2


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s" if not word.endswith("s") else f"{n:,} {word}"


def slices(order: np.ndarray, train: np.ndarray, cal_share: float = CAL_SHARE) -> dict[str, np.ndarray]:
    """Boolean masks of the time slices a calibrated recipe fits on, in the order they are used.

    `order` is each row's time (as integers), `train` the evaluation's training rows (before the split).
    """
    n = len(order)
    train_idx = np.flatnonzero(train)
    fit_rel, cal_rel = tabular.fit_rows(order[train_idx], cal_share)
    _, final_cal = tabular.fit_rows(order, cal_share)
    out = {name: np.zeros(n, dtype=bool) for name in ("fit", "calibration", "test", "final calibration")}
    out["fit"][train_idx[fit_rel]] = True
    out["calibration"][train_idx[cal_rel]] = True
    out["test"] = ~np.asarray(train, dtype=bool)
    out["final calibration"][final_cal] = True
    return out


def binary(
    y: np.ndarray,
    times: pd.Series,
    split: Callable[[pd.Series], pd.Timestamp],
    *,
    rows: str,
    positive: str,
    negative: str,
    train_times: pd.Series | None = None,
    min_rows: int = MIN_ROWS,
    min_per_class: int = MIN_PER_CLASS,
) -> str | None:
    """None when a calibrated classifier can be fitted and tested on (y, times), else the reason it cannot.

    `split` is the model's own `time_split` (called only once there are rows); `train_times` (default
    `times`) is what the split date is compared with (lead scoring splits by receipt, orders by snapshot time).
    `rows`, `positive`, `negative` are plural nouns for the reason ("past appointments with an outcome",
    "no-shows", "attended").
    """
    y = np.asarray(y, dtype=int)
    n, pos = int(len(y)), int(y.sum())
    neg = n - pos
    need = (
        f"needs at least {min_rows:,} with at least {min_per_class} {negative} and {min_per_class} {positive} "
        "in each time slice the model is fitted, calibrated and tested on"
    )
    have = f"{n:,} {rows} ({pos:,} {positive}, {neg:,} {negative})"
    if n < min_rows or pos < min_per_class or neg < min_per_class:
        return f"not trained: {have}; {need}"
    times = pd.to_datetime(times).reset_index(drop=True)
    against = times if train_times is None else pd.to_datetime(train_times).reset_index(drop=True)
    cut = split(against)
    train = (against < cut).to_numpy()
    for name, mask in slices(times.astype("int64").to_numpy(), train).items():
        k_pos = int(y[mask].sum())
        k_neg = int(mask.sum()) - k_pos
        if k_pos < min_per_class or k_neg < min_per_class:
            return (
                f"not trained: {have}, but the {name} slice (split at {cut.date().isoformat()}) holds "
                f"{k_pos:,} {positive} and {k_neg:,} {negative}; {need}"
            )
    return None


def as_of_missing(as_of: pd.Timestamp | None) -> str | None:
    """A build without any dated event has no 'now' to score or split at."""
    if as_of is None or pd.isna(as_of):
        return "not trained: the build has no as_of date (no dated events were loaded)"
    return None


def forecast(series: pd.DataFrame, min_weeks: int = FORECAST_MIN_WEEKS) -> str | None:
    """None when at least one weekly series is long enough to forecast."""
    longest = int(series.groupby(["series", "metric"]).size().max()) if len(series) else 0
    if longest >= min_weeks:
        return None
    return (
        f"not forecast: the longest weekly series (referrals, evaluations or attended visits) has "
        f"{_plural(longest, 'complete week')} after its ramp-up; needs at least {min_weeks}"
    )


def backtest(series: pd.DataFrame, season: int, horizon: int) -> str | None:
    """None when the practice series has a year of training history plus one horizon to test."""
    practice = series[series["series"] == "ALL"] if len(series) else series
    longest = int(practice.groupby("metric").size().max()) if len(practice) else 0
    if longest >= season + horizon:
        return None
    return (
        f"not backtested: {_plural(longest, 'complete week')} of practice history; needs at least "
        f"{season + horizon} ({season} to learn the season, {horizon} to test a forecast against)"
    )


def staffing(forecast_rows: pd.DataFrame, therapists: pd.DataFrame) -> str | None:
    """None when some clinic has both a future visit forecast and therapists with available minutes."""
    fut = forecast_rows[
        (forecast_rows["metric"] == "visits") & (forecast_rows["series"] != "ALL") & forecast_rows["actual"].isna()
    ]
    if fut.empty:
        return (
            "not computed: no clinic has a visit forecast (a clinic needs 3 complete weeks of visits, and the "
            f"practice one series of {FORECAST_MIN_WEEKS})"
        )
    minutes = pd.to_numeric(therapists["available_minutes_week"], errors="coerce")
    staffed = set(therapists.loc[minutes.fillna(0) > 0, "clinic_id"].dropna())
    if not staffed & set(fut["series"]):
        return (
            "not computed: no therapist roster with available minutes per week for the forecast clinics "
            "(load the therapists export)"
        )
    return None


def attribution(paths: pd.DataFrame) -> str | None:
    """None when there are enough converting journeys over enough channels to share credit between."""
    if paths is None or len(paths) == 0:
        return (
            "not computed: no marketing journeys (load marketing touches and intake events); needs at least "
            f"{ATTRIBUTION_MIN_CONVERSIONS} converting journeys over {ATTRIBUTION_MIN_CHANNELS} channels"
        )
    conv = int(round(float(pd.to_numeric(paths["conversions"], errors="coerce").fillna(0).sum())))
    steps = paths["path"].fillna("").astype(str).str.split(SEPARATOR).explode().str.strip()
    channels = set(steps[steps != ""])
    if conv >= ATTRIBUTION_MIN_CONVERSIONS and len(channels) >= ATTRIBUTION_MIN_CHANNELS:
        return None
    return (
        f"not computed: {_plural(conv, 'converting journey')} over {_plural(len(channels), 'channel')}; needs "
        f"at least {ATTRIBUTION_MIN_CONVERSIONS} converting journeys over {ATTRIBUTION_MIN_CHANNELS} channels"
    )
