"""X12 005010 reader: 835 remittance advice -> remittances; 837P professional claims -> claims + charges.

A small, lenient segment parser: the ISA header gives the element separator (ISA position 4), the
sub-element separator (ISA16) and the segment terminator (the character after ISA16). Segments are split
on the terminator (surrounding line breaks ignored). What analytics does not need is not validated (the
corpus files are abbreviated: missing BPR16, PER, wrong SE counts would not stop a read), but a file that
is not an interchange, or is cut short (no IEA trailer, a transaction without SE), is refused whole:
nothing of a truncated remittance lands, so totals are never half-counted.

Mapping tables: ingestion/interop/README.md. Ids the practice assigns itself (CLM01 / CLP01 claim ids,
REF*EA medical record numbers) are kept as they are so that an 835 matches the claim it pays, whatever
format that claim arrived in; payer-assigned ids are namespaced (`x12:payer/...`, `x12:member/...`) and
NPIs are written `npi:<NPI>` (the same in FHIR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ingestion.files import FileRefused, display_name
from ingestion.interop import Batch, read_text

SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{1,2}$")
FIX = (
    "Export the file again from the clearinghouse or payer portal as a complete X12 005010 interchange "
    "(ISA ... IEA) and ingest it again."
)
CAS_EVENT = {
    "PR": "patient_responsibility",
    "CO": "contractual_adjustment",
    "OA": "contractual_adjustment",
    "PI": "contractual_adjustment",
    "CR": "contractual_adjustment",
}
DENIED = "4"  # CLP02 claim status: denied


@dataclass
class Segment:
    pos: int  # 1-based segment number in the file (ISA = 1)
    elements: list[str]

    @property
    def id(self) -> str:
        return self.elements[0]

    def __getitem__(self, i: int) -> str:
        return self.elements[i].strip() if i < len(self.elements) else ""


@dataclass
class Interchange:
    segments: list[Segment]
    sub_separator: str

    def composite(self, value: str) -> list[str]:
        """Split a composite element. Lenient: the corpus declares ':' in ISA16 but some files write '>'."""
        for sep in dict.fromkeys([self.sub_separator, ":", ">"]):
            if sep and sep in value:
                return [p.strip() for p in value.split(sep)]
        return [value.strip()]


def refuse(path: Path, problem: str) -> FileRefused:
    return FileRefused(f"{display_name(path)}: {problem}. {FIX}")


def parse(path: Path) -> Interchange:
    """Segments of the interchange, after checking the envelope is complete (ISA ... IEA, ST ... SE)."""
    text = read_text(path, "X12", FIX).lstrip()
    if not text.startswith("ISA"):
        raise refuse(path, "does not start with an ISA segment, so it is not an X12 interchange")
    if len(text) < 106:
        raise refuse(path, "is truncated inside the ISA header (an ISA segment is 106 characters)")
    element = text[3]
    head = text.split(element, 16)
    if len(head) < 17 or len(head[16]) < 2:
        raise refuse(path, "has a garbled ISA header (expected 16 elements, then the segment terminator)")
    sub, terminator = head[16][0], head[16][1]
    if terminator.isalnum() or terminator in (element, sub):
        raise refuse(path, "has a garbled ISA header (no segment terminator after ISA16)")
    segments = []
    for raw in text.split(terminator):
        raw = raw.strip("\r\n\t ")
        if not raw:
            continue
        elements = raw.split(element)
        if not SEGMENT_ID.match(elements[0]):
            raise refuse(
                path,
                f"segment {len(segments) + 1} does not start with a segment id (after "
                f"'{segments[-1].id if segments else 'ISA'}'): the file is garbled",
            )
        segments.append(Segment(len(segments) + 1, elements))
    _check_envelope(path, segments)
    return Interchange(segments, sub)


def _check_envelope(path: Path, segments: list[Segment]) -> None:
    if segments[-1].id != "IEA":
        raise refuse(
            path,
            f"ends without the IEA trailer ({len(segments)} segments, the last is "
            f"'{segments[-1].id}'): the file is truncated",
        )
    open_st: Segment | None = None
    for seg in segments:
        if seg.id == "ST":
            if open_st is not None:
                raise refuse(path, f"transaction set at segment {open_st.pos} has no SE trailer before the next ST")
            open_st = seg
        elif seg.id == "SE":
            if open_st is None:
                raise refuse(path, f"SE at segment {seg.pos} closes no transaction set")
            open_st = None
        elif seg.id in ("GE", "IEA") and open_st is not None:
            raise refuse(path, f"transaction set at segment {open_st.pos} has no SE trailer: the file is truncated")
    if not any(s.id == "ST" for s in segments):
        raise refuse(path, "contains no transaction set (ST ... SE)")


def transactions(segments: list[Segment]) -> list[list[Segment]]:
    out, current = [], None
    for seg in segments:
        if seg.id == "ST":
            current = [seg]
        elif current is not None:
            current.append(seg)
            if seg.id == "SE":
                out.append(current)
                current = None
    return out


def read(path: Path, batch: Batch) -> None:
    ix = parse(path)
    unsupported = []
    for tx in transactions(ix.segments):
        kind = tx[0][1]
        version = tx[0][3] or _gs_version(ix.segments, tx[0].pos)
        if kind == "835":
            _read_835(ix, tx, batch)
        elif kind == "837" and "X222" in version:
            _read_837p(ix, tx, batch)
        else:
            unsupported.append(_shown_transaction(kind, version))
    if unsupported and not batch.rows:
        raise FileRefused(
            f"{display_name(path)}: transaction set(s) {', '.join(sorted(set(unsupported)))} are not "
            f"read by PT Pulse (it reads 835 remittances and 837P professional claims, 005010X222). "
            f"Remove the file from the exports."
        )
    for kind in sorted(set(unsupported)):
        batch.ignore(f"X12 {kind}")


def _shown_transaction(kind: str, version: str) -> str:
    """ST01 / GS08 as they may appear in a message: X12 codes only (they are file content)."""
    kind = kind if re.fullmatch(r"\d{3}", kind) else "(other)"
    version = version if re.fullmatch(r"\d{6}X\d{3}(A\d)?", version) else ""
    return f"{kind} {version}".strip()


def _gs_version(segments: list[Segment], before: int) -> str:
    version = ""
    for seg in segments[: before - 1]:
        if seg.id == "GS":
            version = seg[8]
    return version


# --- values -----------------------------------------------------------------------------------------------


def x12_date(value: str) -> str | None:
    """CCYYMMDD (or the start of an RD8 range CCYYMMDD-CCYYMMDD) -> YYYY-MM-DD; other text unchanged."""
    value = value.strip()
    if re.fullmatch(r"\d{8}(-\d{8})?", value):
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return value or None


def x12_timestamp(date: str, time: str = "") -> str | None:
    day = x12_date(date)
    if not day or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        return day
    time = time.strip()
    if re.fullmatch(r"\d{4}(\d{2})?", time):
        return f"{day} {time[:2]}:{time[2:4]}:{time[4:6] or '00'}"
    return f"{day} 00:00:00"


def _real_date(value: str | None) -> bool:
    try:
        datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    return True


def is_zero(amount: str) -> bool:
    try:
        return Decimal(amount) == 0
    except InvalidOperation:
        return False


def whole_number(value: str) -> str:
    """'7.00' -> '7' (a whole quantity written with decimals); anything else unchanged (then validated)."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return value
    return str(int(number)) if number == number.to_integral_value() else value


def npi(qualifier: str, value: str) -> str | None:
    return f"npi:{value}" if qualifier == "XX" and value else None


# --- 837P -------------------------------------------------------------------------------------------------


@dataclass
class _Claim:
    seg: Segment
    claim_id: str
    billed: str
    patient_id: str | None
    payer_id: str | None
    billing_npi: str | None
    service_date: str | None = None
    rendering_npi: str | None = None
    facility_npi: str | None = None
    mrn: str | None = None
    lines: list[dict] = field(default_factory=list)


def _read_837p(ix: Interchange, tx: list[Segment], batch: Batch) -> None:
    """Loops used: 2010AA billing provider, 2010BA subscriber, 2010BB payer, 2000C patient, 2300 claim
    (CLM, REF*EA, DTP*472, 2310B rendering NM1*82, 2310C facility NM1*77), 2320/2330 other payer (skipped),
    2400 line (LX, SV1, DTP*472, 2420A rendering NM1*82)."""
    submitted_at = None
    billing_npi = member_id = payer_id = None
    dependent = False
    loop = "header"
    claim: _Claim | None = None

    def flush() -> None:
        nonlocal claim
        if claim is not None:
            _emit_837p(claim, submitted_at, batch)
        claim = None

    for seg in tx:
        sid = seg.id
        if sid == "BHT":
            submitted_at = x12_timestamp(seg[4], seg[5])
        elif sid == "HL":
            flush()
            level = seg[3]
            loop = {"20": "billing", "22": "subscriber", "23": "patient"}.get(level, "other")
            if level == "20":
                billing_npi = None
            if level == "22":
                member_id = payer_id = None
                dependent = False
            if level == "23":
                dependent = True
        elif sid == "NM1":
            who = seg[1]
            if loop == "billing" and who == "85":
                billing_npi = npi(seg[8], seg[9])
            elif loop == "subscriber" and who == "IL":
                member_id = seg[9] or None
            elif loop == "subscriber" and who == "PR":
                payer_id = f"x12:payer/{seg[9]}" if seg[9] else None
            elif loop == "claim" and claim is not None and who == "82":
                claim.rendering_npi = npi(seg[8], seg[9])
            elif loop == "claim" and claim is not None and who == "77":
                claim.facility_npi = npi(seg[8], seg[9])
            elif loop == "line" and claim is not None and claim.lines and who == "82":
                claim.lines[-1]["rendering_npi"] = npi(seg[8], seg[9])
        elif sid == "CLM":
            flush()
            patient = None
            if member_id and payer_id and not dependent:
                patient = f"x12:member/{payer_id.split('/', 1)[1]}/{member_id}"
            claim = _Claim(seg, seg[1], seg[2], patient, payer_id, billing_npi)
            loop = "claim"
        elif claim is None:
            continue
        elif sid == "SBR" and loop in ("claim", "line"):
            loop = "other_payer"  # 2320: other subscriber / payer of a COB claim; not this claim's payer
        elif sid == "REF" and loop == "claim" and seg[1] == "EA":
            claim.mrn = seg[2] or None
        elif sid == "DTP" and seg[1] == "472":
            if loop == "claim":
                claim.service_date = x12_date(seg[3])
            elif loop == "line" and claim.lines:
                claim.lines[-1]["service_date"] = x12_date(seg[3])
        elif sid == "LX":
            loop = "line"
            claim.lines.append({"lx": seg[1], "seg": None})
        elif sid == "SV1" and loop == "line" and claim.lines:
            line = claim.lines[-1]
            procedure = ix.composite(seg[1])
            line.update(
                seg=seg,
                qualifier=procedure[0],
                code=procedure[1] if len(procedure) > 1 else "",
                modifiers="|".join(m for m in procedure[2:6] if m),
                charge=seg[2],
                unit=seg[3],
                quantity=seg[4],
            )
        elif sid == "SE":
            flush()
    flush()


def _emit_837p(claim: _Claim, submitted_at: str | None, batch: Batch) -> None:
    lines = [ln for ln in claim.lines if ln.get("seg") is not None]
    dates = sorted(d for d in (ln.get("service_date") for ln in lines) if d)
    service_date = claim.service_date or (dates[0] if dates else None)
    patient_id = claim.mrn or claim.patient_id
    clinic_id = claim.facility_npi or claim.billing_npi
    batch.add(
        "claims",
        claim.seg.pos,
        claim_id=claim.claim_id,
        episode_id=None,
        patient_id=patient_id,
        clinic_id=clinic_id,
        payer_id=claim.payer_id,
        service_date=service_date,
        submitted_at=submitted_at,
        billed_usd=claim.billed,
    )
    for line in lines:
        minutes = line["quantity"] if line["unit"] == "MJ" else None
        units = whole_number(line["quantity"]) if line["unit"] == "UN" else None
        batch.add(
            "charges",
            line["seg"].pos,
            charge_id=f"{claim.claim_id}#{line['lx']}",
            claim_id=claim.claim_id,
            appointment_id=None,
            episode_id=None,
            patient_id=patient_id,
            clinic_id=clinic_id,
            therapist_id=line.get("rendering_npi") or claim.rendering_npi or claim.billing_npi,
            service_date=line.get("service_date") or service_date,
            cpt_code=line["code"],
            modifiers=line["modifiers"],
            units=units,
            minutes=whole_number(minutes) if minutes else None,
            charge_usd=line["charge"],
            posted_at=None,
        )


# --- 835 --------------------------------------------------------------------------------------------------


@dataclass
class _Paid:
    seg: Segment
    claim_id: str
    status: str
    billed: str
    paid: str
    occurrence: int
    adjustments: list[tuple[Segment, str, str, str]] = field(default_factory=list)  # (seg, group, carc, amount)


def _read_835(ix: Interchange, tx: list[Segment], batch: Batch) -> None:
    """Header: BPR16 payment date, TRN02 check/EFT trace number, DTM*405 production date, payer id from
    REF*2U or N1*PR N104 (else TRN03, the payer's TIN). Per CLP: payment, adjustments (claim and service
    CAS), or a denial."""
    payment_date = production_date = trace = payer_tin = payer_id = None
    loop = "header"
    seen: dict[str, int] = {}
    claims: list[_Paid] = []
    for seg in tx:
        sid = seg.id
        if sid == "BPR":
            payment_date = x12_timestamp(seg[16]) if seg[16] else None
        elif sid == "TRN":
            trace, payer_tin = seg[2] or None, seg[3] or None
        elif sid == "DTM" and seg[1] == "405" and loop == "header":
            production_date = x12_timestamp(seg[2])
        elif sid == "N1":
            loop = "payer" if seg[1] == "PR" else "payee" if seg[1] == "PE" else loop
            if seg[1] == "PR" and seg[4]:
                payer_id = payer_id or f"x12:payer/{seg[4]}"
        elif sid == "REF" and loop == "payer" and seg[1] == "2U" and seg[2]:
            payer_id = f"x12:payer/{seg[2]}"
        elif sid == "CLP":
            loop = "claim"
            seen[seg[1]] = seen.get(seg[1], 0) + 1
            claims.append(_Paid(seg, seg[1], seg[2], seg[3], seg[4], seen[seg[1]]))
        elif sid == "CAS" and claims and loop == "claim":
            group = seg[1]
            for i in range(2, 19, 3):  # up to six (reason, amount, quantity) triplets
                if seg[i] or seg[i + 1]:
                    claims[-1].adjustments.append((seg, group, seg[i], seg[i + 1]))
        elif sid == "PLB":
            batch.ignore("X12 835 PLB (provider-level adjustment)")
    if payer_id is None and payer_tin:
        payer_id = f"x12:payer-tin/{payer_tin}"
    event_at = payment_date if _real_date(payment_date) else production_date
    if payment_date and event_at != payment_date and claims:
        batch.notes.append(
            f"835 at segment {tx[0].pos}: BPR16 payment date is not a calendar date; the "
            f"production date (DTM*405) is used as the remittance time"
        )
    for paid in claims:
        _emit_835(paid, trace, payer_id, event_at, batch)


def _emit_835(paid: _Paid, trace: str | None, payer_id: str | None, event_at: str | None, batch: Batch) -> None:
    base = f"x12:835/{trace or '-'}/{paid.claim_id}/{paid.occurrence}"
    common = dict(claim_id=paid.claim_id, payer_id=payer_id, event_at=event_at, check_number=trace)
    if paid.status == DENIED:
        first = paid.adjustments[0] if paid.adjustments else (None, None, None, None)
        batch.add(
            "remittances",
            paid.seg.pos,
            remit_id=f"{base}/denial",
            event_type="denial",
            amount_usd=paid.billed,
            group_code=first[1],
            carc_code=first[2],
            **common,
        )
        if paid.paid and not is_zero(paid.paid):
            batch.add(
                "remittances",
                paid.seg.pos,
                remit_id=f"{base}/payment",
                event_type="payer_payment",
                amount_usd=paid.paid,
                **common,
            )
        return
    if paid.paid and not is_zero(paid.paid):
        batch.add(
            "remittances",
            paid.seg.pos,
            remit_id=f"{base}/payment",
            event_type="payer_payment",
            amount_usd=paid.paid,
            **common,
        )
    for n, (seg, group, carc, amount) in enumerate(paid.adjustments, start=1):
        if amount and is_zero(amount):
            continue
        batch.add(
            "remittances",
            seg.pos,
            remit_id=f"{base}/cas/{n}",
            event_type=CAS_EVENT.get(group),
            amount_usd=amount,
            group_code=group,
            carc_code=carc,
            **common,
        )
