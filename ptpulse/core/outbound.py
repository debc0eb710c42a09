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
import http.client
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
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

import yaml

from ptpulse.core.action_log import append_action
from ptpulse.core.config import APP_DIR

SECURITY = ("starttls", "ssl", "none")
TWILIO_URL = "https://api.twilio.com"


MAYBE_SENT = "the provider may or may not have it; check with the patient or the provider's log before using Retry"


class OutboundError(RuntimeError):
    """A message could not be sent; says which server and what kind of failure, never a secret or a body.

    `permanent` is True when sending again cannot help (bad login, a recipient the provider refuses).
    `maybe_sent` is True when the failure came after the message was handed over (no answer to the request, the
    connection lost after the SMTP DATA): the provider may have it, so it is never sent again by itself."""

    def __init__(self, message: str, permanent: bool = False, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.maybe_sent = maybe_sent

    @property
    def retryable(self) -> bool:
        """Whether an automatic retry is safe and may help: a temporary failure known to have happened before the
        provider could have the message (connection refused, DNS, connect timeout, an SMTP refusal before DATA)."""
        return not self.permanent and not self.maybe_sent


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


class _DataMark:
    """smtplib's client, noting when the DATA command starts and when the server accepted the message: a failure
    before DATA is safe to retry (the server has nothing), one after it without an answer may have been delivered."""

    data_started = False
    data_accepted = False

    def data(self, msg):  # smtplib.SMTP.data: send_message calls it once the recipients are accepted
        self.data_started = True
        reply = super().data(msg)  # type: ignore[misc]
        self.data_accepted = True
        return reply


class _Smtp(_DataMark, smtplib.SMTP):
    pass


class _SmtpSsl(_DataMark, smtplib.SMTP_SSL):
    pass


def _compose_email(
    settings: SmtpSettings,
    subject: str,
    body: str,
    recipients: list[str],
    attachments: Sequence[Attachment],
    html: str | None,
) -> EmailMessage:
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
    return msg


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

    Raises OutboundError naming the server and the failure kind: a refused login and an email that cannot be
    composed (a line break in the address) are permanent; a failure after the DATA command without the server's
    answer is `maybe_sent` (the server may have it: never retried by itself); an earlier one is temporary."""
    recipients = list(to if to is not None else settings.to)
    if not recipients:
        raise OutboundError("an email needs a recipient address", permanent=True)
    try:
        msg = _compose_email(settings, subject, body, recipients, attachments, html)
    except Exception as exc:  # noqa: BLE001 - whatever the email library refuses, for this one message
        raise OutboundError(
            f"could not compose the email ({type(exc).__name__}): check the recipient's email address in the EMR "
            "(a line break or another character an address cannot hold) and the template.",
            permanent=True,
        ) from None
    client: _Smtp | _SmtpSsl | None = None
    try:
        if settings.security == "ssl":
            client = _SmtpSsl(
                settings.host, settings.port, timeout=settings.timeout_s, context=ssl.create_default_context()
            )
        else:
            client = _Smtp(settings.host, settings.port, timeout=settings.timeout_s)
        if settings.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if settings.user:
            client.login(settings.user, settings.password)
        client.send_message(msg)
    except smtplib.SMTPAuthenticationError:
        _hang_up(client)
        raise OutboundError(
            f"SMTP server {settings.where} refused the login: check the SMTP user and password "
            "(PTPULSE_SMTP_USER / PTPULSE_SMTP_PASSWORD or the [smtp] table of secrets.toml).",
            permanent=True,
        ) from None
    except smtplib.SMTPRecipientsRefused:
        _hang_up(client)
        raise OutboundError(
            f"SMTP server {settings.where} refused the recipient address: correct the email address in the EMR.",
            permanent=True,
        ) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes this message's OutboundError
        _hang_up(client)
        kind = type(exc).__name__
        if client is not None and client.data_started and not isinstance(exc, smtplib.SMTPResponseException):
            raise OutboundError(  # the message went out and no answer came back (a timeout, a dropped line)
                f"SMTP server {settings.where} did not confirm the email after it was sent ({kind}): {MAYBE_SENT}.",
                maybe_sent=True,
            ) from None
        if isinstance(exc, smtplib.SMTPException | OSError):
            raise OutboundError(
                f"could not send an email through SMTP server {settings.where} ({kind}): check the "
                "host, port and security setting, and that the server accepts mail from this machine."
            ) from None
        raise OutboundError(
            f"could not send an email through SMTP server {settings.where} ({kind}): an unexpected error.",
            permanent=True,
        ) from None
    try:
        client.quit()  # the message is accepted: a failed goodbye does not change that
    except (smtplib.SMTPException, OSError):
        client.close()
    return str(msg["Message-ID"])


def _hang_up(client: smtplib.SMTP | None) -> None:
    """Close a failed SMTP session without a QUIT (a server that stopped answering would hold us again)."""
    if client is not None:
        client.close()


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

    4xx answers (a number the provider refuses, a bad login) are permanent; 5xx and 429 answers, and failures
    while connecting or sending the request (DNS, connection refused, connect timeout) are worth a retry: the
    provider has nothing. A failure after the request was sent (no answer within the timeout, the connection
    closed without one) is `maybe_sent`: the provider may have accepted it, so it is never re-posted by itself.
    A 2xx answer whose body cannot be read is accepted (id unknown). The provider's answer text is not repeated:
    it may quote the number."""
    try:
        url = f"{settings.base_url}/2010-04-01/Accounts/{urllib.parse.quote(settings.account_sid)}/Messages.json"
        data = urllib.parse.urlencode({"To": to, "From": settings.sender, "Body": body}).encode()
        token = base64.b64encode(f"{settings.account_sid}:{settings.auth_token}".encode()).decode()
        req = urllib.request.Request(url, data=data, method="POST")
        req.add_header("Authorization", f"Basic {token}")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    except Exception as exc:  # noqa: BLE001 - a value this one message cannot be sent with
        raise OutboundError(
            f"could not prepare the text message for SMS provider {settings.where} ({type(exc).__name__}): check "
            "the patient's mobile number in the EMR, the template and PTPULSE_SMS_BASE_URL.",
            permanent=True,
        ) from None
    try:
        resp = urllib.request.urlopen(req, timeout=settings.timeout_s)  # noqa: S310 - https or configured
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
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
    except urllib.error.URLError as exc:  # urllib raises this while connecting or sending: the provider has nothing
        kind = type(exc.reason).__name__ if isinstance(exc.reason, BaseException) else type(exc).__name__
        raise OutboundError(
            f"could not reach SMS provider {settings.where} ({kind}): check PTPULSE_SMS_BASE_URL and the network."
        ) from None
    except (OSError, http.client.HTTPException) as exc:  # the request was sent and no answer came back
        raise OutboundError(
            f"SMS provider {settings.where} did not answer after the message was sent ({type(exc).__name__}): "
            f"{MAYBE_SENT}.",
            maybe_sent=True,
        ) from None
    with resp:
        try:
            answer = json.loads(resp.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            answer = {}  # accepted (a 2xx answer); its id could not be read
    return str(answer.get("sid") or "") if isinstance(answer, dict) else ""


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
# delivers it, and ptpulse may not import the app. The app (app/lib/outreach.py) owns the planning rules; the
# message log's table, the delivery of one logged message, and of the queued ones that are due, live here for both.
#
# Sending exactly once: the pages (every render), the send dialog and `ptpulse serve` (every minute) may all try
# to deliver the same queued message at the same moment. Each first *claims* the row (queued|failed -> sending,
# with claimed_by / claimed_at, in one UPDATE that only one of them can win) and only the winner calls the
# provider. A row left in `sending` by a process that died mid-send is not resent automatically (the provider
# may have it): after CLAIM_STALE_MINUTES it becomes `failed` with a reason that says so, and a person decides.

WRITE_BACK_OUTCOME = "left_message"  # a delivered message is not a conversation: it does not close the task
MESSAGE_STATUSES = ("queued", "sending", "sent", "failed", "skipped")
CLAIM_STALE_MINUTES = 15.0  # far longer than one send with its retries (3 × a 20 s timeout plus back-off)
STALE_REASON = "interrupted while sending (claimed by {who} at {at}): " + MAYBE_SENT
APPOINTMENT_PASSED = "appointment has passed"

MESSAGES_SCHEMA = f"""
create table if not exists messages (
    message_id  integer primary key autoincrement,
    batch_id    text not null,
    task_id     text,
    patient_id  text,
    channel     text not null check (channel in ('sms', 'email')),
    template    text not null,
    to_addr     text,
    subject     text,
    body        text,
    status      text not null check (status in ({",".join(f"'{s}'" for s in MESSAGE_STATUSES)})),
    reason      text,
    attempts    integer not null default 0,
    not_before  text,
    provider_id text,
    action_id   integer,
    actor       text not null,
    created_at  text not null,
    updated_at  text not null,
    claimed_by  text,
    claimed_at  text,
    appointment_at text,
    occurrence  text,
    clinic_zone text
);
create index if not exists messages_patient on messages(patient_id, created_at);
create index if not exists messages_status on messages(status, not_before);
"""
_OLD_COLUMNS = (
    "message_id, batch_id, task_id, patient_id, channel, template, to_addr, subject, body, status, reason, "
    "attempts, not_before, provider_id, action_id, actor, created_at, updated_at"
)
# Columns added since: the appointment a reminder is for (an instant with its offset: a message is not delivered
# once it has passed), the task's occurrence (its build created_at, as actions.record stores it; the write-back
# names it) and the clinic's zone (quiet hours when a failed message is retried). NULL on older rows.
ADDED_MESSAGE_COLUMNS = {"appointment_at": "text", "occurrence": "text", "clinic_zone": "text"}
ADDED_CONSENT_COLUMNS = {"consented_at": "text"}  # the decision's own date as its source gives it (NULL: none)


def add_columns(con: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add the nullable `columns` an older `table` lacks (ALTER TABLE ADD COLUMN keeps every row); nothing when the
    table does not exist. Two processes upgrading at once: the second finds it done."""
    have = {r[1] for r in con.execute(f"pragma table_info({table})").fetchall()}
    if not have or not set(columns) - have:
        return
    con.execute("begin immediate")
    try:
        have = {r[1] for r in con.execute(f"pragma table_info({table})").fetchall()}
        for name, kind in columns.items():
            if name not in have:
                con.execute(f"alter table {table} add column {name} {kind}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def ensure_message_log(con: sqlite3.Connection) -> None:
    """Create the message log, or bring an older one up to date (the `sending` status, the claim columns, then the
    columns of ADDED_MESSAGE_COLUMNS); the consent log (the app creates it) gains ADDED_CONSENT_COLUMNS.

    SQLite cannot change a CHECK constraint in place, so an older table is copied into a new one in one
    immediate transaction (the documented way); two processes upgrading at once: the second finds it done."""
    _ensure_claims(con)
    add_columns(con, "messages", ADDED_MESSAGE_COLUMNS)
    add_columns(con, "contact_consent", ADDED_CONSENT_COLUMNS)


def _ensure_claims(con: sqlite3.Connection) -> None:
    sql = con.execute("select sql from sqlite_master where type = 'table' and name = 'messages'").fetchone()
    if sql is not None and "'sending'" in sql[0]:
        return
    if sql is None:
        con.executescript(MESSAGES_SCHEMA)
        return
    con.execute("begin immediate")
    try:
        sql = con.execute("select sql from sqlite_master where type = 'table' and name = 'messages'").fetchone()
        if "'sending'" not in sql[0]:
            con.execute("alter table messages rename to messages_before_claims")
            con.execute("drop index if exists messages_patient")
            con.execute("drop index if exists messages_status")
            for statement in MESSAGES_SCHEMA.split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"insert into messages ({_OLD_COLUMNS}) select {_OLD_COLUMNS} from messages_before_claims")
            con.execute("drop table messages_before_claims")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def claim_token(actor: str) -> str:
    """Who holds a claim: the actor, this host and process, and a nonce (shown in the reason if it is ever stuck)."""
    return f"{actor} on {socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"


def claim(con: sqlite3.Connection, message_id: int, token: str, from_statuses: Sequence[str] = ("queued",)) -> bool:
    """Take one message for sending: True only for the one caller whose UPDATE changed the row."""
    marks = ",".join("?" * len(from_statuses))
    cur = con.execute(
        f"update messages set status = 'sending', claimed_by = ?, claimed_at = ?, updated_at = ? "
        f"where message_id = ? and status in ({marks})",
        (token, claim_time(), claim_time(), message_id, *from_statuses),
    )
    return cur.rowcount == 1


def release_stale_claims(
    con: sqlite3.Connection, now: datetime, minutes: float = CLAIM_STALE_MINUTES
) -> list[Delivery]:
    """Messages stuck in `sending` for longer than `minutes` (their sender died mid-send) become `failed` with a
    reason saying the provider may have them: never resent silently, a person checks and uses Retry."""
    cutoff = (now.astimezone(UTC) - timedelta(minutes=minutes)).isoformat(timespec="seconds")
    stuck = con.execute(
        "select message_id, task_id, claimed_by, claimed_at from messages "
        "where status = 'sending' and (claimed_at is null or claimed_at < ?) order by message_id",
        (cutoff,),
    ).fetchall()
    out = []
    for mid, task_id, who, at in stuck:
        reason = STALE_REASON.format(who=who or "unknown", at=at or "?")
        cur = con.execute(
            "update messages set status = 'failed', reason = ?, updated_at = ? "
            "where message_id = ? and status = 'sending' and claimed_by is ?",
            (reason, claim_time(), mid, who),
        )
        if cur.rowcount == 1:
            out.append(Delivery(mid, task_id, "failed", reason))
    return out


@dataclass(frozen=True)
class Delivery:
    """What happened to one logged message: status sent | failed | skipped | queued, or `sending` when another
    deliverer holds it (nothing was sent by this call), and why (never a body)."""

    message_id: int
    task_id: str | None
    status: str
    reason: str


def _connect(app_db: Path) -> sqlite3.Connection:
    """A short-lived connection to app.sqlite (already in WAL mode: the app created it) that waits for writers."""
    con = sqlite3.connect(str(app_db), timeout=10.0, isolation_level=None)
    con.execute("pragma busy_timeout = 10000")
    return con


def claim_time() -> str:
    """Now in UTC to the second: updated_at and claimed_at (compared as text to find stale claims)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


OPT_IN_SOURCE = "reply:START"  # the patient texted START (or UNSTOP): an explicit opt-in


def _when(text: str | None) -> datetime | None:
    """A stored consent time as an aware datetime (a naive one is the server's clock); None when absent."""
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.astimezone()


def consent_decision(rows: Iterable[Sequence[Any]]) -> tuple[str, str] | None:
    """(status, source) of one patient's consent for a channel from its rows (status, source, consented_at,
    recorded_at), oldest first; None = no record.

    The rule: a revocation (a STOP reply, the provider's opt-out list, a `no`) always takes effect. A later grant
    lifts it only when it is newer by its own date: an opt-in reply (START), or a grant whose consent date (as
    its source records it: `consented_at`) is after the revocation's (its own consent date, else when it was
    recorded). A grant without its own date (a routine re-import of the EMR's consent export) or with an older
    one is kept in the log but does not undo an opt-out. Without a revocation in force, the latest grant wins."""
    current: tuple[str, str] | None = None
    revoked_at: datetime | None = None
    for status, source, consented_at, recorded_at in rows:
        if status == "revoked":
            current, revoked_at = (status, source), _when(consented_at) or _when(recorded_at)
            continue
        if current is not None and current[0] == "revoked":
            own = _when(consented_at)
            newer = own is not None and (revoked_at is None or own > revoked_at)
            if source != OPT_IN_SOURCE and not newer:
                continue  # an older or undated grant: the opt-out stands
        current, revoked_at = (status, source), None
    return current


def latest_consent(con: sqlite3.Connection, patient_id: str | None, channel: str) -> tuple[str, str] | None:
    """(status, source) of the patient's consent for the channel (or 'any') by consent_decision's rule; None = no
    record."""
    if patient_id is None:
        return None
    rows = con.execute(
        "select status, source, consented_at, recorded_at from contact_consent "
        "where patient_id = ? and channel in (?, 'any') order by id",
        (str(patient_id), channel),
    ).fetchall()
    return consent_decision(rows)


def appointment_passed(appointment_at: str | None, now: datetime) -> bool:
    """Whether the appointment a message reminds of (messages.appointment_at) has begun by `now`."""
    at = _when(appointment_at)
    return at is not None and at <= (now if now.tzinfo else now.astimezone())


def deliver_message(
    app_db: Path,
    message_id: int,
    channel: Channel,
    retries: int,
    actor: str,
    role: str = "",
    retry_wait_s: float = 0.3,
    claimed: str | None = None,
    from_statuses: Sequence[str] = ("queued",),
) -> Delivery:
    """Send one logged message with retries (back-off doubling from `retry_wait_s`); mark it `sent` and write it
    back to its task as a `log_outreach` action (with its audit entry) in one transaction, or mark it `failed`
    with the reason. A message is never marked sent before the provider accepted it. The write-back is history
    on a task closed while the message waited for the end of quiet hours: a done or lost task stays so (the one
    state rule, app/lib/actions.py and marts.work_queue_candidates), so it is written without looking at the task.
    The write-back's actor is `actor` (who sends it now: the person pressing Retry); its payload keeps who asked
    for the message (`requested_by`) and names the task's occurrence when the message row has one (as
    actions.record does), so a task that comes back does not inherit this message.

    Only failures known to come before the provider could have the message are retried here
    (OutboundError.retryable); one after it was handed over (`maybe_sent`) or any unexpected error of the channel
    fails this message alone, with a reason saying the provider may have it: never re-sent by itself.

    The message is claimed first (from `from_statuses`, or already claimed by the token `claimed`): when another
    deliverer holds it, nothing is sent and the result has status `sending`, so it goes out once."""
    con = _connect(app_db)
    try:
        if claimed is None:
            token = claim_token(actor)
            if not claim(con, message_id, token, from_statuses):
                return _busy(con, message_id)
        else:  # claimed with its batch when logged: the batch's claims are renewed as each send starts (a
            # heartbeat), so a slow batch is never taken for a dead sender and released mid-way (the message in
            # flight then texted twice by a Retry, the untried ones failed as "interrupted")
            token = claimed
            stamp = claim_time()
            con.execute(
                "update messages set claimed_at = ? where status = 'sending' and claimed_by = ?", (stamp, token)
            )
            mine = con.execute(
                "select 1 from messages where message_id = ? and status = 'sending' and claimed_by = ?",
                (message_id, token),
            ).fetchone()
            if mine is None:
                return _busy(con, message_id)
        task_id, to_addr, subject, body, attempts, template, sender, occurrence = con.execute(
            "select task_id, to_addr, subject, body, attempts, template, actor, occurrence from messages "
            "where message_id = ?",
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
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the batch
                error = OutboundError(
                    f"could not send this message ({type(exc).__name__}: an unexpected error): {MAYBE_SENT}.",
                    maybe_sent=True,
                )
            if not error.retryable or attempt == retries:
                break
            time.sleep(retry_wait_s * 2**attempt)
        now = claim_time()
        if error is not None:
            con.execute(  # only while the claim is still this sender's: never over a newer claim
                "update messages set status = 'failed', reason = ?, attempts = ?, updated_at = ? "
                "where message_id = ? and claimed_by = ?",
                (str(error), attempts, now, message_id, token),
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
                    "requested_by": sender,
                }
                if occurrence:
                    payload["occurrence"] = occurrence
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


def _busy(con: sqlite3.Connection, message_id: int) -> Delivery:
    """The result for a message this caller did not get to send (another deliverer has it, or it is done)."""
    row = con.execute("select task_id, status from messages where message_id = ?", (message_id,)).fetchone()
    task_id, status = row if row is not None else (None, "missing")
    return Delivery(message_id, task_id, "sending", f"not sent here: the message is {status} elsewhere")


def deliver_due(
    app_db: Path,
    channels: dict[str, Channel],
    now: datetime,
    retries: int,
    role: str = "",
    retry_wait_s: float = 0.3,
) -> list[Delivery]:
    """Deliver the queued messages whose `not_before` (the end of quiet hours in their clinic's time zone, fixed
    when they were queued) has passed; a patient who opted out or lost consent meanwhile is skipped, and so is a
    reminder whose appointment has begun by `now` (APPOINTMENT_PASSED).

    Safe to run from several places at once (pages, `ptpulse serve`): each message is claimed before it is sent,
    so it goes out once, and only what this call did is returned (a message another deliverer sent is not).
    Messages stuck in `sending` (release_stale_claims) come back as `failed`. [] when app.sqlite or its message
    log does not exist yet. Messages for an unconfigured channel stay queued."""
    if not app_db.exists():
        return []
    now = now if now.tzinfo else now.astimezone()
    con = _connect(app_db)
    try:
        has_log = con.execute("select 1 from sqlite_master where type = 'table' and name = 'messages'").fetchone()
        if not has_log:
            return []
        ensure_message_log(con)
        out: list[Delivery] = release_stale_claims(con, datetime.now(UTC))
        rows = con.execute(
            "select message_id, channel, not_before, actor, patient_id, task_id, appointment_at from messages "
            "where status = 'queued' order by message_id"
        ).fetchall()
        for mid, ch, not_before, actor, pid, task_id, appointment_at in rows:
            due_at = None if not_before is None else datetime.fromisoformat(not_before)
            if due_at is not None and due_at.tzinfo is None:
                due_at = due_at.astimezone()
            if (due_at is not None and due_at > now) or ch not in channels:
                continue
            consent = latest_consent(con, pid, ch)
            reason = None
            if consent is None or consent[0] != "granted":  # a STOP while it waited for the morning wins
                reason = "opted out while queued for quiet hours" if consent else f"no {ch} consent on file"
            elif appointment_passed(appointment_at, now):  # quiet hours ended after the appointment began
                reason = APPOINTMENT_PASSED
            if reason is not None:
                cur = con.execute(
                    "update messages set status = 'skipped', reason = ?, updated_at = ? "
                    "where message_id = ? and status = 'queued'",
                    (reason, claim_time(), mid),
                )
                if cur.rowcount == 1:
                    out.append(Delivery(mid, task_id, "skipped", reason))
                continue
            done = deliver_message(app_db, mid, channels[ch], retries, actor, role, retry_wait_s)
            if done.status != "sending":
                out.append(done)
        return out
    finally:
        con.close()


OUTREACH_FILE = APP_DIR / "templates" / "outreach.yml"  # the app's templates and policy (app/lib/outreach.py)
DEFAULT_RETRIES = 2


def policy_retries(path: Path | None = None) -> int:
    """`policy.retries` of outreach.yml (extra attempts after a temporary failure), the value the pages use, for
    `ptpulse serve` (which may not import the app); DEFAULT_RETRIES when the file or the key is absent.

    Raises OutboundError naming the file when it cannot be read or the value is not a whole number >= 0."""
    path = OUTREACH_FILE if path is None else path
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise OutboundError(f"{path} cannot be read as YAML: fix it (the app refuses it too).") from None
    policy = (data or {}).get("policy") if isinstance(data, dict) else None
    return retries_setting(policy, path)


def retries_setting(policy: Any, path: Path) -> int:
    """`retries` of outreach.yml's parsed `policy` mapping (DEFAULT_RETRIES when absent): the one reading of it,
    for the pages (app/lib/outreach.load) and `ptpulse serve` (policy_retries).

    Raises OutboundError naming the file when the value is not a whole number >= 0."""
    value = policy.get("retries", DEFAULT_RETRIES) if isinstance(policy, dict) else DEFAULT_RETRIES
    try:
        retries = int(value)
    except (TypeError, ValueError):
        retries = -1
    if retries < 0 or isinstance(value, bool):
        raise OutboundError(f"{path}: policy.retries must be a whole number (0 or more); fix it.")
    return retries
