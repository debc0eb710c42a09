"""The sending rules hold on every path, not only a first send: Retry (consent, frequency cap, quiet hours, the
appointment still ahead, who pressed it), the automatic retries (never a second copy of a message the provider may
have), queued delivery (the appointment re-checked), one bad address (fails alone, the batch goes on), consent
(an opt-out is not undone by re-importing an older grant) and the write-back (names the task's occurrence).
Real app.sqlite, the local SMTP server and the local Twilio-shaped SMS server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import sqlite3
import threading
import time
import urllib.parse
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from outreach_people import APPOINTMENT, NOON, TZ, people

from app.lib import actions, outreach
from ptpulse import serve
from ptpulse.core import outbound
from ptpulse.core.config import get_settings


def rows(app_db, sql="select status, reason, attempts from messages order by message_id"):
    with sqlite3.connect(app_db) as con:
        return con.execute(sql).fetchall()


def _failed_send(app_db, template, policy, api, sms, actor="desk.a@practice.test") -> outbound.Delivery:
    """A reminder whose every attempt fails (provider down): logged failed, waiting for Retry."""
    api.fail_next = [503] * (policy.retries + 1)
    (bad,) = outreach.send(app_db, people("1"), template, "sms", {"sms": sms}, actor, NOON, policy, "front_desk")
    assert bad.status == "failed" and len(api.requests) == policy.retries + 1
    api.requests.clear()
    return bad


# ------------------------------------------------------------------------------------------------- 1, 5: Retry


def test_retry_skips_a_patient_who_opted_out_after_the_failure(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    bad = _failed_send(app_db, templates["appointment_reminder"], policy, api, sms)
    outreach.import_consent(app_db, "patient_id,channel,consent\n1,sms,no\n", "provider_optouts.csv", "owner")

    (again,) = outreach.retry(app_db, [bad.message_id], {"sms": sms}, policy, "owner", "owner@x", NOON)

    assert (again.status, again.reason) == ("skipped", "opted out of sms since the failure")
    assert api.requests == [] and rows(app_db)[0][0] == "skipped"
    assert actions.history(app_db, "confirm_high_risk:A1") == []


def test_retry_in_quiet_hours_queues_the_message_until_they_end(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    bad = _failed_send(app_db, templates["appointment_reminder"], policy, api, sms)
    evening = datetime(2026, 3, 10, 21, 30, tzinfo=TZ)

    (again,) = outreach.retry(app_db, [bad.message_id], {"sms": sms}, policy, "owner", "owner@x", evening)

    assert (again.status, again.reason) == ("queued", "quiet hours: sends at 08:00 clinic time")
    assert api.requests == []
    (not_before,) = rows(app_db, "select not_before from messages")[0]
    assert datetime.fromisoformat(not_before) == datetime(2026, 3, 11, 8, 0, tzinfo=TZ)
    (done,) = outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 1, tzinfo=TZ), policy)
    assert done.status == "sent" and len(api.requests) == 1


def test_retry_skips_a_reminder_whose_appointment_has_passed(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    bad = _failed_send(app_db, templates["appointment_reminder"], policy, api, sms)

    after = datetime(2026, 3, 11, 10, 0, tzinfo=TZ)  # the 09:30 appointment is over
    (again,) = outreach.retry(app_db, [bad.message_id], {"sms": sms}, policy, "owner", "owner@x", after)

    assert (again.status, again.reason) == ("skipped", "appointment has passed") and api.requests == []


def test_retry_respects_the_frequency_cap(setup, sms_server):
    """Desk A's reminder failed; desk B's went out 5 minutes later; the owner's Retry of A's would be the second
    text within the cap (1 per 24 h): skipped with the cap's reason."""
    app_db, templates, policy = setup
    api, sms = sms_server
    t = templates["appointment_reminder"]
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    bad = _failed_send(app_db, t, policy, api, sms)
    later = NOON + timedelta(minutes=5)
    (ok,) = outreach.send(app_db, people("1"), t, "sms", {"sms": sms}, "desk.b@practice.test", later, policy)
    assert ok.status == "sent" and len(api.requests) == 1

    (again,) = outreach.retry(app_db, [bad.message_id], {"sms": sms}, policy, "owner", "owner@x", later)

    assert (again.status, again.reason) == ("skipped", "frequency cap: already messaged 1× within 24 h")
    assert len(api.requests) == 1  # one text reached the patient


def test_retry_write_back_names_who_pressed_retry_and_keeps_the_sender(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    bad = _failed_send(app_db, templates["appointment_reminder"], policy, api, sms)

    (again,) = outreach.retry(
        app_db, [bad.message_id], {"sms": sms}, policy, "owner", "owner@practice.test", NOON + timedelta(minutes=9)
    )

    assert again.status == "sent" and len(api.requests) == 1
    (written,) = actions.history(app_db, "confirm_high_risk:A1")
    assert written["actor"] == "owner@practice.test" and written["requested_by"] == "desk.a@practice.test"
    with sqlite3.connect(app_db) as con:
        actor, role, detail = con.execute("select actor, role, detail from audit_log").fetchone()
    assert (actor, role) == ("owner@practice.test", "owner")
    assert json.loads(detail)["requested_by"] == "desk.a@practice.test"


# ---------------------------------------------------------------------------- 2: never a second copy by itself


@pytest.fixture
def slow_sms_server():
    """A Twilio-shaped endpoint that takes every message and answers the first one only after 2.5 s (a slow
    gateway): (received bodies, SmsChannel with a 1 s timeout)."""
    received: list[str] = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            length = int(self.headers.get("Content-Length") or 0)
            received.append(urllib.parse.parse_qs(self.rfile.read(length).decode())["Body"][0])
            if len(received) == 1:
                time.sleep(2.5)  # the provider has it; its answer is late
            try:
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"sid": f"SM{len(received)}"}).encode())
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = outbound.SmsSettings(
        account_sid="AC1", sender="+15550000000", auth_token="t", base_url=f"http://127.0.0.1:{server.server_port}"
    )
    try:
        yield received, outbound.SmsChannel(dataclasses.replace(settings, timeout_s=1.0))
    finally:
        server.shutdown()
        server.server_close()


def test_a_slow_sms_answer_is_failed_as_maybe_sent_and_never_posted_twice(setup, slow_sms_server):
    app_db, templates, policy = setup
    received, sms = slow_sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")

    (res,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", NOON, policy
    )

    time.sleep(0.3)  # a re-post, if any, would have arrived by now
    assert len(received) == 1  # the patient got one text
    assert res.status == "failed" and "did not answer after the message was sent (TimeoutError)" in res.reason
    assert outbound.MAYBE_SENT in res.reason and "+1555" not in res.reason
    assert rows(app_db) == [("failed", res.reason, 1)]  # one attempt: no automatic retry


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_sms_provider_is_still_retried(setup):
    """Connection refused: the provider cannot have the message, so the automatic retries go on."""
    app_db, templates, policy = setup
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    dead = outbound.SmsChannel(outbound.SmsSettings("AC1", "+15550000000", "t", f"http://127.0.0.1:{_closed_port()}"))
    (res,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": dead}, "d", NOON, policy
    )
    assert res.status == "failed" and "could not reach SMS provider" in res.reason and "ConnectionRefused" in res.reason
    assert rows(app_db)[0][2] == policy.retries + 1


@pytest.fixture
def slow_smtp():
    """A real SMTP server (aiosmtpd) that receives each email and confirms the first only after 2.5 s:
    (received envelopes, EmailChannel with a 1 s timeout)."""
    from aiosmtpd.controller import Controller

    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
            received.append(envelope.rcpt_tos)
            if len(received) == 1:
                await asyncio.sleep(2.5)  # the server has it; its "250" is late
            return "250 OK"

    port = _closed_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    settings = outbound.SmtpSettings(host="127.0.0.1", port=port, security="none", sender="c@x.test", timeout_s=1.0)
    try:
        yield received, outbound.EmailChannel(settings)
    finally:
        controller.stop()


def test_an_smtp_timeout_after_data_is_not_resent(setup, slow_smtp):
    app_db, templates, policy = setup
    received, email = slow_smtp
    outreach.record_consent(app_db, "1", "email", True, "intake form", "desk")

    (res,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "email", {"email": email}, "d", NOON, policy
    )

    time.sleep(0.3)
    assert received == [["p1@mail.test"]]  # one email
    assert res.status == "failed" and "did not confirm the email after it was sent" in res.reason
    assert outbound.MAYBE_SENT in res.reason and "p1@" not in res.reason
    assert rows(app_db)[0][2] == 1


# ------------------------------------------------------------------------------- 3: the appointment still ahead


def test_plan_skips_a_reminder_for_an_appointment_that_has_passed(setup):
    app_db, templates, policy = setup
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "sms", True, "intake form", "desk")
    who = people(
        "1", "2", "3", p1={"appointment_time": datetime(2026, 3, 10, 9, 0)}, p2={"appointment_time": APPOINTMENT}
    )
    who.loc[2, "appointment_time"] = datetime(2026, 3, 10, 11, 59)  # a minute ago
    preview = outreach.plan(app_db, who, templates["appointment_reminder"], "sms", NOON, policy)
    assert preview["decision"].tolist() == ["skip", "send", "skip"]
    assert preview["reason"].tolist() == ["appointment has passed", "", "appointment has passed"]
    # a reminder asked for at 21:00 for a 07:00 appointment would wait for 08:00: not queued
    evening = datetime(2026, 3, 10, 21, 0, tzinfo=TZ)
    early = people("1", p1={"appointment_time": datetime(2026, 3, 11, 7, 0)})
    (reason,) = outreach.plan(app_db, early, templates["appointment_reminder"], "sms", evening, policy)["reason"]
    assert reason == "appointment is before quiet hours end (08:00 clinic time)"


def test_a_queued_reminder_is_not_delivered_once_its_appointment_has_begun(setup, sms_server):
    """Queued at 21:00 for 08:00; nothing delivered it until 10:00 (the service was down): the 09:30 appointment is
    over, so the reminder is skipped, by the pages as by `ptpulse serve`."""
    app_db, templates, policy = setup
    api, sms = sms_server
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "sms", True, "intake form", "desk")
    who = people("1", "2", "3", p2={"appointment_time": datetime(2026, 3, 11, 14, 0)}, p3={"appointment_time": None})
    evening = datetime(2026, 3, 10, 21, 0, tzinfo=TZ)
    res = outreach.send(app_db, who, templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy)
    assert [r.status for r in res] == ["queued", "queued", "skipped"]
    stored = rows(app_db, "select appointment_at, not_before from messages order by message_id")
    assert datetime.fromisoformat(stored[0][0]) == datetime(2026, 3, 11, 9, 30, tzinfo=TZ)
    assert stored[2] == (None, None)  # a row without them stores NULL (not pandas' "NaT")

    done = outbound.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 10, 0, tzinfo=TZ), 2, "service")

    assert [(d.status, d.reason) for d in done] == [("skipped", "appointment has passed"), ("sent", "")]
    assert [r["form"]["To"] for r in api.requests] == ["+15550000002"]


def test_an_older_app_sqlite_gains_the_new_columns_and_keeps_its_rows(setup, sms_server):
    """An app.sqlite from before (message log with claims but no appointment/occurrence/zone columns, consent
    without its own date) is migrated in place on first use by the service as by the pages, every row kept."""
    app_db, templates, policy = setup
    api, sms = sms_server
    with actions.connect(app_db):  # the work-queue tables, as every app.sqlite has them
        pass
    with sqlite3.connect(app_db) as con:
        con.executescript(
            """
            create table contact_consent (id integer primary key autoincrement, patient_id text not null,
                channel text not null, status text not null, source text not null, recorded_by text not null,
                recorded_at text not null);
            insert into contact_consent(patient_id, channel, status, source, recorded_by, recorded_at)
                values ('1', 'sms', 'granted', 'intake', 'd', '2026-03-01T09:00:00-05:00');
            create table messages (message_id integer primary key autoincrement, batch_id text not null,
                task_id text, patient_id text, channel text not null check (channel in ('sms', 'email')),
                template text not null, to_addr text, subject text, body text, status text not null check
                (status in ('queued','sending','sent','failed','skipped')), reason text,
                attempts integer not null default 0, not_before text, provider_id text, action_id integer,
                actor text not null, created_at text not null, updated_at text not null, claimed_by text,
                claimed_at text);
            insert into messages(batch_id, task_id, patient_id, channel, template, to_addr, body, status,
                not_before, actor, created_at, updated_at) values ('b', 'confirm_high_risk:A1', '1', 'sms',
                'appointment_reminder', '+15550000001', 'hi', 'queued', '2026-03-11T08:00:00-05:00', 'd',
                '2026-03-10T22:00:00-05:00', '2026-03-10T22:00:00-05:00');
            """
        )
    (done,) = outbound.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 5, tzinfo=TZ), 2, "service")
    assert done.status == "sent" and len(api.requests) == 1  # an older row (no appointment_at) is delivered
    with sqlite3.connect(app_db) as con:
        cols = {r[1] for r in con.execute("pragma table_info(messages)")}
        consent_cols = {r[1] for r in con.execute("pragma table_info(contact_consent)")}
    assert {"appointment_at", "occurrence", "clinic_zone"} <= cols and "consented_at" in consent_cols
    assert outreach.consent_status(app_db, ["1"], "sms") == {"1": ("granted", "intake")}
    assert len(outreach.messages(app_db)) == 1


# ---------------------------------------------------------------------------------- 4: one bad address, alone


def test_an_email_address_with_a_line_break_is_skipped_with_the_reason(setup, smtp_server):
    app_db, templates, policy = setup
    inbox, email = smtp_server
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "email", True, "intake form", "desk")
    who = people("1", "2", "3", p1={"email": "p1@mail.test\nsecond line"}, p3={"email": "no at sign"})

    res = outreach.send(app_db, who, templates["appointment_reminder"], "email", {"email": email}, "o", NOON, policy)

    reason = "the email address on file is not a valid email address (correct it in the EMR)"
    assert [(r.status, r.reason) for r in res] == [("skipped", reason), ("sent", ""), ("skipped", reason)]
    assert [m["To"] for m in inbox.messages] == ["p2@mail.test"]


def test_a_message_that_cannot_be_composed_fails_alone_and_the_batch_goes_on(setup, smtp_server):
    """Queued emails, one to an address logged before addresses were checked (a line break in it): that one fails
    for good with a reason naming the problem (not the address), the others are sent, none is left `sending`."""
    app_db, templates, policy = setup
    inbox, email = smtp_server
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "email", True, "intake form", "desk")
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=TZ)
    res = outreach.send(
        app_db,
        people("1", "2", "3"),
        templates["appointment_reminder"],
        "email",
        {"email": email},
        "d",
        evening,
        policy,
    )
    assert {r.status for r in res} == {"queued"}
    with sqlite3.connect(app_db) as con:
        con.execute(
            "update messages set to_addr = 'p1@mail.test' || char(13, 10) || 'Bcc: x@y.test' where patient_id = '1'"
        )

    done = outreach.deliver_due(app_db, {"email": email}, datetime(2026, 3, 11, 8, 1, tzinfo=TZ), policy)

    assert [d.status for d in done] == ["failed", "sent", "sent"]
    assert "could not compose the email (ValueError)" in done[0].reason and "mail.test" not in done[0].reason
    assert rows(app_db)[0][2] == 1  # permanent: not retried
    assert sorted(m["To"] for m in inbox.messages) == ["p2@mail.test", "p3@mail.test"]
    assert "sending" not in {r[0] for r in rows(app_db)}


def test_the_service_delivery_check_survives_an_unexpected_error(tmp_path, sms_server, monkeypatch, caplog):
    """A row the delivery cannot read (an unreadable not_before) raises something other than the expected errors:
    the check ends with the error's type and place in the log and the status (never its text, which may quote a
    value), and the next check runs."""
    api, sms = sms_server
    settings = get_settings(tmp_path / "home").ensure()
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    for name, value in (("ACCOUNT_SID", "AC1"), ("AUTH_TOKEN", "t"), ("FROM", "+15550000000")):
        monkeypatch.setenv(f"PTPULSE_SMS_{name}", value)
    monkeypatch.setenv("PTPULSE_SMS_BASE_URL", sms.settings.base_url)
    outreach.record_consent(settings.app_db, "1", "sms", True, "intake form", "desk")
    templates, policy = outreach.load()
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=TZ)
    outreach.send(
        settings.app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    with sqlite3.connect(settings.app_db) as con:
        con.execute("update messages set not_before = 'Pat1-Secretsurname'")
    delivery = serve.QueuedDelivery(settings, every_s=60)

    with caplog.at_level(logging.INFO, logger=serve.log.name):
        delivery.run(datetime(2026, 3, 11, 8, 5, tzinfo=TZ))  # the thread's body: returns, does not raise

    assert delivery.status["error"].startswith("unexpected ValueError at outbound.py:")
    assert "Secretsurname" not in caplog.text and "Secretsurname" not in json.dumps(delivery.status)
    assert "unexpected ValueError" in caplog.text and delivery.tick() is True  # reported to the loop ...
    delivery.wait(30)  # ... which starts the next check as usual
    assert delivery.status["error"].startswith("unexpected ValueError") and delivery.tick() is True


def test_the_service_uses_the_policy_retries(tmp_path, sms_server, monkeypatch):
    """`ptpulse serve` retries as `policy.retries` of outreach.yml says (here 0), as the pages do."""
    api, sms = sms_server
    settings = get_settings(tmp_path / "home").ensure()
    policy_file = tmp_path / "outreach.yml"
    policy_file.write_text("policy:\n  retries: 0\n", encoding="utf-8")
    monkeypatch.setattr(outbound, "OUTREACH_FILE", policy_file)
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    for name, value in (("ACCOUNT_SID", "AC1"), ("AUTH_TOKEN", "t"), ("FROM", "+15550000000")):
        monkeypatch.setenv(f"PTPULSE_SMS_{name}", value)
    monkeypatch.setenv("PTPULSE_SMS_BASE_URL", sms.settings.base_url)
    outreach.record_consent(settings.app_db, "1", "sms", True, "intake form", "desk")
    templates, policy = outreach.load()
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=TZ)
    outreach.send(
        settings.app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    api.fail_next = [503, 503, 503]

    serve.QueuedDelivery(settings, every_s=60).run(datetime(2026, 3, 11, 8, 5, tzinfo=TZ))

    assert len(api.requests) == 1 and rows(settings.app_db)[0][:1] == ("failed",)
    assert outbound.policy_retries() == 0 and outbound.policy_retries(tmp_path / "absent.yml") == 2


def test_the_pages_and_the_service_read_and_refuse_policy_retries_alike(tmp_path):
    shipped = outreach.TEMPLATES_FILE.read_text(encoding="utf-8")
    assert "retries: 2" in shipped
    assert outreach.load()[1].retries == outbound.policy_retries(outreach.TEMPLATES_FILE) == 2
    bad = tmp_path / "outreach.yml"
    bad.write_text(shipped.replace("retries: 2", "retries: -1"), encoding="utf-8")
    with pytest.raises(outreach.OutreachError, match="policy.retries must be a whole number"):
        outreach.load(bad)  # the page refused nothing before: a negative count sent once and never said so
    with pytest.raises(outbound.OutboundError, match="policy.retries must be a whole number"):
        outbound.policy_retries(bad)


# ---------------------------------------------------------------------------------- 6: an opt-out stands


EMR = "patient_id,channel,consent\n1,sms,yes\n"


def test_an_unchanged_emr_reimport_does_not_undo_an_opt_out(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.import_consent(app_db, EMR, "emr_consent_2026-03-01.csv", "owner")
    outreach.import_consent(app_db, "patient_id,channel,consent\n1,sms,stop\n", "provider_optouts.csv", "owner")
    outreach.import_consent(app_db, EMR, "emr_consent_2026-03-08.csv", "owner")  # next week's, unchanged

    assert outreach.consent_status(app_db, ["1"], "sms") == {"1": ("revoked", "provider_optouts.csv")}
    (res,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", NOON, policy
    )
    assert (res.status, res.reason) == ("skipped", "opted out of sms") and api.requests == []


def test_the_queued_delivery_applies_the_same_consent_rule(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.import_consent(app_db, EMR, "emr.csv", "owner")
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=TZ)
    (queued,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    assert queued.status == "queued"
    assert outreach.record_reply(app_db, "1", "STOP")
    outreach.import_consent(app_db, EMR, "emr.csv", "owner")  # the night's routine EMR import

    (done,) = outbound.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 1, tzinfo=TZ), 2, "service")

    assert (done.status, done.reason) == ("skipped", "opted out while queued for quiet hours") and api.requests == []


def test_a_newer_dated_grant_or_a_start_reply_lifts_an_opt_out(setup):
    app_db, _, _ = setup
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "sms", True, "intake form", "desk", datetime(2026, 3, 1, 9, 0))
        outreach.record_consent(app_db, pid, "sms", False, "reply:STOP", "patient", datetime(2026, 3, 5, 9, 0))
    done = outreach.import_consent(
        app_db,
        "patient_id,channel,consent,consent_date\n1,sms,yes,2026-03-09\n2,sms,yes,2026-02-20\n",
        "emr_consent.csv",
        "owner",
    )
    assert done.imported == 2
    assert outreach.record_reply(app_db, "3", "start") is False  # an opt-in, not an opt-out
    assert outreach.consent_status(app_db, ["1", "2", "3"], "sms") == {
        "1": ("granted", "emr_consent.csv"),  # re-consented after the STOP
        "2": ("revoked", "reply:STOP"),  # the consent the STOP withdrew
        "3": ("granted", outbound.OPT_IN_SOURCE),
    }
    with pytest.raises(outreach.OutreachError, match=r"line 2: column consent_date must be a date"):
        outreach.import_consent(app_db, "patient_id,channel,consent,consent_date\n1,sms,yes,soon\n", "x.csv", "o")


# ------------------------------------------------------------------------------ 7: the write-back's occurrence


def test_the_write_back_names_the_tasks_occurrence(setup, sms_server):
    """A rule task that comes back (a new created_at) does not inherit a text sent in its previous occurrence,
    as a call logged through the form does not (actions.record's `occurrence`)."""
    app_db, templates, policy = setup
    api, sms = sms_server
    task = "active_no_future_appt:E42"
    first, second = datetime(2026, 3, 1, 9, 0), datetime(2026, 6, 20, 9, 0)
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk")
    who = people("1", p1={"task_id": task, "appointment_time": None, "created_at": pd.Timestamp(first)})

    (res,) = outreach.send(app_db, who, templates["referral_outreach"], "sms", {"sms": sms}, "desk", NOON, policy)

    assert res.status == "sent"
    (written,) = actions.history(app_db, task)
    assert written["occurrence"] == "2026-03-01T09:00:00" == actions.occurrence_key(task, first)
    assert actions.task_states(app_db, [task], {task: first})[task].outreach_count == 1
    assert actions.task_states(app_db, [task], {task: second}) == {}  # the new occurrence starts fresh
