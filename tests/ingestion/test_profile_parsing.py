"""Source profiles (ingestion/profiles.py): how a practice's own export is parsed, and where its profile lives.

UTC offsets in timestamp_formats (exact instants, independent of the host's and the session's zone), null
tokens (`defaults.null_values`), accounting negatives in money, a title line / another delimiter on line 1,
`profile draft` on such files, and profiles kept in $PTPULSE_HOME/profiles/ (detected by ingest and upload).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from ingest_helpers import query
from test_profiles import APPOINTMENT_COLUMNS, appointment
from typer.testing import CliRunner

import ingestion.profiles as profiles
from ingestion.loader import ingest
from ingestion.profiles import PROFILES_DIR, ProfileError, draft_profile, resolve_profile
from ptpulse.cli import app
from ptpulse.core.config import get_settings

REPO = Path(__file__).resolve().parents[2]
APPTS_HEADER = "Appt ID,Patient,Location,Provider,Appt Start,Appt End,Created,Visit Type"
PAYMENTS_HEADER = "Payment ID,Claim #,Payer Name,Transaction Type,Posting Date,Amount,Check No"


def appts_profile(folder: Path, timezone: str, clinic_timezone: str | None = "America/New_York", **extra) -> Path:
    """A scheduling profile whose timestamp_formats read an offset first, then a naive ISO time."""
    defaults = {"timestamp_formats": ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"], "timezone": timezone}
    if clinic_timezone:
        defaults["clinic_timezone"] = clinic_timezone
    defaults.update(extra)
    data = {
        "profile": "acme_emr",
        "vendor": "Acme EMR",
        "defaults": defaults,
        "value_maps": {"vt": {"Eval": "initial_eval"}},
        "files": [
            {
                "name": "appts",
                "feeds": "scheduling_events",
                "match": {"header_required": ["Appt ID", "Appt Start"]},
                "columns": {
                    "event_id": {"from": "Appt ID"},
                    "appointment_id": {"from": "Appt ID"},
                    "patient_id": {"from": "Patient"},
                    "clinic_id": {"from": "Location"},
                    "therapist_id": {"from": "Provider"},
                    "scheduled_start": {"from": "Appt Start", "parse": "timestamp"},
                    "duration_min": {"derive": "minutes_between", "args": ["Appt Start", "Appt End"]},
                    "visit_type": {"from": "Visit Type", "map": "vt"},
                },
                "emit": [{"event_type": "booked", "event_at": "Created", "when": "always"}],
            }
        ],
    }
    path = folder / f"acme_{timezone.replace('/', '_').lower()}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def payments_profile(folder: Path, **defaults) -> Path:
    data = {
        "profile": "acme_billing",
        "defaults": {"date_formats": ["%m/%d/%Y"], "timezone": "clinic_local", **defaults},
        "value_maps": {"txn": {"Insurance Payment": "payer_payment", "Adjustment": "contractual_adjustment"}},
        "files": [
            {
                "name": "payments",
                "feeds": "remittances",
                "match": {"header_required": ["Payment ID", "Claim #", "Amount"]},
                "columns": {
                    "remit_id": {"from": "Payment ID"},
                    "claim_id": {"from": "Claim #"},
                    "payer_id": {"from": "Payer Name"},
                    "event_type": {"from": "Transaction Type", "map": "txn"},
                    "event_at": {"derive": "date_to_timestamp", "args": ["Posting Date"]},
                    "amount_usd": {"from": "Amount", "parse": "decimal"},
                    "check_number": {"from": "Check No"},
                },
            }
        ],
    }
    path = folder / "acme_billing.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def payments_csv(folder: Path, rows: list[tuple[str, str, str]], name: str = "payments.csv") -> Path:
    """rows: (payment id, amount, check number) of insurance payments on 11/02/2025."""
    lines = [PAYMENTS_HEADER] + [f'{p},CLM-1,Aetna,Insurance Payment,11/02/2025,"{a}",{c}' for p, a, c in rows]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- D1: a UTC offset is an exact instant ----------------------------------------------------------------------

# America/New_York 2025: clocks go 02:00 -> 03:00 on March 9 and 02:00 -> 01:00 on November 2.
OFFSET_ROWS = [
    # id, start, end, created
    ("A1", "2025-03-09T01:30:00-05:00", "2025-03-09T03:30:00-04:00", "2025-03-01T09:00:00-05:00"),  # spring: 60 min
    ("A2", "2025-11-02T01:30:00-04:00", "2025-11-02T01:15:00-05:00", "2025-10-20T09:00:00-04:00"),  # fall: 45 min
    ("A3", "2025-11-30T19:05:00Z", "2025-11-30T19:50:00Z", "2025-11-20T14:00:00Z"),  # ISO Z = UTC
    ("A4", "2025-11-30T14:05:00+00:00", "2025-11-30T14:50:00+00:00", "2025-11-20T14:00:00+00:00"),
]
# the clinic's wall time of each instant (scheduled_start, duration_min, event_at)
OFFSET_EXPECTED = [
    ("A1:booked", datetime(2025, 3, 9, 1, 30), 60, datetime(2025, 3, 1, 9, 0)),
    ("A2:booked", datetime(2025, 11, 2, 1, 30), 45, datetime(2025, 10, 20, 9, 0)),
    ("A3:booked", datetime(2025, 11, 30, 14, 5), 45, datetime(2025, 11, 20, 9, 0)),
    ("A4:booked", datetime(2025, 11, 30, 9, 5), 45, datetime(2025, 11, 20, 9, 0)),
]

INGEST_SCRIPT = """
import json, sys
from pathlib import Path
import duckdb
from ingestion.loader import ingest
from ptpulse.core.config import get_settings
home, profile, csv = sys.argv[1:4]
settings = get_settings(home).ensure()
[r] = ingest([Path(csv)], settings, profile=profile)
con = duckdb.connect(str(settings.raw_db), read_only=True)
db = con.execute("SELECT current_database()").fetchone()[0]
rows = con.execute("SELECT event_id, CAST(scheduled_start AS VARCHAR), duration_min, CAST(event_at AS VARCHAR) "
                   f'FROM "{db}".raw.scheduling_events ORDER BY event_id').fetchall()
print(json.dumps({"landed": r.rows_landed, "read": r.rows_read, "quarantined": r.rows_quarantined,
                  "message": r.message, "rows": rows}))
"""


def _ingest_in(host_tz: str, home: Path, profile: Path, csv: Path) -> dict:
    """Ingest in a fresh process whose host zone (and so DuckDB's session TimeZone) is `host_tz`."""
    env = dict(os.environ, TZ=host_tz, PYTHONPATH=str(REPO))
    env.pop("PTPULSE_DEFAULT_TIMEZONE", None)
    done = subprocess.run(
        [sys.executable, "-c", INGEST_SCRIPT, str(home), str(profile), str(csv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _write_appts(folder: Path, rows) -> Path:
    path = folder / "appts.csv"
    lines = [APPTS_HEADER] + [f"{i},PT{i},CL1,TH1,{s},{e},{c},Eval" for i, s, e, c in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("timezone", ["clinic_local", "UTC"])
def test_offset_times_are_exact_instants_on_the_clinic_clock_whatever_the_host_zone(tmp_path, timezone):
    csv = _write_appts(tmp_path, OFFSET_ROWS)
    profile = appts_profile(tmp_path, timezone)
    expected = [[e, _stamp(s), d, _stamp(c)] for e, s, d, c in OFFSET_EXPECTED]
    for host in ("Asia/Tokyo", "America/Los_Angeles"):
        got = _ingest_in(host, tmp_path / f"home-{host.replace('/', '-')}", profile, csv)
        assert got["read"] == got["landed"] + got["quarantined"]
        assert got["rows"] == expected, (timezone, host, got)


def test_naive_times_in_a_list_with_an_offset_format_keep_the_profiles_zone(tmp_path):
    """UTC profile: naive values are UTC wall times (converted), across both DST changes; clinic_local: as written."""
    naive = [
        ("N1", "2025-03-09T06:30:00", "2025-03-09T07:30:00", "2025-03-01T14:00:00"),  # 01:30 EST -> 03:30 EDT
        ("N2", "2025-11-02T05:30:00", "2025-11-02T06:15:00", "2025-10-20T13:00:00"),  # 01:30 EDT -> 01:15 EST
    ]
    csv = _write_appts(tmp_path, naive)
    utc = _ingest_in("Asia/Tokyo", tmp_path / "h-utc", appts_profile(tmp_path, "UTC"), csv)
    assert utc["rows"] == [
        ["N1:booked", "2025-03-09 01:30:00", 60, "2025-03-01 09:00:00"],
        ["N2:booked", "2025-11-02 01:30:00", 45, "2025-10-20 09:00:00"],
    ]
    local = _ingest_in("America/Los_Angeles", tmp_path / "h-local", appts_profile(tmp_path, "clinic_local"), csv)
    assert [r[1] for r in local["rows"]] == ["2025-03-09 06:30:00", "2025-11-02 05:30:00"]  # as written


def test_an_offset_time_of_a_clinic_without_a_known_zone_is_quarantined_not_guessed(home, tmp_path, monkeypatch):
    monkeypatch.delenv("PTPULSE_DEFAULT_TIMEZONE", raising=False)
    csv = _write_appts(
        tmp_path, OFFSET_ROWS[:1] + [("N1", "2025-03-09T06:30:00", "2025-03-09T07:30:00", "2025-03-01T14:00:00")]
    )
    [r] = ingest([csv], home, profile=str(appts_profile(tmp_path, "clinic_local", clinic_timezone=None)))
    assert (r.rows_read, r.rows_landed, r.rows_quarantined) == (2, 1, 1)
    assert "no known time zone" in r.message and "defaults.clinic_timezone" in r.message
    # the practice's zone (as FHIR uses it) places it
    monkeypatch.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/New_York")
    [r] = ingest(
        [csv], get_settings(tmp_path / "h2").ensure(), profile=str(appts_profile(tmp_path, "clinic_local", None))
    )
    assert r.rows_landed == 2, r.message


# --- D2: null tokens ---------------------------------------------------------------------------------------------


def test_null_tokens_are_empty_before_maps_so_no_phantom_ids_land(home, exports, tmp_path):
    csv = _write_appts(exports, [("A1", "2025-11-30T14:05:00", "2025-11-30T14:50:00", "2025-11-20T09:00:00")])
    text = csv.read_text().replace(",TH1,", ",NULL,")
    csv.write_text(text + "A2,PT2,CL1,N/A,2025-11-30T15:05:00,2025-11-30T15:50:00,2025-11-20T09:00:00,Eval\n")
    [r] = ingest([csv], home, profile=str(appts_profile(tmp_path, "clinic_local")))
    assert (r.rows_read, r.rows_landed, r.rows_quarantined) == (2, 0, 2)
    assert query(home, "SELECT DISTINCT rule, column_name FROM raw._quarantine") == [("required", "therapist_id")]


def test_null_tokens_in_optional_and_money_columns_and_a_profile_override(home, exports, tmp_path):
    rows = [("P1", "$20.00", "N/A"), ("P2", "NULL", "CHK2"), ("P3", "#n/a", "null"), ("P4", "-", "-")]
    [r] = ingest([payments_csv(exports, rows)], home, profile=str(payments_profile(tmp_path)))
    assert (r.rows_read, r.rows_landed, r.rows_quarantined) == (4, 1, 3)
    assert query(home, "SELECT remit_id, check_number FROM raw.remittances") == [("P1", None)]
    assert query(home, "SELECT line, rule FROM raw._quarantine ORDER BY line") == [
        (3, "required"),  # NULL amount: empty, so required
        (4, "required"),
        (5, "invalid_decimal"),  # `-` is not a default token (zero in Excel's accounting format)
    ]
    # a profile that means `-` as empty lists it (its list replaces the default)
    other = get_settings(tmp_path / "h2").ensure()
    [r] = ingest([payments_csv(exports, rows)], other, profile=str(payments_profile(tmp_path, null_values=["-"])))
    assert query(other, "SELECT remit_id, check_number FROM raw.remittances") == [("P1", "N/A")]  # no longer empty
    assert query(other, "SELECT line, rule FROM raw._quarantine ORDER BY line") == [
        (3, "invalid_decimal"),  # NULL is not in this profile's list
        (4, "invalid_decimal"),
        (5, "required"),  # `-` is
    ]


def test_null_values_must_be_quoted_texts(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        payments_profile(tmp_path)
        .read_text()
        .replace("timezone: clinic_local", "timezone: clinic_local\n  null_values: [NULL]")
    )
    with pytest.raises(ProfileError, match="quote"):
        resolve_profile(str(path))


def test_the_shipped_webpt_profile_lands_no_phantom_null_therapist(home, exports):
    from ingest_helpers import write_csv

    rows = [
        appointment(appointmnet_id="101", start_date="2024-03-05 09:00:00", end_date="2024-03-05 09:45:00"),
        appointment(
            appointmnet_id="102", start_date="2024-03-05 10:00:00", end_date="2024-03-05 10:45:00", therapist_id="NULL"
        ),
    ]
    [r] = ingest([write_csv(exports, "appointments.csv", rows, APPOINTMENT_COLUMNS)], home)
    assert r.profile == "webpt_standard_extract/appointments"
    assert query(home, "SELECT count(*) FROM raw.scheduling_events WHERE therapist_id = 'NULL'") == [(0,)]
    assert query(home, "SELECT DISTINCT rule, column_name FROM raw._quarantine WHERE line = 3") == [
        ("required", "therapist_id")
    ]


# --- D3: accounting negatives ---------------------------------------------------------------------------------


def test_accounting_negatives_are_negative_and_other_text_is_quarantined_with_the_forms(home, exports, tmp_path):
    rows = [
        ("P1", "$1,234.50", ""),
        ("P2", "(45.00)", ""),
        ("P3", "-$12.00", ""),
        ("P4", "$ (7.25)", ""),
        ("P5", "85.00-", ""),
        ("P6", "($1,250.00)", ""),
        ("P7", "$ 85.00 -", ""),
        ("P8", "USD 15.00", ""),
        ("P9", "-(5.00)", ""),
        ("P10", "7,25", ""),
    ]
    [r] = ingest([payments_csv(exports, rows)], home, profile=str(payments_profile(tmp_path)))
    assert r.rows_read == r.rows_landed + r.rows_quarantined
    assert query(home, "SELECT remit_id, amount_usd FROM raw.remittances ORDER BY _line") == [
        ("P1", Decimal("1234.50")),
        ("P2", Decimal("-45.00")),
        ("P3", Decimal("-12.00")),
        ("P4", Decimal("-7.25")),
        ("P5", Decimal("-85.00")),
        ("P6", Decimal("-1250.00")),
        ("P7", Decimal("-85.00")),
    ]
    assert query(home, "SELECT DISTINCT rule FROM raw._quarantine") == [("invalid_decimal",)]
    assert "amount_usd: 3 value(s) of Amount could not be read" in r.message
    assert "(45.00)" in r.message and "85.00-" in r.message
    for secret in ("USD 15.00", "-(5.00)", "7,25"):  # counts and forms only, never a value
        assert secret not in r.message


# --- D4: a title line or another delimiter on line 1 -----------------------------------------------------------


def test_a_title_line_or_semicolons_are_named_not_reported_as_missing_columns(home, exports, tmp_path):
    titled = exports / "titled.csv"
    titled.write_text("Payment Activity Report 11/01/2025 - 11/30/2025\n" + PAYMENTS_HEADER + "\n", encoding="utf-8")
    semi = exports / "semi.csv"
    semi.write_text(PAYMENTS_HEADER.replace(",", ";") + "\nP1;CLM-1;Aetna;Insurance Payment;11/02/2025;1,00;\n")
    results = ingest([titled, semi], home, profile=str(payments_profile(tmp_path)))
    by_file = {Path(r.file).name: r for r in results}
    assert by_file["titled.csv"].status == "refused"
    assert "report title above the header" in by_file["titled.csv"].message
    assert "lacks column" not in by_file["titled.csv"].message
    assert "Payment Activity Report" not in by_file["titled.csv"].message  # line 1's text is never echoed
    assert "separated by ';'" in by_file["semi.csv"].message


def test_draft_refuses_a_title_line_or_semicolons_instead_of_writing_a_profile_of_it(tmp_path):
    with pytest.raises(ProfileError, match="report title"):
        draft_profile({"titled.csv": ["Payment Activity Report 11/01/2025 - 11/30/2025"]})
    with pytest.raises(ProfileError, match="separated by ';'"):
        draft_profile({"semi.csv": [PAYMENTS_HEADER.replace(",", ";")]})
    with pytest.raises(ProfileError, match="report title"):
        draft_profile({"titled.csv": ["Payment Activity Report", "November 2025"]})
    titled = tmp_path / "titled.csv"  # the CLI finds the header under the title and proposes skip_lines
    titled.write_text("Payment Activity Report\n" + PAYMENTS_HEADER + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["profile", "draft", str(titled), "-o", str(tmp_path / "d.yml")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "d.yml").read_text())["files"][0]["skip_lines"] == 1
    untitled = tmp_path / "untitled.csv"  # no header anywhere near the top: refused, nothing written
    untitled.write_text("Payment Activity Report\nNovember 2025\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["profile", "draft", str(untitled), "-o", str(tmp_path / "e.yml")])
    assert result.exit_code == 2 and "report title" in result.output
    assert not (tmp_path / "e.yml").exists()


# --- D6 / D7: draft warnings and ties -----------------------------------------------------------------------------


def test_draft_picks_remittances_for_a_payments_file_and_warns_about_a_missing_row_id():
    [entry] = draft_profile({"payments.csv": PAYMENTS_HEADER.split(",")})["files"]
    assert entry["feeds"] == "remittances"  # tied with charges on matches: the better share of required columns
    assert any("concat" in w and "identical rows" in w and "#2" in w for w in entry["warnings"])


# --- D5: the practice's own profiles in $PTPULSE_HOME/profiles/ ---------------------------------------------


def test_a_profile_in_the_home_is_detected_and_wins_over_a_shipped_one(home, exports, tmp_path):
    folder = profiles.home_profiles_dir(home.home)
    folder.mkdir()
    payments_profile(folder)
    [r] = ingest([payments_csv(exports, [("P1", "$20.00", "")], name="export_0306.csv")], home)
    assert (r.status, r.profile, r.rows_landed) == ("loaded", "acme_billing/payments", 1), r.message
    assert resolve_profile("acme_billing", home.home).path == folder / "acme_billing.yml"
    assert "acme_billing" not in profiles.available_profiles()  # only that home's
    # a practice's fixed copy of a shipped profile, same name, in the home: it is the one used
    data = yaml.safe_load((PROFILES_DIR / "webpt_standard_extract.yml").read_text())
    data["value_maps"]["appointment_type"]["Practice Eval"] = "initial_eval"
    (folder / "webpt_fixed.yml").write_text(yaml.safe_dump(data), encoding="utf-8")
    found = profiles.available_profiles(home.home)
    assert found["webpt_standard_extract"].path == folder / "webpt_fixed.yml"
    from ingest_helpers import write_csv

    row = appointment(appointmnet_id="7", start_date="2024-03-05 09:00:00", end_date="2024-03-05 09:45:00")
    row["appointment_type"] = "Practice Eval"
    [r] = ingest([write_csv(exports, "appointments.csv", [row], APPOINTMENT_COLUMNS)], home)
    assert query(home, "SELECT DISTINCT visit_type FROM raw.scheduling_events") == [("initial_eval",)]


def test_profile_install_copies_a_checked_profile_into_the_home(tmp_path):
    home = tmp_path / "home"
    source = payments_profile(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["profile", "install", str(source), "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert (home / "profiles" / "acme_billing.yml").read_text() == source.read_text()
    assert runner.invoke(app, ["profile", "install", str(source), "--home", str(home)]).exit_code == 2  # exists
    bad = tmp_path / "bad.yml"
    bad.write_text("profile: x\nfiles: []\n")
    result = runner.invoke(app, ["profile", "install", str(bad), "--home", str(home)])
    assert result.exit_code == 2 and not (home / "profiles" / "x.yml").exists()


def test_the_upload_path_maps_a_file_by_a_home_profile(home, exports, tmp_path):
    from app.lib.uploads import new_upload, run_ingest

    profiles.home_profiles_dir(home.home).mkdir()
    payments_profile(profiles.home_profiles_dir(home.home))
    saved = new_upload(home)
    saved.folder.mkdir(parents=True, exist_ok=True)
    payments_csv(saved.folder, [("P1", "(45.00)", "")], name="export.csv")
    saved.files.append("export.csv")
    outcome = run_ingest(home, saved)
    [f] = outcome.files
    assert (f["status"], f["profile"], f["rows_landed"]) == ("loaded", "acme_billing/payments", 1), f
