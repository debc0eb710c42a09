"""Fixtures for the service tests: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, and
an environment where alerts go to it and no secrets.toml of the machine is read; a server clock in Chicago's zone
(the schedule's daylight-saving tests)."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def smtp_inbox(local_smtp, monkeypatch, tmp_path):
    """The real local SMTP server (tests/conftest.py); PTPULSE_SMTP_* point the service at it."""
    inbox, port = local_smtp
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
    monkeypatch.setenv("PTPULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PTPULSE_SMTP_PORT", str(port))
    monkeypatch.setenv("PTPULSE_SMTP_SECURITY", "none")
    monkeypatch.setenv("PTPULSE_SMTP_FROM", "ptpulse@test.local")
    monkeypatch.setenv("PTPULSE_ALERT_TO", "admin@practice.test")
    return inbox


@pytest.fixture
def no_secrets(monkeypatch, tmp_path):
    """No SMTP or [auth] settings from the machine: a missing secrets file and no PTPULSE_SMTP_* variables."""
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "no-secrets.toml"))
    for name in ("HOST", "PORT", "SECURITY", "USER", "PASSWORD", "FROM"):
        monkeypatch.delenv(f"PTPULSE_SMTP_{name}", raising=False)
    monkeypatch.delenv("PTPULSE_ALERT_TO", raising=False)


@pytest.fixture
def chicago(monkeypatch):
    """The server in America/Chicago (TZ and the C library's zone), restored after the test."""
    monkeypatch.setenv("TZ", "America/Chicago")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
