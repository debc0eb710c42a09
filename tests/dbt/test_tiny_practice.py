"""The hand-built tiny practice (tests/dbt/tiny_practice/: 1 clinic, 12 referrals in March 2025), landed
through the real loader and built by the real dbt build. Every KPI is worked out by hand below.

The practice (as_of = 2025-03-31 17:00, the latest recorded scheduling event: A09 booked then):

  R01 physician A  received Mon 03-03 09:00, call reached 11:00 (2 h), eval A01 Wed 03-05, A02 03-07, A03 03-10,
      discharged 03-10 plan_completed (3 of 3 visits). events touch before -> path events > physician_referral
  R02 physician A  received 03-03 14:00, reached 03-04 09:00 (19 h), eval A04 Thu 03-06, A05 no-show 03-11,
      A06 03-13, A07 late-cancel 03-18, A08 03-20, A09 booked for 04-03 (future). Active, 3 of 4 visits.
  R03 lead search_ads  received Tue 03-04 10:00, voicemail 10:30 (0.5 h), eval A10 Tue 03-11 (rescheduled from
      03-10; 7 calendar days -> 7-day conversion), A11 03-14, discharge summary 03-24 self_discharged (2 of 6).
  R04 direct access received 03-05 08:00, reached 08:30 (0.5 h), eval A12 03-07 no-show, nothing rebooked.
  R05 physician B  received 03-06 12:00, no answer 03-07 12:00 (24 h) and 03-10, unreachable 03-14.
  R06 physician B  received 03-10 09:00, reached 10:00 (1 h), declined (cost).
  R07 lead social  received 03-10 15:00, reached 16:00 (1 h), eval A13 03-12, A14 03-14, discharged goals_met
      (2 of 2 visits: plan completed, but closed before visit 3 = early dropout).
  R08 physician A  received Mon 03-17 09:00, reached 13:00 (4 h), eval A15 Wed 03-19, note UNSIGNED
      (not a WebPT conversion), A16 booked for 04-02.
  R09 direct access received 03-24 11:00, never contacted.
  R10 lead organic_web received 03-26 10:00, reached 11:00 (1 h), not scheduled.
  R11 physician B  received Thu 03-27 09:00, reached 09:30 (0.5 h), eval A17 cancelled with notice, eval A18
      Mon 03-31 09:00.
  R12 physician A  received 03-28 10:00, reached 11:00 (1 h), insurance denied.

Claims (one per attended visit; billed): C01 270, C02 180, C03 235, C04 270, C06 200, C08 200, C10 270, C11 180,
C13 270, C14 180, C15 270, C18 270 = 2,795. Collected (payer + patient): C01 190, C02 130, C03 140, C04 170,
C10 190, C11 110 (denied, paid on appeal), C13 190, C14 130 = 1,250; C06 denied and written off (200);
C08, C15, C18 open. Contractual adjustments 575. Units (G0283 excluded): 3 per visit, 4 on C03 = 37.
Marketing spend March: search_ads 500, social 300, organic_web 200 = 1,000.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

# ---------------------------------------------------------------------------------------------------------
# Every KPI, month grain, March 2025, worked by hand. (numerator, denominator)
# ---------------------------------------------------------------------------------------------------------
MARCH = {
    # 16 past appointments with an outcome: 12 completed (A01-04, A06, A08, A10, A11, A13-15, A18),
    # no-shows A05 + A12, late cancel A07, cancel A17. Future A09, A16 excluded.
    "no_show_rate": (2, 16),
    "cancel_no_show_rate": (4, 16),
    "arrival_rate": (12, 16),
    # 12 referrals received; finalized evals: R01 R02 R03 R07 R11 (R08 unsigned)
    "referral_conversion": (5, 12),
    # first visit <= 7 days: R01 (2), R02 (3), R03 (7), R07 (2), R08 (2), R11 (4)
    "conversion_7day": (6, 12),
    # hours to first outreach, 11 contacted: 2 + 19 + 0.5 + 0.5 + 24 + 1 + 1 + 4 + 1 + 0.5 + 1
    "hours_to_first_contact": (54.5, 11),
    # business days received -> eval: R01 2 (Tue, Wed), R02 3, R03 5 (Wed..Tue), R07 2, R08 2, R11 2 (Fri, Mon)
    "business_days_to_first_visit": (16, 6),
    # closed episodes by discharge date: E01 (3 visits), E03 (2, self-discharged), E07 (2)
    "visits_per_discharge": (7, 3),
    # E01 reached its 3 planned visits, E07 formally discharged (goals met); E03 self-discharged at 2 of 6
    "poc_completion_rate": (2, 3),
    # evaluated in March: E01 E02 E03 E07 E08 E11; closed before visit 3: E03, E07. Outcome known (closed or
    # past visit 2): E01 E02 E03 E07; E08 and E11 are still open at 1 visit, so they wait (maturity below)
    "early_dropout_rate": (2, 4),
    "units_per_visit": (37, 12),
    # cash basis: payer + patient payments POSTED in March (every remittance of the tiny practice is posted
    # 03-20..03-28, so all 1,250 collected) / the 12 visits attended in March
    "net_revenue_per_visit": (1250, 12),
    # A/R at 03-31 = 2795 - payer 1136 - contractual 575 - write-off 200 - patient 114 = 770
    # (C03 patient 30 + C08 200 + C15 270 + C18 270); average daily charges = 2795 / 90
    "days_in_ar": (770, 2795 / 90),
    # cash basis: payments posted in March 1,250 / (charges for March services 2,795 - contractual adjustments
    # posted in March: C01 80 + C02 50 + C03 65 + C04 100 + C11 70 + C10 80 + C13 80 + C14 50 = 575)
    "net_collection_rate": (1250, 2795 - 575),
    # C06 and C11 denied, of the 9 claims a payer has answered (12 submitted; C08, C15, C18 not yet adjudicated)
    "denial_rate": (2, 9),
    # booked minutes (completed 6x60 + 6x45, no-shows 45 + 60, late cancel 45) = 780; available from the first
    # appointment day (Wed 03-05) to 03-31: T1 (40 h over Mon-Fri = 480/day) 19 weekdays = 9,120;
    # T2 (20 h over Mon/Wed/Fri = 400/day) 12 days (Wed 5, Fri 7, then 3 Mon/Wed/Fri weeks, Mon 31) = 4,800
    "therapist_utilization": (780, 9120 + 4800),
    # marketing-sourced referrals evaluated in March: R03, R07
    "cost_per_new_patient": (1000, 2),
    # linear credit to marketing channels: R03 300 (all three touches marketing), R07 320,
    # R01 460 / 2 = 230 to events; minus spend 1000
    "attributed_roi": (300 + 320 + 230 - 1000, 1000),
}

# Spot checks at week and day grain: (clinic, grain, period_start, kpi) -> (numerator, denominator)
SPOT = {
    # week of Mon 03-03: A01, A02, A04 completed, A12 no-show
    ("ALL", "week", "2025-03-03", "no_show_rate"): (1, 4),
    # received 03-03..03-09: R01-R05; finalized: R01, R02, R03
    ("ALL", "week", "2025-03-03", "referral_conversion"): (3, 5),
    # available Wed 5 (480 + 400), Thu 6 (480), Fri 7 (480 + 400); booked A01 60 + A02 45 + A04 60 + A12 60
    ("ALL", "week", "2025-03-03", "therapist_utilization"): (225, 2240),
    # week ending Sun 03-30: billed through 03-30 = 2795 - 270 (C18) = 2525, all 2025 of resolutions posted
    ("ALL", "week", "2025-03-24", "days_in_ar"): (500, 2525 / 90),
    ("CL001", "day", "2025-03-31", "days_in_ar"): (770, 2795 / 90),
    ("CL001", "day", "2025-03-11", "no_show_rate"): (1, 2),  # A05 no-show, A10 completed
    # Cash basis at week grain (where it differs from a service-date cohort):
    # week of Mon 03-03: visits A01 (Wed 5), A04 (Thu 6), A02 (Fri 7) attended; no payment posted that week yet
    # (a service-date cohort would have shown C01 + C02 + C04 = 190 + 130 + 170 = 490 here)
    ("ALL", "week", "2025-03-03", "net_revenue_per_visit"): (0, 3),
    # week of Mon 03-17: posted 03-20 C01 payer 160 + patient 30, 03-21 C02 110 + 20 and C04 136 + 34 = 490;
    # visits attended A15 (Wed 19), A08 (Thu 20) = 2
    ("ALL", "week", "2025-03-17", "net_revenue_per_visit"): (490, 2),
    # same week: 490 / (charges for services that week C15 270 + C08 200 = 470 - contractual adjustments posted
    # that week C01 80 + C02 50 + C04 100 = 230) = 490 / 240 (a week catches a batch of payments: read months)
    ("ALL", "week", "2025-03-17", "net_collection_rate"): (490, 470 - 230),
}


def _con(settings):
    return duckdb.connect(str(settings.analytics_db), read_only=True)


def _kpis(settings, where: str, params: list) -> dict:
    with _con(settings) as con:
        rows = con.execute(
            f"select kpi, numerator, denominator, value from marts.practice_kpis where {where}", params
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("clinic", ["ALL", "CL001"])
def test_every_kpi_matches_the_hand_calculation(tiny_home, clinic):
    got = _kpis(tiny_home, "clinic_id = ? and grain = 'month' and period_start = date '2025-03-01'", [clinic])
    assert set(got) == set(MARCH), f"missing {set(MARCH) - set(got)}, extra {set(got) - set(MARCH)}"
    for kpi, (num, den) in MARCH.items():
        g_num, g_den, g_val = got[kpi]
        assert g_num == pytest.approx(num, abs=1e-9), kpi
        assert g_den == pytest.approx(den, abs=1e-9), kpi
        assert g_val == pytest.approx(num / den, rel=1e-12), kpi


def test_kpi_definitions_cover_every_kpi(tiny_home):
    with _con(tiny_home) as con:
        defs = {r[0] for r in con.execute("select kpi from marts.kpi_definitions").fetchall()}
    assert defs == set(MARCH)


@pytest.mark.parametrize("key", list(SPOT))
def test_week_and_day_spot_checks(tiny_home, key):
    clinic, grain, start, kpi = key
    got = _kpis(
        tiny_home,
        "clinic_id = ? and grain = ? and period_start = cast(? as date) and kpi = ?",
        [clinic, grain, start, kpi],
    )
    num, den = SPOT[key]
    assert got[kpi][0] == pytest.approx(num) and got[kpi][1] == pytest.approx(den)


def test_only_march_and_no_future_periods(tiny_home):
    with _con(tiny_home) as con:
        latest = con.execute("select max(period_start) from marts.practice_kpis").fetchone()[0]
        as_of = con.execute("select as_of from marts.build_info").fetchone()[0]
    assert str(latest) == "2025-03-31"
    assert as_of == datetime(2025, 3, 31, 17, 0)


FUNNEL = {
    "R01": ("discharged", None, True, True),
    "R02": ("active", None, True, True),
    "R03": ("self_discharged", "self_discharged", True, True),
    "R04": ("eval_no_show", "eval_no_show", False, False),
    "R05": ("unreachable", "unreachable", False, False),
    "R06": ("declined", "declined", False, False),
    "R07": ("discharged", None, True, True),
    "R08": ("plan_of_care", None, False, True),
    "R09": ("received", None, False, False),
    "R10": ("contacted", None, False, False),
    "R11": ("plan_of_care", None, True, True),
    "R12": ("insurance_denied", "insurance_denied", False, False),
}


def test_funnel_stages(tiny_home):
    with _con(tiny_home) as con:
        rows = con.execute(
            "select referral_id, current_stage, exit_stage, converted_webpt, converted_7day "
            "from marts.referral_funnel order by 1"
        ).fetchall()
    assert {r[0]: r[1:] for r in rows} == FUNNEL


def test_work_queue(tiny_home):
    with _con(tiny_home) as con:
        rows = dict(con.execute("select task_id, due_at from marts.work_queue_candidates").fetchall())
    assert rows == {
        "uncontacted_referral:R09": datetime(2025, 3, 25, 11, 0),  # received + 24 h SLA
        "contacted_unscheduled:R10": datetime(2025, 3, 28, 11, 0),  # contact + 48 h
        "eval_no_show_rebook:R04": datetime(2025, 3, 8, 8, 0),  # missed eval + 24 h
        "active_no_future_appt:E11": datetime(2025, 4, 2, 9, 0),  # last visit + 48 h
        "below_poc_frequency:E08": datetime(2025, 4, 1, 17, 0),  # 2x/week, 1 booked in 14 days
        "auth_expiring:AU1": datetime(2025, 4, 1, 17, 0),  # 1 of 4 visits left
        "auth_expiring:AU2": datetime(2025, 4, 1, 17, 0),  # valid to 04-05, 5 days left
        "unsigned_note:N14": datetime(2025, 3, 20, 10, 10),  # created + 24 h
    }


def test_revenue_leakage(tiny_home):
    """Dollars at stake = units x unit value; the visit value is the net-revenue-per-visit KPI (1250 / 12)."""
    with _con(tiny_home) as con:
        rows = {
            r[0]: r[1:]
            for r in con.execute(
                "select category, events, units_at_stake, dollars_at_stake from marts.revenue_leakage"
            ).fetchall()
        }
    per_visit = 1250 / 12
    per_episode = (460 + 300 + 320) / 3  # closed episodes E01, E03, E07
    assert rows["no_shows"] == (2, 2, pytest.approx(2 * per_visit))
    assert rows["late_cancels"] == (1, 1, pytest.approx(per_visit))
    assert rows["unfinished_plans"] == (1, 4, pytest.approx(4 * per_visit))  # E03: 6 planned, 2 attended
    assert rows["unconverted_referrals"] == (4, 4, pytest.approx(4 * per_episode))  # R04 R05 R06 R12
    assert rows["unrecovered_denials"] == (1, 1, pytest.approx(200))


def test_attribution(tiny_home):
    with _con(tiny_home) as con:
        paths = {
            r[0]: r[1:]
            for r in con.execute(
                "select path, conversions, non_conversions, revenue_usd from marts.attribution_paths"
            ).fetchall()
        }
        sums = con.execute("""select referral_id, max(conversion_value_usd), sum(credit_first), sum(credit_last),
            sum(credit_linear), sum(credit_time_decay), sum(credit_position)
            from marts.attribution_touches group by 1""").fetchall()
        position = dict(
            con.execute("""select channel, attributed_revenue_usd from marts.attribution_roi
            where model = 'position' and month = date '2025-03-01'""").fetchall()
        )
    assert paths == {
        "physician_referral": (3, 3, 170),  # R02 R08 R11 evaluated; R05 R06 R12 exited
        "events > physician_referral": (1, 0, 460),
        "search_ads > social > search_ads": (1, 0, 300),
        "social > organic_web > social": (1, 0, 320),  # same-time touches ordered by touch id
        "direct_access": (0, 1, 0),  # R04 exited; R09 still open (< 30 days) not counted
    }
    for ref, value, *credits in sums:
        assert all(c == pytest.approx(float(value), abs=1e-6) for c in credits), ref
    # position 40/20/40: R03 search_ads 120 + 120, social 60; R07 social 128 + 128, organic_web 64; R01 50/50
    assert position["search_ads"] == pytest.approx(240)
    assert position["social"] == pytest.approx(316)
    assert position["organic_web"] == pytest.approx(64)
    assert position["events"] == pytest.approx(230)


def test_meta_builds_and_row_counts(tiny_home):
    with _con(tiny_home) as con:
        builds = con.execute("select build_id, status, row_counts, tests from meta.builds").fetchall()
        build_id = con.execute("select build_id from marts.build_info").fetchone()[0]
    assert len(builds) == 1 and builds[0][0] == build_id and builds[0][1] == "success"
    import json

    counts, tests = json.loads(builds[0][2]), json.loads(builds[0][3])
    assert counts["referral_funnel"] == 12 and counts["claims"] == 12 and counts["appointments"] == 18
    assert tests["failed"] == 0 and tests["passed"] + tests["warned"] == tests["total"] > 100
    assert not (tiny_home.analytics_db.parent / "analytics.duckdb.wal").exists()


def test_phi_only_in_dim_patients(tiny_home):
    phi = {"first_name", "last_name", "birth_date", "phone", "email", "address_line", "member_id"}
    with _con(tiny_home) as con:
        cols = con.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'marts'"
        ).fetchall()
    leaks = {
        (t, c)
        for t, c in cols
        if c in phi and t not in ("dim_patients", "dim_referring_physicians", "dim_clinics", "dim_therapists")
    }
    assert not leaks
