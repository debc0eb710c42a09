"""The pipeline lock and the config: two writers never run at once; paths follow PTPULSE_HOME."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from ptpulse.cli import app
from ptpulse.config import get_settings
from ptpulse.lock import PipelineBusy, pipeline_lock


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
        from ptpulse.config import get_settings
        from ptpulse.lock import pipeline_lock
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
