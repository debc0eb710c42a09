"""The practice's outbound channels: email over SMTP and SMS through a Twilio-compatible REST provider.

Why here (core): the app (reminders, referrer reports) and the service (`ptpulse.notify` alerts) both send,
and the app may import only ptpulse.core; so the one SMTP client and the one SMS adapter live here, and
where their servers and passwords come from is decided once, below. Nothing here writes a secret to a log
line, a repr or an error message.

Settings come from the environment first, then the `[smtp]` / `[sms]` tables of the secrets.toml files
Streamlit reads (`~/.streamlit/`, `./.streamlit/`, `app/.streamlit/`), or of `$PTPULSE_SECRETS_FILE`
instead when set:

    PTPULSE_SMTP_HOST / host          SMTP server (no host = email is off, and callers say so)
    PTPULSE_SMTP_PORT / port          default 587 with starttls, 465 with ssl, 25 without
    PTPULSE_SMTP_SECURITY / security  starttls (default), ssl, or none (a relay on localhost)
    PTPULSE_SMTP_USER / user          login, optional
    PTPULSE_SMTP_PASSWORD / password  optional; only ever handed to smtplib
    PTPULSE_SMTP_FROM / from          sender address (default ptpulse@<host name>)
    PTPULSE_ALERT_TO / alert_to       comma-separated admin recipients (alerts only)

    PTPULSE_SMS_ACCOUNT_SID / account_sid   the provider account (no sid = SMS is off)
    PTPULSE_SMS_AUTH_TOKEN / auth_token     only ever sent as the basic-auth password
    PTPULSE_SMS_FROM / from                 the practice's sending number (E.164)
    PTPULSE_SMS_BASE_URL / base_url         default https://api.twilio.com (any Twilio-compatible API)
"""

from __future__ import annotations

import base64
import json
import os
import smtplib
import socket
import sqlite3
import ssl
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

from ptpulse.core.action_log import append_action
from ptpulse.core.config import APP_DIR

SECURITY = ("starttls", "ssl", "none")
TWILIO_URL = "https://api.twilio.com"


class OutboundError(RuntimeError):
    """A message could not be sent; says which server and what kind of failure, never a secret or a body.

    `permanent` is True when sending again cannot help (bad login, a recipient the provider refuses)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def streamlit_secrets_files() -> list[Path]:
    """Where Streamlit itself reads secrets (and st.login its [auth] table), lowest precedence first: the
    user's, the working directory's, then the app script's folder (app/.streamlit/)."""
    name = Path(".streamlit") / "secrets.toml"
    return list(dict.fromkeys([Path.home() / name, Path.cwd() / name, APP_DIR / name]))


def secrets_files() -> list[Path]:
    """Where channel settings are read: Streamlit's files, or $PTPULSE_SECRETS_FILE instead of them."""
    override = os.environ.get("PTPULSE_SECRETS_FILE")
    return [Path(override).expanduser()] if override else streamlit_secrets_files()


def read_secrets(files: list[Path] | None = None) -> dict[str, Any]:
    """The merged secrets tables (later files win per top-level key), or {} when there are none.

    A file that is not valid TOML is reported by path only: its text may hold a password."""
    merged: dict[str, Any] = {}
    for path in secrets_files() if files is None else files:
        if not path.is_file():
            continue
        try:
            merged.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            raise OutboundError(f"{path} is not valid TOML: fix its syntax (the file itself is not shown).") from None
    return merged


def _getter(secrets: dict[str, Any] | None, table_name: str):
    table = (read_secrets() if secrets is None else secrets).get(table_name) or {}
    if not isinstance(table, dict):
        table = {}

    def get(env: str, key: str, default: str = "") -> str:
        value = os.environ.get(env)
        return str(value if value is not None else table.get(key, default)).strip()

    return get


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    sender: str
    to: tuple[str, ...] = ()  # the admin recipients of alerts; patients' addresses are passed per message
    user: str = ""
    password: str = field(default="", repr=False)  # never in repr, logs or messages
    timeout_s: float = 20.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def smtp_settings(secrets: dict[str, Any] | None = None, need_recipients: bool = True) -> SmtpSettings | None:
    """SMTP settings from env, then secrets.toml `[smtp]`; None when no host is configured (or, for alerts,
    `need_recipients`, no admin recipient)."""
    get = _getter(secrets, "smtp")
    host = get("PTPULSE_SMTP_HOST", "host")
    recipients = tuple(a.strip() for a in get("PTPULSE_ALERT_TO", "alert_to").split(",") if a.strip())
    if not host or (need_recipients and not recipients):
        return None
    security = get("PTPULSE_SMTP_SECURITY", "security", "starttls").lower()
    if security not in SECURITY:
        raise OutboundError(
            f"SMTP security {security!r} is not one of {', '.join(SECURITY)}: fix PTPULSE_SMTP_SECURITY "
            "or `security` in the [smtp] table of secrets.toml."
        )
    default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    port_text = get("PTPULSE_SMTP_PORT", "port", str(default_port))
    if not port_text.isdigit():
        raise OutboundError("SMTP port is not a number: fix PTPULSE_SMTP_PORT or `port` in the [smtp] table.")
    return SmtpSettings(
        host=host,
        port=int(port_text),
        security=security,
        sender=get("PTPULSE_SMTP_FROM", "from") or f"ptpulse@{socket.gethostname()}",
        to=recipients,
        user=get("PTPULSE_SMTP_USER", "user"),
        password=get("PTPULSE_SMTP_PASSWORD", "password"),
    )


@dataclass(frozen=True)
class Attachment:
    """A file to attach; with `cid` an image shown inside the HTML body (`<img src="cid:...">`) instead."""

    filename: str
    content: bytes
    mime: str = "application/pdf"
    cid: str = ""


def send_email(
    settings: SmtpSettings,
    subject: str,
    body: str,
    to: Sequence[str] | None = None,
    attachments: Sequence[Attachment] = (),
    html: str | None = None,
) -> str:
    """Send one email (plain text, plus an HTML alternative when given) to `to`, else the settings' admin
    recipients; returns its Message-ID. Attachments with a `cid` are images inside the HTML.

    Raises OutboundError naming the server and the failure kind (a refused login is permanent)."""
    recipients = list(to if to is not None else settings.to)
    if not recipients:
        raise OutboundError("an email needs a recipient address", permanent=True)
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="ptpulse.local")
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
        html_part = msg.get_payload()[-1]
        for a in attachments:
            if a.cid:
                main, _, sub = a.mime.partition("/")
                html_part.add_related(a.content, maintype=main, subtype=sub, cid=f"<{a.cid}>", filename=a.filename)
    for a in attachments:
        if a.cid and html is not None:
            continue
        main, _, sub = a.mime.partition("/")
        msg.add_attachment(a.content, maintype=main, subtype=sub or "octet-stream", filename=a.filename)
    try:
        if settings.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_s, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        with client:
            if settings.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.user:
                client.login(settings.user, settings.password)
            client.send_message(msg)
    except smtplib.SMTPAuthenticationError:
        raise OutboundError(
            f"SMTP server {settings.where} refused the login: check the SMTP user and password "
            "(PTPULSE_SMTP_USER / PTPULSE_SMTP_PASSWORD or the [smtp] table of secrets.toml).",
            permanent=True,
        ) from None
    except smtplib.SMTPRecipientsRefused:
        raise OutboundError(
            f"SMTP server {settings.where} refused the recipient address: correct the email address in the EMR.",
            permanent=True,
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise OutboundError(
            f"could not send an email through SMTP server {settings.where} ({type(exc).__name__}): check the "
            "host, port and security setting, and that the server accepts mail from this machine."
        ) from None
    return str(msg["Message-ID"])


@dataclass(frozen=True)
class SmsSettings:
    account_sid: str
    sender: str
    auth_token: str = field(default="", repr=False)  # never in repr, logs or messages
    base_url: str = TWILIO_URL
    timeout_s: float = 20.0

    @property
    def where(self) -> str:
        return urllib.parse.urlsplit(self.base_url).netloc or self.base_url


def sms_settings(secrets: dict[str, Any] | None = None) -> SmsSettings | None:
    """SMS provider settings from env, then secrets.toml `[sms]`; None when no account or sender is configured."""
    get = _getter(secrets, "sms")
    sid, sender = get("PTPULSE_SMS_ACCOUNT_SID", "account_sid"), get("PTPULSE_SMS_FROM", "from")
    if not sid or not sender:
        return None
    return SmsSettings(
        account_sid=sid,
        sender=sender,
        auth_token=get("PTPULSE_SMS_AUTH_TOKEN", "auth_token"),
        base_url=(get("PTPULSE_SMS_BASE_URL", "base_url") or TWILIO_URL).rstrip("/"),
    )


def send_sms(settings: SmsSettings, to: str, body: str) -> str:
    """POST one message to the provider's Messages resource (Twilio's REST shape); returns the provider's id.

    4xx answers (a number the provider refuses, a bad login) are permanent; 5xx, 429 and network errors are
    worth a retry. The provider's answer text is not repeated: it may quote the number."""
    url = f"{settings.base_url}/2010-04-01/Accounts/{urllib.parse.quote(settings.account_sid)}/Messages.json"
    data = urllib.parse.urlencode({"To": to, "From": settings.sender, "Body": body}).encode()
    token = base64.b64encode(f"{settings.account_sid}:{settings.auth_token}".encode()).decode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Authorization", f"Basic {token}")
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=settings.timeout_s) as resp:  # noqa: S310 - https or configured
            answer = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        code = exc.code
        if code in (401, 403):
            raise OutboundError(
                f"SMS provider {settings.where} refused the login (HTTP {code}): check PTPULSE_SMS_ACCOUNT_SID / "
                "PTPULSE_SMS_AUTH_TOKEN or the [sms] table of secrets.toml.",
                permanent=True,
            ) from None
        raise OutboundError(
            f"SMS provider {settings.where} answered HTTP {code}"
            + (
                ": the number or message was refused; check the patient's mobile number in the EMR."
                if code < 500 and code != 429
                else ": try again later."
            ),
            permanent=400 <= code < 500 and code != 429,
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OutboundError(
            f"could not reach SMS provider {settings.where} ({type(exc).__name__}): check PTPULSE_SMS_BASE_URL "
            "and the network."
        ) from None
    return str(answer.get("sid") or "")


class Channel(Protocol):
    """One way to reach a person: `send` returns the provider's message id or raises OutboundError."""

    method: str

    def send(self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()) -> str: ...


@dataclass(frozen=True)
class EmailChannel:
    settings: SmtpSettings
    method: str = "email"

    def send(self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()) -> str:
        return send_email(self.settings, subject, body, to=[to], attachments=attachments)


@dataclass(frozen=True)
class SmsChannel:
    settings: SmsSettings
    method: str = "sms"

    def send(self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()) -> str:
        return send_sms(self.settings, to, body)


def channels(secrets: dict[str, Any] | None = None) -> dict[str, Channel]:
    """The configured channels by method ('email', 'sms'); a channel without settings is absent."""
    secrets = read_secrets() if secrets is None else secrets
    out: dict[str, Channel] = {}
    smtp = smtp_settings(secrets, need_recipients=False)
    if smtp is not None:
        out["email"] = EmailChannel(smtp)
    sms = sms_settings(secrets)
    if sms is not None:
        out["sms"] = SmsChannel(sms)
    return out


# ------------------------------------------------------------------------------------------- queued delivery
# Why here: a message queued for after quiet hours must go out even when nobody opens a page, so `ptpulse serve`
# delivers it, and ptpulse may not import the app. The app (app/lib/outreach.py) owns the tables' schema and the
# planning rules; the delivery of one logged message, and of the queued ones that are due, lives here for both.

WRITE_BACK_OUTCOME = "left_message"  # a delivered message is not a conversation: it does not close the task


@dataclass(frozen=True)
class Delivery:
    """What happened to one logged message: status sent | failed | skipped | queued, and why (never a body)."""

    message_id: int
    task_id: str | None
    status: str
    reason: str


def _connect(app_db: Path) -> sqlite3.Connection:
    """A short-lived connection to app.sqlite (already in WAL mode: the app created it) that waits for writers."""
    con = sqlite3.connect(str(app_db), timeout=10.0, isolation_level=None)
    con.execute("pragma busy_timeout = 10000")
    return con


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def latest_consent(con: sqlite3.Connection, patient_id: str | None, channel: str) -> tuple[str, str] | None:
    """(status, source) of the patient's latest consent row for the channel (or 'any'); None = no record."""
    if patient_id is None:
        return None
    row = con.execute(
        "select status, source from contact_consent where patient_id = ? and channel in (?, 'any') "
        "order by id desc limit 1",
        (str(patient_id), channel),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def deliver_message(
    app_db: Path,
    message_id: int,
    channel: Channel,
    retries: int,
    actor: str,
    role: str = "",
    retry_wait_s: float = 0.3,
) -> Delivery:
    """Send one logged message with retries (back-off doubling from `retry_wait_s`); mark it `sent` and write it
    back to its task as a `log_outreach` action (with its audit entry) in one transaction, or mark it `failed`
    with the reason. A message is never marked sent before the provider accepted it."""
    con = _connect(app_db)
    try:
        task_id, to_addr, subject, body, attempts, template = con.execute(
            "select task_id, to_addr, subject, body, attempts, template from messages where message_id = ?",
            (message_id,),
        ).fetchone()
        error: OutboundError | None = None
        provider_id = ""
        for attempt in range(retries + 1):
            attempts += 1
            try:
                provider_id = channel.send(to_addr, subject or "", body or "")
                error = None
                break
            except OutboundError as exc:
                error = exc
                if exc.permanent or attempt == retries:
                    break
                time.sleep(retry_wait_s * 2**attempt)
        now = _now_iso()
        if error is not None:
            con.execute(
                "update messages set status = 'failed', reason = ?, attempts = ?, updated_at = ? where message_id = ?",
                (str(error), attempts, now, message_id),
            )
            return Delivery(message_id, task_id, "failed", str(error))
        con.execute("begin immediate")
        try:
            action_id = None
            if task_id:  # the rows app/lib/actions.record writes, by the same function
                at = datetime.now(UTC).isoformat(timespec="microseconds")
                payload = {
                    "message_id": message_id,
                    "method": channel.method,
                    "note": f"{template} sent",
                    "outcome": WRITE_BACK_OUTCOME,
                }
                action_id = append_action(con, task_id, "log_outreach", actor, role, at, payload)
            con.execute(
                "update messages set status = 'sent', reason = null, attempts = ?, provider_id = ?, action_id = ?, "
                "updated_at = ? where message_id = ?",
                (attempts, provider_id, action_id, now, message_id),
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        return Delivery(message_id, task_id, "sent", "")
    finally:
        con.close()


def deliver_due(
    app_db: Path,
    channels: dict[str, Channel],
    now: datetime,
    retries: int,
    role: str = "",
    retry_wait_s: float = 0.3,
) -> list[Delivery]:
    """Deliver the queued messages whose `not_before` (the end of quiet hours in their clinic's time zone, fixed
    when they were queued) has passed; a patient who opted out or lost consent meanwhile is skipped. Idempotent;
    [] when app.sqlite or its message log does not exist yet. Messages for an unconfigured channel stay queued."""
    if not app_db.exists():
        return []
    now = now if now.tzinfo else now.astimezone()
    con = _connect(app_db)
    try:
        has_log = con.execute("select 1 from sqlite_master where type = 'table' and name = 'messages'").fetchone()
        if not has_log:
            return []
        rows = con.execute(
            "select message_id, channel, not_before, actor, patient_id, task_id from messages "
            "where status = 'queued' order by message_id"
        ).fetchall()
        out: list[Delivery] = []
        for mid, ch, not_before, actor, pid, task_id in rows:
            due_at = None if not_before is None else datetime.fromisoformat(not_before)
            if due_at is not None and due_at.tzinfo is None:
                due_at = due_at.astimezone()
            if (due_at is not None and due_at > now) or ch not in channels:
                continue
            consent = latest_consent(con, pid, ch)
            if consent is None or consent[0] != "granted":  # a STOP while it waited for the morning wins
                reason = "opted out while queued for quiet hours" if consent else f"no {ch} consent on file"
                con.execute(
                    "update messages set status = 'skipped', reason = ?, updated_at = ? where message_id = ?",
                    (reason, _now_iso(), mid),
                )
                out.append(Delivery(mid, task_id, "skipped", reason))
                continue
            out.append(deliver_message(app_db, mid, channels[ch], retries, actor, role, retry_wait_s))
        return out
    finally:
        con.close()
