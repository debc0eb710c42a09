"""Conservation suite (issue 13): nothing that landed in raw.duckdb is lost or counted twice on its way to the
marts, on the generated small practice at default dirt (the session's build) and at 3% dirt.

- money: charges, payments, contractual adjustments and write-offs that landed (latest version per natural key,
  posted by as_of) are all in the marts: payments in the practice-wide KPIs (net revenue per visit and net
  collection rate numerators), adjustments in the net collection rate denominator, everything per claim in
  the claims mart plus the remittances whose claim row was quarantined (intermediate.int_remittances_attributed);
- every landed referral is one funnel row with exactly one current stage, and an exit only as its stage;
- every landed appointment is one row with exactly one status, and 'scheduled' only without a recorded outcome.
"""

from __future__ import annotations

import pytest

from tests.built import open_built

pytestmark = pytest.mark.slow

STAGES = {"received", "contacted", "scheduled", "evaluated", "plan_of_care", "active", "discharged"}
EXITS = {"declined", "unreachable", "insurance_denied", "eval_no_show", "self_discharged", "lost"}
STATUSES = {"scheduled", "completed", "cancelled", "late_cancelled", "no_show"}
OUTCOMES = "('arrived', 'completed', 'cancelled', 'late_cancelled', 'no_show')"


@pytest.fixture(scope="module")
def dirty_home(tmp_path_factory):
    """The small practice (same seed) with 3% dirt, landed and built by dbt (no ML: the marts are dbt's)."""
    from ingestion.loader import ingest
    from ptpulse.build.orchestrate import build
    from ptpulse.core.config import get_settings
    from seed_data.generator import generate

    out = tmp_path_factory.mktemp("small_dirty")
    generate(out, scale="small", seed=42, dirty=0.03)
    settings = get_settings(tmp_path_factory.mktemp("home_dirty")).ensure()
    ingest([out], settings)
    result = build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture(params=["default_dirt", "dirt_3pct"])
def con(request, small_built):
    settings = small_built if request.param == "default_dirt" else request.getfixturevalue("dirty_home")
    c = open_built(settings.analytics_db)
    c.execute("attach ? as landed (read_only)", [str(settings.raw_db)])
    yield c
    c.close()


def _latest(source: str, key: str, time_col: str) -> str:
    """The landed rows of a raw table, latest version per natural key (the loader's and staging's rule)."""
    return (
        f"(select * from landed.raw.{source} qualify row_number() over (partition by {key} "
        f"order by {time_col} desc, _load_id desc, _line desc) = 1)"
    )


def _landed_money(con) -> dict[str, float]:
    rows = con.execute(f"""select event_type, sum(amount_usd) from {_latest("remittances", "remit_id", "event_at")}
        where cast(event_at as date) <= (select cast(as_of as date) from marts.build_info) group by 1""").fetchall()
    return {k: float(v) for k, v in rows}


def _kpi_total(con, kpi: str) -> tuple[float, float]:
    num, den = con.execute(
        """select sum(numerator), sum(denominator) from marts.practice_kpis
        where clinic_id = 'ALL' and grain = 'month' and kpi = ?""",
        [kpi],
    ).fetchone()
    return float(num), float(den)


def test_charges_landed_equal_charges_in_marts(con):
    landed = con.execute(
        f"select sum(charge_usd), count(*) from {_latest('charges', 'charge_id', 'posted_at')}"
    ).fetchone()
    assert con.execute("select sum(charge_usd), count(*) from marts.charge_lines").fetchone() == landed
    # a claim whose latest version is a void is billed 0, its billed in voided_usd: together, every billed dollar
    billed = con.execute(
        "select sum(billed_usd) filter (where status is distinct from 'voided'), "
        f"coalesce(sum(billed_usd) filter (where status = 'voided'), 0) from {_latest('claims', 'claim_id', 'submitted_at')}"
    ).fetchone()
    assert con.execute("select sum(billed_usd), sum(voided_usd) from marts.claims").fetchone() == billed


def test_cash_landed_equals_cash_in_practice_kpis(con):
    landed = _landed_money(con)
    cash = landed["payer_payment"] + landed["patient_payment"]
    assert _kpi_total(con, "net_revenue_per_visit")[0] == pytest.approx(cash, abs=0.005)
    assert _kpi_total(con, "net_collection_rate")[0] == pytest.approx(cash, abs=0.005)


def test_contractual_adjustments_landed_equal_those_in_practice_kpis(con):
    # net collection rate denominator = charges billed for services by as_of - adjustments posted by as_of
    billed = float(
        con.execute("""select sum(billed_usd) from marts.claims, marts.build_info
        where service_date <= cast(as_of as date)""").fetchone()[0]
    )
    in_kpis = billed - _kpi_total(con, "net_collection_rate")[1]
    assert in_kpis == pytest.approx(_landed_money(con)["contractual_adjustment"], abs=0.005)


@pytest.mark.parametrize(
    "event_type", ["payer_payment", "patient_payment", "contractual_adjustment", "patient_responsibility", "write_off"]
)
def test_every_remittance_dollar_is_in_a_claim_or_attributed(con, event_type):
    column = {
        "payer_payment": "payer_paid_usd",
        "patient_payment": "patient_paid_usd",
        "contractual_adjustment": "contractual_adj_usd",
        "patient_responsibility": "patient_resp_usd",
        "write_off": "write_off_usd",
    }[event_type]
    landed = con.execute(
        f"select coalesce(sum(amount_usd), 0) from {_latest('remittances', 'remit_id', 'event_at')}"
        " where event_type = ?",
        [event_type],
    ).fetchone()[0]
    in_claims = con.execute(f"select sum({column}) from marts.claims").fetchone()[0]
    orphan = con.execute(
        """select coalesce(sum(amount_usd), 0) from intermediate.int_remittances_attributed
        where not claim_known and event_type = ?""",
        [event_type],
    ).fetchone()[0]
    assert in_claims + orphan == landed
    attributed = con.execute(
        "select coalesce(sum(amount_usd), 0) from intermediate.int_remittances_attributed where event_type = ?",
        [event_type],
    ).fetchone()[0]
    assert attributed == landed


def test_every_referral_in_exactly_one_stage(con):
    landed = con.execute("select count(distinct referral_id) from landed.raw.intake_events").fetchone()[0]
    rows = con.execute("select referral_id, current_stage, exit_stage from marts.referral_funnel").fetchall()
    assert len(rows) == len({r[0] for r in rows}) == landed
    assert {r[1] for r in rows} <= STAGES | EXITS
    assert all((r[2] is None) == (r[1] in STAGES) and (r[2] is None or r[2] == r[1]) for r in rows)


def test_every_appointment_in_exactly_one_status(con):
    landed = con.execute("select count(distinct appointment_id) from landed.raw.scheduling_events").fetchone()[0]
    rows = con.execute("select appointment_id, status from marts.appointments").fetchall()
    assert len(rows) == len({r[0] for r in rows}) == landed
    assert {r[1] for r in rows} <= STATUSES
    stuck = con.execute(f"""select count(*) from marts.appointments where status = 'scheduled' and appointment_id in
        (select appointment_id from {_latest("scheduling_events", "event_id", "event_at")}
         where event_type in {OUTCOMES})""").fetchone()[0]
    assert stuck == 0, f"{stuck} appointments with a recorded outcome still 'scheduled'"
    unresolved = con.execute(f"""select count(*) from marts.appointments where status <> 'scheduled'
        and appointment_id not in (select appointment_id from {_latest("scheduling_events", "event_id", "event_at")}
         where event_type in {OUTCOMES})""").fetchone()[0]
    assert unresolved == 0
