"""The command line in an ordinary terminal: `ptpulse status` readable at 80 columns, boolean options shown as
plain flags in every command's help, and `ptpulse app` refusing a port that is taken before it prints a URL.

Real processes (the CLI as a user runs it, `COLUMNS=80`), a real home (the tiny practice ingested into DuckDB)
and a real socket holding the port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ptpulse.cli import app

ROOT = Path(__file__).parents[2]
TINY = ROOT / "tests" / "dbt" / "tiny_practice"


def _cli(*args: str, columns: int = 80, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS=str(columns), PYTHONPATH=str(ROOT), TERM="xterm")
    env.pop("FORCE_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "ptpulse.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(cwd or ROOT),
        timeout=timeout,
        check=False,
    )


# ------------------------------------------------------------------------------------------ status at 80 columns


@pytest.fixture(scope="module")
def loaded_home(tmp_path_factory) -> Path:
    """The tiny practice, one file under a longer monthly name, and one refused file (not a CSV inside)."""
    base = tmp_path_factory.mktemp("status80")
    exports = base / "exports"
    shutil.copytree(TINY, exports)
    (exports / "scheduling_events.csv").rename(exports / "scheduling_events_november.csv")
    (exports / "payers.csv").write_bytes(b"\x00\x01binary")
    home = base / "home"
    done = _cli("ingest", str(exports), "--home", str(home), columns=200)
    assert done.returncode == 2, done.stdout + done.stderr  # the refused file
    return home


def test_status_at_80_columns_fits_and_keeps_every_name_and_number_whole(loaded_home):
    result = _cli("status", "--home", str(loaded_home))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    too_long = [line for line in lines if len(line) > 80]
    assert not too_long, "\n".join(too_long)
    assert "…" not in result.stdout  # nothing cut short with an ellipsis
    table_lines = [line for line in lines if line.startswith(("│", "┃"))]
    files = sorted(p.name for p in (loaded_home.parent / "exports").iterdir())
    for name in files:  # each file's name on one line of a table, not folded over two
        assert any(name in line for line in table_lines), name
    # each load's counts and its finish time on one row: a number or a time is never split
    finished = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")
    count_rows = [line for line in table_lines if finished.search(line) and re.match(r"│\s+\d+ │", line)]
    assert len(count_rows) == len(files), "\n".join(table_lines)
    assert "refused" in result.stdout


def test_status_on_a_wide_terminal_is_one_loads_table(loaded_home):
    result = _cli("status", "--home", str(loaded_home), columns=160)
    assert result.returncode == 0, result.stderr
    assert "Rows per load" not in result.stdout
    header = next(line for line in result.stdout.splitlines() if "finished (UTC)" in line)
    for column in ("id", "file", "source", "status", "read", "landed", "quarantined", "duplicate"):
        assert column in header


# ------------------------------------------------------------------------------------------------ flags in help


def _commands(group, prefix: tuple[str, ...] = ()):
    import typer.main

    command = typer.main.get_command(group) if not prefix else group
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*prefix, name))
        else:
            yield (*prefix, name), sub


def test_every_boolean_option_is_a_plain_flag_in_help():
    """typer's help printed `--json <bool>`, `--reload <bool>`, `--help <bool>`: as if each took a value."""
    from typer.testing import CliRunner

    runner = CliRunner(env={"COLUMNS": "200"})
    seen = []
    for path, command in _commands(app):
        flags = [o for p in command.params if getattr(p, "is_flag", False) for o in (*p.opts, *p.secondary_opts)]
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, f"ptpulse {' '.join(path)} --help:\n{result.output}"
        for flag in flags:
            assert re.search(rf"{re.escape(flag)}(\s|$)", result.output), (path, flag)
        seen.append(path)
    assert ("ingest",) in seen and ("status",) in seen and ("secret", "rotate") in seen
    assert "--json " in runner.invoke(app, ["status", "--help"]).output


# ------------------------------------------------------------------------------------------- a port that is taken


def test_app_on_a_taken_port_says_so_before_any_url(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _cli("app", "--port", str(port), "--home", str(tmp_path / "home"), columns=200, timeout=60)
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "http://" not in said  # no URL that leads nowhere
    assert f"port {port} is already in use" in said and "--port" in said
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no traceback
    assert not result.stdout.strip()


def test_a_free_port_passes_the_check():
    from ptpulse.serve import bind_problem

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert bind_problem("127.0.0.1", port) is None
    assert bind_problem("localhost", port) is None
