"""Attribution peers: every attribution model against the generator's true channel effects, in one run.

    .venv/bin/python bench/peers_attribution.py [HOME TRUTH]   # default: bench_ml.medium_home() (seed 7)

`run(home, truth)` is what bench/bench_ml_peers.py calls. For each model, the rank correlation (Spearman) of its
per-channel credit or effect with the true incremental new patients (`true_incremental`: what a budget decision
needs) and with the path effect (`true_effect`), the share of credit it gives the channel whose true incremental
effect is negative, and its fit time. Models: the five dbt heuristics (first, last, linear, time_decay,
position; their "fit" is the mart query), Markov and Shapley (ml/attribution.py) and the marketing-mix model
(ml/mmm.py, with its interval for the negative channel).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import attribution, mmm, warehouse  # noqa: E402
from ml.evaluation import spearman  # noqa: E402

HEURISTICS = ("first", "last", "linear", "time_decay", "position")


def _score(name: str, credit: pd.Series, truth: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Spearman vs both truths and the negative channel's share, for one model's per-channel credit."""
    t = truth.set_index("channel")
    credit = credit.reindex(t.index).fillna(0.0).astype(float)
    negative = t.index[t["true_incremental"] < 0].tolist()
    total = float(credit.sum())
    return {
        "model": name,
        "spearman_incremental": spearman(credit.to_numpy(), t["true_incremental"].to_numpy()),
        "spearman_path_effect": spearman(credit.to_numpy(), t["true_effect"].to_numpy()),
        "negative_channels": negative,
        "negative_channel_share": float(credit[negative].sum() / total) if negative and total else None,
        "credit": {c: round(float(v), 3) for c, v in credit.items()},
        "fit_seconds": round(seconds, 3),
    }


def run(home: Path, truth: Path) -> dict[str, Any]:
    """Every attribution model scored against `truth/channel_effects.csv` on `home`'s analytics.duckdb."""
    home, truth = Path(home), Path(truth)
    db = home / "analytics.duckdb" if home.is_dir() else home
    true = pd.read_csv(truth / "channel_effects.csv" if truth.is_dir() else truth)
    if "true_incremental" not in true:
        raise ValueError(
            f"{truth}: channel_effects.csv has no true_incremental column; regenerate the practice with the "
            "current generator (ptpulse generate) and rebuild"
        )
    con = duckdb.connect(str(db), read_only=True)
    try:
        models = []
        for name in HEURISTICS:  # credit already computed by dbt: the "fit" is the query
            t0 = time.perf_counter()
            df = con.execute(
                "select channel, sum(attributed_conversions) as c from marts.attribution_roi "
                "where model = ? group by all",
                [name],
            ).df()
            models.append(_score(name, df.set_index("channel")["c"], true, time.perf_counter() - t0))
        paths = warehouse.read_paths(con)
        for name, fn in (("markov", attribution.markov_attribution), ("shapley", attribution.shapley_attribution)):
            t0 = time.perf_counter()
            df = fn(paths)
            models.append(
                _score(name, df.set_index("channel")["attributed_conversions"], true, time.perf_counter() - t0)
            )
        t0 = time.perf_counter()
        effects, settings = mmm.incrementality(con)
        seconds = time.perf_counter() - t0
    finally:
        con.close()
    row = _score("mmm", effects.set_index("channel")["effect"], true, seconds)
    eff = effects.set_index("channel")
    row["negative_channel_effect"] = {
        c: {k: round(float(eff.loc[c, k]), 2) for k in ("effect", "lo", "hi")} for c in row["negative_channels"]
    }
    row["negative_channel_share"] = (
        float(eff.loc[row["negative_channels"], "effect"].sum() / eff["effect"].sum())
        if row["negative_channels"]
        else None
    )
    row["settings"] = settings
    models.append(row)
    paths_only = [m for m in models if m["model"] != "mmm"]
    best_path = max(paths_only, key=lambda m: m["spearman_incremental"] or -1)
    return {
        "truth": true.to_dict(orient="records"),
        "models": models,
        "best_path_model": best_path["model"],
        "best_path_spearman": best_path["spearman_incremental"],
        "mmm_spearman": row["spearman_incremental"],
        "mmm_beats_paths": bool((row["spearman_incremental"] or -1) > (best_path["spearman_incremental"] or -1)),
        "negative_channel_negative": all(
            v["hi"] < 0 or v["effect"] < 0 for v in row["negative_channel_effect"].values()
        ),
    }


def main(argv: list[str]) -> None:
    if len(argv) == 2:
        home, truth = Path(argv[0]), Path(argv[1])
    else:
        from bench.bench_ml import medium_home

        settings, truth = medium_home()
        home = settings.home
    out = run(home, truth)
    for m in out["models"]:
        print(
            f"{m['model']:>10}  spearman(incremental) {m['spearman_incremental']!s:>22}  "
            f"negative share {m['negative_channel_share']!s:>22}  {m['fit_seconds']:.2f} s"
        )
    print(json.dumps({k: v for k, v in out.items() if k not in ("models", "truth")}, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
