"""dbt's parse of the project is reused by every home a process builds, not redone per home.

dbt hashes the profile's paths (analytics file, attached raw file, spill folder, key file) into its
partial-parse state; `run_dbt` spells them through a per-process alias symlink, so a second home parses
nothing (dbt's own "Nothing changed" in its log), while paths outside the home and the stable `current/` link
are left as they are.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import duckdb

from ptpulse.build import dbt_runner
from ptpulse.build.dbt_runner import run_dbt
from ptpulse.core.config import DBT_PROJECT_DIR, get_settings


def _parse_in_new_home(home: Path) -> str:
    settings = get_settings(home).ensure()
    duckdb.connect(str(settings.raw_db)).close()
    work = settings.build_dir / "dbt"
    run = run_dbt(["parse"], work / "analytics.duckdb", settings.raw_db, work)
    assert run.ok, run.message
    return (work / "logs" / "dbt.log").read_text()


def test_a_second_home_reuses_the_first_homes_parse(tmp_path):
    _parse_in_new_home(tmp_path / "first")
    log = _parse_in_new_home(tmp_path / "second")
    assert "Nothing changed, skipping partial parsing" in log
    assert "Starting full parse" not in log and "Unable to do partial parsing" not in log
    assert (tmp_path / "second" / "build" / "dbt" / "target" / "partial_parse.msgpack").exists()


def test_only_paths_under_the_home_go_through_the_alias(tmp_path):
    home = tmp_path / "home"
    build_folder = home / "build" / "b1"
    build_folder.mkdir(parents=True)
    current = home / "build" / "dbt" / "current"
    current.parent.mkdir(parents=True)
    current.symlink_to(build_folder, target_is_directory=True)
    outside = tmp_path / "secrets" / "pseudonym.key"
    env = {"TARGET": str(current / "analytics.duckdb"), "KEY": str(outside), "LIMIT": "4GB"}
    with dbt_runner._DBT_LOCK:
        mapped = dbt_runner._through_alias(home, env, home / "build" / "dbt" / "target", DBT_PROJECT_DIR)
    alias = dbt_runner._alias_root()
    assert alias is not None and alias.resolve() == home.resolve()
    assert mapped["TARGET"] == str(alias / "build" / "dbt" / "current" / "analytics.duckdb")  # `current` kept
    assert mapped["KEY"] == str(outside) and mapped["LIMIT"] == "4GB"


def _child_alias(queue) -> None:
    queue.put(str(dbt_runner._alias_root()))


def test_a_forked_process_takes_its_own_alias():
    mine = dbt_runner._alias_root()
    assert mine is not None
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_alias, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(30)
    assert theirs not in (str(mine), "None")
    assert dbt_runner._alias_root() == mine  # the parent keeps its own


def _seed_roots(home: Path) -> set[str]:
    manifest = json.loads((home / "build" / "dbt" / "target" / "manifest.json").read_text())
    return {n["root_path"] for n in manifest["nodes"].values() if n["resource_type"] == "seed"}


def _parse(home: Path, project: Path) -> None:
    settings = get_settings(home).ensure()
    duckdb.connect(str(settings.raw_db)).close()
    work = settings.build_dir / "dbt"
    run = run_dbt(["parse"], work / "analytics.duckdb", settings.raw_db, work, project_dir=project)
    assert run.ok, run.message


def test_parse_state_never_crosses_project_folders(tmp_path):
    """A copy of the project (a moved install, a new venv) has the same file hashes, and dbt would reuse a parse
    state whose seeds point at the other copy: the build then read the other folder's seeds, or failed when it
    was gone. Neither a new home nor the same home carries a state across folders."""
    copy = tmp_path / "project_copy"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    _parse(tmp_path / "a", copy)
    assert _seed_roots(tmp_path / "a") == {str(copy)}
    _parse(tmp_path / "b", DBT_PROJECT_DIR)  # a new home after the copy's parse, in the same process
    assert _seed_roots(tmp_path / "b") == {str(DBT_PROJECT_DIR)}
    _parse(tmp_path / "a", DBT_PROJECT_DIR)  # the same home, now with the other folder
    assert _seed_roots(tmp_path / "a") == {str(DBT_PROJECT_DIR)}
