"""Fixtures for the service tests: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, and
an environment where alerts go to it and no secrets.toml of the machine is read."""

from __future__ import annotations

import socket
from email import message_from_bytes
from email.message import Message

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the local SMTP server received: one parsed email per message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(monkeypatch, tmp_path):
    """A real SMTP server on 127.0.0.1; PTPULSE_SMTP_* point the service at it (no TLS, no login)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
    monkeypatch.setenv("PTPULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PTPULSE_SMTP_PORT", str(port))
    monkeypatch.setenv("PTPULSE_SMTP_SECURITY", "none")
    monkeypatch.setenv("PTPULSE_SMTP_FROM", "ptpulse@test.local")
    monkeypatch.setenv("PTPULSE_ALERT_TO", "admin@practice.test")
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def no_secrets(monkeypatch, tmp_path):
    """No SMTP or [auth] settings from the machine: a missing secrets file and no PTPULSE_SMTP_* variables."""
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
    for name in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD", "FROM"):
        monkeypatch.delenv(f"PTPULSE_SMTP_{name}", raising=False)
    monkeypatch.delenv("PTPULSE_ALERT_TO", raising=False)
