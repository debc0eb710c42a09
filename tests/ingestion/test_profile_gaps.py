"""Three gaps of source profiles, closed: `skip_lines` (a report title above the header), a column's `default`
counted in the load's notes, and a `concat` record id that keeps genuinely identical rows of one file apart.

Every test ingests real files into a real raw.duckdb (ingestion.loader.ingest) and reads what landed.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from ingest_helpers import query
from test_profile_parsing import PAYMENTS_HEADER, payments_profile
from typer.testing import CliRunner

from ingestion.loader import ingest
from ingestion.profiles import ProfileError, read_profile
from ptpulse.cli import app

TITLE = "Payment Activity Report\nRun date: 11/30/2025 06:00,,\n\n"  # 3 lines above the header


def _profile(folder: Path, *, name: str = "acme_billing.yml", **changes) -> Path:
    """The payments profile of test_profile_parsing with the file type's spec changed (`columns` merged)."""
    path = payments_profile(folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = data["files"][0]
    columns = changes.pop("columns", {})
    spec["columns"].update(columns)
    spec["columns"] = {k: v for k, v in spec["columns"].items() if v is not None}
    spec.update(changes)
    out = folder / name
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def _row(pid: str, amount: str, kind: str = "Insurance Payment", claim: str = "CLM-1", check: str = "") -> str:
    return f'{pid},{claim},Aetna,{kind},11/02/2025,"{amount}",{check}'


# --- 1. skip_lines: a report title above the header ----------------------------------------------------------

TITLED_ROWS = [
    _row("P1", "10.00"),  # line 5
    _row("P2", "ten dollars"),  # line 6: invalid_decimal
    _row("P3", "12.00") + ",extra,fields",  # line 7: malformed (too many fields)
    _row("P4", "13.00"),  # line 8
]


def _titled_bytes(newline: str = "\n") -> bytes:
    text = TITLE + PAYMENTS_HEADER + "\n" + "\n".join(TITLED_ROWS) + "\n"
    return text.replace("\n", newline).encode()


def _write(exports: Path, kind: str, data: bytes) -> tuple[Path, str]:
    """(path to ingest, the file name raw._loads records) for a plain, gzip or zip delivery."""
    if kind == "csv":
        path = exports / "payments.csv"
        path.write_bytes(data)
        return path, "payments.csv"
    if kind == "gz":
        path = exports / "payments.csv.gz"
        path.write_bytes(gzip.compress(data))
        return path, "payments.csv.gz"
    path = exports / "export.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("payments.csv", data)
    return path, "export.zip!payments.csv"


@pytest.mark.parametrize("kind", ["csv", "gz", "zip"])
def test_skip_lines_reads_the_header_below_a_title_and_keeps_the_files_line_numbers(home, exports, tmp_path, kind):
    path, recorded = _write(exports, kind, _titled_bytes())
    [r] = ingest([path], home, profile=str(_profile(tmp_path, skip_lines=3)))
    assert r.status == "loaded", r.message
    assert (r.rows_read, r.rows_landed, r.rows_quarantined, r.rows_duplicate) == (4, 2, 2, 0)
    assert r.rows_read == r.rows_landed + r.rows_quarantined
    assert "header read on line 4" in r.message and "Payment Activity Report" not in r.message
    assert query(home, "SELECT remit_id, _line FROM raw.remittances ORDER BY _line") == [("P1", 5), ("P4", 8)]
    quarantined = query(home, "SELECT line, rule, file FROM raw._quarantine ORDER BY line")
    assert [(line, rule) for line, rule, _ in quarantined] == [(6, "invalid_decimal"), (7, "malformed_row")]
    assert all(Path(file).name == Path(recorded).name for _, _, file in quarantined)


def test_skip_lines_with_crlf_and_mixed_line_endings(home, exports, tmp_path):
    data = _titled_bytes("\r\n")
    data = data.replace(b"\r\nP4", b"\nP4")  # one LF line among CRLF ones: the mixed-endings copy
    path, _ = _write(exports, "csv", data)
    [r] = ingest([path], home, profile=str(_profile(tmp_path, skip_lines=3)))
    assert r.status == "loaded", r.message
    assert query(home, "SELECT remit_id, _line FROM raw.remittances ORDER BY _line") == [("P1", 5), ("P4", 8)]
    assert query(home, "SELECT line FROM raw._quarantine ORDER BY line") == [(6,), (7,)]


def test_a_home_profile_with_skip_lines_is_detected_without_naming_it(home, exports, tmp_path):
    folder = home.home / "profiles"
    folder.mkdir()
    _profile(folder, skip_lines=3)
    path, _ = _write(exports, "csv", _titled_bytes())
    [r] = ingest([path], home)
    assert r.status == "loaded" and r.profile == "acme_billing/payments", r.message
    assert r.rows_landed == 2


def test_skip_lines_refuses_a_file_exported_without_its_title_rather_than_drop_rows(home, exports, tmp_path):
    path = exports / "payments.csv"
    path.write_text(PAYMENTS_HEADER + "\n" + "\n".join(TITLED_ROWS) + "\n", encoding="utf-8")
    [r] = ingest([path], home, profile=str(_profile(tmp_path, skip_lines=3)))
    assert r.status == "refused" and "line 1 already holds the column names" in r.message
    assert "skip_lines: 3" in r.message and "drop 3 line(s)" in r.message
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]


def test_without_skip_lines_a_title_is_still_refused_and_the_fix_names_skip_lines(home, exports, tmp_path):
    path, _ = _write(exports, "csv", _titled_bytes())
    [r] = ingest([path], home, profile=str(_profile(tmp_path)))
    assert r.status == "refused" and "report title above the header" in r.message and "skip_lines" in r.message
    native = exports / "billing_export.csv"  # no profile at all: line 1 must be the header, as before
    native.write_bytes(_titled_bytes())
    [n] = ingest([native], home)
    assert n.status == "refused" and "report title" in n.message


SHORT_TITLE = "Payment Activity Report\n"  # 1 line above the header: the same report with fewer title lines


def test_skip_lines_auto_finds_the_header_below_a_title_of_any_length(home, exports, tmp_path):
    """A vendor whose title block varies (a date range, filters): `skip_lines: auto` reads each file's header
    where it is, keeps the file's own line numbers, and reads a file exported without a title from line 1."""
    profile = str(_profile(tmp_path, skip_lines="auto"))
    rows = "\n".join(TITLED_ROWS) + "\n"
    three = exports / "payments_three.csv"
    three.write_text(TITLE + PAYMENTS_HEADER + "\n" + rows, encoding="utf-8")
    one = exports / "payments_one.csv"
    one.write_text(SHORT_TITLE + PAYMENTS_HEADER + "\n" + rows.replace("\nP", "\nQ").replace("P1,", "Q1,", 1), "utf-8")
    none = exports / "payments_none.csv"
    none.write_text(PAYMENTS_HEADER + "\n" + rows.replace("\nP", "\nR").replace("P1,", "R1,", 1), encoding="utf-8")
    results = {Path(r.file).name: r for r in ingest([three, one, none], home, profile=profile)}
    for name, header_line in [("payments_three.csv", 4), ("payments_one.csv", 2), ("payments_none.csv", 1)]:
        r = results[name]
        assert r.status == "loaded", r.message
        assert (r.rows_read, r.rows_landed, r.rows_quarantined) == (4, 2, 2), name
        if header_line > 1:
            assert f"header read on line {header_line}" in r.message and "skip_lines: auto" in r.message
        else:
            assert "header read on line" not in r.message
    lines = dict(query(home, "SELECT remit_id, _line FROM raw.remittances"))
    assert (lines["P1"], lines["Q1"], lines["R1"]) == (5, 3, 2)  # the first row under each header
    assert query(home, "SELECT count(*) FROM raw._quarantine WHERE file LIKE '%payments_one.csv' AND line = 4") == [
        (1,)
    ]  # Q2's bad amount on the file's own line 4


def test_skip_lines_auto_is_detected_without_naming_the_profile(home, exports, tmp_path):
    folder = home.home / "profiles"
    folder.mkdir()
    _profile(folder, skip_lines="auto")
    path, _ = _write(exports, "gz", _titled_bytes())
    [r] = ingest([path], home)
    assert r.status == "loaded" and r.profile == "acme_billing/payments", r.message
    assert r.rows_landed == 2


def test_skip_lines_auto_refuses_a_file_without_its_header_in_the_first_lines(home, exports, tmp_path):
    path = exports / "payments.csv"
    path.write_text("Report\n" * 25 + PAYMENTS_HEADER + "\n" + "\n".join(TITLED_ROWS) + "\n", encoding="utf-8")
    [r] = ingest([path], home, profile=str(_profile(tmp_path, skip_lines="auto")))
    assert r.status == "refused" and "first 20 lines" in r.message and "skip_lines: auto" in r.message, r.message
    assert "Report" not in r.message.replace("Payment Activity Report", "")  # no line of the file is quoted
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]


def test_skip_lines_auto_says_a_files_own_problem_not_that_no_header_fits(home, exports, tmp_path):
    """A UTF-16 export under a profile with skip_lines: auto: the encoding is what to fix, and the message says so."""
    path = exports / "payments.csv"
    path.write_bytes((TITLE + PAYMENTS_HEADER + "\n" + "\n".join(TITLED_ROWS) + "\n").encode("utf-16"))
    [r] = ingest([path], home, profile=str(_profile(tmp_path, skip_lines="auto")))
    assert r.status == "refused" and "UTF-16" in r.message and "first 20 lines" not in r.message, r.message


def test_skip_lines_must_be_a_whole_number(tmp_path):
    with pytest.raises(ProfileError, match="skip_lines must be a whole number.*or auto"):
        read_profile(_profile(tmp_path, skip_lines="three"))
    assert read_profile(_profile(tmp_path, skip_lines="auto")).files[0].skip_auto
    assert read_profile(_profile(tmp_path, skip_lines=2)).files[0].skip_lines == 2


def test_draft_proposes_skip_lines_for_a_title_above_the_header(tmp_path):
    titled = tmp_path / "payments.csv"
    titled.write_bytes(_titled_bytes())
    out = tmp_path / "draft.yml"
    result = CliRunner().invoke(app, ["profile", "draft", str(titled), "-o", str(out)])
    assert result.exit_code == 0, result.output
    [entry] = yaml.safe_load(out.read_text(encoding="utf-8"))["files"]
    assert entry["skip_lines"] == 3
    assert entry["match"]["header_required"] == ["Claim #", "Amount"]  # the names of line 4
    assert "Payment Activity Report" not in out.read_text(encoding="utf-8")


# --- 2. an empty cell that takes the column's `default` is counted ---------------------------------------------


def test_empty_cells_that_take_a_default_are_counted_in_the_loads_notes(home, exports, tmp_path, monkeypatch):
    profile = _profile(
        tmp_path, columns={"event_type": {"from": "Transaction Type", "map": "txn", "default": "payer_payment"}}
    )
    path = exports / "payments.csv"
    rows = [
        _row("P1", "10.00"),
        _row("P2", "11.00", kind=""),
        _row("P3", "12.00", kind="NULL"),
        _row("P4", "13.00", kind=" "),
    ]
    path.write_text(PAYMENTS_HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    runner = CliRunner()
    answer = runner.invoke(app, ["ingest", str(path), "--home", str(home.home), "--profile", str(profile), "--json"])
    [loaded] = json.loads(answer.stdout)["files"]
    note = "event_type: 3 empty Transaction Type cell(s) took the default payer_payment"
    assert loaded["rows_landed"] == 4 and note in loaded["message"], loaded["message"]
    [(message,)] = query(home, "SELECT message FROM raw._loads")
    assert note in message  # what `ptpulse status` and the Data health page show
    assert query(home, "SELECT count(*) FROM raw.remittances WHERE event_type = 'payer_payment'") == [(4,)]


# --- 3. a `concat` record id: identical rows of one file stay distinct -----------------------------------------

CONCAT_ID = {"derive": "concat", "args": ["Claim #", "Posting Date", "Amount"], "sep": "|"}
COPAY = _row("", "20.00", kind="Insurance Payment")  # no payment id: two identical $20.00 lines


def _money(home) -> tuple[int, Decimal]:
    return query(home, "SELECT count(*), sum(amount_usd) FROM raw.remittances")[0]


def test_identical_rows_with_a_concat_id_both_land_and_a_reload_changes_nothing(home, exports, tmp_path):
    profile = str(_profile(tmp_path, columns={"remit_id": CONCAT_ID}))
    first = exports / "payments_nov.csv"
    first.write_text("\n".join([PAYMENTS_HEADER, COPAY, _row("", "35.00"), COPAY]) + "\n", encoding="utf-8")
    [r] = ingest([first], home, profile=profile)
    assert (r.rows_read, r.rows_landed, r.rows_duplicate) == (3, 3, 0), r.message
    assert _money(home) == (3, Decimal("75.00"))  # no money vanished into the duplicate rule
    ids = [i for (i,) in query(home, "SELECT remit_id FROM raw.remittances ORDER BY remit_id")]
    assert ids == ["CLM-1|11/02/2025|20.00", "CLM-1|11/02/2025|20.00#2", "CLM-1|11/02/2025|35.00"]
    assert "remit_id: 1 row(s) have the same record id" in r.message and "20.00" not in r.message

    [again] = ingest([first], home, profile=profile, reload=True)  # the same file read again: nothing lands
    assert (again.rows_landed, again.rows_duplicate) == (0, 3)
    # a later export re-sending the same rows (in another order) with one new line: only the new line lands
    later = exports / "payments_nov_dec.csv"
    later.write_text("\n".join([PAYMENTS_HEADER, COPAY, COPAY, _row("", "35.00"), _row("", "9.00")]) + "\n")
    [resent] = ingest([later], home, profile=profile)
    assert (resent.rows_landed, resent.rows_duplicate) == (1, 3), resent.message
    assert _money(home) == (4, Decimal("84.00"))


def test_rows_sharing_a_concat_id_with_different_values_keep_both(home, exports, tmp_path):
    profile = str(_profile(tmp_path, columns={"remit_id": {**CONCAT_ID, "args": ["Claim #", "Posting Date"]}}))
    path = exports / "payments.csv"
    path.write_text("\n".join([PAYMENTS_HEADER, _row("", "40.00"), _row("", "20.00")]) + "\n", encoding="utf-8")
    [r] = ingest([path], home, profile=profile)
    assert r.rows_landed == 2
    # two records (numbered by their values: 20.00 first), not two versions of one record (dbt would keep one)
    assert query(home, "SELECT remit_id, amount_usd FROM raw.remittances ORDER BY remit_id") == [
        ("CLM-1|11/02/2025", Decimal("20.00")),
        ("CLM-1|11/02/2025#2", Decimal("40.00")),
    ]


def test_identical_rows_merge_names_the_old_rule_and_counts_the_duplicate(home, exports, tmp_path):
    profile = str(_profile(tmp_path, columns={"remit_id": {**CONCAT_ID, "identical_rows": "merge"}}))
    path = exports / "payments.csv"
    path.write_text("\n".join([PAYMENTS_HEADER, COPAY, COPAY]) + "\n", encoding="utf-8")
    [r] = ingest([path], home, profile=profile)
    assert (r.rows_landed, r.rows_duplicate) == (1, 1)
    with pytest.raises(ProfileError, match="identical_rows"):
        read_profile(_profile(tmp_path, columns={"payer_id": {"from": "Payer Name", "identical_rows": "keep"}}))
