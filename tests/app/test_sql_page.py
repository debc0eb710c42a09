"""The SQL page on a real built home (AppTest, real worker processes): an attack shows a clear error on the
page, the page keeps working for the next query, and path-revealing or DML-in-CTE statements are refused."""

from __future__ import annotations

import pytest
from app_helpers import open_page, rerun


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
