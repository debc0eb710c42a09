"""Source profiles (ingestion/profiles.py): vendor exports mapped onto the contracts by YAML, on real DuckDB.

WebPT-shaped files use the column lists of ../shared/interop/outside/vendor-layouts/webpt_standard_extract.json;
every load goes through the normal validation / quarantine / audit path, so the row identity must hold.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import yaml
from ingest_helpers import example_row, query, write_csv
from typer.testing import CliRunner

from ingestion.loader import ingest
from ingestion.profiles import PROFILES_DIR, detect, draft_profile, load_profiles
from ingestion.status import status_report
from ptpulse.cli import app

APPOINTMENT_COLUMNS = [
    "appointmnet_id", "parent_appointment_id", "start_date", "end_date", "check_in_time", "check_out_time",
    "calendar_title", "clinic_id", "therapist_id", "appointment_type", "case_id", "patient_id",
    "appointment_status", "appointment_creator_id", "apt_apttype", "visit_comment", "reason", "time_stamp",
]  # fmt: skip
AUTH_COLUMNS = [
    "record_id", "authorization_id", "case_id", "auth_number", "auth_start_date", "auth_end_date",
    "visit_authorized_for", "notes", "authorization_status", "patient_id", "clinic_id", "modified_date", "ins_name",
    "policy_number", "group_number", "payer_type", "export_flag",
]  # fmt: skip


def appointment(**values: str) -> dict[str, str]:
    row = dict.fromkeys(APPOINTMENT_COLUMNS, "")
    row.update(clinic_id="7", therapist_id="31", case_id="501", patient_id="9001", appointment_status="Active")
    row.update(appointment_creator_id="44", time_stamp="2024-03-01 10:00:00")
    row.update(values)
    return row


def authorization(record_id: str, flag: str, visits: str = "12", **values: str) -> dict[str, str]:
    row = dict.fromkeys(AUTH_COLUMNS, "")
    row.update(record_id=record_id, authorization_id="A" + record_id, case_id="501", patient_id="9001", clinic_id="7")
    row.update(auth_start_date="2024-03-01", auth_end_date="06/01/2024", visit_authorized_for=visits)
    row.update(modified_date="2024-03-01", ins_name="Blue Shield", export_flag=flag)
    row.update(values)
    return row


def identity_holds(home) -> bool:
    bad = "SELECT count(*) FROM raw._loads WHERE rows_read <> rows_landed + rows_quarantined + rows_duplicate"
    return query(home, bad) == [(0,)]


def test_shipped_profiles_parse_and_detect_webpt_headers():
    profiles = load_profiles()
    assert {"webpt_standard_extract", "tebra_kareo_api_export"} <= set(profiles)
    profile, pfile = detect(APPOINTMENT_COLUMNS, profiles)
    assert (profile.name, pfile.name, pfile.feeds) == ("webpt_standard_extract", "appointments", "scheduling_events")
    assert detect(AUTH_COLUMNS, profiles)[1].name == "authorizations"
    # EMR charges and RevFlow billing_charges are told apart by header_forbidden
    emr = ["record_pointer", "visit_date", "cpt", "units", "charge_amount", "note_type"]
    assert detect(emr, profiles)[1].name == "charges"
    assert detect([*emr, "charge_id", "gpms_code", "patient_account_number", "date_of_service", "cpt_code"], profiles)[
        1
    ].name == ("billing_charges")
    assert detect(["charge_id", "claim_id", "cpt_code"], profiles) is None


def test_webpt_appointments_land_by_header_with_events_and_quarantined_cancels(home, exports):
    write_csv(
        exports,
        "appointments_export_0306.csv",
        [
            appointment(
                appointmnet_id="101",
                start_date="2024-03-05 09:00:00",
                end_date="2024-03-05 09:45:00",
                check_in_time="2024-03-05 08:55:00",
                check_out_time="03/05/2024 09:50",
            ),
            appointment(
                appointmnet_id="-102",
                start_date="03/05/2024 10:00",
                end_date="03/05/2024 11:00",
                appointment_status="Inactive",
                time_stamp="2024-03-02 11:00:00",
            ),
        ],
        APPOINTMENT_COLUMNS,
    )
    [result] = ingest([exports], home)
    assert (result.status, result.source, result.profile) == (
        "loaded",
        "scheduling_events",
        "webpt_standard_extract/appointments",
    )
    # 2 vendor rows -> 4 events + 1 unresolved cancel (quarantined, never guessed)
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (5, 4, 1)
    rows = query(
        home,
        "SELECT event_id, event_type, event_at, scheduled_start, duration_min, patient_id, episode_id, _line, _op "
        "FROM raw.scheduling_events ORDER BY event_id",
    )
    assert rows == [
        (
            "webpt:appointment:-102:booked",
            "booked",
            datetime(2024, 3, 2, 11),
            datetime(2024, 3, 5, 10),
            60,
            "9001",
            "501",
            3,
            "upsert",
        ),
        ("webpt:appointment:101:arrived", "arrived", datetime(2024, 3, 5, 8, 55), datetime(2024, 3, 5, 9), 45)
        + ("9001", "501", 2, "upsert"),
        ("webpt:appointment:101:booked", "booked", datetime(2024, 3, 1, 10), datetime(2024, 3, 5, 9), 45)
        + ("9001", "501", 2, "upsert"),
        ("webpt:appointment:101:completed", "completed", datetime(2024, 3, 5, 9, 50), datetime(2024, 3, 5, 9), 45)
        + ("9001", "501", 2, "upsert"),
    ]
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine") == [(3, "not_accepted", "event_type")]
    assert identity_holds(home)
    [load] = status_report(home)["loads"]
    assert load["profile"] == "webpt_standard_extract/appointments"


def test_export_flag_modify_and_delete_keep_history(home, exports):
    first = write_csv(
        exports / "day1",
        "auths.csv",
        [authorization("1", "1"), authorization("2", "1", ins_name="Aetna")],
        AUTH_COLUMNS,
    )
    ingest([first], home)
    before = query(home, "SELECT * FROM raw.authorizations ORDER BY auth_id")
    assert [(r[0], r[4], r[5], r[6], r[7]) for r in before] == [
        ("1", "webpt:ins_name:Blue Shield", 12, date(2024, 3, 1), date(2024, 6, 1)),
        ("2", "webpt:ins_name:Aetna", 12, date(2024, 3, 1), date(2024, 6, 1)),
    ]
    second = write_csv(
        exports / "day2",
        "auths.csv",
        [
            authorization("1", "2", visits="20", modified_date="2024-03-04"),  # modified: a new version
            authorization("2", "3", ins_name="Aetna"),  # removed: same values, still a new (tombstone) version
            authorization("3", "9"),  # a flag the profile does not know: excluded, counted, never guessed
        ],
        AUTH_COLUMNS,
    )
    [result] = ingest([second], home)
    assert (result.rows_read, result.rows_landed, result.rows_quarantined, result.rows_duplicate) == (3, 2, 1, 0)
    after = query(home, "SELECT * FROM raw.authorizations ORDER BY _load_id, auth_id")
    assert after[:2] == before  # history untouched
    assert [(r[0], r[5], r[-1]) for r in after[2:]] == [
        ("1", 20, "upsert"),
        ("2", 12, "tombstone"),
    ]
    assert query(home, "SELECT rule, column_name, line FROM raw._quarantine") == [
        ("excluded_by_profile", "export_flag", 4)
    ]
    # the same removal re-sent in a new file is a duplicate of the tombstone, not another version
    third = write_csv(exports / "day3", "auths.csv", [authorization("2", "3", ins_name="Aetna")], AUTH_COLUMNS)
    [again] = ingest([third], home)
    assert (again.rows_landed, again.rows_duplicate) == (0, 1)
    assert identity_holds(home)


def test_an_unchanged_row_of_one_system_is_a_duplicate_after_another_systems_version(home, exports):
    """dbt merges each source system's latest version separately, so a native export that still says what it
    said is a duplicate even when a WebPT export landed another version of the key since, at the same time."""
    ingest([write_csv(exports / "webpt", "auths.csv", [authorization("1", "1")], AUTH_COLUMNS)], home)
    [(auth_id, received_at)] = query(home, "SELECT auth_id, received_at FROM raw.authorizations")
    later = received_at + timedelta(days=3)
    native = example_row("authorizations", auth_id=auth_id, received_at=str(later), visits_authorized="8")
    day1 = ingest([write_csv(exports / "native1", "authorizations.csv", [native])], home)
    webpt = authorization("1", "2", visits="20", modified_date="2024-03-04")  # the EMR changes the key
    ingest([write_csv(exports / "webpt2", "auths.csv", [webpt], AUTH_COLUMNS)], home)
    assert query(home, "SELECT max(received_at) FROM raw.authorizations WHERE _load_id = 3") == [(later,)]
    resent = [native, example_row("authorizations")]  # a new file (not byte-identical): its rows are compared
    day2 = ingest([write_csv(exports / "native2", "authorizations.csv", resent)], home)
    assert [(r.rows_landed, r.rows_duplicate) for r in day1 + day2] == [(1, 0), (1, 1)]
    assert identity_holds(home)


def _profile_copy(tmp_path: Path, **defaults) -> Path:
    data = yaml.safe_load((PROFILES_DIR / "webpt_standard_extract.yml").read_text())
    data["profile"] = "webpt_utc"
    data["defaults"].update(defaults)
    path = tmp_path / "webpt_utc.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_profile_times_in_utc_are_converted_to_the_clinic_zone(home, exports, tmp_path):
    profile = _profile_copy(tmp_path, timezone="UTC", clinic_timezone="America/Chicago")
    write_csv(exports, "clinics.csv", [example_row("clinics", clinic_id="8", timezone="America/New_York")])
    write_csv(
        exports,
        "webpt_appts.csv",
        [
            appointment(  # clinic 7 is not in raw.clinics: the profile's clinic_timezone (CST, UTC-6 in March)
                appointmnet_id="101",
                start_date="2024-03-05 15:00:00",
                end_date="2024-03-05 15:45:00",
                check_in_time="2024-03-05 14:55:00",
                time_stamp="2024-07-01 12:00:00",  # CDT in July: UTC-5
            ),
            appointment(  # clinic 8 is in raw.clinics: its own zone (EST, UTC-5)
                appointmnet_id="201",
                clinic_id="8",
                start_date="2024-03-05 15:00:00",
                end_date="2024-03-05 16:00:00",
                time_stamp="2024-03-01 12:00:00",
            ),
        ],
        APPOINTMENT_COLUMNS,
    )
    ingest([exports / "clinics.csv"], home)
    [result] = ingest([exports / "webpt_appts.csv"], home, profile=str(profile))
    assert result.profile == "webpt_utc/appointments" and result.rows_landed == 3
    assert query(home, "SELECT event_id, event_at, scheduled_start FROM raw.scheduling_events ORDER BY event_id") == [
        ("webpt:appointment:101:arrived", datetime(2024, 3, 5, 8, 55), datetime(2024, 3, 5, 9)),
        ("webpt:appointment:101:booked", datetime(2024, 7, 1, 7), datetime(2024, 3, 5, 9)),
        ("webpt:appointment:201:booked", datetime(2024, 3, 1, 7), datetime(2024, 3, 5, 10)),
    ]


NEW_VENDOR = """
profile: acme_pt
vendor: Acme PT (test vendor)
defaults: {date_formats: ["%m/%d/%Y"], timestamp_formats: ["%m/%d/%Y %H:%M"], timezone: clinic_local, id_namespace: acme}
value_maps: {}
files:
  - name: charges
    match: {header_required: [Line, Visit, Patient, DOS, Code, Minutes]}
    feeds: charges
    columns:
      charge_id: {from: Line, prefix: true}
      claim_id: {from: Visit, prefix: "acme:visit"}
      appointment_id: {from: Visit, prefix: true}
      episode_id: {const: "acme:episode:1"}
      patient_id: {from: Patient, prefix: true}
      clinic_id: {const: "acme:clinic:1"}
      therapist_id: {const: "acme:therapist:1"}
      service_date: {from: DOS, parse: date}
      cpt_code: {from: Code}
      minutes: {from: Minutes, parse: integer}
      units: {from: Units, parse: integer,
              fallback: {derive: cms_8_minute_units, args: [Minutes], group_by: [Patient, DOS]}}
      charge_usd: {from: Amount, parse: decimal}
      posted_at: {from: Posted, parse: timestamp}
"""


def test_eight_minute_rule_units_and_forced_profile_path(home, exports, tmp_path):
    profile = tmp_path / "acme.yml"
    profile.write_text(NEW_VENDOR)
    rows = [  # patient 1 on 3/5: 33 + 7 = 40 timed minutes -> 3 units: 97110 gets 2, the larger rest (7) 1 more
        ("L1", "V1", "P1", "03/05/2024", "97110", "33", ""),
        ("L2", "V1", "P1", "03/05/2024", "97140", "7", ""),
        ("L3", "V1", "P1", "03/05/2024", "97161", "", "1"),  # untimed evaluation: units as exported
        ("L4", "V2", "P2", "03/05/2024", "97110", "22", ""),  # 22 min -> 1
        ("L5", "V3", "P3", "03/06/2024", "97530", "7", ""),  # 7 min alone -> 0
        ("L6", "V4", "P4", "03/06/2024", "97110", "23", ""),  # 23 min -> 2
    ]
    names = ["Line", "Visit", "Patient", "DOS", "Code", "Minutes", "Units"]
    data = [dict(zip(names, r, strict=True)) | {"Amount": "$1,050.00", "Posted": "03/07/2024 17:30"} for r in rows]
    write_csv(exports, "export.csv", data, [*names, "Amount", "Posted"])
    [native] = ingest([exports / "export.csv"], home)  # no shipped profile fits, no contract by that name
    assert native.status == "refused" and native.profile is None
    [result] = ingest([exports / "export.csv"], home, profile=str(profile))
    assert (result.status, result.profile, result.rows_landed) == ("loaded", "acme_pt/charges", 6)
    assert query(home, "SELECT charge_id, units, minutes, charge_usd, posted_at FROM raw.charges ORDER BY 1") == [
        ("acme:charge:L1", 2, 33, 1050, datetime(2024, 3, 7, 17, 30)),
        ("acme:charge:L2", 1, 7, 1050, datetime(2024, 3, 7, 17, 30)),
        ("acme:charge:L3", 1, None, 1050, datetime(2024, 3, 7, 17, 30)),
        ("acme:charge:L4", 1, 22, 1050, datetime(2024, 3, 7, 17, 30)),
        ("acme:charge:L5", 0, 7, 1050, datetime(2024, 3, 7, 17, 30)),
        ("acme:charge:L6", 2, 23, 1050, datetime(2024, 3, 7, 17, 30)),
    ]
    assert identity_holds(home)


def test_forced_profile_refuses_a_header_it_does_not_fit_and_native_files_still_load(home, exports):
    write_csv(exports, "charges.csv", [example_row("charges")])
    write_csv(exports, "auth_secret_values.csv", [{"record_id": "1", "Jane Doe": "x"}])
    results = {Path(r.file).name: r for r in ingest([exports], home)}
    assert results["charges.csv"].status == "loaded" and results["charges.csv"].profile is None
    forced = ingest([exports / "auth_secret_values.csv"], home, profile="webpt_standard_extract")[0]
    assert forced.status == "refused" and "lacks column(s)" in forced.message
    assert "Jane Doe" not in forced.message  # header names of an unknown file are never echoed
    runner = CliRunner()
    bad = runner.invoke(app, ["ingest", str(exports / "charges.csv"), "--home", str(home.home), "--profile", "nope"])
    assert bad.exit_code == 2 and "webpt_standard_extract" in bad.output
    auth = write_csv(exports / "w", "a.csv", [authorization("1", "1")], AUTH_COLUMNS)
    ok = runner.invoke(
        app, ["ingest", str(auth), "--home", str(home.home), "--profile", "webpt_standard_extract"], terminal_width=200
    )
    assert ok.exit_code == 0, ok.output
    assert query(home, "SELECT profile FROM raw._loads WHERE file LIKE '%a.csv'") == [
        ("webpt_standard_extract/authorizations",)
    ]
    assert identity_holds(home)


def test_profile_draft_matches_webpt_headers_and_flags_unseen_ones(tmp_path):
    webpt = write_csv(tmp_path, "webpt_auths.csv", [authorization("1", "1")], AUTH_COLUMNS)
    unseen = tmp_path / "appts_export.csv"
    unseen.write_text("Appt ID,Patient Acct,Start Time,Duration Min,Provider ID,Favourite Colour\n1,2,3,4,5,6\n")
    out = tmp_path / "draft.yml"
    result = CliRunner().invoke(app, ["profile", "draft", str(webpt), str(unseen), "--name", "Acme", "-o", str(out)])
    assert result.exit_code == 0, result.output
    draft = yaml.safe_load(out.read_text())
    auths, appts = draft["files"]
    assert auths["feeds"] == "authorizations"
    assert auths["columns"]["valid_from"] == {"from": "auth_start_date", "note": "synonym match"}
    assert auths["columns"]["patient_id"] == {"from": "patient_id", "note": "exact match"}
    assert auths["columns"]["episode_id"]["from"] == "case_id"
    assert set(auths["gaps"]) == {"auth_id", "payer_id", "received_at"}
    assert "ins_name" in auths["unmatched"] and "export_flag" in auths["unmatched"]
    assert appts["feeds"] == "scheduling_events"
    assert appts["columns"]["appointment_id"]["from"] == "Appt ID"
    assert appts["columns"]["therapist_id"] == {"from": "Provider ID", "note": "synonym match"}
    assert appts["columns"]["duration_min"] == {"from": "Duration Min", "note": "normalised match"}
    assert appts["unmatched"] == ["Favourite Colour"]
    assert {"event_id", "event_type", "event_at", "clinic_id"} <= set(appts["gaps"])
    assert "episode_id" not in appts["gaps"]  # optional: linked in dbt when an export has no case id
    # the draft is a loadable profile skeleton (after the analyst fills the gaps)
    assert draft_profile({"x.csv": ["patient_id"]})["files"][0]["columns"] == {
        "patient_id": {"from": "patient_id", "note": "exact match"}
    }


def test_a_raw_file_from_before_profiles_gets_the_profile_column(home, exports):
    import duckdb

    home.raw_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(home.raw_db))
    con.execute("CREATE SCHEMA raw")
    con.execute(
        "CREATE TABLE raw.raw._loads (load_id BIGINT PRIMARY KEY, file VARCHAR NOT NULL, sha256 VARCHAR, source VARCHAR, "
        "rows_read BIGINT NOT NULL, rows_landed BIGINT NOT NULL, rows_quarantined BIGINT NOT NULL, "
        "rows_duplicate BIGINT NOT NULL, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP, "
        "status VARCHAR NOT NULL, message VARCHAR)"
    )
    con.close()
    assert status_report(home)["loads"] == []
    auth = write_csv(exports, "a.csv", [authorization("1", "1")], AUTH_COLUMNS)
    [result] = ingest([auth], home)
    assert result.status == "loaded" and status_report(home)["loads"][0]["profile"] == result.profile


def test_a_tombstone_removes_the_key_from_the_build_and_keeps_its_history(home, exports):
    """A vendor's delete flag (WebPT export_flag 3) lands as a tombstone version; the build's latest-wins rule
    (dbt macro dedup_latest) then drops the key from every current view, while raw keeps each version."""
    import duckdb

    from ptpulse.refresh import run_build

    ingest(
        [write_csv(exports / "d1", "auths.csv", [authorization("1", "1"), authorization("2", "1")], AUTH_COLUMNS)], home
    )
    ingest([write_csv(exports / "d2", "auths.csv", [authorization("2", "3")], AUTH_COLUMNS)], home)
    result = run_build(home, score=False)
    assert result.ok, result.message
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        kept = con.execute("select rows_in_build from marts.source_coverage where source = 'authorizations'").fetchone()
    assert kept == (1,)  # authorization 2 was deleted by the vendor
    versions = query(home, "SELECT auth_id, _op FROM raw.authorizations ORDER BY _load_id, auth_id")
    assert versions == [
        ("1", "upsert"),
        ("2", "upsert"),
        ("2", "tombstone"),
    ]


def test_a_multi_line_visit_comment_does_not_quarantine_the_appointments_events(home, exports):
    """visit_comment is not mapped by the profile; a quoted comment over several lines is ordinary in a real
    export: the appointment's three events land, and the next appointment keeps its file line."""
    first = dict(start_date="2024-03-05 09:00:00", end_date="2024-03-05 09:45:00", check_in_time="2024-03-05 08:55:00")
    comment = "Pt arrived late,\nbrought the wrong shoes.\n\nCall back."
    rows = [
        appointment(appointmnet_id="201", visit_comment=comment, check_out_time="2024-03-05 09:50:00", **first),
        appointment(appointmnet_id="202", start_date="2024-03-06 09:00:00", end_date="2024-03-06 09:45:00"),
    ]
    write_csv(exports, "appointments_export_0306.csv", rows, APPOINTMENT_COLUMNS)
    [result] = ingest([exports], home)
    assert result.profile == "webpt_standard_extract/appointments"
    assert (result.rows_read, result.rows_landed, result.rows_quarantined) == (4, 4, 0), result.message
    assert query(home, "SELECT event_id, _line FROM raw.scheduling_events ORDER BY event_id") == [
        ("webpt:appointment:201:arrived", 2),
        ("webpt:appointment:201:booked", 2),
        ("webpt:appointment:201:completed", 2),
        ("webpt:appointment:202:booked", 6),
    ]
    assert identity_holds(home)
