"""Messages that reach patients: templates, consent, quiet hours, frequency cap, the message log, write-back.

Why one module: every send, whether one task's reminder or tomorrow's high-risk list, goes through `plan`
(who may be messaged now, and why not) and `send` (log, deliver, retry, write back), so the rules cannot be
skipped by one page. Pure of Streamlit; the channels are ptpulse.core.outbound's (SMTP, Twilio-shaped SMS).

State lives in app.sqlite beside the work-queue actions (interfaces.md section 4):
    messages(message_id PK, batch_id, task_id, patient_id, channel, template, to_addr, subject, body, status
             queued|sending|sent|failed|skipped, reason, attempts, not_before, provider_id, action_id, actor,
             created_at, updated_at, claimed_by, claimed_at, appointment_at, occurrence, clinic_zone)
             -- its DDL (and its migration) is ptpulse.core.outbound's (serve sends too)
    contact_consent(id PK, patient_id, channel sms|email|any, status granted|revoked, source, recorded_by,
                    recorded_at, consented_at)  -- append-only; outbound.consent_decision folds it: an opt-out
                    stands until a grant newer by its own consent date (or a START reply)
A sent message is written back as a `log_outreach` action (method sms/email, outcome left_message, the task's
occurrence), so the queue shows it at once and the next build counts it. A message is `sent` only after the
provider accepted it; a failure stays `failed` (with the reason) until a retry succeeds. Every delivery first
claims its row (`sending`), so a page render, a second page and `ptpulse serve` delivering at once send each
message once. A reminder is never sent for an appointment that has begun (planned, queued or retried).
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from functools import cache
from pathlib import Path
from string import Formatter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml

from app.lib import actions
from ptpulse.core import outbound
from ptpulse.core.outbound import Channel
from ptpulse.core.zones import server_zone

TEMPLATES_FILE = Path(__file__).resolve().parents[1] / "templates" / "outreach.yml"
STATUSES = outbound.MESSAGE_STATUSES  # queued, sending, sent, failed, skipped
CHANNELS = ("sms", "email")
SMS_FIELDS = frozenset({"first_name", "clinic_name", "appointment_time"})  # minimum PHI in an SMS body
EMAIL_FIELDS = SMS_FIELDS | {"last_name", "therapist_name"}
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP"})  # the carriers' opt-in words (an explicit opt-in after a STOP)

SCHEMA = """
create table if not exists contact_consent (
    id          integer primary key autoincrement,
    patient_id  text not null,
    channel     text not null check (channel in ('sms', 'email', 'any')),
    status      text not null check (status in ('granted', 'revoked')),
    source      text not null,
    recorded_by text not null,
    recorded_at text not null,
    consented_at text
);
create index if not exists consent_patient on contact_consent(patient_id, id);
"""


class OutreachError(ValueError):
    """A template, policy or consent file that cannot be used as given (says which file and what to fix)."""


@dataclass(frozen=True)
class Template:
    key: str
    label: str
    needs: str  # appointment | referral | any
    sms: str
    email_subject: str
    email_body: str


@dataclass(frozen=True)
class Policy:
    quiet_start: dtime
    quiet_end: dtime
    cap_messages: int
    cap_hours: float
    retries: int
    retry_wait_s: float = 0.3


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


def _clock(text: Any, where: str) -> dtime:
    try:
        return dtime.fromisoformat(str(text))
    except ValueError:
        raise OutreachError(f"{TEMPLATES_FILE}: {where} must be a time like 20:00; fix it.") from None


@cache
def load(path: Path = TEMPLATES_FILE) -> tuple[dict[str, Template], Policy]:
    """Templates and policy from the YAML file; refuses an SMS template that merges more than minimum PHI."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    pol = data.get("policy") or {}
    try:
        retries = outbound.retries_setting(pol, path)
    except outbound.OutboundError as exc:
        raise OutreachError(str(exc)) from None
    quiet = pol.get("quiet_hours") or {}
    cap = pol.get("frequency_cap") or {}
    policy = Policy(
        quiet_start=_clock(quiet.get("start", "20:00"), "policy.quiet_hours.start"),
        quiet_end=_clock(quiet.get("end", "08:00"), "policy.quiet_hours.end"),
        cap_messages=int(cap.get("messages", 1)),
        cap_hours=float(cap.get("hours", 24)),
        retries=retries,
    )
    templates: dict[str, Template] = {}
    for key, t in (data.get("templates") or {}).items():
        tpl = Template(
            key=key,
            label=str(t.get("label") or key),
            needs=str(t.get("needs") or "any"),
            sms=str(t.get("sms") or "").strip(),
            email_subject=str(t.get("email_subject") or "").strip(),
            email_body=str(t.get("email_body") or "").strip(),
        )
        extra = _fields(tpl.sms) - SMS_FIELDS
        if extra:
            raise OutreachError(
                f"{path}: template {key} merges {', '.join(sorted(extra))} into an SMS; SMS bodies may use only "
                f"{', '.join(sorted(SMS_FIELDS))} (minimum PHI). Remove the field or move it to the email."
            )
        extra = (_fields(tpl.email_subject) | _fields(tpl.email_body)) - EMAIL_FIELDS
        if extra:
            raise OutreachError(
                f"{path}: template {key} uses unknown merge fields {', '.join(sorted(extra))}; "
                f"use {', '.join(sorted(EMAIL_FIELDS))}."
            )
        templates[key] = tpl
    if not templates:
        raise OutreachError(f"{path} defines no templates: add one under `templates:`.")
    return templates, policy


# ---------------------------------------------------------------------------------------------- storage


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    """actions.connect (WAL, busy timeout, the actions schema) plus the outreach tables, older ones migrated
    (outbound.ensure_message_log adds the columns an older app.sqlite lacks)."""
    with actions.connect(path) as con:
        con.executescript(SCHEMA)
        outbound.ensure_message_log(con)
        yield con


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def _iso_or_none(dt: Any) -> str | None:
    """_iso of a plan's time column; None for a row without one (None, or NaT once pandas made it a column)."""
    return None if dt is None or pd.isna(dt) else _iso(dt)


def _aware(dt: datetime) -> datetime:
    """Naive datetimes are the server's local time (as the pages use them)."""
    return dt if dt.tzinfo else dt.astimezone()


# ---------------------------------------------------------------------------------------------- consent


def record_consent(
    app_db: Path, patient_id: str, channel: str, granted: bool, source: str, actor: str, at: datetime | None = None
) -> None:
    """Append one consent decision (granted or revoked) for a patient and channel (sms, email or any), made at
    `at` (default now): its own date, so a grant recorded this way after an opt-out lifts it (consent_decision)."""
    if channel not in (*CHANNELS, "any"):
        raise OutreachError(f"consent channel must be sms, email or any (got {channel!r}).")
    when = _iso(_aware(at or datetime.now()))
    with _db(app_db) as con:
        con.execute(
            "insert into contact_consent(patient_id, channel, status, source, recorded_by, recorded_at, "
            "consented_at) values (?, ?, ?, ?, ?, ?, ?)",
            (str(patient_id), channel, "granted" if granted else "revoked", source, actor, when, when),
        )


def record_reply(app_db: Path, patient_id: str, text: str, channel: str = "sms") -> bool:
    """A patient's reply: STOP (and the carriers' other opt-out words) revokes consent for that channel; START
    (or UNSTOP) grants it again (an explicit opt-in, which lifts an earlier STOP).

    Returns True when the reply was an opt-out. The reply text itself is not stored. No inbound endpoint calls
    this yet: STOP replies reach PT Pulse through the provider's opt-out list (import_consent)."""
    word = str(text).strip().upper()
    if word in START_WORDS:
        record_consent(app_db, patient_id, channel, True, outbound.OPT_IN_SOURCE, "patient")
        return False
    if word not in STOP_WORDS:
        return False
    record_consent(app_db, patient_id, channel, False, "reply:STOP", "patient")
    return True


CONSENT_COLUMNS = ("patient_id", "channel", "consent")
CONSENT_DATE_COLUMN = "consent_date"  # optional: the decision's own date as the source records it
_YES = {"yes", "y", "true", "1", "granted", "opt_in", "opt-in"}
_NO = {"no", "n", "false", "0", "revoked", "opt_out", "opt-out", "stop"}
OUT_OF_SCOPE = "the patient was not seen at your clinics"


@dataclass(frozen=True)
class ConsentImport:
    """What an import did: rows imported, and the file's lines refused (patients outside the importer's clinics)."""

    imported: int
    refused_lines: tuple[int, ...] = ()

    def message(self) -> str:
        text = f"Imported {self.imported:,} consent entries."
        if self.refused_lines:
            lines = ", ".join(map(str, self.refused_lines[:20])) + (" …" if len(self.refused_lines) > 20 else "")
            text += f" Refused {len(self.refused_lines):,} line(s) ({lines}): {OUT_OF_SCOPE}."
        return text


def import_consent(
    app_db: Path,
    data: bytes | str,
    source: str,
    actor: str,
    in_scope: Callable[[list[str]], set[str] | None] | None = None,
) -> ConsentImport:
    """Import a consent CSV (patient_id, channel sms|email|any, consent yes|no, optional consent_date; the EMR's
    consent export or the SMS provider's opt-out list). Refuses the whole file naming the line and column.

    `consent_date` (a date or date-time, e.g. 2026-03-10) is the decision's own date as the source records it: a
    `yes` lifts an earlier opt-out only when this date is after it (outbound.consent_decision); a `yes` without
    one (a routine re-import of the EMR's export) never undoes a STOP. `in_scope`: for an importer limited to some
    clinics, returns which of the file's patients they may manage (None = all); the other rows are refused."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CONSENT_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise OutreachError(
            f"{source}: missing column(s) {', '.join(missing)}; the file needs a header "
            "patient_id,channel,consent (channel sms, email or any; consent yes or no; optionally consent_date)."
        )
    rows = []
    for line, row in enumerate(reader, start=2):
        pid, channel = (row["patient_id"] or "").strip(), (row["channel"] or "").strip().lower()
        consent = (row["consent"] or "").strip().lower()
        if not pid:
            raise OutreachError(f"{source} line {line}: column patient_id is empty; fill it or drop the line.")
        if channel not in (*CHANNELS, "any"):
            raise OutreachError(f"{source} line {line}: column channel must be sms, email or any.")
        if consent not in _YES | _NO:
            raise OutreachError(f"{source} line {line}: column consent must be yes or no.")
        when = (row.get(CONSENT_DATE_COLUMN) or "").strip()
        if when:
            try:
                when = _iso(_aware(datetime.fromisoformat(when)))
            except ValueError:
                raise OutreachError(
                    f"{source} line {line}: column {CONSENT_DATE_COLUMN} must be a date like 2026-03-10 "
                    "(or a date and time), or empty."
                ) from None
        rows.append((line, pid, channel, "granted" if consent in _YES else "revoked", when or None))
    allowed = in_scope(sorted({r[1] for r in rows})) if in_scope is not None and rows else None
    refused = tuple(r[0] for r in rows if allowed is not None and r[1] not in allowed)
    kept = [r for r in rows if allowed is None or r[1] in allowed]
    at = _iso(datetime.now().astimezone())
    with _db(app_db) as con:
        con.execute("begin immediate")
        con.executemany(
            "insert into contact_consent(patient_id, channel, status, source, recorded_by, recorded_at, "
            "consented_at) values (?, ?, ?, ?, ?, ?, ?)",
            [(p, c, s, source, actor, at, w) for _, p, c, s, w in kept],
        )
        con.execute("commit")
    return ConsentImport(len(kept), refused)


def consent_status(app_db: Path, patient_ids: Iterable[str], channel: str) -> dict[str, tuple[str, str]]:
    """(status, source) of each patient's consent for the channel (or 'any') by outbound.consent_decision's rule
    (an opt-out stands until a grant newer by its own date); absent = no record."""
    ids = list(dict.fromkeys(str(p) for p in patient_ids))
    if not ids:
        return {}
    with _db(app_db) as con:
        con.execute("create temp table if not exists wanted_p(patient_id text primary key)")
        con.execute("delete from wanted_p")
        con.executemany("insert or ignore into wanted_p values (?)", [(p,) for p in ids])
        rows = con.execute(
            "select c.patient_id, c.status, c.source, c.consented_at, c.recorded_at from contact_consent c "
            "join wanted_p using (patient_id) where c.channel in (?, 'any') order by c.id",
            (channel,),
        ).fetchall()
    by_patient: dict[str, list[tuple]] = {}
    for pid, *rest in rows:
        by_patient.setdefault(pid, []).append(tuple(rest))
    out = {pid: outbound.consent_decision(r) for pid, r in by_patient.items()}
    return {pid: d for pid, d in out.items() if d is not None}


# ---------------------------------------------------------------------------------------------- planning


def in_quiet_hours(now: datetime, policy: Policy) -> datetime | None:
    """When the quiet hours around `now` end (the time to send), or None when `now` is not in them."""
    t, start, end = now.timetz().replace(tzinfo=None), policy.quiet_start, policy.quiet_end
    if start == end:
        return None
    quiet = (start <= t or t < end) if start > end else (start <= t < end)
    if not quiet:
        return None
    day = now.date() if t < end else now.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=now.tzinfo)


def clinic_zone(name: Any) -> ZoneInfo | None:
    """The clinic's IANA time zone (dim_clinics.timezone), or None when absent or unknown (the server's is used)."""
    if name is None or (not isinstance(name, str) and pd.isna(name)) or not str(name).strip():
        return None
    try:
        return ZoneInfo(str(name).strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None


DEFAULT_ZONE_ENV = "PTPULSE_DEFAULT_TIMEZONE"  # the practice's zone, as the FHIR import uses it


def default_zone() -> ZoneInfo | None:
    """The practice's zone for a clinic the clinics export gives none: $PTPULSE_DEFAULT_TIMEZONE (IANA name)."""
    return clinic_zone(os.environ.get(DEFAULT_ZONE_ENV, ""))


def _zone_without_clinic_zone(now: datetime) -> ZoneInfo | None:
    """The zone for a clinic without one: the practice default, else the server's named zone when `now` is the
    server's clock (same offset at that instant), else None (now's own offset is used as given).

    Why a named zone: the pages pass `datetime.now().astimezone()`, which carries today's fixed offset only, so
    "08:00 tomorrow" on the night the clocks change would come out an hour off (07:00 after clocks go back)."""
    zone = default_zone()
    if zone is not None or isinstance(now.tzinfo, ZoneInfo):
        return zone
    local = server_zone(now.timestamp())
    return local if local is not None and local.utcoffset(now.replace(tzinfo=None)) == now.utcoffset() else None


def _quiet_until(now: datetime, zone_name: Any, policy: Policy, cache: dict[str, datetime | None]) -> datetime | None:
    """in_quiet_hours at the clinic's wall clock: 21:00 in New York is quiet even when the server says 18:00.
    A clinic without a zone uses the practice default or the server's named zone (_zone_without_clinic_zone)."""
    key = "" if zone_name is None or (not isinstance(zone_name, str) and pd.isna(zone_name)) else str(zone_name)
    if key not in cache:
        zone = clinic_zone(key) or _zone_without_clinic_zone(now)
        cache[key] = in_quiet_hours(now.astimezone(zone) if zone is not None else now, policy)
    return cache[key]


def _cap_reason(policy: Policy) -> str:
    return f"frequency cap: already messaged {policy.cap_messages}× within {policy.cap_hours:g} h"


def _quiet_decision(
    appt_at: datetime | None, now: datetime, zone_name: Any, policy: Policy, cache: dict[str, datetime | None]
) -> tuple[str, str, datetime | None]:
    """(decision, reason, not_before) of a message otherwise allowed: `send` now; `queue` until quiet hours end at
    the clinic; `skip` when its appointment is before they end (a reminder after the visit). One rule for a send's
    plan and for Retry."""
    until = _quiet_until(now, zone_name, policy, cache)
    if until is None:
        return "send", "", None
    if appt_at is not None and appt_at <= until:
        return "skip", f"appointment is before quiet hours end ({until:%H:%M} clinic time)", None
    return "queue", f"quiet hours: sends at {until:%H:%M} clinic time", until


def _recent_counts(app_db: Path, patient_ids: list[str], since: datetime) -> dict[str, int]:
    """Messages sent, being sent or waiting to be sent per patient since `since` (the frequency cap counts all)."""
    if not patient_ids:
        return {}
    with _db(app_db) as con:
        return _recent_counts_in(con, patient_ids, since)


def _recent_counts_in(con: sqlite3.Connection, patient_ids: list[str], since: datetime) -> dict[str, int]:
    """_recent_counts on an open connection: `send` counts again inside its write transaction."""
    if not patient_ids:
        return {}
    rows = con.execute(
        "select patient_id, created_at from messages where status in ('sent', 'sending', 'queued') "
        f"and patient_id in ({','.join('?' * len(patient_ids))})",
        patient_ids,
    ).fetchall()
    out: dict[str, int] = {}
    for pid, created in rows:
        if datetime.fromisoformat(created) >= since:
            out[pid] = out.get(pid, 0) + 1
    return out


def e164(phone: Any, country_code: str = "1") -> str | None:
    """A phone number as the SMS provider wants it (+15551234567): US/NANP 10 digits get +1; None if not a number."""
    text = "" if phone is None or (not isinstance(phone, str) and pd.isna(phone)) else str(phone).strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") and 8 <= len(digits) <= 15:
        return "+" + digits
    if len(digits) == 10:
        return f"+{country_code}{digits}"
    if len(digits) == 11 and digits.startswith(country_code):
        return "+" + digits
    return None


def _time_text(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    ts = pd.Timestamp(value)
    return f"{ts:%a %b} {ts.day} at {ts:%H:%M}"


def render(template: Template, channel: str, row: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) of one message: the template's merge fields filled from the recipient's row."""

    def val(k: str) -> str:
        v = row.get(k)
        if k == "appointment_time":
            return _time_text(v)
        return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    if channel == "sms":
        return "", " ".join(template.sms.format_map({k: val(k) for k in SMS_FIELDS}).split())
    fields = {k: val(k) for k in EMAIL_FIELDS}
    return template.email_subject.format_map(fields), template.email_body.format_map(fields)


RECIPIENT_COLUMNS = ("task_id", "patient_id", "first_name", "last_name", "phone", "email", "clinic_name")
PLAN_COLUMNS = (
    "task_id",
    "patient_id",
    "first_name",
    "to_addr",
    "subject",
    "body",
    "decision",
    "reason",
    "not_before",
    "appointment_at",
    "occurrence",
    "clinic_zone",
)
_ADDR_PART = r"[^@\s<>(),;:\"\[\]\\\x00-\x1f\x7f]+"
EMAIL_ADDRESS = re.compile(rf"{_ADDR_PART}@{_ADDR_PART}\.{_ADDR_PART}")


def valid_email(addr: Any) -> bool:
    """An address one email header can hold as one recipient: name@domain.tld, no space or line break in it."""
    return bool(EMAIL_ADDRESS.fullmatch(str(addr)))


def _mentions_appointment(template: Template, channel: str) -> bool:
    """Whether this template's message is about an appointment (a reminder, or a text quoting its time)."""
    used = _fields(template.sms) if channel == "sms" else _fields(template.email_subject) | _fields(template.email_body)
    return template.needs == "appointment" or "appointment_time" in used


def _appointment_at(value: Any, zone_name: Any, now: datetime) -> datetime | None:
    """The appointment's instant: its time (the clinic's wall clock, as the marts hold it) in the clinic's zone, or
    the practice default / server's zone (_zone_without_clinic_zone), else now's offset. None when absent."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if pd.isna(ts):
        return None
    at = ts.to_pydatetime()
    if at.tzinfo is not None:
        return at
    zone = clinic_zone(zone_name) or _zone_without_clinic_zone(now)
    return at.replace(tzinfo=zone if zone is not None else now.tzinfo)


def plan(
    app_db: Path,
    recipients: pd.DataFrame,
    template: Template,
    channel: str,
    now: datetime,
    policy: Policy,
) -> pd.DataFrame:
    """Per recipient: the decision (send, queue for after quiet hours, or skip with the reason) and the message.

    Columns: task_id, patient_id, first_name, to_addr, subject, body, decision (send|queue|skip), reason,
    not_before, appointment_at (the instant of the appointment a reminder is for), occurrence (the task's, from
    the recipients' created_at: actions.occurrence_key) and clinic_zone. Nothing is written: this is the preview,
    and `send` re-plans at the moment of sending. A reminder whose appointment has begun by `now`, or would have
    by the end of quiet hours, is skipped."""
    now = _aware(now)
    df = recipients.reset_index(drop=True).copy()
    for c in (*RECIPIENT_COLUMNS, "appointment_time", "therapist_name", "clinic_timezone", "created_at"):
        if c not in df:
            df[c] = None
    about_appointment = _mentions_appointment(template, channel)
    addr_col = "phone" if channel == "sms" else "email"
    consent = consent_status(app_db, df["patient_id"].dropna().astype(str), channel)
    since = now - timedelta(hours=policy.cap_hours)
    recent = _recent_counts(app_db, df["patient_id"].dropna().astype(str).unique().tolist(), since)
    quiet_by_zone: dict[str, datetime | None] = {}
    out = []
    planned: dict[str, int] = {}
    for row in df.to_dict("records"):  # one row per message to write: a bulk list, not an event table
        pid = None if row["patient_id"] is None or pd.isna(row["patient_id"]) else str(row["patient_id"])
        addr = row.get(addr_col)
        addr = None if addr is None or (not isinstance(addr, str) and pd.isna(addr)) or not str(addr).strip() else addr
        if channel == "sms" and addr is not None:
            addr = e164(addr) or ""  # "" = a number that is not one: skipped below with its own reason
        elif addr is not None:
            addr = str(addr).strip()
            addr = addr if valid_email(addr) else ""
        zone_name = row.get("clinic_timezone")
        zone_name = None if zone_name is None or (not isinstance(zone_name, str) and pd.isna(zone_name)) else zone_name
        appt_at = _appointment_at(row.get("appointment_time"), zone_name, now) if about_appointment else None
        subject, body = render(template, channel, row)
        decision, reason, not_before = "send", "", None
        status = consent.get(pid or "")
        if pid is None:
            decision, reason = "skip", "no patient linked to this task"
        elif template.needs == "appointment" and not _time_text(row.get("appointment_time")):
            decision, reason = "skip", "no upcoming appointment to remind of"
        elif appt_at is not None and appt_at <= now:
            decision, reason = "skip", outbound.APPOINTMENT_PASSED
        elif addr is None:
            decision, reason = "skip", f"no {'mobile number' if channel == 'sms' else 'email address'} on file"
        elif addr == "" and channel == "sms":
            decision, reason = "skip", "the phone number on file is not a valid number (correct it in the EMR)"
        elif addr == "":
            decision, reason = "skip", "the email address on file is not a valid email address (correct it in the EMR)"
        elif status is not None and status[0] == "revoked":
            decision = "skip"
            reason = "opted out (replied STOP)" if status[1] == "reply:STOP" else f"opted out of {channel}"
        elif status is None:
            decision, reason = "skip", f"no {channel.upper() if channel == 'sms' else channel} consent on file"
        elif recent.get(pid, 0) + planned.get(pid, 0) >= policy.cap_messages:
            decision, reason = "skip", _cap_reason(policy)
        else:
            decision, reason, not_before = _quiet_decision(appt_at, now, zone_name, policy, quiet_by_zone)
        if decision != "skip" and pid is not None:
            planned[pid] = planned.get(pid, 0) + 1
        out.append(
            {
                "task_id": row.get("task_id"),
                "patient_id": pid,
                "first_name": row.get("first_name"),
                "to_addr": addr,
                "subject": subject,
                "body": body,
                "decision": decision,
                "reason": reason,
                "not_before": not_before,
                "appointment_at": appt_at,
                "occurrence": actions.occurrence_key(str(row.get("task_id") or ""), row.get("created_at")),
                "clinic_zone": zone_name,
            }
        )
    return pd.DataFrame(out, columns=list(PLAN_COLUMNS))


def summary(planned: pd.DataFrame) -> str:
    """'3 to send now · 1 queued for quiet hours · 2 skipped (1 opted out (replied STOP), 1 no SMS consent …)'."""
    n = planned["decision"].value_counts()
    parts = [f"{int(n.get('send', 0))} to send now"]
    if n.get("queue", 0):
        parts.append(f"{int(n['queue'])} queued for after quiet hours")
    skipped = planned[planned["decision"] == "skip"]
    if len(skipped):
        why = skipped["reason"].value_counts()
        parts.append(f"{len(skipped)} skipped (" + ", ".join(f"{int(c)} {r}" for r, c in why.items()) + ")")
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------- sending


Result = outbound.Delivery  # message_id, task_id, status, reason


def _deliver(
    app_db: Path,
    message_id: int,
    channel: Channel,
    policy: Policy,
    actor: str,
    role: str,
    claimed: str | None = None,
    from_statuses: tuple[str, ...] = ("queued",),
) -> Result:
    """Send one logged message with retries; mark it sent (and write back the action) or failed. The delivery
    itself is ptpulse.core.outbound's, shared with `ptpulse serve` (which sends what quiet hours held back): it
    claims the message first, so a message another deliverer holds is not sent again (status `sending`)."""
    return outbound.deliver_message(
        app_db, message_id, channel, policy.retries, actor, role, policy.retry_wait_s, claimed, from_statuses
    )


def send(
    app_db: Path,
    recipients: pd.DataFrame,
    template: Template,
    channel_name: str,
    channels: Mapping[str, Channel],
    actor: str,
    now: datetime,
    policy: Policy,
    role: str = "",
) -> list[Result]:
    """Plan again (consent may have changed since the preview), log every message, deliver the ones due now.

    The frequency cap is counted again inside the write transaction (`begin immediate`: one writer at a time),
    so two people messaging the same patient at the same moment cannot both pass it. Messages due now are
    logged already claimed (`sending`, by this call), so no other deliverer can pick them up and send them too."""
    planned = plan(app_db, recipients, template, channel_name, now, policy)
    channel = channels.get(channel_name)
    batch = uuid.uuid4().hex[:12]
    at = _iso(_aware(now))  # the frequency cap counts from the time the message was asked for
    token = outbound.claim_token(actor)
    since = _aware(now) - timedelta(hours=policy.cap_hours)
    results: list[Result] = []
    due: list[int] = []
    with _db(app_db) as con:
        con.execute("begin immediate")
        pids = sorted({str(p) for p in planned.loc[planned["decision"] != "skip", "patient_id"].dropna()})
        recent = _recent_counts_in(con, pids, since)  # what committed since the plan (another user's send) counts
        taken: dict[str, int] = {}
        for p in planned.to_dict("records"):
            status = {"send": "sending", "queue": "queued", "skip": "skipped"}[p["decision"]]
            reason = p["reason"] or None
            pid = p["patient_id"]
            if status != "skipped" and pid is not None:
                if recent.get(pid, 0) + taken.get(pid, 0) >= policy.cap_messages:
                    status, reason = "skipped", _cap_reason(policy)
                else:
                    taken[pid] = taken.get(pid, 0) + 1
            if status in ("sending", "queued") and channel is None:
                status, reason = (
                    "failed",
                    f'{channel_name} is not configured: add its settings (deployment guide, "Outbound messages")',
                )
            cur = con.execute(
                "insert into messages(batch_id, task_id, patient_id, channel, template, to_addr, subject, body, "
                "status, reason, not_before, actor, created_at, updated_at, claimed_by, claimed_at, appointment_at, "
                "occurrence, clinic_zone) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    batch,
                    p["task_id"],
                    p["patient_id"],
                    channel_name,
                    template.key,
                    p["to_addr"],
                    p["subject"],
                    p["body"],
                    status,
                    reason,
                    _iso_or_none(p["not_before"]),
                    actor,
                    at,
                    at,
                    token if status == "sending" else None,
                    outbound.claim_time() if status == "sending" else None,
                    _iso_or_none(p["appointment_at"]),
                    p["occurrence"],
                    p["clinic_zone"],
                ),
            )
            mid = int(cur.lastrowid)
            if status == "sending":
                due.append(mid)
            else:
                results.append(Result(mid, p["task_id"], status, reason or ""))
        con.execute("commit")
    with _db(app_db):  # held open: the per-message connections then close without a WAL checkpoint each
        for mid in due:
            results.append(_deliver(app_db, mid, channel, policy, actor, role, token))
    return sorted(results, key=lambda r: r.message_id)


def deliver_due(
    app_db: Path, channels: Mapping[str, Channel], now: datetime, policy: Policy, role: str = ""
) -> list[Result]:
    """Send the queued messages whose quiet hours are over (the pages call this on render, `ptpulse serve` on
    its own). Several may run at once: each message is claimed before it is sent, so it goes out once."""
    if not app_db.exists():
        return []
    with _db(app_db):  # the schema exists, and one connection stays open as in send()
        return outbound.deliver_due(app_db, dict(channels), _aware(now), policy.retries, role, policy.retry_wait_s)


def retry(
    app_db: Path,
    message_ids: Iterable[int],
    channels: Mapping[str, Channel],
    policy: Policy,
    role: str = "",
    actor: str = "",
    now: datetime | None = None,
) -> list[Result]:
    """Try failed messages again (the page's Retry button) under the rules of a send, checked at the moment of the
    retry: consent (an opt-out since the failure wins: skipped), the appointment still ahead, the frequency cap
    (counted inside the write transaction, as `send` does: a colleague's message since the failure counts) and
    quiet hours (queued until they end, as `send` queues). A success is written back by `actor` (who pressed
    Retry; the payload keeps who asked for the message); no actor given = the original sender.

    Two people pressing Retry at once send each message once: the claim (failed -> sending) is taken in the same
    write transaction as the checks, for one of them only."""
    now = _aware(now or datetime.now())
    since = now - timedelta(hours=policy.cap_hours)
    out: list[Result] = []
    for mid in message_ids:
        with _db(app_db) as con:
            con.execute("begin immediate")
            try:
                row = con.execute(
                    "select channel, status, actor, patient_id, task_id, appointment_at, clinic_zone from messages "
                    "where message_id = ?",
                    (int(mid),),
                ).fetchone()
                if row is None or row[1] != "failed" or row[0] not in channels:
                    con.execute("rollback")
                    continue
                ch, _, sender, pid, task_id, appointment_at, zone_name = row
                who = actor or sender
                appt_at = _appointment_at(appointment_at, zone_name, now)  # stored with its offset
                consent = outbound.latest_consent(con, pid, ch)
                status, reason, not_before, token = "skipped", "", None, None
                if pid is None:
                    reason = "no patient linked to this task"
                elif consent is None or consent[0] != "granted":
                    reason = f"opted out of {ch} since the failure" if consent else f"no {ch} consent on file"
                elif appt_at is not None and appt_at <= now:
                    reason = outbound.APPOINTMENT_PASSED
                elif _recent_counts_in(con, [pid], since).get(pid, 0) >= policy.cap_messages:
                    reason = _cap_reason(policy)
                else:
                    decision, reason, until = _quiet_decision(appt_at, now, zone_name, policy, {})
                    if decision == "queue":
                        status, not_before = "queued", _iso(until)
                    elif decision == "send":
                        status, reason, token = "sending", None, outbound.claim_token(who)
                con.execute(
                    "update messages set status = ?, reason = ?, not_before = coalesce(?, not_before), "
                    "claimed_by = ?, claimed_at = ?, updated_at = ? where message_id = ? and status = 'failed'",
                    (
                        status,
                        reason,
                        not_before,
                        token,
                        outbound.claim_time() if token else None,
                        outbound.claim_time(),
                        int(mid),
                    ),
                )
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
        if token is None:
            out.append(Result(int(mid), task_id, status, reason or ""))
            continue
        done = _deliver(app_db, int(mid), channels[ch], policy, who, role, token)
        if done.status != "sending":
            out.append(done)
    return out


def messages(app_db: Path, task_ids: Iterable[str] | None = None, limit: int = 200) -> pd.DataFrame:
    """The message log, newest first (optionally of some tasks), for the pages' "Messages" tables."""
    cols = "message_id, created_at, task_id, channel, template, status, reason, attempts, not_before, actor"
    if not app_db.exists():
        return pd.DataFrame(columns=[c.strip() for c in cols.split(",")])
    with _db(app_db) as con:
        if task_ids is None:
            rows = con.execute(f"select {cols} from messages order by message_id desc limit ?", (limit,)).fetchall()
        else:
            ids = list(dict.fromkeys(task_ids))
            q = ",".join("?" * len(ids)) or "null"
            rows = con.execute(
                f"select {cols} from messages where task_id in ({q}) order by message_id desc limit ?", (*ids, limit)
            ).fetchall()
    return pd.DataFrame(rows, columns=[c.strip() for c in cols.split(",")])


def mask(addr: Any) -> str:
    """'•••• 4821' / 'j•••@example.com': enough to check the right contact without showing it whole."""
    s = "" if addr is None else str(addr)
    if "@" in s:
        name, _, domain = s.partition("@")
        return f"{name[:1]}•••@{domain}"
    digits = re.sub(r"\D", "", s)
    return f"•••• {digits[-4:]}" if digits else ""
