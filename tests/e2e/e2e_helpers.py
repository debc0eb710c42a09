"""What every browser test shares: Debian's chromium (never `playwright install`) and one `streamlit run` server
started as `ptpulse app` serves it (no Deploy button or developer menu), stopped by its process id."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SKIP_REASON = "needs Debian chromium at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it"
# Generous on a loaded 2-core machine (a first page run imports plotly and opens DuckDB); waits end as soon as
# the page is there, so a large timeout costs nothing when the machine is fast.
TIMEOUT_MS = 90_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit did not become healthy at {url}")


@contextmanager
def serve_app(home: Path, workdir: Path, demo_role: str | None = None) -> Iterator[str]:
    """`streamlit run` over `home` on a free port; yields its URL. The server log is workdir/streamlit.log."""
    port = free_port()
    env = dict(os.environ, PTPULSE_HOME=str(home))
    env.pop("PTPULSE_DEMO_ROLE", None)
    if demo_role:
        env["PTPULSE_DEMO_ROLE"] = demo_role
    log = open(workdir / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app" / "streamlit_app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            "--client.toolbarMode",  # as `ptpulse app` serves it: no Deploy button or developer menu
            "viewer",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(workdir),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def launch(pw):
    """Debian's chromium with the flags a container needs."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def wait_idle(page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until the script run has finished (Streamlit marks the app `notRunning`), never a fixed sleep."""
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=timeout_ms,
    )
