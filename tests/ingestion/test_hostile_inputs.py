"""Hostile-input corpus: every kind of broken, odd or malicious file, generated in a tmp folder and ingested
in one call (library and CLI). Whatever the input:

- no traceback, no `failed` load, and the call goes on to the files after a bad one;
- every refusal names the file, the problem and a fix, and no message (raw._loads, the quarantine's rule /
  column / detail, the CLI's output, `ptpulse status`) quotes a value: the SENTINEL strings planted in the
  files' data never appear there;
- rows read = landed + quarantined + duplicate for every load, and known row counts are kept (no row lost);
- what was landed before the hostile loads is unchanged;
- file names cannot drive the terminal (escape sequences) nor rich (`[bold]` markup, `:x:` emoji).

The classes come from issue 9 (items 1, 5-9); `/work/shared/interop/outside` (other projects' real FHIR and
X12 exports, valid and malformed) is added when present.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
from ingest_helpers import csv_text, example_row, query
from typer.testing import CliRunner

from ingestion.files import display_name
from ingestion.loader import LOADED, REFUSED, SKIPPED, SKIPPED_NOT_DATA, ingest
from ptpulse import cli
from ptpulse.cli import app

SENTINELS = ("Zebulon7Sentinel", "Quillfeather9Sentinel", "555-0199-7731", "1961-07-04")
NAME, SURNAME, PHONE, BIRTH = SENTINELS
OUTSIDE = Path("/work/shared/interop/outside")
FIX_WORDS = ("again", "export", "copy", "convert", "save", "remove", "fix", "check", "name the file", "re-send")
HOSTILE_NAME = "clinics_\x1b[31m[bold]red:x:\x07.csv"


def _rows(source: str, n: int, **overrides) -> list[dict]:
    return [example_row(source, **overrides) for _ in range(n)]


def _clinic_lines(n: int) -> tuple[str, list[str]]:
    """Header and n data lines of a valid clinics file (no trailing newline on the lines)."""
    text = csv_text(_rows("clinics", n)).splitlines()
    return text[0], text[1:]


def _patient_line() -> tuple[str, str]:
    row = example_row("patients", first_name=NAME, last_name=SURNAME, phone=PHONE, birth_date=BIRTH)
    lines = csv_text([row]).splitlines()
    return lines[0], lines[1]


def build_corpus(folder: Path, outside: Path) -> dict[str, dict]:
    """Write the hostile files; return, per file name, what must happen to it."""
    expect: dict[str, dict] = {}
    folder.mkdir(parents=True)
    header, lines = _clinic_lines(1000)
    p_header, p_line = _patient_line()

    def put(name: str, data: bytes, **outcome) -> None:
        (folder / name).write_bytes(data)
        expect[name] = outcome

    # 1. content never quoted: a patients file without its header; a symlink to a file outside the folder
    put(
        "patients_headerless.csv",
        (p_line + "\n" + p_line.replace("PATIENT", "PT9") + "\n").encode(),
        status=REFUSED,
        says="missing required column",
    )
    (outside / "passwd").write_text(f"root:x:0:0:{NAME}:/root:/bin/bash\n{p_header}\n{p_line}\n")
    (folder / "patients_link.csv").symlink_to(outside / "passwd")
    expect["patients_link.csv"] = dict(status=REFUSED, says="symbolic link")
    (folder / "linked_dir").symlink_to(outside, target_is_directory=True)
    expect["linked_dir"] = dict(status=REFUSED, says="symbolic link")
    put(
        "patients_bad_values.csv",
        (p_header + "\n" + p_line.replace(BIRTH, NAME) + "\n").encode(),
        status=LOADED,
        read=1,
        quarantined=1,
    )

    # 5. inputs that crashed ingest: CR-only (< 64 KB), FHIR with wrong value types, JSON nested 100,000 deep
    put("clinics_cr_only.csv", ("\r".join([header] + lines[:3]) + "\r").encode(), status=LOADED, read=3, landed=3)
    put(
        "patient_name_string.json",
        json.dumps({"resourceType": "Patient", "id": "p1", "name": NAME}).encode(),
        status=REFUSED,
        says="wrong JSON type",
    )
    put(
        "bundle_string_entry.json",
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [NAME, {"resource": NAME}, 7]}).encode(),
        status=LOADED,
    )
    put(
        "bundle_entry_not_list.json",
        json.dumps({"resourceType": "Bundle", "entry": 12}).encode(),
        status=REFUSED,
        says="wrong",
    )
    put(
        "appointments.ndjson",
        (
            json.dumps({"resourceType": "Appointment", "id": "a1", "status": "booked", "participant": "me"}) + "\n"
        ).encode(),
        status=REFUSED,
        says="line 1 has a value of the wrong JSON type",
    )
    put(
        "claim_items_wrong.json",
        json.dumps({"resourceType": "Claim", "id": "c1", "item": [{"net": {"value": NAME}}], "total": NAME}).encode(),
        status=REFUSED,
        says="wrong",
    )
    put("deep.json", ("[" * 100_000 + "]" * 100_000).encode(), status=REFUSED, says="nested too deeply")
    put(
        "deep_object.json",
        ('{"resourceType":"Bundle","entry":[{"resource":' * 3000 + "{}" + "}]}" * 3000).encode(),
        status=REFUSED,
        says="nested too deeply",
    )
    put("unknown_type.json", json.dumps({"resourceType": NAME, "status": SURNAME}).encode(), status=LOADED)
    put(
        "huge_number.json",
        ('{"resourceType":"Patient","id":' + "9" * 5000 + "}").encode(),
        status=REFUSED,
        says="number",
    )
    put("not_json.json", f"{NAME}, {PHONE}".encode(), status=REFUSED, says="not valid JSON")
    put("nul.json", b'{"resourceType":"Patient"}\x00', status=REFUSED, says="NUL")
    put(
        "remit_st_sentinel.835",
        (
            f"ISA*00*          *00*          *ZZ*SENDER         *ZZ*RECEIVER       *240101*"
            f"1200*^*00501*000000001*0*P*:~GS*HP*S*R*20240101*1200*1*X*{NAME}~ST*{SURNAME}*0001*"
            f"{NAME}~SE*2*0001~GE*1*1~IEA*1*000000001~"
        ).encode(),
        status=REFUSED,
        says="not read by PT Pulse",
    )

    # 6. a stray quote: unterminated (runs to the end) is refused with its line; closed later is quarantined
    broken = list(lines)
    broken[99] = broken[99].replace(",", ',"', 1)
    put(
        "clinics_unterminated.csv",
        ("\n".join([header] + broken) + "\n").encode(),
        status=REFUSED,
        says="line 101 opens a double-quoted value",
    )
    joined = list(lines[50:60])  # a quote opened in the last field of line 4 and closed at the end of line 6
    first_fields, last_field = joined[2].rsplit(",", 1)
    joined[2] = f'{first_fields},"{last_field}'
    joined[4] = joined[4] + '"'
    put(
        "clinics_joined.csv",
        ("\n".join([header] + joined) + "\n").encode(),
        status=LOADED,
        read=8,
        landed=7,
        quarantined=1,
    )
    split = list(lines[60:70])  # opened mid-record: the joined record has too few fields, the file is refused
    split[2] = split[2].replace(",", ',"', 1)
    split[4] = split[4] + '"'
    put(
        "clinics_joined_mid.csv",
        ("\n".join([header] + split) + "\n").encode(),
        status=REFUSED,
        says="line 4 opens a double-quoted value",
    )

    # 7. padding and blanks: ' T1 ' is T1; tab-only required fields are missing
    therapists = _rows("therapists", 3)
    therapists[0]["therapist_id"] = "  T1 "
    therapists[1]["clinic_id"] = "\t"
    therapists[2]["therapist_id"] = "\tT1"  # the same key as row 1 after trimming: a new version of T1
    put("therapists_padded.csv", csv_text(therapists).encode(), status=LOADED, read=3, landed=2, quarantined=1)

    # 8. loose numbers: quarantined, never landed as 10 / 1250 / 1000
    loose = [example_row("charges", charge_usd=v) for v in ("1_0", "1e1", "1_250", "1e3", " 12.50 ")]
    put("charges_loose.csv", csv_text(loose).encode(), status=LOADED, read=5, landed=1, quarantined=4)

    # 9. valid files refused with misleading messages before; NULs anywhere; names that drive terminals
    mixed = "".join(line + ("\r\n" if i % 2 else "\n") for i, line in enumerate([header] + lines[10:15]))
    put("clinics_mixed.csv", mixed.encode(), status=LOADED, read=5, landed=5)
    cols = header.split(",")
    put(  # header names match case-insensitively: clinic_id and Clinic_ID are the same column twice
        "clinics_case_extra.csv",
        csv_text([dict(r, Clinic_ID=NAME) for r in _rows("clinics", 2)], cols + ["Clinic_ID"]).encode(),
        status=REFUSED,
        says="the header repeats the column(s) clinic_id (clinic_id written in different upper/lower case",
    )
    wide = cols + [f"extra_{i:05d}_" + "x" * 60 for i in range(1100)]  # header > 64 KB
    put("clinics_wide_header.csv", csv_text(_rows("clinics", 2), wide).encode(), status=LOADED, read=2, landed=2)
    nul_rows = lines[100:1000]
    nul_rows[1] = nul_rows[1].replace(",", ",\x00", 1)  # early (first 64 KB)
    nul_rows[850] = nul_rows[850].replace(",", ",x\x00", 1)  # late (after 64 KB)
    put(
        "clinics_nul.csv",
        ("\n".join([header] + nul_rows) + "\n").encode(),
        status=LOADED,
        read=900,
        landed=898,
        quarantined=2,
    )
    put(HOSTILE_NAME, ("\n".join([header] + lines[15:17]) + "\n").encode(), status=LOADED, read=2, landed=2)

    # own: empty, blank, binary, UTF-16, invalid UTF-8, BOM, header only, huge line, a folder named *.csv
    put("clinics_empty.csv", b"", status=REFUSED, says="empty")
    put("clinics_blank.csv", b" \n\r\n\t\n", status=REFUSED, says="empty")
    put("clinics_binary.csv", b"PK\x03\x04\x14\x00" + random.Random(9).randbytes(4000), status=REFUSED)
    put("clinics_utf16.csv", ("\n".join([header] + lines[17:19])).encode("utf-16"), status=REFUSED, says="UTF-16")
    put(
        "clinics_latin1.csv",
        ("\n".join([header, lines[19].replace(",", f",{NAME}\xe9 ", 1)]) + "\n").encode("latin-1"),
        status=REFUSED,
        says="not valid UTF-8",
    )
    put(
        "clinics_bom.csv",
        b"\xef\xbb\xbf" + ("\n".join([header] + lines[30:32]) + "\n").encode(),
        status=LOADED,
        read=2,
        landed=2,
    )
    put("clinics_header_only.csv", header.encode(), status=LOADED, read=0)
    put(
        "clinics_huge_line.csv",
        ("\n".join([header, lines[40], lines[41].replace(",", "," + "y" * 3_000_000, 1), lines[42]]) + "\n").encode(),
        status=LOADED,
        read=3,
        landed=2,
        quarantined=1,
    )
    put(
        "clinics_semicolon.csv",
        header.replace(",", ";").encode() + b"\n" + lines[43].replace(",", ";").encode(),
        status=REFUSED,
        says="separated by",
    )
    put("clinics_header_quote.csv", ('"clinic_id,' + header + "\n" + lines[44] + "\n").encode(), status=REFUSED)
    (folder / "clinics_folder.csv").mkdir()
    put("unknown_source.csv", b"a,b\n1,2\n", status=REFUSED, says="matches no source")
    return expect


@pytest.fixture
def hostile(tmp_path, home):
    """Baseline data loaded, then the hostile corpus (and OUTSIDE when present) ingested in one call."""
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "clinics.csv").write_text(csv_text(_rows("clinics", 5)))
    (baseline / "patients.csv").write_text(csv_text(_rows("patients", 5)))
    first = ingest([baseline], home)
    assert [r.status for r in first] == [LOADED, LOADED]
    before = {t: query(home, f"SELECT * FROM raw.{t} ORDER BY ALL") for t in ("clinics", "patients")}

    outside = tmp_path / "outside_of_exports"
    outside.mkdir()
    folder = tmp_path / "hostile"
    expect = build_corpus(folder, outside)
    paths = [folder] + ([OUTSIDE] if OUTSIDE.is_dir() else [])
    results = ingest(paths, home)  # must not raise
    return home, folder, expect, results, before


def _by_name(results) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in results:
        out.setdefault(Path(r.file).name, []).append(r)
    return out


def test_every_hostile_file_gets_its_expected_outcome_and_nothing_is_lost(hostile):
    home, folder, expect, results, before = hostile
    by_name = _by_name(results)
    assert set(expect) <= set(by_name), set(expect) - set(by_name)
    allowed = (LOADED, REFUSED, SKIPPED, SKIPPED_NOT_DATA)  # a README beside the exports is skipped, audited
    assert not [r for r in results if r.status not in allowed], "no failed load, no traceback"
    for name, outcome in expect.items():
        [r] = by_name[name] if outcome["status"] == REFUSED or len(by_name[name]) == 1 else [by_name[name][0]]
        assert r.status == outcome["status"], (display_name(Path(name)), r.status, r.message)
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate
        for key in ("read", "landed", "quarantined"):
            if key in outcome:
                assert getattr(r, f"rows_{key}") == outcome[key], (name, key, r)
        if "says" in outcome:
            assert outcome["says"] in r.message, (name, r.message)
        if r.status == REFUSED:
            assert display_name(Path(name)) in r.message, (name, r.message)
            assert any(word in r.message.lower() for word in FIX_WORDS), (name, r.message)
    # previously landed rows are unchanged (hostile loads only add rows)
    for table, rows in before.items():
        load_ids = sorted({row[-3] for row in rows})
        placeholders = ", ".join("?" for _ in load_ids)
        assert (
            query(home, f"SELECT * FROM raw.{table} WHERE _load_id IN ({placeholders}) ORDER BY ALL", load_ids) == rows
        )
    assert query(
        home, "SELECT count(*) FROM raw._loads WHERE rows_read <> rows_landed + rows_quarantined + rows_duplicate"
    ) == [(0,)]


def test_class_specific_outcomes(hostile):
    home, folder, expect, results, before = hostile
    # 6: the joined lines are one quarantined record with its line; the rows after it keep their true lines
    joined = query(home, "SELECT line, rule FROM raw._quarantine WHERE file LIKE '%clinics_joined.csv'")
    assert joined == [(4, "multiline_record")]
    lines = [
        r[0]
        for r in query(
            home,
            "SELECT _line FROM raw.clinics WHERE _load_id = (SELECT load_id FROM "
            "raw._loads WHERE file LIKE '%clinics_joined.csv') ORDER BY _line",
        )
    ]
    assert lines == [2, 3, 7, 8, 9, 10, 11]
    # 7: trimmed ids, one therapist T1 (a new version), tab-only clinic quarantined as required
    assert query(home, "SELECT therapist_id, count(*) FROM raw.therapists GROUP BY ALL") == [("T1", 2)]
    assert query(home, "SELECT rule, column_name FROM raw._quarantine WHERE file LIKE '%therapists_padded.csv'") == [
        ("required", "clinic_id")
    ]
    # 8: no loose number landed
    assert query(
        home,
        "SELECT charge_usd FROM raw.charges WHERE _load_id = (SELECT load_id FROM raw._loads "
        "WHERE file LIKE '%charges_loose.csv')",
    ) == [(Decimal("12.50"),)]
    # 9: NUL bytes early and late are handled the same way
    assert query(home, "SELECT line, rule FROM raw._quarantine WHERE file LIKE '%clinics_nul.csv' ORDER BY line") == [
        (3, "nul_byte"),
        (852, "nul_byte"),
    ]


def test_no_message_or_output_quotes_a_value_or_drives_the_terminal(hostile, monkeypatch):
    home, folder, expect, results, before = hostile
    monkeypatch.setattr(cli.out, "width", 1000)  # one line per row: a name is never folded mid-way
    monkeypatch.setattr(cli.err, "width", 1000)
    texts = [str(v) for row in query(home, "SELECT * FROM raw._loads") for v in row if v is not None]
    texts += [
        str(v)
        for row in query(home, "SELECT rule, column_name, detail FROM raw._quarantine")
        for v in row
        if v is not None
    ]
    runner = CliRunner()
    again = runner.invoke(app, ["ingest", str(folder), "--home", str(home.home)])  # every file again
    status = runner.invoke(app, ["status", "--home", str(home.home)])
    assert again.exception is None or isinstance(again.exception, SystemExit), again.exception
    assert again.exit_code == 2 and status.exit_code == 0
    for output in (again.output, status.output):
        assert "Traceback" not in output
        assert "\x1b[31m" not in output and "\x07" not in output  # escape sequences shown as \x1b, not run
        assert "❌" not in output  # no emoji
        texts.append(output)
    assert ":x:" in again.output and "[bold]" in again.output and "\\x1b[31m" in again.output  # shown as written
    for text in texts:
        for sentinel in SENTINELS:
            assert sentinel not in text, (sentinel, text[:300])


def test_a_linked_folder_given_by_the_caller_is_read_but_no_link_inside_it_is_followed(tmp_path, home):
    real = tmp_path / "real"
    real.mkdir()
    (real / "clinics.csv").write_text(csv_text(_rows("clinics", 2)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "payers.csv").write_text(csv_text(_rows("payers", 1)))
    (real / "payers.csv").symlink_to(elsewhere / "payers.csv")
    (real / "more").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "incoming").symlink_to(real, target_is_directory=True)

    results = {Path(r.file).name: r for r in ingest([tmp_path / "incoming"], home)}

    assert results["clinics.csv"].status == LOADED and results["clinics.csv"].rows_landed == 2
    assert results["payers.csv"].status == REFUSED and "symbolic link" in results["payers.csv"].message
    assert results["more"].status == REFUSED
    assert query(home, "SELECT count(*) FROM raw._loads WHERE source = 'payers' AND status = 'loaded'") == [(0,)]
