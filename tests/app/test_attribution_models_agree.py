"""Attribution & ROI: whichever model is picked, spend and the channels' marketing flag are the same (only the
credited conversions and revenue differ), every conversion is credited, and the paths to a decision follow the
page's months and clinics.

A real build of the tiny practice (tests/dbt/tiny_practice, March 2025), from a copy of its files, with:
- a second clinic CL002 with social spend ($100), and word_of_mouth spend ($250) in CL001 with no touch at all;
- R07 (social lead, $320 collected) moved to CL002 with an extra `employer` touch, and $150 of employer spend in
  CL002: employer's only conversion is in CL002;
- R02 (evaluated, $170) received without a source and with no touch (the contract allows a blank source_type).
`ml.attribution_credit` is written by ml/attribution.attribute() from the build's marts.attribution_paths, as the
ML step does.

Review: Markov and Shapley showed $1,250 of marketing spend against $1,500 for the heuristic models (word of mouth's
spend has no Markov/Shapley row and was dropped), and with CL001 picked, employer (no heuristic row in CL001) lost
its marketing flag, so its Markov revenue left "revenue credited to marketing". R02 vanished from every model
(5 conversions / $1,080 instead of 6 / $1,250). "Paths to a decision" showed the whole history of every clinic
whatever the page's months and clinics.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from multi_practice import metrics, open_page, reader, run, sql_frame

from app.lib.formatting import fmt
from app.lib.queries import attribution as qa
from app.lib.queries.base import Filters
from ingestion.loader import ingest
from ml.attribution import attribute
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[1] / "dbt" / "tiny_practice"
MARCH = Filters(date(2025, 3, 1), date(2025, 3, 31))
VIEWS = {
    "all clinics": MARCH,
    "CL001": Filters(MARCH.start, MARCH.end, ("CL001",)),
    "CL002": Filters(MARCH.start, MARCH.end, ("CL002",)),
    "both listed": Filters(MARCH.start, MARCH.end, ("CL001", "CL002")),
}
CREDIT = ["attributed_conversions", "attributed_revenue_usd"]


def _patch(files: dict[str, str]) -> dict[str, str]:
    files["clinics.csv"] += (
        "CL002,Tiny PT Shelbyville,2 Main St,Shelbyville,IL,62565,America/Chicago,2020-01-01,4,2025-01-01 00:00:00\n"
    )
    files["marketing_spend.csv"] += (
        "2025-03-01,CL001,word_of_mouth,250.00,2025-03-31 12:00:00\n"
        "2025-03-01,CL002,social,100.00,2025-03-31 12:00:00\n"
        "2025-03-01,CL002,employer,150.00,2025-03-31 12:00:00\n"
    )
    for name in ("scheduling_events.csv", "claims.csv", "charges.csv", "documentation_events.csv"):
        assert ",P07,CL001," in files[name], name
        files[name] = files[name].replace(",P07,CL001,", ",P07,CL002,")
    intake = files["intake_events.csv"].replace(",R07,P07,CL001,", ",R07,P07,CL002,")
    old = "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,physician,1234567893,"
    assert old in intake
    files["intake_events.csv"] = intake.replace(old, "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,,,")
    files["marketing_touches.csv"] += "MT08,R07,employer,acme_wellness,2025-03-01 09:00:00\n"
    return files


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Settings:
    root = Path(tmp_path_factory.mktemp("attribution_models_agree"))
    (root / "files").mkdir()
    files = _patch({p.name: p.read_text(encoding="utf-8") for p in sorted(TINY.glob("*.csv"))})
    for name, text in files.items():
        (root / "files" / name).write_text(text, encoding="utf-8")
    settings = get_settings(root / "home").ensure()
    results = ingest([root / "files"], settings)
    assert all(r.status == "loaded" and r.rows_quarantined == 0 for r in results), [
        (r.file, r.status, r.rows_quarantined, r.message) for r in results
    ]
    result = build(settings)
    assert result.ok, result.message
    with duckdb.connect(str(settings.analytics_db)) as con:  # what the ML step writes
        credit = attribute(con.execute("select * from marts.attribution_paths").df())
        con.execute("create schema if not exists ml")
        con.register("credit", credit)
        con.execute("create or replace table ml.attribution_credit as select * from credit")
    app_home = root / "app_home"
    shutil.copytree(settings.home, app_home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(app_home)


@pytest.mark.parametrize("view", VIEWS)
def test_spend_and_flags_do_not_depend_on_the_model(home, view):
    df = qa.attribution_by_channel(reader(home), VIEWS[view])
    models = set(df["model"])
    assert models == set(qa.HEURISTIC_MODELS) | set(qa.DATA_DRIVEN_MODELS)
    # every model has a row for every channel with spend, with that spend, and one flag per channel
    spend = df[df["spend_usd"] > 0].groupby("channel")["model"].nunique()
    assert (spend == len(models)).all(), spend
    per_channel = df.groupby("channel").agg(spend=("spend_usd", "nunique"), flag=("is_marketing", "nunique"))
    assert (per_channel <= 1).all().all(), per_channel
    # so the tiles' spend is the same; only the credited revenue differs
    totals = {m: qa.marketing_totals(df, m) for m in models}
    assert {t["spend_usd"] for t in totals.values()} == {totals["linear"]["spend_usd"]}
    # and the data-driven models distribute the period's conversions and revenue like the heuristics
    sums = df.groupby("model")[CREDIT].sum()
    for model in qa.DATA_DRIVEN_MODELS:
        assert sums.loc[model].tolist() == pytest.approx(sums.loc["linear"].tolist()), model


def test_the_numbers_of_the_scenario(home):
    df = qa.attribution_by_channel(reader(home), VIEWS["CL001"])
    flags = df.groupby("channel")["is_marketing"].first()
    # employer has no heuristic row in CL001 (its conversion is in CL002) but is still a bought channel
    assert flags["employer"] and flags["word_of_mouth"] and not flags["physician_referral"]
    assert {m: qa.marketing_totals(df, m)["spend_usd"] for m in ("linear", "markov", "shapley")} == {
        "linear": 1250.0,
        "markov": 1250.0,
        "shapley": 1250.0,
    }
    every = qa.attribution_by_channel(reader(home), MARCH)
    assert qa.marketing_totals(every, "markov")["spend_usd"] == 1500.0  # was 1,250: word of mouth's $250 dropped


def test_every_conversion_is_credited_under_every_model(home):
    df = qa.attribution_by_channel(reader(home), MARCH)
    sums = df.groupby("model")[CREDIT].sum()
    for model, row in sums.iterrows():
        assert row.tolist() == pytest.approx([6, 1250]), model  # was 5 / $1,080: R02 had no path
    unknown = df[df["channel"] == "unknown_source"]
    assert len(unknown) == len(sums) and not unknown["is_marketing"].any() and (unknown["spend_usd"] == 0).all()
    heuristic = unknown[unknown["model"].isin(qa.HEURISTIC_MODELS)]
    assert heuristic[CREDIT].to_numpy().ravel().tolist() == pytest.approx([1, 170] * len(qa.HEURISTIC_MODELS))


def _tiles(at, home, model: str) -> dict[str, str]:
    next(s for s in at.selectbox if s.key == "at_model").set_value(model)
    run(at, home)
    return metrics(at)


@pytest.mark.parametrize("clinic", [None, "CL001"])
def test_the_page_tiles_say_the_same_spend_under_every_model(home, clinic):
    at = open_page(home, "owner", "attribution")
    if clinic:
        at.session_state["f_clinics"] = [clinic]
        run(at, home)
    f = at.session_state["ptpulse_filters"]
    df = qa.attribution_by_channel(reader(home), f)
    tiles = {m: _tiles(at, home, m) for m in ("linear", "markov", "shapley")}
    spend = {m: t["Marketing spend"] for m, t in tiles.items()}
    assert set(spend.values()) == {fmt(1500 if clinic is None else 1250, "usd")}, spend
    for model, shown in tiles.items():
        totals = qa.marketing_totals(df, model)
        assert shown["Revenue credited to marketing"] == fmt(totals["attributed_revenue_usd"], "usd")
        assert shown["Marketing ROI"] == fmt(totals["roi"], "pct")
    assert any("Unknown source" in d.value.to_csv() for d in at.dataframe)  # R02's channel, in words


# ------------------------------------------------------------------ paths to a decision


def test_the_paths_follow_the_months_and_the_clinics(home):
    r = reader(home)
    every = qa.paths_in_view(r, Filters(date(2020, 1, 1), date(2030, 12, 31)))
    mart = sql_frame(
        home, "select path, path_length, conversions, non_conversions, revenue_usd from marts.attribution_paths"
    )
    key = ["path", "path_length", "conversions", "non_conversions"]
    both = every.merge(mart, on=key, how="outer", indicator=True)
    assert (both["_merge"] == "both").all(), both  # every month and clinic = the mart the ML step fits on
    assert both["revenue_usd_x"].astype(float).tolist() == pytest.approx(both["revenue_usd_y"].astype(float).tolist())

    for name, f in VIEWS.items():
        paths = qa.paths_in_view(r, f)
        credit = qa.attribution_by_channel(r, f)
        first = credit[credit["model"] == "first"][CREDIT].sum()
        # the conversions and revenue on the paths are the ones credited for the same months and clinics
        assert [paths["conversions"].sum(), float(paths["revenue_usd"].sum())] == pytest.approx(first.tolist()), name
        lengths = qa.path_lengths(r, f)
        assert lengths["conversions"].sum() == paths["conversions"].sum(), name
        assert lengths["non_conversions"].sum() == paths["non_conversions"].sum(), name
    cl002 = qa.paths_in_view(r, VIEWS["CL002"])
    assert cl002[key + ["revenue_usd"]].values.tolist() == [["employer > social > organic_web > social", 4, 1, 0, 320]]
    assert qa.paths_in_view(r, Filters(date(2025, 2, 1), date(2025, 2, 28))).empty  # nothing decided in February
    assert qa.top_paths(r, VIEWS["CL002"])["path"].tolist() == [
        "Employer programs → Social media → Website (organic) → Social media"
    ]


def _path_table(at) -> pd.DataFrame:
    (table,) = [d.value for d in at.dataframe if "path_length" in d.value.columns]
    return table


def test_the_page_shows_the_paths_of_the_clinics_in_view(home):
    at = open_page(home, "owner", "attribution")
    assert len(_path_table(at)) == 6  # March, both clinics: every path decided in the range
    at.session_state["f_clinics"] = ["CL002"]
    run(at, home)
    assert _path_table(at)["conversions"].tolist() == [1]  # R07's path only (was every clinic's six)
    # a user limited to CL002 gets the paths of CL002 (clinic-grained), not a note that they are practice-wide
    scoped = open_page(home, "analyst", "attribution", clinics="CL002")
    assert _path_table(scoped)["path"].tolist() == [
        "Employer programs → Social media → Website (organic) → Social media"
    ]
    assert len(_path_table(at)) == len(qa.paths_in_view(reader(home), at.session_state["ptpulse_filters"]))
