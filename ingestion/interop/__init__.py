"""FHIR R4 and X12 readers: other ways to arrive at contract-shaped rows.

A reader turns one file into, per target source, a list of rows whose keys are that source's contract
columns (all text, empty = not carried by the source). The loader then stages those rows and runs the same
validation, quarantine, de-duplication, landing and audit as for a CSV file (one `raw._loads` row per
file x target source). Mapping tables: ingestion/interop/README.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.files import FileRefused, looks_like_x12
from ptpulse.core.contracts import Contract

FHIR_SUFFIXES = (".json", ".ndjson")

# Names shown in load messages come from these lists only: a resourceType or status is file content, and a
# hostile or broken file can put anything (a patient's name) there. Anything else is shown as "(other)".
FHIR_RESOURCE_TYPES = frozenset(
    """
Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic Binary
BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization MedicinalProductContraindication
MedicinalProductIndication MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect MessageDefinition
MessageHeader MolecularSequence NamingSystem NutritionOrder Observation ObservationDefinition OperationDefinition
OperationOutcome Organization OrganizationAffiliation Parameters Patient PaymentNotice PaymentReconciliation Person
PlanDefinition Practitioner PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition
StructureMap Subscription Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein
SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task
TerminologyCapabilities TestReport TestScript ValueSet VerificationResult VisionPrescription""".split()
)
FHIR_CODES = frozenset(
    """
draft active on-hold revoked completed entered-in-error unknown cancelled proposal plan directive order
original-order reflex-order filler-order instance-order option proposed pending booked arrived fulfilled noshow
checked-in waitlist claim preauthorization predetermination""".split()
)


def shown_type(value: object) -> str:
    """A FHIR resourceType as it may appear in a message (known R4 types only)."""
    return value if isinstance(value, str) and value in FHIR_RESOURCE_TYPES else "(other resource type)"


def shown_code(value: object) -> str:
    """A FHIR status / intent / use code as it may appear in a message (known codes only)."""
    if value is None:
        return "none"
    return value if isinstance(value, str) and value in FHIR_CODES else "(other)"


X12_SUFFIXES = (".835", ".837", ".x12", ".edi")
SUFFIXES = FHIR_SUFFIXES + X12_SUFFIXES


def is_interop(path: Path) -> bool:
    """True for the file types read by the FHIR and X12 readers: by suffix (case-insensitive), or, whatever
    the name (`.txt`, `.dat`, none), an X12 interchange found by its ISA header."""
    return Path(path).suffix.lower() in SUFFIXES or looks_like_x12(Path(path))


class FrameRows:
    """Rows mapped in SQL, kept as one polars frame; iterates as (line, {column: text}) like a reader's list."""

    def __init__(self, frame) -> None:
        self.frame = frame

    def __len__(self) -> int:
        return self.frame.height

    def __iter__(self):
        for row in self.frame.iter_rows(named=True):
            line = row.pop("_src_line")
            yield line, row


class TableRows:
    """Rows mapped in SQL, kept in a DuckDB temp table (contract columns as text, `_src_line`, `_ord`) of the
    connection that will stage them (the loader's raw.duckdb): they never leave DuckDB. Iterates as
    (line, {column: text}) in file order, like a reader's list, for callers other than the loader."""

    def __init__(
        self, con, table: str, count: int, nul_free: bool = False, cleaned: Mapping[str, str] | None = None
    ) -> None:
        self.con, self.table, self.count = con, table, count
        self.nul_free = nul_free  # the file holds no NUL byte nor `\u0000` escape: no value can hold one
        # column -> SQL that left each value trimmed as the loader's staging would (fhir_fast._clean): the loader
        # skips its own trim for these rows, and rows appended later get the same expressions
        self.cleaned = dict(cleaned) if cleaned is not None else None

    def __len__(self) -> int:
        return self.count

    def rows_sql(self, columns) -> str:
        """The rows in file order (line, then the order the mapping emitted them)."""
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        return f"SELECT {names}, _src_line FROM temp.{self.table} ORDER BY _src_line, _ord"

    def frame(self, columns):
        """The rows as a polars frame of `columns` as text plus `_src_line` (Batch.add_frame's shape)."""
        import polars as pl

        return pl.from_arrow(self.con.sql(self.rows_sql(columns)).to_arrow_table())

    def __iter__(self):
        names = [d[0] for d in self.con.execute(f"SELECT * FROM temp.{self.table} LIMIT 0").description]
        columns = [c for c in names if c not in ("_src_line", "_ord")]
        yield from FrameRows(self.frame(columns))

    def append(self, frame) -> None:
        """Add rows (a polars frame of the table's text columns and `_src_line`): fhir.py's rows for the lines the
        SQL left; each keeps its order within its line."""
        import polars as pl

        extra = frame.with_columns(pl.int_range(pl.len()).over("_src_line").alias("_ord"))
        select = "*"
        if self.cleaned is not None:
            select = ", ".join(f'{sql} AS "{name}"' for name, sql in self.cleaned.items()) + ", _src_line, _ord"
        self.con.register("_fhir_extra", extra.to_arrow())
        try:
            self.count += self.con.execute(
                f"INSERT INTO temp.{self.table} BY NAME SELECT {select} FROM _fhir_extra"
            ).fetchone()[0]
        finally:
            self.con.unregister("_fhir_extra")

    def drop(self) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS temp.{self.table}")


@dataclass
class Batch:
    """Everything one file yields: rows per target source (with the position each came from) and notes.

    `line` of a row is where it came from in the file: the NDJSON line, the resource's number in a JSON
    file (1 = the file's resource, or the first resource found in a Bundle), or the X12 segment number
    (ISA = 1) of the CLM / SV1 / CLP / CAS segment it was read from.
    """

    contracts: Mapping[str, Contract]
    rows: dict[str, list[tuple[int, dict[str, str | None]]]] = field(default_factory=dict)
    ignored: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)  # values a documented rule changed (counts, never values)
    notes: list[str] = field(default_factory=list)

    def add(self, source: str, line: int, **values: str | None) -> None:
        """One row of `source`; keys must be contract columns (a typo is a bug, so it raises)."""
        contract = self.contracts[source]
        unknown = set(values) - set(contract.column_names)
        if unknown:
            raise KeyError(f"{source} has no column(s) {sorted(unknown)}")
        row = {c: _text(values.get(c)) for c in contract.column_names}
        self.rows.setdefault(source, []).append((line, row))

    def add_frame(self, source: str, frame) -> None:
        """All rows of `source` mapped in SQL (fhir_fast): a polars frame of the contract's columns as text
        (empty = null, as `add` makes them) plus `_src_line`; the loader stages the frame as it is."""
        if set(frame.columns) != set(self.contracts[source].column_names) | {"_src_line"}:
            raise KeyError(f"{source}: a mapped frame must hold exactly the contract's columns and _src_line")
        self.rows[source] = FrameRows(frame)  # type: ignore[assignment]

    def add_table(self, source: str, rows: TableRows) -> None:
        """All rows of `source` mapped in SQL into a temp table of the loader's connection (fhir_fast with it)."""
        self.rows[source] = rows  # type: ignore[assignment]

    def tables(self) -> list[TableRows]:
        """The temp tables holding this batch's rows (the loader drops them when the file is done)."""
        return [rows for rows in self.rows.values() if isinstance(rows, TableRows)]

    def ignore(self, what: str) -> None:
        self.ignored[what] += 1

    def summary(self) -> list[str]:
        """Notes for the load messages: what was not mapped (types and counts only, never values)."""
        notes = list(self.notes)
        if self.adjusted:
            parts = ", ".join(f"{name} x{n}" for name, n in sorted(self.adjusted.items()))
            notes.append(f"adjusted by a rule of ingestion/interop/README.md: {parts}"[:600])
        if self.ignored:
            parts = ", ".join(f"{name} x{n}" for name, n in sorted(self.ignored.items()))
            notes.append(f"not mapped to any source (see ingestion/interop/README.md): {parts}"[:600])
        return notes


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def file_digest(path: Path) -> str:
    """The sha256 of an interop file (the loader's fingerprint). A FHIR Bulk NDJSON file's comes from the same pass
    over its bytes as fhir_fast's plain-file scan, so a file of GBs is read once for both."""
    if Path(path).suffix.lower() == ".ndjson":
        from ingestion.interop import fhir_fast

        return fhir_fast.digest(Path(path))
    import hashlib

    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_interop(path: Path, contracts: Mapping[str, Contract], con=None) -> Batch:
    """Read a FHIR (.json/.ndjson) or X12 file (.835/.837/.x12/.edi, or any name starting with an ISA header);
    FileRefused when it cannot be read. `con`: the loader's raw.duckdb connection, where a FHIR Bulk file's rows
    mapped in SQL are left as temp tables (TableRows) instead of coming back to Python."""
    batch = Batch(contracts)
    try:
        return _read(path, batch, Path(path).suffix.lower() in X12_SUFFIXES or looks_like_x12(Path(path)), con)
    except BaseException:
        for rows in batch.tables():  # nothing of a refused file stays in the loader's connection
            rows.drop()
        raise


def _read(path: Path, batch: Batch, is_x12: bool, con=None) -> Batch:
    from ingestion.files import display_name
    from ingestion.interop import fhir, fhir_fast, x12

    suffix = Path(path).suffix.lower()
    try:
        if suffix in FHIR_SUFFIXES and not is_x12:
            fhir.read(Path(path), batch, fast=lambda p, b: fhir_fast.read_bulk(p, b, con), con=con)
        elif is_x12:
            x12.read(Path(path), batch)
        else:  # pragma: no cover - the loader only dispatches known suffixes
            raise FileRefused(f"{display_name(path)}: not a FHIR or X12 file")
    except RecursionError:
        raise FileRefused(
            f"{display_name(path)} is nested too deeply to be read (thousands of levels of JSON "
            f"objects or lists). Export it again as a plain FHIR R4 / X12 file."
        ) from None
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, ArithmeticError) as exc:
        # Wrong value types (a string where FHIR has an object or a list, a number that is not one) found
        # by the mapping code; readers add the position where they know it (FileRefused above).
        raise FileRefused(
            f"{display_name(path)}: a value has the wrong type or form for its field "
            f"({type(exc).__name__}), so the file cannot be mapped. Check that it is a valid "
            f"{'X12 005010' if is_x12 else 'FHIR R4'} export and ingest it "
            f"again."
        ) from None
    return batch


def read_text(path: Path, kind: str, fix: str) -> str:
    """The file as text, refusing empty, binary, UTF-16/32 and non-UTF-8 files (messages quote no data)."""
    import codecs

    from ingestion.files import display_name

    data = path.read_bytes()
    if not data.strip():
        raise FileRefused(f"{display_name(path)} is empty. {fix}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        raise FileRefused(
            f"{display_name(path)} contains NUL bytes: it is binary or UTF-16/UTF-32, not a {kind} text file. {fix}"
        )
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileRefused(
            f"{display_name(path)}: line {line} is not valid UTF-8, so it is not a readable {kind} file. "
            f"Convert it to UTF-8 (e.g. `iconv -f WINDOWS-1252 -t UTF-8`) and ingest it again."
        ) from None
