"""A page whose inputs were never loaded says which export would light it up (issue 8, item 6), on real builds
over subsets of the hand-built tiny practice: only remittances (an X12 835 practice), then patients and
scheduling. No error, no exception, and no zero tiles that read like real figures."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_helpers import open_page

from app.lib.source_needs import EXPORT_LABELS, PAGE_SOURCES, missing_message
from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings
from ptpulse.core.contracts import load_contracts

TINY = Path(__file__).resolve().parents[1] / "dbt" / "tiny_practice"


def _home(tmp_path_factory, *sources: str) -> Settings:
    settings = get_settings(tmp_path_factory.mktemp("_".join(sources)) / "home").ensure()
    results = ingest([TINY / f"{s}.csv" for s in sources], settings)
    assert all(r.status == "loaded" for r in results)
    result = build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture(scope="module")
def remittances_only(tmp_path_factory) -> Settings:
    return _home(tmp_path_factory, "remittances")


@pytest.fixture(scope="module")
def patients_scheduling(tmp_path_factory) -> Settings:
    return _home(tmp_path_factory, "patients", "scheduling_events")


def _infos(at) -> str:
    return " ".join(i.value for i in at.info)


@pytest.mark.parametrize(
    "page, export",
    [
        ("overview", "a scheduling export (scheduling_events)"),
        ("funnel", "an intake / referrals export (intake_events)"),
        ("work_queue", "an intake / referrals export (intake_events)"),
    ],
)
def test_pages_say_which_export_to_load_when_only_remittances_were_loaded(remittances_only, page, export):
    at = open_page(remittances_only, "owner", page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert "No data for this page yet." in _infos(at) and export in _infos(at), _infos(at)
    assert not at.metric, [m.label for m in at.metric]  # no zero tiles


def test_data_health_lists_the_loaded_source_and_renders(remittances_only):
    at = open_page(remittances_only, "admin", "data_health")
    assert not at.exception and not at.error
    coverage = next(df.value for df in at.dataframe if "is_loaded" in df.value.columns)
    assert coverage.loc[coverage["is_loaded"], "source"].tolist() == ["remittances"]


def test_patients_and_scheduling_light_up_the_overview_and_queue_but_not_the_funnel(patients_scheduling):
    for page, shown in (("overview", "No-show rate"), ("work_queue", "Open tasks")):
        at = open_page(patients_scheduling, "owner", page)
        assert not at.exception and not at.error, page
        assert shown in [m.label for m in at.metric], page
    at = open_page(patients_scheduling, "owner", "funnel")
    assert not at.exception and not at.error
    assert "(intake_events)" in _infos(at) and not at.metric


def test_the_mapping_names_only_known_sources_and_pages():
    from app.lib import auth

    sources = set(load_contracts())
    assert set(EXPORT_LABELS) == sources
    assert set(PAGE_SOURCES) <= set(auth.PAGE_ACCESS)
    assert all(set(group) <= sources for groups in PAGE_SOURCES.values() for group in groups)
    assert missing_message("attribution", frozenset({"intake_events", "marketing_spend"}), "Attribution") is None
    text = missing_message("attribution", frozenset({"intake_events"}), "Attribution")
    assert "(marketing_touches) or" in text and "(marketing_spend)" in text and "intake_events" not in text
    assert missing_message("data_health", frozenset(), "Data health") is None
