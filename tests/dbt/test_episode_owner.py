"""One episode, one owning referral (docs/architecture.md): two referrals on one episode never count its
conversion or its money twice. Reproduced on a copy of the hand-built tiny practice (tests/dbt/tiny_practice),
landed through the real loader and built by real dbt.

Edits (all else as in test_tiny_practice.py; as_of stays 2025-03-31 17:00):
- R13 (physician B, patient P01) received Thu 03-06 09:00, reached 10:00; E01's follow-up visit A02 (03-07) carries
  R13 instead of R01. R01 stays on E01's initial evaluation A01 (03-05), so R01 owns E01 ($460 collected).
- R14 (direct access, patient P02) received Wed 03-12 09:00, reached 10:00, booked A90, an initial evaluation of
  its own inside R02's episode E02, attended Fri 03-14 10:00. R02's evaluation A04 (03-06) came first: R02 owns E02.

Before the fix both R01 and R13 were evaluated and converted, E01's $460 was credited to both (attribution and
the source scorecard summed $1,710 against $1,250 collected) and March conversion read 6/13.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from tiny_variant import append_rows as _append
from tiny_variant import build_tiny_variant
from tiny_variant import mart_rows as _rows

pytestmark = pytest.mark.slow

COLLECTED = 1250  # every payment of the tiny practice, each on one episode


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    def edit(src: Path) -> None:
        _append(
            src / "intake_events.csv",
            [
                "IE913,R13,P01,CL001,received,2025-03-06 09:00:00,referral,physician,1987654328,,PY1,M54.5,,,,fd1",
                "IE914,R13,P01,CL001,contacted,2025-03-06 10:00:00,,,,,,,,,,fd1",
                "IE915,R14,P02,CL001,received,2025-03-12 09:00:00,lead,direct_access,,,PY2,M17.11,,,,fd1",
                "IE916,R14,P02,CL001,contacted,2025-03-12 10:00:00,,,,,,,,,,fd1",
            ],
        )
        sched = src / "scheduling_events.csv"
        lines = sched.read_text().splitlines()
        # A02's events carry R13 (the follow-up visit booked under the second referral)
        lines = [ln.replace(",A02,E01,R01,", ",A02,E01,R13,") for ln in lines]
        sched.write_text("\n".join(lines) + "\n")
        _append(
            sched,
            [
                "SE913,A90,E02,R14,P02,CL001,T1,booked,2025-03-12 10:05:00,2025-03-14 10:00:00,60,initial_eval,,,fd1",
                "SE914,A90,E02,R14,P02,CL001,T1,completed,2025-03-14 11:00:00,2025-03-14 10:00:00,60,initial_eval,,,fd1",
            ],
        )

    return build_tiny_variant(tmp_path_factory.mktemp("shared_episode"), edit)


def test_the_referral_on_the_evaluation_owns_the_episode(shared_home):
    rows = _rows(
        shared_home,
        "select referral_id, episode_id, is_secondary_referral, is_evaluated, evaluated_at, converted_webpt, "
        "converted_7day, is_open, current_stage, next_step_owner, plan_of_care_at, active_at, discharged_at "
        "from marts.referral_funnel where referral_id in ('R01', 'R13', 'R02', 'R14') order by referral_id",
    )
    by_id = {r[0]: r[1:] for r in rows}
    # R01 keeps E01 whole: evaluated A01, signed, second visit A02 (R13's booking), discharged 03-10
    assert by_id["R01"][:8] == ("E01", False, True, datetime(2025, 3, 5, 10), True, True, False, "discharged")
    # R13: received, contacted, scheduled (A02 booked 03-05 11:05); no evaluation of its own, nothing of E01's
    assert by_id["R13"] == ("E01", True, False, None, False, False, False, "scheduled", None, None, None, None)
    # R14: evaluated by its own initial evaluation, yet no conversion (E02 is R02's) and none of E02's later stages
    assert by_id["R14"] == (
        "E02",
        True,
        True,
        datetime(2025, 3, 14, 10),
        False,
        False,
        False,
        "evaluated",
        None,
        None,
        None,
        None,
    )
    assert by_id["R02"][:6] == ("E02", False, True, datetime(2025, 3, 6, 14), True, True)


def test_every_episode_has_exactly_one_owner(shared_home):
    owners = _rows(
        shared_home,
        "select episode_id, count(*) filter (where not is_secondary_referral) from intermediate.int_referrals_pivoted "
        "where episode_id is not null group by episode_id having count(*) filter (where not is_secondary_referral) <> 1",
    )
    assert owners == []
    shared = dict(
        _rows(
            shared_home,
            "select episode_id, list(referral_id order by referral_id) from marts.referral_funnel "
            "where episode_id in ('E01', 'E02') group by 1",
        )
    )
    assert shared == {"E01": ["R01", "R13"], "E02": ["R02", "R14"]}


def test_conversion_counts_each_episode_once(shared_home):
    # 14 referrals received in March; signed evaluations R01 R02 R03 R07 R11 (R08 unsigned): R13 and R14 add none
    march = dict(
        (r[0], (r[1], r[2]))
        for r in _rows(
            shared_home,
            "select kpi, numerator, denominator from marts.practice_kpis where clinic_id = 'ALL' and grain = 'month' "
            "and period_start = date '2025-03-01' and kpi in ('referral_conversion', 'conversion_7day')",
        )
    )
    assert march["referral_conversion"] == (5, 14)
    assert march["conversion_7day"] == (6, 14)


def test_episode_money_is_credited_once(shared_home):
    episodes_total = _rows(shared_home, "select sum(net_revenue_usd) from marts.episodes")[0][0]
    assert float(episodes_total) == pytest.approx(COLLECTED)
    # attribution: each model's credit sums to the collected revenue of the converted episodes, once
    credits = _rows(
        shared_home,
        "select sum(credit_first), sum(credit_last), sum(credit_linear), sum(credit_time_decay), "
        "sum(credit_position) from marts.attribution_touches",
    )[0]
    assert credits == pytest.approx((COLLECTED,) * 5, abs=1e-6)
    assert (
        _rows(
            shared_home,
            "select distinct referral_id from marts.attribution_touches where referral_id in ('R13', 'R14')",
        )
        == []
    )
    paths = _rows(shared_home, "select sum(conversions), sum(revenue_usd) from marts.attribution_paths")[0]
    assert paths[0] == 6 and float(paths[1]) == pytest.approx(COLLECTED)  # R01 R02 R03 R07 R08 R11
    # the source scorecard: E01's $460 is physician A's (R01), not physician B's (R13)
    scorecard = dict(
        (r[0], (float(r[1]), r[2], r[3], r[4]))
        for r in _rows(
            shared_home,
            "select source_id, net_revenue_usd, referrals, evaluated, converted from marts.referral_source_performance",
        )
    )
    assert sum(v[0] for v in scorecard.values()) == pytest.approx(COLLECTED)
    e01 = float(_rows(shared_home, "select net_revenue_usd from marts.episodes where episode_id = 'E01'")[0][0])
    assert e01 == pytest.approx(460)
    physician_a = float(
        _rows(
            shared_home,
            "select sum(net_revenue_usd) from marts.episodes where episode_id in ('E01', 'E02', 'E08')",
        )[0][0]
    )
    assert scorecard["1234567893"][0] == pytest.approx(physician_a)
    assert scorecard["1987654328"] == (0.0, 4, 1, 1)  # R05 R06 R11 R13: only R11 evaluated and converted
    assert scorecard["direct_access"][1:] == (3, 1, 0)  # R04 R09 R14: R14 evaluated by its own visit, not converted
