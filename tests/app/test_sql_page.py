"""The SQL page on a real built home (AppTest, real worker processes): an attack shows a clear error on the
page, the page keeps working for the next query, and path-revealing or DML-in-CTE statements are refused; the
page says when cells were cut, and a damaged twin is said in words."""

from __future__ import annotations

import pytest
from app_helpers import open_page, rendered_text, rerun

from app.lib import sql_guard, sql_worker


def _submit(at, home, sql: str):
    at.text_area(key="sql_text").input(sql)
    at.get("form_submit_button")[0].click()
    return rerun(at, home)


def test_memory_attack_shows_a_clear_error_and_the_page_keeps_working(app_home):
    at = open_page(app_home, "analyst", "sql")
    _submit(at, app_home, "select length(repeat('x',1500000000))")
    assert not at.exception
    assert any("more memory than the SQL page allows" in e.value for e in at.error), [e.value for e in at.error]
    _submit(at, app_home, "select kpi, count(*) n from marts.practice_kpis group by kpi")
    assert not at.exception and not at.error
    assert any(list(d.value.columns) == ["kpi", "n"] for d in at.dataframe)


@pytest.mark.parametrize(
    "sql,message",
    [
        ("select * from duckdb_databases()", "not available on this page"),
        ("select current_setting('temp_directory')", "not available on this page"),
        # review: SHOW <setting> showed $PTPULSE_HOME, the build folder and the worker's temp folder
        ("show allowed_paths", "allowed_paths is not available on this page"),
        ("show allowed_directories", "allowed_directories is not available on this page"),
        ("select replace(temp_directory, '/', ' / ') as t from (show temp_directory)", "not available on this page"),
        ("with x as (delete from marts.practice_kpis returning *) select * from x", "DELETE may not appear"),
    ],
)
def test_page_refuses_paths_and_hidden_writes(app_home, sql, message):
    at = open_page(app_home, "analyst", "sql")
    _submit(at, app_home, sql)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert str(app_home.home) not in rendered_text(at) and not [d for d in at.dataframe if "t" in d.value.columns]


def test_show_of_a_table_still_works(app_home):
    at = open_page(app_home, "analyst", "sql")
    _submit(at, app_home, "show marts.visits")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("column_name" in d.value and "patient_key" in d.value["column_name"].tolist() for d in at.dataframe)


def test_the_page_says_when_cells_were_cut(app_home):
    """Review: nested results crossed as lists of Python objects (~2 GB in the app for a capped result); now
    they cross as text cut per cell, and the page says so."""
    at = open_page(app_home, "analyst", "sql")
    _submit(at, app_home, "select list_transform(range(1000), lambda x: x::varchar) as l, 'short' as t from range(3)")
    assert not at.exception and not at.error, [e.value for e in at.error]
    (result,) = [d.value for d in at.dataframe if "l" in d.value.columns]
    assert result["l"].str.startswith("[0, 1, 2, ").all() and result["l"].str.endswith(sql_worker.CUT_MARK).all()
    (caption,) = [c.value for c in at.caption if "rows in" in c.value]
    assert "2,000 characters" in caption and sql_worker.CUT_MARK.strip() in caption
    _submit(at, app_home, "select 'short' as t")
    (caption,) = [c.value for c in at.caption if "rows in" in c.value]
    assert "cut" not in caption


def test_an_unreadable_twin_is_said_in_words(app_home, copy_home):
    """Review: a truncated twin raised duckdb.IOException on the page, naming its absolute path."""
    home = copy_home(app_home)
    with open(home.analytics_deid_db, "r+b") as fh:
        fh.truncate(8192)
    at = open_page(home, "analyst", "sql")
    assert not at.exception, [e.value for e in at.exception]
    assert sql_guard.DeidUnreadable.user_message in [w.value for w in at.warning]
    assert str(home.home) not in rendered_text(at) and not at.text_area


def test_no_twin_tells_the_analyst_without_a_server_path(app_home, copy_home):
    """Review #6: the page printed 'No de-identified database at /srv/.../analytics_deid.duckdb' to analysts."""
    home = copy_home(app_home)
    home.analytics_deid_db.unlink()
    at = open_page(home, "analyst", "sql")
    assert not at.exception and not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "No de-identified copy of the data is served yet" in warnings and "Admin → Refresh now" in warnings
    shown = rendered_text(at)
    assert str(home.home) not in shown and "analytics_deid.duckdb" not in shown
    assert not at.text_area  # no query box without a twin
