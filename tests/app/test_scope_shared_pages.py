"""A user limited to some clinics (roles.yml `clinics:`; demo: PTPULSE_DEMO_CLINICS) sees only those clinics on
the pages that used to read practice-wide marts: Referral sources, Attribution & ROI, Data health, and the Overview's
Practice goals. Parts that exist only for the whole practice are left out for them with a note, as their SQL page
holds none of those tables (app/lib/sql_guard.py SCOPE_SHARED_TABLES).

Review s12: a marketing user scoped to CL002 saw 72 sources, 284 referrals in 90 days and $555,762 of net revenue
(the practice's) instead of CL002's 34, 115 and $228,228; the referrer picker listed CL001's physicians with their
practice-wide counts and the report named both clinics; Attribution's tiles and cost per new patient (hard-coded
clinic 'ALL') were the practice's ($101 against the Overview's $82.28 for CL002); Data health showed practice-wide
load, quarantine and link counts; a CL002 manager read the targets the owner set for CL001.

Real two-clinic build (tests/app/multi_practice.py), AppTest for the pages, the query functions on DbReader.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from multi_practice import metrics, open_page, reader, run, sql_frame, writable

from app.lib import goals
from app.lib.formatting import fmt
from app.lib.queries import attribution as qa
from app.lib.queries import referral_sources as qr
from app.lib.queries.base import Filters
from app.lib.sql_guard import SCOPE_SHARED_TABLES

SCOPED = "CL002"


@pytest.fixture(scope="module")
def home(multi_built, tmp_path_factory):
    return writable(multi_built, tmp_path_factory.mktemp("scope_pages") / "home")


def _clinic_name(home, clinic: str) -> str:
    return sql_frame(home, "select clinic_name from marts.dim_clinics where clinic_id = $c", {"c": clinic}).iloc[0, 0]


def _other_clinic(home) -> str:
    return sql_frame(home, "select clinic_id from marts.dim_clinics where clinic_id <> $c", {"c": SCOPED}).iloc[0, 0]


def _filters(at) -> Filters:
    return at.session_state["ptpulse_filters"]


def _frames(at) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe]


# ------------------------------------------------------------------ Referral sources


def test_the_clinic_scorecard_is_the_mart_when_every_clinic_is_listed(home):
    """The scorecard computed from clinic-grained marts repeats referral_source_performance exactly (one formula)."""
    owner = reader(home)
    clinics = tuple(sql_frame(home, "select clinic_id from marts.dim_clinics order by 1")["clinic_id"])
    every = Filters(date.min, date.max, clinics)
    key = ["source_type", "source_id"]
    mart = qr.source_scorecard(owner).sort_values(key).reset_index(drop=True)
    listed = qr.source_scorecard(owner, None, every).sort_values(key).reset_index(drop=True)
    assert len(mart) > 10
    pd.testing.assert_frame_equal(mart, listed, check_dtype=False)
    # and the clinics' own scorecards add up to the practice's referrals per source
    parts = pd.concat([qr.source_scorecard(owner, None, Filters(date.min, date.max, (c,))) for c in clinics])
    summed = parts.groupby(key)[["referrals", "evaluated", "referrals_last_90d"]].sum().reset_index()
    both = mart.merge(summed, on=key, suffixes=("", "_sum"))
    assert len(both) == len(mart)
    for col in ("referrals", "evaluated", "referrals_last_90d"):
        assert (both[col] == both[f"{col}_sum"]).all(), col


def _physician_truth(home, clinic: str) -> dict:
    """CL002's physician referrals straight from the funnel: sources, referrals, open ones, the last 90 days, and
    the net revenue of their episodes (an episode counts for the referral that owns it, when the build marks
    secondary referrals)."""
    cols = set(sql_frame(home, "select * from marts.referral_funnel limit 0").columns)
    own = " and not f.is_secondary_referral" if "is_secondary_referral" in cols else ""
    return (
        sql_frame(
            home,
            f"""
            select count(distinct f.referring_physician_id) as sources, count(*) as referrals,
                   count(*) filter (where f.is_open) as open,
                   count(*) filter (where f.received_at > k.as_of - interval 90 day and f.received_at <= k.as_of)
                       as last_90d,
                   coalesce(sum(e.net_revenue_usd), 0) as revenue
            from marts.referral_funnel f left join marts.episodes e on e.episode_id = f.episode_id{own},
                 (select max(as_of) as as_of from marts.build_info) k
            where f.source_type = 'physician' and f.clinic_id = $c
            """,
            {"c": clinic},
        )
        .iloc[0]
        .to_dict()
    )


def test_a_scoped_marketing_user_sees_their_clinic_on_referral_sources(home):
    truth, other = _physician_truth(home, SCOPED), _other_clinic(home)
    at = open_page(home, "marketing", "referral_sources", clinics=SCOPED)
    m = metrics(at)
    assert m["Sources"] == fmt(truth["sources"], "count")
    assert m["Referrals, last 90 days"] == fmt(truth["last_90d"], "count")
    assert m["Net revenue from these sources"] == fmt(truth["revenue"], "usd")
    open_line = next(c.value for c in at.caption if "still open" in c.value)
    assert f"{truth['open']:,.0f} of {truth['referrals']:,.0f}" in open_line

    # the scorecard table (and so its CSV) holds CL002's figures only
    (card,) = [d for d in _frames(at) if "source_name" in d]
    assert int(card["referrals"].sum()) == truth["referrals"] and len(card) == truth["sources"]

    # the referrer picker: CL002's physicians with CL002's counts; the report names CL002 only
    picker = at.selectbox(key="rs_report_doc")
    counts = sql_frame(
        home,
        "select referring_physician_id as pid, count(*) as n from marts.referral_funnel "
        "where clinic_id = $c and referring_physician_id is not null group by 1",
        {"c": SCOPED},
    ).set_index("pid")["n"]
    assert set(picker.options) == {picker.format_func(p) for p in counts.index}
    assert picker.format_func(picker.value).endswith(f"· {counts[picker.value]} referrals")
    report = next(h.proto.body for h in at.get("html") if "Your referrals to" in h.proto.body)
    assert f"Your referrals to {_clinic_name(home, SCOPED)}:" in report
    assert _clinic_name(home, other) not in report


def test_an_owner_who_picks_a_clinic_gets_its_scorecard(home):
    at = open_page(home, "owner", "referral_sources")
    everyone = metrics(at)
    at.session_state["f_clinics"] = [SCOPED]
    run(at, home)
    assert metrics(at)["Sources"] == fmt(_physician_truth(home, SCOPED)["sources"], "count") != everyone["Sources"]


# ------------------------------------------------------------------ Attribution & ROI


def _months(f: Filters) -> dict:
    return {"start": f.start.replace(day=1), "end": f.end}


def _cost_per_new_patient(home, f: Filters, clinics: list[str] | None) -> float:
    """Spend / new patients of the months with spend reported (a month with NULL spend, as_of's, is left out of
    both sums: tests/app/test_month_only_kpis.py)."""
    where = "clinic_id = 'ALL'" if clinics is None else "list_contains($clinics, clinic_id)"
    row = sql_frame(
        home,
        f"select sum(numerator) / sum(denominator) from marts.practice_kpis where kpi = 'cost_per_new_patient' "
        f"and grain = 'month' and {where} and period_start between $start and $end and numerator is not null",
        {**_months(f), **({} if clinics is None else {"clinics": clinics})},
    )
    return float(row.iloc[0, 0])


def test_cost_per_new_patient_follows_the_clinics_in_view(home):
    owner = reader(home)
    lo = pd.Timestamp(sql_frame(home, "select max(as_of) from marts.build_info").iloc[0, 0]).date()
    f = Filters(date(lo.year - 1, lo.month, 1), lo)
    practice = qa.marketing_new_patients(owner, f)["cost_per_new_patient"]
    assert practice == pytest.approx(_cost_per_new_patient(home, f, None), rel=1e-12)
    one = qa.marketing_new_patients(owner, Filters(f.start, f.end, (SCOPED,)))["cost_per_new_patient"]
    assert one == pytest.approx(_cost_per_new_patient(home, f, [SCOPED]), rel=1e-12)
    assert one != pytest.approx(practice)
    # several clinics: summed spend over summed new patients (= the practice when all are listed)
    both = (SCOPED, _other_clinic(home))
    assert qa.marketing_new_patients(owner, Filters(f.start, f.end, both))["cost_per_new_patient"] == pytest.approx(
        practice, rel=1e-12
    )
    # a user scoped to the clinic gets the clinic's figure without asking for it
    scoped = qa.marketing_new_patients(reader(home, "analyst", (SCOPED,)), f)["cost_per_new_patient"]
    assert scoped == pytest.approx(one, rel=1e-12)


def test_attribution_and_overview_say_the_same_cost_per_new_patient_for_a_clinic(home):
    at = open_page(home, "owner", "overview")
    at.session_state["f_clinics"] = [SCOPED]
    run(at, home)
    overview = metrics(at)["Cost per new patient"]
    with_filter = at.switch_page("app_pages/attribution.py")
    run(with_filter, home)
    assert metrics(with_filter)["Cost per new patient"] == overview
    assert not [c.value for c in with_filter.caption if "not split by clinic" in c.value]


def _not_all_zero(df: pd.DataFrame) -> pd.DataFrame:
    """Without the month-channels of no spend, no credit and no revenue: the mart keeps a spend sheet's explicit 0
    for a month, marketing_mix_monthly cannot tell it from a month with leads and no spend line."""
    cols = ["spend_usd", "attributed_conversions", "attributed_revenue_usd"]
    return df[df[cols].fillna(0).abs().sum(axis=1) > 0]


def test_the_clinic_credit_is_the_mart_when_every_clinic_is_listed(home):
    owner = reader(home)
    lo = pd.Timestamp(sql_frame(home, "select max(as_of) from marts.build_info").iloc[0, 0]).date()
    f = Filters(date(lo.year - 1, lo.month, 1), lo)
    every = Filters(f.start, f.end, tuple(sql_frame(home, "select clinic_id from marts.dim_clinics")["clinic_id"]))
    key = ["model", "channel"]
    mart = qa.attribution_by_channel(owner, f)
    mart = mart[mart["model"].isin(qa.HEURISTIC_MODELS)]
    listed = qa.attribution_by_channel(owner, every)
    both = mart.merge(listed, on=key, suffixes=("", "_c"), how="outer", indicator=True)
    assert (both["_merge"] == "both").all() and len(both) > 20
    for col in ("spend_usd", "attributed_conversions", "attributed_revenue_usd", "roi", "cost_per_new_patient"):
        assert both[col].astype(float).fillna(-1).to_numpy() == pytest.approx(
            both[f"{col}_c"].astype(float).fillna(-1).to_numpy(), abs=1e-6
        ), col
    for model in ("linear", "position"):
        a, b = (_not_all_zero(qa.attribution_monthly(owner, g, model)) for g in (f, every))
        m = a.merge(b, on=["month", "channel"], how="outer", indicator=True)
        assert (m["_merge"] == "both").all() and (m["is_maturing_x"] == m["is_maturing_y"]).all()
        assert m["roi_x"].fillna(-1).to_numpy() == pytest.approx(m["roi_y"].fillna(-1).to_numpy(), abs=1e-9)


def test_a_scoped_analyst_sees_their_clinic_on_attribution_and_no_practice_wide_part(home):
    at = open_page(home, "analyst", "attribution", clinics=SCOPED)
    f = _filters(at)
    spend = sql_frame(
        home,
        "select sum(spend_usd) from marts.marketing_mix_monthly where clinic_id = $c and month between $start and $end",
        {"c": SCOPED, **_months(f)},
    ).iloc[0, 0]
    m = metrics(at)
    assert m["Marketing spend"] == fmt(spend, "usd")
    assert m["Cost per new patient"] == fmt(_cost_per_new_patient(home, f, [SCOPED]), "usd")
    linear = qa.marketing_totals(qa.attribution_by_channel(reader(home, "analyst", (SCOPED,)), f), "linear")
    roi = sql_frame(
        home,
        "select sum(numerator) / sum(denominator) from marts.practice_kpis where kpi = 'attributed_roi' "
        "and grain = 'month' and clinic_id = $c and period_start between $start and $end",
        {"c": SCOPED, **_months(f)},
    ).iloc[0, 0]
    assert linear["roi"] == pytest.approx(roi, rel=1e-9)  # the Overview's attributed ROI of the clinic
    # practice-wide parts (the marketing-mix model, Markov and Shapley): said, not shown
    notes = " ".join(i.value for i in at.info) + " ".join(c.value for c in at.caption)
    assert "whole practice only" in notes
    assert "marts.attribution_paths" not in SCOPE_SHARED_TABLES  # the rule the page follows
    # the paths to a decision are read from clinic-grained referral_touches: the clinic's own, nobody else's
    (paths,) = [d for d in _frames(at) if "path" in d]
    own = qa.paths_in_view(reader(home, "analyst", (SCOPED,)), f)
    assert len(paths) == min(len(own), 25) > 0
    scoped_top = qa.top_paths(reader(home, "analyst", (SCOPED,)), f)
    assert paths["path"].tolist() == scoped_top["path"].tolist()
    theirs = qa.paths_in_view(reader(home), Filters(f.start, f.end, (_other_clinic(home),)))
    assert int(own["conversions"].sum()) + int(theirs["conversions"].sum()) == int(
        qa.paths_in_view(reader(home), f)["conversions"].sum()
    )


# ------------------------------------------------------------------ Data health


PRACTICE_WIDE_TILES = ("Loads", "Rows quarantined", "Refused files", "Rows with their ids", "Cash on claims not loaded")


def _scheduler_ran(home) -> None:
    """The refresh service's status file (logs/service.json, as ptpulse serve writes it): a running scheduler whose
    last run loaded three files of the practice."""
    now = datetime.now(UTC).isoformat()
    run = {"trigger": "schedule", "result": "ok", "finished_at": now, "files_loaded": 3, "problems": []}
    status = {"pid": os.getpid(), "updated_at": now, "next_run": now, "last_success": now, "pending": []}
    (home.home / "logs").mkdir(exist_ok=True)
    (home.home / "logs" / "service.json").write_text(json.dumps({**status, "last_run": run, "history": [run]}))


def test_a_scoped_analyst_gets_no_practice_wide_count_on_data_health(multi_built, tmp_path):
    home = writable(multi_built, tmp_path / "home")
    _scheduler_ran(home)
    at = open_page(home, "analyst", "data_health", clinics=SCOPED)
    m = metrics(at)
    assert not [t for t in PRACTICE_WIDE_TILES if t in m], m
    assert m["Last build"] == "Succeeded" and "Next scheduled run" in m  # the scheduler's state and clock stay
    for frame in _frames(at):  # the cadence table only: source, last load, expected, status
        assert list(frame.columns) == ["Source", "Last loaded", "Expected every", "Status"], list(frame.columns)
    assert any("limited to" in i.value for i in at.info)
    assert not [t for t in at.markdown if "Files loaded" in t.value or "Recent runs" in t.value]
    # an unscoped analyst still gets the counts and the runs
    everyone = open_page(home, "analyst", "data_health")
    assert all(t in metrics(everyone) for t in PRACTICE_WIDE_TILES)
    assert [d for d in _frames(everyone) if "Files loaded" in d]


def test_data_health_names_sources_in_words_and_no_command_line_tool(home):
    codes = set(sql_frame(home, "select source from marts.source_coverage")["source"])
    assert "scheduling_events" in codes
    for role in ("admin", "analyst"):
        at = open_page(home, role, "data_health")
        frames = _frames(at)
        # "Sources in this build" keeps the code beside the export's name: the pages' "load a scheduling export
        # (scheduling_events)" messages quote it
        (coverage,) = [f for f in frames if "is_loaded" in f]
        assert "Scheduling export" in set(coverage["export"]) and "scheduling_events" in set(coverage["source"])
        shown = [set(f[c].astype(str)) for f in frames if "is_loaded" not in f for c in ("source", "Source") if c in f]
        assert len(shown) >= 3 and all(not names & codes for names in shown), role
        assert "Scheduling export" in set().union(*shown)
        text = " ".join(str(v) for d in _frames(at) for v in d.get("message", pd.Series(dtype=str)).tolist())
        assert "raw._quarantine" not in text and "ptpulse status" not in text, role
        if role == "admin":
            assert "Rejected rows" in text


# ------------------------------------------------------------------ Practice goals


def test_a_clinic_manager_sees_the_practice_targets_and_their_clinic_s_only(home):
    other = _other_clinic(home)
    goals.set_goal(home.app_db, "no_show_rate", 0.07, "north.owner@clinic.com", "owner", clinic_id=other)
    goals.set_goal(home.app_db, "no_show_rate", 0.09, "owner@clinic.com", "owner")
    goals.set_goal(home.app_db, "arrival_rate", 0.9, "owner@clinic.com", "owner", clinic_id=SCOPED)
    mine = goals.current_goals(home.app_db, (SCOPED,))
    assert set(mine["clinic_id"]) == {goals.PRACTICE, SCOPED}
    assert set(goals.history(home.app_db, clinics=(SCOPED,))["clinic_id"]) == {goals.PRACTICE, SCOPED}
    assert other in set(goals.current_goals(home.app_db)["clinic_id"])  # the owner's (and the digest's) view

    at = open_page(home, "manager", "overview", clinics=SCOPED)
    shown = [d for d in _frames(at) if "set_by" in d]
    assert len(shown) == 2  # targets in force and recent changes
    for frame in shown:
        assert "north.owner@clinic.com" not in set(frame["set_by"])
        assert not {_clinic_name(home, other), other} & set(frame["clinic_id"])
        assert "Whole practice" in set(frame["clinic_id"])
