"""Code lists that real files pass (issue 8, item 5): the complete CARC list, the CPT/HCPCS codes PT practices
bill, and an unknown code that lands (a warning the build counts) instead of being quarantined.

The build side (marts.data_quality_warnings, CARC meanings joined in denial views) is in
tests/dbt/test_subsets.py::test_unknown_codes_land_and_are_counted_as_warnings.
"""

from __future__ import annotations

import csv

from ingest_helpers import example_row, query, table_count, write_csv

from ingestion import validation
from ingestion.loader import ingest
from ptpulse.core.config import CODES_DIR
from ptpulse.core.contracts import load_code_lists, load_contracts


def _rows(name: str) -> list[dict[str, str]]:
    with (CODES_DIR / f"{name}.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_carc_list_is_the_complete_published_list():
    rows = _rows("carc")
    codes = [r["code"] for r in rows]
    expected = (
        {str(n) for n in range(1, 309)}
        | {f"A{n}" for n in range(0, 9)}
        | {f"B{n}" for n in range(1, 24)}
        | {f"D{n}" for n in range(1, 24)}
        | {f"P{n}" for n in range(1, 33)}
        | {f"W{n}" for n in range(1, 10)}
        | {f"Y{n}" for n in range(1, 4)}
    )
    assert len(codes) == len(set(codes)) == 407
    assert set(codes) == expected
    assert {r["status"] for r in rows} == {"active", "deactivated"}
    assert all(r["description"].strip() and r["category"].strip() for r in rows)
    status = {r["code"]: r["status"] for r in rows}
    # codes every PT biller meets, and retired ones older remittances still carry
    for code in ("1", "2", "3", "45", "50", "96", "97", "197", "198", "204", "253", "288", "B7", "P32"):
        assert status[code] == "active", code
    for code in ("42", "A2", "W1", "D14"):
        assert status[code] == "deactivated", code


def test_cpt_list_has_what_pt_practices_bill():
    rows = {r["code"]: r for r in _rows("cpt")}
    required = {
        "97161", "97162", "97163", "97164",  # evaluations
        "97110", "97112", "97113", "97116", "97124", "97140", "97150", "97530", "97535", "97750", "97760",
        "97761", "97763", "97010", "97012", "97014", "97016", "97032", "97033", "97035",
        "20560", "20561", "G0283", "98975", "98977", "98980", "98981",
    }  # fmt: skip
    assert required <= set(rows)
    assert all(r["timed"] in ("true", "false") and r["description"].strip() for r in rows.values())
    # the 8-minute rule applies to constant-attendance and one-on-one procedure codes, not to evals or group
    assert {c for c in ("97110", "97113", "97124", "97033", "97760") if rows[c]["timed"] == "true"} == {
        "97110", "97113", "97124", "97033", "97760"
    }  # fmt: skip
    assert rows["97150"]["timed"] == rows["97161"]["timed"] == rows["97012"]["timed"] == "false"
    assert load_code_lists()["cpt"] == frozenset(rows)


def test_a_code_list_is_not_a_quarantine_rule():
    for contract in load_contracts().values():
        assert not [c for c in validation.checks_for(contract) if c.rule == "unknown_code"], contract.source


def test_unknown_cpt_and_carc_codes_land(home, exports):
    write_csv(
        exports,
        "charges.csv",
        [example_row("charges"), example_row("charges", charge_id="CH-NEW", cpt_code="99999")],
    )
    write_csv(
        exports,
        "remittances.csv",
        [example_row("remittances"), example_row("remittances", remit_id="RM-NEW", carc_code="999")],
    )
    results = ingest([exports], home)
    assert sorted((r.source, r.rows_read, r.rows_landed, r.rows_quarantined) for r in results) == [
        ("charges", 2, 2, 0),
        ("remittances", 2, 2, 0),
    ]
    assert table_count(home, "charges") == table_count(home, "remittances") == 2
    assert query(home, "SELECT count(*) FROM raw._quarantine") == [(0,)]
    assert query(home, "SELECT cpt_code FROM raw.charges WHERE charge_id = ?", ["CH-NEW"]) == [("99999",)]
