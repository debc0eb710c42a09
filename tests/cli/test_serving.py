"""Serving a build: one directory, one atomic rename. Both served files always come from the same build
(crash or not), an old flat installation is adopted without a moment of inconsistency, abandoned build folders
are removed but never the served one, and readers of the old pair keep their snapshot. Real DuckDB files, no
dbt (tests/dbt/test_build_serve.py drives the same code through real builds)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

import ptpulse.build.serving as build_mod
from app.lib.db import AnalyticsDb
from ptpulse.build.serving import (
    adopt_served_files,
    new_build_id,
    remove_abandoned_builds,
    serve_build_dir,
    served_build_dir,
)
from ptpulse.core.config import Settings, get_settings


class Crash(BaseException):
    """A simulated kill: not an Exception, so no `except Exception` cleanup runs (like SIGKILL)."""


def _write(path: Path, build_id: str) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.build_info as select ? as build_id", [build_id])


def _make_build(settings: Settings, build_id: str | None = None) -> Path:
    build_id = build_id or new_build_id()
    folder = settings.build_dir / build_id
    folder.mkdir(parents=True)
    _write(folder / settings.analytics_db.name, build_id)
    _write(folder / settings.analytics_deid_db.name, build_id)
    return folder


def _served_pair(settings: Settings) -> tuple[str, str]:
    ids = []
    for path in (settings.analytics_db, settings.analytics_deid_db):
        with duckdb.connect(str(path), read_only=True) as con:
            ids.append(con.execute("select build_id from marts.build_info").fetchone()[0])
    return ids[0], ids[1]


def _legacy_home(tmp_path: Path, build_id: str = "legacy") -> Settings:
    """The layout before this change: both served files as plain files at the top of the home."""
    settings = get_settings(tmp_path / "home").ensure()
    _write(settings.analytics_db, build_id)
    _write(settings.analytics_deid_db, build_id)
    return settings


def _crash_on_call(monkeypatch, target, name: str, n: int) -> None:
    """Make the n-th call (1-based) of target.name raise Crash."""
    real = getattr(target, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash(f"{name} #{n}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


def test_adopting_a_flat_installation_keeps_the_same_files_served(tmp_path):
    settings = _legacy_home(tmp_path)
    inode = os.stat(settings.analytics_db).st_ino
    folder = adopt_served_files(settings)
    assert folder and folder.endswith("-adopted")
    assert served_build_dir(settings) == settings.build_dir / folder
    for stable in (settings.analytics_db, settings.analytics_deid_db):
        assert stable.is_symlink() and not os.path.isabs(os.readlink(stable))  # relative: the home can move
    assert os.stat(settings.analytics_db).st_ino == inode  # hard-linked: open readers see the very same file
    assert _served_pair(settings) == ("legacy", "legacy")
    assert adopt_served_files(settings) is None  # idempotent


@pytest.mark.parametrize("step", range(1, 7))
def test_a_crash_at_any_step_of_adoption_leaves_the_legacy_pair_served(tmp_path, monkeypatch, step):
    settings = _legacy_home(tmp_path)
    calls = ["replace", "symlink"]
    _crash_on_call(monkeypatch, build_mod.os, calls[step % 2], (step + 1) // 2)
    try:
        adopt_served_files(settings)
    except Crash:
        pass
    monkeypatch.undo()
    assert _served_pair(settings) == ("legacy", "legacy")
    adopt_served_files(settings)  # the next build finishes the adoption
    assert _served_pair(settings) == ("legacy", "legacy")
    assert settings.analytics_db.is_symlink() and settings.analytics_deid_db.is_symlink()


@pytest.mark.parametrize("op,n", [("symlink", 1), ("replace", 1), ("rmtree", 1)])
def test_a_crash_between_serving_steps_never_serves_a_mixed_pair(tmp_path, monkeypatch, op, n):
    """The documented window of the old layout (twin replaced, then analytics file) is gone: a crash before,
    during or after the one rename leaves both served files from the same build."""
    settings = _legacy_home(tmp_path)
    adopt_served_files(settings)
    old = served_build_dir(settings)
    new = _make_build(settings)
    _crash_on_call(monkeypatch, shutil if op == "rmtree" else build_mod.os, op, n)
    try:
        serve_build_dir(settings, new)
        shutil.rmtree(old)  # what build() does next: remove the previous build's folder
    except Crash:
        pass
    monkeypatch.undo()
    analytics, twin = _served_pair(settings)
    assert analytics == twin
    assert analytics == (new.name if op == "rmtree" else "legacy")
    removed = remove_abandoned_builds(settings)  # the next build sweeps what the crash left
    assert served_build_dir(settings).name not in removed
    assert [p.name for p in settings.build_dir.iterdir() if p.name != "served"] == [served_build_dir(settings).name]


def test_abandoned_build_folders_are_removed_but_never_the_served_one(tmp_path):
    settings = get_settings(tmp_path / "home").ensure()
    served = _make_build(settings)
    serve_build_dir(settings, served)
    killed = _make_build(settings)  # a build killed before its swap
    (settings.build_dir / "dbt" / "target").mkdir(parents=True)  # dbt's stable work dir stays
    (settings.build_dir / "docs").mkdir()
    os.symlink(killed.name, settings.build_dir / ".served.deadbeef.tmp")  # a swap killed before its rename
    assert remove_abandoned_builds(settings) == [killed.name]
    assert sorted(p.name for p in settings.build_dir.iterdir()) == sorted(["dbt", "docs", "served", served.name])
    assert _served_pair(settings) == (served.name, served.name)


def test_readers_of_the_old_pair_keep_their_snapshot(tmp_path):
    settings = get_settings(tmp_path / "home").ensure()
    first = _make_build(settings)
    serve_build_dir(settings, first)
    db = AnalyticsDb(settings.analytics_db)
    assert db.scalar("select build_id from marts.build_info") == first.name
    old_cursor = db.cursor()
    analyst = duckdb.connect(str(settings.analytics_deid_db), read_only=True)  # an analyst's open twin

    second = _make_build(settings)
    serve_build_dir(settings, second)
    shutil.rmtree(first)  # build() removes the previous build's folder right after serving
    assert old_cursor.execute("select build_id from marts.build_info").fetchone()[0] == first.name
    assert analyst.execute("select build_id from marts.build_info").fetchone()[0] == first.name
    analyst.close()
    assert db.scalar("select build_id from marts.build_info") == second.name  # same handle, new build
    assert _served_pair(settings) == (second.name, second.name)


def test_inode_reuse_still_reads_as_a_new_build(tmp_path):
    """The identity includes the build folder: a new build's file that got the inode of a removed one (and the
    same size) is still a new file for the app's caches."""
    settings = get_settings(tmp_path / "home").ensure()
    first = _make_build(settings)
    serve_build_dir(settings, first)
    db = AnalyticsDb(settings.analytics_db)
    ident = db.identity()
    second = _make_build(settings)
    serve_build_dir(settings, second)
    assert db.identity().resolved.startswith(str(second)) and db.identity().token != ident.token
