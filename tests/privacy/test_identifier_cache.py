"""The twin check's cache of raw's patient identifiers (issue 15) must never weaken the check.

Each build's check needs every identifier of raw's patients; reading them all grew with history (10 s of a
200-clinic night), so a build keeps them beside its files and the next one adds only the loads since. These tests
pin what a cache could get wrong: a patient loaded after it, a clinician hired after it (professionals' names are
not patient names), a raw file that is not the one the cache was read from, and a damaged file. Real DuckDB files.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ptpulse.core.deid import verify_deidentified


def _raw(path: Path, sha: str = "sha-1") -> Path:
    """A raw file with one load: one patient and one therapist."""
    with duckdb.connect(str(path)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw._loads (load_id bigint, source varchar, file varchar, sha256 varchar, "
            "started_at timestamp)"
        )
        con.execute(
            "create table raw.patients (patient_id varchar, first_name varchar, last_name varchar, phone varchar, "
            "email varchar, member_id varchar, address_line varchar, _load_id bigint)"
        )
        con.execute(
            "create table raw.therapists (therapist_id varchar, first_name varchar, last_name varchar, _load_id bigint)"
        )
        con.execute("insert into raw._loads values (1, 'patients', 'patients.csv', ?, '2026-11-01 02:00')", [sha])
        con.execute(
            "insert into raw.patients values ('PT-000123', 'Dana', 'Whitfield', '555-201-3344', "
            "'dana.w@example.com', 'MBR55501', '14 Larch Lane', 1)"
        )
        con.execute("insert into raw.therapists values ('TH-1', 'Morgan', 'Ellery', 1)")
    return path


def _load(raw: Path, table: str, row: tuple) -> None:
    """A new load of `table` holding `row` (its last value is the load id, filled in here)."""
    with duckdb.connect(str(raw)) as con:
        load_id = con.execute("select max(load_id) + 1 from raw._loads").fetchone()[0]
        con.execute(
            "insert into raw._loads values (?, ?, ?, ?, now()::timestamp)",
            [load_id, table, f"{table}.csv", f"s{load_id}"],
        )
        marks = ", ".join("?" for _ in range(len(row) + 1))
        con.execute(f"insert into raw.{table} values ({marks})", [*row, load_id])


def _twin(path: Path, value: str) -> Path:
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.work_queue_candidates (task_id varchar, reason varchar)")
        con.execute("insert into marts.work_queue_candidates values ('T1', ?), ('T2', 'call back tomorrow')", [value])
    return path


def test_a_patient_loaded_after_the_cache_is_found(tmp_path):
    raw, cache = _raw(tmp_path / "practice_raw.duckdb"), tmp_path / "identifiers.duckdb"
    twin = _twin(tmp_path / "twin.duckdb", "referral PT-777001 chased")
    assert verify_deidentified(twin, raw, identifiers=cache)["identifiers"] == "rebuilt"  # a new cache file
    _load(raw, "patients", ("PT-777001", "Ari", "Quell", None, None, None, None))
    with pytest.raises(RuntimeError, match=r"reason: 1 value\(s\) contain a patient patient id") as err:
        verify_deidentified(twin, raw, identifiers=cache)
    assert "PT-777001" not in str(err.value)
    with duckdb.connect(str(cache), read_only=True) as con:  # the cache moved on to the new load
        assert con.execute("select load_id from identifier_state").fetchone() == (2,)
        assert con.execute("select first_load from identifiers where token = 'pt-777001'").fetchone() == (2,)


def test_a_clinician_hired_after_the_cache_may_share_a_patients_name(tmp_path):
    """Professionals are shown by name on purpose; the cache keeps patients' names, and who is a clinician is
    decided when it is read, so a therapist hired tonight is known tonight."""
    raw, cache = _raw(tmp_path / "practice_raw.duckdb"), tmp_path / "identifiers.duckdb"
    twin = _twin(tmp_path / "twin.duckdb", "Seen by Dana Whitfield, PT")
    with pytest.raises(RuntimeError, match="contain a patient name"):
        verify_deidentified(twin, raw, identifiers=cache)  # a patient's name, so far
    _load(raw, "therapists", ("TH-2", "Dana", "Whitfield"))
    stats = verify_deidentified(twin, raw, identifiers=cache)
    assert stats["identifiers"] == "cached" and stats["identifiers_added"] == 0


def test_a_cache_of_another_raw_file_is_rebuilt(tmp_path):
    """A raw file restored or replaced (its load 1 is another file) is read whole: the cache cannot vouch for it."""
    cache = tmp_path / "identifiers.duckdb"
    verify_deidentified(_twin(tmp_path / "twin.duckdb", "ok"), _raw(tmp_path / "a.duckdb"), identifiers=cache)
    other = _raw(tmp_path / "b.duckdb", sha="sha-other")
    with duckdb.connect(str(other)) as con:
        con.execute("update raw.patients set patient_id = 'PT-990001'")
    twin = _twin(tmp_path / "twin.duckdb", "about PT-990001")
    with pytest.raises(RuntimeError, match="contain a patient patient id"):
        verify_deidentified(twin, other, identifiers=cache)
    with duckdb.connect(str(cache), read_only=True) as con:
        assert con.execute("select sha256 from identifier_state").fetchone() == ("sha-other",)
        assert con.execute("select count(*) from identifiers where token = 'pt-000123'").fetchone() == (0,)


def test_a_damaged_cache_file_is_started_again(tmp_path):
    raw, cache = _raw(tmp_path / "practice_raw.duckdb"), tmp_path / "identifiers.duckdb"
    cache.write_bytes(b"not a duckdb file" * 100)
    twin = _twin(tmp_path / "twin.duckdb", "call 555-201-3344")
    with pytest.raises(RuntimeError, match="contain a patient phone"):
        verify_deidentified(twin, raw, identifiers=cache)
    assert verify_deidentified(_twin(twin, "fine"), raw, identifiers=cache)["identifiers"] == "cached"


def test_a_cache_whose_table_is_gone_is_started_again(tmp_path):
    """The file opens and its state says it is current, but its identifiers are missing: rebuilt, never trusted."""
    raw, cache = _raw(tmp_path / "practice_raw.duckdb"), tmp_path / "identifiers.duckdb"
    twin = _twin(tmp_path / "twin.duckdb", "member MBR55501")
    with pytest.raises(RuntimeError, match="contain a patient member id"):
        verify_deidentified(twin, raw, identifiers=cache)
    with duckdb.connect(str(cache)) as con:
        con.execute("drop table identifiers")
    with pytest.raises(RuntimeError, match="contain a patient member id"):
        verify_deidentified(twin, raw, identifiers=cache)
    assert verify_deidentified(_twin(twin, "fine"), raw, identifiers=cache)["identifiers"] == "cached"
