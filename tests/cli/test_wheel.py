"""`pip install ptpulse` outside a checkout gives a CLI whose `build` and `app` work.

The wheel ships app/ and dbt_project/ as package data beside the Python packages (pyproject.toml), and
ptpulse.core.config finds them from its own file. This test builds the wheel, installs it with --target into
a temp folder, and from a cwd outside the checkout (PYTHONPATH = that folder + the venv's site-packages for
the dependencies, the base interpreter so the editable install of the checkout is not on the path) ingests
the tiny practice, runs `ptpulse build`, and starts `ptpulse app` until /_stcore/health answers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "dbt" / "tiny_practice"
PACKAGED = ("ptpulse", "ingestion", "seed_data", "ml", "app", "dbt_project")  # pyproject.toml packages.find

pytestmark = pytest.mark.slow


def _setuptools_builds_offline() -> bool:
    """The venv's setuptools reads this pyproject.toml (an SPDX `license` string needs setuptools >= 77)."""
    try:
        major = int(version("setuptools").split(".")[0])
    except Exception:  # noqa: BLE001 - not installed: build in an isolated environment instead
        return False
    return major >= 77


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel built from the checkout and installed into a temp folder; the environment that runs it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # setuptools writes build/ and *.egg-info beside pyproject.toml: not in the checkout
    skip = shutil.ignore_patterns("__pycache__", "target", "logs", "dbt_packages")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in PACKAGED:
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)]
    if _setuptools_builds_offline():
        build.insert(5, "--no-build-isolation")
    run = subprocess.run(build, capture_output=True, text=True, timeout=300, cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    wheel = next((tmp / "dist").glob("ptpulse-*.whl"))
    target = tmp / "site"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTPULSE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    env["PYTHONNOUSERSITE"] = "1"
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return {
        "python": getattr(sys, "_base_executable", sys.executable),
        "env": env,
        "cwd": cwd,
        "target": target,
        "home": tmp / "home",
    }


def _ptpulse(installed: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [installed["python"], "-m", "ptpulse.cli", *args],
        env=installed["env"],
        cwd=installed["cwd"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_wheel_carries_the_app_and_the_dbt_project(installed):
    target = installed["target"]
    assert (target / "app" / "streamlit_app.py").is_file()
    assert (target / "dbt_project" / "dbt_project.yml").is_file()
    assert (target / "dbt_project" / "profiles.yml").is_file()
    assert list((target / "dbt_project" / "models").rglob("*.sql"))
    assert list((target / "ingestion" / "contracts").glob("*.yml"))
    where = subprocess.run(
        [installed["python"], "-c", "import ptpulse.core.config as c; print(c.INSTALL_ROOT); print(c.DBT_PROJECT_DIR)"],
        env=installed["env"],
        cwd=installed["cwd"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert where.stdout.split() == [str(target), str(target / "dbt_project")], "the checkout was imported"


def test_installed_cli_ingests_and_builds_outside_the_checkout(installed):
    home = str(installed["home"])
    ingest = _ptpulse(installed, "ingest", str(TINY), "--home", home)
    assert ingest.returncode == 0, ingest.stdout[-2000:] + ingest.stderr[-2000:]
    build = _ptpulse(installed, "build", "--home", home, "--no-score")
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "built and served" in build.stdout
    assert (installed["home"] / "analytics.duckdb").exists()
    assert not (installed["target"] / "dbt_project" / "target").exists(), "dbt wrote into the installed package"


def test_installed_cli_serves_the_app(installed):
    port = _free_port()
    proc = subprocess.Popen(
        [installed["python"], "-m", "ptpulse.cli", "app", "--port", str(port), "--home", str(installed["home"])],
        env=installed["env"],
        cwd=installed["cwd"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, answer = time.monotonic() + 120, ""  # a hang guard on a loaded box
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                    answer = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert answer == "ok", f"no health answer (exit {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
