"""Reminders and outreach through the local SMTP and SMS servers: consent, opt-out, quiet hours, frequency cap,
retries and failures, the message log and the write-back to the work queue (real SQLite app state)."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from outreach_people import NOON, TZ, people

from app.lib import actions, outreach
from ptpulse.core import outbound


def rows(app_db, sql="select status, reason, attempts, task_id, action_id from messages order by message_id"):
    with sqlite3.connect(app_db) as con:
        return con.execute(sql).fetchall()


def test_sms_with_consent_is_sent_logged_and_written_back(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "desk@practice.test")
    res = outreach.send(
        app_db,
        people("1"),
        templates["appointment_reminder"],
        "sms",
        {"sms": sms},
        "desk@x",
        NOON,
        policy,
        "front_desk",
    )
    assert [r.status for r in res] == ["sent"]
    (req,) = api.requests
    assert req["path"] == "/2010-04-01/Accounts/ACtest0001/Messages.json"
    assert (req["user"], req["password"]) == ("ACtest0001", "tok-secret-123")
    assert req["form"]["To"] == "+15550000001" and req["form"]["From"] == "+15550000000"
    body = req["form"]["Body"]
    assert "Pat1" in body and "Riverside PT" in body and "Wed Mar 11 at 09:30" in body
    assert "Secretsurname" not in body and "Dana" not in body  # minimum PHI: first name, clinic, time
    ((status, reason, attempts, task_id, action_id),) = rows(app_db)
    assert (status, reason, attempts, task_id) == ("sent", None, 1, "confirm_high_risk:A1")
    hist = actions.history(app_db, "confirm_high_risk:A1")
    assert [(h["action"], h["method"], h["outcome"], h["action_id"]) for h in hist] == [
        ("log_outreach", "sms", "left_message", action_id)
    ]
    state = actions.task_states(app_db)["confirm_high_risk:A1"]
    assert state.status == "open" and state.outreach_count == 1  # a delivered text does not close the task


def test_email_reaches_the_smtp_server(setup, smtp_server):
    app_db, templates, policy = setup
    inbox, email = smtp_server
    outreach.record_consent(app_db, "2", "any", True, "intake form", "desk@x")
    res = outreach.send(
        app_db, people("2"), templates["referral_outreach"], "email", {"email": email}, "d", NOON, policy
    )
    assert [r.status for r in res] == ["sent"]
    (msg,) = inbox.messages
    assert msg["To"] == "p2@mail.test" and msg["Subject"] == "Riverside PT: your referral for physical therapy"
    assert "Hi Pat2" in msg.get_payload()
    assert actions.history(app_db, "confirm_high_risk:A2")[0]["method"] == "email"


def test_no_consent_and_opt_out_are_skipped_with_the_reason(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "2", "sms", True, "intake form", "d")
    outreach.record_consent(app_db, "3", "sms", True, "intake form", "d")
    assert outreach.record_reply(app_db, "2", " stop ") is True  # patient 2 replied STOP after consenting
    assert outreach.record_reply(app_db, "3", "C") is False  # a confirmation is not an opt-out
    preview = outreach.plan(app_db, people("1", "2", "3"), templates["appointment_reminder"], "sms", NOON, policy)
    assert preview["reason"].tolist() == ["no SMS consent on file", "opted out (replied STOP)", ""]
    assert "1 to send now" in outreach.summary(preview) and "2 skipped" in outreach.summary(preview)
    res = outreach.send(
        app_db, people("1", "2", "3"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", NOON, policy
    )
    assert [r.status for r in res] == ["skipped", "skipped", "sent"]
    assert [r["form"]["To"] for r in api.requests] == ["+15550000003"]  # only the consenting patient was texted
    assert [r[0] for r in rows(app_db)] == ["skipped", "skipped", "sent"]
    assert actions.history(app_db, "confirm_high_risk:A1") == []  # skipped: nothing written back


def test_quiet_hours_queue_until_the_morning(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    evening = datetime(2026, 3, 10, 22, 15, tzinfo=TZ)
    res = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    assert [(r.status, r.reason) for r in res] == [("queued", "quiet hours: sends at 08:00 clinic time")]
    assert api.requests == []
    assert outreach.deliver_due(app_db, {"sms": sms}, evening + timedelta(hours=9), policy) == []  # 07:15: still quiet
    assert api.requests == []
    done = outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 1, tzinfo=TZ), policy)
    assert [r.status for r in done] == ["sent"] and len(api.requests) == 1
    assert outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 9, 0, tzinfo=TZ), policy) == []


def test_quiet_hours_are_each_clinics_not_the_servers(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    for pid in ("1", "2", "3"):
        outreach.record_consent(app_db, pid, "sms", True, "intake form", "d")
    who = people("1", "2", "3")
    # 18:30 on the server (UTC-5) is 19:30 in New York (summer time since Mar 8), 00:30 in Berlin
    who["clinic_timezone"] = ["America/New_York", "Europe/Berlin", "Not/AZone"]  # unknown: the server's clock
    now = datetime(2026, 3, 10, 18, 30, tzinfo=TZ)
    preview = outreach.plan(app_db, who, templates["appointment_reminder"], "sms", now, policy)
    assert preview["decision"].tolist() == ["send", "queue", "send"]
    assert preview["reason"][1] == "quiet hours: sends at 08:00 clinic time"
    berlin_morning = datetime(2026, 3, 11, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert preview["not_before"][1] == berlin_morning
    res = outreach.send(app_db, who, templates["appointment_reminder"], "sms", {"sms": sms}, "d", now, policy)
    assert [r.status for r in res] == ["sent", "queued", "sent"]
    assert [r["form"]["To"] for r in api.requests] == ["+15550000001", "+15550000003"]
    before = berlin_morning - timedelta(minutes=1)
    assert outbound.deliver_due(app_db, {"sms": sms}, before, policy.retries) == []
    (done,) = outbound.deliver_due(app_db, {"sms": sms}, berlin_morning, policy.retries, "service")
    assert (done.status, done.task_id) == ("sent", "confirm_high_risk:A2")
    assert api.requests[-1]["form"]["To"] == "+15550000002"
    assert actions.history(app_db, "confirm_high_risk:A2")[0]["outcome"] == "left_message"  # written back


def test_stop_while_queued_for_quiet_hours_wins(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    evening = datetime(2026, 3, 10, 21, 0, tzinfo=TZ)
    (queued,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    assert queued.status == "queued"
    outreach.record_reply(app_db, "1", "STOP")
    (res,) = outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 30, tzinfo=TZ), policy)
    assert (res.status, res.reason) == ("skipped", "opted out while queued for quiet hours")
    assert api.requests == [] and rows(app_db)[0][0] == "skipped"


def test_frequency_cap_per_patient(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    for p in ("1", "2"):
        outreach.record_consent(app_db, p, "sms", True, "intake form", "d")
    t = templates["appointment_reminder"]
    assert [r.status for r in outreach.send(app_db, people("1"), t, "sms", {"sms": sms}, "d", NOON, policy)] == ["sent"]
    later = NOON + timedelta(hours=3)
    res = outreach.send(app_db, people("1", "2"), t, "sms", {"sms": sms}, "d", later, policy)
    assert [(r.status, r.reason) for r in res] == [
        ("skipped", "frequency cap: already messaged 1× within 24 h"),
        ("sent", ""),
    ]
    both = pd.concat([people("2"), people("2")])  # the same patient twice in one bulk list: once
    both["appointment_time"] = datetime(2026, 3, 13, 9, 30)  # still ahead the day after
    day_after = NOON + timedelta(hours=30)
    assert [r.status for r in outreach.send(app_db, both, t, "sms", {"sms": sms}, "d", day_after, policy)] == [
        "sent",
        "skipped",
    ]
    assert len(api.requests) == 3


def test_failed_send_is_retried_then_shown_failed_never_sent(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    outreach.record_consent(app_db, "2", "sms", True, "intake form", "d")
    t = templates["appointment_reminder"]
    api.fail_next = [503]  # one temporary failure: the retry delivers
    (ok,) = outreach.send(app_db, people("1"), t, "sms", {"sms": sms}, "d", NOON, policy)
    assert ok.status == "sent" and rows(app_db)[0][2] == 2
    api.fail_next = [500, 500, 500]  # every attempt fails: failed, with the reason, nothing written back
    (bad,) = outreach.send(app_db, people("2"), t, "sms", {"sms": sms}, "d", NOON, policy)
    assert bad.status == "failed" and "HTTP 500" in bad.reason
    status, reason, attempts, task_id, action_id = rows(app_db)[1]
    assert (status, attempts, action_id) == ("failed", 3, None)
    assert "+1555" not in reason and "tok-secret" not in reason  # no number, no token in the reason
    assert actions.history(app_db, task_id) == []
    log = outreach.messages(app_db, [task_id])
    assert log["status"].tolist() == ["failed"]
    (again,) = outreach.retry(app_db, [bad.message_id], {"sms": sms}, policy, now=NOON)  # the page's Retry button
    assert again.status == "sent" and rows(app_db)[1][0] == "sent"
    assert actions.history(app_db, task_id)[0]["message_id"] == bad.message_id


def test_permanent_refusal_is_not_retried(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    api.fail_next = [400, 400, 400]
    (res,) = outreach.send(
        app_db, people("1"), templates["appointment_reminder"], "sms", {"sms": sms}, "d", NOON, policy
    )
    assert res.status == "failed" and "check the patient's mobile number" in res.reason
    assert len(api.requests) == 1 and rows(app_db)[0][2] == 1


def test_unconfigured_channel_and_unreachable_server_fail_visibly(setup, tmp_path):
    app_db, templates, policy = setup
    outreach.record_consent(app_db, "1", "any", True, "intake form", "d")
    t = templates["appointment_reminder"]
    (none,) = outreach.send(app_db, people("1"), t, "sms", {}, "d", NOON, policy)
    assert none.status == "failed" and "not configured" in none.reason
    dead = outbound.SmtpSettings(host="127.0.0.1", port=1, security="none", sender="x@y", timeout_s=2)
    later = people("1").assign(appointment_time=datetime(2026, 3, 13, 9, 30))
    (res,) = outreach.send(
        app_db, later, t, "email", {"email": outbound.EmailChannel(dead)}, "d", NOON + timedelta(days=2), policy
    )
    assert res.status == "failed" and "127.0.0.1:1" in res.reason


def test_settings_come_from_env_and_never_show_the_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PTPULSE_SMS_ACCOUNT_SID", "AC1")
    monkeypatch.setenv("PTPULSE_SMS_AUTH_TOKEN", "hunter2-token")
    monkeypatch.setenv("PTPULSE_SMS_FROM", "+15551112222")
    monkeypatch.setenv("PTPULSE_SMS_BASE_URL", "http://127.0.0.1:9/")
    for name in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD", "FROM"):
        monkeypatch.delenv(f"PTPULSE_SMTP_{name}", raising=False)
    chans = outbound.channels()
    assert set(chans) == {"sms"}
    assert "hunter2" not in repr(chans["sms"])
    with pytest.raises(outbound.OutboundError) as err:
        chans["sms"].send("+15550000001", "", "hello")
    assert "hunter2" not in str(err.value) and "+1555" not in str(err.value)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[sms]\naccount_sid = "AC2"\nauth_token = "t"\nfrom = "+1"\n[smtp]\nhost = "mail.test"\n')
    for name in ("ACCOUNT_SID", "AUTH_TOKEN", "FROM", "BASE_URL"):
        monkeypatch.delenv(f"PTPULSE_SMS_{name}")
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(secrets))
    chans = outbound.channels()
    assert chans["sms"].settings.account_sid == "AC2" and chans["sms"].settings.base_url == outbound.TWILIO_URL
    assert chans["email"].settings.where == "mail.test:587"


def test_consent_import_and_its_errors(setup):
    app_db, _, _ = setup
    n = outreach.import_consent(app_db, b"patient_id,channel,consent\n1,sms,yes\n2,any,no\n", "consent.csv", "owner")
    assert n.imported == 2 and n.refused_lines == ()
    assert outreach.consent_status(app_db, ["1", "2", "3"], "sms") == {
        "1": ("granted", "consent.csv"),
        "2": ("revoked", "consent.csv"),
    }
    with pytest.raises(outreach.OutreachError, match=r"consent.csv line 3: column consent must be yes or no"):
        outreach.import_consent(
            app_db, "patient_id,channel,consent\n1,sms,yes\n4,sms,Maybe-Jones\n", "consent.csv", "o"
        )
    with pytest.raises(outreach.OutreachError) as err:
        outreach.import_consent(app_db, "patient,channel\n1,sms\n", "consent.csv", "o")
    assert "missing column(s) patient_id, consent" in str(err.value)
    assert "Maybe" not in str(err.value)


def test_sms_template_asking_for_a_diagnosis_is_refused(tmp_path):
    bad = tmp_path / "outreach.yml"
    bad.write_text("templates:\n  x:\n    sms: 'Hi {first_name}, about your {icd10_code}'\n")
    with pytest.raises(outreach.OutreachError, match="merges icd10_code into an SMS"):
        outreach.load(bad)


def test_phone_numbers_are_sent_in_e164_and_bad_ones_skipped(setup, sms_server):
    app_db, templates, policy = setup
    api, sms = sms_server
    assert outreach.e164("457-555-8059") == "+14575558059" and outreach.e164("1 (457) 555 8059") == "+14575558059"
    assert outreach.e164("+44 20 7946 0958") == "+442079460958" and outreach.e164("555-01") is None
    for p in ("1", "2"):
        outreach.record_consent(app_db, p, "sms", True, "intake form", "d")
    rec = people("1", "2").assign(phone=["(457) 555-8059", "12"])
    res = outreach.send(app_db, rec, templates["appointment_reminder"], "sms", {"sms": sms}, "d", NOON, policy)
    assert [(r.status, r.reason) for r in res] == [
        ("sent", ""),
        ("skipped", "the phone number on file is not a valid number (correct it in the EMR)"),
    ]
    assert [r["form"]["To"] for r in api.requests] == ["+14575558059"]


class SlowChannel:
    """The local SMS server behind a 50 ms round trip, so two deliverers overlap as they do in production."""

    method = "sms"

    def __init__(self, inner) -> None:
        self.inner = inner

    def send(self, to, subject, body, attachments=()):
        time.sleep(0.05)
        return self.inner.send(to, subject, body, attachments)


def _queue_overnight(app_db, templates, policy, sms, ids) -> None:
    """Messages asked for at 22:00: queued for 08:00 (quiet hours), all due the next morning."""
    for i in ids:
        outreach.record_consent(app_db, i, "sms", True, "intake form", "d")
    evening = datetime(2026, 3, 10, 22, 0, tzinfo=TZ)
    res = outreach.send(
        app_db, people(*ids), templates["appointment_reminder"], "sms", {"sms": sms}, "d", evening, policy
    )
    assert {r.status for r in res} == {"queued"}


def test_two_deliverers_at_once_send_each_queued_message_once(setup, sms_server):
    """A page render and `ptpulse serve` delivering the same morning queue at the same moment (H2)."""
    app_db, templates, policy = setup
    api, sms = sms_server
    ids = [str(i) for i in range(1, 13)]
    _queue_overnight(app_db, templates, policy, sms, ids)
    slow, go, results = SlowChannel(sms), threading.Barrier(2), {}

    def deliverer(name: str) -> None:
        go.wait()
        results[name] = outbound.deliver_due(app_db, {"sms": slow}, datetime(2026, 3, 11, 8, 5, tzinfo=TZ), 2, name)

    threads = [threading.Thread(target=deliverer, args=(n,)) for n in ("page", "service")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    texted = [r["form"]["To"] for r in api.requests]
    assert len(texted) == len(ids) and len(set(texted)) == len(ids)  # each patient exactly once
    assert sorted(d.message_id for r in results.values() for d in r) == list(range(1, len(ids) + 1))
    assert {r[0] for r in rows(app_db)} == {"sent"}
    assert all(len(actions.history(app_db, f"confirm_high_risk:A{i}")) == 1 for i in ids)  # one write-back each


def test_send_now_is_not_picked_up_by_a_concurrent_deliverer(setup, sms_server):
    """A bulk send from one page while another page (or the service) runs deliver_due: the send-now messages
    are logged already claimed, so the other deliverer leaves them alone (H2, the reviewer's 36-for-20 case)."""
    app_db, templates, policy = setup
    api, sms = sms_server
    ids = [str(i) for i in range(1, 11)]
    for i in ids:
        outreach.record_consent(app_db, i, "sms", True, "intake form", "d")
    slow = SlowChannel(sms)

    def page() -> None:
        outreach.send(app_db, people(*ids), templates["appointment_reminder"], "sms", {"sms": slow}, "d", NOON, policy)

    def other() -> None:
        for _ in range(10):
            time.sleep(0.04)
            outbound.deliver_due(app_db, {"sms": slow}, NOON, 2, "service")

    threads = [threading.Thread(target=page), threading.Thread(target=other)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    texted = [r["form"]["To"] for r in api.requests]
    assert len(texted) == len(ids) and len(set(texted)) == len(ids)
    assert {r[0] for r in rows(app_db)} == {"sent"}


def test_a_message_stuck_in_sending_becomes_failed_with_the_reason_never_resent(setup, sms_server):
    """A deliverer that died mid-send leaves `sending`: after the stale limit it is failed and says the provider may
    have it (a person decides on Retry); a fresh claim is left to its holder."""
    app_db, templates, policy = setup
    api, sms = sms_server
    _queue_overnight(app_db, templates, policy, sms, ["1", "2"])
    with sqlite3.connect(app_db) as con:
        con.execute(
            "update messages set status = 'sending', claimed_by = 'desk@x on host pid 1', "
            "claimed_at = '2026-03-11T13:00:00+00:00' where message_id = 1"
        )
        con.execute(
            "update messages set status = 'sending', claimed_by = 'desk@x on host pid 2', claimed_at = ? "
            "where message_id = 2",
            (outbound.claim_time(),),
        )
    (done,) = outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 9, 0, tzinfo=TZ), policy)
    assert (done.message_id, done.status) == (1, "failed")
    assert "interrupted while sending (claimed by desk@x on host pid 1" in done.reason
    assert "provider may or may not have it" in done.reason
    assert api.requests == []  # nothing resent by itself
    assert [r[0] for r in rows(app_db)] == ["failed", "sending"]


def test_an_older_message_log_is_upgraded_and_its_queue_delivered(setup, sms_server):
    """An app.sqlite from before claims (no `sending` status, no claim columns) is migrated on first use, by the
    service as by the pages, keeping every row."""
    app_db, templates, policy = setup
    api, sms = sms_server
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    with sqlite3.connect(app_db) as con:
        con.execute("drop table messages")
        con.execute(
            "create table messages (message_id integer primary key autoincrement, batch_id text not null, "
            "task_id text, patient_id text, channel text not null check (channel in ('sms', 'email')), "
            "template text not null, to_addr text, subject text, body text, status text not null check "
            "(status in ('queued','sent','failed','skipped')), reason text, attempts integer not null default 0, "
            "not_before text, provider_id text, action_id integer, actor text not null, created_at text not null, "
            "updated_at text not null)"
        )
        con.execute(
            "insert into messages(batch_id, task_id, patient_id, channel, template, to_addr, body, status, "
            "not_before, actor, created_at, updated_at) values ('b', 'confirm_high_risk:A1', '1', 'sms', "
            "'appointment_reminder', '+15550000001', 'hi', 'queued', '2026-03-11T08:00:00-05:00', 'd', "
            "'2026-03-10T22:00:00-05:00', '2026-03-10T22:00:00-05:00')"
        )
    (done,) = outbound.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 5, tzinfo=TZ), 2, "service")
    assert done.status == "sent" and len(api.requests) == 1
    assert rows(app_db, "select status, claimed_by is not null from messages") == [("sent", 1)]
    outreach.messages(app_db)  # the pages open the upgraded log as is


class RecordingSms:
    """A provider that only records the numbers it was asked to text (the cap test needs no network)."""

    method = "sms"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, to, subject, body, attachments=()):
        self.sent.append(to)
        return "SM1"


def _two_staff_at_once(app_db, template, policy) -> int:
    """Two people send the same reminder to patient 7 at the same instant; how many texts went out."""
    outreach.record_consent(app_db, "7", "sms", True, "intake", "desk")
    sms, go = RecordingSms(), threading.Barrier(2)

    def staff(actor: str) -> None:
        go.wait()
        outreach.send(app_db, people("7"), template, "sms", {"sms": sms}, actor, NOON, policy)

    threads = [threading.Thread(target=staff, args=(a,)) for a in ("ann@x", "bob@x")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return len(sms.sent)


def test_frequency_cap_holds_when_two_people_send_at_the_same_moment(setup):
    """Two front-desk staff reminding the same patient at once: the cap (1 per 24 h) lets exactly one through (M1);
    the other is logged skipped with the cap's reason."""
    app_db, templates, policy = setup
    texts = [
        _two_staff_at_once(app_db.parent / f"cap{i}" / "app.sqlite", templates["appointment_reminder"], policy)
        for i in range(20)
    ]
    assert texts == [1] * 20
    statuses = rows(app_db.parent / "cap0" / "app.sqlite", "select status, reason from messages order by status")
    assert statuses == [("sent", None), ("skipped", "frequency cap: already messaged 1× within 24 h")]


@pytest.fixture
def server_in_chicago(monkeypatch):
    """The server's clock in Chicago ($TZ, as a container sets it), with no practice default zone."""
    monkeypatch.setenv("TZ", "America/Chicago")
    monkeypatch.delenv("PTPULSE_DEFAULT_TIMEZONE", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_quiet_hours_end_at_0800_the_night_the_clocks_go_back(setup, server_in_chicago):
    """A clinic without a zone on a Chicago server, asked at 21:00 on Oct 31 2026 (CDT, clocks go back at 02:00):
    the message waits until 08:00 CST, not 07:00 (the evening's fixed -05:00 offset carried to the morning) (L1)."""
    app_db, templates, policy = setup
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    now = datetime(2026, 10, 31, 21, 0).astimezone()  # what the send dialog passes: datetime.now().astimezone()
    assert now.utcoffset() == timedelta(hours=-5)
    who = people("1").assign(appointment_time=datetime(2026, 11, 2, 9, 30))
    preview = outreach.plan(app_db, who, templates["appointment_reminder"], "sms", now, policy)
    (until,) = preview["not_before"].tolist()
    chicago = until.astimezone(ZoneInfo("America/Chicago"))
    assert (chicago.date().isoformat(), chicago.hour, chicago.minute) == ("2026-11-01", 8, 0)
    assert until.utcoffset() == timedelta(hours=-6)


def test_practice_default_zone_applies_to_a_clinic_without_one(setup, monkeypatch):
    """$PTPULSE_DEFAULT_TIMEZONE (the practice's zone, as the FHIR import uses it) wins over the server's clock."""
    app_db, templates, policy = setup
    monkeypatch.setenv("PTPULSE_DEFAULT_TIMEZONE", "America/Chicago")
    outreach.record_consent(app_db, "1", "sms", True, "intake form", "d")
    now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)  # 21:00 CDT on Oct 31, whatever the server's zone
    who = people("1").assign(appointment_time=datetime(2026, 11, 2, 9, 30))
    preview = outreach.plan(app_db, who, templates["appointment_reminder"], "sms", now, policy)
    (until,) = preview["not_before"].tolist()
    assert until == datetime(2026, 11, 1, 8, 0, tzinfo=ZoneInfo("America/Chicago"))
    assert until.astimezone(UTC).hour == 14


def test_a_slow_batch_renews_its_claims_so_none_is_released_mid_way(setup):
    """A batch logged 20 minutes ago and still being sent (a slow provider): each send renews the batch's claims,
    so another deliverer's stale check releases none of them. Before, the message in flight and every untried one
    became `failed` ("interrupted"), and a Retry texted the patient in flight a second time."""
    app_db, templates, policy = setup
    old = (datetime.now(UTC) - timedelta(minutes=20)).isoformat(timespec="seconds")
    with sqlite3.connect(app_db, isolation_level=None) as con:
        outbound.ensure_message_log(con)
        for mid in (1, 2):
            con.execute(
                "insert into messages(batch_id, task_id, patient_id, channel, template, to_addr, body, status, actor, "
                "created_at, updated_at, claimed_by, claimed_at) "
                "values ('b', ?, ?, 'sms', 'appointment_reminder', ?, 'hi', 'sending', 'desk', ?, ?, 'batch-T', ?)",
                (None, str(mid), f"+1555000000{mid}", old, old, old),  # no task: nothing written back
            )
    released = []

    class SlowProvider:
        method = "sms"

        def send(self, to, subject, body, attachments=()):
            with sqlite3.connect(app_db, isolation_level=None) as con:  # the service's check, mid-send
                released.extend(outbound.release_stale_claims(con, datetime.now(UTC)))
            return "SM1"

    done = outbound.deliver_message(app_db, 1, SlowProvider(), 0, "desk", claimed="batch-T")
    assert done.status == "sent" and released == []
    assert rows(app_db, "select status, claimed_by from messages order by message_id") == [
        ("sent", "batch-T"),
        ("sending", "batch-T"),  # untried, still this batch's: sent next, never failed as "interrupted"
    ]
