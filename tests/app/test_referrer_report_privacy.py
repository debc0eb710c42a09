"""The referrer report (Referral sources): the PDF that leaves the app is the one made for this user, role and
clinics; a report listing patients is audited when it is downloaded or emailed; marketing's report names the
physician (a physician's name is not patient PHI).

Review s12: the PDF kept in session_state was keyed by (physician, month) only, so after the clinic filter changed,
or the demo role switched from owner to marketing, "Download PDF" and "Email PDF" handed out the earlier PDF: an
owner's report with 12 patient names was emailed from the marketing role. Emailing or downloading the identified
report wrote no audit entry. Marketing's report said "For 1248764528" (the NPI) because the PHI filter dropped
the physician's first and last name.

Real two-clinic build, real app.sqlite, a real SMTP server (aiosmtpd). Chromium's printing is replaced by a stand-in
that returns the HTML it was given, so the bytes handed out can be read (the PDF itself is tested in
tests/outbound/test_referrer_and_dialog.py).
"""

from __future__ import annotations

import email
import json
from datetime import date
from email import policy as email_policy
from html import escape

import duckdb
import pandas as pd
import pytest
from multi_practice import open_page, run, writable

from app.lib import audit, referrer_report, send_ui
from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.queries import outreach as q
from app.lib.queries.base import DbReader, Filters

EVERY_DAY = Filters(date(2000, 1, 1), date(2100, 12, 31))
OUTSIDE = "someone@outside.example"


def _as_of(home) -> date:
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        return pd.Timestamp(con.execute("select max(as_of) from marts.build_info").fetchone()[0]).date()


def _busiest(home) -> tuple[str, date]:
    """The physician and month (of the 12 the panel offers) with most referrals in both clinics together, among
    those with referrals in CL001: the practice-wide report lists CL001 patients a CL002 view must not hand out."""
    months = [m.date() for m in pd.date_range(end=pd.Timestamp(_as_of(home)), periods=12, freq="MS")]
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        return con.execute(
            """
            select referring_physician_id, date_trunc('month', received_at)::date as m from marts.referral_funnel
            where referring_physician_id is not null and list_contains($months, date_trunc('month', received_at)::date)
            group by all having count(*) filter (where clinic_id = 'CL001') > 0
            order by count(*) desc, 1, 2 limit 1
            """,
            {"months": months},
        ).fetchone()


def _patients(home, pid: str, month: date, clinic: str | None = None) -> set[str]:
    """Names of the patients the report of (pid, month) lists, of one clinic or all."""
    end = (pd.Timestamp(month) + pd.offsets.MonthBegin(1)).date()
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        rows = con.execute(
            """
            select p.first_name || ' ' || p.last_name from marts.referral_funnel f
            join marts.dim_patients p on p.patient_id = f.patient_id
            where f.referring_physician_id = $pid and f.received_at >= $start and f.received_at < $end
              and ($clinic is null or f.clinic_id = $clinic)
            """,
            {"pid": pid, "start": month, "end": end, "clinic": clinic},
        ).fetchall()
    return {escape(r[0]) for r in rows}  # as the HTML (autoescaped) writes them


@pytest.fixture
def printable(monkeypatch):
    """render_pdf's stand-in: the 'PDF' is the HTML it was printed from, so a test can read what it holds."""
    monkeypatch.setattr(referrer_report, "render_pdf", lambda html: html.encode("utf-8"))


@pytest.fixture
def smtp_env(local_smtp, tmp_path):
    inbox, port = local_smtp
    env = {
        "PTPULSE_SECRETS_FILE": str(tmp_path / "no-secrets.toml"),
        "PTPULSE_SMTP_HOST": "127.0.0.1",
        "PTPULSE_SMTP_PORT": str(port),
        "PTPULSE_SMTP_SECURITY": "none",
        "PTPULSE_SMTP_FROM": "clinic@practice.test",
    }
    return inbox, env


def _pdf_button(at):
    return [b for b in at.get("download_button") if b.proto.label == "Download PDF"]


def _pick(at, pid: str, month: date) -> None:
    at.selectbox(key="rs_report_doc").set_value(pid)
    at.selectbox(key="rs_report_m").set_value(month)


def _email(at, home, env: dict, to: str = OUTSIDE) -> None:
    at.text_input(key="rs_report_to").input(to)
    run(at, home, **env)
    at.button(key="rs_report_send").click()
    run(at, home, **env)
    assert [s.value for s in at.success] == ["Report emailed."], [e.value for e in at.error]


def _attachments(inbox) -> list[str]:
    out = []
    for msg in inbox.messages:
        parsed = email.message_from_bytes(msg.as_bytes(), policy=email_policy.default)
        out += [part.get_payload(decode=True).decode("utf-8") for part in parsed.iter_attachments()]
    return out


def _url_of(data: bytes, name: str) -> str:
    """The download URL Streamlit gives these bytes (the id is a hash of the content, mimetype and file name)."""
    from streamlit.runtime.media_file_storage import MediaFileKind
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    storage = MemoryMediaFileStorage("/mock/media")
    return storage.get_url(storage.load_and_get_id(data, "application/pdf", MediaFileKind.DOWNLOADABLE, name))


# ------------------------------------------------------------------ defect 1: the saved PDF follows the scope


def test_a_saved_pdf_is_never_handed_out_after_the_clinic_filter_or_the_role_changed(
    multi_built, tmp_path, printable, smtp_env
):
    inbox, env = smtp_env
    home = writable(multi_built, tmp_path / "home")
    pid, month = _busiest(home)
    everyone, north = _patients(home, pid, month), _patients(home, pid, month, "CL001")
    assert north and everyone >= north

    at = open_page(home, "owner", "referral_sources", **env)
    _pick(at, pid, month)
    run(at, home, **env)
    at.button(key="rs_report_pdf").click()
    run(at, home, **env)
    made = at.session_state[send_ui.REPORT_STATE][2].decode()
    assert all(n in made for n in north)  # the owner's practice-wide report lists CL001's patients
    (button,) = _pdf_button(at)
    assert button.proto.url == _url_of(
        made.encode(),
        referrer_report.filename(
            q.referrer_report(DbReader(AnalyticsDb(home.analytics_db), Scope("owner")), EVERY_DAY, pid, month)
        ),
    )

    # the clinic filter narrows to CL002: the practice-wide PDF is not offered, and "Email PDF" sends CL002's
    at.session_state["f_clinics"] = ["CL002"]
    run(at, home, **env)
    assert not _pdf_button(at), "the PDF made for every clinic is still offered after the filter changed to CL002"
    _email(at, home, env)
    (sent,) = _attachments(inbox)
    assert not [n for n in north if n in sent], "CL001's patients were emailed from a CL002 view"
    assert "Your referrals to" in sent

    # the demo role switches to marketing (home page: Referral sources): nothing of the owner's PDF is left
    at.session_state["f_clinics"] = []
    run(at, home, **env)
    at.button(key="rs_report_pdf").click()  # the owner makes the practice-wide PDF again ...
    run(at, home, **env)
    assert _pdf_button(at)
    at.selectbox(key="demo_role").set_value("marketing")
    run(at, home, **env)
    run(at, home, **env)
    assert at.session_state["ptpulse_user"].role == "marketing"
    assert send_ui.REPORT_STATE not in at.session_state, "the owner's PDF stayed in the marketing session"
    assert not _pdf_button(at)
    _email(at, home, env, "liaison@outside.example")
    marketing_sent = _attachments(inbox)[-1]
    assert "Your referrals to" in marketing_sent
    assert not [n for n in everyone if n in marketing_sent], "patient names were emailed from the marketing role"


# ------------------------------------------------------------------ defect 2: the identified report is audited


def _report_entries(home) -> list[dict]:
    log = audit.recent(home.app_db)
    rows = log[log["event"] == "export.identified"]
    return [d for d in map(json.loads, rows["detail"]) if d.get("table") == "referrer_report"]


def test_emailing_or_downloading_a_report_with_patients_is_audited_without_any_value(
    multi_built, tmp_path, printable, smtp_env
):
    inbox, env = smtp_env
    home = writable(multi_built, tmp_path / "home")
    pid, month = _busiest(home)
    everyone = _patients(home, pid, month)

    at = open_page(home, "owner", "referral_sources", **env)
    _pick(at, pid, month)
    run(at, home, **env)
    _email(at, home, env, "Dr.Office+ref@Ortho-Partners.example")
    assert len(inbox.messages) == 1
    (entry,) = _report_entries(home)
    assert entry["channel"] == "email" and entry["recipient_domain"] == "ortho-partners.example"
    assert entry["physician_id"] == pid and entry["month"] == f"{month:%Y-%m}" and entry["rows"] == len(everyone)
    log = audit.recent(home.app_db)
    text = " ".join(log["detail"]) + " ".join(log["actor"])
    assert "office" not in text.lower(), "the recipient's local part reached the audit log"
    assert not [n for n in everyone if n in text], "a patient name reached the audit log"

    at.button(key="rs_report_pdf").click()
    run(at, home, **env)
    _pdf_button(at)[0].click()
    run(at, home, **env)
    entries = _report_entries(home)
    assert [e["channel"] for e in entries] == ["download", "email"]  # newest first
    assert entries[0]["rows"] == len(everyone) and "recipient_domain" not in entries[0]


def test_marketing_sends_totals_only_and_that_is_not_an_identified_export(multi_built, tmp_path, printable, smtp_env):
    inbox, env = smtp_env
    home = writable(multi_built, tmp_path / "home")
    pid, month = _busiest(home)
    at = open_page(home, "marketing", "referral_sources", **env)
    _pick(at, pid, month)
    run(at, home, **env)
    _email(at, home, env)
    (sent,) = _attachments(inbox)
    assert not [n for n in _patients(home, pid, month) if n in sent] and "<table>" not in sent
    assert _report_entries(home) == []


# ------------------------------------------------------------------ defect 6: marketing's report names the physician


@pytest.mark.parametrize("role", ["owner", "marketing"])
def test_every_role_s_report_names_the_physician_not_the_npi(multi_built, role):
    pid, month = _busiest(multi_built)
    with duckdb.connect(str(multi_built.analytics_db), read_only=True) as con:
        name, last = con.execute(
            "select physician_name, last_name from marts.dim_referring_physicians where physician_id = ?", [pid]
        ).fetchone()
    reader = DbReader(AnalyticsDb(multi_built.analytics_db), Scope(role))
    report = q.referrer_report(reader, EVERY_DAY, pid, month)
    html = referrer_report.render_html(report, q.practice_label(reader), "2026-01-31", show_patients=Scope(role).phi)
    assert f"For {escape(name)}" in " ".join(html.split())
    assert f"For {pid}" not in html
    assert referrer_report.filename(report) == f"referrals-{''.join(c for c in last if c.isalnum())}-{month:%Y-%m}.pdf"
