"""Benchmark: every app page's script run time (AppTest) against the medium practice.

- data: a medium home with a served analytics.duckdb. Uses bench/.cache/medium_home when it has one, else
  bench/.cache/build_medium_home (left by bench_build.py); the file is copied to bench/.cache/app_medium_home
  so a concurrent build bench cannot swap it mid-run. With neither, builds one from medium_home/raw.duckdb
  (with ML scoring), or generates and ingests the medium practice first (slow: run bench_ingest.py first).
  The copy gets its de-identified twin (analytics_deid.duckdb, what the SQL page queries) as a build would
  write it; the time to write it is printed (it is build time, not page time).
- cold_s: first run of the page in a fresh AppTest session with every Streamlit cache cleared and a new
  DuckDB connection (what the first visitor after a restart or a new build waits for);
- warm_s: median of 3 further runs in the same session (caches warm: what every later click costs);
- role: the role the page is run as (owner where allowed, else the page's first allowed role).
- writes bench/results/app-medium.json. Targets (issue 5): warm_s <= 1.0 and cold_s <= 3.0 per page.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ptpulse.core.config import get_settings  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
APP = ROOT / "app" / "streamlit_app.py"
WARM_TARGET, COLD_TARGET = 1.0, 3.0


def medium_home() -> Path:
    """A private copy of a built medium home (see module docstring)."""
    target = get_settings(CACHE / "app_medium_home").ensure()
    for name in ("medium_home", "build_medium_home"):
        src = CACHE / name / "analytics.duckdb"
        if src.exists():
            fresh = not target.analytics_db.exists() or src.stat().st_mtime > target.analytics_db.stat().st_mtime + 1
            if fresh:
                shutil.copy2(src, target.analytics_db)
            print(f"using {src}", flush=True)
            ensure_ml(target)
            ensure_deid(target)
            return target.home
    raw = CACHE / "medium_home" / "raw.duckdb"
    if not raw.exists():
        from ingestion.loader import ingest
        from seed_data.generator import generate

        data = CACHE / "medium"
        if not (data / "clinics.csv").exists():
            generate(data, scale="medium", seed=7)
        (CACHE / "medium_home").mkdir(parents=True, exist_ok=True)
        ingest([data], get_settings(CACHE / "medium_home"))
    shutil.copy2(raw, target.raw_db)
    from ptpulse.refresh import run_build

    result = run_build(target)
    if not result.ok:
        raise SystemExit(f"medium build failed: {result.message}")
    return target.home


def ensure_ml(settings) -> None:
    """Score ML into the private copy when the source was built without it (the build bench skips ML),
    so the No-show and Forecast pages are measured with their data."""
    import duckdb

    con = duckdb.connect(str(settings.analytics_db), read_only=True)
    try:
        has_ml = con.execute("select count(*) from information_schema.tables where table_schema = 'ml'").fetchone()[0]
    finally:
        con.close()
    if not has_ml:
        from ml.train_score import score

        t = time.perf_counter()
        score(settings, settings.analytics_db)
        print(f"scored ML into the copy in {time.perf_counter() - t:.1f}s", flush=True)


def ensure_deid(settings) -> None:
    """Write the de-identified twin of the private copy, as every build does, when it is missing or older."""
    import duckdb

    from ptpulse.core.deid import verify_deidentified, write_deidentified

    def stamp(path):  # the build and the tables it holds (ML scored into the copy adds tables)
        with duckdb.connect(str(path), read_only=True) as con:
            return (
                con.execute("select build_id from marts.build_info").fetchone(),
                con.execute("select count(*) from duckdb_tables() where schema_name = 'ml'").fetchone(),
            )

    twin = settings.analytics_deid_db
    if twin.exists() and stamp(twin) == stamp(settings.analytics_db):
        return
    tmp = twin.with_name(twin.name + ".tmp")
    tmp.unlink(missing_ok=True)
    info = write_deidentified(settings.analytics_db, tmp)
    verify_deidentified(tmp)
    os.replace(tmp, twin)
    print(f"wrote the de-identified twin ({info['tables']} tables) in {info['seconds']:.1f}s", flush=True)


def role_for(page: str) -> str:
    from app.lib import auth

    allowed = [r for r in auth.ROLES if auth.can_view(r, page)]
    return "owner" if "owner" in allowed else allowed[0]


def time_page(page: str, role: str) -> dict:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["PTPULSE_DEMO_ROLE"] = role
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.switch_page(f"app_pages/{page}.py")  # url_path == file stem, so this works before the first run
    t = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t
    problems = [str(e.value) for e in at.exception] + [str(e.value) for e in at.error]
    title = at.title[0].value if len(at.title) else "?"
    warm_runs = []
    for _ in range(3):
        t = time.perf_counter()
        at.run()
        warm_runs.append(time.perf_counter() - t)
    return {
        "role": role,
        "title": title,
        "cold_s": round(cold, 3),
        "warm_s": round(statistics.median(warm_runs), 3),
        "ok": not problems and title != "?",
        "problems": problems[:3],
    }


def main() -> int:
    home = medium_home()
    os.environ["PTPULSE_HOME"] = str(home)
    from app.lib import auth

    pages = {}
    for page in auth.PAGE_ACCESS:
        pages[page] = time_page(page, role_for(page))
        r = pages[page]
        print(
            f"{page:17s} {r['role']:10s} cold {r['cold_s']:6.2f}s  warm {r['warm_s']:6.2f}s  "
            f"{'ok' if r['ok'] else 'PROBLEM ' + '; '.join(r['problems'])}",
            flush=True,
        )
    size_mb = (Path(home) / "analytics.duckdb").stat().st_size / 1e6
    result = {
        "benchmark": "app",
        "scale": "medium",
        "analytics_mb": round(size_mb, 1),
        "targets": {"warm_s": WARM_TARGET, "cold_s": COLD_TARGET},
        "pages": pages,
        "max_cold_s": max(p["cold_s"] for p in pages.values()),
        "max_warm_s": max(p["warm_s"] for p in pages.values()),
        "meets_targets": all(
            p["ok"] and p["warm_s"] <= WARM_TARGET and p["cold_s"] <= COLD_TARGET for p in pages.values()
        ),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "app-medium.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'app-medium.json'}: max cold {result['max_cold_s']}s, max warm {result['max_warm_s']}s")
    return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
