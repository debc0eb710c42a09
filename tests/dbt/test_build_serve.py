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
import ptpulse.privacy
from ptpulse.build import DBT_PROJECT_DIR, build, generate_docs
from ptpulse.privacy import deid_problems

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
    model = project / "models" / "marts" / "episodes.sql"
    model.write_text(model.read_text().replace("s.attended_visits,", "s.no_such_column,", 1))
    before, before_deid = _sha(home.analytics_db), _sha(home.analytics_deid_db)

    result = build(home, project_dir=project)

    assert not result.ok
    assert "episodes" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid
    assert not any(home.build_dir.glob("*/analytics*.duckdb"))  # the failed files were cleaned up


def test_deidentified_twin_served_with_each_build(tiny_home):
    """Every build serves analytics_deid.duckdb beside analytics.duckdb: same build, marts/ml/meta tables only,
    no dim_patients, no PHI or free-text column, same rows."""
    with duckdb.connect(str(tiny_home.analytics_deid_db), read_only=True) as con:
        assert deid_problems(con) == []
        tables = {f"{s}.{t}" for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() where not internal").fetchall()}
        deid_build = con.execute("select build_id from marts.build_info").fetchone()
        deid_history = con.execute("select build_id from meta.builds order by started_at").fetchall()
        deid_rows = con.execute("select count(*) from marts.appointments").fetchone()
        cols = {r[0] for r in con.execute("select column_name from information_schema.columns "
                                          "where table_name = 'appointments'").fetchall()}
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
    monkeypatch.setattr(ptpulse.privacy, "kept_columns", lambda columns: list(columns))
    result = build(home)
    assert not result.ok and "not de-identified" in result.message and "patient_id" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid


def test_failing_error_test_keeps_previous_file_served(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "marts" / "claims.sql"   # break the billed = paid + ... + balance invariant
    model.write_text(model.read_text().replace("c.write_off_usd\n        as insurance_balance_usd",
                                               "c.write_off_usd + 1\n        as insurance_balance_usd"))
    before, before_deid = _sha(home.analytics_db), _sha(home.analytics_deid_db)
    result = build(home, project_dir=project)
    assert not result.ok and "claims" in result.message and "expression_is_true" in result.message
    assert _sha(home.analytics_db) == before
    assert _sha(home.analytics_deid_db) == before_deid


def test_raw_untouched_history_and_app_actions(tiny_home, tmp_path):
    home = copy_of(tiny_home, tmp_path / "home")
    raw_before = _sha(home.raw_db)
    app = _write_actions(home.app_db, [
        ("uncontacted_referral:R09", "log_outreach", "fd1", "2025-03-31T18:00:00Z",
         json.dumps({"method": "call", "outcome": "reached"})),
        ("contacted_unscheduled:R10", "snooze", "fd1", "2025-03-31T18:05:00Z", json.dumps({"until": "2025-04-05T09:00:00"})),
        ("eval_no_show_rebook:R04", "mark_lost", "fd1", "2025-03-31T18:10:00Z", json.dumps({"reason": "moved"})),
        ("auth_expiring:AU1", "claim", "fd2", "2025-03-31T18:15:00Z", "{}"),
    ])
    # the app is mid-write (an open write transaction in WAL mode) while the build copies its state
    app.execute("begin immediate")
    app.execute("insert into actions (task_id, action, actor, acted_at, payload) values "
                "('auth_expiring:AU2', 'claim', 'fd3', '2025-03-31T18:20:00Z', '{}')")
    try:
        result = build(home)
    finally:
        app.commit()  # the app never met a lock
        app.close()
    assert result.ok, result.message
    assert _sha(home.raw_db) == raw_before
    assert not Path(str(home.analytics_db) + ".wal").exists()

    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        queue = {r[0]: r[1:] for r in con.execute(
            "select task_id, due_at, claimed_by from marts.work_queue_candidates").fetchall()}
        builds = con.execute("select build_id from meta.builds order by started_at").fetchall()
        r09 = con.execute("select first_contact_at, hours_to_contact from marts.referral_funnel "
                          "where referral_id = 'R09'").fetchone()
        hours = con.execute("select numerator, denominator from marts.practice_kpis where clinic_id = 'ALL' "
                            "and grain = 'month' and kpi = 'hours_to_first_contact'").fetchone()
    assert "uncontacted_referral:R09" not in queue            # the logged outreach is the first contact
    assert queue["contacted_unscheduled:R09"][0] == datetime(2025, 4, 2, 18, 0)
    assert queue["contacted_unscheduled:R10"][0] == datetime(2025, 4, 5, 9, 0)  # snoozed
    assert "eval_no_show_rebook:R04" not in queue              # marked lost
    assert queue["auth_expiring:AU1"][1] == "fd2"
    assert queue["auth_expiring:AU2"][1] is None               # uncommitted when the build read app state
    assert r09 == (datetime(2025, 3, 31, 18, 0), pytest.approx(175.0))
    assert hours == (pytest.approx(54.5 + 175), 12)
    assert len(builds) == 2                                    # the tiny build's history carried forward


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
    assert set(c.lower() for c in built) <= set(c.lower() for c in
                                                manifest["nodes"]["model.ptpulse.referral_funnel"]["columns"])


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
    assert not [v for v in views if v[0] == "staging"] and "staging" not in schemas


def test_app_outcomes_confirms_and_queue_windows(tiny_home, tmp_path):
    """App outreach counts as a contact when a person was reached (declined included); a confirm is recorded on
    its appointment and, like an outreach that booked the visit, closes its task; stale items leave the queue:
    at as_of 2025-04-20 the unsigned note N14 (created 03-19, > 30 days before) belongs to the compliance
    report, not the daily queue."""
    home = copy_of(tiny_home, tmp_path / "home")
    _write_actions(home.app_db, [
        ("uncontacted_referral:R09", "log_outreach", "fd1", "2025-03-31T18:00:00Z",
         json.dumps({"method": "call", "outcome": "declined"})),
        ("contacted_unscheduled:R10", "log_outreach", "fd1", "2025-03-31T18:10:00Z",
         json.dumps({"method": "call", "outcome": "scheduled"})),
        ("confirm_high_risk:A16", "confirm", "fd2", "2025-03-31T18:20:00Z", json.dumps({"appointment_id": "A16"})),
    ]).close()
    result = build(home, dbt_vars={"as_of": "2025-04-20 12:00:00"})
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        r09 = con.execute("select contacted_at, current_stage from marts.referral_funnel "
                          "where referral_id = 'R09'").fetchone()
        confirmed = con.execute("select confirmed_at from marts.appointments where appointment_id = 'A16'").fetchone()
        queue = {r[0]: r[1] for r in con.execute("select task_id, reason from marts.work_queue_candidates").fetchall()}
    assert r09 == (datetime(2025, 3, 31, 18, 0), "contacted")   # declined on the call = reached
    assert confirmed == (datetime(2025, 3, 31, 18, 20),)
    assert "contacted_unscheduled:R10" not in queue             # the outreach booked it: task done
    assert "unsigned_note:N14" not in queue                     # 32 days old at this as_of
