"""Benchmark: every PT Pulse model against what a practitioner would pick instead, in ONE run (issue 12 item 4).

    make bench-peers            # installs the optional extra `peers` (lightgbm, statsforecast), then runs this
    .venv/bin/python bench/bench_ml_peers.py

On the medium practice of bench/bench_ml.py (`medium_home()`: seed 7, its truth/ beside it) it runs
bench/peers_noshow.py (recipe vs LightGBM default vs logistic, oracle), bench/peers_demand.py (product vs
seasonal naive, AutoETS/AutoTheta, ARIMAX on the same origins) and bench/peers_attribution.py (every model vs
the true channel effects), and writes bench/results/ml-peers-medium.json with the issue's targets checked:

- no-show: recipe ROC AUC >= LightGBM's on the same test rows, recipe fit CPU seconds <= 2x LightGBM's (same
  thread count; CPU rather than wall seconds because the bench machine is shared), calibration slope 0.9-1.1;
- demand: the product's pooled relative MASE <= 0.85 and 80% coverage 0.75-0.85;
- attribution: Spearman >= 0.9 with the true incremental effects for the recommended model, and the channel
  whose true effect is negative comes out negative.

A part that fails (e.g. the extra is not installed) is recorded with its error and its checks fail; the other
parts still run. Not part of `make bench`, which must not need the extra.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_ml import RESULTS, medium_home  # noqa: E402

RECOMMENDED_ATTRIBUTION = "mmm"  # the page recommends the incremental model for budget decisions


def _part(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one peer comparison; on failure record the error (type and message, no data) instead of stopping."""
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        out = fn()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - one broken part must not lose the others' figures
        traceback.print_exc()
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _between(v: Any, lo: float, hi: float) -> bool:
    return v is not None and lo <= v <= hi


def checks(noshow: dict[str, Any], demand: dict[str, Any], attribution: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, each True/False (a missing figure fails)."""
    rec_auc, lgb_auc = _get(noshow, "models", "recipe", "roc_auc"), _get(noshow, "models", "lightgbm", "roc_auc")
    rec_cpu, lgb_cpu = _get(noshow, "models", "recipe", "fit_cpu_s"), _get(noshow, "models", "lightgbm", "fit_cpu_s")
    product = _get(demand, "models", "product", "pooled") or {}
    recommended = next(
        (m for m in attribution.get("models", []) if m.get("model") == RECOMMENDED_ATTRIBUTION),
        {},
    )
    spearman = recommended.get("spearman_incremental")
    return {
        "no-show: recipe roc_auc >= lightgbm": rec_auc is not None and lgb_auc is not None and rec_auc >= lgb_auc,
        "no-show: recipe fit cpu <= 2x lightgbm": rec_cpu is not None
        and lgb_cpu is not None
        and rec_cpu <= 2 * lgb_cpu,
        "no-show: recipe calibration_slope in 0.9-1.1": _between(
            _get(noshow, "models", "recipe", "calibration_slope"), 0.9, 1.1
        ),
        "demand: product relative_mase <= 0.85": product.get("relative_mase") is not None
        and product["relative_mase"] <= 0.85,
        "demand: product coverage_80 in 0.75-0.85": _between(product.get("coverage_80"), 0.75, 0.85),
        f"attribution: {RECOMMENDED_ATTRIBUTION} spearman >= 0.9": spearman is not None and spearman >= 0.9,
        "attribution: negative channel negative": bool(attribution.get("negative_channel_negative")),
    }


def main() -> int:
    from bench import peers_attribution, peers_demand, peers_noshow

    settings, truth = medium_home()
    home = settings.home
    started = time.perf_counter()
    noshow = _part("no-show", lambda: peers_noshow.run(home, truth))
    demand = _part("demand", lambda: peers_demand.run(home))
    attribution = _part("attribution", lambda: peers_attribution.run(home, truth))
    result_checks = checks(noshow, demand, attribution)
    result = {
        "scale": "medium",
        "seconds": round(time.perf_counter() - started, 2),
        "checks": result_checks,
        "all_passed": all(result_checks.values()),
        "no_show": noshow,
        "demand": demand,
        "attribution": attribution,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "ml_threads": os.environ.get("PTPULSE_ML_THREADS", "1"),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ml-peers-medium.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result_checks, indent=2))
    print(f"wrote {out}")
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
