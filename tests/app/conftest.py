"""App tests import the app package from the repo root (it is not an installed package)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import shutil  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from app.lib import refresh  # noqa: E402
from ptpulse.core.config import get_settings  # noqa: E402


@pytest.fixture(scope="session")
def app_home(built_home, tmp_path_factory):
    """A writable copy of the built home (the app writes app.sqlite and the audit log)."""
    target = tmp_path_factory.mktemp("app_home") / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(target)


@pytest.fixture(scope="session")
def multi_built(tmp_path_factory):
    """The two-clinic practice, built once per run (multi_practice.build_multi; read-only: `writable` copies it)."""
    from multi_practice import build_multi

    return build_multi(tmp_path_factory)


@pytest.fixture
def refreshes(monkeypatch):
    """The refreshes the page starts (recorded, not run: a real one rebuilds the practice)."""
    started = []

    def start(settings, actor, after=None):
        started.append(actor)
        return SimpleNamespace(log_path="logs/refresh-test.log")

    monkeypatch.setattr(refresh, "start", start)
    return started
