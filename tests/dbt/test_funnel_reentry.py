"""An exit is superseded by a later booking (docs/architecture.md "The funnel's exits"). Reproduced on a copy of the
hand-built tiny practice (tests/dbt/tiny_practice), landed through the real loader and built by real dbt.

Added referrals (physician 1234567893, clinic CL001; as_of stays 2025-03-31 17:00):
- R20 reached and declined Thu 03-20 11:00 (cost); the patient called back and on 03-27 booked an evaluation for
  Fri 04-04, still to come. Before the fix: declined, not open, no next step, a decided non-conversion in
  attribution, resolved in the referral-conversion KPI.
- R21 declined Mon 03-10 12:00, booked 03-12, evaluated Fri 03-14 (no note yet): evaluated, and no exit time or
  reason left over (before: exit_at was the decline's while exit_stage was null).
- R22 declined 03-17, booked 03-18, that booking cancelled 03-20, nothing rebooked: judged as any cancelled
  evaluation (no exit: scheduled, open, the front desk's to rebook), not as the old decline.
- R23 declined 03-17, booked 03-18, missed that evaluation 03-21, nothing rebooked: the no-show is the exit and the
  front desk gets the rebooking task (before: declined).
- R24 declined 03-17, booked 03-18, cancelled and declined again 03-19 (no_time): the second decline stands.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from tiny_variant import append_rows as _append
from tiny_variant import build_tiny_variant
from tiny_variant import mart_rows as _rows

pytestmark = pytest.mark.slow

NPI = "1234567893"
NEW = ("R20", "R21", "R22", "R23", "R24")


def _received(n: int, ref: str, pat: str, at: str) -> str:
    return f"IE9{n:02d},{ref},{pat},CL001,received,{at},referral,physician,{NPI},,PY1,M54.5,,,,fd1"


def _intake(n: int, ref: str, pat: str, kind: str, at: str, outcome: str = "", reason: str = "") -> str:
    method = "call" if kind == "outreach" else ""
    return f"IE9{n:02d},{ref},{pat},CL001,{kind},{at},,,,,,,{method},{outcome},{reason},fd1"


def _sched(n: int, appt: str, ep: str, ref: str, pat: str, kind: str, at: str, start: str) -> str:
    return f"SE9{n:02d},{appt},{ep},{ref},{pat},CL001,T1,{kind},{at},{start},60,initial_eval,,,fd1"


@pytest.fixture(scope="module")
def reentry_home(tmp_path_factory):
    def edit(src: Path) -> None:
        _append(
            src / "patients.csv",
            [
                f"P{n},Pat{n},Test{n},1970-02-{n - 10:02d},F,555-010{n},p{n}@example.com,{n} Elm St,Springfield,IL,"
                f"62701,PY1,M0{n},2025-03-01 00:00:00,2025-03-01 00:00:00"
                for n in range(20, 25)
            ],
        )
        _append(
            src / "intake_events.csv",
            [
                _received(1, "R20", "P20", "2025-03-20 09:00:00"),
                _intake(2, "R20", "P20", "outreach", "2025-03-20 11:00:00", outcome="reached"),
                _intake(3, "R20", "P20", "declined", "2025-03-20 11:00:00", reason="cost"),
                _received(4, "R21", "P21", "2025-03-10 09:00:00"),
                _intake(5, "R21", "P21", "declined", "2025-03-10 12:00:00", reason="no_time"),
                _received(6, "R22", "P22", "2025-03-17 09:00:00"),
                _intake(7, "R22", "P22", "outreach", "2025-03-17 10:00:00", outcome="reached"),
                _intake(8, "R22", "P22", "declined", "2025-03-17 10:00:00", reason="cost"),
                _received(9, "R23", "P23", "2025-03-17 09:00:00"),
                _intake(10, "R23", "P23", "declined", "2025-03-17 10:00:00", reason="cost"),
                _received(11, "R24", "P24", "2025-03-17 09:00:00"),
                _intake(12, "R24", "P24", "declined", "2025-03-17 10:00:00", reason="cost"),
                _intake(13, "R24", "P24", "declined", "2025-03-19 09:00:00", reason="no_time"),
            ],
        )
        _append(
            src / "scheduling_events.csv",
            [
                _sched(1, "A90", "E20", "R20", "P20", "booked", "2025-03-27 15:00:00", "2025-04-04 09:00:00"),
                _sched(2, "A91", "E21", "R21", "P21", "booked", "2025-03-12 15:00:00", "2025-03-14 09:00:00"),
                _sched(3, "A91", "E21", "R21", "P21", "completed", "2025-03-14 10:00:00", "2025-03-14 09:00:00"),
                _sched(4, "A92", "E22", "R22", "P22", "booked", "2025-03-18 09:00:00", "2025-03-21 09:00:00"),
                _sched(5, "A92", "E22", "R22", "P22", "cancelled", "2025-03-20 09:00:00", "2025-03-21 09:00:00"),
                _sched(6, "A93", "E23", "R23", "P23", "booked", "2025-03-18 09:00:00", "2025-03-21 09:00:00"),
                _sched(7, "A93", "E23", "R23", "P23", "no_show", "2025-03-21 09:30:00", "2025-03-21 09:00:00"),
                _sched(8, "A94", "E24", "R24", "P24", "booked", "2025-03-18 09:00:00", "2025-03-21 09:00:00"),
                _sched(9, "A94", "E24", "R24", "P24", "cancelled", "2025-03-19 09:00:00", "2025-03-21 09:00:00"),
            ],
        )

    return build_tiny_variant(tmp_path_factory.mktemp("funnel_reentry"), edit)


def _funnel(settings) -> dict[str, tuple]:
    rows = _rows(
        settings,
        "select referral_id, current_stage, exit_stage, exit_reason, exit_at, is_open, next_step_owner, scheduled_at, "
        "evaluated_at from marts.referral_funnel where list_contains($1, referral_id)",
        [list(NEW)],
    )
    return {r[0]: r[1:] for r in rows}


def test_the_build_kept_the_as_of_of_the_tiny_practice(reentry_home):
    assert _rows(reentry_home, "select as_of from intermediate.int_clocks_resolved") == [(datetime(2025, 3, 31, 17),)]


def test_a_decline_followed_by_a_booking_is_scheduled_and_open(reentry_home):
    assert _funnel(reentry_home)["R20"] == (
        "scheduled",
        None,
        None,
        None,
        True,
        "therapist",
        datetime(2025, 3, 27, 15),
        None,
    )


def test_a_decline_then_evaluated_keeps_no_exit_time_or_reason(reentry_home):
    assert _funnel(reentry_home)["R21"] == (
        "evaluated",
        None,
        None,
        None,
        True,
        "therapist",
        datetime(2025, 3, 12, 15),
        datetime(2025, 3, 14, 9),
    )


def test_a_cancelled_booking_after_a_decline_is_judged_as_any_cancelled_evaluation(reentry_home):
    """Open again, and with nothing booked ahead the front desk's to rebook (not the therapist's)."""
    assert _funnel(reentry_home)["R22"] == (
        "scheduled",
        None,
        None,
        None,
        True,
        "front_desk",
        datetime(2025, 3, 18, 9),
        None,
    )


def test_a_missed_booking_after_a_decline_is_an_eval_no_show_to_rebook(reentry_home):
    assert _funnel(reentry_home)["R23"] == (
        "eval_no_show",
        "eval_no_show",
        "no_show_at_evaluation",
        datetime(2025, 3, 21, 9),
        False,
        "front_desk",
        datetime(2025, 3, 18, 9),
        None,
    )
    tasks = _rows(reentry_home, "select task_id from marts.work_queue_candidates where referral_id = 'R23'")
    assert ("eval_no_show_rebook:R23",) in tasks


def test_a_decline_after_the_booking_still_stands(reentry_home):
    assert _funnel(reentry_home)["R24"] == (
        "declined",
        "declined",
        "no_time",
        datetime(2025, 3, 19, 9),
        False,
        None,
        datetime(2025, 3, 18, 9),
        None,
    )


def test_no_referral_has_an_exit_time_or_reason_without_an_exit(reentry_home):
    assert (
        _rows(
            reentry_home,
            "select referral_id from marts.referral_funnel "
            "where exit_stage is null and (exit_at is not null or exit_reason is not null)",
        )
        == []
    )


def test_attribution_and_the_conversion_kpi_count_the_rebooked_referral_as_pending(reentry_home):
    # received 03-20, within 30 days of as_of and not evaluated: undecided (not a non-conversion)
    assert _rows(
        reentry_home,
        "select distinct is_non_conversion, decided_at from marts.referral_touches where referral_id = 'R20'",
    ) == [(False, None)]
    # R20 is the only referral received on 03-20: still pending in the referral-conversion KPI
    assert _rows(
        reentry_home,
        "select numerator, denominator, pending from marts.practice_kpis where kpi = 'referral_conversion' "
        "and clinic_id = 'CL001' and grain = 'day' and period_start = date '2025-03-20'",
    ) == [(0, 1, 1)]
