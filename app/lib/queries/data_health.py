"""Data health: loads, quarantine by rule, freshness per source and the build history."""

from __future__ import annotations

import pandas as pd

from app.lib.queries.base import Reader


def loads(r: Reader) -> pd.DataFrame:
    sql = """
    select source, load_id, file, loaded_at, any_value(load_status) as status, any_value(rows_read) as rows_read,
           any_value(rows_landed) as rows_landed, any_value(rows_quarantined) as rows_quarantined,
           any_value(rows_duplicate) as rows_duplicate, any_value(message) as message
    from marts.data_quality group by source, load_id, file, loaded_at order by loaded_at desc, load_id desc
    """
    return r.df(sql)


def quarantine_by_rule(r: Reader) -> pd.DataFrame:
    return r.df(
        "select source, rule, sum(rows) as rows from marts.data_quality where rule <> '(none)' and rows > 0 "
        "group by all order by rows desc"
    )


def code_warnings(r: Reader) -> pd.DataFrame:
    """Landed rows flagged with a warning (a code not in its code list): counted, never quarantined."""
    if not r.has("marts.data_quality_warnings"):
        return pd.DataFrame()
    return r.df(
        "select source, column_name, code_list, rule, sum(rows) as rows, count(distinct load_id) as loads "
        "from marts.data_quality_warnings group by all order by rows desc"
    )


def source_coverage(r: Reader) -> pd.DataFrame:
    """Every source the build knows, loaded or not (which export lights up which page)."""
    if not r.has("marts.source_coverage"):
        return pd.DataFrame()
    return r.df(
        "select source, is_loaded, rows_in_build, files_loaded, files_refused, last_loaded_at "
        "from marts.source_coverage order by is_loaded desc, source"
    )


def freshness(r: Reader) -> pd.DataFrame:
    sql = """
    select source, max(source_last_loaded_at) as last_loaded_at, max(loaded_at) as last_attempt_at,
           count(distinct load_id) as loads
    from marts.data_quality group by 1 order by last_loaded_at nulls first
    """
    return r.df(sql)


def builds(r: Reader, limit: int = 20) -> pd.DataFrame:
    if not r.has("meta.builds"):
        return pd.DataFrame()
    return r.df("select * from meta.builds order by started_at desc limit $limit", {"limit": int(limit)})
