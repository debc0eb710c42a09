from __future__ import annotations

import duckdb
import pytest

from app.lib import sql_guard
from ptpulse.privacy import write_deidentified


@pytest.mark.parametrize("sql", [
    "select 1", "SELECT * FROM marts.practice_kpis LIMIT 5;", "with a as (select 1) select * from a",
    "-- comment\nselect 1", "/* c */ describe marts.claims", "show tables",
])
def test_read_statements_pass(sql):
    assert sql_guard.check_statement(sql)


@pytest.mark.parametrize("sql,reason", [
    ("", "Write a query"),
    ("select 1; select 2", "one statement"),
    ("insert into t values (1)", "Only SELECT"),
    ("copy (select 1) to '/tmp/x.csv'", "Only SELECT"),
    ("attach '/tmp/x.duckdb'", "Only SELECT"),
    ("set enable_external_access = true", "Only SELECT"),
    ("pragma version", "Only SELECT"),
    ("call pragma_version()", "Only SELECT"),
    ("summarize select 1", "Only SELECT"),
    ("select 1; drop table x", "one statement"),
    ("selec 1", "parse"),
])
def test_other_statements_are_refused(sql, reason):
    with pytest.raises(sql_guard.SqlRefused, match=reason):
        sql_guard.check_statement(sql)


@pytest.fixture
def fake_analytics(tmp_path):
    path = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema marts; create schema ml; create schema staging")
    con.execute("create table marts.dim_patients as select 'P1' patient_id, 'Ann' first_name, '555' phone")
    con.execute("create table marts.appointments as select 'A1' appointment_id, 'P1' patient_id, "
                "'k1' patient_key, 'completed' status, 'C1' clinic_id")
    con.execute("create table ml.no_show_scores as select 'A1' appointment_id, 0.3 probability")
    con.execute("create table staging.stg_raw__patients as select 'Ann' first_name")
    con.close()
    return path


@pytest.fixture
def fake_deid(fake_analytics):
    """The de-identified twin the build writes beside the analytics file (same function as the build)."""
    path = fake_analytics.with_name("analytics_deid.duckdb")
    write_deidentified(fake_analytics, path)
    return path


def test_sandbox_holds_only_deidentified_marts(fake_deid):
    sandbox = sql_guard.build_sandbox(fake_deid)
    catalog = sql_guard.sandbox_catalog(sandbox)
    assert set(catalog["table_name"]) == {"marts.appointments", "ml.no_show_scores"}
    res = sql_guard.run_readonly(sandbox, "select * from marts.appointments")
    assert list(res.frame.columns) == ["appointment_id", "patient_key", "status", "clinic_id"]
    for sql in ["select * from marts.dim_patients", "select * from staging.stg_raw__patients"]:
        with pytest.raises(sql_guard.SqlRefused, match="DuckDB error"):
            sql_guard.run_readonly(sandbox, sql)


def test_sandbox_cannot_reach_files(fake_analytics, fake_deid, tmp_path):
    sandbox = sql_guard.build_sandbox(fake_deid)
    (tmp_path / "x.csv").write_text("a\n1\n")
    for sql in [f"select * from read_csv('{tmp_path / 'x.csv'}')",
                f"select * from '{fake_analytics}'",
                "select * from read_text('/etc/passwd')"]:
        with pytest.raises(sql_guard.SqlRefused):
            sql_guard.run_readonly(sandbox, sql)
    with pytest.raises(duckdb.Error):
        sandbox.execute("set enable_external_access = true")
    # the identified file cannot be attached, not even bypassing the statement check
    with pytest.raises(sql_guard.SqlRefused, match="Only SELECT"):
        sql_guard.run_readonly(sandbox, f"attach '{fake_analytics}' as src (read_only)")
    for sql in [f"attach '{fake_analytics}' as src (read_only)", "detach analytics_deid",
                "set lock_configuration = false"]:
        with pytest.raises(duckdb.Error):
            sandbox.execute(sql)
    assert {r[0] for r in sandbox.execute("select database_name from duckdb_databases() where not internal")
            .fetchall()} == {"analytics_deid", "memory"}


def test_sandbox_refuses_identified_or_missing_files(fake_analytics, tmp_path):
    with pytest.raises(sql_guard.NotDeidentified, match="dim_patients"):
        sql_guard.build_sandbox(fake_analytics)
    with pytest.raises(sql_guard.DeidMissing, match="ptpulse refresh"):
        sql_guard.build_sandbox(tmp_path / "nowhere" / "analytics_deid.duckdb")


def test_row_cap_and_time_limit(fake_deid):
    sandbox = sql_guard.build_sandbox(fake_deid)
    res = sql_guard.run_readonly(sandbox, "select * from range(100)", row_cap=10)
    assert len(res.frame) == 10 and res.truncated
    with pytest.raises(sql_guard.SqlRefused, match="longer than"):
        sql_guard.run_readonly(sandbox, "select count(*) from range(100000000000) a, range(10) b",
                               time_limit_s=0.3)
