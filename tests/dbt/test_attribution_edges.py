"""Attribution on two edges of the contracts, on a real build of the tiny practice (tests/dbt/tiny_practice, March
2025: 6 conversions, $1,250 collected) with two changes, built from a copy of its files:

- R02 (physician A, evaluated, $170 collected, no marketing touch) is received without a source: the contract lets
  source_type be blank. `referral_touches` dropped the source touch of such a referral (`where source_channel is
  not null`), so with no touch either it had no path: every model credited 5 conversions and $1,080. Now its path
  is the source touch 'unknown_source' (not marketing, no spend).
- R07's paperwork is received (03-13 09:00) after its evaluation (A13, 03-12 16:00), and a search_ads touch (MT08)
  happens at 03-12 18:00: after the conversion, before receipt. The touch filter compared with the receipt, so MT08
  was on the path, and time decay clamped its negative hours to 0: the biggest weight of the path. Now the path
  ends at the source touch, timed at the evaluation, and MT08 gets nothing.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.dbt.conftest import TINY, build_hand_practice

pytestmark = pytest.mark.slow

MODELS = ("first", "last", "linear", "time_decay", "position")


def _patch(files: dict[str, str]) -> dict[str, str]:
    intake = files["intake_events.csv"]
    for old, new in [
        (  # R02: no source on its received row
            "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,physician,1234567893,",
            "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,,,",
        ),
        (  # R07: received the morning after its evaluation
            "IE21,R07,P07,CL001,received,2025-03-10 15:00:00",
            "IE21,R07,P07,CL001,received,2025-03-13 09:00:00",
        ),
        ("IE22,R07,P07,CL001,outreach,2025-03-10 16:00:00", "IE22,R07,P07,CL001,outreach,2025-03-13 10:00:00"),
        ("IE23,R07,P07,CL001,contacted,2025-03-10 16:00:00", "IE23,R07,P07,CL001,contacted,2025-03-13 10:00:00"),
    ]:
        assert old in intake, old
        intake = intake.replace(old, new)
    files["intake_events.csv"] = intake
    files["marketing_touches.csv"] += "MT08,R07,search_ads,after_eval,2025-03-12 18:00:00\n"
    return files


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(TINY.glob("*.csv"))}
    return build_hand_practice(Path(tmp_path_factory.mktemp("attribution_edges")), _patch(files))


def _all(settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_the_scenario(home):
    assert _all(
        home, "select source_type, source_channel, is_evaluated from marts.referral_funnel where referral_id = 'R02'"
    ) == [(None, None, True)]
    assert _all(home, "select count(*), sum(net_revenue_usd) from marts.episodes") == [(6, 1250)]
    assert _all(
        home, "select count(*) from marts.referral_funnel where is_evaluated and not is_secondary_referral"
    ) == [(6,)]


def test_every_model_credits_every_conversion_and_dollar(home):
    totals = _all(
        home,
        "select model, sum(attributed_conversions), sum(attributed_revenue_usd) from marts.attribution_roi "
        "group by model order by model",
    )
    assert {m for m, *_ in totals} == set(MODELS)
    for model, conversions, revenue in totals:
        assert (conversions, revenue) == (pytest.approx(6), pytest.approx(1250)), model  # was (5, 1080)
    unknown = _all(
        home,
        "select model, bool_or(is_marketing), sum(spend_usd), sum(attributed_conversions), "
        "sum(attributed_revenue_usd) from marts.attribution_roi where channel = 'unknown_source' group by model",
    )
    assert sorted(unknown) == [(m, False, 0, pytest.approx(1), pytest.approx(170)) for m in sorted(MODELS)]
    assert ("unknown_source", 1, 0, 170) in _all(
        home, "select path, conversions, non_conversions, revenue_usd from marts.attribution_paths"
    )


def test_the_overview_roi_and_the_scorecard_agree_with_it(home):
    # the Overview's attributed ROI: linear credit of the paid channels only; the unsourced $170 is not marketing
    (roi,) = _all(
        home,
        "select numerator / denominator from marts.practice_kpis where kpi = 'attributed_roi' and grain = 'month' "
        "and clinic_id = 'ALL' and period_start = date '2025-03-01'",
    )[0]
    (page,) = _all(
        home,
        "select (sum(attributed_revenue_usd) filter (where is_marketing) - sum(spend_usd) filter (where is_marketing))"
        " / sum(spend_usd) filter (where is_marketing) from marts.attribution_roi where model = 'linear'",
    )[0]
    assert roi == pytest.approx(page) == pytest.approx((850 - 1000) / 1000)
    # the source scorecard's sourced rows and the unknown source together are the practice's collected revenue
    (sourced,) = _all(
        home, "select sum(net_revenue_usd) from marts.referral_source_performance where source_type is not null"
    )[0]
    assert float(sourced) + 170 == pytest.approx(1250)


def test_no_touch_after_the_conversion(home):
    path = _all(
        home,
        "select touch_id, channel, touched_at::varchar, is_source_touch from marts.referral_touches "
        "where referral_id = 'R07' order by touch_seq",
    )
    assert path == [
        ("MT04", "social", "2025-03-08 12:00:00", False),
        ("MT05", "organic_web", "2025-03-08 12:00:00", False),
        ("source:R07", "social", "2025-03-12 16:00:00", True),  # at the evaluation, not the late receipt
    ]
    credit = {
        r[0]: r[1:]
        for r in _all(
            home,
            "select touch_id, share_time_decay, credit_time_decay, credit_linear, credit_position "
            "from marts.attribution_touches where referral_id = 'R07'",
        )
    }
    assert "MT08" not in credit  # was on the path with the biggest time-decay weight
    # 99 hours from 03-08 12:00 to 03-12 16:00 (clocks sprang forward on 03-09 in America/Chicago), half-life 7 days
    w = 2 ** (-99 / 168)
    for touch in ("MT04", "MT05"):
        assert credit[touch] == pytest.approx(
            (w / (2 * w + 1), 320 * w / (2 * w + 1), 320 / 3, 64 if touch == "MT05" else 128)
        )
    assert credit["source:R07"] == pytest.approx((1 / (2 * w + 1), 320 / (2 * w + 1), 320 / 3, 128))
    assert ("social > organic_web > social", 1, 0, 320) in _all(
        home, "select path, conversions, non_conversions, revenue_usd from marts.attribution_paths"
    )


def test_paths_are_decided_once_with_their_month(home):
    """Every referral on a path has one decision time (its conversion, or when it counted as not converting), and the
    paths counted by it are attribution_paths: the month cut of the Attribution page starts from the same rows."""
    assert _all(
        home,
        "select count(*) from (select referral_id from marts.referral_touches group by referral_id "
        "having count(distinct decided_at) > 1 or bool_or(is_conversion and is_non_conversion) "
        "or bool_or(is_conversion and decided_at <> converted_at) "
        "or bool_or((is_conversion or is_non_conversion) <> (decided_at is not null)))",
    ) == [(0,)]
    assert _all(home, "select sum(conversions), sum(non_conversions) from marts.attribution_paths") == [(6, 4)]
