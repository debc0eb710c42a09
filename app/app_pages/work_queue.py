"""Work queue (front desk, manager, owner): one ranked list of who to call next and why, with an SLA
countdown. Actions (claim/assign, log outreach, snooze, mark lost, confirm) are appended to app state with
user and time and show here at once, for everyone, without waiting for a rebuild.

Each action form is bound to the task it was drawn for: its submit button carries that task id (an on_click
argument fixed at render time). If the task is no longer the one selected when the submit arrives (a colleague
closed it, a build removed it, and Streamlit fell back to another task) or it is closed by then, nothing is
recorded and the page says so: the log is append-only, so a misattributed action could not be taken back.
Each action names the occurrence of the task it was taken on (the build's created_at; app/lib/actions.py).

Clocks: due times and snooze ends are the clinic's wall time, so every SLA countdown, snooze wake-up and the
snooze date picker use "now" on the wall clock of the task's clinic (its IANA zone from dim_clinics), never the
server's.
"""

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from app.lib import actions, charts, model_cards, outreach, send_ui, ui
from app.lib import work_queue as wq
from app.lib.queries.work_queue import queue_index, task_details

ctx = ui.page("work_queue")
ui.require_tables(ctx, "marts.work_queue_candidates", what="The work queue")
app_db = ctx.settings.app_db
me = actions.person(ctx.user.email)  # assignees are compared case-insensitively (IdPs vary the spelling)

servable = model_cards.no_show_servable(ctx.settings)
# the whole queue of the user's clinics, cut in SQL to the role's queues (the front desk sees its own queue, not
# clinicians' notes), with what ranks, counts and filters it; the listed rows get their patient and details below
candidates = queue_index(ctx.reader, ctx.filters, ctx.user.role, scores_servable=servable)
task_ids = set(candidates["task_id"].tolist())


def clinic_zones() -> dict[str, object]:
    """clinic_id -> its IANA zone (dim_clinics.timezone; the practice default for a clinic without one)."""
    if not ctx.reader.has("marts.dim_clinics"):
        return {}
    rows = ctx.reader.df("select clinic_id, timezone from marts.dim_clinics")
    return {r.clinic_id: outreach.clinic_zone(r.timezone) or outreach.default_zone() for r in rows.itertuples()}


instant = datetime.now(UTC)
zones = clinic_zones()
default_now = actions.clinic_now(outreach.default_zone(), ctx.as_of, instant)  # a task without a known clinic
clinic_nows = {
    c: actions.clinic_now(zones.get(c) or outreach.default_zone(), ctx.as_of, instant)
    for c in candidates["clinic_id"].dropna().unique()
}
if ctx.as_of is not None and ctx.as_of in {default_now, *clinic_nows.values()}:
    st.caption(
        f"SLA clocks run from the data's as-of time ({ctx.as_of:%Y-%m-%d %H:%M}) because the data is not current."
    )

# each action names the occurrence it was taken on: the fold keeps a past occurrence's actions as history only
states = actions.task_states(app_db, task_ids, wq.Occurrences(candidates))
queue = wq.assemble(candidates, states, default_now, wq.lead_scores(ctx.reader), clinic_nows)

n = wq.counts(queue)
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Open tasks", f"{n['open']:,}", border=True)
c2.metric("Overdue", f"{n['overdue']:,}", border=True)
c3.metric("Due in 24 h", f"{n['due_24h']:,}", border=True)
c4.metric("Unassigned", f"{n['unassigned']:,}", border=True)
c5.metric("Done or lost", f"{n['closed']:,}", border=True)

f1, f2, f3 = st.columns([2, 3, 2])
view = f1.segmented_control("Show", wq.VIEWS, default="Open", key="wq_view") or "Open"
rule_options = sorted(queue["rule"].unique().tolist())
rules = f2.multiselect("Reason", rule_options, format_func=wq.rule_label, key="wq_rules", placeholder="All reasons")
# the people of the tasks in this user's view only (candidates are cut to their clinics), never the whole log's
people = ["Anyone", "Me", "Unassigned", *[a for a in actions.assignees(app_db, task_ids) if a != me]]
assignee = f3.selectbox("Assignee", people, key="wq_assignee")
shown = wq.select_view(queue, view, rules, assignee, me)
# the rows listed: the top of the view, with their patient and details (and referral tasks' lead text)
listed = shown.head(wq.LISTED_ROWS)
details = task_details(ctx.reader, ctx.filters, listed["task_id"], scores_servable=servable)
listed = wq.with_lead_text(listed.merge(details.drop_duplicates("task_id"), on="task_id", how="left"))

# Key columns first and pinned, so they stay on screen at 1440 px while the rest scrolls.
columns = [
    "rank",
    "sla",
    "rule_label",
    "patient_name",
    "phone",
    "reason",
    "assignee",
    "status_label",
    "last_outreach",
    "outreach_count",
    "due_at",
    "clinic_id",
    "worked_by",
    "task_id",
]
if len(wq.ROLE_QUEUES.get(ctx.user.role, ())) < 2:
    columns.remove("worked_by")  # one queue: "who works it" says nothing
columns = [c for c in columns if c in listed.columns]
unlisted = len(shown) - len(listed)
st.caption(
    f"{len(shown):,} tasks · ranked by priority, then due time"
    + (" (referral tasks: by value at stake)" if queue["value_at_stake_usd"].notna().any() else "")
    + (
        f" · listed: the first {len(listed):,} (narrow with Reason, Assignee or the clinic filter for the other "
        f"{unlisted:,})"
        if unlisted > 0
        else ""
    )
)
ui.table(
    listed[columns],
    "work_queue",
    "wq_table",
    height=min(38 * (len(listed) + 1) + 4, 460),
    column_config={
        "rank": st.column_config.NumberColumn("#", width="small", pinned=True),
        "sla": st.column_config.TextColumn("SLA", pinned=True),
        "rule_label": st.column_config.TextColumn("Why", pinned=True),
        "worked_by": "Worked by",
        "reason": st.column_config.TextColumn("Details", width="medium"),
        "patient_name": st.column_config.TextColumn("Patient", pinned=True),
        "patient_key": st.column_config.TextColumn("Patient", pinned=True),
        "phone": "Phone",
        "clinic_id": "Clinic",
        "assignee": "Assignee",
        "last_outreach": "Last outreach",
        "outreach_count": st.column_config.NumberColumn("Tries", width="small"),
        "status_label": "Status",
        "due_at": st.column_config.DatetimeColumn("Due", format="YYYY-MM-DD HH:mm"),
        "task_id": "Task id",
    },
    empty_message="Nothing here. Change the filters, or enjoy the empty queue.",
)

# A form submitted in the last run, with the task it was drawn for (set by _submit before this run began).
pending = st.session_state.pop("wq_pending", None)
if shown.empty:
    if pending is not None:
        st.error(actions.STALE_TASK)
    st.stop()

st.subheader("Act on a task")
top = listed.head(300)
labels = {
    r.task_id: f"#{r.rank} · {getattr(r, 'patient_name', None) or r.patient_key} · {r.rule_label} · {r.sla}"
    for r in top.itertuples()
}
task_id = st.selectbox("Task", list(labels), format_func=labels.get, key="wq_task")
task = top[top["task_id"] == task_id].iloc[0]
st.markdown(f"**{task['rule_label']}** — {task['reason']}")
closed = task["status"] in wq.CLOSED
task_now = clinic_nows.get(task["clinic_id"], default_now)  # the snooze picker's today is the task clinic's


def _submit(bound_task: str, form: str, appointment_id: str | None = None) -> None:
    """on_click of every action form: runs before the next script run, with the task id fixed when the form was
    drawn, and keeps the submitted values for that run to record (or refuse). Reads the form's widgets here, as
    they were submitted."""
    ss = st.session_state
    if form == "outreach":
        action, done = "log_outreach", "Outreach logged"
        payload = {"method": ss.get("wq_method"), "outcome": ss.get("wq_outcome"), "note": ss.get("wq_note")}
    elif form == "assign":
        who = actions.person(ss.get("wq_who") or "")
        action, payload, done = ("claim", {}, "Claimed") if who == me else ("assign", {"assignee": who}, "Assigned")
        done = done if action == "claim" else f"Assigned to {who}"
    elif form == "snooze":
        day = ss.get("wq_until") or (task_now + timedelta(days=1)).date()
        action, done = "snooze", "Snoozed"
        payload = {"until": datetime.combine(day, time(8, 0)).isoformat()}
    elif form == "lost":
        action, done = "mark_lost", "Marked lost"
        payload = {"reason": ss.get("wq_reason"), "note": ss.get("wq_lost_note")}
    else:
        action, payload, done = "confirm", {"appointment_id": appointment_id}, "Confirmed"
    ss["wq_pending"] = {"task_id": bound_task, "action": action, "payload": payload, "done": done}


def record(pending: dict) -> None:
    """Append the submitted action to the task its form was drawn for, tell the user, and redraw so the queue
    shows the new state at once. Refused, with nothing written, when that task is no longer the selected one
    or was closed meanwhile (actions.record checks that inside its write transaction)."""
    if pending["task_id"] != task_id:
        st.error(actions.STALE_TASK)
        return
    try:
        actions.record(
            app_db,
            task_id,
            pending["action"],
            me,
            pending["payload"],
            role=ctx.user.role,
            require_open=True,
            occurrence=task["created_at"],
        )
    except actions.ActionError as exc:
        st.error(str(exc))
        return
    st.toast(f"{pending['done']}: {labels[task_id]}")
    st.rerun()


if pending is not None:
    record(pending)


def action_forms() -> None:
    """The actions on an open or snoozed task (claim, outreach, snooze, lost, confirm) and its history. Each
    submit button passes the task id it was drawn for (_submit)."""
    tabs = st.tabs(["Log outreach", "Claim / assign", "Snooze", "Mark lost", "Confirm appointment", "History"])
    with tabs[0]:
        with st.form("wq_outreach", clear_on_submit=True):
            st.radio("How", actions.METHODS, horizontal=True, format_func=str.upper, key="wq_method")
            st.selectbox("Outcome", list(actions.OUTCOMES), format_func=actions.OUTCOMES.get, key="wq_outcome")
            st.text_input("Note (optional)", key="wq_note")
            st.form_submit_button("Log outreach", type="primary", on_click=_submit, args=(task_id, "outreach"))
    with tabs[1]:
        with st.form("wq_assign"):
            st.text_input(
                "Assign to (email)", value=me, key="wq_who", help="Leave as your own email to claim the task."
            )
            st.form_submit_button("Claim / assign", on_click=_submit, args=(task_id, "assign"))
    with tabs[2]:
        with st.form("wq_snooze"):
            st.date_input(
                "Snooze until (8:00 at the clinic)",
                value=(task_now + timedelta(days=1)).date(),
                min_value=task_now.date(),
                key="wq_until",
            )
            st.form_submit_button("Snooze", on_click=_submit, args=(task_id, "snooze"))
    with tabs[3]:
        with st.form("wq_lost"):
            st.selectbox("Reason", actions.LOST_REASONS, key="wq_reason")
            st.text_input("Note (optional)", key="wq_lost_note")
            st.form_submit_button("Mark lost", on_click=_submit, args=(task_id, "lost"))
    with tabs[4]:
        if task.get("appointment_id") is None or str(task.get("appointment_id")) in ("", "None", "nan"):
            st.caption("This task has no appointment to confirm.")
        else:
            with st.form("wq_confirm"):
                st.write(f"Appointment **{task['appointment_id']}** confirmed with the patient?")
                st.form_submit_button(
                    "Confirm appointment", on_click=_submit, args=(task_id, "confirm", str(task["appointment_id"]))
                )
    with tabs[5]:
        hist = pd.DataFrame(actions.history(app_db, task_id))
        ui.table(hist, "task_history", "wq_history", empty_message="No actions on this task yet.")


if closed:  # a finished task: what happened, no SLA clock, no action form
    st.success(f"This task is {wq.STATUS_LABELS[task['status']].lower()}. Its history:", icon=":material/task_alt:")
    hist = pd.DataFrame(actions.history(app_db, task_id))
    ui.table(hist, "task_history", "wq_history", empty_message="No actions on this task yet.")
else:
    action_forms()

# Send a message (outbound, app/lib/send_ui.py): a reminder or outreach from a template, previewed before sending.
if not closed:
    with st.expander("Send a message (SMS or email)", icon=":material/send:"):
        send_ui.task_dialog(ctx, task_id)

with st.expander("Queue by reason"):
    open_rows = queue[queue["in_queue"]]
    by_rule = open_rows.groupby("rule_label", as_index=False).size().rename(columns={"size": "tasks"})
    ui.chart(charts.queue_by_rule(open_rows), by_rule, "queue_by_reason", "wq_rules_chart")
