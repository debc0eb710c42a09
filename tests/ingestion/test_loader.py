"""Loader behaviour: counts, idempotency, versions, refusals, atomicity, discovery, progress."""

from __future__ import annotations

import codecs
from decimal import Decimal

import duckdb
import pytest
from ingest_helpers import contract, csv_text, example_row, query, table_count, write_csv

import ingestion.loader as loader
from ingestion.loader import LoadResult, assert_counts, ingest
from ingestion.validation import row_hash_rule


def counts(result: LoadResult) -> tuple[int, int, int, int]:
    return result.rows_read, result.rows_landed, result.rows_quarantined, result.rows_duplicate


def assert_invariant(results: list[LoadResult]) -> None:
    for r in results:
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate, r


def test_counts_invariant_with_every_outcome_in_one_file(home, exports):
    a, b = example_row("intake_events"), example_row("intake_events")
    rows = [a, b, dict(a), example_row("intake_events", event_type="nope"), example_row("intake_events")]
    write_csv(exports, "intake_events.csv", rows)
    [result] = ingest([exports], home)
    assert counts(result) == (5, 3, 1, 1)
    assert_invariant([result])
    assert query(home, "SELECT rows_read, rows_landed, rows_quarantined, rows_duplicate, status FROM raw._loads") == [
        (5, 3, 1, 1, "loaded")
    ]


def test_assert_counts_rejects_a_broken_invariant():
    with pytest.raises(AssertionError, match="rows_read 3"):
        assert_counts(LoadResult(load_id=1, file="x.csv", rows_read=3, rows_landed=1))


def test_reingesting_the_same_file_is_skipped_and_audited(home, exports):
    write_csv(exports, "clinics.csv", [example_row("clinics") for _ in range(3)])
    first = ingest([exports], home)
    second = ingest([exports], home)
    assert [r.status for r in first + second] == ["loaded", "skipped_same_hash"]
    assert counts(second[0]) == (0, 0, 0, 0)
    assert second[0].sha256 == first[0].sha256 and "byte-identical" in second[0].message
    assert table_count(home, "clinics") == 3
    assert [r[0] for r in query(home, "SELECT status FROM raw._loads ORDER BY load_id")] == [
        "loaded",
        "skipped_same_hash",
    ]


def test_same_rows_in_a_new_file_are_duplicates(home, exports):
    rows = [example_row("scheduling_events") for _ in range(3)]
    write_csv(exports, "scheduling_events_jan.csv", rows)
    ingest([exports], home)
    resend = write_csv(exports / "later", "scheduling_events_feb.csv", rows + [example_row("scheduling_events")])
    [result] = ingest([resend], home)
    assert counts(result) == (4, 1, 0, 3)
    assert table_count(home, "scheduling_events") == 4


def test_resent_key_with_different_content_lands_as_a_new_version(home, exports):
    original = example_row("claims", claim_id="CLM1", billed_usd="100.00", submitted_at="2024-03-01 10:00:00")
    write_csv(exports, "claims_v1.csv", [original])
    ingest([exports / "claims_v1.csv"], home)
    corrected = dict(original, billed_usd="120.00", submitted_at="2024-03-05 10:00:00")
    write_csv(exports, "claims_v2.csv", [corrected, original])
    [result] = ingest([exports / "claims_v2.csv"], home)
    assert counts(result) == (2, 1, 0, 1)
    versions = query(home, "SELECT _load_id, billed_usd FROM raw.claims WHERE claim_id = 'CLM1' ORDER BY _load_id")
    assert [(load, str(usd)) for load, usd in versions] == [(1, "100.00"), (2, "120.00")]


def test_same_key_twice_in_one_file_keeps_both_versions(home, exports):
    v1 = example_row("patients", patient_id="P1", phone="555-0100", updated_at="2024-01-01 00:00:00")
    v2 = dict(v1, phone="555-0199", updated_at="2024-02-01 00:00:00")
    write_csv(exports, "patients.csv", [v1, v2, dict(v2)])
    [result] = ingest([exports], home)
    assert counts(result) == (3, 2, 0, 1)
    assert query(home, "SELECT _line FROM raw.patients ORDER BY _line") == [(2,), (3,)]


CURRENT_CHARGE = (
    "SELECT charge_usd FROM raw.charges WHERE charge_id = 'CH1' "
    "ORDER BY posted_at DESC NULLS LAST, _load_id DESC, _line DESC LIMIT 1"  # dbt's merge_latest order
)


def test_a_row_that_goes_back_to_an_earlier_version_lands_and_is_current(home, exports):
    v1 = example_row("charges", charge_id="CH1", charge_usd="195.00", posted_at="2024-03-01 10:00:00")
    v2 = dict(v1, charge_usd="205.00")  # a correction: the event time of a charge does not move
    new = example_row("charges")
    days = [[v1], [v2], [v1, new], [new, v1]]  # the last re-sends the current versions
    results = [ingest([write_csv(exports / f"day{i}", "charges.csv", rows)], home)[0] for i, rows in enumerate(days)]
    assert [counts(r) for r in results] == [(1, 1, 0, 0), (1, 1, 0, 0), (2, 2, 0, 0), (2, 0, 0, 2)]
    assert [str(usd) for (usd,) in query(home, CURRENT_CHARGE)] == ["195.00"]


def test_versions_inside_one_file_land_in_their_order(home, exports):
    v1 = example_row("charges", charge_id="CH1", charge_usd="195.00", posted_at="2024-03-01 10:00:00")
    v2 = dict(v1, charge_usd="205.00")
    [result] = ingest([write_csv(exports, "charges.csv", [v1, v2, dict(v1), dict(v1)])], home)
    assert counts(result) == (4, 3, 0, 1)  # v1, v2, v1 again (the file's last word); the repeat of it changes nothing
    assert [str(usd) for (usd,) in query(home, CURRENT_CHARGE)] == ["195.00"]


def test_a_file_with_several_versions_of_a_key_sent_again_lands_nothing(home, exports):
    v1 = example_row("charges", charge_id="CH1", charge_usd="195.00", posted_at="2024-03-01 10:00:00")
    v2 = dict(v1, charge_usd="205.00")
    rows = [v1, v2, dict(v1), dict(v1)]
    first = ingest([write_csv(exports / "day1", "charges.csv", rows)], home)[0]
    again = [  # new files (not byte-identical): the rows themselves are compared
        ingest([write_csv(exports / f"day{i}", "charges.csv", [*rows, example_row("charges")])], home)[0]
        for i in (2, 3)
    ]
    assert [counts(r) for r in [first, *again]] == [(4, 3, 0, 1), (5, 1, 0, 4), (5, 1, 0, 4)]
    assert table_count(home, "charges") == 5
    assert [str(usd) for (usd,) in query(home, CURRENT_CHARGE)] == ["195.00"]
    # the same key again, now ending on v2: the file's last word changed; v1 is still current before it (a
    # duplicate), v2 lands and is current
    [changed] = ingest([write_csv(exports / "day4", "charges.csv", [v1, v2])], home)
    assert counts(changed) == (2, 1, 0, 1)
    assert [str(usd) for (usd,) in query(home, CURRENT_CHARGE)] == ["205.00"]


def resaved(row: dict[str, str]) -> dict[str, str]:
    """The row as a spreadsheet or another export tool writes it: 195 for 195.00, a T in the timestamp."""
    return dict(
        row,
        charge_usd=str(float(row["charge_usd"])).rstrip("0").rstrip("."),
        posted_at=row["posted_at"].replace(" ", "T"),
    )


def test_a_resaved_export_with_the_same_values_lands_nothing(home, exports):
    rows = [example_row("charges", charge_usd=f"{100 + i}.00", posted_at="2024-03-01 10:00:00") for i in range(3)]
    first = ingest([write_csv(exports / "day1", "charges.csv", rows)], home)[0]
    changed = dict(rows[2], charge_usd="150.50")
    again = ingest([write_csv(exports / "day2", "charges.csv", [resaved(r) for r in [*rows[:2], changed]])], home)[0]
    assert [counts(r) for r in (first, again)] == [(3, 3, 0, 0), (3, 1, 0, 2)]  # only the changed amount lands
    assert query(home, "SELECT count(*), sum(charge_usd) FROM raw.charges")[0] == (4, Decimal("453.50"))


def test_rows_landed_under_the_text_hash_rule_are_rehashed_once(home, exports):
    """raw.duckdb written before the hash was over typed values: its hashes are recomputed in the next load of
    the table, so a re-saved export of rows landed then is still recognised."""
    rows = [example_row("charges", charge_usd="195.00", posted_at="2024-03-01 10:00:00") for _ in range(2)]
    ingest([write_csv(exports / "day1", "charges.csv", rows)], home)
    con = duckdb.connect(str(home.raw_db))
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    table = f'"{catalog}".raw.charges'
    typed = con.execute(f"SELECT list(_row_hash ORDER BY _line) FROM {table}").fetchone()[0]
    text_hash = "hash(" + ", ".join(f"nullif(CAST({c} AS VARCHAR), '')" for c in ("charge_id", "charge_usd")) + ")"
    con.execute(f"UPDATE {table} SET _row_hash = {text_hash}")  # any hash unlike the typed one
    con.execute(f"COMMENT ON TABLE {table} IS NULL")
    con.close()
    [again] = ingest([write_csv(exports / "day2", "charges.csv", [resaved(r) for r in rows])], home)
    assert counts(again) == (2, 0, 0, 2)
    assert query(home, "SELECT list(_row_hash ORDER BY _line) FROM raw.charges")[0][0] == typed
    rule = query(home, "SELECT comment FROM duckdb_tables() WHERE table_name = 'charges'")[0][0]
    assert rule == row_hash_rule(contract("charges")) and rule.startswith("row_hash: typed values")


def test_composite_natural_key_with_a_date(home, exports):
    row = example_row("marketing_spend", month="2024-01-01", channel="social", spend_usd="500.00")
    write_csv(exports, "marketing_spend_1.csv", [row])
    write_csv(exports, "marketing_spend_2.csv", [row, dict(row, channel="events")])
    results = ingest([exports], home)
    assert [counts(r) for r in results] == [(1, 1, 0, 0), (2, 1, 0, 1)]


REFUSALS = {
    "binary": (b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 4, "binary"),
    "empty": (b"", "empty"),
    "utf16": ("clinic_id,clinic_name\nCL1,Main\n".encode("utf-16"), "UTF-16"),
    "latin1_header": ("clinic_id,clinic_name,café\n".encode("latin-1"), "UTF-8"),
    "semicolons": (b"clinic_id;clinic_name;city\nCL1;Main;Austin\n", "comma-separated"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_unreadable_files_are_refused_and_others_still_load(home, exports, kind):
    content, fragment = REFUSALS[kind]
    (exports / "clinics_bad.csv").write_bytes(content)
    write_csv(exports, "payers.csv", [example_row("payers")])
    results = {r.file.rsplit("/", 1)[-1]: r for r in ingest([exports], home)}
    bad, good = results["clinics_bad.csv"], results["payers.csv"]
    assert bad.status == "refused" and fragment in bad.message and "clinics_bad.csv" in bad.message
    assert counts(bad) == (0, 0, 0, 0)
    assert good.status == "loaded" and good.rows_landed == 1
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]
    assert query(home, "SELECT status FROM raw._loads WHERE file LIKE '%clinics_bad.csv'") == [("refused",)]


def test_latin1_bytes_in_the_rows_refuse_the_whole_file(home, exports):
    rows = [example_row("clinics") for _ in range(3)]
    text = csv_text(rows).replace(rows[1]["clinic_name"], "Clínica Señor")
    (exports / "clinics.csv").write_bytes(text.encode("latin-1"))
    [result] = ingest([exports], home)
    assert result.status == "refused"
    assert "line 3 is not valid UTF-8" in result.message and "iconv" in result.message
    assert not _has_table(home, "clinics")


def _has_table(home, table: str) -> bool:
    return bool(query(home, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table])[0][0])


def test_missing_required_column_is_refused_with_the_fix(home, exports):
    rows = [example_row("clinics")]
    write_csv(exports, "clinics.csv", rows, columns=[c for c in rows[0] if c != "timezone"])
    [result] = ingest([exports], home)
    assert result.status == "refused"
    assert "missing required column(s) timezone" in result.message
    assert "ingestion/contracts/clinics.yml" in result.message


def test_unknown_source_and_missing_path_are_refused(home, exports, tmp_path):
    write_csv(exports, "appointments.csv", [{"a": "1"}])
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    results = ingest([exports, tmp_path / "nope.csv"], home)
    by_name = {r.file.rsplit("/", 1)[-1]: r for r in results}
    assert by_name["appointments.csv"].status == "refused"
    assert "matches no source contract" in by_name["appointments.csv"].message
    assert by_name["nope.csv"].status == "refused" and "does not exist" in by_name["nope.csv"].message
    assert by_name["clinics.csv"].status == "loaded"


def test_header_only_file_loads_zero_rows(home, exports):
    (exports / "clinics.csv").write_text(",".join(example_row("clinics")) + "\n")
    [result] = ingest([exports], home)
    assert result.status == "loaded" and counts(result) == (0, 0, 0, 0)


def test_utf8_bom_and_crlf_are_accepted(home, exports):
    text = csv_text([example_row("clinics"), example_row("clinics")]).replace("\n", "\r\n")
    (exports / "clinics.csv").write_bytes(codecs.BOM_UTF8 + text.encode())
    [result] = ingest([exports], home)
    assert (result.status, result.rows_landed, result.rows_quarantined) == ("loaded", 2, 0)


def test_a_crash_mid_file_rolls_everything_of_it_back(home, exports, monkeypatch):
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    ingest([exports], home)
    before = query(home, "SELECT * FROM raw.clinics")
    rows = [example_row("clinics"), example_row("clinics", state="Texas")]
    write_csv(exports, "clinics_2.csv", rows)

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loader, "_insert_rows", explode)  # after the quarantine insert, before landing
    [failed] = ingest([exports / "clinics_2.csv"], home)  # recorded, not raised: later files would go on
    assert failed.status == "failed" and "RuntimeError" in failed.message and "disk on fire" not in failed.message

    assert query(home, "SELECT * FROM raw.clinics") == before
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]
    assert query(home, "SELECT status, rows_landed FROM raw._loads ORDER BY load_id") == [("loaded", 1), ("failed", 0)]

    monkeypatch.undo()  # the failed load is not a success: the same file loads on the next run
    [retry] = ingest([exports / "clinics_2.csv"], home)
    assert counts(retry) == (2, 1, 1, 0)


def _rewritten_after(real, path, content: bytes):
    """`real` (the loader's fingerprint pass), after which the exporter rewrites `path` (truncate, then write)."""

    def fingerprint_then_rewrite(target):
        out = real(target)
        if target == path:
            path.write_bytes(content)
        return out

    return fingerprint_then_rewrite


def test_a_file_rewritten_while_it_is_read_is_refused_and_the_complete_resend_lands(home, exports, monkeypatch):
    """The sha256 (the skip key of every re-send) and the staged rows must come from the same bytes: a file
    rewritten between the two reads is refused, so the complete file, sent again, lands every row (before: half
    the rows landed as `loaded` and the complete re-send was skipped as byte-identical, the rest lost)."""
    rows = [example_row("scheduling_events") for _ in range(40)]
    path = write_csv(exports, "scheduling_events.csv", rows)
    full = path.read_bytes()
    half = b"".join(full.splitlines(keepends=True)[:21])
    monkeypatch.setattr(loader, "scan", _rewritten_after(loader.scan, path, half))
    [first] = ingest([path], home)
    assert first.status == "refused" and "changed while it was being read" in first.message
    assert not _has_table(home, "scheduling_events") or table_count(home, "scheduling_events") == 0
    monkeypatch.undo()
    path.write_bytes(full)  # the exporter finished
    [again] = ingest([path], home)
    assert again.status == "loaded" and counts(again) == (40, 40, 0, 0)
    assert table_count(home, "scheduling_events") == 40


def test_an_interop_file_rewritten_while_it_is_read_is_refused(home, exports, monkeypatch):
    """The same for FHIR / X12: the digest and the parse read one version of the file, or nothing lands."""
    import json

    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "birthDate": "1980-01-01",
        "gender": "female",
        "name": [{"family": "Alpha", "given": ["Ann"]}],
        "meta": {"lastUpdated": "2024-01-01T10:00:00Z"},
    }
    path = exports / "patient.json"
    path.write_text(json.dumps(patient))
    full = path.read_bytes()
    monkeypatch.setattr(loader, "file_digest", _rewritten_after(loader.file_digest, path, full + b" "))
    results = ingest([path], home)
    assert [r.status for r in results] == ["refused"] and "changed while it was being read" in results[0].message
    monkeypatch.undo()
    path.write_bytes(full)
    assert {r.status for r in ingest([path], home)} == {"loaded"}


def test_truth_folders_are_skipped_and_order_is_sorted(home, exports):
    write_csv(exports / "truth", "clinics.csv", [example_row("clinics")])
    write_csv(exports / "b", "payers.csv", [example_row("payers")])
    write_csv(exports / "a", "clinics.csv", [example_row("clinics")])
    (exports / "export.txt").write_text("not a csv")
    (exports / "README.md").write_text("# what the vendor sent")
    seen = []
    results = ingest([exports], home, progress=lambda step, done, total: seen.append((step, done, total)))
    # every file of a folder is audited: export.txt (not CSV, FHIR or X12) is refused with the reason; the
    # vendor's README is documentation, skipped with an audit row rather than failing the call
    names = [r.file.split("exports/")[1] for r in results]
    assert names == ["README.md", "a/clinics.csv", "b/payers.csv", "export.txt"]
    assert [r.status for r in results] == ["skipped_not_data", "loaded", "loaded", "refused"]
    assert "not an X12 interchange starting with ISA" in results[3].message
    assert "documentation" in results[0].message
    assert [r.load_id for r in results] == [1, 2, 3, 4]
    assert seen == [
        ("README.md", 0, 4),
        ("clinics.csv", 1, 4),
        ("payers.csv", 2, 4),
        ("export.txt", 3, 4),
        ("done", 4, 4),
    ]


def test_line_numbers_follow_file_order_across_many_chunks(home, exports):
    # Enough rows for DuckDB to read and insert in parallel chunks; _line must still be the file line.
    path = exports / "marketing_touches.csv"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT 'T' || lpad(i::VARCHAR, 7, '0') AS touch_id, 'R' || i AS referral_id,
                        'social' AS channel, NULL AS campaign, '2024-01-01 00:00:00' AS touched_at
                        FROM range(300000) t(i)) TO '{path}' (HEADER)""")
    con.close()
    [result] = ingest([exports], home)
    assert result.rows_landed == 300000
    mismatches = query(
        home,
        """SELECT count(*) FROM raw.marketing_touches
                                WHERE _line != CAST(substr(touch_id, 2) AS BIGINT) + 2""",
    )
    assert mismatches == [(0,)]


def test_a_column_added_to_a_contract_is_added_to_the_raw_table(home, exports):
    old = example_row("clinics")
    write_csv(exports, "clinics_1.csv", [old])
    ingest([exports / "clinics_1.csv"], home)
    con = duckdb.connect(str(home.raw_db))
    con.execute("ALTER TABLE raw.raw.clinics DROP COLUMN treatment_tables")  # as if created by an older contract
    con.execute("UPDATE raw.raw.clinics SET _row_hash = 1")  # hashed over the older contract's columns
    con.execute("COMMENT ON TABLE raw.raw.clinics IS 'row_hash: typed values v1 over an older column list'")
    con.close()
    write_csv(exports, "clinics_2.csv", [example_row("clinics", treatment_tables="7")])
    [result] = ingest([exports / "clinics_2.csv"], home)
    assert result.rows_landed == 1
    assert query(home, "SELECT treatment_tables FROM raw.clinics ORDER BY _load_id") == [(None,), (7,)]
    # the old row re-sent without the new column's value changes nothing: rehashed over the new column list
    [resent] = ingest([write_csv(exports / "again", "clinics.csv", [dict(old, treatment_tables="")])], home)
    assert counts(resent) == (1, 0, 0, 1)


def test_messages_never_contain_row_values(home, exports):
    secret = "Zebediah-Quartermain"
    rows = [example_row("patients", first_name=secret, birth_date="not a date")]
    write_csv(exports, "patients.csv", rows)
    write_csv(exports, "patients_nokey.csv", rows, columns=[c for c in rows[0] if c != "patient_id"])
    (exports / "patients_malformed.csv").write_text(",".join(rows[0]) + "\n" + f'P1,{secret},"unterminated\n')
    results = ingest([exports], home)
    for r in results:
        assert secret not in r.message
    for (detail,) in query(home, "SELECT detail FROM raw._quarantine"):
        assert secret not in detail


def test_duckdb_errors_are_reduced_to_a_fixed_problem_and_line():
    # DuckDB quotes the line (and the path) in its messages: only a fixed problem and the number pass
    error = duckdb.InvalidInputException("CSV Error on Line: 4\nOriginal Line: P1,Jane,Doe\nmore")
    assert loader._csv_problem(error) == "the CSV reader stopped at line 4 (InvalidInputException)"
    error = duckdb.InvalidInputException(
        "Invalid Input Error: The CSV Parser state machine reached an invalid "
        "state.\n  file = /home/jane.doe/patients.csv\nOriginal Line: Jane"
    )
    problem = loader._csv_problem(error)
    assert "unbalanced double quotes" in problem and "jane" not in problem.lower()


# --- CSV shapes real exports have: quoted line breaks, header case, malformed columns, money precision ---------


def test_quoted_line_breaks_land_in_used_and_unused_columns_with_true_lines(home, exports):
    """A multi-line address (a contract column) and a multi-line note (a column the contract does not use) are
    quoted values, not stray quotes: every row lands, the break is kept, and later rows keep their lines."""
    rows = [example_row("patients", notes="") for _ in range(5)]
    rows[1]["address_line"] = "123 Main St\nApt 4"
    rows[2]["notes"] = "called twice,\nleft a message\nno answer"
    (exports / "patients.csv").write_text(
        csv_text(rows, [*rows[0]]).replace("\n", "\r\n"), encoding="utf-8", newline=""
    )
    [result] = ingest([exports], home)
    assert result.status == "loaded" and counts(result) == (5, 5, 0, 0), result.message
    landed = query(home, "SELECT patient_id, address_line, _line FROM raw.patients ORDER BY _line")
    assert [line for _, _, line in landed] == [2, 3, 5, 8, 9]  # the header is line 1; records at 3-4 and 5-7
    assert landed[1][:2] == (rows[1]["patient_id"], "123 Main St\r\nApt 4")
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]


def test_a_stray_quote_that_swallows_the_next_row_is_quarantined_even_in_an_unused_column(home, exports):
    """The protection stays: a quote opened in an ignored column and closed on the next line at the same field
    hides a whole row inside one value; that record is quarantined with its first line, never landed."""
    rows = [example_row("patients", notes="n") for _ in range(4)]
    lines = csv_text(rows, [*rows[0]]).splitlines()
    lines[2] = lines[2][: -len(",n")] + ',"n'  # line 3: the last field opens a quote ...
    lines[3] = lines[3] + '"'  # ... closed at the end of line 4: row 3 is inside the value
    (exports / "patients.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = ingest([exports], home)
    assert counts(result) == (3, 2, 1, 0)
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine") == [(3, "multiline_record", None)]
    assert [r[0] for r in query(home, "SELECT _line FROM raw.patients ORDER BY _line")] == [2, 5]
    [detail] = query(home, "SELECT detail FROM raw._quarantine")[0]
    assert "stray double quote" in detail and rows[2]["first_name"] not in detail


def test_native_header_names_match_trimmed_and_in_any_case(home, exports):
    rows = [example_row("patients") for _ in range(2)]
    names = [*rows[0]]
    shouted = [f" {n.upper()} " if i % 2 else n.title() for i, n in enumerate(names)]
    text = csv_text(rows, names).split("\n", 1)[1]
    (exports / "patients.csv").write_text(",".join(shouted) + "\n" + text, encoding="utf-8")
    [result] = ingest([exports], home)
    assert result.status == "loaded" and counts(result) == (2, 2, 0, 0), result.message
    assert "not in the contract" not in result.message
    assert query(home, "SELECT patient_id, first_name FROM raw.patients ORDER BY _line") == [
        (r["patient_id"], r["first_name"]) for r in rows
    ]


def test_two_header_names_that_differ_only_in_case_refuse_the_file(home, exports):
    rows = [example_row("patients", Patient_ID="P-OTHER")]
    write_csv(exports, "patients.csv", rows)
    [result] = ingest([exports], home)
    assert result.status == "refused"
    assert "repeats the column(s) patient_id (patient_id written in different upper/lower case" in result.message
    assert "P-OTHER" not in result.message and "patients.csv" in result.message


def test_a_malformed_row_names_the_header_column_not_a_position(home, exports):
    rows = [example_row("patients") for _ in range(2)]
    lines = csv_text(rows).splitlines()
    lines[2] = lines[2].rsplit(",", 2)[0]  # the last two fields (created_at, updated_at) are missing
    (exports / "patients.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = ingest([exports], home)
    assert counts(result) == (2, 1, 1, 0)
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine") == [(3, "malformed_row", "created_at")]


def test_a_line_over_the_readers_maximum_gets_the_line_size_message(home, exports):
    rows = [example_row("patients") for _ in range(2)]
    rows[0]["address_line"] = "C" * 2_500_000
    write_csv(exports, "patients.csv", rows)
    [result] = ingest([exports], home)
    assert counts(result) == (2, 1, 1, 0)
    assert query(home, "SELECT line, rule, detail FROM raw._quarantine") == [
        (2, "malformed_row", "the line is longer than the CSV reader's maximum line size")
    ]


def test_money_with_more_decimals_than_the_column_holds_is_quarantined_not_rounded(home, exports):
    amounts = ["1.005", "1.500", "7.25", "0.1", "3.0001", "410.20000000000005", "12.3499999999"]
    write_csv(exports, "charges.csv", [example_row("charges", charge_usd=a) for a in amounts])
    [result] = ingest([exports], home)
    assert counts(result) == (7, 5, 2, 0)
    assert query(home, "SELECT charge_usd::VARCHAR FROM raw.charges ORDER BY _line") == [
        ("1.50",),
        ("7.25",),
        ("0.10",),
        ("410.20",),  # binary floating-point noise (a float written out) is not a lost decimal
        ("12.35",),
    ]
    quarantined = query(home, "SELECT line, rule, column_name, detail FROM raw._quarantine ORDER BY line")
    assert [q[:3] for q in quarantined] == [
        (2, "too_many_decimals", "charge_usd"),
        (6, "too_many_decimals", "charge_usd"),
    ]
    assert "more than 2 decimal places" in quarantined[0][3]
    assert not any(a in q[3] for q in quarantined for a in amounts)


@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_lines_stay_true_after_empty_lines_and_multi_line_records(home, exports, eol):
    """Rows and quarantined lines carry their first physical line however the lines before them were shaped:
    empty lines (skipped by the reader), records spanning lines, malformed lines. In a CRLF file a malformed
    line does not refuse the file as a stray quote (DuckDB's rejected text starts with the LF of the CRLF)."""
    rows = [example_row("patients") for _ in range(8)]
    rows[1]["address_line"] = "Line A\n\nLine C"  # lines 3-5 (the empty line inside the value is not skipped)
    rows[6]["sex"] = "Q"  # quarantined: not_accepted
    header, *records = csv_text(rows).split("\n")[:-1]
    records = [header, records[0], "\n".join(records[1:4]), *records[4:]]  # one item per record
    records[3] = records[3].rsplit(",", 3)[0]  # rows[2]: too few fields (malformed)
    text = "\n".join(records[:4] + ["", ""] + records[4:6] + [""] + records[6:]).replace("\n", eol) + eol
    (exports / "patients.csv").write_text(text, encoding="utf-8", newline="")
    [result] = ingest([exports], home)
    assert counts(result) == (8, 6, 2, 0), result.message
    physical = text.split(eol)
    line = {r["patient_id"]: 1 + next(i for i, t in enumerate(physical) if t.startswith(r["patient_id"])) for r in rows}
    assert sorted(line.values()) == [2, 3, 6, 9, 10, 12, 13, 14]  # 3-5: one record; 7, 8, 11: empty
    quarantined = {rows[2]["patient_id"], rows[6]["patient_id"]}
    landed = dict(query(home, "SELECT patient_id, _line FROM raw.patients"))
    assert landed == {k: v for k, v in line.items() if k not in quarantined}
    assert query(home, "SELECT line, rule FROM raw._quarantine ORDER BY line") == [
        (line[rows[2]["patient_id"]], "malformed_row"),
        (line[rows[6]["patient_id"]], "not_accepted"),
    ]


def test_a_two_digit_year_is_quarantined_not_landed_in_year_25(home, exports):
    """strptime's %Y reads '25' as the year 0025: an Excel m/d/yy re-save must not land a date 2000 years early
    (as the older event it would also never become current)."""
    stamps = ["2025-01-01 09:00:00", "25-01-01 09:00:00", "0025-01-01T09:00:00"]
    write_csv(exports, "patients.csv", [example_row("patients", updated_at=s) for s in stamps])
    [result] = ingest([exports], home)
    assert counts(result) == (3, 2, 1, 0)
    assert query(home, "SELECT year(updated_at) FROM raw.patients ORDER BY _line") == [(2025,), (25,)]
    [(line, rule, column)] = query(home, "SELECT line, rule, column_name FROM raw._quarantine")
    assert (line, rule, column) == (3, "invalid_timestamp", "updated_at")


def test_a_clinic_time_zone_duckdb_does_not_know_is_quarantined(home, exports):
    """A clinic's zone converts its vendor times: 'Central Time' landing would fail each later vendor load."""
    zones = ["America/Chicago", "Central Time", "america/chicago"]
    write_csv(
        exports, "clinics.csv", [example_row("clinics", clinic_id=f"CL{i}", timezone=z) for i, z in enumerate(zones)]
    )
    [result] = ingest([exports], home)
    assert counts(result) == (3, 1, 2, 0)
    assert query(home, "SELECT timezone FROM raw.clinics") == [("America/Chicago",)]
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine ORDER BY line") == [
        (3, "unknown_time_zone", "timezone"),
        (4, "unknown_time_zone", "timezone"),
    ]


def test_a_private_copy_left_by_a_killed_load_is_removed_by_the_next_load(home, exports):
    """A killed load never runs its `finally`: its LF copy of a mixed-line-ending file (patient rows) stayed."""
    stale = home.raw_db.parent / f"{loader.PRIVATE_COPY_PREFIX}abc123.csv"
    stale.write_text("patient_id,first_name\nP1,Zebulon\n")
    keep = home.raw_db.parent / "notes.csv"
    keep.write_text("kept\n")
    write_csv(exports, "clinics.csv", [example_row("clinics")])
    ingest([exports], home)
    assert not stale.exists()
    assert keep.exists()


WEBPT_CHARGES = [
    "record_id", "visit_date", "record_pointer", "cpt", "clinic_id", "patient_id", "case_id", "therapist_id",
    "units", "charge_amount", "note_type", "note_finalized_date",
]  # fmt: skip


def _webpt_charges(folder, name: str, day: str, ids: range) -> None:
    rows = [[str(i), day, f"RP{i}", "97110", "7", "00123", "501", "31", "2", "95.00", "Daily Note", day] for i in ids]
    (folder / name).write_text("\n".join(",".join(r) for r in [WEBPT_CHARGES, *rows]) + "\n")


def _profile_copy(tmp_path, name: str, date_format: str | None = None):
    import yaml

    from ingestion.profiles import PROFILES_DIR

    data = yaml.safe_load((PROFILES_DIR / "webpt_standard_extract.yml").read_text())
    data["profile"] = name
    if date_format:
        data["defaults"]["date_formats"].append(date_format)
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_same_file_under_a_fixed_profile_is_read_again(home, exports, tmp_path):
    """Onboarding's loop: rows quarantined for a date format the profile lacked land once the profile has it,
    though the file's bytes did not change; the same profile again skips the file as before."""
    _webpt_charges(exports, "charges_jan.csv", "2025.01.02", range(1, 3))
    [first] = ingest([exports], home)
    assert counts(first) == (2, 0, 2, 0)
    fixed = _profile_copy(tmp_path, "webpt_mine", "%Y.%m.%d")
    [second] = ingest([exports], home, profile=fixed)
    assert (second.status, counts(second)) == (loader.LOADED, (2, 2, 0, 0))
    [third] = ingest([exports], home, profile=fixed)
    assert third.status == loader.SKIPPED


def test_a_practice_copy_of_a_profile_is_the_same_source_system_for_duplicates(home, exports, tmp_path):
    """dbt ranks every vendor profile as one system ('profile'): a fixed copy's overlapping export must find
    the rows the shipped profile landed, not land them a second time."""
    _webpt_charges(exports, "charges_mon.csv", "2025-01-02", range(1, 6))
    [monday] = ingest([exports / "charges_mon.csv"], home)
    _webpt_charges(exports, "charges_tue.csv", "2025-01-02", range(1, 7))
    [tuesday] = ingest([exports / "charges_tue.csv"], home, profile=_profile_copy(tmp_path, "webpt_mine"))
    assert counts(monday) == (5, 5, 0, 0)
    assert counts(tuesday) == (6, 1, 0, 5)
    assert table_count(home, "charges") == 6


def test_a_narrower_re_export_keeps_the_columns_it_did_not_export(home, exports):
    """A column the file lacks was not exported, not emptied: re-sent patients without phone and email are
    duplicates, a changed patient keeps its phone as a new version, a new patient has none."""
    a = example_row("patients", patient_id="P1", phone="5125550101", email="a@example.org")
    b = example_row("patients", patient_id="P2", phone="5125550102", email="b@example.org")
    write_csv(exports, "patients.csv", [a, b])
    ingest([exports / "patients.csv"], home)
    narrow = [c for c in contract("patients").column_names if c not in ("phone", "email")]
    changed = {**b, "city": "Elsewhere", "updated_at": "2024-03-16 09:30:00"}
    new = example_row("patients", patient_id="P3")
    write_csv(exports, "patients_narrow.csv", [a, changed, new], columns=narrow)
    [result] = ingest([exports / "patients_narrow.csv"], home)
    assert counts(result) == (3, 2, 0, 1)
    assert "kept as each row's last landed value" in result.message
    landed = query(home, "SELECT patient_id, city, phone, email FROM raw.patients WHERE _load_id = ? ORDER BY 1", [2])
    assert landed == [("P2", "Elsewhere", "5125550102", "b@example.org"), ("P3", new["city"], None, None)]


def test_a_quoted_comment_over_several_lines_with_many_commas_lands(home, exports):
    """Only a row-shaped value (a row's worth of commas per line break, or a whole row on an inner line) is a
    stray quote's join: a three-line visit comment with more commas in all than the header has lands."""
    separators = len(example_row("patients", notes="n")) - 1
    comment = '"' + "\n".join(", ".join(["pain"] * (separators // 2)) for _ in range(3)) + '"'
    rows = [example_row("patients", notes="n") for _ in range(2)]
    lines = csv_text(rows, [*rows[0]]).splitlines()
    lines[1] = lines[1][: -len("n")] + comment
    (exports / "patients.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    [result] = ingest([exports], home)
    assert counts(result) == (2, 2, 0, 0)
    assert [r[0] for r in query(home, "SELECT _line FROM raw.patients ORDER BY _line")] == [2, 5]


def test_ctrl_c_inside_a_duckdb_query_stops_the_call_and_rolls_the_file_back(home, exports, monkeypatch):
    """DuckDB turns Ctrl-C into its own error for the running query: that must stop ingest (and the refresh that
    would build and serve without the file), not be taken for one failed file while the next ones load."""
    import threading

    write_csv(exports, "clinics.csv", [example_row("clinics")])
    write_csv(exports, "therapists.csv", [example_row("therapists")])
    real_insert = loader._insert_rows

    def interrupted_mid_landing(db, *args, **kwargs):
        real_insert(db, *args, **kwargs)
        threading.Timer(0.2, db.con.interrupt).start()  # what the client does on SIGINT
        db.con.execute("SELECT count(*) FROM range(100000000000)").fetchall()

    monkeypatch.setattr(loader, "_insert_rows", interrupted_mid_landing)
    with pytest.raises(KeyboardInterrupt):
        ingest([exports], home)
    assert query(home, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'clinics'") == [(0,)]  # rolled back
    [(status, message)] = query(home, "SELECT status, message FROM raw._loads")
    assert status == "failed" and message.startswith("interrupted (Ctrl-C) while loading clinics.csv")
    assert "internal error" not in message
