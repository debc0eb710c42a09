"""`make demo` and `make clean` act on the demo home only, never on the PTPULSE_HOME a shell exports.

A user who exported PTPULSE_HOME for their practice (README: "Your own data") and then ran `make demo` had a
synthetic practice loaded into their append-only store, and `make clean` rm -rf'd their real home (store,
secrets/pseudonym.key, app.sqlite with the audit log and consent). These tests run the repository's Makefile for
real, copied into a scratch folder (so `$(CURDIR)/data`, the demo home, is under tmp_path) with a fake `ptpulse`
that records the home and arguments of every call, and check byte for byte that a "real" home is left as it was.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

FAKE_PTPULSE = """#!{python}
# Records each call (arguments, PTPULSE_HOME) and does the least the Makefile's next step needs.
import json, os, sys
from pathlib import Path
with open({log!r}, "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[1:], "home": os.environ.get("PTPULSE_HOME"),
                         "truth": os.environ.get("PTPULSE_TRUTH_DIR")}}) + "\\n")
if sys.argv[1:2] == ["generate"]:
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "truth" / "manifest.json").write_text("{{}}")
    (out / "patients.csv").write_text("patient_id\\n")
"""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal snapshots = nothing added, removed or changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_real_home(folder: Path) -> Path:
    """A practice's own home as PT Pulse leaves it: no demo practice in it."""
    (folder / "secrets").mkdir(parents=True)
    (folder / "raw.duckdb").write_bytes(b"the practice's append-only store")
    (folder / "app.sqlite").write_bytes(b"audit log and consent")
    (folder / "secrets" / "pseudonym.key").write_bytes(b"k" * 32)
    (folder / "incoming" / "exports").mkdir(parents=True)
    (folder / "incoming" / "exports" / "patients.csv").write_text("patient_id\nP1\n")
    return folder


def make_demo_home(folder: Path) -> Path:
    """What `make demo` leaves: the generated practice with its truth/manifest.json, and a store."""
    truth = folder / "incoming" / "demo_practice" / "truth"
    truth.mkdir(parents=True)
    (truth / "manifest.json").write_text("{}")
    (folder / "raw.duckdb").write_bytes(b"demo store")
    return folder


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A scratch checkout: the Makefile, a pyproject.toml and an up-to-date install stamp (no pip runs)."""
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(MAKEFILE, work / "Makefile")
    (work / "pyproject.toml").write_text("")
    stamp = work / "installed-stamp"
    stamp.write_text("")
    later = (work / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (later, later))
    log = tmp_path / "ptpulse-calls.jsonl"
    fake = tmp_path / "fake-ptpulse"
    fake.write_text(FAKE_PTPULSE.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    (work / "bench" / ".cache").mkdir(parents=True)
    return work


def run_make(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`make ARGS` in `workdir` with the fake ptpulse, the test's Python for the venv's, and `env` added to a
    clean environment (no PTPULSE_HOME, DEMO_HOME, FORCE, nor an outer make's MAKEFLAGS, unless `env` sets them)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PTPULSE_HOME", "DEMO_HOME", "FORCE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
    }
    fake = workdir.parent / "fake-ptpulse"
    cmd = ["make", "--no-print-directory", f"PTPULSE={fake}", f"PY={sys.executable}", "STAMP=installed-stamp", *args]
    return subprocess.run(
        cmd, cwd=workdir, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120, check=False
    )


def calls(workdir: Path) -> list[dict]:
    log = workdir.parent / "ptpulse-calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_demo_runs_on_the_demo_home_whatever_ptpulse_home_the_shell_exports(workdir, tmp_path):
    real = make_real_home(tmp_path / "real_home")
    before = snapshot(real)

    # the dry run: no ptpulse command names the shell's home
    dry = run_make(workdir, "-n", "demo", env={"PTPULSE_HOME": str(real)})
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if "fake-ptpulse" in line]
    assert commands and not [c for c in commands if str(real) in c], dry.stdout
    assert "date -d" not in dry.stdout  # GNU-only: empty --as-of on macOS

    # the real run (the fake ptpulse generates a practice, refresh/status/app only record the call)
    done = run_make(workdir, "demo", env={"PTPULSE_HOME": str(real), "DEMO_HOME": str(real)})
    assert done.returncode == 0, done.stdout + done.stderr
    demo_home = (workdir / "data").resolve()
    seen = calls(workdir)
    assert [c["argv"][0] for c in seen] == ["generate", "refresh", "status", "app"]
    assert {c["home"] for c in seen} == {str(demo_home)}, seen
    assert not [c for c in seen if str(real) in " ".join(c["argv"])], seen
    generate = seen[0]["argv"]
    assert generate[generate.index("--out") + 1] == str(demo_home / "incoming" / "demo_practice")
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    assert generate[generate.index("--as-of") + 1] in (str(yesterday), str(yesterday + datetime.timedelta(days=1)))
    assert seen[1]["truth"] == str(demo_home / "incoming" / "demo_practice" / "truth")
    assert snapshot(real) == before  # nothing of the demo reached the practice's home
    assert str(real) in done.stdout  # and the user is told their home was left alone


def test_demo_ignores_a_ptpulse_home_given_on_the_command_line(workdir, tmp_path):
    real = make_real_home(tmp_path / "real_home")
    before = snapshot(real)
    done = run_make(workdir, "demo", f"PTPULSE_HOME={real}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {c["home"] for c in calls(workdir)} == {str((workdir / "data").resolve())}
    assert snapshot(real) == before


def test_demo_refuses_a_demo_home_that_holds_someone_elses_store(workdir):
    data = make_real_home(workdir / "data")  # ptpulse's default home is ./data: a practice may live there
    before = snapshot(data)
    done = run_make(workdir, "demo")
    assert done.returncode != 0
    assert "not the demo's" in done.stderr and "Nothing was written" in done.stderr
    assert calls(workdir) == []  # no generate, no refresh
    assert snapshot(data) == before


def test_clean_leaves_the_shells_ptpulse_home_alone(workdir, tmp_path):
    real = make_real_home(tmp_path / "real_home")
    before = snapshot(real)
    env = {"PTPULSE_HOME": str(real), "DEMO_HOME": str(real), "FORCE": "1"}

    dry = run_make(workdir, "-n", "clean", env=env)
    assert dry.returncode == 0, dry.stderr
    removals = [line for line in dry.stdout.splitlines() if line.startswith("rm ")]
    assert removals and not [r for r in removals if str(real) in r], dry.stdout

    done = run_make(workdir, "clean", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(real) == before
    assert not (workdir / "bench" / ".cache").exists()


def test_clean_refuses_a_demo_home_that_is_not_one(workdir):
    data = make_real_home(workdir / "data")
    before = snapshot(data)

    for env in (None, {"FORCE": "1"}):  # FORCE counts only on the command line, never from the environment
        refused = run_make(workdir, "clean", env=env)
        assert refused.returncode != 0
        assert "not a demo home" in refused.stderr and "make clean FORCE=1" in refused.stderr
        assert snapshot(data) == before
        assert (workdir / "bench" / ".cache").exists()

    forced = run_make(workdir, "clean", "FORCE=1")  # told explicitly
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert not data.exists()


def test_clean_guards_a_demo_home_moved_on_the_command_line(workdir, tmp_path):
    real = make_real_home(tmp_path / "real_home")
    before = snapshot(real)
    refused = run_make(workdir, "clean", f"DEMO_HOME={real}")
    assert refused.returncode != 0 and f"make clean FORCE=1 DEMO_HOME={real}" in refused.stderr
    assert snapshot(real) == before

    empty = tmp_path / "empty_home"
    empty.mkdir()
    done = run_make(workdir, "clean", f"DEMO_HOME={empty}")  # an empty folder holds nothing to lose
    assert done.returncode == 0, done.stdout + done.stderr
    assert not empty.exists()


def test_clean_deletes_a_demo_home(workdir, tmp_path):
    make_demo_home(workdir / "data")
    real = make_real_home(tmp_path / "real_home")
    before = snapshot(real)
    done = run_make(workdir, "clean", env={"PTPULSE_HOME": str(real)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (workdir / "data").exists() and not (workdir / "bench" / ".cache").exists()
    assert snapshot(real) == before


def test_test_target_keeps_its_home(workdir, tmp_path):
    """`make test` is unchanged: the shell's PTPULSE_HOME if it has one, else the checkout's data/ (the tests
    themselves never rely on it: every test home is under tmp_path)."""
    script = 'show: ; @echo "home=$$PTPULSE_HOME"\n'
    (workdir / "show.mk").write_text(script)
    for env, expected in ((None, str(workdir.resolve() / "data")), ({"PTPULSE_HOME": "/elsewhere"}, "/elsewhere")):
        shown = run_make(workdir, "-f", "Makefile", "-f", "show.mk", "show", env=env)
        assert shown.returncode == 0, shown.stderr
        assert f"home={expected}" in shown.stdout
