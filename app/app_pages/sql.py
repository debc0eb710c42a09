"""SQL (analyst): ad-hoc read-only queries against the de-identified twin of the analytics file.

One SELECT / WITH / DESCRIBE / SHOW statement at a time, capped in rows and time, in a sandbox DuckDB with
no file access that can only read analytics_deid.duckdb (see app/lib/sql_guard.py and app/README.md)."""

from pathlib import Path

import streamlit as st

from app.lib import sql_guard, ui
from app.lib.db import file_identity

ctx = ui.page("sql")
ctx.as_of_caption()


@st.cache_resource(max_entries=2, show_spinner=False)
def sandbox(path: str, identity: str):
    """One sandbox per served twin (keyed by its file identity, so a swap is picked up), shared by analyst
    sessions (each query gets its own cursor)."""
    return sql_guard.build_sandbox(Path(path))


deid_path = ctx.settings.analytics_deid_db
ident = file_identity(deid_path)
if ident is None:
    st.warning(str(sql_guard.DeidMissing(deid_path)))
    st.stop()
box = sandbox(str(deid_path), ident.token)
st.caption(f"Read-only · de-identified (patient_key only) · one statement · up to {sql_guard.ROW_CAP:,} rows · "
           f"{sql_guard.TIME_LIMIT_S:.0f} s limit · no file access")
with st.expander("Tables you can query"):
    ui.table(sql_guard.sandbox_catalog(box), "sql_catalog", "sql_catalog")

default = "select clinic_id, kpi, value from marts.practice_kpis where grain = 'month' order by period_start desc limit 20"
with st.form("sql_form"):
    text = st.text_area("Query", value=st.session_state.get("sql_last", default), height=160, key="sql_text")
    run = st.form_submit_button("Run", type="primary")
if run:
    st.session_state["sql_last"] = text
    try:
        result = sql_guard.run_readonly(box, text)
    except sql_guard.SqlRefused as exc:
        st.error(str(exc))
    else:
        note = " (row cap reached: results are cut off)" if result.truncated else ""
        st.caption(f"{len(result.frame):,} rows in {result.seconds:.2f} s{note}")
        ui.table(result.frame, "query_result", "sql_result", empty_message="The query returned no rows.")
