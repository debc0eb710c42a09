"""Every outside + interop file ingested into one home, then a real dbt build over them alone (issue 8).

The outside corpus (../shared/interop/outside/) is other projects' exports: Synthea FHIR Bundles, a Bulk
$export folder, Blue Button EOBs, X12 837P test files (valid and broken), other X12 sets, WebPT column lists.
Each file is accepted or refused with file / problem / fix; what the files carry reaches the pages' marts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from ingest_helpers import query

from ptpulse.core.config import get_settings

CORPUS = Path("/work/shared/interop")
OUTSIDE = CORPUS / "outside"
# what each refused outside file is refused for (a fragment of its message: the problem, then the fix)
REFUSED = {
    "webpt_standard_extract.json": "no resourceType",  # column lists (documentation), not data
    "imsweb_x12_bad_segment_identifier.txt": "garbled",
    "imsweb_x12_no_isa_line.txt": "not a file PT Pulse reads",
    "imsweb_x12_277CA_accepted.txt": "277",
    "imsweb_x12_999_accepted.txt": "999",
    "imsweb_x223-test.txt": "005010X223",  # institutional 837, not 837P
}
FIX_WORDS = re.compile(r"\b(export|remove|convert|ingest it again|send)\b", re.IGNORECASE)


def _files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.fixture(scope="module")
def outside_build(tmp_path_factory):
    """All files ingested (folders as a practice would drop them) and built once, with the practice's zone set."""
    from ingestion.loader import ingest
    from ptpulse.build.orchestrate import build

    if not OUTSIDE.is_dir():
        pytest.skip(f"outside corpus not found at {OUTSIDE}")
    mp = pytest.MonkeyPatch()
    mp.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/Chicago")
    # files of many unrelated systems (every HL7 example is `id: example`, a Patient and a Practitioner alike): the
    # collision the id namespace exists for; a practice's own FHIR ids merge unprefixed with its CSVs
    mp.setenv("PTPULSE_FHIR_ID_NAMESPACE", "fhir")
    try:
        settings = get_settings(tmp_path_factory.mktemp("outside_home")).ensure()
        results = ingest([CORPUS / "fhir-r4-examples", CORPUS / "x12", OUTSIDE], settings)
        built = build(settings)
    finally:
        mp.undo()
    return settings, results, built


def _mart(settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.home / "analytics.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_file_is_accepted_or_refused_with_problem_and_fix(outside_build):
    _, results, _ = outside_build
    by_file = defaultdict(list)
    for r in results:
        by_file[Path(r.file).name].append(r)
        assert r.status != "failed", r.file
        assert r.rows_read == r.rows_landed + r.rows_quarantined + r.rows_duplicate, r.file
    assert {p.name for p in _files()} <= set(by_file)
    refused = {name: rs[0].message for name, rs in by_file.items() if any(r.status == "refused" for r in rs)}
    outside_refused = {n: m for n, m in refused.items() if n in {p.name for p in OUTSIDE.rglob("*")}}
    assert set(outside_refused) == set(REFUSED)
    for name, message in outside_refused.items():
        assert message.startswith(name) and REFUSED[name] in message, name
        assert FIX_WORDS.search(message), name  # says what to do


def test_no_value_in_any_message(outside_build):
    """Load and quarantine messages name files, columns and rules, never a value of the data."""
    settings, results, _ = outside_build
    names = {
        v
        for (v,) in query(
            settings,
            "SELECT DISTINCT json_extract_string(record, '$.last_name') FROM raw._quarantine "
            "UNION SELECT DISTINCT last_name FROM raw.patients UNION SELECT DISTINCT patient_id FROM raw.claims",
        )
        if v and len(v) > 3
    }
    details = [d for (d,) in query(settings, "SELECT DISTINCT detail FROM raw._quarantine")]
    messages = [m for (m,) in query(settings, "SELECT DISTINCT message FROM raw._loads") if m]
    assert names
    for text in details + messages:
        assert not [n for n in names if n in text], text[:80]


def test_outside_rows_land_rather_than_quarantine(outside_build):
    """The blockers of issue 8: SNOMED-coded charges, 1996 837P headers, pre-2000 history, claims without a
    payer, Patients without meta.lastUpdated, clinics without a zone; they land now (warnings, not quarantine)."""
    settings, results, _ = outside_build
    rules = dict(
        query(
            settings,
            "SELECT source || '.' || column_name || ':' || rule, count(*) FROM raw._quarantine "
            "WHERE file LIKE '%/outside/%' GROUP BY 1",
        )
    )
    landed = dict(query(settings, "SELECT source, sum(rows_landed) FROM raw._loads GROUP BY 1"))
    [(other_system,)] = query(  # Synthea items coded in SNOMED / CVX, not CPT/HCPCS (5 characters)
        settings, "SELECT count(*) FROM raw.charges WHERE NOT regexp_full_match(cpt_code, '[0-9A-Z][0-9]{3}[0-9A-Z]')"
    )
    early = query(
        settings,
        "SELECT count(*) FROM raw.charges WHERE posted_at < service_date "
        "UNION ALL SELECT count(*) FROM raw.claims WHERE submitted_at < service_date",
    )
    for blocker in (
        "charges.cpt_code:required",
        "charges.posted_at:below_min",
        "claims.submitted_at:below_min",
        "scheduling_events.event_at:below_min",
        "remittances.event_at:below_min",
        "claims.payer_id:required",
        "patients.created_at:required",
        "clinics.timezone:required",
    ):
        assert blocker not in rules, blocker
    assert other_system > 100  # non-CPT codes land; dbt flags them (data_quality_warnings)
    assert early == [(0,), (0,)]
    assert landed["patients"] >= 16 and landed["claims"] >= 180 and landed["remittances"] >= 170


def test_build_over_the_corpus_alone_fills_the_pages_marts(outside_build):
    settings, _, built = outside_build
    assert built.ok, built.message
    [(patients,)] = _mart(settings, "SELECT count(*) FROM marts.dim_patients")
    [(visits,)] = _mart(settings, "SELECT count(*) FROM marts.visits")
    [(claims, billed, paid)] = _mart(
        settings, "SELECT count(*), sum(billed_usd), sum(payer_paid_usd) FROM marts.claims"
    )
    [(lines,)] = _mart(settings, "SELECT count(*) FROM marts.charge_lines")
    [(collected,)] = _mart(settings, "SELECT sum(collected_usd) FROM marts.payer_mix")
    assert patients >= 16 and visits > 500 and claims > 150 and lines > 200
    assert billed > 0 and paid > 0 and collected > 0
    # SNOMED codes reach the warnings page, not the quarantine
    [(warned,)] = _mart(settings, "SELECT count(*) FROM marts.data_quality_warnings WHERE column_name = 'cpt_code'")
    assert warned > 0


def test_hl7_claim_responses_naming_their_claim_by_identifier_reach_the_claim(outside_build):
    """ClaimResponse-R3502 / R3503 name their Claim by identifier only (request.identifier happysight|6612346 and
    happyvalley|12346: the identifiers of Claim-660151 and Claim-100151, separate files): the payments reach those
    claims (before: both claims unpaid, the 207.47 under `claim_not_loaded`)."""
    settings, _, _ = outside_build
    paid = dict(
        _mart(
            settings,
            "SELECT claim_id, payer_paid_usd FROM marts.claims "
            "WHERE claim_id IN ('fhir:Claim/660151', 'fhir:Claim/100151')",
        )
    )
    assert {k: str(v) for k, v in paid.items()} == {"fhir:Claim/660151": "107.00", "fhir:Claim/100151": "100.47"}
