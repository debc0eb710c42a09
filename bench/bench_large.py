"""Benchmark: the whole pipeline at chain scale (issue 15), each step in its own process.

    .venv/bin/python bench/bench_large.py [--clinics 900] [--seed 42] [--work DIR] [--skip-pages] [--no-night] [--resume]
        [--keep-night-base] [--rerun-night] [--skip-floors] [--skip-ml] [--out NAME]

Steps, in order, each a subprocess measured with os.wait4 (wall s, CPU s = user + system of the process and
its children, peak RSS of the largest process):
- generate: the synthetic chain (`--clinics` x 3 years, 5 clinics per chunk, as `--scale large`) into
  <work>/data; reused when its manifest has the same clinics and seed (its first measurement is kept);
- floor_read_csv: DuckDB's own `read_csv` of the same files into a fresh DuckDB file (defaults, no
  validation): the floor ingest is compared with;
- ingest: `ptpulse ingest` into a fresh home (under $PTPULSE_MEMORY_LIMIT, default 4GB);
- build: `ptpulse build --full-refresh --no-score` (dbt build with every test, the de-identified twin, swap);
- floor_build: the compiled SQL of the same models in one DuckDB connection (as bench/bench_build.py);
- train: `ptpulse train` (no-show, demand, attribution, lead, denial);
- score: ML scoring into a copy of the served file (what the build's before-swap hook does);
- pages: every app page cold and warm (as bench/bench_app.py) against the served file;
- night_before: `ptpulse build` with no new loads (incremental, with scoring), so the served file is what the
  previous night's scheduler leaves: the scores and the demand forecast the night reuses where nothing changed
  (skipped with --skip-ml; not counted in the full rebuild);
- nightly: the nightly delta refresh: `ptpulse ingest` of one new day of exports, then `ptpulse build`
  (incremental, with scoring), as the scheduler runs it. The day is the last day of the generated chain: after
  generation its rows are cut out of the five event exports (scheduling, documentation, charges, claims,
  remittances, by each contract's event time) into <work>/night/, so every earlier step sees the chain up to the
  day before and the night lands what is new.
Writes bench/results/large.json (900 clinics) or large-<clinics>.json. Never part of `make test`/`make bench`.
Each result is also kept in <work>/logs/steps.json; `--resume` keeps the successful ones and runs the rest.
`--keep-night-base` copies the home to <work>/home_before_night before the night lands (as much disk again);
`--rerun-night` puts that copy back and measures only the night again, keeping every other step.
`--skip-floors` / `--skip-ml` / `--skip-pages` leave those steps out (e.g. to measure a changed build and its
night on a kept chain); `--out NAME` names the results file (default large.json / large-<clinics>.json).

Checks recorded (issue 15): no step above 8 GiB peak RSS; a full rebuild (build + score) <= 60 min; pages
cold <= 3 s and warm <= 1 s; the nightly delta (ingest + incremental build) <= 5 min and incremental.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from ptpulse.core.contracts import load_contracts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PTPULSE = Path(sys.executable).with_name("ptpulse")
GIB = 1 << 30
PEAK_RSS_TARGET = 8 * GIB
FULL_REBUILD_TARGET_S = 3600
COLD_TARGET_S, WARM_TARGET_S = 3.0, 1.0
NIGHTLY_TARGET_S = 300
# the event exports whose last day becomes the night's delta, with their contract's event time (the incremental
# staging models' sources; tests/night_helpers.py cuts the same way)
NIGHT_FACTS = {
    source: load_contracts()[source].event_time
    for source in ("scheduling_events", "documentation_events", "charges", "claims", "remittances")
}


# --- the parent: run and measure each step ---------------------------------------------------------------------


def measure(name: str, cmd: list[str], logs: Path, env: dict[str, str] | None = None) -> dict:
    """Run `cmd` to completion; wall and CPU seconds and peak RSS of that process tree (os.wait4 reports the
    largest RSS among the process and the descendants it waited for). Every result so far is also kept in
    <logs>/steps.json: a run of hours that dies late still leaves its measurements."""
    logs.mkdir(parents=True, exist_ok=True)
    print(f"== {name}: {' '.join(cmd[:4])} ...", flush=True)
    with (logs / f"{name}.log").open("w") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "ok": proc.returncode == 0,
    }
    print(f"   {name}: {result}", flush=True)
    if proc.returncode != 0:
        result["log"] = str(logs / f"{name}.log")
    done = logs / "steps.json"
    steps = json.loads(done.read_text()) if done.exists() else {}
    done.write_text(json.dumps({**steps, name: result}, indent=2) + "\n")
    return result


def step_cmd(step: str, *args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), f"_{step}", *map(str, args)]


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work).resolve()
    data, home, logs = work / "data", work / "home", work / "logs"
    done = logs / "steps.json"
    earlier = json.loads(done.read_text()) if args.resume and done.exists() else {}
    if not args.resume:
        done.unlink(missing_ok=True)
    steps: dict[str, dict] = {}

    def step(name: str, cmd: list[str]) -> dict:
        """Measure a step, or with --resume keep its earlier successful measurement (its output is in place)."""
        if earlier.get(name, {}).get("ok"):
            print(f"== {name}: kept from the earlier run {earlier[name]}", flush=True)
            return {**earlier[name], "resumed": True}
        return measure(name, cmd, logs)

    generated = data / "truth" / "bench_generate.json"
    manifest = data / "truth" / "manifest.json"
    if manifest.exists() and generated.exists():
        known = json.loads(manifest.read_text())
        if known.get("clinics") == args.clinics and known.get("seed") == args.seed:
            steps["generate"] = {**json.loads(generated.read_text()), "reused": True}
    if "generate" not in steps and args.resume and earlier.get("ingest", {}).get("ok") and args.no_night:
        # the exports were deleted after a successful ingest (at 900 clinics the disk is needed for the build's
        # spill): the landed home is what the remaining steps read
        steps["generate"] = {**earlier["generate"], "resumed": True}
    if "generate" not in steps:
        shutil.rmtree(data, ignore_errors=True)
        gz = "gzip" if args.gzip else "plain"
        steps["generate"] = measure("generate", step_cmd("generate", args.clinics, args.seed, data, gz), logs)
        generated.write_text(json.dumps(steps["generate"]) + "\n")
    night = work / "night"
    if not args.no_night and not night.with_suffix(".json").exists():  # a fresh cut: nothing earlier saw this base
        earlier.clear()
        steps["split_night"] = measure("split_night", step_cmd("split_night", data, night), logs)
    sizes = {p.name: p.stat().st_size for p in sorted(data.glob("*.csv*"))}  # .csv, or .csv.gz (--gzip)
    sizes_json = work / "csv_sizes.json"
    if sizes:
        sizes_json.write_text(json.dumps(sizes, indent=2) + "\n")
    elif sizes_json.exists():  # exports deleted after the ingest (above)
        sizes = json.loads(sizes_json.read_text())

    if not args.skip_floors:
        floor_db = work / "floor_read_csv.duckdb"
        steps["floor_read_csv"] = step("floor_read_csv", step_cmd("floor_read_csv", data, floor_db))
        floor_db.unlink(missing_ok=True)

    if not earlier.get("ingest", {}).get("ok"):
        shutil.rmtree(home, ignore_errors=True)
    steps["ingest"] = step("ingest", [str(PTPULSE), "ingest", "--home", str(home), str(data)])
    steps["build"] = step("build", [str(PTPULSE), "build", "--home", str(home), "--no-score", "--full-refresh"])
    if not args.skip_floors:
        steps["floor_build"] = step("floor_build", step_cmd("floor_build", home, work / "floor_build"))
        shutil.rmtree(work / "floor_build", ignore_errors=True)
    if not args.skip_ml:
        steps["train"] = step("train", [str(PTPULSE), "train", "--home", str(home)])
        scored = work / "score" / "analytics.duckdb"
        shutil.rmtree(scored.parent, ignore_errors=True)
        scored.parent.mkdir(parents=True)
        resumed = earlier.get("score", {}).get("ok")
        if (home / "analytics.duckdb").exists() and not resumed:  # the build's hook scores the new file: a copy
            shutil.copy2(home / "analytics.duckdb", scored)
        steps["score"] = step("score", step_cmd("score", home, scored))
        if scored.exists() and steps["score"].get("ok"):  # serve it, as a build with scoring would: the pages and
            os.replace(scored, (home / "analytics.duckdb").resolve())  # the night read ML's tables too
        shutil.rmtree(scored.parent, ignore_errors=True)
    pages: dict = {}
    if not args.skip_pages:
        pages_json = work / "pages.json"
        steps["pages"] = step("pages", step_cmd("pages", home, pages_json))
        pages = json.loads(pages_json.read_text()) if pages_json.exists() else {}
    nightly: dict = {}
    if not args.no_night:
        if not args.skip_ml:  # the served file as the previous night's scheduler leaves it: scored, forecast kept
            steps["night_before"] = step("night_before", [str(PTPULSE), "build", "--home", str(home)])
        nightly_json = logs / "nightly_detail.json"
        base = work / "home_before_night"
        # symlinks=True: the served files are symlinks into build/served (a copy that follows them holds the
        # analytics file three times: 30 GB instead of 12 at 200 clinics)
        if args.rerun_night:
            earlier.pop("nightly", None)
            shutil.rmtree(home)
            shutil.copytree(base, home, symlinks=True)
        elif args.keep_night_base and not earlier.get("nightly", {}).get("ok"):
            shutil.rmtree(base, ignore_errors=True)
            shutil.copytree(home, base, symlinks=True)
        steps["nightly"] = step("nightly", step_cmd("nightly", home, night, nightly_json))
        nightly = json.loads(nightly_json.read_text()) if nightly_json.exists() else {}
        nightly["night"] = json.loads(night.with_suffix(".json").read_text())
    return {"steps": steps, "pages": pages, "nightly": nightly, "csv_bytes": sum(sizes.values()), "home": home}


def summarise(args: argparse.Namespace, measured: dict) -> dict:
    steps, pages = measured["steps"], measured["pages"]
    home = Path(measured["home"])
    rows = _rows(home)
    # the floors are DuckDB reference runs without our memory budget: the 8 GiB target is for the pipeline's steps
    peak = max(s["peak_rss_mb"] for name, s in steps.items() if not name.startswith("floor_"))
    checks = {
        "every_step_ok": all(s["ok"] for s in steps.values()),
        "peak_rss_mb_max": peak,
        "no_step_above_8_gib": peak * (1 << 20) <= PEAK_RSS_TARGET,
    }
    if "score" in steps:
        rebuild = steps["build"]["wall_s"] + steps["score"]["wall_s"]
        checks["full_rebuild_s"] = round(rebuild, 1)
        checks["full_rebuild_within_60_min"] = rebuild <= FULL_REBUILD_TARGET_S
    if pages:
        checks["pages_cold_max_s"] = max(p["cold_s"] for p in pages.values())
        checks["pages_warm_max_s"] = max(p["warm_s"] for p in pages.values())
        checks["pages_within_targets"] = all(
            p["ok"] and p["cold_s"] <= COLD_TARGET_S and p["warm_s"] <= WARM_TARGET_S for p in pages.values()
        )
    if "nightly" in steps:
        checks["nightly_delta_s"] = steps["nightly"]["wall_s"]
        checks["nightly_was_incremental"] = measured["nightly"].get("build_mode") == "incremental"
        checks["nightly_within_5_min"] = steps["nightly"]["ok"] and steps["nightly"]["wall_s"] <= NIGHTLY_TARGET_S
    ratios = {}
    for name, floor in (("ingest", "floor_read_csv"), ("build", "floor_build")):
        if floor in steps:
            ratios[f"{name}_over_floor_cpu"] = _ratio(steps[name]["cpu_s"], steps[floor]["cpu_s"])
            ratios[f"{name}_over_floor_wall"] = _ratio(steps[name]["wall_s"], steps[floor]["wall_s"])
    import duckdb

    return {
        "benchmark": "large",
        "clinics": args.clinics,
        "years": 3,
        "seed": args.seed,
        "memory_limit": os.environ.get("PTPULSE_MEMORY_LIMIT", "4GB (default)"),
        "csv_gb": round(measured["csv_bytes"] / 1e9, 2),
        "raw_db_gb": round(_size(home / "raw.duckdb") / 1e9, 2),
        "analytics_db_gb": round(_size(home / "analytics.duckdb") / 1e9, 2),
        "rows": rows,
        "steps": steps,
        "ratios": ratios,
        "targets": {
            "peak_rss_gib": PEAK_RSS_TARGET / GIB,
            "full_rebuild_s": FULL_REBUILD_TARGET_S,
            "page_cold_s": COLD_TARGET_S,
            "page_warm_s": WARM_TARGET_S,
            "nightly_delta_s": NIGHTLY_TARGET_S,
        },
        "checks": checks,
        "pages": pages,
        "nightly": measured.get("nightly", {}),
        "machine": {
            "cpus": os.cpu_count(),
            "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def _size(path: Path) -> int:
    return path.resolve().stat().st_size if path.exists() else 0


def _rows(home: Path) -> dict:
    import duckdb

    if not (home / "analytics.duckdb").exists():
        return {}
    with duckdb.connect(str(home / "analytics.duckdb"), read_only=True) as con:
        return dict(
            con.execute(
                "select 'appointments', count(*) from marts.appointments union all "
                "select 'claims', count(*) from marts.claims union all "
                "select 'charge_lines', count(*) from marts.charge_lines union all "
                "select 'referrals', count(*) from marts.referral_funnel"
            ).fetchall()
        )


# --- the steps that have no CLI command, run in their own process ------------------------------------------------


def _generate(clinics: str, seed: str, out: str, gz: str = "plain") -> None:
    """The chain as `--scale large` makes it, cut to `clinics` (same seed tree: the first N clinics of large);
    `gz` = "gzip": every export as .csv.gz."""
    sys.path.insert(0, str(ROOT))
    import seed_data.params as params
    from seed_data.generator import generate

    name = f"bench_{clinics}"
    params.SCALES[name] = params.Scale(clinics=int(clinics), years=3, chunk=params.SCALES["large"].chunk)
    generate(Path(out), scale=name, seed=int(seed), compress=gz == "gzip")


def _floor_read_csv(data: str, db: str) -> None:
    """DuckDB's typed, auto-detected read_csv of every export (as bench/bench_ingest.py's floor)."""
    import duckdb

    Path(db).unlink(missing_ok=True)
    con = duckdb.connect(db)
    for i, path in enumerate(sorted(Path(data).glob("*.csv*"))):
        con.execute(f"CREATE TABLE t{i} AS SELECT * FROM read_csv(?, ignore_errors = true)", [str(path)])
    con.close()


def _floor_build(home: str, work: str) -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from bench_build import run_floor

    from ptpulse.core.config import get_settings
    from ptpulse.core.secrets import key_path

    settings = get_settings(home)
    manifest = json.loads((settings.build_dir / "dbt" / "target" / "manifest.json").read_text())
    run_floor(manifest, settings.raw_db, Path(work), ROOT / "dbt_project", key_path(settings))


def _score(home: str, analytics: str) -> None:
    sys.path.insert(0, str(ROOT))
    from ml.train_score import score
    from ptpulse.core.config import get_settings

    score(get_settings(home), Path(analytics))


def _pages(home: str, out: str) -> None:
    os.environ["PTPULSE_HOME"] = home
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from bench_app import role_for, time_page

    from app.lib import auth

    pages = {}
    for page in auth.PAGE_ACCESS:
        pages[page] = time_page(page, role_for(page))
        print(page, pages[page], flush=True)
    Path(out).write_text(json.dumps(pages, indent=2) + "\n")


def _split_night(data: str, night: str) -> None:
    """Move the last working day's rows of each NIGHT_FACTS export from data/ into night/ (same file names, same
    header, text unchanged: read as text, written back as text). The night starts on the last weekday of the
    chain and takes any weekend after it, so it is a working day's exports, not a quiet Sunday's. Rows whose
    event time does not parse stay in data/. Fails unless every row read is in exactly one of the two files."""
    import duckdb

    data_dir, night_dir = Path(data), Path(night)
    night_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = true")
    read = "read_csv(?, all_varchar = true, header = true)"
    export = {s: next(data_dir.glob(f"{s}.csv*")) for s in NIGHT_FACTS}  # .csv, or .csv.gz (--gzip)
    # each export is read three times (this scan, then the two copies, whose results are the rows they wrote):
    # at 900 clinics every read of a gzip export is minutes
    scanned = {
        s: con.execute(
            f"select count(*), max(try_cast({col} as timestamp))::date from {read}", [str(export[s])]
        ).fetchone()
        for s, col in NIGHT_FACTS.items()
    }
    last_day = max(day for _, day in scanned.values())
    night_start = last_day
    while night_start.weekday() >= 5:  # Saturday, Sunday
        night_start -= timedelta(days=1)
    moved = {}
    for source, col in NIGHT_FACTS.items():
        src = export[source]
        base_tmp, night_csv = data_dir / f".{source}.base{''.join(src.suffixes)}", night_dir / src.name
        is_night = f"try_cast({col} as timestamp)::date >= ?::date"
        rows = scanned[source][0]
        in_night = con.execute(
            f"copy (select * from {read} where {is_night}) to '{night_csv}' (header)",
            [str(src), night_start],
        ).fetchone()[0]
        in_base = con.execute(
            f"copy (select * from {read} where ({is_night}) is not true) to '{base_tmp}' (header)",
            [str(src), night_start],
        ).fetchone()[0]
        if in_night + in_base != rows:
            raise SystemExit(f"{source}.csv: {rows} rows read but {in_base} + {in_night} written: split refused")
        os.replace(base_tmp, src)
        moved[source] = in_night
    con.close()
    (night_dir.with_suffix(".json")).write_text(
        json.dumps({"from": str(night_start), "to": str(last_day), "rows": moved}, indent=2) + "\n"
    )


def _nightly(home: str, night: str, out: str) -> None:
    """The scheduler's nightly refresh: ingest the night's exports, then an incremental build with scoring.
    The build's progress lines are stamped as they arrive, so the detail says where the night's time went."""
    timings: dict = {}
    started = time.perf_counter()
    subprocess.run([str(PTPULSE), "ingest", "--home", home, night], check=True)
    timings["ingest_wall_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(PTPULSE), "build", "--home", home], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines, marks = [], []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
        phase = re.match(r"\s*build: (.+?) \d+/\d+\s*$", line)
        name = phase and ("dbt" if phase.group(1).startswith("dbt ") else phase.group(1))
        if name and (not marks or marks[-1][0] != name):
            marks.append((name, time.perf_counter() - started))
    proc.wait()
    timings["build_wall_s"] = round(time.perf_counter() - started, 1)
    ends = [t for _, t in marks[1:]] + [timings["build_wall_s"]]
    timings["build_phases_wall_s"] = {}
    for (name, begun), end in zip(marks, ends, strict=True):  # a phase runs from its first line to the next's
        phases = timings["build_phases_wall_s"]
        phases[name] = round(phases.get(name, 0) + end - begun, 1)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    said = re.search(r"(full refresh|incremental): ([^)]*)\)", " ".join("".join(lines).split()))  # rich wraps lines
    timings["build_mode"], timings["build_reason"] = said.groups() if said else ("unknown", "")
    Path(out).write_text(json.dumps(timings, indent=2) + "\n")


STEPS = {"_generate": _generate, "_floor_read_csv": _floor_read_csv, "_floor_build": _floor_build}
STEPS |= {"_score": _score, "_pages": _pages, "_split_night": _split_night, "_nightly": _nightly}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in STEPS:
        STEPS[sys.argv[1]](*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinics", type=int, default=900, help="900 = --scale large; fewer for a quicker run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", default=None, help="data, home and logs (default bench/.cache/large-<clinics>)")
    parser.add_argument("--skip-pages", action="store_true", help="skip the app page timings")
    parser.add_argument(
        "--no-night", action="store_true", help="no nightly delta: ingest every day (e.g. resuming an older run)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the steps <work>/logs/steps.json says succeeded; run the rest"
    )
    parser.add_argument(
        "--rerun-night", action="store_true", help="restore the home saved before the night and measure it again"
    )
    parser.add_argument("--keep-night-base", action="store_true", help="copy the home before the night lands")
    parser.add_argument("--skip-floors", action="store_true", help="skip the DuckDB floor runs")
    parser.add_argument(
        "--gzip", action="store_true", help="generate the exports as .csv.gz (900 clinics: ~6 GB instead of 29 GB)"
    )
    parser.add_argument("--skip-ml", action="store_true", help="skip train and score")
    parser.add_argument("--out", default=None, help="results file name under bench/results/")
    args = parser.parse_args()
    args.resume = args.resume or args.rerun_night
    args.work = args.work or str(HERE / ".cache" / f"large-{args.clinics}")
    out = summarise(args, run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / (args.out or ("large.json" if args.clinics == 900 else f"large-{args.clinics}.json"))
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["checks"], indent=2))
    print(f"wrote {target}")
    return 0 if out["checks"]["every_step_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
