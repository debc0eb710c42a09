"""Admin: refresh the data now (the pipeline runs in the background while the app keeps serving), see its
progress, see who has which role and what each role may open, and read the audit log."""

import pandas as pd
import streamlit as st

from app.lib import audit, auth, refresh, ui

ctx = ui.page("admin", needs_data=False)
s = ctx.settings

st.subheader("Refresh now")
st.caption(
    f"Runs `ptpulse refresh --home {s.home}`: ingest new files from {s.incoming}, build, score, swap. "
    "The app keeps serving the current data and switches to the new build when it is swapped in."
)
st.page_link(auth.page_file("upload"), label="Upload exports from this computer", icon=":material/upload_file:")


@st.fragment(run_every=2)
def progress() -> None:
    status = refresh.status(s)
    holder = refresh.pipeline_holder(s)
    if status.running:
        st.info(
            f"Running since {status.started_at} (started by {status.actor}): **{status.last_line}**",
            icon=":material/sync:",
        )
    elif status.exit_code is not None:
        (st.success if status.ok else st.error)(
            f"Last refresh (started {status.started_at} by {status.actor}) "
            + ("finished: the new build is served." if status.ok else f"failed with exit code {status.exit_code}.")
        )
    elif holder:
        st.info(f"Another pipeline command holds the lock: {holder}")
    if status.tail:
        with st.expander("Log", expanded=status.running):
            st.code(status.tail, language=None)


if st.button(
    "Refresh now",
    type="primary",
    key="admin_refresh",
    disabled=refresh.status(s).running or bool(refresh.pipeline_holder(s)),
):
    started = refresh.start(s, ctx.user.email)
    audit.log(s.app_db, ctx.user.email, ctx.user.role, "refresh.started", {"log": started.log_path})
    st.toast("Refresh started")
progress()

st.subheader("Users and roles in effect")
path = auth.roles_file_path(s.home)
st.caption(
    f"Signed-in users get their role and clinics from {path} "
    + ("(demo mode is on: no sign-in configured, roles are picked in the sidebar)." if ctx.user.demo else ".")
)
try:
    cfg = auth.load_roles(path)
    rows = [
        {"who": k, "kind": "email", "role": v.role, "clinics": "all" if v.clinics is None else ", ".join(v.clinics)}
        for k, v in cfg.users.items()
    ]
    rows += [
        {
            "who": f"*@{k}",
            "kind": "domain",
            "role": v.role,
            "clinics": "all" if v.clinics is None else ", ".join(v.clinics),
        }
        for k, v in cfg.domains.items()
    ]
    ui.table(pd.DataFrame(rows), "roles", "admin_roles", empty_message=f"No roles file yet at {path}.")
except ValueError as exc:
    st.error(str(exc))

matrix = pd.DataFrame(
    [
        {
            "page": auth.PAGE_TITLES[p],
            **{auth.ROLE_LABELS[r]: ("✅" if auth.can_view(r, p) else "") for r in auth.ROLES},
        }
        for p in auth.PAGE_ACCESS
    ]
)
st.markdown("**What each role may open** (identities are shown only to owner, manager, front desk and admin)")
ui.table(matrix, "page_access", "admin_matrix")

st.subheader("Audit log (latest 200)")
ui.table(audit.recent(s.app_db), "audit_log", "admin_audit", empty_message="Nothing audited yet.")
