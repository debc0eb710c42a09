from __future__ import annotations

from pathlib import Path

import pytest

from ingestion.files import UnknownSource, match_source
from ptpulse.core.contracts import SQL_TYPES, ContractError, load_code_lists, load_contracts, parse_contract

SOURCES = {
    "clinics",
    "therapists",
    "referring_physicians",
    "payers",
    "patients",
    "intake_events",
    "marketing_touches",
    "marketing_spend",
    "scheduling_events",
    "authorizations",
    "documentation_events",
    "charges",
    "claims",
    "remittances",
}


def test_every_source_of_the_interface_has_a_contract():
    contracts = load_contracts()
    assert set(contracts) == SOURCES
    for contract in contracts.values():
        assert contract.natural_key and set(contract.natural_key) <= set(contract.column_names)
        assert contract.event_time in contract.column_names
        assert all(c.type in SQL_TYPES for c in contract.columns)


def test_contracts_are_cached():
    assert load_contracts() is load_contracts()


def test_phi_flags_are_read():
    patients = load_contracts()["patients"]
    assert patients.phi is True
    assert patients.column("birth_date").phi is True
    assert patients.column("patient_id").phi is False


def test_code_lists_are_loaded():
    codes = load_code_lists()
    assert "97110" in codes["cpt"]
    assert {"cpt", "carc"} <= set(codes)


@pytest.mark.parametrize(
    "name, source",
    [
        ("clinics.csv", "clinics"),
        ("scheduling_events_2025.csv", "scheduling_events"),
        ("marketing_spend_q1.csv", "marketing_spend"),
        ("marketing_touches.csv", "marketing_touches"),
        ("Patients.CSV", "patients"),
    ],
)
def test_file_names_match_their_source(name, source):
    assert match_source(Path("/x") / name).source == source


@pytest.mark.parametrize("name", ["clinic.csv", "clinicsx.csv", "marketing.csv", "appointment_truth.csv"])
def test_unknown_file_names_are_refused_with_the_list_of_sources(name):
    with pytest.raises(UnknownSource, match="matches no source contract") as err:
        match_source(Path(name))
    assert "scheduling_events" in str(err.value)


def test_longest_source_wins_when_names_nest():
    base = {
        "source": "intake",
        "natural_key": ["id"],
        "event_time": "at",
        "columns": {"id": {"type": "varchar"}, "at": {"type": "timestamp"}},
    }
    nested = dict(base, source="intake_events")
    contracts = {"intake": parse_contract(base, code_lists={}), "intake_events": parse_contract(nested, code_lists={})}
    assert match_source(Path("intake_events_2024.csv"), contracts).source == "intake_events"
    assert match_source(Path("intake_2024.csv"), contracts).source == "intake"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"columns": {"id": {"type": "text"}, "at": {"type": "timestamp"}}}, "type 'text'"),
        ({"natural_key": ["nope"]}, "natural_key"),
        ({"event_time": "nope"}, "event_time"),
        ({"columns": {"id": {"type": "varchar", "min": 1}, "at": {"type": "timestamp"}}}, "min/max"),
        ({"columns": {"id": {"type": "varchar", "codes": "nope"}, "at": {"type": "timestamp"}}}, "code list"),
        ({"columns": {"id": {"type": "varchar", "pattern": "("}, "at": {"type": "timestamp"}}}, "does not compile"),
        ({"columns": {"id": {"type": "varchar", "requird": True}, "at": {"type": "timestamp"}}}, "unknown keys"),
        ({"source": "Bad Name"}, "lower_snake_case"),
    ],
)
def test_malformed_contracts_fail_loudly(change, message):
    data = {
        "source": "things",
        "natural_key": ["id"],
        "event_time": "at",
        "columns": {"id": {"type": "varchar"}, "at": {"type": "timestamp"}},
    }
    data.update(change)
    with pytest.raises(ContractError, match=message):
        parse_contract(data, code_lists={})


def test_relative_date_bounds_accept_the_near_future_and_reject_typos(tmp_path):
    from datetime import date, timedelta

    from ingest_helpers import example_row, write_csv

    from ingestion.loader import ingest
    from ptpulse.core.contracts import ContractError, DaysFromToday, _bound

    assert _bound("today+400d", "timestamp", "x") == DaysFromToday(400)
    with pytest.raises(ContractError):
        _bound("tomorrow", "date", "x")
    with pytest.raises(ContractError):
        _bound("today+1d", "integer", "x")
    # an appointment booked three weeks ahead is fine; its booking event may not be in the future
    from ptpulse.core.config import get_settings

    settings = get_settings(tmp_path / "home")
    ahead = (date.today() + timedelta(days=21)).isoformat() + " 09:00:00"
    row = example_row("scheduling_events", scheduled_start=ahead)
    folder = tmp_path / "in"
    write_csv(folder, "scheduling_events.csv", [row])
    [result] = ingest([folder], settings)
    assert (result.rows_landed, result.rows_quarantined) == (1, 0)
