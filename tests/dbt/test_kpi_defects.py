"""Issue 13, defects 1-5: each is reproduced on a copy of the hand-built tiny practice (tests/dbt/tiny_practice)
with a few rows changed the way real exports go wrong, landed through the real loader and built by real dbt.

Edits (all else as in test_tiny_practice.py; as_of stays 2025-03-31 17:00):
- claims: C01's submitted_at is malformed, so the claim row is quarantined (its charges and its remittances,
  $190 collected and $80 contractual, still land); remittance RM901 pays $25 on claim C99 that has neither a
  claim row nor charge lines.
- documentation: N01, E01's evaluation note (R01's plan of care), has a malformed created_at: quarantined.
- intake: R04 (evaluation no-show A12 on 03-07) also gets the intake `lost` event the EMR records later
  (reason eval_no_show); R13 received 03-28 09:00 got only a voicemail 03-28 10:00; R14 received 03-31 09:00
  was reached 03-31 10:00 (7 h before as_of, under the 48 h schedule SLA).
- scheduling: A17 (R11's evaluation, cancelled 03-27 10:00) gets a `rescheduled` row logged after the
  cancellation (03-27 11:00, same slot).
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "tiny_practice"


def _replace(path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: expected one '{old[:40]}'"
    path.write_text(text.replace(old, new))


def _append(path, lines: list[str]) -> None:
    text = path.read_text()
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def edge_home(tmp_path_factory):
    src = tmp_path_factory.mktemp("tiny_edges") / "csv"
    shutil.copytree(TINY, src)
    _replace(
        src / "claims.csv",
        "C01,E01,P01,CL001,PY1,2025-03-05,2025-03-05 16:00:00,270.00",
        "C01,E01,P01,CL001,PY1,2025-03-05,2024-13-45 16:00:00,270.00",
    )
    _append(src / "remittances.csv", ["RM901,C99,PY1,payer_payment,2025-03-25 12:00:00,25.00,,,CHK901"])
    _replace(
        src / "documentation_events.csv",
        "N01,E01,A01,P01,CL001,T1,initial_eval,2025-03-05,2025-03-05 11:10:00,",
        "N01,E01,A01,P01,CL001,T1,initial_eval,2025-03-05,not a date,",
    )
    _append(
        src / "intake_events.csv",
        [
            "IE901,R04,P04,CL001,lost,2025-03-14 10:00:00,,,,,,,,,eval_no_show,fd1",
            "IE902,R13,P10,CL001,received,2025-03-28 09:00:00,lead,direct_access,,,PY1,M25.511,,,,fd1",
            "IE903,R13,P10,CL001,outreach,2025-03-28 10:00:00,,,,,,,call,left_message,,fd1",
            "IE904,R14,P10,CL001,received,2025-03-31 09:00:00,lead,direct_access,,,PY1,M25.511,,,,fd1",
            "IE905,R14,P10,CL001,outreach,2025-03-31 10:00:00,,,,,,,call,reached,,fd1",
            "IE906,R14,P10,CL001,contacted,2025-03-31 10:00:00,,,,,,,,,,fd1",
        ],
    )
    _append(
        src / "scheduling_events.csv",
        ["SE901,A17,E11,R11,P11,CL001,T1,rescheduled,2025-03-27 11:00:00,2025-03-28 15:00:00,60,initial_eval,,,fd1"],
    )
    settings = get_settings(tmp_path_factory.mktemp("tiny_edges_home")).ensure()
    ingest([src], settings)
    result = build(settings)
    assert result.ok, result.message
    return settings


def _one(settings, sql: str, params: list | None = None):
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute(sql, params or []).fetchone()


def _march(settings, clinic: str, kpi: str):
    return _one(
        settings,
        "select numerator, denominator from marts.practice_kpis where clinic_id = ? and "
        "grain = 'month' and period_start = date '2025-03-01' and kpi = ?",
        [clinic, kpi],
    )


def test_edits_were_quarantined_as_intended(edge_home):
    with duckdb.connect(str(edge_home.raw_db), read_only=True) as con:
        claims = {r[0] for r in con.execute("select claim_id from raw.raw.claims").fetchall()}
        notes = {r[0] for r in con.execute("select note_id from raw.raw.documentation_events").fetchall()}
    assert "C01" not in claims and "N01" not in notes


def test_defect1_cash_of_a_quarantined_claim_still_counts(edge_home):
    # every dollar posted in March: the tiny practice's 1,250 + RM901's 25 (C01's 190 included)
    assert _march(edge_home, "ALL", "net_revenue_per_visit")[0] == pytest.approx(1250 + 25)
    assert _march(edge_home, "ALL", "net_collection_rate")[0] == pytest.approx(1250 + 25)
    # C01's money stays at its clinic (from its charge lines); C99's has no clinic: 'unattributed'
    assert _march(edge_home, "CL001", "net_revenue_per_visit")[0] == pytest.approx(1250)
    assert _march(edge_home, "unattributed", "net_revenue_per_visit")[0] == pytest.approx(25)
    # contractual adjustments posted (575, C01's 80 included) still reduce the denominator; C01's 270 billed
    # is unknown without its claim row: 2,795 - 270 - 575
    assert _march(edge_home, "ALL", "net_collection_rate")[1] == pytest.approx(2795 - 270 - 575)


def test_defect2_plan_of_care_without_the_evaluation_note(edge_home):
    # R01: evaluated A01 03-05, second visit A02 Fri 03-07 09:00, discharged 03-10: the plan existed by A02
    row = _one(
        edge_home,
        "select f.plan_of_care_at, a.scheduled_start, f.current_stage from marts.referral_funnel f "
        "join marts.appointments a on a.appointment_id = 'A02' where f.referral_id = 'R01'",
    )
    assert row[0] is not None and row[0] == row[1] and row[2] == "discharged"


def test_defect3_eval_no_show_wins_over_a_later_lost(edge_home):
    row = _one(
        edge_home,
        "select exit_stage, current_stage, exit_reason, exit_at from marts.referral_funnel where referral_id = 'R04'",
    )
    assert row == ("eval_no_show", "eval_no_show", "no_show_at_evaluation", datetime(2025, 3, 7, 8, 0))
    # the EMR already closed it (lost after the no-show): no rebooking task
    assert _one(
        edge_home, "select count(*) from marts.work_queue_candidates where task_id = 'eval_no_show_rebook:R04'"
    ) == (0,)


def test_defect4_contacted_unscheduled_needs_a_reach_and_the_sla(edge_home):
    with duckdb.connect(str(edge_home.analytics_db), read_only=True) as con:
        tasks = dict(
            con.execute(
                "select task_id, due_at from marts.work_queue_candidates where referral_id in ('R10', 'R13', 'R14')"
            ).fetchall()
        )
    assert tasks == {
        "contacted_unscheduled:R10": datetime(2025, 3, 28, 11, 0),  # reached 03-26 11:00 + 48 h
        "uncontacted_referral:R13": datetime(2025, 3, 29, 9, 0),  # a voicemail is not contact: received + 24 h
    }  # R14 reached 7 h ago: not due yet


def test_defect5_reschedule_logged_after_the_cancellation(edge_home):
    row = _one(
        edge_home,
        "select status, scheduled_start, reschedule_count, is_unresolved from marts.appointments "
        "where appointment_id = 'A17'",
    )
    assert row == ("cancelled", datetime(2025, 3, 28, 15, 0), 1, False)
    assert _march(edge_home, "ALL", "cancel_no_show_rate") == (4, 16)
