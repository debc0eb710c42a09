"""A claim paid by two payers (coordination of benefits), each with its own 835.

The defect: the secondary payer's 835 (CLP02 = 2) reports the primary's paid and adjusted money as CAS OA-23 ("impact
of prior payer adjudication"), which landed as a contractual adjustment of $230, and its patient responsibility (what
is left after it paid) landed on top of the primary's: claim C15 ($270; primary pays 150, CO-45 80, PR-1 40; the
secondary pays 30 of the 40, PR-2 10) showed contractual 310, patient responsibility 50, insurance balance -270.
Now CARC 23 never lands, and the secondary restates the patient share the primary left (a `prior_share` row of
-40): per claim, paid 180, contractual 80, patient responsibility 10 (the last payer's), insurance balance 0.
The real corpus files are checked in test_x12_real.py and test_x12_reversal_signs.py; the build in
tests/dbt/test_billing_money.py.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from ingestion.interop import read_interop
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts
from tests.interop.x12_text import clp, file_835, payment_835

PRIMARY = clp("C15", "1", "270.00", "150.00", [("CO", "45", "80.00"), ("PR", "1", "40.00")])
SECONDARY = clp("C15", "2", "270.00", "30.00", [("OA", "23", "230.00"), ("PR", "2", "10.00")])
# the secondary pays the whole share the primary left: no PR of its own
SECONDARY_PAYS_ALL = clp("C15", "2", "270.00", "40.00", [("OA", "23", "230.00")])
# the secondary's reversal, as the guide writes it (every amount negated)
SECONDARY_REVERSAL = clp("C15", "22", "-270.00", "-30.00", [("OA", "23", "-230.00"), ("PR", "2", "-10.00")])
# a secondary that states the prior payer's impact per service line: line 1 (170) the primary paid on (OA-23 140,
# share 30: paid 25, PR 5); line 2 (100) the primary did not cover, adjudicated by the secondary alone
SECONDARY_BY_LINE = clp(
    "C16",
    "2",
    "270.00",
    "85.00",
    services=[
        ("97110", "170.00", "25.00", [("OA", "23", "140.00"), ("PR", "2", "5.00")]),
        ("97140", "100.00", "60.00", [("CO", "45", "30.00"), ("PR", "1", "10.00")]),
    ],
)
SECONDARY_DENIED = clp("C15", "4", "270.00", "0", [("CO", "27", "40.00")])


def _read(tmp_path: Path, name: str, *transactions: str):
    path = tmp_path / name
    path.write_text(file_835(list(transactions), control=len(name)))
    return read_interop(path, load_contracts())


def _per_claim(*batches) -> dict[str, dict[str, Decimal]]:
    out: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for batch in batches:
        for _, row in batch.rows["remittances"]:
            out[row["claim_id"]][row["event_type"]] += Decimal(row["amount_usd"])
    return {claim: {k: v for k, v in kinds.items()} for claim, kinds in out.items()}


def _balances(kinds: dict[str, Decimal], billed: str) -> tuple[Decimal, Decimal]:
    """(insurance balance, patient responsibility) as the claims mart computes them."""
    moved = sum(kinds.get(k, Decimal(0)) for k in ("payer_payment", "contractual_adjustment", "patient_responsibility"))
    return Decimal(billed) - moved, kinds.get("patient_responsibility", Decimal(0))


def _primary(tmp_path: Path):
    return _read(tmp_path, "primary.835", payment_835("0001", "150.00", "20250324", "TP", "PY2", "MEDICARE", [PRIMARY]))


def _secondary(tmp_path: Path, name: str, total: str, claim: str):
    return _read(tmp_path, name, payment_835("0002", total, "20250328", "TS" + name, "SUPP9", "MEDIGAP", [claim]))


def test_secondary_835_restates_the_patient_share_the_primary_left(tmp_path):
    primary, secondary = _primary(tmp_path), _secondary(tmp_path, "sec.835", "30.00", SECONDARY)
    rows = {r["remit_id"].split("/", 4)[-1]: r for _, r in secondary.rows["remittances"]}
    assert {k: (r["event_type"], r["amount_usd"], r["group_code"], r["carc_code"]) for k, r in rows.items()} == {
        "1/payment": ("payer_payment", "30.00", None, None),
        "1/cas/2": ("patient_responsibility", "10.00", "PR", "2"),
        "1/prior_share": ("patient_responsibility", "-40.00", "PR", None),
    }  # no row for OA-23 (cas/1): the primary's 835 carries that money
    assert any("CAS reason 23" in note for note in secondary.summary())
    kinds = _per_claim(primary, secondary)["C15"]
    assert kinds == {
        "payer_payment": Decimal("180.00"),
        "contractual_adjustment": Decimal("80.00"),
        "patient_responsibility": Decimal("10.00"),
    }
    assert _balances(kinds, "270.00") == (Decimal("0.00"), Decimal("10.00"))


def test_a_secondary_paying_the_whole_share_leaves_the_patient_nothing(tmp_path):
    kinds = _per_claim(_primary(tmp_path), _secondary(tmp_path, "all.835", "40.00", SECONDARY_PAYS_ALL))["C15"]
    assert _balances(kinds, "270.00") == (Decimal("0.00"), Decimal("0.00"))


def test_a_secondarys_reversal_cancels_it_and_the_primarys_share_stands(tmp_path):
    """However the reversal is signed, what it cancels includes the restated share (the patient owes 40 again)."""
    primary = _primary(tmp_path)
    secondary = _secondary(tmp_path, "sec.835", "30.00", SECONDARY)
    reversal = _secondary(tmp_path, "rev.835", "-30.00", SECONDARY_REVERSAL)
    unsigned = _secondary(tmp_path, "unsigned.835", "-30.00", SECONDARY.replace("*2*", "*22*", 1))
    billed_positive = _secondary(
        tmp_path, "billed.835", "-30.00", SECONDARY_REVERSAL.replace("*-270.00*", "*270.00*", 1)
    )
    for style in (reversal, unsigned, billed_positive):
        kinds = _per_claim(primary, secondary, style)["C15"]
        assert _balances(kinds, "270.00") == (Decimal("0.00"), Decimal("40.00")), kinds
        assert kinds["payer_payment"] == Decimal("150.00")


def test_a_secondary_states_the_prior_payers_impact_line_by_line(tmp_path):
    """Only line 1 carries CARC 23: its share (170 - 140 = 30) is restated; line 2 is the secondary's own claim."""
    batch = _secondary(tmp_path, "lines.835", "85.00", SECONDARY_BY_LINE)
    kinds = _per_claim(batch)["C16"]
    assert kinds == {
        "payer_payment": Decimal("85.00"),
        "contractual_adjustment": Decimal("30.00"),
        "patient_responsibility": Decimal("15.00") - Decimal("30.00"),
    }
    # with the primary's line 1 (paid 100, CO 10, PR 30): the patient owes 5 + 10, the insurers nothing
    first = clp("C16", "1", "170.00", "100.00", [("CO", "45", "40.00"), ("PR", "1", "30.00")])
    primary = _read(tmp_path, "p16.835", payment_835("0003", "100.00", "20250324", "TP16", "PY2", "MEDICARE", [first]))
    assert _balances(_per_claim(primary, batch)["C16"], "270.00") == (Decimal("0.00"), Decimal("15.00"))


def test_a_secondarys_denial_leaves_the_primarys_patient_share(tmp_path):
    kinds = _per_claim(_primary(tmp_path), _secondary(tmp_path, "den.835", "0", SECONDARY_DENIED))["C15"]
    assert kinds["patient_responsibility"] == Decimal("40.00")


def test_cob_835s_land_through_the_loader(home, tmp_path):
    path = tmp_path / "cob.835"
    prim = payment_835("0001", "150.00", "20250324", "TP", "PY2", "MEDICARE", [PRIMARY])
    sec = payment_835("0002", "30.00", "20250328", "TS", "SUPP9", "MEDIGAP", [SECONDARY])
    path.write_text(file_835([prim, sec], control=11))
    [result] = ingest([path], home)
    assert (result.status, result.rows_landed, result.rows_quarantined) == ("loaded", 6, 0), result.message
