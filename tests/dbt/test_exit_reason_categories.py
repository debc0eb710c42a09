"""The intake export's `reason` is free text (ingestion/contracts/intake_events.yml has no accepted list); it used to
become marts.referral_funnel.exit_reason as typed, which marketing reads on the Funnel (exit chart, drill table,
their CSVs) and analysts read in the de-identified twin on the SQL page, next to patient_key. A front desk's
"Mrs Haynes DOB 07/06/1939 moved to Tucson - daughter Ann called" reached both (review of the clinic scope, defect
1). Now the funnel holds only a category (int_referrals_pivoted codes the intake reason, referral_funnel the work
queue's mark-lost reason): any other text is 'other'.

A copy of the hand-built tiny practice with three exits, landed through the real loader and built by real dbt:

- R40 (patient P40, Haynes, born 1939-07-06): lost, the reviewer's free text. -> other
- R41: declined, "Went elsewhere" (a code as a person spells it). -> went_elsewhere
- R42: insurance_denied, "NOT-COVERED". -> not_covered
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest
from tiny_variant import append_rows, build_tiny_variant, mart_rows

from app.lib import actions
from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters
from app.lib.queries.funnel import STAGES, funnel_drilldown, funnel_exits
from ptpulse.core.config import DBT_PROJECT_DIR
from seed_data import intake

pytestmark = pytest.mark.slow

FREE_TEXT = "Mrs Haynes DOB 07/06/1939 moved to Tucson - daughter Ann called"
EXPECTED = {"R40": "other", "R41": "went_elsewhere", "R42": "not_covered"}
PIVOTED = DBT_PROJECT_DIR / "models" / "intermediate" / "int_referrals_pivoted.sql"
FUNNEL = DBT_PROJECT_DIR / "models" / "marts" / "funnel" / "referral_funnel.sql"


@pytest.fixture(scope="module")
def reasons_home(tmp_path_factory):
    received = "IE9{n},{ref},{pid},CL001,received,2025-03-03 09:00:00,referral,physician,1234567893,,PY1,M54.5,,,,fd1"
    exit_row = "IE9{n},{ref},{pid},CL001,{kind},2025-03-04 10:00:00,,,,,,,,,{reason},fd1"

    def edit(src: Path) -> None:
        append_rows(
            src / "patients.csv",
            [
                "P40,Margaret,Haynes,1939-07-06,F,555-0140,m.haynes@example.com,40 Elm St,Springfield,IL,62701,PY1,"
                "M040,2025-03-01 00:00:00,2025-03-01 00:00:00"
            ],
        )
        append_rows(
            src / "intake_events.csv",
            [
                received.format(n=40, ref="R40", pid="P40"),
                exit_row.format(n=41, ref="R40", pid="P40", kind="lost", reason=FREE_TEXT),
                received.format(n=42, ref="R41", pid="P01"),
                exit_row.format(n=43, ref="R41", pid="P01", kind="declined", reason="Went elsewhere"),
                received.format(n=44, ref="R42", pid="P02"),
                exit_row.format(n=45, ref="R42", pid="P02", kind="insurance_denied", reason="NOT-COVERED"),
            ],
        )

    return build_tiny_variant(tmp_path_factory.mktemp("exit_reasons"), edit)


def test_the_funnel_holds_the_category_never_the_text(reasons_home):
    rows = dict(
        mart_rows(
            reasons_home,
            "select referral_id, exit_reason from marts.referral_funnel where referral_id in ('R40', 'R41', 'R42')",
        )
    )
    assert rows == EXPECTED
    pivoted = dict(
        mart_rows(
            reasons_home,
            "select referral_id, intake_exit_reason from intermediate.int_referrals_pivoted "
            "where referral_id in ('R40', 'R41', 'R42')",
        )
    )
    assert pivoted == EXPECTED


def test_marketing_funnel_data_holds_only_the_category(reasons_home):
    """What the Funnel page draws for marketing: the exit chart's rows and the drill table of every stage."""
    reader = DbReader(AnalyticsDb(reasons_home.analytics_db), Scope("marketing"))
    f = Filters(date(2025, 1, 1), date(2025, 12, 31))
    exits = funnel_exits(reader, f)
    assert "other" in set(exits["exit_reason"])
    frames = [exits] + [funnel_drilldown(reader, f, stage) for stage in STAGES]
    text = "\n".join(frame.to_csv(index=False) for frame in frames)
    for leak in ("Haynes", "DOB", "07/06/1939", "Tucson", "Ann called"):
        assert leak not in text
    drill = funnel_drilldown(reader, f, "received")
    shown = dict(zip(drill["referral_id"], drill["exit_reason"], strict=True))
    assert {r: shown[r] for r in EXPECTED} == EXPECTED


def test_the_twin_holds_only_the_category(reasons_home):
    """The SQL page's file: referral_funnel's exit reason is the category, and no text value anywhere names the
    patient or the birth date (the build's value check passed: the build was served)."""
    with duckdb.connect(str(reasons_home.analytics_deid_db), read_only=True) as con:
        rows = dict(
            con.execute(
                "select referral_id, exit_reason from marts.referral_funnel where referral_id in ('R40', 'R41', 'R42')"
            ).fetchall()
        )
        text_columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
        ).fetchall()
        hits = [
            f"{s}.{t}.{c}"
            for s, t, c in text_columns
            if con.execute(
                f'select count(*) from "{s}"."{t}" where "{c}" ilike \'%haynes%\' or "{c}" like \'%07/06/1939%\''
            ).fetchone()[0]
        ]
    assert rows == EXPECTED
    assert hits == []


def _listed(sql: Path, marker: str) -> list[str]:
    """The quoted values of the `in (...)` list that follows `marker` in a model."""
    text = re.sub(r"--[^\n]*", "", sql.read_text())  # comments out
    block = text[text.index(marker) :]
    block = block[block.index("(") + 1 : block.index(")")]
    return re.findall(r"'([^']*)'", block)


def test_the_categories_cover_what_the_exports_send_and_the_work_queue_offers():
    """The intake categories include every reason the generator writes (seed_data/intake.py) and each has a label;
    the work queue's list is app/lib/actions.py LOST_REASONS; _funnel.yml's accepted values hold both."""
    intake_codes = _listed(PIVOTED, "when reason_key in")
    generated = {*intake.DECLINE_REASONS, *intake.DENY_REASONS, *intake.LOST_REASONS, "eval_no_show"}
    assert generated | {"other"} == set(intake_codes)
    with (DBT_PROJECT_DIR / "seeds" / "labels.csv").open(newline="") as fh:
        labelled = {r["code"] for r in csv.DictReader(fh) if r["domain"] == "exit_reason"}
    assert set(intake_codes) - labelled <= {"other", "eval_no_show"}  # eval_no_show reads no_show_at_evaluation
    assert _listed(FUNNEL, "when x.reason in") == list(actions.LOST_REASONS)
    funnel_yml = (DBT_PROJECT_DIR / "models" / "marts" / "funnel" / "_funnel.yml").read_text()
    for value in (*intake_codes, *actions.LOST_REASONS):
        assert value in funnel_yml
