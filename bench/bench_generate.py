"""Benchmark: generate the medium practice (25 clinics x 3 years, ~650k appointments) into bench/.cache.

Writes bench/results/generate-medium.json (seconds, peak memory, row counts). Budget: <= 60 s on 2 cores.
The practice it leaves in bench/.cache/medium is what the ingest/build benchmarks read.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from seed_data.generator import generate  # noqa: E402

BUDGET_S = 60.0
SEED = 7  # every medium benchmark uses seed 7, so generated files, raw, analytics and truth agree


def main() -> int:
    out = HERE / ".cache" / "medium"
    # a new practice invalidates everything built from the old one
    for stale in (out, HERE / ".cache" / "medium_home"):
        if stale.exists():
            shutil.rmtree(stale)
    t0 = time.perf_counter()
    summary = generate(out, scale="medium", seed=SEED)
    seconds = time.perf_counter() - t0
    rows = summary["rows"]
    appointments = rows["truth/appointment_truth.csv"]
    result = {
        "benchmark": "generate",
        "scale": "medium",
        "seconds": round(seconds, 2),
        "budget_seconds": BUDGET_S,
        "within_budget": seconds <= BUDGET_S,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "resolved_appointments": appointments,
        "rows": rows,
        "total_rows": sum(v for k, v in rows.items() if not k.startswith("truth/")),
        "bytes": sum(p.stat().st_size for p in out.rglob("*.csv")),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "generate-medium.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
