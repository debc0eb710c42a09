"""Issue 10 item 5: the work queue's vocabulary (rules, labels, priorities, who works it, outreach outcomes) is
written once, in the dbt seeds work_queue_rules.csv / work_queue_outcomes.csv, and the app reads it from there.
The mart is checked against the seed on a real build, so a rule the mart emits can never show unlabeled."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.lib import actions, auth, queue_vocabulary
from app.lib import work_queue as wq
from app.lib.db import AnalyticsDb
from app.lib.queries.base import DbReader, Filters, build_info, data_date_range
from app.lib.queries.work_queue import HIGH_RISK_RULE, queue_candidates
from ptpulse.core.config import DBT_PROJECT_DIR


@pytest.fixture(scope="module")
def reader(app_home):
    return DbReader(AnalyticsDb(app_home.analytics_db), auth.Scope("owner"))


def test_every_rule_the_mart_emits_has_a_seed_row_with_its_queue_and_priority(reader):
    rules = queue_vocabulary.rules()
    mart = reader.df(
        "select rule, queue, priority, count(*) as tasks from marts.work_queue_candidates group by all order by rule"
    )
    assert len(mart) >= 5, "the small practice should raise tasks under most rules"
    for row in mart.itertuples():
        assert row.rule in rules, f"rule {row.rule} of work_queue_candidates has no row in work_queue_rules.csv"
        seed = rules[row.rule]
        assert row.queue == seed.queue, row.rule
        assert row.priority in {seed.priority, seed.escalated_priority}, row.rule
        assert seed.emitted_by == "work_queue_candidates", row.rule
    assert {"below_poc_frequency", "active_no_future_appt"} <= set(mart["rule"])  # issue 14's unlabeled ones


def test_the_apps_queue_labels_every_task_from_the_seed(reader):
    lo, hi = data_date_range(reader)
    as_of = build_info(reader)["as_of"]
    queue = queue_candidates(reader, Filters(lo, hi))
    assert HIGH_RISK_RULE in set(queue["rule"])  # the ML rule, written by the ML step in the mart's shape
    high_risk = queue.loc[queue["rule"] == HIGH_RISK_RULE, "priority"]
    assert (high_risk == queue_vocabulary.rules()[HIGH_RISK_RULE].priority).all()
    view = wq.assemble(queue, {}, as_of.to_pydatetime())
    labels = dict(zip(view["rule"], view["rule_label"], strict=True))
    assert all(labels[r] == queue_vocabulary.rules()[r].label for r in labels)
    assert view["worked_by"].notna().all()


def test_every_rule_written_in_the_mart_sql_has_a_seed_row():
    """Also the rules the small practice does not trigger (medicare_kx_threshold): read from the model's SQL."""
    files = list(DBT_PROJECT_DIR.joinpath("models").rglob("work_queue_candidates.sql"))
    assert len(files) == 1, files
    emitted = set(re.findall(r"\bselect\s+'([a-z_]+)'", files[0].read_text(encoding="utf-8")))
    assert len(emitted) >= 8 and "medicare_kx_threshold" in emitted
    assert emitted <= set(queue_vocabulary.rules())
    by_ml = {k for k, r in queue_vocabulary.rules().items() if r.emitted_by != "work_queue_candidates"}
    assert by_ml == {HIGH_RISK_RULE, "denial_fix_before_submit"} and not emitted & by_ml


def test_labels_priorities_and_who_works_it_come_from_the_seed():
    rules = queue_vocabulary.rules()
    assert wq.rule_label("below_poc_frequency") == rules["below_poc_frequency"].label == "Booked below plan frequency"
    assert wq.worked_by("unsigned_note") == "Clinician" and wq.worked_by("uncontacted_referral") == "Front desk"
    assert set(wq.REFERRAL_RULES) == {"uncontacted_referral", "contacted_unscheduled", "eval_no_show_rebook"}
    assert list(rules)[0] == "uncontacted_referral" and rules["auth_expiring"].escalated_priority == 2


def test_outreach_outcomes_and_what_they_do_come_from_the_seed():
    seed = queue_vocabulary.outcomes()
    assert list(actions.OUTCOMES) == list(seed)
    assert actions.REACHED_OUTCOMES == {"reached", "scheduled", "declined"}
    assert actions.CLOSING_OUTCOMES == {"scheduled"}
    for name, o in seed.items():
        assert actions.status_after("log_outreach", {"outcome": name}) == ("done" if o.closes_task else "open")
    state = actions.fold(
        [("t:1", "log_outreach", "ann", "2025-01-01T09:00:00", json.dumps({"method": "call", "outcome": "no_answer"}))]
    )["t:1"]
    assert state.last_outreach == f"call: {seed['no_answer'].label}"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text,where",
    [
        (
            "rule,label,queue,priority,escalated_priority,subject,emitted_by,description\n"
            "r1,Rule one,front_desk,high,,referral,work_queue_candidates,x\n",
            "line 2, column priority",
        ),
        (
            "rule,label,queue,priority,escalated_priority,subject,emitted_by,description\n"
            "r1,Rule one,back_office,1,,referral,work_queue_candidates,x\n",
            "line 2, column queue",
        ),
        (
            "rule,label,queue,priority,escalated_priority,subject,emitted_by,description\n"
            "r1,Rule one,front_desk,1,,referral,work_queue_candidates,x\nr1,Again,front_desk,1,,referral,x,x\n",
            "line 3, column rule",
        ),
        ("rule,label,queue,priority\nr1,Rule one,front_desk,1\n", "missing column(s) escalated_priority"),
    ],
)
def test_a_malformed_rules_seed_names_file_line_and_column_never_the_value(tmp_path, text, where):
    path = _write(tmp_path, "work_queue_rules.csv", text)
    with pytest.raises(queue_vocabulary.VocabularyError) as exc:
        queue_vocabulary.rules(path)
    message = str(exc.value)
    assert message.startswith("work_queue_rules.csv") and where in message
    assert "back_office" not in message and "Rule one" not in message and "Again" not in message


def test_a_malformed_outcomes_seed_says_what_to_fix(tmp_path):
    path = _write(
        tmp_path, "work_queue_outcomes.csv", "outcome,label,counts_as_contact,closes_task\nreached,Reached,yes,false\n"
    )
    expected = "line 2, column counts_as_contact: expected true or false"
    with pytest.raises(queue_vocabulary.VocabularyError, match=expected):
        queue_vocabulary.outcomes(path)
