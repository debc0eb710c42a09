"""Plain language: one label table (dbt seed labels.csv) for every code a person sees, read by the app and
served by the build; every code the marts emit has its words; the freshness line; and every page this work
touched, for every role allowed on it, shows no None/nan, no snake_case code of the label table and no
snake_case table header (AppTest on the built small practice)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from app_helpers import open_page
from ui_sweep import problems

from app.lib import auth, labels, queue_vocabulary
from app.lib.db import AnalyticsDb
from app.lib.formatting import ago, freshness, moment
from app.lib.queries.attribution import path_labels
from app.lib.queries.base import DbReader

# ------------------------------------------------------------------------------------------ the table


def test_every_label_is_words_not_a_code():
    table = labels.table()
    assert {"channel", "source_type", "payer_class", "exit_stage", "carc_group", "appointment_status"} <= set(table)
    for domain, codes in table.items():
        for code, text in codes.items():
            assert not labels.SNAKE.match(text), (domain, code)
            assert text != code or not labels.SNAKE.match(code), (domain, code)


def test_label_reads_known_unknown_and_missing_codes():
    assert labels.label("channel", "physician_referral") == "Physician referral"
    assert labels.label("payer_class", "workers_comp") == "Workers' comp"
    assert labels.label("channel", "tv_spots") == "Tv spots"  # unknown: words, never the raw code
    for missing in (None, float("nan"), pd.NA, ""):
        assert labels.label("channel", missing) == labels.NOT_RECORDED


def test_queue_rules_and_outcomes_keep_their_own_seeds_but_read_through_label():
    for rule, r in queue_vocabulary.rules().items():
        assert labels.label(labels.QUEUE_RULE, rule) == r.label
    assert labels.label(labels.QUEUE_OUTCOME, "left_message") == queue_vocabulary.outcomes()["left_message"].label
    assert "below_poc_frequency" in labels.snake_codes()


def test_relabel_maps_a_column_without_losing_rows():
    s = pd.Series(["search_ads", None, "search_ads", "new_channel", "word_of_mouth"])
    out = labels.relabel(s, "channel")
    assert out.tolist() == ["Search ads", "Not recorded", "Search ads", "New channel", "Word of mouth"]
    kept = labels.relabel(s, "channel", missing=None)
    assert kept.isna().tolist() == [False, True, False, False, False]
    # several domains: the first that knows the code names it
    stages = labels.relabel(pd.Series(["plan_of_care", "eval_no_show"]), ("funnel_stage", "exit_stage"))
    assert stages.tolist() == ["Plan of care", "No-show at evaluation"]


def test_path_labels_and_free_text():
    paths = pd.Series(["search_ads > physician_referral", "word_of_mouth"])
    assert path_labels(paths).tolist() == ["Search ads → Physician referral", "Word of mouth"]
    assert labels.in_words("| auto_pi | 85 | initial_eval") == "| Auto / personal injury | 85 | Initial evaluation"
    assert labels.in_words("no_show_rate stays") == "no_show_rate stays"  # only whole codes


def _write(tmp_path, text):
    p = tmp_path / "labels.csv"
    p.write_text(text, encoding="utf-8")
    labels.table.cache_clear()
    return p


def test_a_malformed_seed_names_line_and_column_never_the_value(tmp_path):
    try:
        p = _write(tmp_path, "domain,code,label\nchannel,secret_code,A\nchannel,secret_code,B\n")
        with pytest.raises(labels.LabelError, match="line 3, column code") as exc:
            labels.table(p)
        assert "secret_code" not in str(exc.value)
        p = _write(tmp_path, "domain,code,label\nchannel,x,\n")
        with pytest.raises(labels.LabelError, match="line 2, column label: empty"):
            labels.table(p)
        p = _write(tmp_path, "domain,code\nchannel,x\n")
        with pytest.raises(labels.LabelError, match="missing column"):
            labels.table(p)
    finally:
        labels.table.cache_clear()


# ------------------------------------------------------------------------------------------ built marts


@pytest.fixture(scope="module")
def reader(app_home):
    return DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))


# (domain, SQL listing the codes the served marts emit for it)
EMITTED = [
    ("channel", "select distinct channel from marts.referral_touches"),
    ("channel", "select distinct channel from marts.attribution_roi"),
    ("source_type", "select distinct source_type from marts.referral_funnel"),
    ("intake_kind", "select distinct intake_kind from marts.referral_funnel"),
    ("payer_class", "select distinct payer_class from marts.referral_funnel"),
    ("exit_stage", "select distinct exit_stage from marts.referral_funnel"),
    ("exit_reason", "select distinct exit_reason from marts.referral_funnel"),
    ("next_step_owner", "select distinct next_step_owner from marts.referral_funnel"),
    ("appointment_status", "select distinct status from marts.appointments"),
    ("visit_type", "select distinct visit_type from marts.appointments"),
    ("episode_status", "select distinct status from marts.episodes"),
    ("discharge_reason", "select distinct discharge_reason from marts.episodes"),
    ("risk_band", "select distinct risk_band from ml.no_show_scores"),
    ("carc_group", "select distinct category from reference.carc_codes"),
    ("attribution_model", "select distinct model from marts.attribution_roi"),
    ("as_of_source", "select distinct as_of_source from marts.build_info"),
]


@pytest.mark.parametrize("domain,sql", EMITTED, ids=[f"{d}:{s.split()[2]}" for d, s in EMITTED])
def test_every_code_the_build_emits_has_a_label(reader, domain, sql):
    codes = {c for c in reader.df(sql).iloc[:, 0].tolist() if c is not None and not pd.isna(c)}
    assert codes, f"{domain}: the small practice emits no codes to check"
    missing = codes - set(labels.labels_for(domain))
    assert not missing, f"add rows to dbt_project/seeds/labels.csv for domain {domain}: {sorted(missing)}"


def test_the_build_serves_the_same_table(reader):
    served = reader.df("select domain, code, label from marts.labels")
    assert len(served) == sum(len(v) for v in labels.table().values())
    got = {(r.domain, r.code): r.label for r in served.itertuples()}
    assert all(got[(d, c)] == t for d, codes in labels.table().items() for c, t in codes.items())


# ------------------------------------------------------------------------------------------ freshness


def test_freshness_line_reads_like_a_person_would_say_it():
    now = datetime(2026, 11, 30, 11, 0)
    assert freshness(datetime(2026, 11, 29, 20, 8), datetime(2026, 11, 30, 3, 26), now) == (
        "Data through Nov 29, 8:08 pm · updated this morning"
    )
    assert freshness(pd.Timestamp("2025-12-31 09:05"), None, now) == "Data through Dec 31, 2025, 9:05 am"
    assert freshness(None, float("nan"), now) == "Data date not recorded"
    assert ago(datetime(2026, 11, 30, 10, 59, 30), now) == "just now"
    assert ago(datetime(2026, 11, 30, 10, 35), now) == "25 minutes ago"
    assert ago(datetime(2026, 11, 30, 9, 0), now) == "2 h ago"
    assert ago(datetime(2026, 11, 29, 18, 0), now) == "yesterday evening"
    assert ago(datetime(2026, 11, 26, 14, 0), now) == "on Thursday"
    assert ago(datetime(2026, 11, 3, 14, 0), now) == "on Nov 3"
    assert moment(datetime(2026, 11, 30, 0, 5), now) == "Nov 30, 12:05 am"


# ------------------------------------------------------------------------------------------ pages

PAGES = ("overview", "attribution", "referral_sources", "funnel", "forecast", "no_show", "leakage")
CASES = [(role, page) for page in PAGES for role in auth.ROLES if auth.can_view(role, page)]


@pytest.mark.parametrize("role,page", CASES)
def test_page_shows_words_not_codes_and_no_none_or_nan(app_home, role, page):
    at = open_page(app_home, role, page)
    assert not at.exception, [e.value for e in at.exception]
    assert problems(at) == []
    freshness_line = at.caption[0].value
    assert freshness_line.startswith("Data through ") and "build" not in freshness_line.lower()
    assert any(e.label == "About this data" for e in at.expander)


def test_attribution_explains_fractional_patients_and_path_credit(app_home):
    at = open_page(app_home, "owner", "attribution")
    text = " ".join(m.value for m in at.markdown)
    assert "Fractional patients" in text and "incremental effect" in text
    roi = next(d.value for d in at.dataframe if "roi" in d.value.columns)
    assert not roi["roi"].isna().any()
    no_spend = roi[roi["spend_usd"].fillna(0) <= 0]
    assert len(no_spend) and (no_spend["roi"] == "no spend recorded").all()
