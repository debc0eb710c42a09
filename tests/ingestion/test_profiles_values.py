"""Source profiles read vendor values as an export writes them, and never guess silently (ingestion/profiles.py).

Money with a decimal comma, a 2-digit year, a practice's own spelling of an appointment type and a date field
written with a time: each either lands as the value it means or is quarantined / counted, on real DuckDB.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
import yaml
from ingest_helpers import query, write_csv
from test_profiles import APPOINTMENT_COLUMNS, AUTH_COLUMNS, appointment, authorization, identity_holds

import ingestion.loader as loader
from ingestion.loader import ingest
from ingestion.profiles import PROFILES_DIR, ProfileError, load_profiles, read_profile, unmapped_notes

CHARGE_COLUMNS = [
    "record_id", "visit_date", "record_pointer", "cpt", "clinic_id", "patient_id", "case_id", "therapist_id",
    "units", "charge_amount", "note_type", "note_finalized_date",
]  # fmt: skip


def charge(pointer: str, **values: str) -> dict[str, str]:
    row = dict(record_id=pointer, visit_date="2025-01-02", record_pointer=pointer, cpt="97110", clinic_id="7")
    row.update(patient_id="9001", case_id="501", therapist_id="31", units="2", charge_amount="95.00")
    row.update(note_type="DN", note_finalized_date="2025-01-02")
    row.update(values)
    return row


def webpt_copy(tmp_path: Path, **defaults) -> Path:
    """The shipped WebPT profile under another name, with some defaults changed."""
    data = yaml.safe_load((PROFILES_DIR / "webpt_standard_extract.yml").read_text())
    data["profile"] = "webpt_copy"
    data["defaults"].update(defaults)
    path = tmp_path / "webpt_copy.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_only_thousands_grouping_commas_are_removed_from_money_and_counts(home, exports):
    """`12,50` is a decimal comma and `1,2,3` a typo: removing every comma landed them 100 times too large."""
    amounts = {"RP1": "$1,250.00", "RP2": "12,50", "RP3": "1.250,00", "RP4": "1,2,3", "RP5": "$ 95.5", "RP6": "-$0.00"}
    rows = [charge(p, charge_amount=a) for p, a in amounts.items()] + [charge("RP7", units="1,2")]
    write_csv(exports, "webpt_charges.csv", rows, CHARGE_COLUMNS)
    [result] = ingest([exports], home)
    assert result.profile == "webpt_standard_extract/charges"
    assert query(home, "SELECT charge_id, charge_usd FROM raw.charges ORDER BY 1") == [
        ("RP1", 1250),
        ("RP5", 95.5),
        ("RP6", 0),
    ]
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine ORDER BY line") == [
        (3, "invalid_decimal", "charge_usd"),
        (4, "invalid_decimal", "charge_usd"),
        (5, "invalid_decimal", "charge_usd"),
        (8, "invalid_integer", "units"),
    ]
    assert identity_holds(home)


def test_a_two_digit_year_is_not_read_by_a_four_digit_year_format(home, exports, tmp_path):
    """DuckDB's %Y reads `2/3/25` as the year 0025: an Excel re-save landed 2000 years early (and, as the older
    version, never became current). A %y format later in the list still reads it as 2025."""
    rows = [authorization("1", "1", modified_date="2/3/25"), authorization("2", "1", visits="1,2")]
    path = write_csv(exports, "auths.csv", rows, AUTH_COLUMNS)
    [shipped] = ingest([path], home)
    assert (shipped.rows_landed, shipped.rows_quarantined) == (0, 2)
    assert query(home, "SELECT line, rule, column_name FROM raw._quarantine ORDER BY line") == [
        (2, "invalid_timestamp", "received_at"),
        (3, "invalid_integer", "visits_authorized"),
    ]
    profile = webpt_copy(tmp_path, date_formats=["%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y"])
    auth = write_csv(exports / "copy", "auths.csv", [authorization("1", "1", modified_date="2/3/25")], AUTH_COLUMNS)
    [copy] = ingest([auth], home, profile=str(profile))
    assert copy.rows_landed == 1
    assert query(home, "SELECT received_at, valid_to FROM raw.authorizations") == [
        (datetime(2025, 2, 3), date(2024, 6, 1))
    ]
    assert identity_holds(home)


TYPES = {
    "100": ("initial evaluation", "initial_eval"),
    "101": (" Initial  Eval ", "initial_eval"),
    "102": ("Evaluation", "initial_eval"),
    "103": ("Re-Eval", "re_eval"),
    "104": ("RE-EVALUATION", "re_eval"),
    "105": ("Daily Note", "follow_up"),
    "106": ("Aquatic Therapy", "follow_up"),  # not in the map: the `_unmapped` default, counted
    "107": ("Dry Needling", "follow_up"),  # not in the map: counted
    "108": ("", "follow_up"),  # empty: the column's `default`, not a value the map missed
}
UNMAPPED_NOTE = (
    "visit_type: 2 value(s) not in value map appointment_type became follow_up (its `_unmapped`); add the "
    "practice's spelling(s) to value_maps.appointment_type of the profile"
)
# an empty cell is not a value the map missed: it takes the column's `default`, counted on its own
DEFAULT_NOTE = (
    "visit_type: 1 empty appointment_type cell(s) took the default follow_up (a constant of the profile, not a "
    "value of the export)"
)


def _appointments(folder: Path) -> Path:
    times = dict(start_date="2025-01-02 09:00:00", end_date="2025-01-02 09:45:00")
    rows = [appointment(appointmnet_id=i, appointment_type=t, **times) for i, (t, _) in TYPES.items()]
    return write_csv(folder, "appts.csv", rows, APPOINTMENT_COLUMNS)


def test_appointment_types_match_in_any_case_and_spacing(home, exports):
    [result] = ingest([_appointments(exports)], home)
    assert result.rows_landed == len(TYPES)
    landed = query(home, "SELECT appointment_id, visit_type FROM raw.scheduling_events ORDER BY 1")
    assert landed == [(i, want) for i, (_, want) in TYPES.items()]


def test_values_a_map_does_not_know_are_counted_never_shown(exports):
    """The count the load's notes carry, over the vendor rows as the loader stages them (`_v1`.. text)."""
    path = _appointments(exports)
    profile = load_profiles()["webpt_standard_extract"]
    pfile = next(f for f in profile.files if f.name == "appointments")
    positional = [f"_v{i}" for i in range(1, len(APPOINTMENT_COLUMNS) + 1)]
    with duckdb.connect() as con:
        con.execute(
            "CREATE TEMP TABLE _vendor AS SELECT * FROM read_csv(?, header = true, all_varchar = true, names = ?)",
            [str(path), positional],
        )
        assert unmapped_notes(con, profile, pfile, APPOINTMENT_COLUMNS) == [DEFAULT_NOTE, UNMAPPED_NOTE]
        con.execute("DELETE FROM _vendor WHERE _v1 IN ('106', '107')")
        assert unmapped_notes(con, profile, pfile, APPOINTMENT_COLUMNS) == [DEFAULT_NOTE]
        con.execute("DELETE FROM _vendor WHERE _v1 = '108'")
        assert unmapped_notes(con, profile, pfile, APPOINTMENT_COLUMNS) == []


@pytest.mark.skipif(
    not hasattr(loader, "unmapped_notes"), reason="ingestion/loader.py does not add unmapped_notes to its notes yet"
)
def test_the_load_message_says_how_many_values_fell_to_unmapped(home, exports):
    [result] = ingest([_appointments(exports)], home)
    assert UNMAPPED_NOTE in result.message
    assert DEFAULT_NOTE in result.message  # the shipped WebPT profile, a real ingest: the empty type is counted
    assert query(home, "SELECT message FROM raw._loads") == [(result.message,)]
    assert "Aquatic" not in result.message and "Dry Needling" not in result.message


def test_value_map_keys_that_differ_only_in_case_must_agree(tmp_path):
    data = yaml.safe_load((PROFILES_DIR / "webpt_standard_extract.yml").read_text())
    data["value_maps"]["appointment_type"]["EVALUATION"] = "re_eval"
    path = tmp_path / "clash.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match="value_maps.appointment_type"):
        read_profile(path)


def test_a_date_field_written_with_a_time_is_read_by_the_timestamp_formats(home, exports, tmp_path):
    """note_finalized_date (`date_to_timestamp`) in the formats the same profile reads time_stamp in: a date is
    that day at 00:00:00, a time is kept (fractions of a second dropped, as `parse: timestamp` does)."""
    finalized = ["2025-01-02 14:33:00", "1/2/2025", "1/2/2025 2:33:00 PM", "1/2/2025 14:33", "2025-01-02 14:33:00.123"]
    rows = [charge(f"RP{i}", note_finalized_date=v) for i, v in enumerate(finalized)]
    path = write_csv(exports, "charges.csv", rows, CHARGE_COLUMNS)
    [result] = ingest([path], home)
    assert (result.rows_landed, result.rows_quarantined) == (5, 0), result.message
    stamps = [r[0] for r in query(home, "SELECT posted_at FROM raw.charges ORDER BY charge_id")]
    assert stamps == [datetime(2025, 1, 2, 14, 33), datetime(2025, 1, 2)] + [datetime(2025, 1, 2, 14, 33)] * 3


def test_a_date_stays_on_its_day_and_a_time_is_converted_when_the_profile_converts_zones(home, exports, tmp_path):
    profile = webpt_copy(tmp_path, timezone="UTC", clinic_timezone="America/Chicago")
    rows = [charge("RP1", note_finalized_date="2025-01-02"), charge("RP2", note_finalized_date="1/2/2025 2:33:00 PM")]
    [result] = ingest([write_csv(exports, "charges.csv", rows, CHARGE_COLUMNS)], home, profile=str(profile))
    assert result.rows_landed == 2, result.message
    assert query(home, "SELECT charge_id, posted_at FROM raw.charges ORDER BY 1") == [
        ("RP1", datetime(2025, 1, 2)),  # day precision: no zone shift to the evening before
        ("RP2", datetime(2025, 1, 2, 8, 33)),  # 14:33 UTC is 08:33 in Chicago (CST)
    ]
