"""Helpers for AppTest-based tests: run a page as a demo role, read everything it rendered."""

from __future__ import annotations

from pathlib import Path

from ptpulse.core.config import scoped_environ

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app" / "streamlit_app.py"

# A hang guard, not a speed check (page speed is `make bench`'s): a page that renders in 1-2 s on a quiet box took
# over 60 s once in CI, on two cores shared by three test workers, a browser and subprocess builds.
APPTEST_TIMEOUT_S = 300


def app_test(app: Path = APP):
    """An AppTest of the app (or of the copy at `app`) with the suite's one script-run timeout."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(app), default_timeout=APPTEST_TIMEOUT_S)


def env(**values: str):
    return scoped_environ(values)


def open_page(home, role: str, page: str, at=None):
    """Run the app as a demo user of `role` and switch to `page`; returns the AppTest."""
    with env(PTPULSE_HOME=str(home.home), PTPULSE_DEMO_ROLE=role):
        if at is None:
            at = app_test()
            at.run()
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def rendered_text(at) -> str:
    """Everything the page sent to the browser: element protos (incl. chart specs) and table contents."""
    parts: list[str] = []

    def walk(node) -> None:
        kind = getattr(node, "type", "")
        if kind in ("arrow_data_frame", "dataframe"):
            parts.append(node.value.to_csv(index=False))
        elif hasattr(node, "proto") and node.proto is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def rerun(at, home):
    """Run again (after a click) with the same PTPULSE_HOME."""
    with env(PTPULSE_HOME=str(home.home)):
        at.run()
    return at


def wait_refresh(settings, timeout_s: float = 900):
    """The app's background refresh (app/lib/refresh.py) once it has exited; its status."""
    import time

    from app.lib import refresh

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = refresh.status(settings)
        if not status.running and status.exit_code is not None:
            return status
        time.sleep(2)
    raise TimeoutError("the background refresh did not finish")
