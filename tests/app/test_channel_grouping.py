"""The pages' "Channel" grouping names every referral's source as a channel (referral_funnel.source_channel:
physician referral, direct access or the marketing channel), not the raw `channel` column that only marketing
leads carry.

A real build of the tiny practice (tests/dbt/tiny_practice, March 2025), from a copy of its files, with R02
(physician referral) received without a source (the contract allows a blank source_type): the one referral that
may read "Not recorded" / "(unknown)". March: 6 physician referrals (R01 R05 R06 R08 R11 R12), 2 direct access
(R04 R09), 3 marketing leads (R03 search ads, R07 social, R10 organic web), R02 with no source.

Review: grouped by Channel, the Funnel put every physician and direct-access referral under "(unknown)" (9 of 12)
and the Referral sources Sankey under "Not recorded".
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from multi_practice import open_page, reader, run
from tiny_variant import build_tiny_variant

from app.lib import labels
from app.lib.queries.base import Filters
from app.lib.queries.funnel import FUNNEL_BREAKDOWNS, funnel_drilldown, funnel_stages
from app.lib.queries.referral_sources import source_outcomes
from ptpulse.core.config import Settings

pytestmark = pytest.mark.slow

MARCH = Filters(date(2025, 3, 1), date(2025, 3, 31))
BY_CHANNEL = {
    "physician_referral": 6,
    "direct_access": 2,
    "search_ads": 1,
    "social": 1,
    "organic_web": 1,
    "(unknown)": 1,
}
MARKETING = ("search_ads", "social", "organic_web")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Settings:
    def edit(src: Path) -> None:  # R02's received event loses its source
        path = src / "intake_events.csv"
        text = path.read_text(encoding="utf-8")
        old = "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,physician,1234567893,"
        assert old in text
        path.write_text(
            text.replace(old, "IE04,R02,P02,CL001,received,2025-03-03 14:00:00,referral,,,"), encoding="utf-8"
        )

    return build_tiny_variant(Path(tmp_path_factory.mktemp("channel_grouping")), edit)


def _stages(home: Settings, role: str, breakdown: str, f: Filters = MARCH):
    return funnel_stages(reader(home, role), f, breakdown).pivot(index="grp", columns="stage", values="reached")


@pytest.mark.parametrize("role", ["owner", "marketing"])
def test_the_funnel_by_channel_names_physician_and_direct_access_referrals(home, role):
    by_channel = _stages(home, role, "Channel")
    assert by_channel["received"].to_dict() == BY_CHANNEL
    # the same referrals as by source type, stage by stage: physician and direct access one to one, the marketing
    # channels adding up to the marketing leads, the referral without a source unknown in both
    by_type = _stages(home, role, "Source type")
    assert by_channel.loc["physician_referral"].equals(by_type.loc["physician"])
    assert by_channel.loc["direct_access"].equals(by_type.loc["direct_access"])
    assert by_channel.loc[list(MARKETING)].sum().equals(by_type.loc["marketing"])
    assert by_channel.loc["(unknown)"].equals(by_type.loc["(unknown)"])


def test_the_drilldown_of_a_channel_lists_its_referrals(home):
    r = reader(home)
    physician = funnel_drilldown(r, MARCH, "received", "Channel", "physician_referral")
    assert sorted(physician["referral_id"]) == ["R01", "R05", "R06", "R08", "R11", "R12"]
    assert set(physician["source_type"]) == {"physician"} and set(physician["channel"]) == {"physician_referral"}
    unknown = funnel_drilldown(r, MARCH, "received", "Channel", "(unknown)")
    assert unknown["referral_id"].tolist() == ["R02"]
    social = funnel_drilldown(r, MARCH, "received", "Channel", "social")
    assert social["referral_id"].tolist() == ["R07"]


@pytest.mark.parametrize("role", ["owner", "marketing"])
def test_the_sankey_by_channel_reads_not_recorded_only_without_a_source(home, role):
    flows = source_outcomes(reader(home, role), MARCH, "channel")
    totals = flows.groupby("source")["referrals"].sum().to_dict()
    named = {
        labels.NOT_RECORDED if code == "(unknown)" else labels.label("channel", code): n
        for code, n in BY_CHANNEL.items()
    }
    assert totals == named
    assert named["Physician referral"] == 6 and named[labels.NOT_RECORDED] == 1
    # grouping by source type is unchanged
    by_type = source_outcomes(reader(home, role), MARCH, "source_type").groupby("source")["referrals"].sum()
    assert by_type.to_dict() == {"Physician": 6, "Direct access": 2, "Marketing": 3, labels.NOT_RECORDED: 1}


def test_the_funnel_page_grouped_by_channel(home):
    assert FUNNEL_BREAKDOWNS["Channel"] == "source_channel"
    at = open_page(home, "owner", "funnel")
    f = at.session_state["ptpulse_filters"]
    assert (
        funnel_stages(reader(home), f, "Channel")
        .pivot(index="grp", columns="stage", values="reached")["received"]
        .to_dict()
        == BY_CHANNEL
    )  # the page's default range holds every referral of March
    at.session_state["fn_breakdown"] = "Channel"
    run(at, home)
    assert not at.exception, [e.value for e in at.exception]
    (drill_group,) = [s for s in at.selectbox if s.key == "fn_drill_group"]
    assert set(drill_group.options) == {
        "Physician referral",
        "Direct access",
        "Search ads",
        "Social media",
        "Website (organic)",
        "(unknown)",
    }
    drill_group.set_value("physician_referral")
    run(at, home)
    (table,) = [d.value for d in at.dataframe if "referral_id" in d.value.columns]
    assert sorted(table["referral_id"]) == ["R01", "R05", "R06", "R08", "R11", "R12"]
    assert set(table["channel"]) == {"Physician referral"}


def _sankey_sources(at) -> dict[str, int]:
    """Referrals per source node of the page's Sankey (the figure it sent to the browser)."""
    (fig,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith("fig_rs_sankey")]
    (sankey,) = fig["data"]
    names, link = sankey["node"]["label"], sankey["link"]
    out: dict[str, int] = {}
    for i, n in zip(link["source"], link["value"], strict=True):
        out[names[i]] = out.get(names[i], 0) + n
    return out


def test_the_referral_sources_page_grouped_by_channel(home):
    at = open_page(home, "marketing", "referral_sources")
    (by,) = [r for r in at.radio if r.key == "rs_by"]
    by.set_value("channel")
    run(at, home)
    assert not at.exception, [e.value for e in at.exception]
    assert _sankey_sources(at) == {
        labels.NOT_RECORDED if code == "(unknown)" else labels.label("channel", code): n
        for code, n in BY_CHANNEL.items()
    }
