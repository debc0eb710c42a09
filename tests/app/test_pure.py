"""Pure helpers: formatting, filters <-> query string, queue assembly, chart builders, refresh status."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import pytest

from app.lib import actions, charts, filters, formatting, refresh
from app.lib import work_queue as wq
from ptpulse.core.config import get_settings


# ------------------------------------------------------------------ formatting
@pytest.mark.parametrize(
    "value,unit,text",
    [
        (0.1234, "pct", "12.3%"),
        (1234.5, "usd", "$1,234"),
        (99.5, "usd", "$99.50"),
        (5.25, "hours", "5.2 h"),
        (3, "count", "3"),
        (None, "pct", "–"),
        (float("nan"), "usd", "–"),
        (7.44, "ratio", "7.44"),
    ],
)
def test_fmt(value, unit, text):
    assert formatting.fmt(value, unit) == text


def test_delta_in_points_and_band_status():
    assert formatting.fmt_delta(0.12, 0.10, "pct") == "+2.0 pts"
    assert formatting.fmt_delta(90, 100, "usd") == "-$10.00"
    assert formatting.fmt_delta(1, None, "pct") is None
    assert formatting.band_status(0.12, None, 0.10) == "above band"
    assert formatting.band_status(0.8, 0.75, 0.85) == "in band"
    assert formatting.band_status(0.5, None, None) == "no band"


def test_kpi_tile_colors_follow_better_direction():
    row = {
        "kpi": "no_show_rate",
        "label": "No-show rate",
        "unit": "pct",
        "better": "lower",
        "healthy_low": None,
        "healthy_high": 0.10,
        "definition": "No-shows / scheduled",
        "value": 0.12,
        "previous": 0.10,
    }
    tile = formatting.kpi_tile(row)
    assert tile.value == "12.0%" and tile.delta == "+2.0 pts" and tile.delta_color == "inverse"
    assert "Healthy ≤ 10.0%" in tile.help and tile.status == "above band"


def test_countdown_and_reference_now():
    now = datetime(2025, 1, 10, 12)
    hours_ahead = (-100.0, -47.5, -0.75, -0.01, 0.0, 0.5, 0.999, 1.0, 30.4, 47.99, 48.0, 500.0)
    due = pd.Series([now + timedelta(hours=h) for h in hours_ahead] + [None])
    texts, hours = formatting.countdowns(due, now)
    assert list(texts) == [
        "overdue by 4 d",
        "overdue by 48 h",
        "overdue by 45 min",
        "overdue by 1 min",
        "due in 0 min",
        "due in 30 min",  # under an hour once read "0 min": hours printed as minutes
        "due in 60 min",
        "due in 1 h",
        "due in 30 h",
        "due in 48 h",
        "due in 2 d",
        "due in 21 d",
        "no due time",
    ]
    assert list(hours[:-1]) == pytest.approx(hours_ahead) and math.isnan(hours.iloc[-1])
    utc = pd.to_datetime(due).dt.tz_localize("UTC")  # an aware time counts by its own wall clock
    assert list(formatting.countdowns(utc, now)[0]) == list(texts)
    old = datetime(2024, 1, 1)
    assert formatting.reference_now(old, now) == old  # stale data: clocks run from as_of
    assert formatting.reference_now(now - timedelta(hours=5), now) == now


# ------------------------------------------------------------------ filters
def test_query_string_round_trip():
    lo, hi = date(2024, 1, 1), date(2025, 6, 30)
    q = filters.to_query(date(2025, 1, 1), date(2025, 3, 31), ["C2"])
    assert q == {"from": "2025-01-01", "to": "2025-03-31", "clinics": "C2"}
    assert filters.from_query(q, lo, hi, ["C1", "C2"], date(2030, 1, 1)) == (
        date(2025, 1, 1),
        date(2025, 3, 31),
        ["C2"],
    )


def test_bad_query_values_fall_back_to_defaults():
    lo, hi = date(2024, 1, 1), date(2025, 6, 30)
    start, end, clinics = filters.from_query(
        {"from": "junk", "to": "2025-01-01", "clinics": "EVIL,C1"}, lo, hi, ["C1"], date(2030, 1, 1)
    )
    assert (start, end) == (hi - timedelta(days=89), hi) and clinics == ["C1"]
    start, end, _ = filters.from_query({"from": "2000-01-01", "to": "2099-01-01"}, lo, hi, [], date(2030, 1, 1))
    assert (start, end) == (lo, hi)


# ------------------------------------------------------------------ work queue assembly
def _candidates() -> pd.DataFrame:
    now = datetime(2025, 1, 10, 12)
    return pd.DataFrame(
        {
            "task_id": ["a:1", "b:2", "c:3"],
            "rule": ["uncontacted_referral", "unsigned_note", "mystery_rule"],
            "clinic_id": ["C1"] * 3,
            "patient_key": ["k1", "k2", "k3"],
            "reason": ["r1", "r2", "r3"],
            "priority": [2, 1, 2],
            "due_at": [now - timedelta(hours=2), now + timedelta(hours=5), now + timedelta(days=3)],
            "appointment_id": [None, None, "AP1"],
        }
    )


def test_assemble_ranks_and_applies_live_state():
    now = datetime(2025, 1, 10, 12)
    states = actions.fold(
        [
            ("a:1", "snooze", "ann", "2025-01-10T10:00:00", json.dumps({"until": "2025-01-11T08:00:00"})),
            ("c:3", "confirm", "bob", "2025-01-10T10:00:00", "{}"),
        ]
    )
    df = wq.assemble(_candidates(), states, now)
    assert df["task_id"].tolist() == ["b:2", "a:1", "c:3"] and df["rank"].tolist() == [1, 2, 3]
    assert df.set_index("task_id").loc["a:1", "sla"] == "overdue by 2 h"
    assert wq.select_view(df, "Open")["task_id"].tolist() == ["b:2"]
    assert wq.select_view(df, "Snoozed")["task_id"].tolist() == ["a:1"]
    assert wq.select_view(df, "Done or lost")["task_id"].tolist() == ["c:3"]
    assert wq.counts(df) == {"open": 1, "overdue": 0, "due_24h": 1, "unassigned": 1, "closed": 1}
    assert wq.rule_label("mystery_rule") == "Mystery rule"


def test_snooze_expires():
    states = actions.fold(
        [("a:1", "snooze", "ann", "2025-01-10T10:00:00", json.dumps({"until": "2025-01-11T08:00:00"}))]
    )
    df = wq.assemble(_candidates(), states, datetime(2025, 1, 12))
    assert df.set_index("task_id").loc["a:1", "in_queue"]


def test_assignee_filter():
    states = actions.fold([("a:1", "claim", "ann", "2025-01-10T10:00:00", "{}")])
    df = wq.assemble(_candidates(), states, datetime(2025, 1, 10))
    assert wq.select_view(df, "All", assignee="Me", me="ann")["task_id"].tolist() == ["a:1"]
    assert wq.select_view(df, "All", assignee="Me", me=" Ann ")["task_id"].tolist() == ["a:1"]  # as an IdP spells it
    assert len(wq.select_view(df, "All", assignee="Unassigned")) == 2


# ------------------------------------------------------------------ charts (AppTest cannot see plotly)
def test_kpi_trend_draws_band_and_line():
    df = pd.DataFrame({"month": pd.date_range("2025-01-01", periods=3, freq="MS"), "value": [0.1, 0.12, 0.09]})
    fig = charts.kpi_trend(df, "No-show rate", "pct", None, 0.10)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert fig.layout.shapes and fig.layout.shapes[0].y1 == 0.10
    assert fig.layout.yaxis.tickformat == ".0%"


def test_empty_frames_give_a_message_not_an_error():
    empty = pd.DataFrame(columns=["month", "value"])
    for fig in [
        charts.kpi_trend(empty, "X", "pct"),
        charts.sankey(pd.DataFrame(columns=["source", "outcome", "referrals"])),
        charts.calibration(pd.DataFrame(columns=["bin", "mean_predicted", "observed_rate", "n"])),
    ]:
        assert fig.layout.annotations and not fig.data


def test_funnel_single_and_grouped():
    one = pd.DataFrame(
        {
            "grp": ["All"] * 3,
            "stage": ["received", "contacted", "scheduled"],
            "stage_label": ["R", "C", "S"],
            "reached": [10, 8, 5],
            "stage_order": [0, 1, 2],
        }
    )
    assert isinstance(charts.funnel(one).data[0], go.Funnel)
    two = pd.concat([one, one.assign(grp="B", reached=[4, 2, 1])])
    fig = charts.funnel(two)
    assert len(fig.data) == 2 and max(fig.data[1].y) == 1.0


def test_sankey_links_sum_to_referrals():
    df = pd.DataFrame(
        {
            "source": ["physician", "physician", "marketing"],
            "outcome": ["Discharged", "In care", "Discharged"],
            "referrals": [5, 3, 2],
        }
    )
    fig = charts.sankey(df)
    assert sum(fig.data[0].link.value) == 10 and len(fig.data[0].node.label) == 4


def test_forecast_fan_has_interval_actuals_and_capacity():
    weeks = pd.date_range("2025-01-06", periods=6, freq="W-MON")
    df = pd.DataFrame(
        {
            "week_start": weeks,
            "actual": [10, 11, 12, None, None, None],
            "yhat": [10, 11, 12, 13, 14, 15],
            "yhat_lower": [8] * 6,
            "yhat_upper": [18] * 6,
        }
    )
    cap = pd.DataFrame({"week_start": weeks, "capacity_visits": [14] * 6})
    names = [t.name for t in charts.forecast_fan(df, "Visits", cap).data]
    assert {"Forecast interval", "Forecast", "Actual", "Therapist capacity"} <= set(names)


def test_attribution_and_paths_charts():
    df = pd.DataFrame(
        {
            "model": ["first", "markov"],
            "channel": ["social", "social"],
            "spend_usd": [100.0, 100.0],
            "attributed_conversions": [2.0, 3.0],
            "attributed_revenue_usd": [500.0, 700.0],
        }
    )
    fig = charts.attribution_compare(df, {"first": "First touch", "markov": "Markov"})
    assert {t.name for t in fig.data} == {"First touch", "Markov"}
    assert len(charts.spend_vs_revenue(df[df.model == "first"], "First").data) == 2
    paths = pd.DataFrame({"path_length": [1, 2], "conversions": [5, 3], "non_conversions": [7, 2]})
    assert len(charts.path_lengths(paths).data) == 2


def test_source_conversion_axis_says_what_is_divided():
    """referral_source_performance.conversion_rate = referrals with a signed initial evaluation / referrals."""
    card = pd.DataFrame(
        {
            "referrals": [10, 4],
            "conversion_rate": [0.6, 0.25],
            "net_revenue_usd": [900.0, 100.0],
            "is_fading": [False, True],
            "source_name": ["Dr A", "Dr B"],
        }
    )
    title = charts.source_scatter(card).layout.yaxis.title.text
    assert title == "Conversion (signed evaluations / referrals)"


# ------------------------------------------------------------------ refresh runner
def test_refresh_status_reads_progress_and_exit_code(tmp_path):
    settings = get_settings(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "refresh-x.log"
    log.write_text("\x1b[1mrefresh: ingest\x1b[0m 1/3\rrefresh: build 2/3\n[ptpulse-app] exit code 0\n")
    (logs / "app_refresh.json").write_text(
        json.dumps({"pid": 999999, "log": str(log), "actor": "a", "started_at": "t"})
    )
    st = refresh.status(settings)
    assert not st.running and st.ok and st.last_line == "refresh: build 2/3"


def test_refresh_runs_the_real_cli_in_the_background(tmp_path):
    """A refresh that meets a held pipeline lock exits 3 quickly; the app reports it from the log."""
    import time

    from ptpulse.core.lock import pipeline_lock

    settings = get_settings(tmp_path).ensure()
    with pipeline_lock(settings, "test"):
        started = refresh.start(settings, "admin@x")
        assert started.log_path
        deadline = time.time() + 180  # a hang guard on a loaded box
        while refresh.status(settings).running and time.time() < deadline:
            time.sleep(0.2)
    st = refresh.status(settings)
    assert st.exit_code == 3 and not st.ok
    assert "Another pipeline command is running" in st.tail


def test_leakage_charts_show_the_range():
    from app.lib import leakage

    raw = pd.DataFrame(
        {
            "category": ["no_shows", "unrecovered_denials", "no_shows"],
            "month": pd.to_datetime(["2026-09-01", "2026-09-01", "2026-10-01"]),
            "events": [4, 1, 2],
            "units_at_stake": [4.0, 1.0, 2.0],
            "dollars_at_stake": [400.0, 150.0, 200.0],
            "assumption": ["a", "b", "a"],
        }
    )
    df = leakage.with_range(raw).assign(label=lambda d: d["category"].map(leakage.label))
    totals = leakage.by_category(df)
    fig = charts.leakage_by_category(totals)
    low, rest = fig.data[0], fig.data[1]
    by_label = dict(zip(low.y, low.x, strict=True))
    assert by_label["No-shows"] == pytest.approx(300.0)  # 50% of $600 at stake
    assert dict(zip(rest.y, rest.x, strict=True))["No-shows"] == pytest.approx(300.0)  # up to 100%
    assert by_label["Denials never recovered"] == pytest.approx(150.0)
    trend = charts.leakage_trend(df)
    high_line = [t for t in trend.data if t.name == "High estimate (all causes)"][0]
    assert list(high_line.y) == pytest.approx([550.0, 200.0])


def test_a_maturing_kpi_withholds_its_verdict_and_says_how_much_is_in():
    row = {
        "kpi": "denial_rate",
        "label": "Denial rate",
        "unit": "pct",
        "better": "lower",
        "healthy_low": None,
        "healthy_high": 0.05,
        "definition": "Denied / adjudicated",
        "maturity": "Claims wait for a payer.",
        "value": 0.045,
        "previous": 0.062,
        "cohort": 1000.0,
        "pending": 320.0,
        "is_maturing": True,
    }
    tile = formatting.kpi_tile(row)
    assert tile.status == "maturing" and tile.label == "Denial rate (maturing)"
    assert "680 of 1,000 (68%)" in tile.help and "withheld" in tile.help
    assert tile.delta_color == "off"  # no green arrow for an 'improvement' that is only immaturity
    mature = formatting.kpi_tile({**row, "is_maturing": False})
    assert mature.status == "in band" and mature.delta_color == "inverse"


def test_kpi_trend_greys_out_maturing_months():
    df = pd.DataFrame(
        {
            "month": pd.date_range("2025-01-01", periods=4, freq="MS"),
            "value": [0.06, 0.07, 0.05, 0.01],
            "is_maturing": [False, False, True, True],
        }
    )
    fig = charts.kpi_trend(df, "Denial rate", "pct", None, 0.05)
    solid, grey = fig.data
    assert [v is not None and not math.isnan(v) for v in solid.y] == [True, True, False, False]
    assert grey.name == "Still maturing" and grey.line.dash == "dot"
    assert [v is not None and not math.isnan(v) for v in grey.y] == [False, True, True, True]
