"""The SQL page on a real built home (AppTest, real worker processes): an attack shows a clear error on the
page, the page keeps working for the next query, and path-revealing or DML-in-CTE statements are refused."""

from __future__ import annotations

import pytest
from app_helpers import open_page, rendered_text, rerun


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
        ("with x as (delete from marts.practice_kpis returning *) select * from x", "DELETE may not appear"),
    ],
)
def test_page_refuses_paths_and_hidden_writes(app_home, sql, message):
    at = open_page(app_home, "analyst", "sql")
    _submit(at, app_home, sql)
    assert not at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert str(app_home.home) not in " ".join(e.value for e in at.error)


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
