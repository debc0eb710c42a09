"""HTML to PDF or PNG with the headless Chromium the project already uses (Debian's /usr/bin/chromium).

Why Chromium and not a PDF library: the browser prints exactly the HTML the app previews and the tests read,
so a referrer report's PDF or a digest's chart image cannot disagree with the figures they were made from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class ChromiumError(RuntimeError):
    """The file could not be made (says what to install or set)."""


def executable() -> str:
    """The browser: $PTPULSE_CHROMIUM, else the first Chromium on PATH."""
    found = os.environ.get("PTPULSE_CHROMIUM") or next((p for p in map(shutil.which, CANDIDATES) if p), None)
    if not found:
        raise ChromiumError(
            "No Chromium to print with: install chromium (apt install chromium) or set PTPULSE_CHROMIUM to the "
            "browser's path; the HTML can still be downloaded."
        )
    return found


def _run(html: str, out_name: str, flags: list[str], timeout_s: float) -> bytes:
    """Write the page to a private temp folder (with its own browser profile), run Chromium, read the output."""
    with tempfile.TemporaryDirectory(prefix="ptpulse-chromium-") as tmp:
        page, out = Path(tmp) / "page.html", Path(tmp) / out_name
        page.write_text(html, encoding="utf-8")
        cmd = [
            executable(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={Path(tmp) / 'profile'}",
            *[f.format(out=out) for f in flags],
            page.as_uri(),
        ]
        try:
            subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ChromiumError(f"Chromium did not finish within {timeout_s:.0f} s: try again.") from None
        if not out.is_file() or out.stat().st_size == 0:
            raise ChromiumError(
                "Chromium wrote no output: check that it starts headless on this machine (run it with --headless "
                "by hand); the HTML can still be downloaded."
            )
        return out.read_bytes()


def pdf(html: str, timeout_s: float = 60) -> bytes:
    """The page printed to PDF (page size and margins from its @page CSS; no header or footer)."""
    data = _run(html, "page.pdf", ["--no-pdf-header-footer", "--print-to-pdf={out}"], timeout_s)
    if not data.startswith(b"%PDF"):
        raise ChromiumError("Chromium's output is not a PDF: check the Chromium version (needs --print-to-pdf).")
    return data


def png(html: str, width: int = 720, height: int = 480, timeout_s: float = 60) -> bytes:
    """A screenshot of the page at width x height pixels (an email's chart image)."""
    data = _run(html, "page.png", [f"--window-size={width},{height}", "--screenshot={out}"], timeout_s)
    if not data.startswith(b"\x89PNG"):
        raise ChromiumError("Chromium's output is not a PNG: check the Chromium version (needs --screenshot).")
    return data
