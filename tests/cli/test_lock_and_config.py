"""The pipeline lock and the config: two writers never run at once; paths follow PTPULSE_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from ptpulse.cli import app
from ptpulse.core.config import get_settings
from ptpulse.core.lock import PipelineBusy, pipeline_lock


def test_home_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PTPULSE_HOME", str(tmp_path / "h"))
    settings = get_settings()
    assert settings.home == (tmp_path / "h").resolve()
    assert settings.raw_db.name == "raw.duckdb" and settings.raw_db.parent == settings.home
    assert settings.analytics_db.parent == settings.home
    assert settings.app_db.suffix == ".sqlite"


def test_second_writer_in_another_process_is_refused_with_the_holder_named(tmp_path):
    settings = get_settings(tmp_path)
    holder = textwrap.dedent(
        f"""
        import time
        from ptpulse.core.config import get_settings
        from ptpulse.core.lock import pipeline_lock
        with pipeline_lock(get_settings({str(tmp_path)!r}), "build"):
            print("locked", flush=True)
            time.sleep(30)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(PipelineBusy) as exc:
            with pipeline_lock(settings, "ingest", wait_s=0.2):
                pass
        assert "ptpulse build" in str(exc.value) and "--wait" in str(exc.value)
    finally:
        proc.kill()
        proc.wait()
    # the kernel released the dead holder's lock: the next writer gets it at once
    started = time.monotonic()
    with pipeline_lock(settings, "ingest", wait_s=5):
        pass
    assert time.monotonic() - started < 5


def test_cli_exits_3_with_a_clear_message_when_busy(tmp_path):
    settings = get_settings(tmp_path)
    with pipeline_lock(settings, "refresh"):
        result = CliRunner().invoke(app, ["build", "--home", str(tmp_path)])
    assert result.exit_code == 3
    assert "Another pipeline command is running" in result.output


@pytest.mark.parametrize("command", ["generate", "ingest", "status", "build", "train", "refresh", "app"])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def _hold_lock_in_subprocess(home, command: str = "build") -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        import time
        from ptpulse.core.config import get_settings
        from ptpulse.core.lock import pipeline_lock
        with pipeline_lock(get_settings({str(home)!r}), {command!r}):
            print("locked", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_sigkilled_holder_leaves_its_file_but_the_lock_reads_free(tmp_path):
    """kill -9 of a lock holder leaves `.pipeline.holder` behind; who holds the lock is asked of the OS, so the
    lock reads free (the Admin page enables "Refresh now"), the stale file is cleared, and a writer gets it."""
    from app.lib import refresh
    from ptpulse.core.lock import lock_holder

    settings = get_settings(tmp_path)
    holder_file = settings.lock_file.with_suffix(".holder")
    proc = _hold_lock_in_subprocess(tmp_path, "build")
    try:
        held = lock_holder(settings)
        assert held is not None and f"pid {proc.pid}: ptpulse build" in held
        assert refresh.pipeline_holder(settings) == held
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert holder_file.exists()  # the killed holder never ran its cleanup

    assert refresh.pipeline_holder(settings) is None
    assert lock_holder(settings) is None
    assert not holder_file.exists()  # cleared while the probe held the lock
    with pipeline_lock(settings, "refresh", wait_s=0):
        assert f"pid {os.getpid()}: ptpulse refresh" in lock_holder(settings)
    assert lock_holder(settings) is None


def test_a_stale_holder_file_alone_never_reads_as_held(tmp_path):
    """A holder file naming a live pid (here: this test) while nobody holds the OS lock is still stale."""
    from ptpulse.core.lock import lock_holder

    settings = get_settings(tmp_path).ensure()
    settings.lock_file.touch()
    settings.lock_file.with_suffix(".holder").write_text(f"pid {os.getpid()}: ptpulse ingest, since 2025-01-01")
    assert lock_holder(settings) is None
    assert lock_holder(get_settings(tmp_path / "fresh")) is None  # no lock file yet: free, nothing created
    assert not (tmp_path / "fresh").exists()


def test_probing_the_lock_never_makes_a_writer_fail(tmp_path):
    """The probe takes the lock for microseconds; a writer asking with wait 0 at the same time still gets it."""
    import threading

    from ptpulse.core.lock import lock_holder

    settings = get_settings(tmp_path).ensure()
    with pipeline_lock(settings, "ingest"):
        pass
    stop = threading.Event()
    probes: list[object] = []

    def poll() -> None:
        while not stop.is_set():
            probes.append(lock_holder(settings))

    poller = threading.Thread(target=poll)
    poller.start()
    acquired = 0
    try:
        for _ in range(50):
            with pipeline_lock(settings, "ingest", wait_s=0):  # raises (exit 3) if a probe made it fail
                acquired += 1
    finally:
        stop.set()
        poller.join()
    assert acquired == 50
    assert probes, "the poller never probed the lock, so nothing was exercised"
    assert lock_holder(settings) is None  # free again once the writers are done
