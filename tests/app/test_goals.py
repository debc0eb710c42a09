"""The owner's own goals: tile status against target and band (pure), the append-only goal store on real
SQLite (latest wins, clears, per clinic, audited, refused for roles that may not set targets), and the
Overview with goals in AppTest (owner sets a target through the form, the tile shows it, a manager sees it
without the form)."""

from __future__ import annotations

import math
import sqlite3

import pytest
from app_helpers import open_page, rerun
from ui_sweep import problems

from app.lib import goals
from app.lib.formatting import goal_status, kpi_tile, tile_status

# ------------------------------------------------------------------------------------------ pure status


def test_goal_status_follows_the_kpis_better_direction():
    assert goal_status(0.08, 0.10, "lower") == "met"  # no-show rate under its target
    assert goal_status(0.12, 0.10, "lower") == "missed"
    assert goal_status(0.85, 0.80, "higher") == "met"  # arrival rate above its target
    assert goal_status(0.75, 0.80, "higher") == "missed"
    assert goal_status(0.80, 0.80, "higher") == "met"  # exactly on target counts as met
    assert goal_status(0.80, None, "higher") == "no target"
    assert goal_status(None, 0.80, "higher") == "no value"
    assert goal_status(float("nan"), 0.80, "higher") == "no value"
    assert goal_status(0.5, 0.8, "higher", maturing=True) == "maturing"


def test_tile_status_gives_band_and_goal_with_the_gap_in_the_kpis_unit():
    s = tile_status(0.112, "pct", "lower", low=None, high=0.10, target=0.10)
    assert (s.band, s.goal) == ("above band", "missed")
    assert s.goal_text == "Target 10.0% · missed by 1.2 pts"
    s = tile_status(104.0, "usd", "higher", low=None, high=None, target=100.0)
    assert (s.band, s.goal, s.goal_text) == ("no band", "met", "Target $100 · met, $4.00 better")
    s = tile_status(6.0, "days", "lower", target=6.0)
    assert s.goal_text == "Target 6.0 d · met"  # no "better by 0"
    s = tile_status(0.65, "pct", "higher", low=0.6, high=None, target=0.7, maturing=True)
    assert (s.band, s.goal) == ("maturing", "maturing")  # no verdict on a number still moving
    assert "judged once the period matures" in s.goal_text
    assert tile_status(0.65, "pct", "higher", low=0.6).goal_text == ""


def _row(**extra):
    row = {
        "kpi": "no_show_rate",
        "label": "No-show rate",
        "unit": "pct",
        "better": "lower",
        "healthy_low": None,
        "healthy_high": 0.10,
        "definition": "No-shows / appointments.",
        "value": 0.11,
        "previous": 0.12,
        "last_year": 0.09,
        "target": 0.08,
        "is_maturing": False,
    }
    return {**row, **extra}


@pytest.mark.parametrize(
    "compare,delta,words",
    [
        ("previous", "-1.0 pts", "previous period"),
        ("last_year", "+2.0 pts", "same period last year"),
        ("target", "+3.0 pts", "target"),
    ],
)
def test_kpi_tile_delta_follows_the_chosen_comparison(compare, delta, words):
    tile = kpi_tile(_row(), compare)
    assert tile.delta == delta
    assert f"Change is against the {words}" in tile.help
    assert (tile.goal, tile.goal_text) == ("missed", "Target 8.0% · missed by 3.0 pts")
    assert tile.delta_color == "inverse"  # lower is better: a rise shows red


def test_kpi_tile_against_a_missing_target_says_so_and_shows_no_arrow():
    tile = kpi_tile(_row(target=None), "target")
    assert tile.delta is None
    assert "none set for this KPI" in tile.help
    assert tile.goal == "no target" and tile.goal_text == ""


# ------------------------------------------------------------------------------------------ the store


@pytest.fixture
def db(tmp_path):
    return tmp_path / "app.sqlite"


def test_latest_target_wins_per_kpi_and_clinic_and_history_keeps_every_change(db):
    goals.set_goal(db, "no_show_rate", 0.10, "owner@x.com", "owner")
    goals.set_goal(db, "no_show_rate", 0.08, "owner@x.com", "owner")
    goals.set_goal(db, "no_show_rate", 0.07, "owner@x.com", "owner", clinic_id="CL002")
    goals.set_goal(db, "arrival_rate", 0.85, "admin@x.com", "admin")
    cur = goals.current_goals(db)
    got = {(r.kpi, r.clinic_id): r.target for r in cur.itertuples()}
    assert got == {("no_show_rate", "ALL"): 0.08, ("no_show_rate", "CL002"): 0.07, ("arrival_rate", "ALL"): 0.85}
    assert list(cur.columns) == ["kpi", "clinic_id", "target", "set_by", "set_at"]
    hist = goals.history(db)
    assert len(hist) == 4
    assert hist.iloc[0]["kpi"] == "arrival_rate"  # newest first
    assert sorted(hist[hist["kpi"] == "no_show_rate"]["target"].tolist()) == [0.07, 0.08, 0.10]


def test_clearing_a_target_removes_it_from_current_goals_but_not_from_history(db):
    goals.set_goal(db, "denial_rate", 0.05, "owner@x.com", "owner")
    goals.set_goal(db, "denial_rate", None, "owner@x.com", "owner")
    assert goals.current_goals(db).empty
    hist = goals.history(db)
    assert len(hist) == 2 and math.isnan(hist.iloc[0]["target"])


def test_every_change_is_in_the_audit_log_in_the_same_transaction(db):
    gid = goals.set_goal(db, "denial_rate", 0.05, "owner@x.com", "owner", clinic_id="CL001")
    goals.set_goal(db, "denial_rate", None, "owner@x.com", "owner", clinic_id="CL001")
    with sqlite3.connect(db) as con:
        rows = con.execute("select actor, role, event, detail from audit_log order by id").fetchall()
    assert [r[2] for r in rows] == ["goal.set", "goal.cleared"]
    assert rows[0][0] == "owner@x.com" and rows[0][1] == "owner"
    assert f'"goal_id": {gid}' in rows[0][3] and '"clinic_id": "CL001"' in rows[0][3]


@pytest.mark.parametrize("role", ["manager", "front_desk", "marketing", "analyst"])
def test_roles_that_may_not_set_targets_are_refused_and_nothing_is_written(db, role):
    with pytest.raises(goals.GoalError, match="may not set targets"):
        goals.set_goal(db, "no_show_rate", 0.1, "someone@x.com", role)
    assert goals.current_goals(db).empty and goals.history(db).empty


@pytest.mark.parametrize("target", [float("nan"), float("inf"), "ten"])
def test_a_target_that_is_not_a_finite_number_is_refused_without_echoing_it(db, target):
    with pytest.raises(goals.GoalError) as exc:
        goals.set_goal(db, "no_show_rate", target, "owner@x.com", "owner")
    assert "ten" not in str(exc.value) and "8 for 8%" in str(exc.value)
    assert goals.history(db).empty


def test_unknown_kpi_is_refused(db):
    with pytest.raises(goals.GoalError, match="unknown KPI"):
        goals.set_goal(db, "made_up", 1.0, "owner@x.com", "owner", known_kpis=["no_show_rate"])


def test_reading_a_missing_store_returns_empty_frames(tmp_path):
    assert goals.current_goals(tmp_path / "none.sqlite").empty
    assert goals.history(tmp_path / "none.sqlite").empty


def test_targets_for_prefers_the_clinics_own_target_when_one_clinic_is_in_view(db):
    goals.set_goal(db, "no_show_rate", 0.10, "o@x.com", "owner")
    goals.set_goal(db, "no_show_rate", 0.07, "o@x.com", "owner", clinic_id="CL002")
    goals.set_goal(db, "arrival_rate", 0.80, "o@x.com", "owner")
    cur = goals.current_goals(db)
    assert goals.targets_for(cur, ["CL002"]) == {"no_show_rate": 0.07, "arrival_rate": 0.80}
    assert goals.targets_for(cur, ["CL001"]) == {"no_show_rate": 0.10, "arrival_rate": 0.80}
    assert goals.targets_for(cur, ["CL001", "CL002"]) == {"no_show_rate": 0.10, "arrival_rate": 0.80}
    assert goals.targets_for(cur, None) == {"no_show_rate": 0.10, "arrival_rate": 0.80}


def test_form_units_round_trip():
    assert goals.to_stored(8, "pct") == pytest.approx(0.08)
    assert goals.to_form(0.08, "pct") == pytest.approx(8)
    assert goals.to_stored(120, "usd") == 120 and goals.to_form(None, "pct") is None


# ------------------------------------------------------------------------------------------ AppTest


@pytest.fixture
def goal_home(app_home, copy_home):
    return copy_home(app_home)


def test_owner_sets_a_target_on_the_overview_and_the_tile_shows_it(goal_home):
    at = open_page(goal_home, "owner", "overview")
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="ov_goal_kpi").set_value("no_show_rate")
    at.selectbox(key="ov_goal_clinic").set_value("ALL")
    at.number_input(key="ov_goal_value").set_value(5.0)
    at.button(key="FormSubmitter:ov_goal_form-Save target").click()
    rerun(at, goal_home)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert goals.current_goals(goal_home.app_db).set_index("kpi")["target"].to_dict() == {"no_show_rate": 0.05}
    captions = " ".join(c.value for c in at.caption)
    assert "Target 5.0% · missed by" in captions  # the small practice's no-show rate is above 5%
    assert any("set to 5.0%" in s.value for s in at.success)
    # compare with the target: the no-show tile's arrow is value - target
    at.button_group(key="ov_compare").set_value("target")
    rerun(at, goal_home)
    tile = next(m for m in at.metric if m.label.startswith("No-show rate"))
    assert tile.delta and tile.delta.startswith("+") and tile.delta.endswith("pts")
    assert problems(at) == []

    with sqlite3.connect(goal_home.app_db) as con:
        events = [r[0] for r in con.execute("select event from audit_log where event like 'goal.%'")]
    assert events == ["goal.set"]

    manager = open_page(goal_home, "manager", "overview")
    assert not manager.exception
    assert "Target 5.0%" in " ".join(c.value for c in manager.caption)
    assert not [f for f in manager.get("form")], "managers see targets, not the form"
    assert any("set by the practice owner" in c.value for c in manager.caption)
