"""FHIR R4 JSON reader: a resource, a Bundle (nested Bundles too) or an NDJSON bulk export -> contract rows.

Mapped: Patient -> patients; ServiceRequest -> intake_events (`received`); Appointment -> scheduling_events;
Claim -> claims + charges; ClaimResponse, ExplanationOfBenefit -> remittances. Every other resource type
is counted in the load message as not mapped. Mapping tables: ingestion/interop/README.md.

Ids are namespaced by origin: a reference `Patient/example` (relative, absolute, or a Bundle `urn:uuid:`
resolved to its resource) becomes `fhir:Patient/example`; an identifier-only reference becomes
`fhir:<system>|<value>`; a Practitioner or Organization that carries a US NPI (found in the same file)
becomes `npi:<NPI>`, the same id an X12 file gives it. A reference with only a display text carries no id.

Times: FHIR instants carry a zone offset, PT Pulse timestamps are local clinic time without one. The
wall-clock time is kept as written and the offset dropped (sources write local time with the local
offset); a date without a time becomes midnight; partial dates (`2013`, `2013-05`) are passed through and
quarantined as invalid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingestion.files import FileRefused, display_name
from ingestion.interop import Batch, read_text, shown_code, shown_type

FIX = "Export it again as FHIR R4 JSON (one resource or Bundle per .json file, one resource per line in .ndjson)."
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
CPT_SYSTEMS = {
    "http://www.ama-assn.org/go/cpt",
    "urn:oid:2.16.840.1.113883.6.12",
    "https://bluebutton.cms.gov/resources/codesystem/hcpcs",
    "urn:oid:2.16.840.1.113883.6.285",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}
ICD10_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"}
REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
INSTANT = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2})(:\d{2})?(?:\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$")

GENDER = {"male": "M", "female": "F", "other": "X", "unknown": "U"}
APPOINTMENT_EVENT = {
    "booked": "booked",
    "arrived": "arrived",
    "checked-in": "arrived",
    "fulfilled": "completed",
    "cancelled": "cancelled",
    "noshow": "no_show",
}
VISIT_TYPE = {"FOLLOWUP": "follow_up"}  # v2-0276; the other codes (ROUTINE, WALKIN, ...) name no PT visit type
CANCEL_REASON = {
    "pat-fb": "feeling_better",
    "pat-lt": "transportation",
    "oth-weath": "weather",
    "oth-fin": "financial",
    "maint": "clinic_cancelled",
    "oth-room": "clinic_cancelled",
}
SR_SKIPPED_STATUS = {"draft", "entered-in-error"}
SR_SKIPPED_INTENT = {"proposal", "plan", "option"}
PATIENT_RESPONSIBILITY = {"copay", "deductible"}


def read(path: Path, batch: Batch) -> None:
    text = read_text(path, "FHIR JSON", FIX)
    if path.suffix.lower() == ".ndjson":
        # split on \n only: str.splitlines() also splits on characters JSON allows inside strings (U+2028...)
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                _mapped(
                    path, f"line {number}", _read_resource, _parse(path, line, f"line {number}"), number, batch, path
                )
    else:
        _mapped(path, "the resource", _read_resource, _parse(path, text, None), 1, batch, path)


def _mapped(path: Path, where: str, fn: Any, *args: Any) -> None:
    """Run a mapper; a value of the wrong JSON type (`"name": "Alice"` where FHIR has a list, a Bundle entry
    that is a string...) refuses the file with its position, naming no value."""
    try:
        fn(*args)
    except RecursionError:
        raise FileRefused(f"{display_name(path)}: {where} is nested too deeply to be read. {FIX}") from None
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
        raise FileRefused(
            f"{display_name(path)}: {where} has a value of the wrong JSON type for FHIR R4 (e.g. a "
            f"text where an object or a list is expected; {type(exc).__name__}). Fix the export so it "
            f"validates against FHIR R4 and ingest it again."
        ) from None


def _parse(path: Path, text: str, where: str | None) -> dict:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        at = where or f"line {exc.lineno}, column {exc.colno}"
        raise FileRefused(
            f"{display_name(path)} is not valid JSON ({at}: {exc.msg}); it may be truncated or not a JSON export. {FIX}"
        ) from None
    except RecursionError:
        at = f" ({where})" if where else ""
        raise FileRefused(
            f"{display_name(path)}: the JSON{at} is nested too deeply to be read (thousands of levels). {FIX}"
        ) from None
    except ValueError:  # e.g. an integer with more digits than Python converts
        at = f" ({where})" if where else ""
        raise FileRefused(f"{display_name(path)}: the JSON{at} holds a number that cannot be read. {FIX}") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        at = f" ({where})" if where else ""
        raise FileRefused(f"{display_name(path)} is JSON but not a FHIR resource{at}: no resourceType. {FIX}")
    return data


class _Index:
    """Resources of one file (and their contained ones) by `Type/id` and by Bundle fullUrl, for references."""

    def __init__(self) -> None:
        self.by_key: dict[str, dict] = {}

    def add(self, resource: dict, full_url: str | None) -> None:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if rtype and rid:
            self.by_key.setdefault(f"{rtype}/{rid}", resource)
        if full_url:
            self.by_key.setdefault(full_url, resource)

    def resolve(self, ref: Any, owner: dict | None = None) -> dict | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        text = ref["reference"]
        if text.startswith("#") and owner is not None:
            return next((c for c in owner.get("contained", []) if c.get("id") == text[1:]), None)
        if text in self.by_key:
            return self.by_key[text]
        match = REFERENCE.search(text)
        return self.by_key.get(f"{match.group(1)}/{match.group(2)}") if match else None


def _read_resource(root: dict, line: int, batch: Batch, path: Path) -> None:
    found = list(_walk(root, None))
    if not found:
        batch.ignore(f"FHIR {shown_type(root.get('resourceType'))} without resources (e.g. a batch of requests only)")
    index = _Index()
    for resource, full_url in found:
        index.add(resource, full_url)
    single = len(found) == 1
    for position, (resource, _) in enumerate(found, start=1):
        mapper = MAPPERS.get(resource.get("resourceType"))
        if mapper is None:
            batch.ignore(f"FHIR {shown_type(resource.get('resourceType'))}")
            continue
        mapper(_Ctx(resource, index, batch, line if single or path.suffix.lower() == ".ndjson" else position))


def _walk(resource: dict, full_url: str | None) -> Iterator[tuple[dict, str | None]]:
    """The resource, or every resource of a Bundle in document order (nested Bundles opened)."""
    if resource.get("resourceType") != "Bundle":
        yield resource, full_url
        return
    for entry in resource.get("entry") or []:
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str):
            yield from _walk(inner, entry.get("fullUrl"))


class _Ctx:
    def __init__(self, resource: dict, index: _Index, batch: Batch, line: int) -> None:
        self.r, self.index, self.batch, self.line = resource, index, batch, line

    @property
    def key(self) -> str:
        return f"fhir:{self.r.get('resourceType')}/{self.r.get('id') or '(no id)'}"

    def ref_type(self, ref: Any) -> str | None:
        if not isinstance(ref, dict):
            return None
        target = self.index.resolve(ref, self.r)
        if target is not None:
            return target.get("resourceType")
        match = REFERENCE.search(ref.get("reference") or "")
        return match.group(1) if match else ref.get("type")

    def ref_id(self, ref: Any, prefer_npi: bool = False) -> str | None:
        """Namespaced id of a reference; `npi:<NPI>` when asked and the target carries one."""
        if not isinstance(ref, dict):
            return None
        target = self.index.resolve(ref, self.r)
        if prefer_npi:
            number = _npi(ref.get("identifier")) or (_npi_of(target) if target else None)
            if number:
                return f"npi:{number}"
        text = ref.get("reference")
        if isinstance(text, str) and text:
            if text.startswith("#"):
                return f"{self.key}{text}"
            match = REFERENCE.search(text)
            if match:
                return f"fhir:{match.group(1)}/{match.group(2)}"
            if target is not None and target.get("id"):  # urn:uuid: resolved through the Bundle
                return f"fhir:{target['resourceType']}/{target['id']}"
            return f"fhir:{text}"
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ident.get("value"):
            return f"fhir:{ident.get('system', '')}|{ident['value']}"
        return None


def _npi(identifier: Any) -> str | None:
    items = identifier if isinstance(identifier, list) else [identifier]
    for ident in items:
        if isinstance(ident, dict) and ident.get("system") == NPI_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _npi_of(resource: dict) -> str | None:
    return _npi(resource.get("identifier"))


# --- values -----------------------------------------------------------------------------------------------


def timestamp(value: Any) -> str | None:
    """FHIR date/dateTime/instant -> `YYYY-MM-DD HH:MM:SS` (wall clock as written, offset dropped)."""
    if not isinstance(value, str) or not value:
        return None
    match = INSTANT.match(value)
    if not match:
        return value  # partial date or garbage: passed through, quarantined as invalid_timestamp
    day, hm, sec = match.group(1), match.group(2), match.group(3)
    return f"{day} {hm}{sec or ':00'}" if hm else f"{day} 00:00:00"


def date(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    match = INSTANT.match(value)
    return match.group(1) if match else value


def money(value: Any) -> str | None:
    if isinstance(value, dict) and value.get("value") is not None:
        return str(value["value"])
    return None


def codes(concept: Any) -> list[tuple[str | None, str]]:
    if not isinstance(concept, dict):
        return []
    return [(c.get("system"), str(c["code"])) for c in concept.get("coding") or [] if c.get("code")]


def first_code(concept: Any, systems: set | None = None) -> str | None:
    return next((code for system, code in codes(concept) if systems is None or system in systems), None)


def whole(value: Any) -> str | None:
    if value is None:
        return None
    number = Decimal(str(value))
    return str(int(number)) if number == number.to_integral_value() else str(value)


def _period_start(item: dict) -> str | None:
    return date(item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start"))


# --- mappers ----------------------------------------------------------------------------------------------


def _patient(c: _Ctx) -> None:
    r = c.r
    names = r.get("name") or []
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    telecom = r.get("telecom") or []
    phone = next((t.get("value") for t in telecom if t.get("system") == "phone"), None)
    email = next((t.get("value") for t in telecom if t.get("system") == "email"), None)
    addresses = r.get("address") or []
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    zip_code = address.get("postalCode")
    if isinstance(zip_code, str) and re.fullmatch(r"\d{5}(-?\d{4})?", zip_code):
        zip_code = zip_code[:5]  # ZIP+4 -> ZIP
    updated = timestamp((r.get("meta") or {}).get("lastUpdated"))
    c.batch.add(
        "patients",
        c.line,
        patient_id=c.key,
        first_name=(name.get("given") or [None])[0],
        last_name=name.get("family"),
        birth_date=date(r.get("birthDate")),
        sex=GENDER.get(r.get("gender"), r.get("gender")),
        phone=phone,
        email=email,
        address_line=", ".join(address.get("line") or []) or None,
        city=address.get("city"),
        state=address.get("state"),
        zip=zip_code,
        primary_payer_id=None,
        member_id=None,
        created_at=None,
        updated_at=updated,
    )


def _service_request(c: _Ctx) -> None:
    r = c.r
    if r.get("status") in SR_SKIPPED_STATUS or r.get("intent") in SR_SKIPPED_INTENT:
        c.batch.ignore(
            f"FHIR ServiceRequest (status {shown_code(r.get('status'))}, intent {shown_code(r.get('intent'))})"
        )
        return
    requester = r.get("requester")
    requester_type = c.ref_type(requester)
    source_type = {
        "Practitioner": "physician",
        "PractitionerRole": "physician",
        "Patient": "direct_access",
        "RelatedPerson": "direct_access",
    }.get(requester_type or "")
    physician = None
    if requester_type in ("Practitioner", "PractitionerRole"):
        target = c.index.resolve(requester, r)
        physician = _npi((requester or {}).get("identifier")) or (_npi_of(target) if target else None)
    clinic = next((c.ref_id(x) for x in r.get("locationReference") or []), None)
    if clinic is None:
        clinic = next(
            (
                c.ref_id(p, prefer_npi=True)
                for p in r.get("performer") or []
                if c.ref_type(p) in ("Organization", "Location", "HealthcareService")
            ),
            None,
        )
    subject = r.get("subject")
    payer = None
    for coverage_ref in r.get("insurance") or []:
        coverage = c.index.resolve(coverage_ref, r)
        if coverage and (coverage.get("payor") or []):
            payer = c.ref_id(coverage["payor"][0])
            break
    c.batch.add(
        "intake_events",
        c.line,
        event_id=f"{c.key}#received",
        referral_id=c.key,
        patient_id=c.ref_id(subject) if c.ref_type(subject) == "Patient" else None,
        clinic_id=clinic,
        event_type="received",
        event_at=timestamp(r.get("authoredOn")),
        intake_kind="referral",
        source_type=source_type,
        referring_physician_id=physician,
        channel=None,
        payer_id=payer,
        icd10_code=_icd10(c),
        outreach_method=None,
        outreach_outcome=None,
        reason=None,
        recorded_by=None,
    )


def _icd10(c: _Ctx) -> str | None:
    for concept in c.r.get("reasonCode") or []:
        code = first_code(concept, ICD10_SYSTEMS)
        if code:
            return code
    for ref in c.r.get("reasonReference") or []:
        target = c.index.resolve(ref, c.r)
        code = first_code((target or {}).get("code"), ICD10_SYSTEMS)
        if code:
            return code
    return None


def _appointment(c: _Ctx) -> None:
    r = c.r
    event_type = APPOINTMENT_EVENT.get(r.get("status"))
    if event_type is None:
        c.batch.ignore(f"FHIR Appointment (status {shown_code(r.get('status'))})")
        return
    actors = [p.get("actor") for p in r.get("participant") or [] if isinstance(p.get("actor"), dict)]
    by_type: dict[str, list] = {}
    for actor in actors:
        by_type.setdefault(c.ref_type(actor) or "", []).append(actor)
    therapist = next(iter(by_type.get("Practitioner", []) + by_type.get("PractitionerRole", [])), None)
    episode = next(
        (c.ref_id(x) for x in r.get("supportingInformation") or [] if c.ref_type(x) == "EpisodeOfCare"), None
    )
    referral = next((c.ref_id(x) for x in r.get("basedOn") or [] if c.ref_type(x) == "ServiceRequest"), None)
    last_updated = timestamp((r.get("meta") or {}).get("lastUpdated"))
    event_at = (timestamp(r.get("created")) or last_updated) if event_type == "booked" else last_updated
    c.batch.add(
        "scheduling_events",
        c.line,
        event_id=f"{c.key}#{event_type}",
        appointment_id=c.key,
        episode_id=episode,
        referral_id=referral,
        patient_id=next((c.ref_id(a) for a in by_type.get("Patient", [])), None),
        clinic_id=next((c.ref_id(a) for a in by_type.get("Location", [])), None),
        therapist_id=c.ref_id(therapist, prefer_npi=True) if therapist else None,
        event_type=event_type,
        event_at=event_at,
        scheduled_start=timestamp(r.get("start")),
        duration_min=_minutes(r),
        visit_type=VISIT_TYPE.get(first_code(r.get("appointmentType")) or ""),
        cancel_reason=_cancel_reason(r) if event_type == "cancelled" else None,
        notice_hours=None,
        recorded_by=None,
    )


def _minutes(r: dict) -> str | None:
    if r.get("minutesDuration") is not None:
        return str(r["minutesDuration"])
    try:
        start = datetime.fromisoformat(r["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(r["end"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError, TypeError):
        return None
    return str(int((end - start).total_seconds() // 60))


def _cancel_reason(r: dict) -> str | None:
    code = first_code(r.get("cancelationReason"))
    if code is None:
        return None
    return CANCEL_REASON.get(code) or ("clinic_cancelled" if code.startswith("prov") else "other")


def _claim(c: _Ctx) -> None:
    r = c.r
    if r.get("status") == "entered-in-error" or r.get("use", "claim") != "claim":
        c.batch.ignore(f"FHIR Claim (use {shown_code(r.get('use'))}, status {shown_code(r.get('status'))})")
        return
    items = r.get("item") or []
    patient = c.ref_id(r.get("patient"))
    clinic = c.ref_id(r.get("facility"), prefer_npi=True)
    if clinic is None and c.ref_type(r.get("provider")) == "Organization":
        clinic = c.ref_id(r.get("provider"), prefer_npi=True)
    period = (r.get("billablePeriod") or {}).get("start")
    item_dates = sorted(d for d in (_period_start(i) for i in items) if d)
    service_date = date(period) or (item_dates[0] if item_dates else None)
    billed = money(r.get("total"))
    if billed is None and items and all(money(i.get("net")) for i in items):
        billed = str(sum(Decimal(money(i["net"])) for i in items))
    c.batch.add(
        "claims",
        c.line,
        claim_id=c.key,
        episode_id=None,
        patient_id=patient,
        clinic_id=clinic,
        payer_id=c.ref_id(r.get("insurer")),
        service_date=service_date,
        submitted_at=timestamp(r.get("created")),
        billed_usd=billed,
    )
    care_team = {t.get("sequence"): t.get("provider") for t in r.get("careTeam") or []}
    default_provider = (
        r.get("provider")
        if c.ref_type(r.get("provider")) in ("Practitioner", "PractitionerRole")
        else next(iter(care_team.values()), None)
    )
    for item in items:
        team = [care_team.get(s) for s in item.get("careTeamSequence") or [] if care_team.get(s)]
        provider = team[0] if team else default_provider
        quantity = (item.get("quantity") or {}).get("value")
        charge = money(item.get("net"))
        if charge is None and money(item.get("unitPrice")) and quantity is not None:
            charge = str(Decimal(money(item["unitPrice"])) * Decimal(str(quantity)))
        modifiers = "|".join(code for m in item.get("modifier") or [] for _, code in codes(m)[:1])
        c.batch.add(
            "charges",
            c.line,
            charge_id=f"{c.key}#item{item.get('sequence')}",
            claim_id=c.key,
            appointment_id=None,
            episode_id=None,
            patient_id=patient,
            clinic_id=clinic,
            therapist_id=c.ref_id(provider, prefer_npi=True) if provider else None,
            service_date=_period_start(item) or service_date,
            cpt_code=first_code(item.get("productOrService"), CPT_SYSTEMS),
            modifiers=modifiers or None,
            units=whole(quantity),
            minutes=None,
            charge_usd=charge,
            posted_at=None,
        )


def _remittance(c: _Ctx) -> None:
    r = c.r
    if r.get("status") == "entered-in-error" or r.get("use", "claim") != "claim":
        c.batch.ignore(
            f"FHIR {shown_type(r.get('resourceType'))} (use {shown_code(r.get('use'))}, "
            f"status {shown_code(r.get('status'))})"
        )
        return
    claim_ref = r.get("request") if r.get("resourceType") == "ClaimResponse" else r.get("claim")
    payment = r.get("payment") or {}
    common = dict(claim_id=c.ref_id(claim_ref), payer_id=c.ref_id(r.get("insurer")))
    created = timestamp(r.get("created"))
    totals = {first_code(t.get("category")): money(t.get("amount")) for t in r.get("total") or []}
    if r.get("outcome") == "error":
        c.batch.add(
            "remittances",
            c.line,
            remit_id=f"{c.key}#denial",
            event_type="denial",
            event_at=created,
            amount_usd=totals.get("submitted"),
            **common,
        )
    paid = money(payment.get("amount")) or totals.get("benefit")  # payment made, else the benefit payable
    if paid is not None and Decimal(paid) != 0:
        c.batch.add(
            "remittances",
            c.line,
            remit_id=f"{c.key}#payer_payment",
            event_type="payer_payment",
            event_at=timestamp(payment.get("date")) or created,
            amount_usd=paid,
            check_number=(payment.get("identifier") or {}).get("value"),
            **common,
        )
    patient_share = [
        Decimal(money(a.get("amount")))
        for item in r.get("item") or []
        for a in item.get("adjudication") or []
        if first_code(a.get("category")) in PATIENT_RESPONSIBILITY and money(a.get("amount"))
    ]
    if not patient_share:
        patient_share = [Decimal(v) for k, v in totals.items() if k in PATIENT_RESPONSIBILITY and v]
    if patient_share and sum(patient_share) != 0:
        c.batch.add(
            "remittances",
            c.line,
            remit_id=f"{c.key}#patient_responsibility",
            event_type="patient_responsibility",
            event_at=created,
            amount_usd=str(sum(patient_share)),
            group_code="PR",
            **common,
        )


MAPPERS = {
    "Patient": _patient,
    "ServiceRequest": _service_request,
    "Appointment": _appointment,
    "Claim": _claim,
    "ClaimResponse": _remittance,
    "ExplanationOfBenefit": _remittance,
}
