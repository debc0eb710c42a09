"""The generated small practice (1 clinic x 2 years, seed 42, default dirt) through the real loader and the
real dbt build: every mart is populated and the KPIs fall in the realistic bands the generator targets
(kpi_definitions.csv healthy bands; seed_data/params.py)."""

from __future__ import annotations

import duckdb
import pytest

pytestmark = pytest.mark.slow


def _overall(con, kpi: str, where: str = "") -> float:
    num, den = con.execute(
        f"""select sum(numerator), sum(denominator) from marts.practice_kpis
        where clinic_id = 'ALL' and grain = 'month' and kpi = ? {where}""",
        [kpi],
    ).fetchone()
    return num / den


@pytest.fixture(scope="module")
def con(small_built):
    c = duckdb.connect(str(small_built.analytics_db), read_only=True)
    yield c
    c.close()


# mature = service months that ended at least 60 days before as_of (collections have had time to arrive)
MATURE = "and period_start < (select cast(date_trunc('month', as_of - interval 90 day) as date) from marts.build_info)"

BANDS = [
    ("no_show_rate", "", 0.06, 0.14),  # ~10% US PT mean
    ("visits_per_discharge", "", 6.0, 11.0),
    ("units_per_visit", "", 3.0, 4.0),
    ("net_revenue_per_visit", MATURE, 95.0, 115.0),  # ~$100-110
    ("net_revenue_per_visit", "", 90.0, 115.0),  # cash basis: honest over the whole history too
    # (not net_collection_rate over the whole history: its first months bill before anything is paid)
    ("denial_rate", "", 0.04, 0.11),  # ~5-10%
    ("early_dropout_rate", "", 0.12, 0.30),  # ~20%
    ("poc_completion_rate", "", 0.20, 0.55),  # most practices < 50%
]


@pytest.mark.parametrize("kpi,where,low,high", BANDS, ids=[b[0] for b in BANDS])
def test_kpi_in_realistic_band(con, kpi, where, low, high):
    value = _overall(con, kpi, where)
    assert low <= value <= high, f"{kpi} = {value:.4f}, expected {low}-{high}"


RECENT = "and period_start >= (select cast(date_trunc('month', as_of - interval 90 day) as date) from marts.build_info)"


@pytest.mark.parametrize("kpi,low,high", [("net_collection_rate", 0.85, 1.05), ("net_revenue_per_visit", 85.0, 125.0)])
def test_cash_kpis_honest_for_recent_periods(con, kpi, low, high):
    """Cash basis: the last months are not understated by claims still waiting for payment (they used to show
    a 42.7% net collection rate and ~$61 per visit on this practice)."""
    value = _overall(con, kpi, RECENT)
    assert low <= value <= high, f"{kpi} over the last ~90 days = {value:.4f}, expected {low}-{high}"


def test_every_kpi_and_mart_populated(con):
    kpis = {
        r[0] for r in con.execute("select distinct kpi from marts.practice_kpis where clinic_id = 'ALL'").fetchall()
    }
    defs = {r[0] for r in con.execute("select kpi from marts.kpi_definitions").fetchall()}
    assert kpis == defs
    for mart in [
        "referral_funnel",
        "appointments",
        "episodes",
        "claims",
        "charge_lines",
        "visits",
        "referral_source_performance",
        "attribution_touches",
        "attribution_roi",
        "attribution_paths",
        "revenue_leakage",
        "work_queue_candidates",
        "dim_patients",
        "dim_clinics",
        "dim_therapists",
        "dim_payers",
        "dim_referring_physicians",
        "data_quality",
        "build_info",
    ]:
        assert con.execute(f"select count(*) from marts.{mart}").fetchone()[0] > 0, mart


def test_funnel_and_queue_cover_the_design(con):
    stages = {r[0] for r in con.execute("select distinct current_stage from marts.referral_funnel").fetchall()}
    assert {"discharged", "active", "declined", "unreachable", "eval_no_show", "self_discharged"} <= stages
    rules = {r[0] for r in con.execute("select distinct rule from marts.work_queue_candidates").fetchall()}
    # contacted_unscheduled needs a referral reached but not booked for 48 h and not lost: the generated practice
    # makes one only by chance (a generator change moved its one case to `lost`), so that rule is proven on
    # hand-built cases instead (test_tiny_practice, test_kpi_defects::test_defect4..., test_build_serve)
    assert {"active_no_future_appt", "auth_expiring", "unsigned_note"} <= rules
    # nothing stale in the daily queue (unsigned notes from 2024 used to appear): every task arose recently
    # enough for its rule's window, and the reason says the window
    # (created_at is when the condition began: an authorization's window is its validity, KX's the calendar year,
    # whose task arose the day the year's charges reached the warning share)
    stale = con.execute("""select rule, count(*) from marts.work_queue_candidates, marts.build_info
        where rule not in ('auth_expiring', 'medicare_kx_threshold') and created_at < as_of - interval 31 day
            or rule = 'medicare_kx_threshold' and year(created_at) <> year(as_of)
            or created_at > as_of
        group by rule""").fetchall()
    assert not stale
    reasons = con.execute("""select count(*) filter (where reason not like '%last 30 days%'), count(*)
        from marts.work_queue_candidates where rule = 'unsigned_note'""").fetchone()
    assert reasons[0] == 0 and reasons[1] > 0
    fading = con.execute("select count(*) from marts.referral_source_performance where is_fading").fetchone()[0]
    assert fading >= 1  # the generator fades ~12% of physicians over the last 180 days
    quarantined = con.execute("select sum(rows) from marts.data_quality where rule <> '(none)'").fetchone()[0]
    assert quarantined > 0


def test_reconciliation_with_raw(small_built, con):
    """Claims dollars equal raw after the latest-wins dedup (also a dbt test; here against raw directly); a claim
    whose latest version is a void is billed nowhere (marts.claims.voided_usd holds it)."""
    raw = duckdb.connect(str(small_built.raw_db), read_only=True)
    try:
        billed_raw = raw.execute("""select sum(billed_usd) from (select * from raw.raw.claims qualify row_number()
            over (partition by claim_id order by submitted_at desc, _load_id desc, _line desc) = 1)
            where status is distinct from 'voided'""").fetchone()[0]
        referrals_raw = raw.execute("select count(distinct referral_id) from raw.raw.intake_events").fetchone()[0]
    finally:
        raw.close()
    assert con.execute("select sum(billed_usd) from marts.claims").fetchone()[0] == billed_raw
    assert con.execute("select count(*) from marts.referral_funnel").fetchone()[0] == referrals_raw
