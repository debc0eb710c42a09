"""SQL (analyst): ad-hoc read-only queries against the de-identified twin of the analytics file.

One SELECT / WITH / DESCRIBE / SHOW statement at a time, capped in rows, time and memory, each run in its own
worker process (killed at the limits) whose DuckDB has no file access and can only read analytics_deid.duckdb
(see app/lib/sql_guard.py, app/lib/sql_worker.py and app/README.md). A clinic-scoped analyst's worker holds only
their clinics' rows (and no practice-wide table), as every other page shows them only those clinics."""

from pathlib import Path

import streamlit as st

from app.lib import sql_guard, sql_worker, ui
from app.lib.db import file_identity

ctx = ui.page("sql")


@st.cache_resource(max_entries=2, show_spinner=False)
def sandbox(path: str, identity: str):
    """The served twin, verified, and its table list, once per file identity (so a swap is picked up); shared
    by analyst sessions. Queries themselves run in a fresh worker process each."""
    return sql_guard.build_sandbox(Path(path))


deid_path = ctx.settings.analytics_deid_db
ident = file_identity(deid_path)
if ident is None:
    st.warning(sql_guard.DeidMissing.user_message)  # never the server path (str(DeidMissing) names it)
    st.stop()
try:
    box = sandbox(str(deid_path), ident.token)
except sql_guard.DeidMissing:  # swapped away between the check above and the read
    st.warning(sql_guard.DeidMissing.user_message)
    st.stop()
except sql_guard.DeidUnreadable:  # damaged or truncated: DuckDB's own error names the server path, so not shown
    st.warning(sql_guard.DeidUnreadable.user_message, icon=":material/lock:")
    st.stop()
except sql_guard.NotDeidentified as exc:
    # e.g. a twin written before the privacy rule gained a column: refuse it in words, not a traceback
    st.warning(
        "The de-identified copy of the data was written before the current privacy rule, so this page will not "
        "open it until the next refresh (ask an administrator: Admin → Refresh now).",
        icon=":material/lock:",
    )
    st.caption(f"Details: {exc}")
    st.stop()
limits = box.limits
scope = ctx.user.scope.clinics  # None = every clinic
if scope is not None:
    st.info(
        f"Your account is limited to clinic(s) {', '.join(scope) or '(none)'}: queries here read only their rows; "
        "practice-wide tables (attribution, referral-source performance, forecasts) are not available.",
        icon=":material/lock:",
    )
st.caption(
    f"Read-only · de-identified (patient_key only) · one statement · up to {limits.row_cap:,} rows · "
    f"{limits.time_limit_s:g} s · {limits.memory_limit_mb} MB memory · no file access"
)
with st.expander("Tables you can query"):
    ui.table(
        sql_guard.sandbox_catalog(box, scope),
        "sql_catalog",
        "sql_catalog",
        column_config={"table_name": "Table", "columns": "Columns"},
        pinned=("table_name",),
    )

default = (
    "select clinic_id, kpi, value from marts.practice_kpis where grain = 'month' order by period_start desc limit 20"
)
with st.form("sql_form"):
    text = st.text_area("Query", value=st.session_state.get("sql_last", default), height=160, key="sql_text")
    run = st.form_submit_button("Run", type="primary")
if run:
    st.session_state["sql_last"] = text
    try:
        with st.spinner("Running in its own worker process…"):
            result = sql_worker.run_readonly(box, text, clinics=scope)
    except sql_guard.SqlRefused as exc:
        st.error(str(exc))
    else:
        note = " (row cap reached: results are cut off)" if result.truncated else ""
        if result.cells_cut:
            note += (
                f" · text longer than {limits.cell_chars:,} characters a cell (lists and structs are shown as text) "
                f"is cut, marked “{sql_worker.CUT_MARK.strip()}”"
            )
        st.caption(f"{len(result.frame):,} rows in {result.seconds:.2f} s{note}")
        ui.table(result.frame, "query_result", "sql_result", empty_message="The query returned no rows.")
