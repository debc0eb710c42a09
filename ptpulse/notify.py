"""Alerts to the practice's administrator: one email per failed load or build, sent with smtplib.

Why a module of its own: `ptpulse serve` (and anything else that must page a human) composes an `Alert` of
file / problem / fix lines and hands it here. The SMTP client and where its server and password come from
live in ptpulse.core.outbound (shared with the app's reminders), never written to the repo, a log or a message.

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

Alert bodies hold neutral file labels (the export folder and a file number, never a data file's name: exporters
such as Synthea name per-patient files `<Given>_<Family>_<uuid>.json`), rule names, counts and the loader's /
build's messages, which by contract never quote a value from a file (docs/interfaces.md) and are scrubbed of the
file's name (`scrub_file_names`) before they get here: no PHI leaves the machine in an alert.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

# The one SMTP client and the secrets reading live in ptpulse.core.outbound (the app sends through it too).
from ptpulse.core.outbound import (  # noqa: F401 - re-exported: callers and tests import them from here
    SECURITY,
    OutboundError,
    SmtpSettings,
    read_secrets,
    secrets_files,
    send_email,
    smtp_settings,
    streamlit_secrets_files,
)

# file names out of alerts: the same patterns as the Data health page's (ptpulse.core.redact)
from ptpulse.core.redact import FILE_WORD, PATH_WORD, scrub_file_names  # noqa: F401 - re-exported

NotifyError = OutboundError  # an alert could not be sent (names the server and failure kind, never a secret)


def auth_configured(secrets: dict | None = None) -> bool:
    """True when st.login has an `[auth]` table to sign users in with (else the app runs in demo mode).

    Reads only the files Streamlit reads, never $PTPULSE_SECRETS_FILE: the app must really sign users in."""
    secrets = read_secrets(streamlit_secrets_files()) if secrets is None else secrets
    return isinstance(secrets.get("auth"), dict) and bool(secrets["auth"])


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
