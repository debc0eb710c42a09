"""The twin's value check (ptpulse/core/deid.py identifier_problems) and dates of birth.

It looked for ids, member ids, emails, phones, full names and street addresses only, so a free-text reason naming a
patient by surname and birth date ("Mrs Haynes DOB 07/06/1939 moved to Tucson") passed the build into the
de-identified twin (review of the clinic scope, defect 1). Now two more kinds are refused:

- 'date of birth': any date written as one (beside DOB, d.o.b., date of birth, birthdate, born), whoever it names;
- 'surname and birth date': a word of a patient's surname and that patient's birth date in one value, in any common
  date format.

A bare date is not an identifier: the work queue's reasons quote visit and referral dates, and one equal to some
patient's birth date (a child born that day) must not stop the build. Real DuckDB files, the check the build runs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from ptpulse.core.deid import verify_deidentified


def _raw(path: Path) -> Path:
    """A raw file with one load: one patient, Margaret Haynes, born 1939-07-06, and one therapist."""
    with duckdb.connect(str(path)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw._loads (load_id bigint, source varchar, file varchar, sha256 varchar, "
            "started_at timestamp)"
        )
        con.execute(
            "create table raw.patients (patient_id varchar, first_name varchar, last_name varchar, birth_date date, "
            "phone varchar, email varchar, member_id varchar, address_line varchar, _load_id bigint)"
        )
        con.execute(
            "create table raw.therapists (therapist_id varchar, first_name varchar, last_name varchar, _load_id bigint)"
        )
        con.execute("insert into raw._loads values (1, 'patients', 'patients.csv', 'sha-1', '2026-11-01 02:00')")
        con.execute(
            "insert into raw.patients values ('PT-000123', 'Margaret', 'Haynes', '1939-07-06', '555-201-3344', "
            "'m.haynes@example.com', 'MBR55501', '14 Larch Lane', 1)"
        )
        con.execute("insert into raw.therapists values ('TH-1', 'Morgan', 'Ellery', 1)")
    return path


def _twin(path: Path, value: str) -> Path:
    """A twin whose funnel holds `value` as an exit reason, beside the text the marts legitimately hold."""
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.referral_funnel (referral_id varchar, patient_key varchar, exit_reason varchar)"
        )
        con.execute("insert into marts.referral_funnel values ('RF1', 'k9f2', ?), ('RF2', 'k771', 'cost')", [value])
        con.execute("create table marts.work_queue_candidates (task_id varchar, reason varchar)")
        con.execute(
            "insert into marts.work_queue_candidates values ('eval_no_show_rebook:RF3', 'Missed the initial "
            "evaluation on 1939-07-06 14:45 (referral of the last 30 days): call to rebook.')"
        )
        con.execute("create table marts.labels (domain varchar, code varchar, label varchar)")
        con.execute(
            "insert into marts.labels values ('attribution_model', 'position', 'Position-based (40/20/40)'), "
            "('icd10_chapter', 'O', 'Pregnancy and childbirth')"
        )
    return path


@pytest.mark.parametrize(
    "value,kinds",
    [
        (
            "Mrs Haynes DOB 07/06/1939 moved to Tucson - daughter Ann called",
            ["date of birth", "surname and birth date"],
        ),
        ("pt unreachable, dob: 1950-02-11", ["date of birth"]),  # no patient of raw's: still a date of birth
        ("born July 6, 1939 - moved away", ["date of birth"]),
        ("Haynes (6 Jul 1939) moved to Tucson", ["surname and birth date"]),
        ("haynes 7/6/39 went elsewhere", ["surname and birth date"]),
        ("Called Mrs. Haynes on 1939-07-06", ["surname and birth date"]),
    ],
)
def test_a_date_of_birth_in_a_value_is_refused(tmp_path, value, kinds):
    raw, twin = _raw(tmp_path / "practice_raw.duckdb"), _twin(tmp_path / "twin.duckdb", value)
    with pytest.raises(RuntimeError) as err:
        verify_deidentified(twin, raw)
    message = str(err.value)
    for kind in kinds:
        assert f"marts.referral_funnel.exit_reason: 1 value(s) contain a patient {kind}" in message, message
    assert "Haynes" not in message and "1939" not in message  # the column and kind, never the value


@pytest.mark.parametrize(
    "value",
    [
        "other",
        "Haynes moved to Tucson",  # a surname alone is not refused (it is a common word too)
        "Haynes called back on 2026-10-26",  # a surname with another date
        "Smith born 1939",  # a year is not a date
        "called 07/06/1939 about another patient",  # a bare date that is a patient's birth date
    ],
)
def test_legitimate_dates_and_words_pass(tmp_path, value):
    """The marts' own dated text (a work-queue reason quoting a day equal to a patient's birth date), labels with
    slashes and 'childbirth', and a bare date or a surname alone pass: the check raises nothing, and it did read
    every text value (14 distinct: the twin's 7 text columns, this value among them), not pass by scanning none."""
    raw, twin = _raw(tmp_path / "practice_raw.duckdb"), _twin(tmp_path / "twin.duckdb", value)
    scanned = verify_deidentified(twin, raw)
    assert scanned == {"mode": "full", "identifiers": "full", "values_scanned": 14}, scanned
