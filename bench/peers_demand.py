"""Demand peers: the product forecaster against what a practitioner would pick instead, on the SAME origins.

    .venv/bin/python bench/peers_demand.py [HOME]    # HOME holds a built analytics.duckdb

`run(home)` backtests, on the whole-practice series (the headline) and with the product's own harness
(`ml.demand.backtest`: 13 evaluated origins every 4 weeks over the last year, 12-week horizon, 8 earlier
origins that only calibrate the 80% bands), each of:

- `product`: `ml.demand.demand_forecast` (Prophet + calendar ARX + level-adjusted seasonal naive, equal weights);
- `prophet`: Prophet alone with the same regressors (the product before the ensemble);
- `seasonal_naive`: same week last year (the denominator of every relative MASE);
- `autoets`, `autotheta`: statsforecast's AutoETS / AutoTheta, season length 52;
- `arimax`: statsmodels SARIMAX(1,0,1) with the product's regressors (calendar-month shares, US holiday weekdays).

Every model's band goes through the same conformal calibration, so coverage compares like with like. Figures
per metric and pooled; `best_peer` is the peer (not product, not prophet) with the lowest pooled relative MASE.
Peers need the optional extra `peers` (pyproject.toml); they live here only, never in ml/ or app/.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import demand, warehouse  # noqa: E402

Z80 = 1.2816  # the standard normal's 90% quantile: half-width of a central 80% band in sds
PEERS = ("seasonal_naive", "autoets", "autotheta", "arimax")


def _frame(future: pd.DatetimeIndex, mean: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> pd.DataFrame:
    mean = np.clip(np.asarray(mean, float), 0, None)
    return pd.DataFrame(
        {
            "week_start": pd.DatetimeIndex(future),
            "yhat": mean,
            "yhat_lower": np.clip(np.minimum(np.asarray(lower, float), mean), 0, None),
            "yhat_upper": np.maximum(np.asarray(upper, float), mean),
        }
    )


def naive_forecaster(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: demand.DemandSettings) -> pd.DataFrame:
    """Seasonal naive with a normal band from the spread of year-on-year differences (calibrated later anyway)."""
    mean = demand.seasonal_naive(history, future)
    y = history["y"].to_numpy(float)
    diffs = y[demand.SEASON :] - y[: -demand.SEASON] if len(y) > demand.SEASON + 1 else np.diff(y)
    half = Z80 * (float(np.std(diffs)) if len(diffs) > 1 else 1.0)
    return _frame(future, mean, mean - half, mean + half)


def _statsforecast(model_name: str) -> demand.Forecaster:
    def forecaster(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: demand.DemandSettings) -> pd.DataFrame:
        from statsforecast.models import AutoETS, AutoTheta

        model = {"autoets": AutoETS, "autotheta": AutoTheta}[model_name](season_length=demand.SEASON)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model.forecast(y=history["y"].to_numpy(float), h=len(future), level=[80])
        return _frame(future, out["mean"], out["lo-80"], out["hi-80"])

    return forecaster


def arimax_forecaster(history: pd.DataFrame, future: pd.DatetimeIndex, cfg: demand.DemandSettings) -> pd.DataFrame:
    """SARIMAX(1,0,1) with the product's regressors; month shares sum to 1 per week, so no separate constant."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    def exog(weeks: pd.DatetimeIndex) -> np.ndarray:
        return np.column_stack([demand.month_shares(weeks), demand.holiday_weekdays(weeks)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = SARIMAX(
            history["y"].to_numpy(float), exog=exog(pd.DatetimeIndex(history["week_start"])), order=(1, 0, 1)
        ).fit(disp=False)
        pred = fit.get_forecast(len(future), exog=exog(pd.DatetimeIndex(future)))
    band = np.asarray(pred.conf_int(alpha=0.2))
    return _frame(future, pred.predicted_mean, band[:, 0], band[:, 1])


def models() -> dict[str, demand.Forecaster]:
    return {
        "product": demand.demand_forecast,
        "prophet": demand.prophet_forecast,
        "seasonal_naive": naive_forecaster,
        "autoets": _statsforecast("autoets"),
        "autotheta": _statsforecast("autotheta"),
        "arimax": arimax_forecaster,
    }


def figures(points: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Any]:
    """Relative MASE (vs seasonal naive on the same weeks and scale) and coverage, per metric and pooled."""
    keys = ("relative_mase", "mase", "baseline_mase", "coverage_80", "coverage_80_raw", "smape")
    out: dict[str, Any] = {}
    for metric in demand.METRICS:
        s, p = summary[summary["metric"] == metric], points[points["metric"] == metric]
        out[metric] = {k: demand.summarise(s, p)[k] for k in keys}
    out["pooled"] = {k: demand.summarise(summary, points)[k] for k in keys}
    return out


def run(home: Path, series_names: list[str] | None = None) -> dict[str, Any]:
    """Backtest the product and every peer on the same origins of `home`'s analytics file; figures and fit times."""
    import duckdb

    con = duckdb.connect(str(Path(home) / "analytics.duckdb"), read_only=True)
    try:
        series = demand.weekly_series(warehouse.read_weekly_demand(con), warehouse.as_of(con))
    finally:
        con.close()
    cfg = demand.DemandSettings()
    names = series_names or [demand.ALL]
    results: dict[str, Any] = {}
    origins: list[str] = []
    for name, forecaster in models().items():
        started = time.perf_counter()
        points, summary = demand.backtest(series, cfg, forecaster=forecaster, select=names)
        results[name] = {**figures(points, summary), "fit_s": round(time.perf_counter() - started, 2)}
        print(f"{name}: pooled relative MASE {results[name]['pooled']['relative_mase']}", file=sys.stderr, flush=True)
        origins = sorted(summary["cutoff"].unique().tolist())
    pooled = {name: results[name]["pooled"]["relative_mase"] for name in PEERS}
    best = min(pooled, key=lambda k: pooled[k] if pooled[k] is not None else np.inf)
    product = results["product"]
    return {
        "series": names,
        "origins": origins,
        "horizon_weeks": cfg.horizon_weeks,
        "method": demand.backtest_method(cfg),
        "models": results,
        "best_peer": best,
        "product_beats_best_peer": bool(
            product["pooled"]["relative_mase"] is not None
            and pooled[best] is not None
            and product["pooled"]["relative_mase"] < pooled[best]
        ),
        "product_beats_naive_per_metric": {
            m: bool(product[m]["relative_mase"] is not None and product[m]["relative_mase"] < 1) for m in demand.METRICS
        },
    }


if __name__ == "__main__":
    home = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / ".cache" / "ml_medium_home"
    print(json.dumps(run(home), indent=2, default=str))
