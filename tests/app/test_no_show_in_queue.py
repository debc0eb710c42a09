"""The No-show page's high-risk list looks further ahead (14 days by default, up to 30) than the Work queue takes
confirm tasks (the ML step's look-ahead, 7 days): the page says which of the listed appointments are in the queue,
from the queue's actual tasks, instead of claiming they all are (real build with ML scores, AppTest)."""

from __future__ import annotations

import re

import duckdb
from app_helpers import open_page

from app.lib.db import AnalyticsDb


def test_no_show_page_says_which_high_risk_appointments_are_in_the_work_queue(app_home, copy_home):
    home = copy_home(app_home)
    with duckdb.connect(str(home.analytics_db)) as con:
        # the two latest high-risk visits are past the queue's look-ahead (as a 14-day list's second week is)
        later = con.execute(
            "select appointment_id from ml.no_show_scores where risk_band = 'high' and scheduled_start >= "
            "(select as_of from marts.build_info) order by scheduled_start desc limit 2"
        ).fetchall()
        con.execute(
            "delete from ml.work_queue_tasks where list_contains(?, task_id)",
            [[f"confirm_high_risk:{a}" for (a,) in later]],
        )
        tasks = {r[0] for r in con.execute("select task_id from ml.work_queue_tasks").fetchall()}
    at = open_page(home, "manager", "no_show")
    assert not at.exception
    page = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "also in the work queue" not in page
    high = next(d.value for d in at.dataframe if "in_work_queue" in d.value.columns)
    expected = ["confirm_high_risk:" + a in tasks for a in high["appointment_id"]]
    assert high["in_work_queue"].tolist() == expected
    assert not high.set_index("appointment_id").loc[[a for (a,) in later], "in_work_queue"].any()
    (said,) = [c.value for c in at.caption if "in the Work queue" in c.value]
    n, m = (int(x.replace(",", "")) for x in re.match(r"([\d,]+) of these ([\d,]+) ", said).groups())
    assert (n, m) == (sum(expected), len(high)) and n == m - 2


def test_the_pages_counts_come_from_sql_and_only_the_high_risk_rows_are_read(app_home, copy_home, monkeypatch):
    """At 900 clinics the page read all 106 k upcoming appointments with their patients to count them (3-4 s
    cold); the counts and expected no-shows now come from one grouped query and only the high band is read.
    Both equal the counts of every upcoming row, what the page showed before."""
    home = copy_home(app_home)
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        rows = con.execute(
            "select risk_band, probability from ml.no_show_scores, marts.build_info b "
            "where scheduled_start >= b.as_of and scheduled_start < b.as_of + interval 14 day"
        ).df()
    read: list[int] = []  # rows of every query on the scores
    query = AnalyticsDb.query

    def recorded(self, sql, params=None):
        frame = query(self, sql, params)
        read.extend([len(frame)] if "no_show_scores" in sql else [])
        return frame

    monkeypatch.setattr(AnalyticsDb, "query", recorded)
    at = open_page(home, "owner", "no_show")  # every clinic, as the rows above
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scored upcoming appointments"] == f"{len(rows):,}"
    assert metrics["High risk"] == f"{int((rows['risk_band'] == 'high').sum()):,}"
    expected = rows["probability"].sum()
    assert metrics["Expected no-shows"].replace(",", "") == f"{expected:,.0f}".replace(",", "")
    assert metrics["Expected no-show rate"].startswith(f"{expected / len(rows) * 100:.1f}")
    high = next(d.value for d in at.dataframe if "in_work_queue" in d.value.columns)
    assert len(high) == (rows["risk_band"] == "high").sum() and (high["risk_band"] == "High").all()
    assert read and max(read) == len(high) < len(rows)  # no query brought every upcoming appointment
