from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from app.lib import exports


@pytest.mark.parametrize(
    "cell",
    ["=1+1", "+1+2", "-2+3", "@SUM(A1)", "\t=cmd", "\r=cmd", ' =HYPERLINK("x")', "=cmd|' /C calc'!A0", "\uff1d1+1"],
)
def test_formula_cells_are_neutralised(cell):
    out = exports.neutralise(cell)
    assert out.startswith("'")


@pytest.mark.parametrize("cell", ["Smith", "-12.5", "+3", "1e5", "", "a=b", "2025-01-01"])
def test_plain_cells_are_untouched(cell):
    assert exports.neutralise(cell) == cell


def test_csv_bytes_round_trip_is_inert():
    df = pd.DataFrame({"name": ['=HYPERLINK("http://evil")', "Ann"], "amount": [-5.0, 3.0], "=col": ["x", "y"]})
    text = exports.to_csv_bytes(df).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["name", "amount", "'=col"]
    assert rows[1][0].startswith("'=")
    assert rows[1][1] == "-5.0"
    assert rows[2] == ["Ann", "3.0", "y"]
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "@", "+")) or cell[1:].replace(".", "").isdigit()


def test_identified_exports_are_detected():
    assert exports.has_identities(pd.DataFrame({"patient_name": ["x"]}))
    assert exports.has_identities(pd.DataFrame({"phone": ["x"]}))
    assert not exports.has_identities(pd.DataFrame({"patient_key": ["x"]}))
