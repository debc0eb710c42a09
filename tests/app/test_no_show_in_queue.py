"""The No-show page's high-risk list looks further ahead (14 days by default, up to 30) than the Work queue takes
confirm tasks (the ML step's look-ahead, 7 days): the page says which of the listed appointments are in the queue,
from the queue's actual tasks, instead of claiming they all are (real build with ML scores, AppTest)."""

from __future__ import annotations

import re

import duckdb
from app_helpers import open_page


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
