"""Data health (admin, analyst): what was loaded and when, what was quarantined and under which rule,
how fresh each source is, how rows from different exports were tied together (and which were not, with the cash
of payments on unknown claims), and the last builds with their test results. Rejected rows themselves
(which may contain PHI) are shown to admins only; roles without PHI (analysts) see no file or export name
anywhere on the page, the refresh service's problems and waiting runs included (a file may be named after its
patient), and nobody sees a server path.

Clinic scope: loads, quarantine, warnings, link counts and the builds' row counts have no clinic (an export holds
every clinic's rows), so a user limited to some clinics gets none of them, as their SQL page holds none of those
tables (app/lib/sql_guard.py SCOPE_SHARED_TABLES); they see the scheduler's state, each source's last load against
its expected cadence and the last build's outcome: times and states, no figure of any clinic.

Sources read as the exports a practice knows ("Scheduling export"), not as the contracts' names."""

import json
import re
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from app.lib import charts, labels, service_status, source_needs, ui
from app.lib.formatting import fmt
from app.lib.queries.base import clinics as base_clinics
from app.lib.queries.data_health import (
    builds,
    code_warnings,
    freshness,
    link_summary,
    loads,
    quarantine_by_rule,
    source_coverage,
    unlinked_rows,
)

ctx = ui.page("data_health")
# Limited to some clinics: no practice-wide count on this page (see the docstring).
scoped = ctx.user.scope.clinics is not None


def source_label(code: object) -> str:
    """A source as the practice knows its export: 'scheduling_events' -> 'Scheduling export'."""
    text = source_needs.EXPORT_LABELS.get(str(code))
    if not text:
        return labels.humanize(str(code))
    text = re.sub(r"^(an?|the) ", "", text)
    return text[:1].upper() + text[1:]


def with_source_labels(df: pd.DataFrame, column: str = "source") -> pd.DataFrame:
    return df.assign(**{column: df[column].map(source_label)}) if column in df and len(df) else df


# The loader's summary names its command-line tools and raw tables; say where a person finds the rows instead.
_TOOLS = re.compile(r"see `ptpulse status` and raw\._quarantine \(load_id (\d+)\)")


def plain_message(text: object) -> object:
    if not isinstance(text, str):
        return text
    where = (
        r'listed under "Rejected rows" at the bottom of this page (load \1)'
        if ctx.user.role == "admin"
        else r"an administrator can list them on this page (load \1)"
    )
    return _TOOLS.sub(where, text)


if ctx.reader.has("marts.data_quality") and not scoped:
    load_rows = loads(ctx.reader)
    q = quarantine_by_rule(ctx.reader)
    fresh = freshness(ctx.reader)
else:
    load_rows = q = fresh = pd.DataFrame()
build_rows = builds(ctx.reader)
if scoped:  # the build's outcome and time only: its row counts and tests are the whole practice's
    build_rows = build_rows[[c for c in ("status", "finished_at") if c in build_rows]]
    clinic_names = ", ".join(base_clinics(ctx.reader)["clinic_name"].astype(str)) or "your clinics"
    st.info(
        f"Your account is limited to {clinic_names}. Loads, quarantined rows, warnings, link counts and build "
        "sizes cover every clinic's rows at once (an export is not split by clinic), so they are not shown here; "
        "an administrator sees them. Below: whether the scheduled refresh runs, each source's last load and the "
        "last build."
    )

c1, c2, c3, c4 = st.columns(4)
if scoped:  # one tile, in the first place
    c4 = c1
else:
    c1.metric("Loads", fmt(len(load_rows), "count"), border=True)
    c2.metric("Rows quarantined", fmt(q["rows"].sum() if len(q) else 0, "count"), border=True)
    c3.metric(
        "Refused files", fmt((load_rows["status"] == "refused").sum() if len(load_rows) else 0, "count"), border=True
    )
last = build_rows.iloc[0].to_dict() if len(build_rows) else {}
c4.metric(
    "Last build",
    labels.label("build_status", last.get("status")) if last.get("status") else "–",
    str(last.get("finished_at", "")) or None,
    delta_color="off",
    border=True,
)

st.subheader("Refresh service")
now = datetime.now(UTC)
status = service_status.read_status(ctx.settings.home)
level, sentence = service_status.scheduler_state(status, now)
{"ok": st.success, "warning": st.warning, "error": st.error, "info": st.info}[level](sentence)
if status and not status.get("unreadable"):
    s1, s2, s3 = st.columns(3)
    s1.metric("Next scheduled run", service_status.when_text(status.get("next_run"), now), border=True)
    s2.metric("Last success", service_status.when_text(status.get("last_success"), now), border=True)
    s3.metric("Pending retries", fmt(len(status.get("pending") or []), "count"), border=True)
    if not scoped:  # the runs' files, problems and counts are the whole practice's
        run = service_status.last_run(status, now)
        if run is None:
            st.caption("No refresh has run under the scheduler yet.")
        else:
            st.markdown("**Last run:** " + " · ".join(f"{k}: {v}" for k, v in run.items()))
            run_problems = service_status.problems(status, phi=ctx.user.scope.phi, home=ctx.settings.home)
            if len(run_problems):
                st.error(f"The last run reported {len(run_problems)} problem(s); each says what to fix.")
                ui.table(run_problems, "service_problems", "dh_svc_problems", pinned=("What",))
        waiting = service_status.pending(status, now, phi=ctx.user.scope.phi)
        if len(waiting):
            st.markdown("**Waiting to run**")
            ui.table(waiting, "service_pending", "dh_svc_pending")
        st.markdown("**Recent runs** (newest first)")
        ui.table(service_status.history(status, now), "service_runs", "dh_svc_runs", empty_message="No runs yet.")

st.subheader("Freshness against the expected cadence")
coverage = source_coverage(ctx.reader)
if scoped and len(coverage):  # each source's last load time only (the table's row and file counts are practice-wide)
    coverage = coverage[["source", "last_loaded_at"]]
cadence_rows = service_status.source_freshness(coverage, service_status.cadence(status, ctx.settings.home), now)
cadence_rows = with_source_labels(cadence_rows, "Source")
stale = cadence_rows[cadence_rows["Status"] == "Stale"]
if len(stale):
    st.error(
        f"Stale: {', '.join(stale['Source'])} had no load within the expected cadence. Check that the EMR export "
        "still runs and lands in incoming/, then refresh."
    )
elif len(cadence_rows) and cadence_rows["Status"].eq("Not checked").all():
    st.caption("No expected cadence is set: add `cadence_hours` to service.yml (deployment guide) to be alerted.")
ui.table(cadence_rows, "source_cadence", "dh_cadence", empty_message="No source list in this build.")

if scoped:
    st.stop()  # nothing below has a clinic: loads, coverage, warnings, links, quarantine and builds

st.subheader("Freshness by source")
ui.table(with_source_labels(fresh), "source_freshness", "dh_fresh", empty_message="No loads recorded in this build.")

st.subheader("Sources in this build")
st.caption(
    "A page whose sources were never loaded says which export to load, with its code in brackets (a scheduling "
    "export (scheduling_events), 835 files ...): the code column matches those messages."
)
ui.table(
    coverage.assign(export=coverage["source"].map(source_label))[["export", *coverage.columns]]
    if len(coverage)
    else coverage,
    "source_coverage",
    "dh_coverage",
    empty_message="No source list in this build.",
    pinned=["export"],
    column_config={"export": "Export", "source": "Code"},
)

st.subheader("Warnings on landed rows")
st.caption(
    "Rows that landed and count in every figure, but carry a code missing from its list (ingestion/codes/): "
    "add the code to the list if it is real. possible_resend: a referral received within 7 days after another one "
    "for the same patient from the same source, under another referral id: if it is a re-sent fax, close the "
    "duplicate in the EMR; a genuine second referral needs nothing."
)
ui.table(
    with_source_labels(code_warnings(ctx.reader)),
    "code_warnings",
    "dh_warnings",
    empty_message="No warnings in this build.",
)

st.subheader("Linking across exports")
links = link_summary(ctx.reader)
if not links:
    st.info("This build predates link counts; the next refresh adds them.")
else:
    st.caption(
        "Charge lines, claims and notes that arrive without our visit or episode ids (X12, FHIR, EMR exports) are "
        "tied to the patient's visit on the date of service and to the episode of care around it; patients in "
        "different exports are matched by member id, else by name and birth date. Nothing here is dropped: an "
        "unlinked row still counts in every total, it only cannot be shown against a visit, episode or claim."
    )
    l1, l2, l3, l4 = st.columns(4)
    l1.metric("Rows with their ids", fmt(links["carried"], "count"), border=True)
    l2.metric("Rows linked by the rule", fmt(links["linked"], "count"), border=True)
    l3.metric("Rows not linked", fmt(links["unlinked"], "count"), border=True)
    l4.metric(
        "Cash on claims not loaded",
        fmt(links["orphan_cash"], "usd"),
        f"{fmt(links['orphan_remits'], 'count')} payment rows",
        delta_color="off",
        border=True,
    )
    st.caption("Amount: dollars charged (charge lines), billed (claims) or paid (payments); notes carry none.")
    ui.table(
        unlinked_rows(ctx.reader),
        "unlinked_rows",
        "dh_unlinked",
        empty_message="Every charge line, claim, note and payment is tied to its visit, episode or claim.",
        pinned=("What",),
    )

left, right = st.columns(2)
with left:
    shown_q = with_source_labels(q)
    ui.chart(charts.quarantine(shown_q), shown_q, "quarantine_by_rule", "dh_quarantine")
with right:
    st.markdown("**Loads** (newest first)")
    shown_loads = with_source_labels(load_rows)
    if len(shown_loads):
        shown_loads = shown_loads.assign(
            status=labels.relabel(shown_loads["status"], "load_status"),
            message=shown_loads["message"].map(plain_message),
        )
    ui.table(shown_loads, "loads", "dh_loads", height=360)

st.subheader("Builds and their tests")
if build_rows.empty:
    st.caption("No build history in this file.")
else:

    def _tests(value) -> str:
        try:
            t = json.loads(value) if isinstance(value, str) else (value or {})
            return f"{t.get('passed', '?')} passed, {t.get('warned', 0)} warned, {t.get('failed', 0)} failed"
        except (TypeError, ValueError, AttributeError):
            return str(value)

    view = build_rows.copy()
    if "tests" in view:
        view["test_summary"] = view["tests"].map(_tests)
    ui.table(view, "builds", "dh_builds")
    failures = last.get("tests")
    try:
        failed = (json.loads(failures) if isinstance(failures, str) else failures or {}).get("failures") or []
    except (TypeError, ValueError, AttributeError):
        failed = []
    if failed:
        st.warning("Failed or warned tests in the last build: " + ", ".join(map(str, failed)))

if ctx.user.role == "admin":
    st.subheader("Rejected rows (admin only)")
    st.caption("Read from raw.duckdb on request (held open only for the read, so ingestion is never blocked).")
    if st.button("Show the latest 200 rejected rows", key="dh_show_rejected"):
        import duckdb

        raw = ctx.settings.raw_db
        if not raw.exists():
            st.info("No raw.duckdb yet.")
        else:
            try:
                con = duckdb.connect(str(raw), read_only=True)
                try:  # the file's catalog and its schema are both `raw`: name the table fully
                    rows = con.execute(
                        "select load_id, source, file, line, rule, column_name, detail, record "
                        "from raw.raw._quarantine order by load_id desc, line limit 200"
                    ).df()
                finally:
                    con.close()
                ui.table(rows, "quarantined_rows", "dh_rows")
            except duckdb.CatalogException:
                st.info("No row has been set aside yet.")
            except duckdb.Error:
                st.warning("Could not read raw.duckdb right now: ingestion may be writing it. Try again in a minute.")
