"""Upload data (admin, manager): drop this week's exports here instead of using a terminal. Each file is validated
and landed by `ptpulse ingest` (same contracts, profiles and lock as the command line), the result per file is
shown at once, and a refresh then runs in the background while the app keeps serving the current data.

A user limited to some clinics uploads for those clinics only: the ingestion is told their clinics (`--clinics`,
app/lib/uploads.py) and sets aside every other clinic's rows, and refuses exports that name no clinic."""

import time

import pandas as pd
import streamlit as st

from app.lib import audit, auth, refresh, ui, uploads

ctx = ui.page("upload", needs_data=False)
s = ctx.settings
scoped = ctx.user.clinics  # None = every clinic; else the upload lands only rows of these clinics
RESULT_KEY = "upload_result"
COUNTER_KEY = "upload_counter"  # a new uploader key after each upload clears the picked files

st.caption(
    "Upload your practice-management exports: CSV files named after what they hold (`intake_events.csv`, "
    "`scheduling_events_november.csv` …), FHIR NDJSON/JSON (or a zip of a Bulk export), X12 835/837 files, "
    "any of them zipped or gzip-compressed (`scheduling_events.csv.gz`), "
    "and vendor exports a source profile recognises (the shipped ones, or the practice's own in the home's "
    "`profiles/` folder: `ptpulse profile install`). "
    f"Up to {uploads.max_bytes() // (1024 * 1024):,} MB per file. Rows that break a rule are set aside, never "
    "loaded; a file that cannot be read is refused with what to fix. Loading the same file twice adds nothing."
)
if scoped is not None:
    st.info(
        f"Your account is limited to {len(scoped):,} clinic(s) ({', '.join(scoped) or 'none'}), so your uploads "
        "load only their rows: rows of other clinics, or naming another clinic's appointments, episodes, referrals, "
        "claims or patients, are set aside (not loaded). Exports without a clinic column "
        f"({', '.join(f'`{x}`' for x in uploads.sources_without_clinic())}) and FHIR / X12 files are refused: "
        "an administrator loads those.",
        icon=":material/domain:",
    )

busy = refresh.status(s).running or bool(refresh.pipeline_holder(s))
n = st.session_state.setdefault(COUNTER_KEY, 0)
picked = st.file_uploader(
    "Export files",
    accept_multiple_files=True,
    type=[suffix.lstrip(".") for suffix in uploads.ALLOWED_SUFFIXES],
    key=f"upload_files_{n}",
    help="Pick several files at once; a zip is unpacked, a .gz is read as the file inside.",
)
go = st.button(
    "Validate and load",
    type="primary",
    key="upload_go",
    disabled=not picked,
    help="A refresh is running: the upload waits for it to finish." if busy else None,
)

if go and picked:
    with st.status("Validating and loading…", expanded=False) as box:
        saved = uploads.save_files(s, [(f.name, f) for f in picked], clinics=scoped)
        outcome = None
        error = None
        waiting = False
        if saved.files:
            try:
                outcome = uploads.run_ingest(s, saved)
                uploads.set_aside_refused(s, saved, outcome)
                uploads.keep_for_administrator(s, saved, outcome)  # a limited upload: only what an admin may load
            except uploads.PipelineBusyError as exc:
                error, waiting = str(exc), True  # the files stay in incoming/: the next refresh loads them
            except uploads.UploadError as exc:
                error = str(exc)
        landed_at = time.time()  # what this upload landed is in raw.duckdb by now
        table = uploads.result_table(saved, outcome, waiting=waiting)  # per load (a FHIR Bundle: one per table)
        files = uploads.file_table(table)  # per file: what the user offered, counted and shown first
        n_ = uploads.counts(files)
        audit.log(
            s.app_db,
            ctx.user.email,
            ctx.user.role,
            "upload.ingested",
            {
                "upload_id": saved.upload_id,
                "error": bool(error),
                "clinics": None if scoped is None else list(saved.clinics or ()),  # a limited upload's clinics
                **n_,
                "loads": int(len(table)),
            },
        )
        refreshing = False
        log = None
        if outcome is not None and uploads.needs_refresh(outcome):
            # a refresh still running now may have started before this upload landed (the CLI releases the
            # pipeline lock before its process exits): then `start` queues a new run behind it
            before = refresh.status(s)
            started = refresh.start(s, ctx.user.email, after=landed_at)
            log = started.log_path
            if not before.running or started.log_path != before.log_path:
                audit.log(
                    s.app_db,
                    ctx.user.email,
                    ctx.user.role,
                    "refresh.started",
                    {"log": started.log_path, "upload_id": saved.upload_id},
                )
            refreshing = True
        box.update(label="Upload checked", state="error" if error and not waiting else "complete")
    st.session_state[RESULT_KEY] = {
        "table": table,
        "files": files,
        "error": error,
        "waiting": waiting,
        "refreshing": refreshing,
        "log": log,
        "id": saved.upload_id,
    }
    st.session_state[COUNTER_KEY] = n + 1
    st.rerun()

result = st.session_state.get(RESULT_KEY)
# the row counts and notes both result tables show (per file, and per load in the expander)
OUTCOME_COLUMNS = {
    "rows_read": st.column_config.NumberColumn("Rows read", format="localized"),
    "rows_landed": st.column_config.NumberColumn("Landed", format="localized"),
    "rows_quarantined": st.column_config.NumberColumn("Set aside", format="localized"),
    "rows_duplicate": st.column_config.NumberColumn("Duplicates", format="localized"),
    "why_set_aside": st.column_config.TextColumn("Why rows were set aside", width="medium"),
    "fix": st.column_config.TextColumn("What to do", width="large"),
}

if result:
    st.subheader("Result of your upload")
    if result["error"] and result.get("waiting"):
        st.warning(result["error"], icon=":material/hourglass_top:")
    elif result["error"]:
        st.error(result["error"], icon=":material/error:")
    table: pd.DataFrame = result["table"]
    files: pd.DataFrame = result["files"]
    c = uploads.counts(files)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Files landed", f"{c['landed']:,} of {c['files']:,}", border=True)
    m2.metric("Files refused", f"{c['refused']:,}", border=True)
    m3.metric("Rows landed", f"{c['rows_landed']:,}", border=True)
    m4.metric("Rows set aside", f"{c['rows_quarantined']:,}", border=True)
    ui.table(
        files,
        "upload_result",
        "upload_result",
        column_config={
            "file": st.column_config.TextColumn("File", pinned=True),
            "result": st.column_config.TextColumn("Result", pinned=True),
            "landed_into": st.column_config.TextColumn("Landed into (rows)", width="medium"),
            **OUTCOME_COLUMNS,
        },
        empty_message="No file was offered.",
    )
    if len(table) > len(files):  # a FHIR Bundle or an X12 file feeds several tables: one load each
        with st.expander(f"Per table: the {len(table):,} loads of these {len(files):,} files"):
            ui.table(
                table,
                "upload_loads",
                "upload_loads",
                column_config={
                    "file": st.column_config.TextColumn("File", pinned=True),
                    "source": "Table",
                    "result": "Result",
                    **OUTCOME_COLUMNS,
                },
            )
    if c["already"]:
        st.caption(f"{c['already']:,} file(s) had been loaded before: nothing was added twice.")
    if c.get("nothing"):
        st.caption(f"{c['nothing']:,} file(s) were read but landed no rows: the table says why.")
    if not result["refreshing"] and not result["error"]:
        st.info("Nothing new landed, so the dashboards were not rebuilt.", icon=":material/info:")


@st.fragment(run_every=2)
def progress() -> None:
    """The background refresh (same run as Admin → Refresh now): step, share done, and the end state."""
    status = refresh.status(s)
    if status.running:
        share = refresh.progress_share(status)
        st.progress(share or 0.0, text=f"Updating the dashboards: {status.last_line}")
    elif status.exit_code is not None and result and result.get("refreshing"):
        if status.ok:
            st.success("The dashboards are up to date with your upload.", icon=":material/check_circle:")
            st.page_link(auth.home_page_file(ctx.user.role), label="Open your dashboards", icon=":material/monitoring:")
        else:
            st.error(
                f"Updating the dashboards failed (exit code {status.exit_code}). The previous data is still "
                "served. An administrator can see the log on the Admin page.",
                icon=":material/error:",
            )


progress()
