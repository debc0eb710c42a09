"""The referrer report's figures equal the marts (HTML the PDF is printed from, the PDF itself, the email), and
the Work queue's send dialog previews before sending and shows what the log says; No-show risk's bulk reminder
lists the next clinic day after the reference clock; recipients carry their task's occurrence; a clinic-scoped
manager's consent import refuses patients of other clinics (AppTest, real build)."""

from __future__ import annotations

import email as email_parser
import shutil
from datetime import date, datetime, time
from email import policy as email_policy

import duckdb
import pytest

from app.lib import formatting, outreach, referrer_report, send_ui
from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.queries import outreach as q
from app.lib.queries.base import DbReader, Filters
from ptpulse.core import outbound
from ptpulse.core.config import get_settings, scoped_environ
from tests.app.app_helpers import app_test

ALL = Filters(date(2000, 1, 1), date(2100, 12, 31))


@pytest.fixture(scope="module")
def home(built_home, tmp_path_factory):
    target = tmp_path_factory.mktemp("outbound_home") / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(target)


def reader(home, role="owner") -> DbReader:
    return DbReader(AnalyticsDb(home.analytics_db), Scope(role))


def busiest_month(home) -> tuple[str, date]:
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        pid, month = con.execute(
            "select referring_physician_id, date_trunc('month', received_at)::date from marts.referral_funnel "
            "where referring_physician_id is not null group by all order by count(*) desc, 1, 2 limit 1"
        ).fetchone()
    return pid, month


def test_referrer_report_figures_equal_the_marts(home, tmp_path, print_browser):
    pid, month = busiest_month(home)
    report = q.referrer_report(reader(home), ALL, pid, month)
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        expected = con.execute(
            """
            select count(*), count(f.evaluated_at), coalesce(sum(e.attended_visits), 0),
                   count(coalesce(e.discharge_date, f.discharged_at)), count(e.outcome_change),
                   count(*) filter (where e.met_mcid and e.outcome_change is not null)
            from marts.referral_funnel f left join marts.episodes e on e.episode_id = f.episode_id
            where f.referring_physician_id = ? and date_trunc('month', f.received_at)::date = ?
            """,
            [pid, month],
        ).fetchone()
        all_time = con.execute(
            "select referrals from marts.referral_source_performance where source_type = 'physician' and source_id = ?",
            [pid],
        ).fetchone()[0]
        months = con.execute(
            "select distinct date_trunc('month', received_at)::date from marts.referral_funnel "
            "where referring_physician_id = ?",
            [pid],
        ).fetchall()
    t = report["totals"]
    assert (t["referrals"], t["seen"], t["visits"], t["discharged"], t["with_outcome"], t["met_mcid"]) == expected
    assert t["referrals"] > 0 and t["visits"] > 0
    # every month's report together is the scorecard's referral count: no referral lost or counted twice
    assert sum(q.referrer_report(reader(home), ALL, pid, m)["totals"]["referrals"] for (m,) in months) == all_time

    html = referrer_report.render_html(report, q.practice_label(reader(home)), "2026-01-31")
    for key in ("referrals", "seen", "visits", "discharged"):
        assert f'id="{key}">{t[key]}<' in html
    assert f'id="met_mcid">{t["met_mcid"]} of {t["with_outcome"]}' in html
    assert html.count("<tr>") == t["referrals"] + 1  # one row per referral under the header
    first = report["rows"].iloc[0]["patient"]
    assert first in html

    deid = referrer_report.render_html(
        q.referrer_report(reader(home, "marketing"), ALL, pid, month), "x", "2026-01-31", show_patients=False
    )
    assert f'id="referrals">{t["referrals"]}<' in deid and first not in deid and "<table>" not in deid

    pdf = referrer_report.render_pdf(html)
    assert pdf.startswith(b"%PDF") and len(pdf) > 5_000


def test_referrer_report_is_emailed_as_a_pdf(home, smtp_server, print_browser):
    inbox, email = smtp_server
    pid, month = busiest_month(home)
    report = q.referrer_report(reader(home), ALL, pid, month)
    pdf = referrer_report.render_pdf(referrer_report.render_html(report, "Practice", "2026-01-31"))
    name = referrer_report.filename(report)
    email.send("office@ortho.test", "Your referrals", "Attached.", [outbound.Attachment(name, pdf)])
    (received,) = inbox.messages
    msg = email_parser.message_from_bytes(received.as_bytes(), policy=email_policy.default)
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == name and part.get_payload(decode=True) == pdf


def build_as_of(home) -> datetime:
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        return con.execute("select max(as_of) from marts.build_info").fetchone()[0]


def sms_channel(sms_server, monkeypatch, tmp_path, home=None):
    """The SMS channel configured against the test server (no secrets file), quiet hours off (tests may run at
    night) and, given the home, the send dialog's clock at the build's as_of (the generated practice's upcoming
    appointments are ahead of that, not of the machine's clock, and a reminder for a passed one is skipped);
    returns the server's record of requests."""
    if home is not None:
        at = build_as_of(home)

        class Clock(datetime):
            @classmethod
            def now(cls, tz=None):
                return at if tz is None else at.astimezone(tz)

        monkeypatch.setattr(send_ui, "datetime", Clock)
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PTPULSE_SMS_ACCOUNT_SID", "ACtest0001")
    monkeypatch.setenv("PTPULSE_SMS_AUTH_TOKEN", "tok-secret-123")
    monkeypatch.setenv("PTPULSE_SMS_FROM", "+15550000000")
    monkeypatch.setenv("PTPULSE_SMS_BASE_URL", api_url(sms_server))
    monkeypatch.setattr(outreach, "in_quiet_hours", lambda now, policy: None)
    return sms_server[0]


def test_send_dialog_previews_then_sends_and_shows_the_log(home, sms_server, monkeypatch, tmp_path):

    api = sms_channel(sms_server, monkeypatch, tmp_path, home)

    with scoped_environ({"PTPULSE_HOME": str(home.home), "PTPULSE_DEMO_ROLE": "front_desk"}):
        at = app_test()
        at.run()
        at.switch_page("app_pages/work_queue.py").run()
        options = list(at.selectbox(key="wq_task").options)
        ids = at.dataframe[0].value["task_id"].tolist()
        rec = q.task_recipients(reader(home, "front_desk"), ALL, ids[:300])
        rec = rec[rec["appointment_time"].notna() & rec["phone"].notna()]
        assert len(rec), "the demo queue has a task with an upcoming appointment"
        task = rec.iloc[0]
        at.selectbox(key="wq_task").set_value(task["task_id"]).run()
        assert len(options) > 0
        text = " ".join(c.value for c in at.caption)
        assert "0 to send now" in text and "no SMS consent on file" in text
        assert "No message would be sent" in text  # a skipped message is not previewed (its fields may be missing)
        send = at.button(key="wq_send_send")
        assert send.disabled  # nothing to send: no consent

        outreach.record_consent(home.app_db, task["patient_id"], "sms", True, "intake form", "test")
        at.run()
        assert "1 to send now" in " ".join(c.value for c in at.caption)
        preview = " ".join(t.value for t in at.text)
        assert str(task["first_name"]) in preview and str(task["clinic_name"]) in preview
        assert str(task["last_name"]) not in preview  # minimum PHI in the SMS
        assert api.requests == []  # a preview sends nothing
        at.button(key="wq_send_send").click().run()
        assert len(api.requests) == 1 and api.requests[0]["form"]["Body"] in preview
        assert "Last send: 1 sent." in [s.value for s in at.success]
        log = outreach.messages(home.app_db, [task["task_id"]])
        assert log["status"].tolist() == ["sent"]
        assert "sms: Left voicemail / message" in at.dataframe[0].value.to_csv()  # written back to the queue


def api_url(sms_server) -> str:
    return sms_server[1].settings.base_url


def test_send_click_after_the_task_was_closed_sends_nothing(home, sms_server, monkeypatch, tmp_path):
    """The preview showed patient X; a colleague closes X's task before the click, so the Work queue falls back to
    another patient in the run carrying the click: nothing is sent to anyone, and the dialog says why (H1)."""

    from app.lib import actions

    api = sms_channel(sms_server, monkeypatch, tmp_path, home)

    with scoped_environ({"PTPULSE_HOME": str(home.home), "PTPULSE_DEMO_ROLE": "front_desk"}):
        at = app_test()
        at.run()
        at.switch_page("app_pages/work_queue.py").run()
        ids = at.dataframe[0].value["task_id"].tolist()
        rec = q.task_recipients(reader(home, "front_desk"), ALL, ids[:300])
        rec = rec[rec["appointment_time"].notna() & rec["phone"].notna()]
        for pid in set(rec["patient_id"]):  # everyone could be texted: only the binding stops the wrong one
            outreach.record_consent(home.app_db, pid, "sms", True, "intake form", "test")
        task = rec.iloc[-1]
        logged_before = len(outreach.messages(home.app_db, limit=100_000))
        at.selectbox(key="wq_task").set_value(task["task_id"]).run()
        assert "1 to send now" in " ".join(c.value for c in at.caption)
        actions.record(home.app_db, task["task_id"], "mark_lost", "colleague@clinic.com", {"reason": "Moved away"})
        at.button(key="wq_send_send").click().run()
        assert not at.exception
        assert at.selectbox(key="wq_task").value != task["task_id"]
        assert any("changed since the preview" in e.value and "nothing was sent" in e.value for e in at.error)
    assert api.requests == []  # nobody was texted
    assert len(outreach.messages(home.app_db, limit=100_000)) == logged_before  # nothing logged either


def test_no_show_bulk_reminders_are_for_the_day_after_the_reference_now(home, monkeypatch):
    """The nightly build's as_of is the evening before; on the next clinic day's afternoon the bulk reminder must
    list the day after it (the reference clock, as the Work queue's), not that day's appointments, some already
    over (before: the day after the build's as_of, i.e. today)."""

    as_of = build_as_of(home)
    r = reader(home, "manager")
    today = q.next_clinic_day(r, ALL, as_of.date())  # what the page listed before
    wall = datetime.combine(today, time(14, 0))
    assert formatting.reference_now(as_of, wall) == wall  # the data is current at that wall clock
    expected = q.next_clinic_day(r, ALL, today)
    assert expected is not None and expected > today
    real = formatting.reference_now
    monkeypatch.setattr(formatting, "reference_now", lambda a, _wall, *args, **kw: real(a, wall, *args, **kw))

    with scoped_environ({"PTPULSE_HOME": str(home.home), "PTPULSE_DEMO_ROLE": "manager"}):
        at = app_test()
        at.run()
        at.switch_page("app_pages/no_show.py").run()
    assert not at.exception
    titles = [m.value for m in at.markdown if "high-risk appointment(s) of" in m.value]
    (title,) = titles
    assert title.endswith(f"of {expected:%a %b} {expected.day}**"), title


def test_task_recipients_carry_the_tasks_occurrence(home):
    """task_recipients returns each task's created_at (its occurrence), so a message's write-back names it."""
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        tasks = con.execute(
            "select task_id, created_at from marts.work_queue_candidates order by task_id limit 200"
        ).fetchall()
    rec = q.task_recipients(reader(home, "front_desk"), ALL, [t for t, _ in tasks])
    assert len(rec) == len(tasks)
    assert dict(zip(rec["task_id"], rec["created_at"], strict=True)) == dict(tasks)
    day = q.next_clinic_day(reader(home, "front_desk"), ALL, build_as_of(home).date())
    assert "created_at" in q.high_risk_recipients(reader(home, "front_desk"), ALL, day)


def test_a_clinic_scoped_managers_consent_import_refuses_patients_of_other_clinics(home, tmp_path):
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        pid, clinic = con.execute(
            "select patient_id::varchar, clinic_id from marts.appointments order by appointment_id limit 1"
        ).fetchone()
    app_db = tmp_path / "app.sqlite"
    csv_text = f"patient_id,channel,consent\n{pid},sms,yes\nNOT-A-PATIENT-OF-OURS,sms,yes\n"

    def scoped(*clinics):
        r = DbReader(AnalyticsDb(home.analytics_db), Scope("manager", clinics))
        return lambda ids: q.patients_in_scope(r, ids)

    done = outreach.import_consent(app_db, csv_text, "emr.csv", "mgr@x", in_scope=scoped(clinic))
    assert (done.imported, done.refused_lines) == (1, (3,))
    assert "Refused 1 line(s) (3): the patient was not seen at your clinics." in done.message()
    assert "NOT-A-PATIENT" not in done.message()
    elsewhere = outreach.import_consent(app_db, csv_text, "emr.csv", "mgr@x", in_scope=scoped("CL-NOT-MINE"))
    assert (elsewhere.imported, elsewhere.refused_lines) == (0, (2, 3))
    everyone = outreach.import_consent(
        app_db, csv_text, "emr.csv", "owner@x", in_scope=lambda ids: q.patients_in_scope(reader(home), ids)
    )
    assert (everyone.imported, everyone.refused_lines) == (2, ())  # an owner sees every clinic
