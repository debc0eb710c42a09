"""Work queue (front desk, manager, owner): one ranked list of who to call next and why, with an SLA
countdown. Actions (claim/assign, log outreach, snooze, mark lost, confirm) are appended to app state with
user and time and show here at once, for everyone, without waiting for a rebuild."""

from datetime import datetime, time, timedelta

import pandas as pd
import streamlit as st

from app.lib import actions, charts, model_cards, send_ui, ui
from app.lib import work_queue as wq
from app.lib.formatting import reference_now
from app.lib.queries.work_queue import queue_candidates

ctx = ui.page("work_queue")
ui.require_tables(ctx, "marts.work_queue_candidates", what="The work queue")
app_db = ctx.settings.app_db
me = ctx.user.email

now = reference_now(ctx.as_of, datetime.now())
if ctx.as_of is not None and now == ctx.as_of:
    st.caption(f"SLA clocks run from the data's as-of time ({now:%Y-%m-%d %H:%M}) because the data is not current.")

candidates = queue_candidates(ctx.reader, ctx.filters, scores_servable=model_cards.no_show_servable(ctx.settings))
candidates = wq.for_role(candidates, ctx.user.role)  # the front desk sees its own queue, not clinicians' notes
states = actions.task_states(app_db, candidates["task_id"].tolist())
queue = wq.assemble(candidates, states, now, wq.lead_scores(ctx.reader))

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
people = ["Anyone", "Me", "Unassigned", *[a for a in actions.assignees(app_db) if a != me]]
assignee = f3.selectbox("Assignee", people, key="wq_assignee")
shown = wq.select_view(queue, view, rules, assignee, me)

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
columns = [c for c in columns if c in shown.columns]
st.caption(
    f"{len(shown):,} tasks · ranked by priority, then due time"
    + (" (referral tasks: by value at stake)" if queue["value_at_stake_usd"].notna().any() else "")
)
ui.table(
    shown[columns],
    "work_queue",
    "wq_table",
    height=min(38 * (len(shown) + 1) + 4, 460),
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

if shown.empty:
    st.stop()

st.subheader("Act on a task")
top = shown.head(300)
labels = {
    r.task_id: f"#{r.rank} · {getattr(r, 'patient_name', None) or r.patient_key} · {r.rule_label} · {r.sla}"
    for r in top.itertuples()
}
task_id = st.selectbox("Task", list(labels), format_func=labels.get, key="wq_task")
task = top[top["task_id"] == task_id].iloc[0]
st.markdown(f"**{task['rule_label']}** — {task['reason']}")
closed = task["status"] in wq.CLOSED


def record(action: str, payload: dict | None = None, done: str = "Saved") -> None:
    """Append the action, tell the user, and redraw so the queue shows the new state at once."""
    try:
        actions.record(app_db, task_id, action, me, payload or {}, role=ctx.user.role)
    except actions.ActionError as exc:
        st.error(str(exc))
        return
    st.toast(f"{done}: {labels[task_id]}")
    st.rerun()


def action_forms() -> None:
    """The actions on an open or snoozed task (claim, outreach, snooze, lost, confirm) and its history."""
    tabs = st.tabs(["Log outreach", "Claim / assign", "Snooze", "Mark lost", "Confirm appointment", "History"])
    with tabs[0]:
        with st.form("wq_outreach", clear_on_submit=True):
            method = st.radio("How", actions.METHODS, horizontal=True, format_func=str.upper, key="wq_method")
            outcome = st.selectbox(
                "Outcome", list(actions.OUTCOMES), format_func=actions.OUTCOMES.get, key="wq_outcome"
            )
            note = st.text_input("Note (optional)", key="wq_note")
            if st.form_submit_button("Log outreach", type="primary"):
                record("log_outreach", {"method": method, "outcome": outcome, "note": note}, "Outreach logged")
    with tabs[1]:
        with st.form("wq_assign"):
            who = st.text_input(
                "Assign to (email)", value=me, key="wq_who", help="Leave as your own email to claim the task."
            )
            if st.form_submit_button("Claim / assign"):
                if who.strip() == me:
                    record("claim", {}, "Claimed")
                else:
                    record("assign", {"assignee": who.strip()}, f"Assigned to {who.strip()}")
    with tabs[2]:
        with st.form("wq_snooze"):
            day = st.date_input(
                "Snooze until", value=(now + timedelta(days=1)).date(), min_value=now.date(), key="wq_until"
            )
            if st.form_submit_button("Snooze"):
                record("snooze", {"until": datetime.combine(day, time(8, 0)).isoformat()}, "Snoozed")
    with tabs[3]:
        with st.form("wq_lost"):
            reason = st.selectbox("Reason", actions.LOST_REASONS, key="wq_reason")
            note = st.text_input("Note (optional)", key="wq_lost_note")
            if st.form_submit_button("Mark lost"):
                record("mark_lost", {"reason": reason, "note": note}, "Marked lost")
    with tabs[4]:
        if task.get("appointment_id") is None or str(task.get("appointment_id")) in ("", "None", "nan"):
            st.caption("This task has no appointment to confirm.")
        else:
            with st.form("wq_confirm"):
                st.write(f"Appointment **{task['appointment_id']}** confirmed with the patient?")
                if st.form_submit_button("Confirm appointment"):
                    record("confirm", {"appointment_id": str(task["appointment_id"])}, "Confirmed")
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
