"""The Attribution page cites backtest figures (app/lib/queries/attribution.BACKTEST); they must be the ones the
committed peers bench measured (bench/results/ml-peers-medium.json), so the page never quotes a stale number."""

import json
from pathlib import Path

from app.lib.queries.attribution import BACKTEST

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "ml-peers-medium.json"


def test_the_page_cites_the_committed_peers_bench():
    attribution = json.loads(RESULTS.read_text())["attribution"]
    models = {m["model"]: m for m in attribution["models"]}
    paths = [m for name, m in models.items() if name != "mmm"]

    assert round(models["mmm"]["spearman_incremental"], 2) == BACKTEST["spearman_mmm"]
    assert round(max(m["spearman_incremental"] for m in paths), 2) == BACKTEST["spearman_best_path"]
    shares = [m["negative_channel_share"] for m in paths]
    assert (round(min(shares), 2), round(max(shares), 2)) == BACKTEST["negative_channel_share_paths"]
    assert models["mmm"]["negative_channel_share"] < 0  # the recommended model sees the channel that costs patients
