"""Each contract rule quarantines a broken row with the right rule, column, line and a useful detail."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from ingest_helpers import contract, example_row, query, table_count, write_csv

from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts

CASES = [
    # source, column, bad value, rule
    ("clinics", "city", "", "required"),
    ("clinics", "city", "   ", "required"),
    ("clinics", "city", "\t \t", "required"),  # whitespace of any kind is empty
    ("scheduling_events", "event_at", "2024-13-45", "invalid_timestamp"),
    ("scheduling_events", "event_at", "31/02/2024", "invalid_timestamp"),
    ("scheduling_events", "event_at", "2024-03-15 09:30:00+02", "invalid_timestamp"),
    ("clinics", "opened_on", "31/02/2024", "invalid_date"),
    ("clinics", "opened_on", "2024-02-30", "invalid_date"),
    ("scheduling_events", "duration_min", "1.5", "invalid_integer"),
    ("scheduling_events", "duration_min", "forty", "invalid_integer"),
    ("charges", "charge_usd", "$12", "invalid_decimal"),
    # plain decimals only: DuckDB's cast alone reads these as 1250, 1000, 10 and 10
    ("charges", "charge_usd", "1_250", "invalid_decimal"),
    ("charges", "charge_usd", "1e3", "invalid_decimal"),
    ("charges", "charge_usd", "1_0", "invalid_decimal"),
    ("charges", "charge_usd", "1e1", "invalid_decimal"),
    ("scheduling_events", "duration_min", "1_0", "invalid_integer"),
    ("scheduling_events", "duration_min", "6e1", "invalid_integer"),
    ("payers", "requires_auth", "yes", "invalid_boolean"),
    ("scheduling_events", "event_type", "showed_up", "not_accepted"),
    ("patients", "sex", "female", "not_accepted"),
    ("clinics", "state", "Texas", "pattern_mismatch"),
    ("referring_physicians", "physician_id", "12345", "pattern_mismatch"),
    ("scheduling_events", "duration_min", "2", "below_min"),
    ("scheduling_events", "duration_min", "241", "above_max"),
    ("charges", "charge_usd", "-0.01", "below_min"),
    ("clinics", "opened_on", "1949-12-31", "below_min"),
    ("scheduling_events", "event_at", "1899-12-31 23:59:59", "below_min"),
    # date sanity relative to the load: an event recorded in 2099 would become the warehouse's "now"
    ("scheduling_events", "event_at", "2099-01-01 09:00:00", "above_max"),
    ("patients", "birth_date", "2099-01-01", "above_max"),
    ("claims", "service_date", "2099-01-01", "above_max"),
    # an unknown CPT or CARC code is a warning, not a quarantine: tests/ingestion/test_codes.py
]


@pytest.mark.parametrize("source, column, value, rule", CASES)
def test_each_rule_quarantines_with_rule_and_column(home, exports, source, column, value, rule):
    rows = [example_row(source), example_row(source, **{column: value}), example_row(source)]
    write_csv(exports, f"{source}.csv", rows)

    [result] = ingest([exports], home)

    assert (result.status, result.rows_read, result.rows_landed, result.rows_quarantined) == ("loaded", 3, 2, 1)
    [(line, got_rule, got_column, detail, record)] = query(
        home, "SELECT line, rule, column_name, detail, record FROM raw._quarantine"
    )
    assert (line, got_rule, got_column) == (3, rule, column)
    assert detail.startswith(f"{column}: ")
    assert json.loads(record)[column] == (value.strip() if value else None)  # values are staged trimmed
    assert table_count(home, source) == 2


def test_a_row_reports_the_first_rule_in_rule_order(home, exports):
    # Required comes before type, whatever the column order: city (required) beats opened_on (type).
    write_csv(exports, "clinics.csv", [example_row("clinics", opened_on="yesterday", city="")])
    ingest([exports], home)
    assert query(home, "SELECT rule, column_name FROM raw._quarantine") == [("required", "city")]


def test_phi_values_are_never_echoed_in_details(home, exports):
    write_csv(exports, "patients.csv", [example_row("patients", birth_date="03/04/1961", zip="ABCDE")])
    ingest([exports], home)
    [(rule, column, detail)] = query(home, "SELECT rule, column_name, detail FROM raw._quarantine")
    assert (rule, column) == ("invalid_date", "birth_date")
    assert "03/04/1961" not in detail


def test_details_name_the_column_and_the_fix_never_the_value(home, exports):
    # details reach the data-quality pages: no value, PHI or not, is ever quoted (the row is in `record`)
    write_csv(exports, "scheduling_events.csv", [example_row("scheduling_events", event_at="31/02/2024")])
    ingest([exports], home)
    [(detail,)] = query(home, "SELECT detail FROM raw._quarantine")
    assert detail == "event_at: the value is not a valid timestamp; write YYYY-MM-DD HH:MM:SS"


def test_malformed_lines_are_quarantined_and_line_numbers_stay_true(home, exports):
    good = [example_row("clinics") for _ in range(4)]
    path = write_csv(exports, "clinics.csv", good)
    lines = path.read_text().splitlines()
    lines.insert(2, "CL999,Too,few")  # becomes line 3
    lines.insert(4, lines[1].replace("Main", "x") + ",extra,fields")  # line 5: too many fields
    path.write_text("\n".join(lines) + "\n")

    [result] = ingest([exports], home)

    assert (result.rows_read, result.rows_landed, result.rows_quarantined, result.rows_duplicate) == (6, 4, 2, 0)
    assert query(home, "SELECT line, rule FROM raw._quarantine ORDER BY line") == [
        (3, "malformed_row"),
        (5, "malformed_row"),
    ]
    landed = query(home, "SELECT clinic_id, _line FROM raw.clinics ORDER BY _line")
    expected_lines = [2, 4, 6, 7]
    assert landed == [(row["clinic_id"], line) for row, line in zip(good, expected_lines, strict=False)]
    detail = query(home, "SELECT detail FROM raw._quarantine WHERE line = 3")[0][0]
    assert "fewer fields" in detail


def test_valid_rows_of_every_source_land_typed(home, exports):
    for source in load_contracts():
        write_csv(exports, f"{source}.csv", [example_row(source), example_row(source)])
    results = ingest([exports], home)
    assert len(results) == len(load_contracts())
    for r in results:
        assert (r.status, r.rows_landed, r.rows_quarantined) == ("loaded", 2, 0), (r.file, r.message)


def test_values_land_with_their_contract_types(home, exports):
    write_csv(
        exports,
        "payers.csv",
        [
            example_row(
                "payers", payer_id="PY1", requires_auth="FALSE", auth_visit_limit="", updated_at="2024-05-01T08:15:00"
            )
        ],
    )
    write_csv(
        exports, "charges.csv", [example_row("charges", charge_usd="120.5", units="4", service_date="2024-05-02")]
    )
    ingest([exports], home)
    assert query(home, "SELECT requires_auth, auth_visit_limit, updated_at FROM raw.payers") == [
        (False, None, datetime(2024, 5, 1, 8, 15))
    ]
    assert query(home, "SELECT charge_usd, units, service_date FROM raw.charges") == [
        (Decimal("120.50"), 4, date(2024, 5, 2))
    ]
    types = dict(query(home, "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'charges'"))
    assert types["charge_usd"] == "DECIMAL(18,2)" and types["_row_hash"] == "UBIGINT"
    assert types["_load_id"] == "BIGINT" and types["_line"] == "BIGINT"


def test_missing_optional_column_lands_null_and_extra_columns_are_ignored(home, exports):
    columns = [c for c in contract("clinics").column_names if c != "treatment_tables"] + ["note"]
    row = dict(example_row("clinics"), note="hello")
    write_csv(exports, "clinics.csv", [row], columns=columns)
    [result] = ingest([exports], home)
    assert result.status == "loaded" and result.rows_landed == 1
    assert "treatment_tables" in result.message and "note" in result.message
    assert query(home, "SELECT treatment_tables FROM raw.clinics") == [(None,)]


def test_line_numbers_with_many_malformed_lines_in_a_large_file(home, exports):
    # Runs of consecutive malformed lines, spread over several DuckDB chunks.
    lines = ["touch_id,referral_id,channel,campaign,touched_at"]
    broken = set()
    for n in range(2, 40002):
        if n % 997 in (0, 1) or n % 5003 == 0:
            lines.append(f"BROKEN{n},only,three")
            broken.add(n)
        else:
            lines.append(f"T{n},R{n},social,,2024-01-01 00:00:00")
    (exports / "marketing_touches.csv").write_text("\n".join(lines) + "\n")

    [result] = ingest([exports], home)

    assert (result.rows_read, result.rows_quarantined) == (40000, len(broken))
    assert {line for (line,) in query(home, "SELECT line FROM raw._quarantine")} == broken
    wrong = query(home, "SELECT count(*) FROM raw.marketing_touches WHERE _line != CAST(substr(touch_id, 2) AS BIGINT)")
    assert wrong == [(0,)]
