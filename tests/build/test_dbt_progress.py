"""The dbt step of a real build: its progress counts up to dbt's own node count (1/N ... N/N, the N of dbt's
"12 of N" log lines), and Ctrl-C during it stops the command with exit code 130, the served build unchanged.

A real build of the hand-built tiny practice (tests/dbt/tiny_practice) through the real loader; the Ctrl-C is
a real SIGINT sent to a real `ptpulse build` process while dbt runs its nodes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from app.lib.refresh import RefreshStatus, progress_share
from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings

pytestmark = pytest.mark.slow

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"
DBT_LINE = re.compile(r"^build: dbt \S+ (\d+)/(\d+)$")


@pytest.fixture(scope="module")
def progress_build(tmp_path_factory) -> tuple[Settings, list[tuple[str, float, float]]]:
    """The tiny practice ingested and built once, with every progress call the build made."""
    settings = get_settings(tmp_path_factory.mktemp("progress") / "home").ensure()
    ingest([TINY], settings)
    calls: list[tuple[str, float, float]] = []
    result = build(settings, progress=lambda step, done, total: calls.append((step, done, total)))
    assert result.ok, result.message
    return settings, calls


def test_dbt_progress_counts_1_to_n_of_dbts_own_total(progress_build):
    settings, calls = progress_build
    dbt = [(done, total) for step, done, total in calls if step.startswith("dbt ")]
    target = settings.build_dir / "dbt"
    n = len(json.loads((target / "target" / "run_results.json").read_text())["results"])  # every node dbt ran
    assert n > 100  # the whole project: seeds, models, tests, unit tests, exposures
    assert [done for done, _ in dbt] == list(range(1, n + 1))
    assert {total for _, total in dbt} == {n}  # the same N from the first node on (it read 1/1 ... 253/253)
    logged = {int(m) for m in re.findall(r"\d+ of (\d+) START", (target / "logs" / "dbt.log").read_text())}
    assert logged == {n}  # dbt's own "12 of N" lines say the same N

    # the Upload / Admin page's bar reads the CLI's plain line: it moves through the dbt step now
    shares = [progress_share(RefreshStatus(running=True, last_line=f"refresh: dbt x {d:.0f}/{t:.0f}")) for d, t in dbt]
    assert shares[0] == pytest.approx(1 / n) and shares[n // 2] == pytest.approx((n // 2 + 1) / n)
    assert shares[-1] == 1.0


def _copy(settings: Settings, target: Path, served: bool) -> Settings:
    """A writable copy of a home: raw and the pseudonym secret, and (served) the served pair as plain files,
    which the next build adopts into build/ as the served build (ptpulse/build/serving.py)."""
    target.mkdir(parents=True)
    names = ["raw.duckdb"] + (["analytics.duckdb", "analytics_deid.duckdb"] if served else [])
    for name in names:
        shutil.copy2(settings.home / name, target / name)
    shutil.copytree(settings.home / "secrets", target / "secrets")
    return get_settings(target)


def _served_build_id(settings: Settings) -> str | None:
    if not settings.analytics_db.exists():
        return None
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute("select max(build_id) from meta.builds").fetchone()[0]


# `ptpulse` with Python's own Ctrl-C handler, whatever the test runner's worker left SIGINT set to
CLI = "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); from ptpulse.cli import app; app()"


@pytest.mark.parametrize(
    "served, says",
    [
        (True, "interrupted; the previous build is still served (nothing was swapped)"),
        (False, "interrupted; nothing was swapped (there is no earlier build, so nothing is served yet)"),
    ],
    ids=["a_build_served", "first_build"],
)
def test_ctrl_c_during_dbt_exits_130_and_swaps_nothing(progress_build, tmp_path, served, says):
    settings = _copy(progress_build[0], tmp_path / "home", served)
    before = _served_build_id(settings)
    assert (before is not None) == served
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "build", "--full-refresh", "--home", str(settings.home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, COLUMNS="200"),
        start_new_session=True,  # the test's own process group never sees the signal
    )
    seen: list[str] = []
    deadline = time.monotonic() + 600
    try:
        for line in proc.stderr:  # not a terminal: one plain line per progress step
            seen.append(line.rstrip("\n"))
            m = DBT_LINE.match(seen[-1])
            if m and int(m.group(1)) >= 5:  # dbt is running its nodes
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, seen[-5:]
        stdout, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "\n".join(seen) + "\n" + rest
    assert proc.returncode == 130, stderr[-3000:]
    assert says in stderr
    assert "build failed" not in stderr and "dbt: " not in stderr
    assert "Traceback" not in stdout + stderr and "\x1b[" not in stdout  # nothing of dbt's own output
    last = [m for m in map(DBT_LINE.match, stderr.splitlines()) if m][-1]
    assert int(last.group(1)) < int(last.group(2))  # it stopped during dbt, before its last node
    assert _served_build_id(settings) == before  # nothing was swapped
    assert settings.analytics_db.exists() == served
    left = sorted(p.name for p in settings.build_dir.iterdir() if p.name not in ("dbt", "served"))
    served_dir = settings.served_dir.resolve().name if served else None
    assert left == ([served_dir] if served else [])  # the interrupted build's folder was removed
