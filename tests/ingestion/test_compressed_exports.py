"""Compressed exports (`.csv.gz`, `remit.835.gz`, `Patient.ndjson.gz`, a `.zip` of CSVs): read as the file(s)
inside, through the real loader into a real raw.duckdb, from files written here with the stdlib's gzip / zipfile.

What each test would catch: a .gz or zip not read (or read differently from the plain file); a zip member not
accounted for on its own; a re-send that lands again, plain vs compressed counted twice; a bad archive, a zip bomb,
a nested archive, a traversal name, an encrypted / damaged member passed over in silence or written where it
must not be; a message quoting a cell; memory that grows with the file; unpacked patient rows left on disk.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from ingest_helpers import csv_text, example_row, query
from typer.testing import CliRunner

from ingestion.loader import LOADED, REFUSED, SKIPPED, ingest
from ptpulse import cli
from ptpulse.cli import app
from ptpulse.core.config import get_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))  # x12_text: hand-written 835s
import x12_text  # noqa: E402

SENTINEL = "ZEBULON-QX-4417"  # in cells of every file here: never in a message, a detail or the terminal
KEEP = ("line", "rule", "column_name", "detail", "record")
# the settings and names the loader documents (ingestion/README.md "Compressed exports"), written out here so
# that a test fails on what the loader does, not on a missing helper
MAX_BYTES_ENV, MAX_RATIO_ENV = "PTPULSE_ARCHIVE_MAX_BYTES", "PTPULSE_ARCHIVE_MAX_RATIO"
RATIO_MIN_BYTES = 16 * 1024 * 1024  # below this much unpacked no ratio is checked
PRIVATE_PREFIX = ".ingest-"  # the loader's private working copies and unpacked folders, next to raw.duckdb


def _clinics_csv() -> bytes:
    """3 valid clinics, the first again (a duplicate) and one with a bad state (quarantined): 5 rows read."""
    good = [example_row("clinics", city=SENTINEL) for _ in range(3)]
    bad = example_row("clinics", state="Texas", clinic_name=SENTINEL)
    return csv_text([*good, good[0], bad]).encode()


def _payers_csv() -> bytes:
    return csv_text([example_row("payers", payer_name=SENTINEL) for _ in range(2)]).encode()


def _gz(path: Path, data: bytes, mtime: int = 0, level: int = 9) -> Path:
    with gzip.GzipFile(path, "wb", compresslevel=level, mtime=mtime) as out:
        out.write(data)
    return path


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # the name exactly as given (`../x.csv` too)
            info.compress_type = method
            archive.writestr(info, data)
    return path


def _landed(home, table: str) -> list[tuple]:
    return query(home, f"SELECT * EXCLUDE (_load_id) FROM raw.{table} ORDER BY _line")


def _quarantined(home) -> list[tuple]:
    return query(home, f"SELECT {', '.join(KEEP)} FROM raw._quarantine ORDER BY line")


def _accounted(result) -> bool:
    return result.rows_read == result.rows_landed + result.rows_quarantined + result.rows_duplicate


def _no_values_anywhere(home, *outputs: str) -> None:
    texts = [str(v) for row in query(home, "SELECT * FROM raw._loads") for v in row if v is not None]
    texts += [str(v) for row in query(home, "SELECT rule, column_name, detail FROM raw._quarantine") for v in row if v]
    for text in [*texts, *outputs]:
        assert SENTINEL not in text, text[:300]


def _no_private_copies(home) -> None:
    assert not list(home.raw_db.parent.glob(f"{PRIVATE_PREFIX}*"))


def _shown(file: str) -> str:
    """A recorded file as the terminal names it: its own name, a zip member as `<archive name>!<member path>`."""
    archive, bang, member = file.partition(".zip!")
    return Path(archive).name + bang + member if bang else Path(file).name


def _home(tmp_path: Path, name: str):
    return get_settings(tmp_path / name).ensure()


def _by_file(results) -> dict[str, object]:
    return {_shown(r.file): r for r in results}


# --- the same rows whatever the wrapping ------------------------------------------------------------------------


def test_plain_gz_and_zip_land_identical_raw_rows_with_the_same_accounting(tmp_path):
    data = _clinics_csv()
    plain, gz, zipped = (tmp_path / n for n in ("plain", "gz", "zip"))
    for folder in (plain, gz, zipped):
        folder.mkdir()
    (plain / "clinics.csv").write_bytes(data)
    _gz(gz / "clinics.csv.gz", data)
    _zip(zipped / "export.zip", {"clinics.csv": data})

    landed, quarantined, names = [], [], []
    for folder in (plain, gz, zipped):
        home = _home(tmp_path, f"home_{folder.name}")
        [result] = ingest([folder], home)
        assert (result.status, result.source) == (LOADED, "clinics"), result.message
        assert (result.rows_read, result.rows_landed, result.rows_quarantined, result.rows_duplicate) == (5, 3, 1, 1)
        assert _accounted(result)
        landed.append(_landed(home, "clinics"))
        quarantined.append(_quarantined(home))
        names.append(_shown(result.file))
        assert query(home, "SELECT DISTINCT file FROM raw._quarantine") == [(result.file,)]
        _no_values_anywhere(home)
        _no_private_copies(home)
    assert landed[0] == landed[1] == landed[2] and len(landed[0]) == 3  # values, _line and _row_hash alike
    assert quarantined[0] == quarantined[1] == quarantined[2] and quarantined[0][0][1] == "pattern_mismatch"
    assert names == ["clinics.csv", "clinics.csv.gz", "export.zip!clinics.csv"]


def test_fhir_ndjson_gz_of_a_bulk_folder_and_an_835_gz_land_as_their_plain_files(tmp_path):
    """`Patient.ndjson.gz`-style files of one folder are unpacked together, so a reference to a sibling file
    resolves as in a plain folder (the referral's physician NPI comes from Practitioner.ndjson); `remit.835.gz`
    is read as the 835 it holds."""
    practitioner = {
        "resourceType": "Practitioner",
        "id": "ref1",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    }
    referral = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "Practitioner/ref1"},
        "locationReference": [{"reference": "Location/clinic1"}],
        "authoredOn": "2024-03-01T09:15:00-06:00",
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M17.0"}]}],
    }
    remit = x12_text.file_835(
        [
            x12_text.payment_835(
                "0001",
                "80.00",
                "20250410",
                "TRACE1",
                "PAYER1",
                "ACME HEALTH",
                [x12_text.clp("CLM1", "1", "100.00", "80.00", services=[("97110", "100.00", "80.00", [])])],
            )
        ],
        control=905,
    ).encode()
    rows = {}
    for kind in ("plain", "gz"):
        folder = tmp_path / kind / "bulk"
        folder.mkdir(parents=True)
        deliveries = [(folder / "Practitioner.ndjson", practitioner), (folder / "ServiceRequest.ndjson", referral)]
        for path, data in [
            *((p, (json.dumps(r) + "\n").encode()) for p, r in deliveries),
            (folder.parent / "remit.835", remit),
        ]:
            if kind == "plain":
                path.write_bytes(data)
            else:
                _gz(path.with_name(path.name + ".gz"), data)
        home = _home(tmp_path, f"home_{kind}")
        results = ingest([folder.parent], home)
        assert all(r.status == LOADED and _accounted(r) for r in results), [r.message for r in results]
        rows[kind] = (
            sorted((_shown(r.file), r.source, r.rows_read, r.rows_landed) for r in results),
            query(home, "SELECT referral_id, referring_physician_id FROM raw.intake_events"),
            _landed(home, "remittances"),
        )
        _no_private_copies(home)
    assert rows["gz"][1] == rows["plain"][1] == [("sr1", "1234567893")]
    assert rows["gz"][2] == rows["plain"][2] and rows["plain"][2]
    assert [r[1:] for r in rows["gz"][0]] == [r[1:] for r in rows["plain"][0]]
    assert {r[0] for r in rows["gz"][0]} == {"Practitioner.ndjson.gz", "ServiceRequest.ndjson.gz", "remit.835.gz"}


def test_each_zip_member_is_its_own_load_and_metadata_entries_are_left_out(home, exports):
    archive = _zip(
        exports / "export.zip",
        {
            "clinics.csv": _clinics_csv(),
            "2024/": b"",  # a directory entry
            "2024/payers.csv": _payers_csv(),
            "2024/.hidden.csv": _payers_csv(),
            "__MACOSX/2024/._payers.csv": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
            "README.md": b"what the export holds",
        },
    )
    results = ingest([exports], home)
    by_file = _by_file(results)
    assert sorted(by_file) == ["export.zip!2024/payers.csv", "export.zip!README.md", "export.zip!clinics.csv"]
    assert all(r.file == f"{archive}!{name.split('!', 1)[1]}" for name, r in by_file.items())
    clinics, payers = by_file["export.zip!clinics.csv"], by_file["export.zip!2024/payers.csv"]
    assert (clinics.rows_read, clinics.rows_landed, clinics.rows_quarantined, clinics.rows_duplicate) == (5, 3, 1, 1)
    assert (payers.rows_read, payers.rows_landed) == (2, 2)
    assert by_file["export.zip!README.md"].status == "skipped_not_data"
    assert all(_accounted(r) for r in results)
    assert query(home, "SELECT count(*) FROM raw._loads") == [(3,)]  # one row per member read, none for metadata
    assert query(home, "SELECT count(*) FROM raw.payers") == [(2,)]
    _no_values_anywhere(home)
    _no_private_copies(home)


# --- identity: re-sends change nothing, plain and compressed are one file ------------------------------------------


def test_reloading_the_same_gz_and_zip_changes_nothing(home, exports):
    _gz(exports / "clinics.csv.gz", _clinics_csv())
    _zip(exports / "export.zip", {"payers.csv": _payers_csv()})
    first = ingest([exports], home)
    assert [r.status for r in first] == [LOADED, LOADED]
    before = (_landed(home, "clinics"), _landed(home, "payers"), _quarantined(home))
    again = ingest([exports], home)
    assert [r.status for r in again] == [SKIPPED, SKIPPED]
    assert all(r.rows_read == r.rows_landed == 0 for r in again)
    assert (_landed(home, "clinics"), _landed(home, "payers"), _quarantined(home)) == before
    _no_private_copies(home)


@pytest.mark.parametrize("plain_first", [True, False])
def test_the_same_export_sent_plain_and_compressed_is_counted_once(tmp_path, plain_first):
    """Keyed on the uncompressed bytes: a .gz written at another time or level (other gzip bytes) and a zip member
    holding the same CSV are the plain file's bytes, whichever came first."""
    data = _clinics_csv()
    home = _home(tmp_path, "home")
    plain, gz, zipped = (tmp_path / n for n in ("plain", "gz", "zip"))
    for folder in (plain, gz, zipped):
        folder.mkdir()
    (plain / "clinics.csv").write_bytes(data)
    _gz(gz / "clinics.csv.gz", data, mtime=1_700_000_000, level=1)
    _gz(gz / "clinics_copy.csv.gz", data, mtime=1_800_000_000, level=6)
    _zip(zipped / "export.zip", {"clinics.csv": data})
    order = [plain, gz, zipped] if plain_first else [gz, zipped, plain]
    first, *later = [r for folder in order for r in ingest([folder], home)]
    assert first.status == LOADED and first.rows_landed == 3
    assert len(later) == 3 and all(r.status == SKIPPED for r in later), [r.message for r in later]
    for r in later:
        same = "is byte-identical" if r.file.endswith("clinics.csv") and "!" not in r.file else "unpacked, is byte"
        assert f"{_shown(r.file)} {same}" in r.message
    assert query(home, "SELECT count(*) FROM raw.clinics") == [(3,)]
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(1,)]
    assert query(home, "SELECT count(DISTINCT sha256) FROM raw._loads") == [(1,)]


# --- deliveries that are refused, with their reason ----------------------------------------------------------------


def test_a_gz_or_zip_that_is_not_one_or_is_cut_short_is_refused_with_a_file_level_reason(home, exports):
    data = _clinics_csv()
    (exports / "plain_text.csv.gz").write_bytes(data)  # named .gz, not gzip
    whole = gzip.compress(data)
    (exports / "cut_short.csv.gz").write_bytes(whole[: len(whole) // 2])
    (exports / "fake.zip").write_bytes(data)  # named .zip, not a zip
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("clinics.csv", data)
    (exports / "cut.zip").write_bytes(zipped.getvalue()[:-30])  # the end record is lost in transfer
    _zip(exports / "empty.zip", {"only/": b"", "__MACOSX/._x.csv": b"x"})
    _gz(exports / "payers.csv.gz", _payers_csv())  # still loads
    by_file = _by_file(ingest([exports], home))
    expected = {
        "plain_text.csv.gz": "is named .gz but is not gzip-compressed",
        "cut_short.csv.gz": "is not a complete gzip file",
        "fake.zip": "is named .zip but is not a zip archive",
        "cut.zip": "is not a complete zip archive",
        "empty.zip": "holds no file to read",
    }
    for name, reason in expected.items():
        assert by_file[name].status == REFUSED, (name, by_file[name].message)
        assert by_file[name].message.startswith(f"{name} ") and reason in by_file[name].message
    assert by_file["payers.csv.gz"].status == LOADED and by_file["payers.csv.gz"].rows_landed == 2
    assert not query(home, "SELECT * FROM raw._quarantine")
    _no_values_anywhere(home)
    _no_private_copies(home)


def test_a_zip_bomb_over_the_total_cap_or_the_ratio_is_refused_naming_the_archive(home, exports, monkeypatch):
    header = b"clinic_id,clinic_name,city,state,timezone,opened_on,updated_at\n"
    row = f"C1,{SENTINEL},Austin,TX,America/Chicago,2020-01-01,2024-01-01 00:00:00\n".encode()
    big = header + row * (3 * 1024 * 1024 // len(row))  # 3 MB, over a 2MB cap
    _zip(exports / "big.zip", {"clinics.csv": big, "payers.csv": _payers_csv()})
    _gz(exports / "big_clinics.csv.gz", big)
    monkeypatch.setenv(MAX_BYTES_ENV, "2MB")
    by_file = _by_file(ingest([exports], home))
    assert sorted(by_file) == ["big.zip", "big_clinics.csv.gz"]  # no member of the zip read, not even payers
    for name in by_file:
        assert by_file[name].status == REFUSED
        assert by_file[name].message.startswith(f"{name}: unpacked, it holds more than 1.9 MiB")
        assert MAX_BYTES_ENV in by_file[name].message
    assert not query(home, "SELECT * FROM raw._loads WHERE status <> 'refused'")

    monkeypatch.delenv(MAX_BYTES_ENV)  # the default cap; now the ratio (a deflate bomb's ~1000x)
    bombs = exports.parent / "bombs"
    bombs.mkdir()
    zeros = header + b"0" * (RATIO_MIN_BYTES + 1024)
    _zip(bombs / "ratio.zip", {"clinics.csv": zeros})  # refused from its declared sizes, before a byte is written
    _gz(bombs / "ratio.csv.gz", zeros)  # gzip declares nothing: refused while streaming
    by_file = _by_file(ingest([bombs], home))
    for name in ("ratio.zip", "ratio.csv.gz"):
        assert by_file[name].status == REFUSED
        assert by_file[name].message.startswith(f"{name}: it unpacks to more than 200 times its compressed size")
        assert MAX_RATIO_ENV in by_file[name].message
    monkeypatch.setenv(MAX_RATIO_ENV, "not a number")  # a broken setting refuses, never falls back to a default
    by_file = _by_file(ingest([bombs], home))
    for name in ("ratio.zip", "ratio.csv.gz"):
        assert by_file[name].status == REFUSED
        assert by_file[name].message.startswith(f"{name} was not unpacked: ${MAX_RATIO_ENV} is not a ratio")
    assert query(home, "SELECT count(*) FROM raw._loads WHERE status = 'loaded'") == [(0,)]
    _no_values_anywhere(home)
    _no_private_copies(home)


def test_nested_archives_and_unreadable_members_are_refused_members_never_skipped(home, exports):
    data = _clinics_csv()
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as nested:
        nested.writestr("clinics.csv", data)
    stored = _zip(
        exports / "stored.zip",
        {"damaged.csv": data, "method.csv": _payers_csv()},
        method=zipfile.ZIP_STORED,
    )
    raw = bytearray(stored.read_bytes())
    raw[raw.index(data) + 40] ^= 0x01  # one bit flipped in damaged.csv: its CRC-32 no longer matches
    _set_method(raw, "method.csv", 9)  # Deflate64, which zipfile cannot unpack
    stored.write_bytes(bytes(raw))
    _zip(
        exports / "export.zip",
        {
            "inner.zip": inner.getvalue(),
            "more/clinics.csv.gz": gzip.compress(data),
            "disguised.csv": gzip.compress(data),  # a gzip whatever its name says
            "payers.csv": _payers_csv(),
        },
    )
    _gz(exports / "double.csv.gz.gz", gzip.compress(data))
    _gz(exports / "clinics.csv.gz", gzip.compress(data))  # gzip inside the gzip
    by_file = _by_file(ingest([exports], home))
    nested = ["export.zip!inner.zip", "export.zip!more/clinics.csv.gz", "export.zip!disguised.csv"]
    for name in [*nested, "double.csv.gz.gz", "clinics.csv.gz"]:
        assert by_file[name].status == REFUSED, (name, by_file[name].message)
        assert by_file[name].message.startswith(f"{name} is itself a compressed file")
    assert by_file["stored.zip!damaged.csv"].status == REFUSED
    assert "stored.zip!damaged.csv is not a complete member of the archive" in by_file["stored.zip!damaged.csv"].message
    assert by_file["stored.zip!method.csv"].status == REFUSED
    assert "a method PT Pulse cannot unpack (zip method 9)" in by_file["stored.zip!method.csv"].message
    assert by_file["export.zip!payers.csv"].status == LOADED and by_file["export.zip!payers.csv"].rows_landed == 2
    assert query(home, "SELECT count(*) FROM raw._loads") == [(len(by_file),)]
    assert not query(home, "SELECT * FROM raw._loads WHERE source = 'clinics'")
    _no_values_anywhere(home)
    _no_private_copies(home)


def test_a_member_whose_path_leads_out_of_the_archive_is_refused_and_never_written(home, tmp_path):
    exports = tmp_path / "deep" / "exports"
    exports.mkdir(parents=True)
    names = ["../../escaped.csv", "/tmp/abs_escaped_h1.csv", "C:\\evil\\escaped2.csv", "ok/../../../escaped3.csv"]
    _zip(
        exports / "export.zip",
        {**{n: _clinics_csv() for n in names}, "../.hidden_escape.csv": b"x", "payers.csv": _payers_csv()},
    )
    by_file = _by_file(ingest([exports], home))
    for name in [*names, "../.hidden_escape.csv"]:  # a hidden name is left out, but not one leading out
        shown = f"export.zip!{name}"
        assert by_file[shown].status == REFUSED
        assert "its path inside the archive leads out of the archive's folder" in by_file[shown].message
    assert by_file["export.zip!payers.csv"].status == LOADED
    assert not [p for p in tmp_path.rglob("*escape*") if p.is_file()]  # home and exports are under tmp_path
    assert not Path("/tmp/abs_escaped_h1.csv").exists()
    _no_values_anywhere(home)
    _no_private_copies(home)


def test_an_encrypted_member_is_refused_with_its_reason(home, exports):
    archive = _zip(exports / "locked.zip", {"clinics.csv": _clinics_csv(), "payers.csv": _payers_csv()})
    raw = bytearray(archive.read_bytes())
    _set_flag(raw, "clinics.csv", 0x1)  # "encrypted": the stdlib writes no encryption, so the flag is set by hand
    archive.write_bytes(bytes(raw))
    by_file = _by_file(ingest([exports], home))
    locked = by_file["locked.zip!clinics.csv"]
    assert locked.status == REFUSED and "is password-protected (encrypted) in the archive" in locked.message
    assert by_file["locked.zip!payers.csv"].status == LOADED
    _no_values_anywhere(home)


# --- what the terminal and --json show; nothing left behind; memory ---------------------------------------------


def test_the_cli_lists_each_member_and_no_output_quotes_a_value(home, exports, monkeypatch):
    monkeypatch.setattr(cli.out, "width", 1000)
    monkeypatch.setattr(cli.err, "width", 1000)
    _zip(exports / "export.zip", {"2024/clinics.csv": _clinics_csv(), "inner.zip": b"PK\x03\x04"})
    _gz(exports / "payers.csv.gz", _payers_csv())
    runner = CliRunner()
    as_json = runner.invoke(app, ["ingest", str(exports), "--home", str(home.home), "--json"])
    answer = json.loads(as_json.stdout)
    assert [f["file"] for f in answer["files"]] == [
        "export.zip!2024/clinics.csv",
        "export.zip!inner.zip",
        "payers.csv.gz",
    ]
    assert answer["totals"] == {"rows_read": 7, "rows_landed": 5, "rows_quarantined": 1, "rows_duplicate": 1}
    assert as_json.exit_code == 2  # a member was refused
    again = runner.invoke(app, ["ingest", str(exports), "--home", str(home.home)])
    status = runner.invoke(app, ["status", "--home", str(home.home)])
    for output in (again.output, status.output):
        assert "export.zip!2024/clinics.csv" in output and "export.zip!inner.zip" in output
        assert "payers.csv.gz" in output and "Traceback" not in output
    _no_values_anywhere(home, as_json.output, again.output, status.output)


def test_a_large_gz_is_streamed_never_held_in_python_memory(home, exports, monkeypatch):
    """~90 MB unpacked (48 lines of 1.9 MB in a column the contract ignores: DuckDB's work stays small) lands
    while Python's peak allocation stays a few 4 MiB chunks: never the file, nor a line of it per row."""
    monkeypatch.setenv(MAX_RATIO_ENV, "100000")  # one repeated letter: not a bomb in this test
    rows = [dict(example_row("payers", payer_name=SENTINEL), export_notes="x" * 1_900_000) for _ in range(48)]
    path = exports / "payers.csv.gz"
    with gzip.GzipFile(path, "wb", compresslevel=1) as out:
        out.write(csv_text(rows[:1]).split("\n", 1)[0].encode() + b"\n")  # the header
        for row in rows:  # a row at a time: the test itself never holds the file either
            out.write(csv_text([row]).split("\n", 1)[1].encode())
    tracemalloc.start()
    try:
        [result] = ingest([exports], home)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.status, result.rows_read, result.rows_landed) == (LOADED, 48, 48), result.message
    assert peak < 32 * 1024 * 1024, peak  # the file is ~90 MB unpacked
    _no_values_anywhere(home)
    _no_private_copies(home)


def test_an_unpacked_folder_left_by_a_killed_load_is_removed_by_the_next_ingest(home, exports):
    stale = home.raw_db.parent / f"{PRIVATE_PREFIX}k1ll3d"
    (stale / "bulk").mkdir(parents=True)
    (stale / "bulk" / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "p1"}\n')
    _gz(exports / "payers.csv.gz", _payers_csv())
    ingest([exports], home)
    assert not stale.exists()


def _central_offsets(raw: bytearray, name: str) -> tuple[int, int]:
    """(local header offset, central directory header offset) of member `name`."""
    central = raw.index(b"PK\x01\x02")
    encoded = name.encode()
    while True:
        central = raw.index(b"PK\x01\x02", central)
        length = struct.unpack_from("<H", raw, central + 28)[0]
        if bytes(raw[central + 46 : central + 46 + length]) == encoded:
            return struct.unpack_from("<I", raw, central + 42)[0], central
        central += 4


def _set_flag(raw: bytearray, name: str, bit: int) -> None:
    local, central = _central_offsets(raw, name)
    struct.pack_into("<H", raw, local + 6, struct.unpack_from("<H", raw, local + 6)[0] | bit)
    struct.pack_into("<H", raw, central + 8, struct.unpack_from("<H", raw, central + 8)[0] | bit)


def _set_method(raw: bytearray, name: str, method: int) -> None:
    local, central = _central_offsets(raw, name)
    struct.pack_into("<H", raw, local + 8, method)
    struct.pack_into("<H", raw, central + 10, method)
