"""X12 005010 reader: 835 remittance advice -> remittances; 837P professional claims -> claims + charges.

A small, lenient segment parser. Each interchange's ISA header gives its element separator (ISA position
4), sub-element separator (ISA16) and segment terminator (the character after ISA16); segments are split on
the terminator (line breaks around segments ignored), and a file may hold several interchanges, each with
its own separators. Files are found by that ISA header whatever their name (`.txt`, `.dat`, none). What
analytics does not need is not validated (the corpus files are abbreviated: missing BPR16, PER, wrong SE
counts, a short ISA would not stop a read), but a file that is not an interchange, or is cut short (no IEA
trailer, a transaction without SE), is refused whole: nothing of a truncated remittance lands, so totals
are never half-counted.

Mapping tables: ingestion/interop/README.md. Ids the practice assigns itself (CLM01 / CLP01 claim ids,
REF*EA medical record numbers) are kept as they are so that an 835 matches the claim it pays, whatever
format that claim arrived in; payer-assigned ids are namespaced (`x12:payer/...`, `x12:member/...`) and
NPIs are written `npi:<NPI>` (the same in FHIR). Remittance ids are derived from the payment (payer + TRN
trace number), not the envelope, so the same 835 re-sent in a new interchange lands as duplicates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ingestion.files import FileRefused, display_name
from ingestion.interop import Batch, read_text

SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{1,2}$")
ISA_LENGTH = 106  # the ISA segment is fixed-length, terminator included
TRAILING_PADDING = "\x1a\x00 \t\r\n"  # what old systems write after the data: Ctrl-Z, NULs, blank lines
LINE_BREAKS = "\r\n"
FIX = (
    "Export the file again from the clearinghouse or payer portal as a complete X12 005010 interchange "
    "(ISA ... IEA) and ingest it again."
)
# CAS claim adjustment group -> remittance event (group_code keeps which): PR moves the balance to the
# patient; CO (contractual), OA (other), PI (payer initiated) and CR (corrections, retired in 5010) close the
# insurance balance without cash. CARC 23 (PRIOR_PAYER) is not mapped: see _prior_share.
CAS_EVENT = {
    "PR": "patient_responsibility",
    "CO": "contractual_adjustment",
    "OA": "contractual_adjustment",
    "PI": "contractual_adjustment",
    "CR": "contractual_adjustment",
}
DENIED = "4"  # CLP02 claim status: denied
REVERSAL = "22"  # CLP02: reversal of previous payment (amounts negated; a correction follows as 1/2/3/19-21)
# A reversal's amounts that are never negative in the claim payment it reverses: CLP03 billed, CLP04 paid, CLP05
# patient responsibility, and the service lines' SVC02 charge and SVC03 payment. A CAS amount may be negative in
# an original (OA-94 over-adjustment given back), so a CAS's sign alone does not say how a reversal is written.
REVERSAL_TOTALS = ("CLP03", "CLP04", "CLP05", "SVC02", "SVC03")
PREDETERMINATION = "25"  # CLP02: predetermination pricing only, no payment
VOID = "8"  # CLM05-3 claim frequency: void / cancel of a prior claim
# CARC 23: "the impact of prior payer(s) adjudication including payments and/or adjustments". A secondary or
# tertiary payer's 835 (CLP02 = 2, 3, 20, 21) reports with it what the payers before it already paid and adjusted:
# that money is in the earlier payer's own 835, so it is no adjustment of this payer and never lands.
PRIOR_PAYER = "23"


@dataclass
class Segment:
    pos: int  # 1-based segment number in the file (ISA = 1; counting goes on across interchanges)
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

    @property
    def envelope(self) -> str:
        """Sender (ISA06) and control number (ISA13): names a payment only when it has no TRN trace."""
        isa = self.segments[0]
        return f"{isa[6] or '-'}/{isa[13] or '-'}"

    def composite(self, value: str) -> list[str]:
        """Split a composite element. Lenient: the corpus declares ':' in ISA16 but some files write '>'."""
        for sep in dict.fromkeys([self.sub_separator, ":", ">"]):
            if sep and sep in value:
                return [p.strip() for p in value.split(sep)]
        return [value.strip()]


def refuse(path: Path, problem: str) -> FileRefused:
    return FileRefused(f"{display_name(path)}: {problem}. {FIX}")


def parse(path: Path, notes: list[str] | None = None) -> list[Interchange]:
    """The file's interchanges (ISA ... IEA, one after another), each checked complete (ST ... SE)."""
    text = read_text(path, "X12", FIX).lstrip()
    if not text.startswith("ISA"):
        raise refuse(path, "does not start with an ISA segment, so it is not an X12 interchange")
    interchanges: list[Interchange] = []
    while text:
        offset = sum(len(ix.segments) for ix in interchanges)
        ix, text = _interchange(path, text, offset, notes if notes is not None else [])
        interchanges.append(ix)
        text = text.lstrip()
        if not text.strip(TRAILING_PADDING):  # a DOS end-of-file mark or NUL padding after the last IEA
            break
        if text and not text.startswith("ISA"):
            raise refuse(
                path,
                f"text after the IEA trailer at segment {offset + len(ix.segments)} is not another "
                f"interchange (ISA): the file is garbled",
            )
    if not any(s.id == "ST" for ix in interchanges for s in ix.segments):
        raise refuse(path, "contains no transaction set (ST ... SE)")
    return interchanges


def _interchange(path: Path, text: str, offset: int, notes: list[str]) -> tuple[Interchange, str]:
    """One interchange from the start of `text` (which starts with ISA), and the text after its IEA."""
    where = f"the ISA header at segment {offset + 1}"
    if len(text) < ISA_LENGTH - 2:
        raise refuse(path, f"is truncated inside {where} (an ISA segment is {ISA_LENGTH} characters)")
    element = text[3]
    if element.isalnum() or element in " \t\r\n":  # not isspace(): the control characters FS/GS/RS/US are used
        raise refuse(path, f"has a garbled {where}: position 4 must be the element separator")
    sub, terminator = _separators(path, text, element, where)
    parts = text.split(terminator)
    if len(parts[0]) + 1 != ISA_LENGTH:
        notes.append(f"{where} is {len(parts[0]) + 1} characters, not the fixed {ISA_LENGTH}: read by its separators")
    segments: list[Segment] = []
    rest = ""
    wrapped = terminator not in LINE_BREAKS
    for i, raw in enumerate(parts):
        if wrapped:  # data never holds a line break: one inside a segment is a fixed-width wrap of the file
            raw = raw.replace("\r", "").replace("\n", "")
        raw = raw.strip("\r\n\t ")
        if not raw:
            continue
        elements = raw.split(element)
        if not SEGMENT_ID.fullmatch(elements[0]):
            previous = segments[-1].id if segments else "ISA"
            raise refuse(
                path,
                f"segment {offset + len(segments) + 1} does not start with a segment id (after "
                f"'{previous if SEGMENT_ID.fullmatch(previous) else '?'}'): the file is garbled",
            )
        segments.append(Segment(offset + len(segments) + 1, elements))
        if elements[0] == "IEA":
            rest = terminator.join(parts[i + 1 :])
            break
    _check_envelope(path, segments)
    return Interchange(segments, sub), rest


def _separators(path: Path, text: str, element: str, where: str) -> tuple[str, str]:
    """ISA16's component separator and the segment terminator after it. Read from the header with its line
    breaks removed first (a file wrapped at a fixed width may break inside the ISA itself), then as written (a
    file whose segment terminator is the line break)."""
    complete = False
    for header in (text[: 3 * ISA_LENGTH].replace("\r", "").replace("\n", ""), text):
        head = header.split(element, 16)
        if len(head) < 17 or len(head[16]) < 2:
            continue
        complete = True
        sub, terminator = head[16][0], head[16][1]
        if not (terminator.isalnum() or terminator == " " or terminator in (element, sub) or sub in LINE_BREAKS):
            return sub, terminator
    if not complete:
        raise refuse(path, f"has a garbled {where} (expected 16 elements, then the segment terminator)")
    raise refuse(path, f"has a garbled {where} (no segment terminator after ISA16)")


def _check_envelope(path: Path, segments: list[Segment]) -> None:
    if segments[-1].id != "IEA":
        raise refuse(
            path,
            f"ends without the IEA trailer ({segments[-1].pos} segments, the last is "
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
    interchanges = parse(path, batch.notes)
    unsupported = []
    occurrences: Counter = Counter()  # (payment, CLP01) seen so far in the file: a reversal and its correction
    sent: list[tuple[_Claim, str | None]] = []  # the file's 837P claims (CLM) in file order, with their BHT time
    for ix in interchanges:
        for tx in transactions(ix.segments):
            kind = tx[0][1]
            version = tx[0][3] or _gs_version(ix.segments, tx[0].pos)
            if kind == "835":
                _read_835(ix, tx, batch, occurrences)
            elif kind == "837" and "X222" in version:
                _read_837p(ix, tx, sent)
            else:
                unsupported.append(_shown_transaction(kind, version))
    for claim, submitted_at in _latest_versions(sent, batch):
        _emit_837p(claim, submitted_at, batch)
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
    for seg in segments:
        if seg.pos >= before:
            break
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
    if re.fullmatch(r"\d{4}(\d{2}(\d{1,2})?)?", time):  # HHMM, HHMMSS, HHMMSSD, HHMMSSDD (decimal seconds dropped)
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


def amount(value: str) -> Decimal | None:
    """An X12 money amount as a Decimal, None when it is not a plain number (left to the contract to judge)."""
    try:
        return Decimal(value) if value and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value) else None
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def negated(value: str) -> str:
    """-value, as text ('450.00' -> '-450.00'); text that is not a number is returned unchanged."""
    number = amount(value)
    return value if number is None else str(-number)


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
    frequency: str = ""  # CLM05-3: 1 original, 7 replacement (a new version of the claim), 8 void
    service_date: str | None = None
    rendering_npi: str | None = None
    facility_npi: str | None = None
    mrn: str | None = None
    lines: list[dict] = field(default_factory=list)


def _read_837p(ix: Interchange, tx: list[Segment], sent: list[tuple[_Claim, str | None]]) -> None:
    """The claims of one 837P transaction, appended to `sent` with the transaction's BHT time (mapped once the whole
    file is read: _latest_versions). Loops used: 2010AA billing provider, 2010BA subscriber, 2010BB payer, 2000C
    patient, 2300 claim (CLM, REF*EA, DTP*472, 2310B rendering NM1*82, 2310C facility NM1*77), 2320/2330 other payer
    (skipped), 2400 line (LX, SV1, DTP*472, REF*6R line item control number, 2420A rendering NM1*82)."""
    submitted_at = None
    billing_npi = member_id = payer_id = None
    dependent = False
    loop = "header"
    claim: _Claim | None = None

    def flush() -> None:
        nonlocal claim
        if claim is not None:
            sent.append((claim, submitted_at))
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
            place = ix.composite(seg[5])
            claim.frequency = place[2] if len(place) > 2 else ""
            loop = "claim"
        elif claim is None:
            continue
        elif sid == "SBR" and loop in ("claim", "line"):
            loop = "other_payer"  # 2320: other subscriber / payer of a COB claim; not this claim's payer
        elif sid == "REF" and loop == "claim" and seg[1] == "EA":
            claim.mrn = seg[2] or None
        elif sid == "REF" and loop == "line" and seg[1] == "6R" and claim.lines and seg[2]:
            claim.lines[-1]["control"] = seg[2]  # 2400 line item control number: the practice's own line id
        elif sid == "DTP" and seg[1] == "472":
            if loop == "claim":
                claim.service_date = x12_date(seg[3])
            elif loop == "line" and claim.lines:
                claim.lines[-1]["service_date"] = x12_date(seg[3])
        elif sid == "LX":
            loop = "line"
            claim.lines.append({"lx": seg[1], "lx_seg": seg, "seg": None})
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


#: load-message note (a count) of the claim versions a later version in the same file replaces or voids
SUPERSEDED = (
    "X12 837P claim whose CLM01 the same file sends again later (a copy, a replacement CLM05-3 = 7, a void 8): only "
    "the file's latest version of the claim is mapped"
)


def _latest_versions(sent: list[tuple[_Claim, str | None]], batch: Batch) -> list[tuple[_Claim, str | None]]:
    """The claims of the file to map: of the CLMs one claim id has in the file, the latest version only, in merge
    order (dbt merge_latest: the claim's creation time, then the later CLM in the file: ISA / ST / CLM order). An
    original and its replacement (CLM05-3 = 7) in one file are one file: dbt keeps the lines of the file that sent
    the claim's latest version (current_claim_lines), so every line of both versions counted (the line the
    replacement dropped, and each line twice when its id changed). The earlier versions are counted in the load
    message (SUPERSEDED). A void (8) that is the latest lands as the claim's voided version (`_emit_837p`), whether
    the claim it cancels is in the file or came in an earlier one: one rule for both. A CLM without CLM01 is never
    another's version (quarantined `required` as it is)."""
    latest: dict[str, tuple[bool, str, int]] = {}
    for position, (claim, submitted_at) in enumerate(sent):
        key = claim.claim_id.strip()
        if not key:
            continue
        created = _created(claim, submitted_at)
        order = (created is not None, created or "", position)
        latest[key] = max(latest.get(key, order), order)
    kept = []
    for position, (claim, submitted_at) in enumerate(sent):
        key = claim.claim_id.strip()
        if key and latest[key][2] != position:
            batch.ignore(SUPERSEDED)
            continue
        kept.append((claim, submitted_at))
    return kept


def _dates(claim: _Claim) -> tuple[list[str], str | None]:
    """The service dates of the claim's lines (with their SV1), sorted, and the claim's date of service."""
    lines = [ln for ln in claim.lines if ln.get("seg") is not None]  # service lines with their SV1
    dates = sorted(d for d in (ln.get("service_date") for ln in lines) if d)
    return dates, claim.service_date or (dates[0] if dates else None)


def _created(claim: _Claim, submitted_at: str | None, batch: Batch | None = None) -> str | None:
    """When the claim was created (its submitted_at): the BHT time, never before its last date of service (test
    files reuse old headers); the adjustment counted in `batch`'s load message when given."""
    dates, service_date = _dates(claim)
    return _not_before(submitted_at, max([*dates, service_date or ""]), batch)


def _emit_837p(claim: _Claim, submitted_at: str | None, batch: Batch) -> None:
    """One claims row and a charges row per service line, all at the BHT time (the claim's creation: 837P
    carries no posting time). A replacement claim (CLM05-3 = 7) reuses CLM01, so it lands as a new version.
    A void (8) lands as the claim's voided version (status `voided`, at its BHT time) and no charges: the lines it
    repeats are the voided claim's, and dbt keeps a claim's lines from the file of its latest version only
    (current_claim_lines), so the voided claim's earlier lines stop counting too. A void lacking what a claims row
    needs (patient, clinic, date of service: a void usually repeats them) is quarantined with the `required` column
    it lacks, never dropped; counted in the load message (VOIDED)."""
    _, service_date = _dates(claim)
    created = _created(claim, submitted_at, batch)
    patient_id = claim.mrn or claim.patient_id
    clinic_id = claim.facility_npi or claim.billing_npi
    voided = claim.frequency == VOID
    batch.add(
        "claims",
        claim.seg.pos,
        claim_id=claim.claim_id,
        episode_id=None,
        patient_id=patient_id,
        clinic_id=clinic_id,
        payer_id=claim.payer_id,
        service_date=service_date,
        submitted_at=created,
        billed_usd=claim.billed,
        status="voided" if voided else None,
    )
    if voided:
        batch.adjusted[VOIDED] += 1
        return
    for line, charge_id in zip(claim.lines, _line_ids(claim, batch), strict=True):
        line_date = line.get("service_date") or service_date
        common = dict(
            charge_id=charge_id,
            claim_id=claim.claim_id,
            appointment_id=None,
            episode_id=None,
            patient_id=patient_id,
            clinic_id=clinic_id,
            therapist_id=line.get("rendering_npi") or claim.rendering_npi or claim.billing_npi,
            service_date=line_date,
            posted_at=_not_before(submitted_at, line_date or "", batch),
        )
        if line.get("seg") is None:
            # an LX without its SV1 (a professional service: procedure, charge, units): no charge to land, but read,
            # so quarantined (its cpt_code, units and charge_usd are empty) and counted in the load message
            batch.adjusted[NO_SV1] += 1
            batch.add("charges", line["lx_seg"].pos, **common)
            continue
        minutes = line["quantity"] if line["unit"] == "MJ" else None
        units = whole_number(line["quantity"]) if line["unit"] == "UN" else None
        batch.add(
            "charges",
            line["seg"].pos,
            **common,
            cpt_code=line["code"],
            modifiers=line["modifiers"],
            units=units,
            minutes=whole_number(minutes) if minutes else None,
            charge_usd=line["charge"],
        )


#: load-message note (a count) of the 837P voids landed as their claim's voided version
VOIDED = (
    "X12 837P void claim (CLM05-3 = 8): landed as the claim's voided version (status voided), its service lines not "
    "mapped; the claim counts as billed nowhere until a later version re-bills it"
)
#: load-message notes (counts only) of the 837P service lines quarantined by the reader's rules (README.md, 837P)
NO_SV1 = "X12 837P service line (LX) without its professional service (SV1): quarantined (no cpt_code, units, charge)"
REPEATED_LINE = (
    "X12 837P service line whose line id (REF*6R, else the LX number) repeats an earlier line's in its claim: "
    "no charge id (quarantined `required` charge_id), the first line kept"
)


def _line_ids(claim: _Claim, batch: Batch) -> list[str | None]:
    """The charge id of each service line (LX) of the claim: REF*6R, else CLM01 + `#` + LX01. A line whose id repeats
    an earlier line's of the same claim (an LX number or REF*6R written twice) gets none, so it is quarantined
    (`required` charge_id) and counted in the load message: landed under one key, dbt would keep only the last of
    them, and money would silently go. The first is kept. Quarantined rather than made unique (`#1-2`): such an id
    would be invented here, named by no 835 or replacement claim, and would shift if the lines were reordered."""
    ids: list[str | None] = []
    seen: set[str] = set()
    for line in claim.lines:
        charge_id = line.get("control") or f"{claim.claim_id}#{line['lx']}"
        key = charge_id.strip()  # as it lands (Batch.add strips values)
        if key in seen:
            batch.adjusted[REPEATED_LINE] += 1
            ids.append(None)
            continue
        seen.add(key)
        ids.append(charge_id)
    return ids


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _not_before(at: str | None, day: str, batch: Batch | None) -> str | None:
    """`at` (BHT time), or midnight of `day` when the BHT precedes it: a line is posted, and a claim created, no
    earlier than its date of service. Counted in `batch`'s load message (how many, never which) when given."""
    if at is None or not DAY.match(day or "") or at[:10] >= day:
        return at
    if batch is not None:
        batch.adjusted["837P claim/line dated at its date of service (BHT date before it)"] += 1
    return f"{day} 00:00:00"


# --- 835 --------------------------------------------------------------------------------------------------


@dataclass
class _Paid:
    seg: Segment
    claim_id: str
    status: str
    billed: str
    paid: str
    occurrence: int
    responsibility: str = ""  # CLP05 patient responsibility (lands through the CAS PR rows, not on its own)
    # (seg, group, carc, amount, unit): unit 0 = a claim-level CAS (2100), k = one of the k-th service line (2110)
    adjustments: list[tuple[Segment, str, str, str, int]] = field(default_factory=list)
    services: list[tuple[str, str]] = field(default_factory=list)  # SVC02 charge, SVC03 payment per line

    def amounts(self) -> list[tuple[str, Decimal]]:
        """Every money amount of the CLP that is a number, named by its element (CAS for any adjustment)."""
        named = [("CLP03", self.billed), ("CLP04", self.paid), ("CLP05", self.responsibility)]
        named += [(name, v) for charge, paid in self.services for name, v in (("SVC02", charge), ("SVC03", paid))]
        named += [("CAS", adj[3]) for adj in self.adjustments]
        return [(name, n) for name, v in named if (n := amount(v)) is not None]


@dataclass
class _Payment:
    """One 835 transaction's payment: BPR (total, date), TRN (trace = check / EFT number, originator = the
    payer's TIN), payer, and its claims and provider-level adjustments (PLB)."""

    ix: Interchange
    st: Segment
    total: str = ""
    payment_date: str | None = None
    production_date: str | None = None
    trace: str | None = None
    originator: str | None = None
    payer_id: str | None = None
    claims: list[_Paid] = field(default_factory=list)
    plb: list[tuple[Segment, str, str]] = field(default_factory=list)  # (seg, reason, amount)

    @property
    def key(self) -> str:
        """Names the payment across files: payer (TRN03, else the payer id) + trace number; without a TRN,
        the envelope (sender, ISA13, ST02), unique but not stable when the file is re-sent."""
        if self.trace:
            payer = self.originator or (self.payer_id.split("/", 1)[1] if self.payer_id else "-")
            return f"{payer}/{self.trace}"
        return f"envelope/{self.ix.envelope}/{self.st[2] or '-'}"


def _read_835(ix: Interchange, tx: list[Segment], batch: Batch, occurrences: Counter) -> None:
    """Header: BPR02 total, BPR16 payment date, TRN02 check/EFT trace number, TRN03 originator, DTM*405
    production date, payer id from REF*2U or N1*PR N104 (else TRN03, the payer's TIN). Per CLP: payment,
    adjustments (claim and service CAS), or a denial. PLB: provider-level adjustments."""
    pay = _Payment(ix, tx[0])
    loop = "header"
    for seg in tx:
        sid = seg.id
        if sid == "BPR":
            pay.total = seg[2]
            pay.payment_date = x12_timestamp(seg[16]) if seg[16] else None
        elif sid == "TRN":
            pay.trace, pay.originator = seg[2] or None, seg[3] or None
        elif sid == "DTM" and seg[1] == "405" and loop == "header":
            pay.production_date = x12_timestamp(seg[2])
        elif sid == "N1":
            loop = "payer" if seg[1] == "PR" else "payee" if seg[1] == "PE" else loop
            if seg[1] == "PR" and seg[4]:
                pay.payer_id = pay.payer_id or f"x12:payer/{seg[4]}"
        elif sid == "REF" and loop == "payer" and seg[1] == "2U" and seg[2]:
            pay.payer_id = f"x12:payer/{seg[2]}"
        elif sid == "CLP":
            loop = "claim"
            pay.claims.append(_Paid(seg, seg[1], seg[2], seg[3], seg[4], 0, responsibility=seg[5]))
        elif sid == "SVC" and pay.claims and loop == "claim":
            pay.claims[-1].services.append((seg[2], seg[3]))
        elif sid == "CAS" and pay.claims and loop == "claim":
            group = seg[1]
            for i in range(2, 19, 3):  # up to six (reason, amount, quantity) triplets
                if seg[i] or seg[i + 1]:
                    unit = len(pay.claims[-1].services)  # 0 before the first SVC: a claim-level CAS
                    pay.claims[-1].adjustments.append((seg, group, seg[i], seg[i + 1], unit))
        elif sid == "PLB":
            loop = "summary"
            for i in range(3, 15, 2):  # up to six (reason:reference, amount) pairs
                if seg[i] or seg[i + 1]:
                    pay.plb.append((seg, ix.composite(seg[i])[0], seg[i + 1]))
    if pay.payer_id is None and pay.originator:
        pay.payer_id = f"x12:payer-tin/{pay.originator}"
    event_at = pay.payment_date if _real_date(pay.payment_date) else pay.production_date
    if pay.payment_date and event_at != pay.payment_date and (pay.claims or pay.plb):
        batch.notes.append(
            f"835 at segment {tx[0].pos}: BPR16 payment date is not a calendar date; the "
            f"production date (DTM*405) is used as the remittance time"
        )
    _check_balance(pay, batch)
    for paid in pay.claims:
        occurrences[(pay.key, paid.claim_id)] += 1
        paid.occurrence = occurrences[(pay.key, paid.claim_id)]
        _emit_835(paid, pay, event_at, batch)
    for k, (seg, reason, value) in enumerate(pay.plb, start=1):
        if value and is_zero(value):
            continue
        batch.add(
            "remittances",
            seg.pos,
            remit_id=f"x12:835/{pay.key}/plb/{k}" + (f"/{reason}" if re.fullmatch(r"[A-Z0-9]{2}", reason) else ""),
            claim_id=f"x12:plb/{pay.key}",
            payer_id=pay.payer_id,
            event_type="payer_payment",
            event_at=event_at,
            amount_usd=negated(value),  # PLB04 > 0 is withheld from the payment (e.g. WO recoupment), < 0 added
            check_number=pay.trace,
        )


def _check_balance(pay: _Payment, batch: Batch) -> None:
    """BPR02 (the money sent) = sum of CLP04 - sum of PLB04 in a complete 835; a note when it is not (the
    rows are kept as written: abbreviated examples and split payments exist)."""
    total = amount(pay.total)
    paid = [amount(c.paid or "0") for c in pay.claims]
    withheld = [amount(v or "0") for _, _, v in pay.plb]
    if total is None or None in paid or None in withheld or not (paid or withheld):
        return
    if sum(paid, Decimal(0)) - sum(withheld, Decimal(0)) != total:
        batch.notes.append(
            f"835 at segment {pay.st.pos}: the claim payments (CLP04) less the provider-level adjustments "
            f"(PLB) do not add up to the total payment (BPR02); every row is kept as the payer wrote it"
        )


def reversal_written_unsigned(paid: _Paid) -> bool:
    """Whether a reversal (CLP02 = 22) repeats the original's amounts as they were instead of negated (TR3
    1.10.2.8 negates every amount). Signed, and so read as written, when one of its REVERSAL_TOTALS is negative
    (the payer negated the payment, however it wrote CLP03), or when none is, no payment (CLP04, SVC03) is
    positive and a CAS is negative (a reversal of an unpaid claim, CLP03 left positive). Otherwise unsigned: every
    amount is negated, a CAS that was negative in the original too (so that it cancels it)."""
    amounts = paid.amounts()
    if any(n < 0 for name, n in amounts if name in REVERSAL_TOTALS):
        return False
    paid_positive = any(n > 0 for name, n in amounts if name in ("CLP04", "SVC03"))
    return paid_positive or not any(n < 0 for name, n in amounts if name == "CAS")


def _reversal_sign(paid: _Paid, batch: Batch) -> Callable[[str], str]:
    """How a reversal's amounts land (identity or negated), and the load note that says so."""
    amounts = paid.amounts()
    if reversal_written_unsigned(paid):
        if any(n != 0 for _, n in amounts):
            batch.notes.append(
                f"835 reversal at segment {paid.seg.pos} repeats the original's amounts unsigned (no negative "
                f"{', '.join(REVERSAL_TOTALS)}): every amount is negated so that it cancels the payment it reverses"
            )
        return negated
    positive = sorted({name for name, n in amounts if n > 0})
    if positive:
        landed = [name for name in positive if name in ("CLP04", "CAS")]
        batch.notes.append(
            f"835 reversal at segment {paid.seg.pos} is written with negative amounts and a positive "
            f"{', '.join(positive)}: it is read as negated by the payer, so every amount lands as written (none "
            f"is negated again)"
            + (
                f"; the positive {' and '.join(landed)} is taken to cancel an amount that was negative in the original"
                if landed
                else ""
            )
        )
    return lambda v: v


def _emit_835(paid: _Paid, pay: _Payment, event_at: str | None, batch: Batch) -> None:
    """Rows of one CLP. Amounts are signed: a reversal (CLP02 = 22) carries the original's amounts negated
    (TR3 1.10.2.8) and lands as written, also when CLP03 or an adjustment is left positive; one repeating the
    original's amounts unsigned is negated here so it still cancels its original (reversal_written_unsigned)."""
    base = f"x12:835/{pay.key}/{paid.claim_id}/{paid.occurrence}"
    common = dict(claim_id=paid.claim_id, payer_id=pay.payer_id, event_at=event_at, check_number=pay.trace)
    if paid.status == PREDETERMINATION:
        batch.ignore("X12 835 predetermination (CLP02 = 25, no payment)")
        return
    sign = _reversal_sign(paid, batch) if paid.status == REVERSAL else (lambda v: v)
    if paid.status == DENIED:
        first = paid.adjustments[0] if paid.adjustments else (None, None, None, None, 0)
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
            amount_usd=sign(paid.paid),
            **common,
        )
    if paid.status == DENIED:
        _denied_adjustments(paid, base, common, batch)
        return
    for n, seg, group, carc, value in _landable_cas(paid, batch):
        batch.add(
            "remittances",
            seg.pos,
            remit_id=f"{base}/cas/{n}",
            event_type=CAS_EVENT.get(group),
            amount_usd=sign(value),
            group_code=group,
            carc_code=carc,
            **common,
        )
    share = _prior_share(paid, sign, batch)
    if share:
        batch.add(
            "remittances",
            paid.seg.pos,
            remit_id=f"{base}/prior_share",
            event_type="patient_responsibility",
            amount_usd=str(-share),
            group_code="PR",
            **common,
        )


def _landable_cas(paid: _Paid, batch: Batch) -> Iterator[tuple[int, Segment, str, str, str]]:
    """(n, segment, group, reason, amount) of each CAS of the CLP that may land, n its 1-based position (remit ids
    keep it): a zero amount moves nothing; a CARC 23 is the prior payer's adjudication, in that payer's 835
    (counted in the load message)."""
    for n, (seg, group, carc, value, _) in enumerate(paid.adjustments, start=1):
        if value and is_zero(value):
            continue
        if carc == PRIOR_PAYER:
            batch.ignore("X12 835 CAS reason 23 (the prior payer's adjudication, in that payer's 835)")
            continue
        yield n, seg, group, carc, value


def _denied_adjustments(paid: _Paid, base: str, common: dict, batch: Batch) -> None:
    """The CAS of a denied claim (CLP02 = 4) besides its `denial` row (which states CLP03 and the first CAS's group /
    reason). A PR (patient responsibility: the deductible or non-covered share the patient now owes) lands as on any
    claim, `patient_responsibility` `.../cas/<k>`, so the claim's balance moves to the patient and a reversal of the
    denial (which negates every CAS) cancels it. The other groups (CO, OA, PI, CR) do not land as adjustments: the
    denial states the denied amount, and a `contractual_adjustment` would close the insurance balance of a claim still
    to be appealed or written off (dbt `claims`: allowed, A/R). Not landed, they are counted in the load message by
    group and reason code (codes only), except the first CAS, whose codes the denial row carries. On a later payer's
    denial (a CAS reason 23: secondary, tertiary) a PR is counted too: the patient share it repeats is the prior
    payer's, landed from that payer's 835 (a secondary's denial leaves the primary's share)."""
    later_payer = any(adj[2] == PRIOR_PAYER for adj in paid.adjustments)
    for n, seg, group, carc, value in _landable_cas(paid, batch):
        if group == "PR" and not later_payer:
            batch.add(
                "remittances",
                seg.pos,
                remit_id=f"{base}/cas/{n}",
                event_type="patient_responsibility",
                amount_usd=value,
                group_code=group,
                carc_code=carc,
                **common,
            )
        elif n > 1 and group == "PR":
            batch.ignore(
                f"X12 835 later payer's denied claim CAS {_shown_cas(group, carc)} (the prior payer's 835 states it)"
            )
        elif n > 1:
            batch.ignore(f"X12 835 denied claim CAS {_shown_cas(group, carc)} (the denial states the denied amount)")


def _shown_cas(group: str, carc: str) -> str:
    """A CAS group and reason code as they may appear in a message (X12 codes only: they are file content)."""
    group = group if re.fullmatch(r"[A-Z]{2}", group) else "(other)"
    carc = carc if re.fullmatch(r"[A-Z0-9]{1,5}", carc) else "(other)"
    return f"{group}-{carc}"


def _prior_share(paid: _Paid, sign: Callable[[str], str], batch: Batch) -> Decimal | None:
    """The patient's share the prior payer(s) left, which this later payer settles (signed like the CLP's amounts);
    None when the CLP carries no CARC 23.

    A secondary / tertiary payer adjudicates what the primary left to the patient: it states the primary's paid and
    adjusted money as CARC 23 (not landed, above), then pays, adjusts and leaves its own patient responsibility out
    of the rest. The primary's 835 already landed that rest as patient responsibility, so this payer's rows would
    count it a second time; a `patient_responsibility` row of minus that rest restates it, and the claim's patient
    responsibility (the sum) is the last payer's (primary PR - prior share + secondary PR). Its payment and
    adjustments then come out of the patient's share, never out of the insurance balance the primary closed.
    The rest = CLP03 - the CARC 23 amounts - the charges (SVC02) of service lines without CARC 23 (lines the payer
    adjudicated as first payer, as in the 5010 guide's secondary example); with a claim-level CARC 23, the whole
    claim. A CLP that does not state the prior payer's impact is read as this payer's own adjudication. A reversal
    (CLP02 = 22) restates the share of the claim payment it reverses, negated: its CAS read as `sign` lands them,
    its billed charges (never negative in an original, and left positive by some payers) by their size."""
    if paid.status in (DENIED, PREDETERMINATION):
        return None
    prior = [adj for adj in paid.adjustments if adj[2] == PRIOR_PAYER]
    if not prior:
        return None
    if any(unit == 0 for *_, unit in prior):
        own_lines = []
    else:
        prior_lines = {unit for *_, unit in prior}
        own_lines = [charge for k, (charge, _) in enumerate(paid.services, start=1) if k not in prior_lines]
    charges = [amount(v) for v in (paid.billed, *(c or "0" for c in own_lines))]
    impacts = [amount(sign(adj[3] or "0")) for adj in prior]
    if None in charges or None in impacts:
        batch.notes.append(
            f"835 at segment {paid.seg.pos}: a later payer's claim (CARC 23) without a numeric billed amount "
            f"(CLP03), line charge or adjustment: the patient share it settles is not restated"
        )
        return None
    direction = -1 if paid.status == REVERSAL else 1  # the claim payment's amounts as in the original (+1)
    billed, *own = (abs(c) for c in charges)
    share = billed - sum((direction * i for i in impacts), Decimal(0)) - sum(own, Decimal(0))
    return direction * share
