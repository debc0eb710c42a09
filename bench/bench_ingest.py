"""Benchmark: ingestion against a floor of DuckDB's own typed CSV load of the same files.

    .venv/bin/python bench/bench_ingest.py [--scale medium] [--seed 7] [--repeat 1]

Generates the practice once into bench/.cache/<scale> (seed_data.generator), then in the same run:
- floor_s: `CREATE TABLE ... AS SELECT * FROM read_csv(file, ignore_errors = true)` per file (typed,
  auto-detected, no validation) into a fresh DuckDB file;
- ingest_s: `ingestion.loader.ingest` of the same files into a fresh raw.duckdb (validation, quarantine,
  duplicate detection, audit, one transaction per file).
Writes bench/results/ingest-<scale>.json with rows, ingest_s, floor_s and ratio (target <= 2.5).
With --repeat N each side is timed N times and the best time of each is kept (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import duckdb  # noqa: E402

from ingestion.files import discover  # noqa: E402
from ingestion.loader import ingest  # noqa: E402
from ptpulse.core.config import get_settings  # noqa: E402

TARGET_RATIO = 2.5


def practice(scale: str, seed: int) -> tuple[Path, dict]:
    """The cached practice for this scale and its manifest, generated on first use (not measured).

    bench_generate.py may have left one there already (run_all.py runs it first); it is reused as is,
    and the seed reported is the one in its manifest.
    """
    out = HERE / ".cache" / scale
    manifest = out / "truth" / "manifest.json"
    if not manifest.exists():
        from seed_data.generator import generate

        print(f"generating {scale} practice (seed {seed}) into {out} ...", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        generate(out, scale=scale, seed=seed)
    return out, json.loads(manifest.read_text())


def warm(files: list[Path]) -> None:
    """Read every file once so neither side pays for a cold page cache."""
    for path in files:
        with path.open("rb") as handle:
            while handle.read(8 << 20):
                pass


def time_floor(files: list[Path], work: Path) -> float:
    db = work / "floor.duckdb"
    db.unlink(missing_ok=True)
    started = time.perf_counter()
    con = duckdb.connect(str(db))
    for i, path in enumerate(files):
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM read_csv(?, ignore_errors = true)", [str(path)])
    con.close()
    return time.perf_counter() - started


def time_ingest(folder: Path, work: Path) -> tuple[float, list]:
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    settings = get_settings(home)
    started = time.perf_counter()
    results = ingest([folder], settings)
    return time.perf_counter() - started, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    folder, manifest = practice(args.scale, args.seed)
    files = discover([folder])
    warm(files)
    (HERE / ".cache").mkdir(exist_ok=True)
    floors, ingests, results = [], [], []
    with tempfile.TemporaryDirectory(dir=HERE / ".cache", prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        for _ in range(args.repeat):
            floors.append(time_floor(files, work))
            seconds, results = time_ingest(folder, work)
            ingests.append(seconds)
    bad = [r for r in results if r.status != "loaded"]
    if bad:
        print(f"warning: {len(bad)} file(s) not loaded: " + "; ".join(f"{r.file}: {r.message}" for r in bad))
    floor_s, ingest_s = min(floors), min(ingests)
    report = {
        "scale": args.scale,
        "seed": manifest.get("seed", args.seed),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "rows": sum(r.rows_read for r in results),
        "rows_landed": sum(r.rows_landed for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "rows_duplicate": sum(r.rows_duplicate for r in results),
        "ingest_s": round(ingest_s, 3),
        "floor_s": round(floor_s, 3),
        "ratio": round(ingest_s / floor_s, 3),
        "target_ratio": TARGET_RATIO,
        "repeat": args.repeat,
        "all_ingest_s": [round(s, 3) for s in ingests],
        "all_floor_s": [round(s, 3) for s in floors],
        "duckdb": duckdb.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    target = results_dir / f"ingest-{args.scale}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
