"""Browser-test fixtures: one Playwright driver and one chromium for the whole session (starting chromium costs
seconds on a loaded machine; each test opens its own context, so sessions never share cookies or state)."""

from __future__ import annotations

import pytest
from e2e_helpers import CHROMIUM, launch


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium (never `playwright install`), shared by every browser test of the session."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()
