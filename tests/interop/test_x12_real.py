"""X12 as practices and clearinghouses really send it: any file name, any separators, several interchanges,
reversals and corrections, provider-level adjustments (PLB), and the shared corpora file by file."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from ingest_helpers import query

from ingestion.files import discover, looks_like_x12
from ingestion.interop import is_interop, read_interop
from ingestion.interop import x12 as X
from ingestion.loader import ingest
from ptpulse.core.contracts import load_contracts

CORPUS = Path("/work/shared/interop")  # as in conftest.py (not imported: tests/ingestion has a conftest too)

X12_835 = CORPUS / "x12/835_005010X221A1"
MANAGED_CARE = X12_835 / "managed-care.835"
MEDICARE_A = X12_835 / "medicare-part-a.835"
OUTSIDE = CORPUS / "outside"
FIX_WORDS = ("again", "export", "remove")
ISA = "ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*PTCLINIC       *240315*1200*^*00501*{ctl:0>9}*0*P*:~"


def _interchange(transactions: list[list[str]], ctl: int = 1) -> str:
    """An X12 file (one segment a line) around 835 transaction sets given as lists of segments."""
    segments = [ISA.format(ctl=ctl), "GS*HP*PAYER*PTCLINIC*20240315*1200*1*X*005010X221A1~"]
    for n, body in enumerate(transactions, start=1):
        segments += [f"ST*835*{n:04d}~", *body, f"SE*{len(body) + 2}*{n:04d}~"]
    segments += [f"GE*{len(transactions)}*1~", f"IEA*1*{ctl:0>9}~"]
    return "\n".join(segments) + "\n"


def _payment(total: str, trace: str, payer_tin: str, claims: list[str], plb: tuple[str, ...] = ()) -> list[str]:
    return [
        f"BPR*I*{total}*C*ACH*CCP*01*999999999*DA*123456*{payer_tin}**01*888888888*DA*654321*20240314~",
        f"TRN*1*{trace}*{payer_tin}~",
        "DTM*405*20240313~",
        "N1*PR*ACME HEALTH PLAN~",
        "N1*PE*PT CLINIC*XX*1234567893~",
        "LX*1~",
        *claims,
        *plb,
    ]


ORIGINAL = ["CLP*PCN1001*1*800.00*450.00*300.00*12*ICN5001~", "CAS*CO*45*50.00~", "CAS*PR*1*300.00~"]
REVERSAL = ["CLP*PCN1001*22*-800.00*-450.00*-300.00*12*ICN5001~", "CAS*CO*45*-50.00~", "CAS*PR*1*-300.00~"]
CORRECTION = ["CLP*PCN1001*1*800.00*480.00*300.00*12*ICN5002~", "CAS*CO*45*20.00~", "CAS*PR*1*300.00~"]


def _sums(settings, where: str = "TRUE", params: list | None = None) -> dict[str, Decimal]:
    return dict(
        query(
            settings,
            f"SELECT event_type, sum(amount_usd) FROM raw.remittances WHERE {where} GROUP BY 1 ORDER BY 1",
            params,
        )
    )


# --- separators and file names ----------------------------------------------------------------------------


def _resplit(text: str, element: str, sub: str, terminator: str) -> str:
    """`text` (written with * : ~) rewritten with other separators; the ISA stays 106 characters."""
    out = []
    for raw in text.split("~"):
        raw = raw.strip()
        if not raw:
            continue
        elements = raw.split("*")
        if elements[0] == "ISA":
            elements[16] = sub
        else:
            elements = [e.replace(":", sub) for e in elements]
        out.append(element.join(elements))
    return terminator.join(out) + terminator


@pytest.mark.parametrize(
    ("element", "sub", "terminator"),
    [("|", ">", "\n"), ("\x1d", "\x1f", "\x1c"), ("~", "!", "_\r\n"), ("*", ":", "~")],
    ids=["pipe-newline", "control-chars", "tilde-underscore-crlf", "standard-one-line"],
)
def test_separators_are_read_from_the_isa_header(tmp_path, element, sub, terminator):
    contracts = load_contracts()
    expected = read_interop(MANAGED_CARE, contracts).rows
    path = tmp_path / "remit.dat"
    path.write_text(_resplit(MANAGED_CARE.read_text(), element, sub, terminator), newline="")
    assert looks_like_x12(path) and is_interop(path)
    assert read_interop(path, contracts).rows == expected  # same rows, same ids, same segment numbers


def test_outside_pair_written_with_other_separators_reads_the_same():
    contracts = load_contracts()
    standard = read_interop(OUTSIDE / "x12-837p/imsweb_x12_valid.txt", contracts)
    other = read_interop(OUTSIDE / "x12-837p/imsweb_x12_valid_different_separators.txt", contracts)
    assert other.rows == standard.rows and sum(len(v) for v in standard.rows.values()) == 4
    assert [r["cpt_code"] for _, r in standard.rows["charges"]] == ["99211", "478331"]  # SV101 split on ISA16


def test_txt_x12_in_a_folder_is_read_and_other_files_are_refused_with_why(home, tmp_path):
    folder = tmp_path / "exports"
    (folder / "payer").mkdir(parents=True)
    (folder / "payer" / "remit_2024-03.txt").write_text(MANAGED_CARE.read_text())
    (folder / "payer" / "REMIT0002").write_text(_interchange([_payment("480.00", "T2", "1999999999", CORRECTION)]))
    (folder / "notes.txt").write_text("Remits for March, see the portal\n")
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4\n")
    (folder / "remits_march.txt").write_text("Remits for March, see the portal\n")
    names = ["notes.txt", "REMIT0002", "remit_2024-03.txt", "remits_march.txt", "scan.pdf"]
    assert [p.name for p in discover([folder])] == names
    results = {Path(r.file).name: r for r in ingest([folder], home)}
    assert set(results) == set(names)  # nothing passed over
    assert (results["remit_2024-03.txt"].status, results["remit_2024-03.txt"].rows_landed) == ("loaded", 7)
    assert (results["REMIT0002"].status, results["REMIT0002"].rows_landed) == ("loaded", 3)
    refused = results["remits_march.txt"]  # named like data, but not X12: refused with why and a fix
    assert refused.status == "refused" and refused.message.startswith("remits_march.txt")
    assert "not an X12 interchange starting with ISA" in refused.message
    assert any(w in refused.message.lower() for w in FIX_WORDS) and "portal" not in refused.message
    for name in ("notes.txt", "scan.pdf"):  # the folder's notes and a scan: audited as skipped, not errors
        assert results[name].status == "skipped_not_data" and "portal" not in results[name].message
    audited = query(home, "SELECT status, count(*) FROM raw._loads GROUP BY 1 ORDER BY 1")
    assert audited == [("loaded", 2), ("refused", 1), ("skipped_not_data", 2)]


def test_x12_is_found_by_content_not_name_and_links_are_never_opened(tmp_path):
    bom = tmp_path / "with_bom_and_blank_line"
    bom.write_bytes(b"\xef\xbb\xbf\n  " + MANAGED_CARE.read_bytes())
    assert looks_like_x12(bom) and is_interop(bom)
    for name, text in [("isa_word.txt", "ISA is a savings account\n"), ("empty.txt", ""), ("short.txt", "ISA")]:
        (tmp_path / name).write_text(text)
        assert not looks_like_x12(tmp_path / name), name
    (tmp_path / "link.txt").symlink_to(MANAGED_CARE)
    assert not looks_like_x12(tmp_path / "link.txt")


def test_several_interchanges_in_one_file_each_with_its_own_separators(tmp_path):
    contracts = load_contracts()
    second = _interchange([_payment("480.00", "T2", "1999999999", CORRECTION)], ctl=2)
    path = tmp_path / "two.txt"
    path.write_text(MANAGED_CARE.read_text() + _resplit(second, "|", ">", "\n"))
    batch = read_interop(path, contracts)
    rows = batch.rows["remittances"]
    assert len(rows) == 7 + 3
    assert {r["check_number"] for _, r in rows} == {"7170066655", "T2"}
    assert rows[-1][0] > 29  # segment numbers go on across interchanges (the first has 29 segments)
    # the imsweb corpus file with two interchanges: claims of both
    many = read_interop(OUTSIDE / "x12-837p/imsweb_x12_multiple_isa.txt", contracts)
    text = (OUTSIDE / "x12-837p/imsweb_x12_multiple_isa.txt").read_text()
    assert len(many.rows["claims"]) == len(re.findall(r"(?m)^CLM\*", text)) == 4


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ISAX00X" + "X" * 120, "position 4 must be the element separator"),
        (None, "is not another interchange"),
    ],
    ids=["letter-as-separator", "garbage-after-iea"],
)
def test_garbled_envelopes_are_refused_with_the_fix(home, tmp_path, text, says):
    path = tmp_path / "bad.x12"
    path.write_text(text if text is not None else MANAGED_CARE.read_text() + "Dear provider, see attached\n")
    [result] = ingest([path], home)
    assert result.status == "refused" and says in result.message and "bad.x12" in result.message
    assert "Export the file again" in result.message and "Dear" not in result.message


# --- 835: reversals, corrections, PLB, ids -----------------------------------------------------------------


def test_reversal_and_correction_land_signed_and_net_to_the_corrected_payment(home, tmp_path):
    (tmp_path / "original.835").write_text(_interchange([_payment("450.00", "T1", "1999999999", ORIGINAL)]))
    (tmp_path / "recoup.835").write_text(
        _interchange([_payment("30.00", "T2", "1999999999", REVERSAL + CORRECTION)], ctl=2)
    )
    results = ingest([tmp_path / "original.835", tmp_path / "recoup.835"], home)
    assert [(r.status, r.rows_read, r.rows_landed, r.rows_quarantined) for r in results] == [
        ("loaded", 3, 3, 0),
        ("loaded", 6, 6, 0),  # nothing of the reversal is quarantined while its original lands
    ]
    reversal = query(
        home,
        "SELECT remit_id, event_type, amount_usd FROM raw.remittances WHERE check_number = 'T2' ORDER BY _line",
    )
    assert reversal[:3] == [
        ("x12:835/1999999999/T2/PCN1001/1/payment", "payer_payment", Decimal("-450.00")),
        ("x12:835/1999999999/T2/PCN1001/1/cas/1", "contractual_adjustment", Decimal("-50.00")),
        ("x12:835/1999999999/T2/PCN1001/1/cas/2", "patient_responsibility", Decimal("-300.00")),
    ]
    assert [r[0] for r in reversal[3:]][0] == "x12:835/1999999999/T2/PCN1001/2/payment"  # the correction
    # per claim: original + reversal + correction = the corrected adjudication, billed 800.00 closed
    assert _sums(home, "claim_id = 'PCN1001'") == {
        "contractual_adjustment": Decimal("20.00"),
        "patient_responsibility": Decimal("300.00"),
        "payer_payment": Decimal("480.00"),
    }
    # the cash of the second check: -450 + 480 = 30.00 = its BPR02
    assert _sums(home, "check_number = 'T2' AND event_type = 'payer_payment'") == {"payer_payment": Decimal("30.00")}


def test_reversal_written_with_positive_amounts_is_negated_and_said(tmp_path):
    positive = [s.replace("-", "") for s in REVERSAL]
    path = tmp_path / "r.835"
    path.write_text(_interchange([_payment("-450.00", "T3", "1999999999", positive)]))
    batch = read_interop(path, load_contracts())
    assert [r["amount_usd"] for _, r in batch.rows["remittances"]] == ["-450.00", "-50.00", "-300.00"]
    assert any("reversal at segment" in n and "negated" in n for n in batch.summary())


def test_plb_lands_as_provider_level_payment_and_the_check_balances(home, tmp_path):
    ingest([MEDICARE_A], home)
    [plb] = query(
        home, "SELECT remit_id, claim_id, event_type, amount_usd FROM raw.remittances WHERE remit_id LIKE '%/plb/%'"
    )
    # PLB*6543210903*20021231*CV:CP*-1.27: a negative PLB adds to the payment (kept, sign turned into cash)
    assert plb == ("x12:835/1512345678/12345/plb/1/CV", "x12:plb/1512345678/12345", "payer_payment", Decimal("1.27"))
    paid = _sums(home, "check_number = '12345' AND event_type = 'payer_payment'")
    assert paid == {"payer_payment": Decimal("150000.00")}  # = BPR02: 138018.40 + 11980.33 + 1.27
    # a recoupment (positive PLB, e.g. WO overpayment recovery) is withheld: a negative payer_payment
    path = tmp_path / "recoupment.txt"
    plb_seg = ("PLB*1234567893*20241231*WO:PCN0999*100.00*L6:PCN1001*-2.50~",)
    path.write_text(_interchange([_payment("352.50", "T9", "1999999999", ORIGINAL, plb_seg)]))
    [result] = ingest([path], home)
    assert (result.status, result.rows_landed, result.rows_quarantined) == ("loaded", 5, 0)
    assert "do not add up" not in result.message
    rows = query(
        home, "SELECT remit_id, amount_usd FROM raw.remittances WHERE check_number = 'T9' AND claim_id LIKE 'x12:plb/%'"
    )
    assert sorted(rows) == [
        ("x12:835/1999999999/T9/plb/1/WO", Decimal("-100.00")),
        ("x12:835/1999999999/T9/plb/2/L6", Decimal("2.50")),
    ]
    assert _sums(home, "check_number = 'T9' AND event_type = 'payer_payment'") == {"payer_payment": Decimal("352.50")}


def test_a_check_that_does_not_balance_is_kept_and_said(tmp_path):
    path = tmp_path / "short.835"
    path.write_text(_interchange([_payment("999.00", "T4", "1999999999", ORIGINAL)]))
    batch = read_interop(path, load_contracts())
    assert len(batch.rows["remittances"]) == 3
    assert any("do not add up to the total payment (BPR02)" in n for n in batch.summary())


def test_payment_ids_are_unique_across_payers_transactions_and_interchanges(home, tmp_path):
    # two payers using the same check number for the same patient control number, in one file, two STs
    same_trace = _interchange(
        [
            _payment("450.00", "CHK1", "1111111111", ORIGINAL),
            _payment("450.00", "CHK1", "2222222222", ORIGINAL),
            _payment("450.00", "CHK1", "1111111111", ORIGINAL),  # same payer and trace again: a second CLP
        ]
    )
    (tmp_path / "a.835").write_text(same_trace)
    [result] = ingest([tmp_path / "a.835"], home)
    assert (result.rows_read, result.rows_landed, result.rows_duplicate) == (9, 9, 0)
    ids = [r[0] for r in query(home, "SELECT remit_id FROM raw.remittances WHERE remit_id LIKE '%/payment'")]
    assert sorted(ids) == [
        "x12:835/1111111111/CHK1/PCN1001/1/payment",
        "x12:835/1111111111/CHK1/PCN1001/2/payment",
        "x12:835/2222222222/CHK1/PCN1001/1/payment",
    ]
    # the same payments re-sent in a new interchange (new ISA13): duplicates, not new money
    (tmp_path / "b.835").write_text(same_trace.replace("000000001", "000000077"))
    [again] = ingest([tmp_path / "b.835"], home)
    assert (again.rows_landed, again.rows_duplicate) == (0, 9)
    # without a TRN, the envelope names the payment: two senders' files never share an id
    no_trn = [s for s in _payment("450.00", "X", "1999999999", ORIGINAL) if not s.startswith("TRN")]
    one = read_interop(_write(tmp_path / "c.835", _interchange([no_trn], ctl=5)), load_contracts())
    two = read_interop(_write(tmp_path / "d.835", _interchange([no_trn], ctl=6)), load_contracts())
    assert {r["remit_id"] for _, r in one.rows["remittances"]}.isdisjoint(
        {r["remit_id"] for _, r in two.rows["remittances"]}
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cas_groups_map_to_adjustment_events_and_every_corpus_claim_balances():
    contracts = load_contracts()
    moved: dict[str, Decimal] = defaultdict(Decimal)
    groups = set()
    for path in sorted(X12_835.glob("*.835")):
        for _, row in read_interop(path, contracts).rows["remittances"]:
            if row["event_type"] != "denial" and not row["claim_id"].startswith("x12:plb/"):
                moved[row["claim_id"]] += Decimal(row["amount_usd"])
            groups.add((row["group_code"], row["event_type"]))
    # CLP03 billed = CLP04 paid + every CAS amount (claim and service level), signed (cob: OA-94 is -9.00), for a
    # first payer. A later payer's CARC 23 (the prior payer's paid and adjusted money) does not land, and the
    # patient share the prior payer left is restated (x12._prior_share): its claim, or service line, moves nothing
    # off the insurance balance, only out of the patient's share. Its lines without CARC 23 are its own adjudication.
    assert dict(moved) == {
        "5554555444": Decimal("800.00"),  # 450 paid + 300 PR-1 + 50 CO-A2 (README: managed care)
        "8765432112": Decimal("1200.00"),
        "666123": Decimal("211366.97"),
        "777777": Decimal("15000.00"),
        "L0004828311": Decimal("0.00"),  # secondary: 912 paid, OA-23 9411.64 at claim level, share 912 restated
        "0001000053": Decimal("585.00"),  # line 2 (585, no CARC 23) its own; line 1's 30 share paid and restated
        "0001000054": Decimal("0.00"),  # tertiary: 187.50 paid, OA-23 1579
        "0001000055": Decimal("0.00"),  # secondary: 34 paid, OA-94 -9 given back, OA-23 516: share 25 restated
    }
    assert groups == {
        (None, "payer_payment"),
        ("CO", "contractual_adjustment"),
        ("OA", "contractual_adjustment"),
        ("PR", "patient_responsibility"),
    }


def test_an_835_for_a_claim_we_do_not_hold_is_kept(home):
    [result] = ingest([MANAGED_CARE], home)
    assert query(home, "SELECT count(*) FROM raw._loads WHERE source = 'claims'") == [(0,)]  # no claim is known
    assert result.rows_landed == 7 and _sums(home)["payer_payment"] == Decimal("945.00")


# --- 837P ------------------------------------------------------------------------------------------------


def test_837p_lines_are_posted_at_the_bht_time_and_void_claims_land_voided(tmp_path):
    contracts = load_contracts()
    source = CORPUS / "x12/837_005010X222A2/demo.example1.837"
    batch = read_interop(source, contracts)
    [(_, claim)] = batch.rows["claims"]
    assert {r["posted_at"] for _, r in batch.rows["charges"]} == {claim["submitted_at"]}
    text = source.read_text()
    clm = re.search(r"CLM\*[^~]*~", text).group(0)
    frequency = clm.split("*")[5]
    void = tmp_path / "void.837"
    void.write_text(text.replace(clm, clm.replace(frequency, frequency[:-1] + "8")))
    voided = read_interop(void, contracts)
    [(_, void_row)] = voided.rows["claims"]  # the claim's voided version, no lines (was: nothing, counted)
    assert void_row == claim | {"status": "voided"} and not voided.rows.get("charges")
    assert "void claim (CLM05-3 = 8): landed" in " ".join(voided.summary())


# --- the shared corpora, file by file ----------------------------------------------------------------------

REFUSED = {
    "imsweb_x12_bad_segment_identifier.txt": "does not start with a segment id",
    "imsweb_x12_no_isa_line.txt": "not an X12 interchange starting with ISA",
    "imsweb_x12_277CA_accepted.txt": "277 005010X214 are not read",
    "imsweb_x12_999_accepted.txt": "999 005010X231A1 are not read",
    "imsweb_x223-test.txt": "837 005010X223A2 are not read",
    "dependent-health-benefit-check.270": "270 005010X279A1 are not read",
    "subscriber-health-benefit-check.270": "270 005010X279A1 are not read",
    "dependent-health-benefit-check.271": "271 005010X279A1 are not read",
    "subscriber-health-benefit-check.271": "271 005010X279A1 are not read",
    "subscriber-health-benefit-check-error.271": "271 005010X279A1 are not read",
}


def test_every_x12_file_of_the_shared_corpora_is_accepted_or_refused_with_why(home):
    if not OUTSIDE.is_dir():
        pytest.skip("outside corpus not found")
    folders = [CORPUS / "x12", *sorted(OUTSIDE.glob("x12-*"))]
    results = ingest(folders, home)
    by_file = defaultdict(list)
    for r in results:
        by_file[Path(r.file).name].append(r)
        assert r.status in ("loaded", "refused", "skipped_same_hash"), r
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate, r
    assert set(by_file) == {p.name for folder in folders for p in folder.rglob("*") if p.is_file()}
    refused = {name: rs[0].message for name, rs in by_file.items() if rs[0].status == "refused"}
    assert set(refused) == set(REFUSED)
    for name, message in refused.items():
        assert message.startswith(name) and REFUSED[name] in message
        assert any(w in message.lower() for w in FIX_WORDS), message
    # every accepted 837P: one claims row per CLM and one charges row per SV1, nothing lost; but of a claim the file
    # sends several times only the latest version is read, the others counted in the load message (x12.SUPERSEDED:
    # imsweb_x12_multiple_transactions.txt sends its two claims 312 times each)
    for folder in folders:
        for path in folder.rglob("*"):
            if path.name in refused or not path.is_file() or by_file[path.name][0].status != "loaded":
                continue
            text = path.read_text()
            rs = {r.source: r.rows_read for r in by_file[path.name]}
            if "*837*" in text:
                segments = [s.strip() for s in text.split("~")]
                message = " ".join(r.message or "" for r in by_file[path.name] if r.source == "claims")
                again = re.search(re.escape(X.SUPERSEDED) + r" x(\d+)", message)
                superseded = int(again.group(1)) if again else 0
                assert rs["claims"] + superseded == sum(s.startswith("CLM*") for s in segments), path.name
                sv1 = sum(s.startswith("SV1*") for s in segments)
                assert rs["charges"] == sv1 if not superseded else 0 < rs["charges"] < sv1, path.name
    # lenient where analytics loses nothing: a 105-character ISA is read (and said), missing elements too
    [short_isa, _] = sorted(by_file["imsweb_x12_bad_first_line.txt"], key=lambda r: r.source)
    assert "not the fixed 106: read by its separators" in short_isa.message
