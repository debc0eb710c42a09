"""The build's clock (as_of) and elapsed hours across a DST change, on copies of the hand-built tiny practice
(tests/dbt/tiny_practice, clinic CL001 in America/Chicago; as_of 2025-03-31 17:00 from A09's booking), landed
through the real loader and built by real dbt.

- Late cash: claim C18 is paid $150 (and adjusted $120) on 2025-04-03 12:00, after the last intake or scheduling
  event. "Now" is the latest recorded event of any kind, so the payment is inside every cash figure (before: the
  KPIs said $1,250 collected while payer mix said $1,400 and the claims mart showed C18 closed by it).
- Post-dated cash: a payment dated after the moment its file was loaded (an 835's EFT date ahead of its arrival)
  does not make "now" later than that load, read on the clinic's wall clock; it waits, in the KPIs and in payer
  mix alike, until as_of reaches its date.
- DST: R09 is received Sat 2025-03-08 20:00 CST and reached Sun 03-09 08:00 CDT: 11 hours passed, not 12. R07's
  time-decay weights count elapsed hours too (two touches before the change, the source touch and the evaluation
  after it).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "tiny_practice"
CHICAGO = ZoneInfo("America/Chicago")
COLLECTED = 1250  # the tiny practice's payments, all in March
HALF_LIFE_H = 7 * 24  # var time_decay_half_life_days


def _append(path: Path, lines: list[str]) -> None:
    path.write_text(path.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: expected one '{old[:40]}'"
    path.write_text(text.replace(old, new))


def _build(tmp_path_factory, name: str, edit) -> object:
    src = tmp_path_factory.mktemp(name) / "csv"
    shutil.copytree(TINY, src)
    edit(src)
    settings = get_settings(tmp_path_factory.mktemp(f"{name}_home")).ensure()
    results = ingest([src], settings)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.message) for r in results
    ]
    result = build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture(scope="module")
def late_cash_home(tmp_path_factory):
    def edit(src: Path) -> None:
        _append(
            src / "remittances.csv",
            [
                "RM109,C18,PY1,payer_payment,2025-04-03 12:00:00,150.00,,,CHK109",
                "RM110,C18,PY1,contractual_adjustment,2025-04-03 12:00:00,120.00,CO,45,CHK109",
            ],
        )
        _replace(
            src / "intake_events.csv",
            "IE27,R09,P09,CL001,received,2025-03-24 11:00:00,",
            "IE27,R09,P09,CL001,received,2025-03-08 20:00:00,",
        )
        _append(
            src / "intake_events.csv",
            [
                "IE941,R09,P09,CL001,outreach,2025-03-09 08:00:00,,,,,,,call,reached,,fd1",
                "IE942,R09,P09,CL001,contacted,2025-03-09 08:00:00,,,,,,,,,,fd1",
            ],
        )

    return _build(tmp_path_factory, "late_cash", edit)


@pytest.fixture(scope="module")
def post_dated_home(tmp_path_factory):
    # the latest time the contracts let through (today+1d: the next midnight of the loader's clock), later than the
    # load on every US clinic's wall clock
    with duckdb.connect() as con:
        when = f"{con.execute('select current_date + 1').fetchone()[0]:%Y-%m-%d} 00:00:00"

    def edit(src: Path) -> None:
        _append(src / "remittances.csv", [f"RM120,C18,PY1,payer_payment,{when},150.00,,,CHK120"])

    return _build(tmp_path_factory, "post_dated", edit), datetime.fromisoformat(when)


def _one(settings, sql: str):
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute(sql).fetchone()


def _cash(settings) -> dict[str, float]:
    """Payments as each place counts them: landed in raw, the KPIs (day and month grain), payer mix, claims."""
    with duckdb.connect(str(settings.raw_db), read_only=True) as raw:
        landed = raw.execute(
            "select sum(amount_usd) from raw.raw.remittances where event_type in ('payer_payment', 'patient_payment')"
        ).fetchone()[0]
    kpi = "from marts.practice_kpis where clinic_id = 'ALL' and kpi = 'net_revenue_per_visit'"
    return {
        "landed": float(landed),
        "kpi_day": _one(settings, f"select sum(numerator) {kpi} and grain = 'day'")[0],
        "kpi_month": _one(settings, f"select sum(numerator) {kpi} and grain = 'month'")[0],
        "payer_mix": _one(settings, "select sum(collected_usd) from marts.payer_mix")[0],
        "claims": float(_one(settings, "select sum(net_collected_usd) from marts.claims")[0]),
    }


def test_cash_posted_after_the_last_visit_moves_now_and_counts_everywhere(late_cash_home):
    assert _one(late_cash_home, "select as_of, as_of_source from marts.build_info") == (
        datetime(2025, 4, 3, 12, 0),
        "billing",
    )
    cash = _cash(late_cash_home)
    assert cash == pytest.approx(dict.fromkeys(cash, COLLECTED + 150))
    april = "where clinic_id = 'ALL' and grain = 'month' and period_start = date '2025-04-01'"
    assert _one(late_cash_home, f"select numerator from marts.practice_kpis {april} and kpi = 'net_revenue_per_visit'")[
        0
    ] == pytest.approx(150)
    assert _one(
        late_cash_home, "select ar_age_bucket, insurance_balance_usd from marts.claims where claim_id = 'C18'"
    ) == (
        "closed",
        0,
    )
    # the clock did not run past what the data knows: A09 (04-03 14:00) and A16 (04-02) are still ahead or open
    assert _one(
        late_cash_home, "select is_future, is_unresolved from marts.appointments where appointment_id = 'A09'"
    ) == (True, False)


def test_post_dated_cash_never_moves_now_past_its_load(post_dated_home):
    post_dated_home, paid_at = post_dated_home
    with duckdb.connect(str(post_dated_home.raw_db), read_only=True) as raw:
        loaded = raw.execute("select max(finished_at) from raw.raw._loads").fetchone()[0]
    loaded_local = loaded.replace(tzinfo=UTC).astimezone(CHICAGO).replace(tzinfo=None)
    as_of, source = _one(post_dated_home, "select as_of, as_of_source from marts.build_info")
    assert (as_of, source) == (loaded_local, "billing")
    assert as_of < paid_at
    cash = _cash(post_dated_home)
    # held back alike by the KPIs and payer mix until as_of reaches its date; the claim shows what the payer said
    assert cash["landed"] == pytest.approx(COLLECTED + 150)
    assert (cash["kpi_day"], cash["kpi_month"], cash["payer_mix"]) == pytest.approx((COLLECTED,) * 3)
    assert cash["claims"] == pytest.approx(COLLECTED + 150)


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=CHICAGO).astimezone(UTC)


def test_hours_to_contact_count_the_hour_lost_to_dst(late_cash_home):
    assert _one(
        late_cash_home,
        "select received_at, first_contact_at, hours_to_contact from marts.referral_funnel where referral_id = 'R09'",
    ) == (datetime(2025, 3, 8, 20), datetime(2025, 3, 9, 8), 11.0)
    # the KPI sums the funnel's hours: the tiny practice's 54.5 over 11 referrals, plus R09's 11
    march = _one(
        late_cash_home,
        "select numerator, denominator from marts.practice_kpis where clinic_id = 'ALL' and grain = 'month' "
        "and period_start = date '2025-03-01' and kpi = 'hours_to_first_contact'",
    )
    assert march == pytest.approx((54.5 + 11, 12))
    # R03 received Tue 03-04 10:00 CST, evaluated Tue 03-11 09:00 CDT: 166 hours, not 167
    assert _one(late_cash_home, "select hours_to_eval from marts.referral_funnel where referral_id = 'R03'")[0] == 166


def test_time_decay_weights_count_elapsed_hours(late_cash_home):
    with duckdb.connect(str(late_cash_home.analytics_db), read_only=True) as con:
        rows = con.execute(
            "select touched_at, converted_at, share_time_decay from marts.attribution_touches "
            "where referral_id = 'R07' order by touch_seq"
        ).fetchall()
    # MT04 and MT05 Sat 03-08 12:00 CST, the source touch at receipt Mon 03-10 15:00 CDT, the evaluation Wed 03-12
    # 16:00 CDT: 99 and 49 hours before the conversion (the wall clocks say 100 and 49)
    assert [(_utc(c) - _utc(t)).total_seconds() / 3600 for t, c, _ in rows] == [99, 99, 49]
    weights = [2 ** (-(_utc(c) - _utc(t)).total_seconds() / 3600 / HALF_LIFE_H) for t, c, _ in rows]
    expected = [w / sum(weights) for w in weights]
    assert [r[2] for r in rows] == pytest.approx(expected, abs=1e-9)
