"""Benchmark: the practice as a FHIR Bulk Data `$export` folder, ingested, against the native CSV ingest.

    .venv/bin/python bench/bench_ingest_fhir.py [--scale medium] [--seed 7] [--repeat 1]

Uses the cached practice of bench_ingest.py (bench/.cache/<scale>, generated on first use) and writes it once
as a Bulk export (seed_data/formats/fhir_bulk.py, into bench/.cache/<scale>-fhir-bulk; write time reported,
not compared), then in the same run:
- native_s: `ingestion.loader.ingest` of the native CSVs into a fresh raw.duckdb;
- fhir_s: `ingest` of the Bulk folder into another fresh raw.duckdb (Patient, ServiceRequest, Appointment,
  Encounter, Claim and ExplanationOfBenefit mapped in SQL by ingestion/interop/fhir_fast.py, Coverage /
  EpisodeOfCare / PractitionerRole counted in one scan, the small reference files per resource).
Writes bench/results/ingest-fhir-<scale>.json with resources, rows, both times and ratio = fhir_s / native_s
(target <= 2), the CPU seconds of both (all threads; cpu_ratio: the same judged on CPU, steadier on a busy
machine) and the 1-minute load average at start and end (the machine is shared).
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
sys.path.insert(0, str(HERE))

import duckdb  # noqa: E402
from bench_ingest import practice, warm  # noqa: E402

from ingestion.files import discover  # noqa: E402
from ingestion.loader import ingest  # noqa: E402
from ptpulse.core.config import get_settings  # noqa: E402

TARGET_RATIO = 2.0


def bulk_export(native: Path, scale: str) -> tuple[Path, dict, float]:
    """The Bulk export of the cached practice, written on first use (seconds is 0 when reused)."""
    from seed_data.formats.fhir_bulk import write

    out = HERE / ".cache" / f"{scale}-fhir-bulk"
    stamp = out / ".written"
    if stamp.exists():
        return out, json.loads(stamp.read_text()), 0.0
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    files = write(native, out)
    seconds = time.perf_counter() - started
    stamp.write_text(json.dumps(files))
    return out, files, seconds


def time_ingest(folder: Path, home: Path) -> tuple[float, float, list]:
    """Wall and CPU seconds (all threads of this process: DuckDB's too) of one ingest into a fresh home."""
    shutil.rmtree(home, ignore_errors=True)
    settings = get_settings(home)
    started, cpu = time.perf_counter(), time.process_time()
    results = ingest([folder], settings)
    return time.perf_counter() - started, time.process_time() - cpu, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    native, manifest = practice(args.scale, args.seed)
    bulk, resources, write_s = bulk_export(native, args.scale)
    warm(discover([native]) + sorted(p for p in bulk.iterdir() if p.is_file() and not p.name.startswith(".")))
    natives, fhirs, native_cpu, fhir_cpu, native_results, fhir_results = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(dir=HERE / ".cache", prefix="bench-ingest-fhir-") as tmp:
        work = Path(tmp)
        for _ in range(args.repeat):  # back to back, so both see the same load of the (shared) machine
            seconds, cpu, native_results = time_ingest(native, work / "native")
            natives.append(seconds)
            native_cpu.append(cpu)
            seconds, cpu, fhir_results = time_ingest(bulk, work / "fhir")
            fhirs.append(seconds)
            fhir_cpu.append(cpu)
    bad = [r for r in fhir_results if r.status not in ("loaded", "skipped_not_data")]
    if bad:
        print(f"warning: {len(bad)} FHIR load(s) not loaded: " + "; ".join(f"{r.file}: {r.status}" for r in bad))
    native_s, fhir_s = min(natives), min(fhirs)
    by_source: dict[str, dict[str, int]] = {}
    for r in fhir_results:
        if r.source:
            row = by_source.setdefault(r.source, {"read": 0, "landed": 0, "quarantined": 0, "duplicate": 0})
            row["read"] += r.rows_read
            row["landed"] += r.rows_landed
            row["quarantined"] += r.rows_quarantined
            row["duplicate"] += r.rows_duplicate
    report = {
        "scale": args.scale,
        "seed": manifest.get("seed", args.seed),
        "resources": {k: v for k, v in resources.items() if k.endswith(".ndjson")},
        "bulk_bytes": sum(p.stat().st_size for p in bulk.iterdir() if p.is_file()),
        "bulk_write_s": round(write_s, 3) if write_s else None,
        "fhir_rows": sum(r.rows_read for r in fhir_results),
        "fhir_rows_by_source": by_source,
        "native_rows": sum(r.rows_read for r in native_results),
        "native_s": round(native_s, 3),
        "fhir_s": round(fhir_s, 3),
        "ratio": round(fhir_s / native_s, 3),
        "target_ratio": TARGET_RATIO,
        "native_cpu_s": round(min(native_cpu), 3),
        "fhir_cpu_s": round(min(fhir_cpu), 3),
        "cpu_ratio": round(min(fhir_cpu) / min(native_cpu), 3),
        "repeat": args.repeat,
        "all_native_s": [round(s, 3) for s in natives],
        "all_fhir_s": [round(s, 3) for s in fhirs],
        "all_native_cpu_s": [round(s, 3) for s in native_cpu],
        "all_fhir_cpu_s": [round(s, 3) for s in fhir_cpu],
        "load_avg_1m_start": round(load_start, 2),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "duckdb": duckdb.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    results_dir = HERE / "results"
    results_dir.mkdir(exist_ok=True)
    target = results_dir / f"ingest-fhir-{args.scale}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["ratio"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
