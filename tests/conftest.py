"""Shared fixtures: one generated small practice, ingested and built once per test run.

Every layer's tests reuse the same real artifacts (real CSVs, a real raw.duckdb, a real dbt build), so the
suite stays fast without mocking any of our own storage. Tests that change state copy the home first
(`copy_home`). `make test` runs the suite on two pytest-xdist workers: `shared_dir` makes each expensive
artifact once for the whole run (not once per worker); a plain `pytest` run makes it once per session.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ptpulse.core.config import Settings, get_settings

SMALL_SEED = 42


def shared_dir(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """The folder `name`, filled by `make(folder)` once per test run and then read-only.

    Each pytest-xdist worker is its own process with its own session fixtures, so a build would otherwise run
    once per worker: the first worker to ask makes the folder under a file lock in the run's common base temp
    (the pattern pytest-xdist documents) and the others wait for it and reuse it. A worker that failed half-way
    leaves no `.done` mark, so the next one to ask starts the folder again."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # <run>/popen-gwN: the run's folder is the parent
        base = base.parent
    root = base / "shared"
    root.mkdir(parents=True, exist_ok=True)
    target, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            make(target)
            done.touch()
    return target


# The session builds a worker may wait for (shared_dir): a test file whose fixtures need one of these waits while
# another worker builds it.
SHARED_BUILDS = {"built_home", "ingested_home", "tiny_home", "rt_build", "case"}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: --dist loadfile --no-loadscope-reorder), order the test files so that the
    two workers start on different kinds of work: files that need a shared session build alternate with files
    that need none. The first worker then builds the small practice while the second runs self-contained files,
    instead of both waiting on the same lock. Within each kind, files with slow, e2e or spark tests (real builds,
    browsers, Spark) come first, then the larger: a long file left to the end would run alone on one core.
    Serial runs keep the collection order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    needs, free = [], []
    for tests in files.values():
        (needs if any(SHARED_BUILDS & set(t.fixturenames) for t in tests) else free).append(tests)

    def cost(tests: list) -> tuple[bool, int]:
        return any(t.get_closest_marker(m) for t in tests for m in ("slow", "e2e", "spark")), len(tests)

    needs.sort(key=cost, reverse=True)
    free.sort(key=cost, reverse=True)
    ordered = [tests for pair in zip(needs, free, strict=False) for tests in pair]
    ordered += needs[len(free) :] + free[len(needs) :]
    items[:] = [item for tests in ordered for item in tests]


def _generate(scale: str, seed: int, dirty: float | None = None) -> Callable[[Path], object]:
    """make(out) for shared_dir: the generated practice (dirt None = the generator's default)."""

    def make(out: Path) -> None:
        from seed_data.generator import generate

        generate(out, scale=scale, seed=seed, **({} if dirty is None else {"dirty": dirty}))

    return make


@pytest.fixture(scope="session")
def small_practice(tmp_path_factory) -> Path:
    """The small synthetic practice (1 clinic x 2 years) with default dirt."""
    return shared_dir(tmp_path_factory, "small_practice", _generate("small", SMALL_SEED))


@pytest.fixture(scope="session")
def clean_small_practice(tmp_path_factory) -> Path:
    """The small practice at seed 42 without dirt (dirty=0): the generator tests and the round-trip tests."""
    return shared_dir(tmp_path_factory, "small_clean", _generate("small", SMALL_SEED, 0.0))


@pytest.fixture(scope="session")
def ingested_home(tmp_path_factory, small_practice) -> Settings:
    """A PTPULSE_HOME whose raw.duckdb holds the small practice."""

    def make(home: Path) -> None:
        from ingestion.loader import ingest

        ingest([small_practice], get_settings(home).ensure())

    return get_settings(shared_dir(tmp_path_factory, "home_ingested", make)).ensure()


@pytest.fixture(scope="session")
def built_home(tmp_path_factory, ingested_home) -> Settings:
    """A PTPULSE_HOME with raw + a served analytics.duckdb (dbt build and ML scores). Treat as read-only."""

    def make(home: Path) -> None:
        from ptpulse.refresh import run_build

        shutil.copy2(ingested_home.raw_db, home / "raw.duckdb")
        result = run_build(get_settings(home).ensure())
        assert result.ok, result.message

    return get_settings(shared_dir(tmp_path_factory, "home_built", make)).ensure()


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
    from e2e_helpers import CHROMIUM, TIMEOUT_MS, launch

    if not CHROMIUM.exists():
        pytest.skip("needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import expect, sync_playwright

    # every `expect` of every browser test: Playwright's 5 s default failed a sign-in test in CI whose page was
    # still running on a loaded box; an expectation ends as soon as it holds, so a fast box loses nothing
    expect.set_options(timeout=TIMEOUT_MS)
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
