"""The send dialog (Work queue, No-show risk) and the referrer-report panel (Referral sources).

Why a module of its own: the pages call one function each, so the outbound rules (app/lib/outreach.py) and
their wording live in one place. The dialog always previews first: the first message as the patient will
read it, and per recipient whether it will be sent now, queued for after quiet hours, or skipped and why.
Results come from the message log, so a failed send shows as failed (with Retry), never as sent.

The Send button carries what was previewed (recipients' tasks, template, channel; an on_click argument fixed at
render time): if the list is different when the click arrives (the selected task was closed by a colleague and
the Work queue fell back to another patient, or a build changed the list), nothing is sent and the dialog says so.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pandas as pd
import streamlit as st

from app.lib import audit, outreach, referrer_report, ui
from app.lib.queries import outreach as q
from ptpulse.core import outbound

CHANNEL_LABELS = {"sms": "SMS", "email": "Email"}
CONSENT_ROLES = ("owner", "manager")


def configured_channels() -> tuple[dict[str, outbound.Channel], str]:
    """The channels set up in env / secrets.toml, and a problem line when reading the settings failed."""
    try:
        return outbound.channels(), ""
    except outbound.OutboundError as exc:
        return {}, str(exc)


def _send_due(ctx, chans, policy) -> None:
    """Deliver the messages whose quiet hours have ended (once per page render; nothing when none wait)."""
    done = outreach.deliver_due(ctx.settings.app_db, chans, datetime.now().astimezone(), policy, ctx.user.role)
    if done:
        sent = sum(r.status == "sent" for r in done)
        st.toast(f"{sent} message(s) held for quiet hours were sent; {len(done) - sent} failed.")


def _results(ctx, key: str, chans, policy) -> None:
    """The outcome of the last send from this dialog, read back from the message log (never assumed)."""
    ids = st.session_state.get(f"{key}_sent_ids")
    if not ids:
        return
    log = outreach.messages(ctx.settings.app_db, limit=5000)
    log = log[log["message_id"].isin(ids)]
    n = log["status"].value_counts()
    line = ", ".join(f"{int(n.get(s, 0))} {s}" for s in outreach.STATUSES if n.get(s, 0))
    failed = log[log["status"] == "failed"]
    (st.error if len(failed) else st.success)(f"Last send: {line}.")
    if len(failed):
        for reason, count in failed["reason"].value_counts().items():
            st.caption(f"Failed ({int(count)}): {reason}")
        if st.button(f"Retry {len(failed)} failed", key=f"{key}_retry"):
            outreach.retry(
                ctx.settings.app_db,
                failed["message_id"].tolist(),
                chans,
                policy,
                ctx.user.role,
                actor=ctx.user.email,
                now=datetime.now().astimezone(),
            )
            st.rerun()


STALE_PREVIEW = (
    "The recipients changed since the preview (the task was closed or changed by someone else, or the list was "
    "rebuilt); nothing was sent. Check the preview below and send again."
)


def _previewed(recipients: pd.DataFrame, template: str, channel: str) -> tuple:
    """What a Send click is for: the recipients' tasks and patients, the template and the channel."""
    cols = [c for c in ("task_id", "patient_id") if c in recipients]
    rows = tuple(map(tuple, recipients[cols].astype(str).to_numpy().tolist())) if cols else ()
    return rows, template, channel


def _remember(key: str, previewed: tuple) -> None:
    """on_click of Send: keep what the user saw, for the run that handles the click."""
    st.session_state[f"{key}_previewed"] = previewed


def send_dialog(ctx, recipients: pd.DataFrame, key: str, title: str, templates: list[str] | None = None) -> None:
    """Preview and send one template to the recipients (one task, or a bulk list); a click whose preview no
    longer matches the recipients sends nothing (STALE_PREVIEW)."""
    st.markdown(f"**{title}**")
    clicked_for = st.session_state.pop(f"{key}_previewed", None)
    if not ctx.reader.scope.phi:
        st.info("Sending needs a role that may see patients' contact details (front desk, manager, owner).")
        return
    try:
        all_templates, policy = outreach.load()
    except outreach.OutreachError as exc:
        st.error(str(exc))
        return
    chans, problem = configured_channels()
    if problem:
        st.error(problem)
    _send_due(ctx, chans, policy)
    keys = [k for k in (templates or list(all_templates)) if k in all_templates]
    c1, c2 = st.columns(2)
    tkey = c1.selectbox("Template", keys, format_func=lambda k: all_templates[k].label, key=f"{key}_template")
    channel = c2.radio(
        "Channel",
        outreach.CHANNELS,
        horizontal=True,
        key=f"{key}_channel",
        format_func=lambda c: CHANNEL_LABELS[c] + ("" if c in chans else " (not set up)"),
    )
    if channel not in chans:
        st.warning(
            f"{CHANNEL_LABELS[channel]} is not set up: add the [{'smtp' if channel == 'email' else 'sms'}] settings "
            "to .streamlit/secrets.toml or the environment (deployment guide, 'Outbound messages')."
        )
    if recipients.empty:
        if clicked_for is not None and clicked_for[0]:
            st.error(STALE_PREVIEW)
        st.caption("Nobody to message.")
        return
    template = all_templates[tkey]
    planned = outreach.plan(ctx.settings.app_db, recipients, template, channel, datetime.now().astimezone(), policy)
    st.caption(outreach.summary(planned))
    first = planned[planned["decision"] != "skip"].head(1)
    with st.container(border=True):
        if len(first):  # preview a message that will go out; a skipped one may lack its merge fields
            sample = first.iloc[0]
            st.caption(f"Preview · to {sample['first_name'] or 'patient'} ({outreach.mask(sample['to_addr'])})")
            if channel == "email":
                st.markdown(f"**Subject:** {sample['subject']}")
            st.text(sample["body"])
        else:
            st.caption("No message would be sent: every recipient is skipped (the table below says why).")
    view = planned.assign(
        to=planned["to_addr"].map(outreach.mask),
        decision=planned["decision"].map({"send": "Send now", "queue": "Queued (quiet hours)", "skip": "Skipped"}),
    )[["first_name", "to", "decision", "reason"]]
    ui.table(
        view,
        "message_preview",
        f"{key}_preview",
        column_config={"first_name": "Patient", "to": "To", "decision": "Will be", "reason": "Why"},
        height=min(38 * (len(view) + 1) + 4, 260),
    )
    n_go = int((planned["decision"] != "skip").sum())
    showing = _previewed(recipients, tkey, channel)
    clicked = st.button(
        f"Send {n_go} message{'s' if n_go != 1 else ''}",
        type="primary",
        key=f"{key}_send",
        disabled=n_go == 0 or channel not in chans,
        on_click=_remember,
        args=(key, showing),
    )
    if clicked_for is not None and clicked_for != showing:  # set only by a click, even if the button changed
        st.error(STALE_PREVIEW)
    elif clicked:
        results = outreach.send(
            ctx.settings.app_db,
            recipients,
            template,
            channel,
            chans,
            ctx.user.email,
            datetime.now().astimezone(),
            policy,
            ctx.user.role,
        )
        st.session_state[f"{key}_sent_ids"] = [r.message_id for r in results]
        st.rerun()
    _results(ctx, key, chans, policy)
    if ctx.user.role in CONSENT_ROLES:
        consent_import(ctx, key)


def consent_import(ctx, key: str) -> None:
    """Owners and managers import consent and opt-out lists (EMR consent export, the SMS provider's STOP list)."""
    with st.expander("Consent and opt-outs"):
        st.caption(
            "Only patients with consent on file are messaged. Import a CSV with columns patient_id, channel (sms, "
            "email or any), consent (yes or no) and optionally consent_date (the date the source gives the "
            "decision). A 'no' (the SMS provider's opt-out list, a STOP) always takes effect; a later 'yes' lifts it "
            "only with a consent_date after the opt-out, so re-importing an older consent export does not undo a STOP."
        )
        up = st.file_uploader("Consent CSV", type=["csv"], key=f"{key}_consent")
        if up is not None and st.button("Import consent", key=f"{key}_consent_go"):
            try:
                done = outreach.import_consent(
                    ctx.settings.app_db,
                    up.getvalue(),
                    up.name,
                    ctx.user.email,
                    in_scope=lambda ids: q.patients_in_scope(ctx.reader, ids),
                )
            except outreach.OutreachError as exc:
                st.error(str(exc))
            else:
                (st.warning if done.refused_lines else st.success)(done.message())


def task_dialog(ctx, task_id: str) -> None:
    """The Work queue's send dialog for the selected task."""
    recipients = q.task_recipients(ctx.reader, ctx.filters, [task_id]) if ctx.reader.scope.phi else pd.DataFrame()
    send_dialog(ctx, recipients, "wq_send", "Send a reminder or outreach to this patient")
    log = outreach.messages(ctx.settings.app_db, [task_id])
    if len(log):
        ui.table(log.drop(columns=["task_id"]), "task_messages", "wq_send_log")


def high_risk_dialog(ctx, today: date) -> None:
    """The No-show risk page's bulk reminder to the high-risk appointments of the next clinic day (tomorrow,
    or Monday when asked on a Friday or Saturday)."""
    if not ctx.reader.scope.phi:
        send_dialog(ctx, pd.DataFrame(), "ns_send", "Remind tomorrow's high-risk appointments")
        return
    day = q.next_clinic_day(ctx.reader, ctx.filters, today)
    if day is None:
        st.caption("No scored appointments after today.")
        return
    recipients = q.high_risk_recipients(ctx.reader, ctx.filters, day)
    send_dialog(
        ctx,
        recipients,
        "ns_send",
        f"Remind the {len(recipients)} high-risk appointment(s) of {day:%a %b} {day.day}",
        templates=["appointment_reminder"],
    )


REPORT_STATE = "rs_report_bytes"  # session_state: (made_for, file name, PDF bytes) of the last PDF made


def report_made_for(ctx, physician_id: str, month: date, html: str) -> tuple:
    """Everything that shapes a referrer-report PDF: who made it (user, role and clinic scope), the clinics in
    view, the physician, the month and the rendered HTML itself (its patient list, totals and practice name). A
    saved PDF is handed out again only for the very same tuple: after a role switch, a clinic filter change or a
    new build it is made again from what this user may see now."""
    scope = ctx.reader.scope
    return (
        ctx.user.email,
        scope.key,
        scope.effective_clinics(ctx.filters.clinics),
        str(physician_id),
        f"{month:%Y-%m}",
        hashlib.sha256(html.encode("utf-8")).hexdigest(),
    )


def saved_report(made_for: tuple) -> bytes | None:
    """The PDF saved for exactly `made_for`, else None. A PDF made under another user or scope is dropped from
    the session (it may list patients this role may not see)."""
    made = st.session_state.get(REPORT_STATE)
    if not made:
        return None
    if tuple(made[0][:2]) != tuple(made_for[:2]):
        st.session_state.pop(REPORT_STATE, None)
        return None
    return made[2] if made[0] == made_for else None


def report_audit_detail(physician_id: str, month: date, rows: int, channel: str, to: str = "") -> dict:
    """The audit entry of an identified referrer report leaving the app: which report and how many patients, and
    for an email the recipient's domain only (never the address's local part, never a patient value)."""
    detail = {
        "table": "referrer_report",
        "physician_id": str(physician_id),
        "month": f"{month:%Y-%m}",
        "rows": int(rows),
        "channel": channel,
        "page": st.session_state.get("ptpulse_page", ""),
    }
    if to:
        detail["recipient_domain"] = to.strip().rpartition("@")[2].lower()
    return detail


def _audit_report(detail: dict) -> None:
    """on_click of the report's Download: the identified PDF goes to the audit log (as ui.download does for CSVs)."""
    user = ui.current_user()
    audit.log(ui.settings().app_db, user.email, user.role, "export.identified", detail)


def referrer_panel(ctx, as_of: date) -> None:
    """Referral sources: a referring physician's monthly report, previewed, downloaded as PDF or emailed.

    The physicians, their counts, the practice's name and the report's rows are those of the clinics in view
    (scope and filter). A report listing patients is made for PHI roles only, and every download or email of
    one is audited (`export.identified`)."""
    docs = q.referring_physicians(ctx.reader, ctx.filters)
    if docs.empty:
        st.caption("No referrals from physicians yet.")
        return
    c1, c2 = st.columns([3, 1])
    pid = c1.selectbox(
        "Referring physician",
        docs["physician_id"].tolist(),
        format_func=dict(
            zip(docs["physician_id"], docs["name"] + " · " + docs["referrals"].astype(str) + " referrals", strict=True)
        ).get,
        key="rs_report_doc",
    )
    months = pd.date_range(end=pd.Timestamp(as_of), periods=12, freq="MS")[::-1]
    month = c2.selectbox(  # default: the last full month (the report's usual send)
        "Month", [m.date() for m in months], index=1, format_func=lambda d: f"{d:%b %Y}", key="rs_report_m"
    )
    # The patient list is rendered for roles that may see PHI only; the others' report (and PDF) has the totals.
    show_patients = ctx.reader.scope.phi
    report = q.referrer_report(ctx.reader, ctx.filters, pid, month)
    practice = q.practice_label(ctx.reader, ctx.filters)
    html = referrer_report.render_html(report, practice, as_of, show_patients=show_patients)
    patients = len(report["rows"]) if show_patients else 0  # patients the PDF lists
    t = report["totals"]
    st.caption(
        f"{t['referrals']} referrals · {t['seen']} seen · {t['visits']} visits · {t['discharged']} discharged · "
        f"{t['met_mcid']} of {t['with_outcome']} improved by a clinically important amount"
    )
    with st.expander("Preview"):
        st.html(html)
    made_for = report_made_for(ctx, pid, month, html)
    name = referrer_report.filename(report)
    b1, b2, b3 = st.columns([1, 2, 1])
    if b1.button("Make PDF", key="rs_report_pdf"):
        try:
            st.session_state[REPORT_STATE] = (made_for, name, referrer_report.render_pdf(html))
        except referrer_report.ReportError as exc:
            st.error(str(exc))
    pdf = saved_report(made_for)
    if pdf is not None:
        b1.download_button(
            "Download PDF",
            pdf,
            name,
            "application/pdf",
            key="rs_report_dl",
            on_click=_audit_report if patients else "rerun",
            args=(report_audit_detail(pid, month, patients, "download"),) if patients else None,
        )
    if patients:
        st.caption("This report lists patients: downloading or emailing it is recorded in the audit log.")
    to = b2.text_input("Email to", key="rs_report_to", placeholder="office@referring-practice.example")
    if b3.button("Email PDF", key="rs_report_send", disabled=not to.strip()):
        chans, problem = configured_channels()
        if "email" not in chans:
            st.error(problem or "Email is not set up: add the [smtp] settings (deployment guide, 'Outbound messages').")
            return
        try:
            attachment = pdf if pdf is not None else referrer_report.render_pdf(html)
            chans["email"].send(
                to.strip(),
                f"{practice}: your referrals, {month:%B %Y}",
                f"Attached: the {month:%B %Y} report of your referrals to {practice}.",
                attachments=[outbound.Attachment(name, attachment)],
            )
        except (outbound.OutboundError, referrer_report.ReportError) as exc:
            st.error(f"Not sent: {exc}")
        else:
            if patients:
                audit.log(
                    ctx.settings.app_db,
                    ctx.user.email,
                    ctx.user.role,
                    "export.identified",
                    report_audit_detail(pid, month, patients, "email", to),
                )
            st.success("Report emailed.")
