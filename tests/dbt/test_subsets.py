"""Any subset of sources builds (issue 8, item 6): a practice that sends only X12 remittances, only billing, or
only patients and scheduling gets a green build, every mart (empty where its inputs are missing), an as_of
taken from whatever it loaded, and marts.source_coverage saying which sources it holds.

Real loader, real dbt build, over subsets of the hand-built tiny practice (tests/dbt/tiny_practice/, worked
by hand in test_tiny_practice.py): a subset must give the same figures as the full build wherever its own
sources suffice.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings
from ptpulse.core.contracts import load_contracts

TINY = Path(__file__).parent / "tiny_practice"

SUBSETS = {
    "remittances_only": ("remittances",),
    "billing": ("claims", "charges", "remittances"),
    "patients_scheduling": ("patients", "scheduling_events"),
    "empty_file": ("remittances",),  # a header-only remittances file: the raw table exists and is empty
}


# The billing subset also carries codes newer than our lists: charge CH002 bills CPT 99999 and denial RM016
# gives CARC 999. They must land (a warning, not a quarantine) and be counted in marts.data_quality_warnings.
UNKNOWN_CODES = {
    "charges.csv": ("CH002,", ",97110,", ",99999,"),
    "remittances.csv": ("RM016,", ",CO,50,", ",CO,999,"),
}


def build_subset(
    sources: tuple[str, ...], home: Path, header_only: bool = False, unknown_codes: bool = False
) -> Settings:
    """Ingest copies of the tiny practice's files of `sources` (only their header line, or with UNKNOWN_CODES
    applied) into a fresh home and build it; the build must pass."""
    settings = get_settings(home / "home").ensure()
    (home / "files").mkdir()
    files = []
    for source in sources:
        lines = (TINY / f"{source}.csv").read_text(encoding="utf-8").splitlines()
        if header_only:
            lines = lines[:1]
        edit = UNKNOWN_CODES.get(f"{source}.csv") if unknown_codes else None
        if edit:
            lines = [x.replace(edit[1], edit[2]) if x.startswith(edit[0]) else x for x in lines]
        files.append(home / "files" / f"{source}.csv")
        files[-1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = ingest(files, settings)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [(r.file, r.status) for r in results]
    result = build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture(scope="module")
def subset_build(tmp_path_factory):
    """Builds each subset once per module, on first use: every test asks for the subset it is about, so no
    test runs (or skips) over subsets that are not its own."""
    built: dict[str, Settings] = {}

    def get(name: str) -> tuple[str, Settings]:
        if name not in built:
            home = tmp_path_factory.mktemp(name)
            built[name] = build_subset(
                SUBSETS[name], home, header_only=name == "empty_file", unknown_codes=name == "billing"
            )
        return name, built[name]

    return get


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select table_name from information_schema.tables where table_schema = 'marts'").fetchall()
    return {r[0] for r in rows}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from marts.{table}").fetchone()[0]


# as_of of each subset: the tier it falls to (int_clocks_resolved) and the latest event of that tier in the
# tiny practice's files (remittance RM-events end 03-28 12:00; claims are submitted up to 03-31 16:00; the
# latest scheduling event is A09 booked 03-31 17:00).
EXPECTED_AS_OF = {
    "remittances_only": (datetime(2025, 3, 28, 12, 0), "billing"),
    "billing": (datetime(2025, 3, 31, 16, 0), "billing"),
    "patients_scheduling": (datetime(2025, 3, 31, 17, 0), "data"),
}


@pytest.mark.parametrize("subset_name", sorted(SUBSETS))
def test_subset_builds_every_mart_with_as_of_from_what_it_loaded(subset_name, subset_build, tiny_home):
    name, settings = subset_build(subset_name)
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as full:
        all_marts = _tables(full)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        assert _tables(con) == all_marts, f"{name}: marts missing from the build"
        for table in all_marts:  # every mart is queryable, empty or not
            _count(con, table)
        as_of, as_of_source = con.execute("select as_of, as_of_source from marts.build_info").fetchone()
        coverage = dict(con.execute("select source, is_loaded from marts.source_coverage").fetchall())
    assert set(coverage) == set(load_contracts()), "source_coverage needs one row per ingestion contract"
    if name == "empty_file":  # loaded, but no row: the build's clock falls back to the load time
        assert not any(coverage.values())
        assert as_of_source == "load_time" and as_of is not None
    else:
        assert {s for s, loaded in coverage.items() if loaded} == set(SUBSETS[name])
        assert (as_of, as_of_source) == EXPECTED_AS_OF[name]


def test_remittances_alone_land_and_show_on_data_health(subset_build):
    _, settings = subset_build("remittances_only")
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        cov = con.execute(
            "select rows_in_build, files_loaded, rows_landed from marts.source_coverage where source = 'remittances'"
        ).fetchone()
        health = con.execute("select source, rows_landed from marts.data_quality").fetchall()
        assert _count(con, "claims") == 0 and _count(con, "referral_funnel") == 0
    lines = sum(1 for _ in (TINY / "remittances.csv").open(encoding="utf-8")) - 1
    assert cov == (lines, 1, lines)
    assert health == [("remittances", lines)]


def test_billing_subset_gives_the_full_builds_claim_figures(subset_build, tiny_home):
    """Claims, charge lines and their money do not need intake or scheduling: equal to the full build."""
    _, settings = subset_build("billing")
    sql = (
        "select count(*), sum(billed_usd), sum(payer_paid_usd), sum(contractual_adj_usd) from marts.claims "
        "union all select count(*), sum(charge_usd), sum(units), null from marts.charge_lines"
    )
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as full:
        want = full.execute(sql).fetchall()
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        got = con.execute(sql).fetchall()
        assert _count(con, "appointments") == 0 and _count(con, "referral_funnel") == 0
    assert got == want
    assert want[0][0] == 12 and float(want[0][1]) == 2795.0  # the tiny practice's 12 claims, $2,795 billed


def test_patients_and_scheduling_give_the_full_builds_appointments(subset_build, tiny_home):
    _, settings = subset_build("patients_scheduling")
    sql = "select appointment_id, status from marts.appointments order by appointment_id"
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as full:
        want = full.execute(sql).fetchall()
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        got = con.execute(sql).fetchall()
        assert _count(con, "claims") == 0 and _count(con, "referral_funnel") == 0
        assert _count(con, "dim_patients") == 12
    assert got == want and len(want) == 18


def test_unknown_codes_land_and_are_counted_as_warnings(subset_build, tiny_home):
    """Item 5: an unknown CPT or CARC is a warning on a landed row, never a quarantine; CARC meanings join."""
    _, settings = subset_build("billing")
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        warnings = con.execute(
            "select source, column_name, rule, severity, code_list, rows, distinct_codes "
            "from marts.data_quality_warnings order by source"
        ).fetchall()
        quarantined = con.execute("select coalesce(sum(rows), 0) from marts.data_quality where rule <> '(none)'")
        assert quarantined.fetchone()[0] == 0
        assert con.execute("select cpt_code from marts.charge_lines where charge_id = 'CH002'").fetchone() == ("99999",)
        meaning = con.execute(
            "select c.claim_id, k.category from marts.claims as c join reference.carc_codes as k on k.code = c.denial_carc "
            "order by c.claim_id"
        ).fetchall()
    assert warnings == [
        ("charges", "cpt_code", "unknown_code", "warning", "cpt", 1, 1),
        ("remittances", "carc_code", "unknown_code", "warning", "carc", 1, 1),
    ]
    assert meaning == [("C11", "authorization")]  # C11's CARC 197 joins; C06's unknown 999 has no meaning
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as full:
        assert full.execute("select count(*) from marts.data_quality_warnings").fetchone()[0] == 0


def test_without_marketing_spend_the_cost_per_new_patient_is_unknown_not_zero(tmp_path, tiny_home):
    """A practice that never loaded marketing_spend has marketing-sourced new patients but no known cost: cost per
    new patient and attributed ROI have no value (the Overview says "no rate"), never "$0.00, in healthy band";
    the new-patient counts are those of the full build."""
    sources = tuple(sorted(p.stem for p in TINY.glob("*.csv") if p.stem != "marketing_spend"))
    settings = build_subset(sources, tmp_path)
    sql = (
        "select kpi, clinic_id, period_start, numerator, denominator, value from marts.practice_kpis "
        "where kpi in ('cost_per_new_patient', 'attributed_roi') and grain = 'month' order by all"
    )
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        rows = con.execute(sql).fetchall()
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as full:
        want = full.execute(sql).fetchall()
    cost = [r for r in rows if r[0] == "cost_per_new_patient"]
    assert cost and all(r[3] is None and r[5] is None for r in cost)
    assert [r[4] for r in cost] == [r[4] for r in want if r[0] == "cost_per_new_patient"]  # the same new patients
    assert any(r[4] for r in cost)  # there were marketing-sourced new patients to divide by
    assert all(r[5] is None for r in rows if r[0] == "attributed_roi")
    assert all(r[5] is not None for r in want if r[0] == "cost_per_new_patient")  # with spend loaded: a value
