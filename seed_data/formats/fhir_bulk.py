"""The generated practice as a FHIR R4 Bulk Data `$export` folder (issue 8 round trip).

Reads the native CSVs `seed_data.generator.generate` wrote and writes one NDJSON file per resource type plus
the export manifest (`manifest.json`, with `transactionTime`) and its log (`log.ndjson`), as a Bulk Data
server would. Every resource id is the practice's own id (Patient/PT001000001, Claim/CM0010000001...), so the
references between resources carry the links exactly as `ingestion/interop/fhir.py` maps them back.

Vectorised: one DuckDB `COPY (SELECT json ...)` per resource type (no per-row Python). JSON objects are
built with `json_object` and passed through `json_merge_patch('{}', ...)`, which drops null members (RFC 7396),
so an absent value is an absent element, never `null` (FHIR forbids nulls). Instants are written in UTC
(`...Z`) from the clinic's local time; dates stay dates. What FHIR cannot carry is listed in
seed_data/README.md (round trip section).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

PTPULSE_VISIT_TYPE = "https://ptpulse.example.org/fhir/CodeSystem/visit-type"
PTPULSE_CANCEL_REASON = "https://ptpulse.example.org/fhir/CodeSystem/cancel-reason"
CPT = "http://www.ama-assn.org/go/cpt"
NPI = "http://hl7.org/fhir/sid/us-npi"
NUCC = "http://nucc.org/provider-taxonomy"
V2_0360 = "http://terminology.hl7.org/CodeSystem/v2-0360"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
CANCEL_SYSTEM = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
TZ_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
# NUCC taxonomy per referring-physician specialty (the reverse of ingestion/interop/fhir.py NUCC_SPECIALTY)
SPECIALTY_NUCC = {
    "orthopedic_surgery": "207X00000X",
    "sports_medicine": "207QS0010X",
    "primary_care": "208D00000X",
    "neurology": "2084N0400X",
    "pain_management": "2084P0800X",
    "physiatry": "208100000X",
    "chiropractic": "111N00000X",
    "podiatry": "213E00000X",
    "obstetrics_gynecology": "207V00000X",
    "neurosurgery": "207T00000X",
    "rheumatology": "207RR0500X",
}
# HL7 appointment-cancellation-reason codes per PT Pulse cancel_reason (ingestion maps them back)
CANCEL_CODE = {
    "feeling_better": "pat-fb",
    "transportation": "pat-lt",
    "weather": "oth-weath",
    "financial": "oth-fin",
    "clinic_cancelled": "prov",
    "illness": "pat",
    "schedule_conflict": "pat",
    "other": "other",
}
APPOINTMENT_STATUS = {
    "booked": "booked",
    "rescheduled": "booked",
    "arrived": "arrived",
    "completed": "fulfilled",
    "cancelled": "cancelled",
    "late_cancelled": "cancelled",
    "no_show": "noshow",
}
SOURCES = (
    "clinics payers therapists referring_physicians patients intake_events scheduling_events claims charges remittances"
).split()


def lit(value: str) -> str:
    """A SQL string literal (constants of this module only, never data)."""
    return "'" + value.replace("'", "''") + "'"


def obj(*pairs: tuple[str, str]) -> str:
    """A JSON object expression; null members are dropped by `clean`."""
    return "json_object(" + ", ".join(f"{lit(k)}, {v}" for k, v in pairs) + ")"


def clean(expr: str) -> str:
    return f"json_merge_patch('{{}}', {expr})"


def arr(*elements: str) -> str:
    """A JSON array of the non-null elements, or NULL (dropped) when none."""
    items = f"list_filter([{', '.join(elements)}], lambda x: x IS NOT NULL)"
    return f"CASE WHEN len({items}) = 0 THEN NULL ELSE to_json({items}) END"


def present(column: str, expr: str) -> str:
    """`expr` when `column` has a value, else NULL (the element is left out)."""
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {expr} END"


def ref(rtype: str, column: str) -> str:
    target = lit(rtype + "/") + " || " + column
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {obj(('reference', target))} END"


def coding(system: str, code: str) -> str:
    inner = clean(obj(("system", lit(system)), ("code", code)))
    return f"CASE WHEN {code} IS NULL THEN NULL ELSE {obj(('coding', arr(inner)))} END"


def utc(column: str, zone: str = "tz") -> str:
    """A local clinic timestamp as a UTC FHIR instant (NULL when it is not a timestamp)."""
    return f"strftime(timezone('UTC', timezone({zone}, TRY_CAST({column} AS TIMESTAMP))), '%Y-%m-%dT%H:%M:%SZ')"


def money(column: str) -> str:
    amount = f"TRY_CAST({column} AS DECIMAL(14,2))"
    return f"CASE WHEN {amount} IS NULL THEN NULL ELSE {obj(('value', amount), ('currency', lit('USD')))} END"


def meta(column: str, zone: str = "tz") -> str:
    return obj(("lastUpdated", utc(column, zone)))


def write(native: Path, out: Path, transaction_time: str | None = None) -> dict[str, int]:
    """Write the practice in `native` (the generator's CSVs) as a Bulk `$export` folder in `out`.

    Returns rows per file written. Each source is read as the practice's system holds it: one current row
    per natural key (the latest event time), so resent / duplicated rows of a dirty practice are one resource.
    `transaction_time` (UTC instant) defaults to the last scheduling event's day, 23:59:59Z."""
    from ptpulse.core.contracts import load_contracts

    native, out = Path(native), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    contracts = load_contracts()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for source in SOURCES:
        path = native / f"{source}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path}: the practice has no {source}.csv; generate it first (ptpulse generate)")
        contract = contracts[source]
        keys = ", ".join(contract.natural_key)
        present = " AND ".join(f"{k} IS NOT NULL" for k in contract.natural_key)
        con.execute(
            f"CREATE TEMP TABLE {source} AS SELECT * FROM read_csv(?, all_varchar = true, header = true) "
            f"WHERE {present} QUALIFY row_number() OVER (PARTITION BY {keys} "
            f"ORDER BY TRY_CAST({contract.event_time} AS TIMESTAMP) DESC NULLS LAST) = 1",
            [str(path)],
        )
    con.execute("CREATE TEMP TABLE zones AS SELECT clinic_id, timezone AS tz FROM clinics")
    counts: dict[str, int] = {}
    for rtype, sql in _resources().items():
        target = out / f"{rtype}.000.ndjson"
        # one JSON text per line: CSV output of a single column, without quoting (JSON never holds \x01)
        written = con.execute(
            f"COPY (SELECT j FROM ({sql}) t(j) ORDER BY j) TO '{target}' (FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
        ).fetchone()
        counts[rtype] = int(written[0])
    if transaction_time is None:
        last = con.execute("SELECT max(TRY_CAST(event_at AS TIMESTAMP)) FROM scheduling_events").fetchone()[0]
        transaction_time = f"{(last.date()).isoformat()}T23:59:59Z"
    manifest = {
        "transactionTime": transaction_time,
        "request": "[base]/$export?_type=" + ",".join(counts),
        "requiresAccessToken": False,
        "output": [{"type": t, "url": f"{t}.000.ndjson", "count": n} for t, n in counts.items()],
        "error": [],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log = [
        {"exportId": "ptpulse-seed", "timestamp": transaction_time, "eventId": "kickoff", "eventDetail": {}},
        {
            "exportId": "ptpulse-seed",
            "timestamp": transaction_time,
            "eventId": "status_complete",
            "eventDetail": {"transactionTime": transaction_time},
        },
    ]
    (out / "log.ndjson").write_text("".join(json.dumps(line) + "\n" for line in log), encoding="utf-8")
    con.close()
    files = {f"{rtype}.000.ndjson": n for rtype, n in counts.items()}
    return files | {"manifest.json": 1, "log.ndjson": len(log)}


def _resources() -> dict[str, str]:
    """Per resource type the SELECT whose single column is one resource's JSON text."""
    zone_of = "LEFT JOIN zones z USING (clinic_id)"
    address = obj(
        ("use", "{use}"),
        ("line", arr("to_json(address_line)")),
        ("city", "city"),
        ("state", "state"),
        ("postalCode", "zip"),
    )
    location = clean(
        obj(
            ("resourceType", "'Location'"),
            ("id", "clinic_id"),
            ("meta", meta("updated_at", "timezone")),
            ("extension", arr(obj(("url", lit(TZ_EXTENSION)), ("valueCode", "timezone")))),
            ("status", "'active'"),
            ("name", "clinic_name"),
            ("address", address.replace("{use}", "'work'")),
        )
    )
    payer = clean(
        obj(
            ("resourceType", "'Organization'"),
            ("id", "payer_id"),
            ("meta", obj(("lastUpdated", utc("updated_at", "'UTC'")))),
            ("type", arr(coding(ORG_TYPE, "'pay'"))),
            ("name", "payer_name"),
        )
    )
    name = obj(("use", "'official'"), ("family", "last_name"), ("given", arr("to_json(first_name)")))
    therapist = clean(
        obj(
            ("resourceType", "'Practitioner'"),
            ("id", "therapist_id"),
            ("meta", meta("updated_at")),
            ("identifier", arr(obj(("system", lit(NPI)), ("value", "npi")))),
            ("name", arr(name)),
            ("qualification", arr(obj(("code", coding(V2_0360, "credential"))))),
        )
    )
    physician = clean(
        obj(
            ("resourceType", "'Practitioner'"),
            ("id", "physician_id"),
            ("meta", obj(("lastUpdated", utc("updated_at", "'UTC'")))),
            ("identifier", arr(obj(("system", lit(NPI)), ("value", "physician_id")))),
            ("name", arr(name)),
            (
                "qualification",
                arr(f"CASE WHEN credential IS NULL THEN NULL ELSE {obj(('code', coding(V2_0360, 'credential')))} END"),
            ),
            ("address", arr(clean(obj(("use", "'work'"), ("city", "city"), ("state", "state"))))),
        )
    )
    specialty = "CASE specialty " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in SPECIALTY_NUCC.items()) + " END"
    roles = f"""
        SELECT {
        clean(
            obj(
                ("resourceType", "'PractitionerRole'"),
                ("id", "'role-' || therapist_id"),
                ("practitioner", ref("Practitioner", "therapist_id")),
                ("location", arr(ref("Location", "clinic_id"))),
                ("code", arr(coding(NUCC, "CASE WHEN credential = 'PTA' THEN '225200000X' ELSE '225100000X' END"))),
            )
        )
    } FROM therapists
        UNION ALL
        SELECT {
        clean(
            obj(
                ("resourceType", "'PractitionerRole'"),
                ("id", "'role-' || physician_id"),
                ("practitioner", ref("Practitioner", "physician_id")),
                ("specialty", arr(coding(NUCC, specialty))),
            )
        )
    } FROM referring_physicians"""
    # a patient's clinic (for the zone of its lastUpdated): the clinic of its first intake event
    patient_clinic = """(SELECT patient_id, min(clinic_id) AS clinic_id FROM intake_events GROUP BY patient_id)"""
    patient = clean(
        obj(
            ("resourceType", "'Patient'"),
            ("id", "p.patient_id"),
            ("meta", meta("p.updated_at")),
            ("name", arr(name)),
            (
                "gender",
                "CASE sex WHEN 'M' THEN 'male' WHEN 'F' THEN 'female' WHEN 'X' THEN 'other' WHEN 'U' THEN 'unknown' END",
            ),
            ("birthDate", "birth_date"),
            (
                "telecom",
                arr(
                    present("phone", obj(("system", "'phone'"), ("value", "phone"))),
                    present("email", obj(("system", "'email'"), ("value", "email"))),
                ),
            ),
            ("address", arr(address.replace("{use}", "'home'"))),
        )
    )
    coverage = clean(
        obj(
            ("resourceType", "'Coverage'"),
            ("id", "'cov-' || patient_id"),
            ("status", "'active'"),
            ("subscriberId", "member_id"),
            ("beneficiary", ref("Patient", "patient_id")),
            ("payor", arr(ref("Organization", "primary_payer_id"))),
            ("order", "1"),
        )
    )
    # one ServiceRequest per received intake event (the referral or lead); later funnel steps are not FHIR
    service_request = clean(
        obj(
            ("resourceType", "'ServiceRequest'"),
            ("id", "referral_id"),
            ("status", "'active'"),
            ("intent", "'order'"),
            ("subject", ref("Patient", "patient_id")),
            ("authoredOn", utc("event_at")),
            (
                "requester",
                "CASE source_type WHEN 'physician' THEN "
                + ref("Practitioner", "referring_physician_id")
                + " WHEN 'direct_access' THEN "
                + ref("Patient", "patient_id")
                + " END",
            ),
            ("locationReference", arr(ref("Location", "clinic_id"))),
            (
                "insurance",
                arr(present("payer_id", ref("Coverage", "'cov-' || patient_id"))),
            ),
            ("reasonCode", arr(coding("http://hl7.org/fhir/sid/icd-10-cm", "icd10_code"))),
        )
    )
    episodes = """
        SELECT episode_id, any_value(referral_id) AS referral_id, any_value(patient_id) AS patient_id,
               any_value(clinic_id) AS clinic_id, min(scheduled_start) AS first_start, max(scheduled_start) AS last_start
        FROM scheduling_events WHERE episode_id IS NOT NULL GROUP BY episode_id"""
    episode = clean(
        obj(
            ("resourceType", "'EpisodeOfCare'"),
            ("id", "episode_id"),
            ("status", "'finished'"),
            ("patient", ref("Patient", "patient_id")),
            ("managingOrganization", ref("Location", "clinic_id")),
            ("referralRequest", arr(ref("ServiceRequest", "referral_id"))),
            ("period", obj(("start", "first_start[:10]"), ("end", "last_start[:10]"))),
        )
    )
    # an appointment's current state: its latest event; booked time from its first `booked`
    # an appointment's current state, as the practice's scheduler shows it (and dbt int_appointments_collapsed
    # folds it): its latest outcome (arrived < completed < cancel / no-show on ties) when one was recorded, else
    # its latest booking; `created` = its first booking
    appointments = """
        WITH ev AS (
            SELECT *, struct_pack(o := event_type NOT IN ('booked', 'rescheduled'), t := event_at,
                                  r := CASE event_type WHEN 'booked' THEN 1 WHEN 'rescheduled' THEN 2
                                       WHEN 'arrived' THEN 3 WHEN 'completed' THEN 4 ELSE 5 END,
                                  id := event_id) AS ord
            FROM scheduling_events)
        SELECT appointment_id, arg_max(event_type, ord) AS status,
               any_value(episode_id) AS episode_id, any_value(referral_id) AS referral_id,
               any_value(patient_id) AS patient_id, any_value(clinic_id) AS clinic_id,
               arg_max(therapist_id, ord) AS therapist_id,
               arg_max(scheduled_start, ord) AS scheduled_start,
               arg_max(duration_min, ord) AS duration_min,
               any_value(visit_type) AS visit_type,
               arg_max(cancel_reason, ord) AS cancel_reason,
               min(event_at) FILTER (WHERE event_type = 'booked') AS booked_at,
               arg_max(event_at, ord) AS last_at,
               min(event_at) FILTER (WHERE event_type = 'arrived') AS arrived_at,
               max(event_at) FILTER (WHERE event_type = 'completed') AS completed_at
        FROM ev GROUP BY appointment_id"""
    status = "CASE a.status " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in APPOINTMENT_STATUS.items()) + " END"
    cancel = "CASE cancel_reason " + " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in CANCEL_CODE.items()) + " END"
    end = "CAST(TRY_CAST(scheduled_start AS TIMESTAMP) + to_minutes(TRY_CAST(duration_min AS INTEGER)) AS VARCHAR)"
    appointment = clean(
        obj(
            ("resourceType", "'Appointment'"),
            ("id", "appointment_id"),
            ("meta", meta("last_at")),
            ("status", status),
            (
                "cancelationReason",
                "CASE WHEN a.status IN ('cancelled', 'late_cancelled') AND cancel_reason IS NOT NULL THEN "
                + obj(
                    (
                        "coding",
                        arr(
                            obj(("system", lit(CANCEL_SYSTEM)), ("code", cancel)),
                            obj(("system", lit(PTPULSE_CANCEL_REASON)), ("code", "cancel_reason")),
                        ),
                    )
                )
                + " END",
            ),
            ("appointmentType", coding(PTPULSE_VISIT_TYPE, "visit_type")),
            ("supportingInformation", arr(ref("EpisodeOfCare", "episode_id"))),
            ("start", utc("scheduled_start")),
            ("end", utc(end)),
            ("minutesDuration", "TRY_CAST(duration_min AS INTEGER)"),
            ("created", utc("booked_at")),
            ("basedOn", arr(ref("ServiceRequest", "referral_id"))),
            (
                "participant",
                arr(
                    obj(("actor", ref("Patient", "patient_id")), ("status", "'accepted'")),
                    obj(("actor", ref("Practitioner", "therapist_id")), ("status", "'accepted'")),
                    obj(("actor", ref("Location", "clinic_id")), ("status", "'accepted'")),
                ),
            ),
        )
    )
    encounter = clean(
        obj(
            ("resourceType", "'Encounter'"),
            ("id", "appointment_id"),
            ("status", "'finished'"),
            ("class", obj(("system", lit("http://terminology.hl7.org/CodeSystem/v3-ActCode")), ("code", "'AMB'"))),
            ("subject", ref("Patient", "patient_id")),
            ("episodeOfCare", arr(ref("EpisodeOfCare", "episode_id"))),
            ("basedOn", arr(ref("ServiceRequest", "referral_id"))),
            (
                "participant",
                arr(
                    obj(
                        ("type", arr(coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "'PPRF'"))),
                        ("individual", ref("Practitioner", "therapist_id")),
                    )
                ),
            ),
            ("appointment", arr(ref("Appointment", "appointment_id"))),
            ("period", obj(("start", utc("arrived_at")), ("end", utc("completed_at")))),
            ("location", arr(obj(("location", ref("Location", "clinic_id"))))),
        )
    )
    item = clean(
        obj(
            # the element id carries the practice's charge id (an R4 Claim item has no identifier), so FHIR charge
            # lines merge with the same lines from its CSVs (ingestion/interop/fhir.py `_item_id`)
            ("id", "charge_id"),
            ("sequence", "seq"),
            ("careTeamSequence", "to_json([seq])"),
            ("productOrService", coding(CPT, "cpt_code")),
            (
                "modifier",
                "CASE WHEN modifiers IS NULL THEN NULL ELSE to_json(list_transform(string_split(modifiers, '|'), lambda m: "
                + obj(("coding", f"to_json([{obj(('system', lit(CPT)), ('code', 'm'))}])"))
                + ")) END",
            ),
            ("servicedDate", "service_date"),
            ("quantity", obj(("value", "TRY_CAST(units AS INTEGER)"))),
            ("net", money("charge_usd")),
            ("encounter", arr(ref("Encounter", "appointment_id"))),
        )
    )
    care = clean(obj(("sequence", "seq"), ("provider", ref("Practitioner", "therapist_id"))))
    claim = clean(
        obj(
            ("resourceType", "'Claim'"),
            ("id", "c.claim_id"),
            ("status", "'active'"),
            ("type", coding("http://terminology.hl7.org/CodeSystem/claim-type", "'professional'")),
            ("use", "'claim'"),
            ("patient", ref("Patient", "c.patient_id")),
            ("billablePeriod", obj(("start", "c.service_date"), ("end", "c.service_date"))),
            ("created", utc("submitted_at")),
            ("insurer", ref("Organization", "payer_id")),
            ("provider", ref("Location", "c.clinic_id")),
            ("facility", ref("Location", "c.clinic_id")),
            ("priority", coding("http://terminology.hl7.org/CodeSystem/processpriority", "'normal'")),
            ("careTeam", "items.care"),
            ("item", "items.item"),
            ("total", money("billed_usd")),
        )
    )
    claim_items = f"""
        SELECT claim_id, to_json(list({item} ORDER BY seq)) AS item, to_json(list({care} ORDER BY seq)) AS care
        FROM (SELECT *, row_number() OVER (PARTITION BY claim_id ORDER BY charge_id) AS seq FROM charges)
        GROUP BY claim_id"""
    # one EOB per payer adjudication: the payer's events of one claim at one time
    adjudications = """
        SELECT claim_id, event_at, any_value(payer_id) AS payer_id,
               sum(TRY_CAST(amount_usd AS DECIMAL(14,2))) FILTER (WHERE event_type = 'payer_payment') AS paid,
               sum(TRY_CAST(amount_usd AS DECIMAL(14,2))) FILTER (WHERE event_type = 'contractual_adjustment') AS contractual,
               sum(TRY_CAST(amount_usd AS DECIMAL(14,2))) FILTER (WHERE event_type = 'patient_responsibility' AND carc_code = '1') AS deductible,
               sum(TRY_CAST(amount_usd AS DECIMAL(14,2))) FILTER (WHERE event_type = 'patient_responsibility' AND carc_code = '3') AS copay,
               sum(TRY_CAST(amount_usd AS DECIMAL(14,2))) FILTER (WHERE event_type = 'patient_responsibility' AND coalesce(carc_code, '') NOT IN ('1', '3')) AS coinsurance,
               bool_or(event_type = 'denial') AS denied,
               any_value(carc_code) FILTER (WHERE event_type = 'denial') AS denial_carc,
               any_value(check_number) FILTER (WHERE event_type = 'payer_payment') AS check_number
        FROM remittances
        WHERE event_type IN ('payer_payment', 'contractual_adjustment', 'patient_responsibility', 'denial')
          AND TRY_CAST(event_at AS TIMESTAMP) IS NOT NULL
        GROUP BY claim_id, event_at"""
    total = lambda code, amount: (  # noqa: E731
        f"CASE WHEN {amount} IS NULL THEN NULL ELSE "
        + obj(("category", coding(ADJUDICATION, lit(code))), ("amount", money(amount)))
        + " END"
    )
    eob = clean(
        obj(
            ("resourceType", "'ExplanationOfBenefit'"),
            ("id", "a.claim_id || '-' || strftime(TRY_CAST(a.event_at AS TIMESTAMP), '%Y%m%d%H%M%S')"),
            ("status", "'active'"),
            ("type", coding("http://terminology.hl7.org/CodeSystem/claim-type", "'professional'")),
            ("use", "'claim'"),
            ("patient", ref("Patient", "c.patient_id")),
            ("created", utc("a.event_at")),
            ("insurer", ref("Organization", "coalesce(a.payer_id, c.payer_id)")),
            ("provider", ref("Location", "c.clinic_id")),
            ("facility", ref("Location", "c.clinic_id")),
            ("claim", ref("Claim", "a.claim_id")),
            ("outcome", "CASE WHEN denied THEN 'error' ELSE 'complete' END"),
            (
                "adjudication",
                f"CASE WHEN denied THEN {arr(obj(('category', coding(ADJUDICATION, lit('denialreason'))), ('reason', coding(CARC, 'denial_carc'))))} END",
            ),
            (
                "total",
                arr(
                    f"CASE WHEN denied OR contractual IS NOT NULL THEN {total('submitted', 'c.billed_usd')} END",
                    total(
                        "eligible",
                        "CASE WHEN contractual IS NOT NULL THEN TRY_CAST(c.billed_usd AS DECIMAL(14,2)) - contractual END",
                    ),
                    total("copay", "copay"),
                    total("deductible", "deductible"),
                    total("coinsurance", "coinsurance"),
                ),
            ),
            (
                "payment",
                "CASE WHEN paid IS NULL THEN NULL ELSE "
                + obj(
                    ("date", "strftime(TRY_CAST(a.event_at AS TIMESTAMP), '%Y-%m-%d')"),
                    ("amount", money("paid")),
                    (
                        "identifier",
                        f"CASE WHEN check_number IS NULL THEN NULL ELSE {obj(('value', 'check_number'))} END",
                    ),
                )
                + " END",
            ),
        )
    )
    return {
        "Organization": f"SELECT {payer} FROM payers",
        "Location": f"SELECT {location} FROM clinics",
        "Practitioner": f"SELECT {therapist} FROM therapists {zone_of} UNION ALL SELECT {physician} FROM referring_physicians",
        "PractitionerRole": roles,
        "Patient": f"SELECT {patient} FROM patients p LEFT JOIN {patient_clinic} pc USING (patient_id) LEFT JOIN zones z USING (clinic_id)",
        "Coverage": f"SELECT {coverage} FROM patients WHERE primary_payer_id IS NOT NULL",
        "ServiceRequest": f"SELECT {service_request} FROM intake_events {zone_of} WHERE event_type = 'received'",
        "EpisodeOfCare": f"SELECT {episode} FROM ({episodes})",
        "Appointment": f"SELECT {appointment} FROM ({appointments}) a {zone_of}",
        "Encounter": f"SELECT {encounter} FROM ({appointments}) a {zone_of} WHERE a.status = 'completed'",
        "Claim": f"SELECT {claim} FROM claims c LEFT JOIN ({claim_items}) items USING (claim_id) {zone_of}",
        "ExplanationOfBenefit": f"SELECT {eob} FROM ({adjudications}) a LEFT JOIN claims c USING (claim_id) LEFT JOIN zones z ON z.clinic_id = c.clinic_id",
    }
