"""Run every benchmark in dependency order; each writes bench/results/<name>-medium.json.

Benchmarks share one medium practice under bench/.cache (generated once), so the order matters:
generate -> ingest (CSV, then FHIR Bulk) -> build -> ml -> app. They are never part of `make test`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "bench_generate.py",
    "bench_ingest.py",
    "bench_ingest_fhir.py",
    "bench_build.py",
    "bench_ml.py",
    "bench_app.py",
]


def main() -> int:
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            print(f"-- {name}: missing, skipped")
            continue
        print(f"== {name}", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            failed.append(name)
    for result in sorted((HERE / "results").glob("*.json")):
        print(f"{result.name}: {result.read_text().strip()[:400]}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
