"""Alerts to the practice's administrator: one email per failed load or build, sent with smtplib.

Why a module of its own: `ptpulse serve` (and anything else that must page a human) composes an `Alert` of
file / problem / fix lines and hands it here; where the SMTP server and its password come from is decided
once, below, and never written to the repo, a log line or a message.

Settings come from the environment first, then the `[smtp]` table of the same secrets.toml files Streamlit
reads (`~/.streamlit/`, `./.streamlit/` of the working directory, `app/.streamlit/`), or of
`$PTPULSE_SECRETS_FILE` instead when set:

    PTPULSE_SMTP_HOST / host          server name (no host = alerts are off, and the service says so)
    PTPULSE_SMTP_PORT / port          default 587 with starttls, 465 with ssl, 25 without
    PTPULSE_SMTP_SECURITY / security  starttls (default), ssl, or none (a relay on localhost)
    PTPULSE_SMTP_USER / user          login, optional
    PTPULSE_SMTP_PASSWORD / password  optional; only ever handed to smtplib
    PTPULSE_SMTP_FROM / from          sender address (default ptpulse@<host name>)
    PTPULSE_ALERT_TO / alert_to       comma-separated recipients (the admin)

Alert bodies hold file names, rule names, counts and the loader's / build's messages, which by contract
never quote a value from a file (docs/interfaces.md): no PHI leaves the machine in an alert.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import tomllib
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from ptpulse.core.config import APP_DIR

SECURITY = ("starttls", "ssl", "none")


class NotifyError(RuntimeError):
    """An alert could not be sent; the message names the server and the kind of failure, never a secret."""


def streamlit_secrets_files() -> list[Path]:
    """Where Streamlit itself reads secrets (and st.login its [auth] table), lowest precedence first: the
    user's, the working directory's, then the app script's folder (app/.streamlit/)."""
    name = Path(".streamlit") / "secrets.toml"
    return list(dict.fromkeys([Path.home() / name, Path.cwd() / name, APP_DIR / name]))


def secrets_files() -> list[Path]:
    """Where SMTP settings are read: Streamlit's files, or $PTPULSE_SECRETS_FILE instead of them."""
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
            raise NotifyError(f"{path} is not valid TOML: fix its syntax (the file itself is not shown).") from None
    return merged


def auth_configured(secrets: dict[str, Any] | None = None) -> bool:
    """True when st.login has an `[auth]` table to sign users in with (else the app runs in demo mode).

    Reads only the files Streamlit reads, never $PTPULSE_SECRETS_FILE: the app must really sign users in."""
    secrets = read_secrets(streamlit_secrets_files()) if secrets is None else secrets
    return isinstance(secrets.get("auth"), dict) and bool(secrets["auth"])


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str
    sender: str
    to: tuple[str, ...]
    user: str = ""
    password: str = field(default="", repr=False)  # never in repr, logs or messages
    timeout_s: float = 20.0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def smtp_settings(secrets: dict[str, Any] | None = None) -> SmtpSettings | None:
    """SMTP settings from env, then secrets.toml `[smtp]`; None when no host or no recipient is configured."""
    table = (read_secrets() if secrets is None else secrets).get("smtp") or {}
    if not isinstance(table, dict):
        table = {}

    def get(env: str, key: str, default: str = "") -> str:
        value = os.environ.get(env)
        return str(value if value is not None else table.get(key, default)).strip()

    host = get("PTPULSE_SMTP_HOST", "host")
    recipients = tuple(a.strip() for a in get("PTPULSE_ALERT_TO", "alert_to").split(",") if a.strip())
    if not host or not recipients:
        return None
    security = get("PTPULSE_SMTP_SECURITY", "security", "starttls").lower()
    if security not in SECURITY:
        raise NotifyError(
            f"SMTP security {security!r} is not one of {', '.join(SECURITY)}: fix PTPULSE_SMTP_SECURITY "
            "or `security` in the [smtp] table of secrets.toml."
        )
    default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    port_text = get("PTPULSE_SMTP_PORT", "port", str(default_port))
    if not port_text.isdigit():
        raise NotifyError("SMTP port is not a number: fix PTPULSE_SMTP_PORT or `port` in the [smtp] table.")
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
class Problem:
    """One line of an alert: what (a file, or `dbt build`), what went wrong, and what to do about it."""

    what: str
    problem: str
    fix: str


@dataclass(frozen=True)
class Alert:
    subject: str
    summary: str
    problems: tuple[Problem, ...] = ()

    def body(self) -> str:
        lines = [self.summary, ""]
        for i, p in enumerate(self.problems, 1):
            lines += [f"{i}. {p.what}", f"   problem: {p.problem}", f"   fix: {p.fix}", ""]
        lines.append(f"Sent by PT Pulse on {socket.gethostname()}. `ptpulse health` and `ptpulse status` show more.")
        return "\n".join(lines)


def send_email(settings: SmtpSettings, subject: str, body: str) -> None:
    """Send one plain-text email; raises NotifyError naming the server and the failure kind."""
    msg = EmailMessage()
    msg["From"] = settings.sender
    msg["To"] = ", ".join(settings.to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="ptpulse.local")
    msg.set_content(body)
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
        raise NotifyError(
            f"SMTP server {settings.where} refused the login: check the SMTP user and password "
            "(PTPULSE_SMTP_USER / PTPULSE_SMTP_PASSWORD or the [smtp] table of secrets.toml)."
        ) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(
            f"could not send an alert through SMTP server {settings.where} ({type(exc).__name__}): check the "
            "host, port and security setting, and that the server accepts mail from this machine."
        ) from None


def send_alert(alert: Alert, settings: SmtpSettings | None = None) -> tuple[bool, str]:
    """Email the alert to the admin; returns (sent, a line for the log/status file saying what happened)."""
    try:
        settings = settings or smtp_settings()
    except NotifyError as exc:
        return False, str(exc)
    if settings is None:
        return False, (
            "alert not emailed: no SMTP server configured (set PTPULSE_SMTP_HOST and PTPULSE_ALERT_TO, or an "
            "[smtp] table with host and alert_to in .streamlit/secrets.toml)"
        )
    try:
        send_email(settings, alert.subject, alert.body())
    except NotifyError as exc:
        return False, str(exc)
    return True, f"alert emailed to {len(settings.to)} recipient(s) through {settings.where}"
