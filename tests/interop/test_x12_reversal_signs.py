"""835 reversals (CLP02 = 22) however the payer signs them: the guide negates every amount of the original
(TR3 1.10.2.8); some payers repeat the original's amounts unsigned; others negate the payment and the
adjustments but leave the billed charges (CLP03) positive. A reversal must cancel what it reverses in every case.

The defect: the sign was decided from CLP03 alone and then every amount negated, so a reversal written
`CLP*...*22*800.00*-450.00*...` (billed positive, payment and CAS negative) landed +450.00: the payment counted
twice ($900) instead of cancelling ($0). Now a reversal is negated only when it repeats the original's amounts
unsigned (x12.reversal_written_unsigned); one the payer signed lands as written, a CAS that was negative in the
original (`OA*94*-9.00` in the real cob-contractural-adjustment.835) and so positive in its reversal included.
The real 835 files (no reversals among them) land the same rows and totals as before.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from ingest_helpers import query
from test_x12_real import ORIGINAL, _interchange, _payment

from ingestion.files import looks_like_x12
from ingestion.interop import read_interop
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts

CORPUS = Path("/work/shared/interop")
X12_835 = CORPUS / "x12/835_005010X221A1"

# billed positive, payment, patient responsibility and adjustments negated (the reviewer's file)
MIXED = ["CLP*PCN1001*22*800.00*-450.00*-300.00*12*ICN5001~", "CAS*CO*45*-50.00~", "CAS*PR*1*-300.00~"]
# an unpaid claim, all adjusted off, and its reversal with the billed charges left positive
UNPAID = ["CLP*PCN2002*1*300.00*0**12*ICN6001~", "CAS*CO*45*300.00~"]
UNPAID_REVERSAL = ["CLP*PCN2002*22*300.00*0**12*ICN6001~", "CAS*CO*45*-300.00~"]


def _net(batches) -> dict[tuple[str, str], Decimal]:
    """Sum of the landed amounts per (claim, event type) over batches, zeros dropped (PLB rows left out)."""
    total: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for batch in batches:
        for _, row in batch.rows.get("remittances", []):
            if not row["claim_id"].startswith("x12:plb/"):
                total[(row["claim_id"], row["event_type"])] += Decimal(row["amount_usd"])
    return {k: v for k, v in total.items() if v != 0}


def _read(path: Path, text: str):
    path.write_text(text)
    return read_interop(path, load_contracts())


def test_mixed_sign_reversal_cancels_the_payment_and_lands_as_written(home, tmp_path):
    """The reviewer's repro: original + reversal in one file nets to $0, not $900."""
    path = tmp_path / "remit.835"
    path.write_text(
        _interchange([_payment("450.00", "T1", "1999999999", ORIGINAL), _payment("-450.00", "T2", "1999999999", MIXED)])
    )
    [result] = ingest([path], home)
    assert (result.status, result.rows_landed, result.rows_quarantined) == ("loaded", 6, 0)
    reversal = query(
        home, "SELECT event_type, amount_usd FROM raw.remittances WHERE check_number = 'T2' ORDER BY remit_id"
    )
    assert reversal == [
        ("contractual_adjustment", Decimal("-50.00")),
        ("patient_responsibility", Decimal("-300.00")),
        ("payer_payment", Decimal("-450.00")),
    ]
    net = query(home, "SELECT event_type, sum(amount_usd) FROM raw.remittances GROUP BY 1 ORDER BY 1")
    assert net == [(t, Decimal("0.00")) for t in ("contractual_adjustment", "patient_responsibility", "payer_payment")]
    # the load message no longer says the amounts were negated; it says they landed as written
    assert "negated so that" not in result.message
    assert "reversal at segment" in result.message and "lands as written" in result.message


def test_unpaid_claim_reversal_with_positive_billed_cancels_its_adjustment(tmp_path):
    batch = _read(tmp_path / "u.835", _interchange([_payment("0", "U1", "1999999999", UNPAID + UNPAID_REVERSAL)]))
    assert [r["amount_usd"] for _, r in batch.rows["remittances"]] == ["300.00", "-300.00"]
    assert _net([batch]) == {}


def test_unsigned_reversal_is_still_negated_and_said(tmp_path):
    unsigned = [s.replace("*22*-", "*22*").replace("-", "") for s in MIXED]
    batch = _read(tmp_path / "p.835", _interchange([_payment("-450.00", "P1", "1999999999", unsigned)]))
    assert [r["amount_usd"] for _, r in batch.rows["remittances"]] == ["-450.00", "-50.00", "-300.00"]
    assert any("reversal at segment" in n and "every amount is negated" in n for n in batch.summary())


# --- the real 835 files -----------------------------------------------------------------------------------

# Rows landed and totals per event type of every 835 in the shared corpora, as before the change (none holds a
# reversal; the outside corpus holds no 835). Any file added there must be added here. The three later-payer files
# (secondary, tertiary, COB) changed with the COB fix: CARC 23 (the prior payer's adjudication) no longer lands as a
# contractual adjustment, and a `prior_share` row restates the patient share the prior payer left (x12._prior_share).
REAL_835 = {
    "x12/835_005010X221A1/cob-contractural-adjustment.835": (
        3,
        {"payer_payment": "34.00", "contractual_adjustment": "-9.00", "patient_responsibility": "-25.00"},
    ),
    "x12/835_005010X221A1/managed-care.835": (
        7,
        {"payer_payment": "945.00", "contractual_adjustment": "155.00", "patient_responsibility": "900.00"},
    ),
    "x12/835_005010X221A1/medicare-part-a.835": (
        5,
        {"payer_payment": "150000.00", "contractual_adjustment": "76368.24"},
    ),
    "x12/835_005010X221A1/secondary-payment.835": (
        7,
        {"payer_payment": "1222.00", "contractual_adjustment": "85.00", "patient_responsibility": "-722.00"},
    ),
    "x12/835_005010X221A1/tertiary-payment.835": (
        2,
        {"payer_payment": "187.50", "patient_responsibility": "-187.50"},
    ),
}


def _real_835_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"interop corpus not found at {CORPUS}")
    files = []
    for root in (CORPUS / "x12", CORPUS / "outside"):
        for path in sorted(p for p in root.rglob("*") if p.is_file() and looks_like_x12(p)):
            if "ST*835*" in path.read_text(errors="replace"):
                files.append(path)
    return files


def test_real_835_totals_do_not_change():
    files = _real_835_files()
    assert sorted(str(p.relative_to(CORPUS)) for p in files) == sorted(REAL_835)
    for path in files:
        batch = read_interop(path, load_contracts())
        rows = batch.rows["remittances"]
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for _, row in rows:
            sums[row["event_type"]] += Decimal(row["amount_usd"])
        count, expected = REAL_835[str(path.relative_to(CORPUS))]
        assert (len(rows), dict(sums)) == (count, {k: Decimal(v) for k, v in expected.items()}), path.name
        assert not any("reversal" in n for n in batch.summary()), path.name


def _negate(value: str) -> str:
    return str(-Decimal(value)) if value.strip() else value


def _as_reversal(text: str, style: str) -> str:
    """The real 835 (one segment a line, * and ~) turned into its reversal, written in one payer's `style`:
    'guide' negates every amount, 'unsigned' repeats them as they are, 'billed_positive' negates all but the billed
    charges (CLP03, SVC02). A new trace number (another check); PLB lines dropped (not a claim's)."""
    kept = {"guide": {}, "billed_positive": {"CLP": (3,), "SVC": (2,)}}.get(style)  # None: nothing negated
    out = []
    for line in text.splitlines():
        e = line.strip().rstrip("~").split("*")
        sid = e[0]
        places = {"CLP": (3, 4, 5), "SVC": (2, 3), "CAS": tuple(range(3, min(len(e), 19), 3))}.get(sid, ())
        if sid == "PLB":
            continue
        if sid == "TRN":
            e[2] += "R"
        if sid == "CLP":
            e[2] = "22"
        for i in places:
            if kept is not None and i < len(e) and i not in kept.get(sid, ()):
                e[i] = _negate(e[i])
        out.append("*".join(e) + "~")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("style", ["guide", "unsigned", "billed_positive"])
def test_every_real_claim_payment_is_cancelled_by_its_reversal_however_signed(tmp_path, style):
    """Each real 835 and its reversal: every claim's payment, adjustments and patient responsibility net to 0."""
    for path in _real_835_files():
        original = read_interop(path, load_contracts())
        reversal = _read(tmp_path / f"{style}-{path.name}", _as_reversal(path.read_text(), style))
        assert len(reversal.rows["remittances"]) == len(
            [r for _, r in original.rows["remittances"] if not r["claim_id"].startswith("x12:plb/")]
        )
        assert _net([original, reversal]) == {}, (style, path.name)
