"""Shared fixtures: one generated small practice, ingested and built once per test session.

Every layer's tests reuse the same real artifacts (real CSVs, a real raw.duckdb, a real dbt build), so the
suite stays fast without mocking any of our own storage. Tests that change state copy the home first
(`copy_home`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ptpulse.core.config import Settings, get_settings

SMALL_SEED = 42


@pytest.fixture(scope="session")
def small_practice(tmp_path_factory) -> Path:
    """The small synthetic practice (1 clinic x 2 years) with default dirt."""
    from seed_data.generator import generate

    out = tmp_path_factory.mktemp("small_practice")
    generate(out, scale="small", seed=SMALL_SEED)
    return out


@pytest.fixture(scope="session")
def ingested_home(tmp_path_factory, small_practice) -> Settings:
    """A PTPULSE_HOME whose raw.duckdb holds the small practice."""
    from ingestion.loader import ingest

    settings = get_settings(tmp_path_factory.mktemp("home_ingested")).ensure()
    ingest([small_practice], settings)
    return settings


@pytest.fixture(scope="session")
def built_home(tmp_path_factory, ingested_home) -> Settings:
    """A PTPULSE_HOME with raw + a served analytics.duckdb (dbt build and ML scores). Treat as read-only."""
    from ptpulse.refresh import run_build

    home = tmp_path_factory.mktemp("home_built")
    shutil.copy2(ingested_home.raw_db, home / "raw.duckdb")
    settings = get_settings(home).ensure()
    result = run_build(settings)
    assert result.ok, result.message
    return settings


@pytest.fixture
def copy_home(tmp_path):
    """Copy a session home so a test may write to it."""

    def _copy(settings: Settings) -> Settings:
        target = tmp_path / "home"
        shutil.copytree(settings.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
        return get_settings(target)

    return _copy


@pytest.fixture(scope="session")
def chromium():
    """One Playwright driver and one Debian chromium (never `playwright install`) for every browser test of the
    session, wherever it lives: Playwright's sync API cannot start a second driver while one runs. Each test
    opens its own context or page, so tests never share cookies or state."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "e2e"))
    from e2e_helpers import CHROMIUM, launch

    if not CHROMIUM.exists():
        pytest.skip("needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the local servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the local SMTP server received: one parsed email per message."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        from email import message_from_bytes

        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def local_smtp():
    """(inbox, port) of a real SMTP server (aiosmtpd) on 127.0.0.1, no TLS, no login: alerts, reminders and
    digests are all received by it."""
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()
