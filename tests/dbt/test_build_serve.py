"""Build and serve: the new file (and its de-identified twin) is swapped in only after every error-severity
test passed; a failed build leaves both served files untouched and names what failed; raw.duckdb is never written; app state is read
through a backup copy even while the app holds a write transaction; meta.builds carries its history."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from conftest import copy_of

import ptpulse.core.deid
from ptpulse.build.dbt_runner import generate_docs
from ptpulse.build.orchestrate import build
from ptpulse.core.config import DBT_PROJECT_DIR
from ptpulse.core.deid import deid_problems

pytestmark = pytest.mark.slow


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_actions(app_db: Path, rows: list[tuple]) -> sqlite3.Connection:
    con = sqlite3.connect(app_db)
    con.execute("pragma journal_mode=wal")
    con.execute("""create table if not exists actions (action_id integer primary key, task_id text, action text,
                   actor text, acted_at text, payload text)""")
    con.executemany("insert into actions (task_id, action, actor, acted_at, payload) values (?, ?, ?, ?, ?)", rows)
    con.commit()
    return con


def test_broken_model_keeps_previous_file_served(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "operations" / "episodes.sql"
    model.write_text(model.read_text().replace("s.attended_visits,", "s.no_such_column,", 1))
    before, before_deid = _sha(home.analytics_db), _sha(home.analytics_deid_db)

    result = build(home, project_dir=project)

    assert not result.ok
    assert "episodes" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid
    assert not (home.build_dir / result.build_id).exists()  # the failed build's folder was cleaned up


def test_deidentified_twin_served_with_each_build(tiny_home):
    """Every build serves analytics_deid.duckdb beside analytics.duckdb: same build, marts/ml/meta tables only,
    no dim_patients, no PHI or free-text column, same rows."""
    with duckdb.connect(str(tiny_home.analytics_deid_db), read_only=True) as con:
        assert deid_problems(con) == []
        tables = {
            f"{s}.{t}"
            for s, t in con.execute("select schema_name, table_name from duckdb_tables() where not internal").fetchall()
        }
        deid_build = con.execute("select build_id from marts.build_info").fetchone()
        deid_history = con.execute("select build_id from meta.builds order by started_at").fetchall()
        deid_rows = con.execute("select count(*) from marts.appointments").fetchone()
        cols = {
            r[0]
            for r in con.execute(
                "select column_name from information_schema.columns where table_name = 'appointments'"
            ).fetchall()
        }
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as con:
        assert con.execute("select count(*) from marts.dim_patients").fetchone()[0] > 0
        full_build = con.execute("select build_id from marts.build_info").fetchone()
        full_history = con.execute("select build_id from meta.builds order by started_at").fetchall()
        full_rows = con.execute("select count(*) from marts.appointments").fetchone()
    assert "marts.dim_patients" not in tables and "meta.builds" in tables
    assert {t.split(".")[0] for t in tables} <= {"marts", "ml", "meta"}
    assert "patient_key" in cols and "patient_id" not in cols
    assert (deid_build, deid_history, deid_rows) == (full_build, full_history, full_rows)


def test_twin_that_fails_verification_fails_the_build(tiny_home, tmp_path, monkeypatch):
    """The twin is verified against the rule independently of how it was written: a writer that kept PHI
    columns fails the build, and both served files stay as they were."""
    home = copy_of(tiny_home, tmp_path / "home")
    before, before_deid = _sha(home.analytics_db), _sha(home.analytics_deid_db)
    monkeypatch.setattr(ptpulse.core.deid, "kept_columns", lambda columns: list(columns))
    result = build(home)
    assert not result.ok and "not de-identified" in result.message and "patient_id" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid


def test_failing_error_test_keeps_previous_file_served(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "revenue" / "claims.sql"  # break the billed = paid + ... + balance invariant
    model.write_text(
        model.read_text().replace(
            "c.write_off_usd\n        as insurance_balance_usd", "c.write_off_usd + 1\n        as insurance_balance_usd"
        )
    )
    before, before_deid = _sha(home.analytics_db), _sha(home.analytics_deid_db)
    result = build(home, project_dir=project)
    assert not result.ok and "claims" in result.message and "expression_is_true" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid


def test_raw_untouched_history_and_app_actions(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    raw_before = _sha(home.raw_db)
    app = _write_actions(
        home.app_db,
        [
            (
                "uncontacted_referral:R09",
                "log_outreach",
                "fd1",
                "2025-03-31T18:00:00Z",
                json.dumps({"method": "call", "outcome": "reached"}),
            ),
            (
                "contacted_unscheduled:R10",
                "snooze",
                "fd1",
                "2025-03-31T18:05:00Z",
                json.dumps({"until": "2025-04-05T09:00:00"}),
            ),
            ("eval_no_show_rebook:R04", "mark_lost", "fd1", "2025-03-31T18:10:00Z", json.dumps({"reason": "moved"})),
            ("auth_expiring:AU1", "claim", "fd2", "2025-03-31T18:15:00Z", "{}"),
        ],
    )
    # the app is mid-write (an open write transaction in WAL mode) while the build copies its state
    app.execute("begin immediate")
    app.execute(
        "insert into actions (task_id, action, actor, acted_at, payload) values "
        "('auth_expiring:AU2', 'claim', 'fd3', '2025-03-31T18:20:00Z', '{}')"
    )
    try:
        result = build(home)
    finally:
        app.commit()  # the app never met a lock
        app.close()
    assert result.ok, result.message
    assert _sha(home.raw_db) == raw_before
    assert not Path(str(home.analytics_db) + ".wal").exists()

    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        queue = {
            r[0]: r[1:]
            for r in con.execute("select task_id, due_at, claimed_by from marts.work_queue_candidates").fetchall()
        }
        builds = con.execute("select build_id from meta.builds order by started_at").fetchall()
        r09 = con.execute(
            "select first_contact_at, hours_to_contact from marts.referral_funnel where referral_id = 'R09'"
        ).fetchone()
        hours = con.execute(
            "select numerator, denominator from marts.practice_kpis where clinic_id = 'ALL' "
            "and grain = 'month' and kpi = 'hours_to_first_contact'"
        ).fetchone()
    assert "uncontacted_referral:R09" not in queue  # the logged outreach is the first contact
    assert "contacted_unscheduled:R09" not in queue  # reached after as_of: 48 h schedule SLA not over
    assert queue["contacted_unscheduled:R10"][0] == datetime(2025, 4, 5, 9, 0)  # snoozed
    assert "eval_no_show_rebook:R04" not in queue  # marked lost
    assert queue["auth_expiring:AU1"][1] == "fd2"
    assert queue["auth_expiring:AU2"][1] is None  # uncommitted when the build read app state
    # the app writes UTC (18:00Z); the referral's times are Chicago's clock (UTC-5 on 03-31): 13:00
    assert r09 == (datetime(2025, 3, 31, 13, 0), pytest.approx(170.0))
    assert hours == (pytest.approx(54.5 + 170), 12)
    assert len(builds) == 2  # the tiny build's history carried forward


def test_docs_generate(tiny_home, tmp_path):
    target = generate_docs(tiny_home, out_dir=tmp_path / "docs")
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    assert "model.ptpulse.practice_kpis" in catalog["nodes"]
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    for node in models:
        assert node["description"], node["name"]
        assert node["config"]["meta"].get("grain"), node["name"]
    marts = [n for n in models if n["schema"] == "marts"]
    undocumented = [(n["name"], c) for n in marts for c, col in n["columns"].items() if not col["description"]]
    assert not undocumented
    built = catalog["nodes"]["model.ptpulse.referral_funnel"]["columns"]
    assert set(c.lower() for c in built) <= set(
        c.lower() for c in manifest["nodes"]["model.ptpulse.referral_funnel"]["columns"]
    )


def test_as_of_var_overrides_the_data_clock(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    result = build(home, dbt_vars={"as_of": "2025-03-20 12:00:00"})
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        as_of, source = con.execute("select as_of, as_of_source from marts.build_info").fetchone()
        future = con.execute("select count(*) from marts.appointments where is_future").fetchone()[0]
    assert (as_of, source) == (datetime(2025, 3, 20, 12, 0), "var")
    assert future == 2  # A09, A16: the var moves "now" for open items; it does not replay events


def test_every_served_view_can_be_queried(tiny_home):
    """The served file is opened without the raw database attached: no view in it may depend on `rawdb`
    (the staging views are build-time plumbing and are dropped before the swap)."""
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as con:
        views = con.execute("select schema_name, view_name, sql from duckdb_views() where not internal").fetchall()
        schemas = {r[0] for r in con.execute("select schema_name from duckdb_schemas()").fetchall()}
        for schema, view, _sql in views:
            con.execute(f'select * from "{schema}"."{view}" limit 1').fetchall()
        assert con.execute("select count(*) from marts.referral_funnel").fetchone()[0] == 12
    assert not [v for v in views if "rawdb" in (v[2] or "")]
    assert not [v for v in views if v[0] == "staging"]
    assert "staging" not in schemas  # the build state is its own file (tests/dbt/test_build_state_file.py)
    with duckdb.connect(str(tiny_home.state_db), read_only=True) as con:  # staging keeps only the incremental
        kept = {
            r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'staging'").fetchall()
        }
    assert kept == {  # state of the next build (docs/architecture.md "Incremental builds")
        "stg_raw__scheduling_events",
        "stg_raw__documentation_events",
        "stg_raw__charges",
        "stg_raw__claims",
        "stg_raw__remittances",
        "stg_raw__intake_events",
        "stg_raw__patients",
    }


def test_app_outcomes_confirms_and_queue_windows(tiny_home, tmp_path):
    """App outreach counts as a contact when a person was reached (declined included); a confirm is recorded on
    its appointment and, like an outreach that booked the visit, closes its task; stale items leave the queue:
    at as_of 2025-04-20 the unsigned note N14 (created 03-19, > 30 days before) belongs to the compliance
    report, not the daily queue."""
    home = copy_of(tiny_home, tmp_path / "home")
    _write_actions(
        home.app_db,
        [
            (
                "uncontacted_referral:R09",
                "log_outreach",
                "fd1",
                "2025-03-31T18:00:00Z",
                json.dumps({"method": "call", "outcome": "declined"}),
            ),
            (
                "contacted_unscheduled:R10",
                "log_outreach",
                "fd1",
                "2025-03-31T18:10:00Z",
                json.dumps({"method": "call", "outcome": "scheduled"}),
            ),
            ("confirm_high_risk:A16", "confirm", "fd2", "2025-03-31T18:20:00Z", json.dumps({"appointment_id": "A16"})),
        ],
    ).close()
    result = build(home, dbt_vars={"as_of": "2025-04-20 12:00:00"})
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        r09 = con.execute(
            "select contacted_at, current_stage from marts.referral_funnel where referral_id = 'R09'"
        ).fetchone()
        confirmed = con.execute("select confirmed_at from marts.appointments where appointment_id = 'A16'").fetchone()
        queue = {r[0]: r[1] for r in con.execute("select task_id, reason from marts.work_queue_candidates").fetchall()}
    # declined on the call = reached; the app's UTC times read on the clinic's clock (Chicago, UTC-5 on 03-31)
    assert r09 == (datetime(2025, 3, 31, 13, 0), "contacted")
    assert confirmed == (datetime(2025, 3, 31, 13, 20),)
    assert "contacted_unscheduled:R10" not in queue  # the outreach booked it: task done
    assert "unsigned_note:N14" not in queue  # 32 days old at this as_of


# ------------------------------------------------------------------------------- serving, crashes, cleanup


def _served_ids(home) -> tuple[str, str]:
    ids = []
    for path in (home.analytics_db, home.analytics_deid_db):
        with duckdb.connect(str(path), read_only=True) as con:
            ids.append(con.execute("select build_id from marts.build_info").fetchone()[0])
    return ids[0], ids[1]


def _history(home) -> list[str]:
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        return [r[0] for r in con.execute("select build_id from meta.builds order by started_at").fetchall()]


class _Crash(BaseException):
    """A simulated kill: not an Exception, so the build's own failure handling never runs."""


def test_served_through_one_folder_and_a_flat_home_is_adopted(tiny_home, tmp_path):
    """copy_of makes the old flat layout (plain files at the top of the home): the build adopts it, then
    serves its own folder; both stable paths resolve into ONE build folder, history carried forward."""
    home = copy_of(tiny_home, tmp_path / "home")
    assert not home.analytics_db.is_symlink()
    before = _history(home)
    result = build(home)
    assert result.ok, result.message
    assert home.analytics_db.is_symlink() and home.analytics_deid_db.is_symlink()
    folder = home.build_dir / result.build_id
    assert home.analytics_db.resolve() == folder / "analytics.duckdb"
    assert home.analytics_deid_db.resolve() == folder / "analytics_deid.duckdb"
    assert _served_ids(home) == (result.build_id, result.build_id)
    assert _history(home) == before + [result.build_id]
    assert [r for r in result.removed_builds if r.endswith("-adopted")] == []  # adopted = served until the swap
    # the adopted folder was the served one; once this build is served it is gone
    assert sorted(p.name for p in home.build_dir.iterdir()) == sorted(["dbt", "served", result.build_id])


@pytest.mark.parametrize("crash_at", ["rename", "after_rename"])
def test_a_crash_around_the_swap_serves_one_consistent_pair(tiny_home, tmp_path, monkeypatch, crash_at):
    """Kill simulated at the one rename (the old pair stays served, byte-identical) or right after it, before
    the previous folder is removed (the new pair is served): never a twin from another build than its file."""
    import ptpulse.build.serving as build_mod

    home = copy_of(tiny_home, tmp_path / "home")  # flat layout: the build adopts it before dbt runs
    first_id = _served_ids(home)[0]
    before = (_sha(home.analytics_db), _sha(home.analytics_deid_db))
    real_replace, real_rmtree = build_mod._replace_with_symlink, build_mod.shutil.rmtree

    def replace(path, target):
        if path == home.served_dir and crash_at == "rename":
            raise _Crash("killed at the rename")
        real_replace(path, target)

    def rmtree(path, *args, **kwargs):
        if Path(path).name.endswith("-adopted") and crash_at == "after_rename":
            raise _Crash("killed after the rename")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(build_mod, "_replace_with_symlink", replace)
    monkeypatch.setattr(build_mod.shutil, "rmtree", rmtree)
    with pytest.raises(_Crash):
        build(home)
    monkeypatch.undo()
    analytics, twin = _served_ids(home)
    assert analytics == twin
    if crash_at == "rename":
        assert analytics == first_id
        assert (_sha(home.analytics_db), _sha(home.analytics_deid_db)) == before
    else:
        assert analytics != first_id and _history(home)[-2:] == [first_id, analytics]
    nxt = build(home)  # the next build sweeps the folder the crash left behind
    assert nxt.ok, nxt.message
    assert len(nxt.removed_builds) == 1
    assert sorted(p.name for p in home.build_dir.iterdir()) == sorted(["dbt", "served", nxt.build_id])


def test_kill_9_of_a_real_build_frees_the_lock_and_its_folder_is_removed_by_the_next(tiny_home, tmp_path):
    """`ptpulse build` killed with SIGKILL mid-dbt: the lock reads free at once (the stale holder file does not
    count), the served pair is byte-identical, and the next build removes the abandoned folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ptpulse.core.lock import lock_holder

    home = copy_of(tiny_home, tmp_path / "home")
    first_id = _served_ids(home)[0]
    before = (_sha(home.analytics_db), _sha(home.analytics_deid_db))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptpulse.cli", "build", "--home", str(home.home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(tmp_path),
    )
    try:
        deadline = time.monotonic() + 120
        abandoned = []
        while time.monotonic() < deadline and not abandoned:
            abandoned = [
                p
                for p in home.build_dir.glob("*/analytics.duckdb")
                if p.parent.name != "served" and not p.parent.name.endswith("-adopted")
            ]
            time.sleep(0.05)
        assert abandoned, "the build subprocess never created its folder"
        assert lock_holder(home) is not None and "ptpulse build" in lock_holder(home)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert home.lock_file.with_suffix(".holder").exists()  # left behind by the kill ...
    assert lock_holder(home) is None  # ... but the OS lock is free
    assert (_sha(home.analytics_db), _sha(home.analytics_deid_db)) == before
    assert abandoned[0].parent.exists()

    nxt = build(home)
    assert nxt.ok, nxt.message
    assert abandoned[0].parent.name in nxt.removed_builds
    assert sorted(p.name for p in home.build_dir.iterdir()) == sorted(["dbt", "served", nxt.build_id])
    assert _served_ids(home) == (nxt.build_id, nxt.build_id)
    assert _history(home)[-2:] == [first_id, nxt.build_id]  # the killed build left no history


def test_readers_of_the_old_pair_keep_their_snapshot_across_a_real_build(tiny_home, tmp_path):
    from app.lib.db import AnalyticsDb

    home = copy_of(tiny_home, tmp_path / "home")  # flat files: adopted into a folder, removed after the swap
    first_id = _served_ids(home)[0]
    app_db = AnalyticsDb(home.analytics_db)
    old_cursor = app_db.cursor()
    analyst = duckdb.connect(str(home.analytics_deid_db), read_only=True)
    second = build(home)
    assert second.ok, second.message
    assert sorted(p.name for p in home.build_dir.iterdir()) == sorted(["dbt", "served", second.build_id])
    assert old_cursor.execute("select build_id from marts.build_info").fetchone()[0] == first_id
    assert analyst.execute("select build_id from marts.build_info").fetchone()[0] == first_id  # snapshots stay
    assert analyst.execute("select count(*) from marts.appointments").fetchone()[0] > 0
    analyst.close()
    assert app_db.scalar("select build_id from marts.build_info") == second.build_id
