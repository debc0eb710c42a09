"""`ptpulse build`: dbt build into a new analytics file beside the served one, then serve it atomically.

Steps (DESIGN.md, "Why three stores"):

0. under the pipeline lock: an installation with plain served files is adopted into the build-folder layout
   (`adopt_served_files`), and build folders abandoned by killed or failed builds are removed
   (`remove_abandoned_builds`; never the served one);
1. a new file `build/<build_id>/analytics.duckdb` (same file name as the served one, so the catalog name
   that dbt writes into view definitions stays valid after the rename);
2. app state: `app.sqlite` is copied with SQLite's backup API (the app never meets a lock) and its
   `actions` table is written into the new file as `app_state.actions` (empty and typed when there is no
   app database yet), so dbt reads it as a source; the build id goes beside it as `app_state.build`;
3. `dbt build` in-process (raw.duckdb attached READ-ONLY as `rawdb`), the new file seen through the stable
   path `build/dbt/current/<name>` so dbt's partial parsing is reused from build to build;
4. only when every error-severity test passed: the staging views are dropped (see below), `meta.builds`
   (history carried forward from the served file), the `before_swap` hook (ML scoring writes schema `ml`),
   a check that every view left in the file can be queried, checkpoint and close;
5. the de-identified twin `analytics_deid.duckdb` is written beside the new file (ptpulse/privacy.py: the new
   file attached READ_ONLY, one table per kept table with only kept columns) and verified (no PHI or
   free-text column, no excluded table, no view; otherwise the build fails);
6. ONE atomic rename serves both: a new symlink `build/served -> <build_id>` replaces the old one, and the
   stable paths `$PTPULSE_HOME/analytics.duckdb` / `analytics_deid.duckdb` are fixed symlinks into
   `build/served/`, so both served files come from the same build at every instant, crash or not. The
   previous build's folder is then removed (readers holding its files keep their snapshot).

Staging is build-time plumbing: dbt's staging models are views over `rawdb.raw.*`, the raw database attached
only while dbt runs. In the served file that attachment does not exist, so those views could never be
queried there; they are dropped from the new file before it is served. Everything readers use is a table
(intermediate, marts, ml, meta, app_state). Nothing broken is served: if any view still fails to bind after
that, the build fails and the served file stays as it was.

On any failure both served files are untouched and `BuildResult.message` names the failed model or test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Optional

import duckdb

from ptpulse.config import REPO_ROOT, Settings, scoped_environ
from ptpulse.privacy import verify_deidentified, write_deidentified
from ptpulse.progress import ProgressFn

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

ACTIONS_DDL = """
create table app_state.actions (
    action_id bigint, task_id varchar, action varchar, actor varchar, acted_at varchar, payload varchar
)"""

BUILD_CONTEXT_DDL = "create table app_state.build (build_id varchar)"

BUILDS_DDL = """
create table if not exists meta.builds (
    build_id varchar, started_at timestamp, finished_at timestamp, status varchar, dbt_version varchar,
    git_rev varchar, row_counts json, tests json
)"""

# dbt runs in-process; its flags and adapter state are process-global, so builds never overlap.
_DBT_LOCK = threading.Lock()


@dataclass
class BuildResult:
    ok: bool
    served_path: Optional[Path]
    seconds: float
    models: int
    tests: int
    message: str
    build_id: str
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    new_path: Optional[Path] = None
    removed_builds: list[str] = field(default_factory=list)  # abandoned build folders removed by this build


@dataclass
class DbtRun:
    ok: bool
    models: int
    tests: int
    passed: int
    failures: list[str]
    warnings: list[str]
    errors: list[str]
    message: str
    timings: dict[str, float]


def new_build_id() -> str:
    return datetime.now().strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def git_rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------------------------- app state


def copy_actions(app_db: Path, target: duckdb.DuckDBPyConnection, scratch: Path) -> int:
    """Write app.sqlite `actions` into `app_state.actions` of `target`; returns the row count.

    The app database is copied with SQLite's online backup API into `scratch` first (a reader that never
    blocks the app's writers; WAL content is included), and only the copy is read.
    """
    target.execute("create schema if not exists app_state")
    target.execute(ACTIONS_DDL)
    if not app_db.exists():
        return 0
    copy_path = scratch / "app_state_copy.sqlite"
    src = sqlite3.connect(f"file:{app_db}?mode=ro", uri=True, timeout=5)
    try:
        dst = sqlite3.connect(copy_path)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    con = sqlite3.connect(copy_path)
    try:
        has = con.execute("select 1 from sqlite_master where type = 'table' and name = 'actions'").fetchone()
        if not has:
            return 0
        cols = {r[1] for r in con.execute("pragma table_info(actions)")}
        wanted = ["action_id", "task_id", "action", "actor", "acted_at", "payload"]
        select = ", ".join(c if c in cols else "null" for c in wanted)
        rows = con.execute(f"select {select} from actions").fetchall()
    finally:
        con.close()
        copy_path.unlink(missing_ok=True)
    if rows:
        rows = [(r[0], r[1], r[2], r[3], None if r[4] is None else str(r[4]),
                 None if r[5] is None else (r[5] if isinstance(r[5], str) else json.dumps(r[5]))) for r in rows]
        target.executemany("insert into app_state.actions values (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)


def write_build_context(target: duckdb.DuckDBPyConnection, build_id: str) -> None:
    """`app_state.build`: this build's id, for marts.build_info. Passed as data rather than as an env_var that
    dbt would see at parse time (a new value each build would make dbt re-parse a file every build)."""
    target.execute("create schema if not exists app_state")
    target.execute(BUILD_CONTEXT_DDL)
    target.execute("insert into app_state.build values (?)", [build_id])


# --------------------------------------------------------------------------------------------------- dbt


def _release_dbt_duckdb() -> None:
    """Close the DuckDB instance dbt-duckdb caches per process, so the file can be reopened and renamed."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing best effort, the next open replaces it anyway
                pass
        DuckDBConnectionManager._ENV = None


def run_dbt(
    args: list[str],
    target_file: Path,
    raw_db: Path,
    work_dir: Path,
    project_dir: Path = DBT_PROJECT_DIR,
    build_id: str = "dev",
    dbt_vars: Optional[dict] = None,
    progress: ProgressFn = None,
    expected_nodes: int = 0,
) -> DbtRun:
    """Run one dbt command in-process against `target_file`; summarise the node results."""
    from dbt.cli.main import dbtRunner

    work_dir.mkdir(parents=True, exist_ok=True)
    full_args = list(args) + [
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--log-path", str(work_dir / "logs"),
        "--target-path", str(work_dir / "target"),
        "--quiet",
    ]
    if dbt_vars:
        full_args += ["--vars", json.dumps(dbt_vars)]
    done = {"n": 0}

    def on_event(event) -> None:
        if progress and event.info.name == "NodeFinished":
            done["n"] += 1
            node = getattr(event.data, "node_info", None)
            name = getattr(node, "node_name", "") if node else ""
            progress(f"dbt {name}", done["n"], max(expected_nodes, done["n"]))

    env = {
        "PTPULSE_BUILD_TARGET": str(target_file),
        "PTPULSE_RAW_DB": str(raw_db),
        "PTPULSE_BUILD_ID": build_id,
        "PTPULSE_DBT_TARGET_PATH": str(work_dir / "target"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    try:  # the pseudonym secret's PATH only (ptpulse/secrets.py); created on the first build
        from ptpulse.secrets import ensure_key

        env["PTPULSE_PSEUDONYM_KEY_FILE"] = str(ensure_key(Settings(home=Path(raw_db).parent)))
    except (RuntimeError, OSError) as exc:
        return DbtRun(False, 0, 0, 0, [], [], [str(exc)], f"dbt build failed: {exc}", {})
    t0 = time.perf_counter()
    with _DBT_LOCK, scoped_environ(env):
        try:
            res = dbtRunner(callbacks=[on_event]).invoke(full_args)
        finally:
            _release_dbt_duckdb()
    return summarise(res, time.perf_counter() - t0)


def summarise(res, seconds: float) -> DbtRun:
    models = tests = passed = 0
    failures: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    timings: dict[str, float] = {"total": seconds}
    results = getattr(res.result, "results", None) or []
    for r in results:
        node = r.node
        kind = node.resource_type.value if hasattr(node.resource_type, "value") else str(node.resource_type)
        status = str(r.status.value if hasattr(r.status, "value") else r.status)
        label = f"{kind} {node.name}"
        timings[node.unique_id] = float(getattr(r, "execution_time", 0.0) or 0.0)
        if kind in ("model", "seed", "snapshot"):
            models += kind == "model"
            if status in ("error", "skipped"):
                errors.append(f"{label}: {_short(r.message)}" if status == "error" else f"{label}: skipped")
        elif kind in ("test", "unit_test"):
            tests += 1
            if status == "pass":
                passed += 1
            elif status == "warn":
                why = " ".join(str(getattr(node, "description", "") or "").split())
                warnings.append(f"{label} ({r.failures} rows)" + (f": {why}" if why else ""))
            elif status == "fail":
                failures.append(f"{label} ({r.failures} rows)")
            elif status == "error":
                failures.append(f"{label}: {_short(r.message)}")
            elif status == "skipped":
                errors.append(f"{label}: skipped")
    ok = bool(res.success) and not failures and not [e for e in errors if not e.endswith("skipped")]
    if not results and res.exception is not None:
        errors.append(f"dbt: {_short(str(res.exception))}")
        ok = False
    if ok:
        message = f"{models} models, {tests} tests passed ({len(warnings)} warnings)"
    else:
        first = [e for e in errors if not e.endswith("skipped")] + failures
        message = "dbt build failed: " + "; ".join(first[:10] or errors[:10] or ["see dbt logs"])
    return DbtRun(ok, models, tests, passed, failures, warnings, errors, message, timings)


def _short(text: object, limit: int = 600) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[:limit] + "..."


# ------------------------------------------------------------------------------------------------- build


def _mart_row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = con.execute(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "and table_catalog = current_database() order by 1").fetchall()
    return {t: con.execute(f'select count(*) from marts."{t}"').fetchone()[0] for (t,) in tables}


def _previous_history(served: Path) -> list[tuple]:
    if not served.exists():
        return []
    try:
        con = duckdb.connect(str(served), read_only=True)
    except duckdb.Error:
        return []
    try:
        has = con.execute("select count(*) from information_schema.tables "
                          "where table_schema = 'meta' and table_name = 'builds'").fetchone()[0]
        if not has:
            return []
        return con.execute("select build_id, started_at, finished_at, status, dbt_version, git_rev, "
                           "cast(row_counts as varchar), cast(tests as varchar) from meta.builds").fetchall()
    finally:
        con.close()


BUILD_ONLY_SCHEMAS = ("staging",)  # views over the raw database attached during the build only


def drop_build_only_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the staging views (and their schema when it is left empty); returns the dropped names."""
    views = con.execute(
        "select schema_name, view_name from duckdb_views() where not internal and database_name = current_database() "
        "and list_contains(?, schema_name) order by 1, 2", [list(BUILD_ONLY_SCHEMAS)]).fetchall()
    for schema, view in views:
        con.execute(f'drop view "{schema}"."{view}"')
    for schema in BUILD_ONLY_SCHEMAS:
        left = con.execute("select count(*) from duckdb_tables() where database_name = current_database() "
                           "and schema_name = ?", [schema]).fetchone()[0]
        if not left:
            con.execute(f'drop schema if exists "{schema}"')
    return [f"{s}.{v}" for s, v in views]


def broken_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Views of the file that cannot be queried as a reader would open it (no raw database attached)."""
    views = con.execute(
        "select schema_name, view_name from duckdb_views() where not internal "
        "and database_name = current_database() order by 1, 2").fetchall()
    broken = []
    for schema, view in views:
        try:
            con.execute(f'select * from "{schema}"."{view}" limit 0').fetchall()
        except duckdb.Error as exc:
            broken.append(f"{schema}.{view} ({_short(exc, 160)})")
    return broken


def _checkpoint_close(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    wal = Path(str(path) + ".wal")
    if wal.exists():
        raise RuntimeError(f"{wal} remains after checkpoint: a connection to the new file is still open")


@contextmanager
def _stable_path(new_path: Path, dbt_work: Path) -> Iterator[Path]:
    """The new file under a path that is the same in every build: `<dbt_work>/current/<name>`, `current` being a
    symlink to the build's own folder. dbt hashes the profile's connection info (the database path included)
    into its partial-parsing state; a path that changed with every build id made each build re-parse the
    whole project (~3-4 s). Falls back to the real path where symlinks are not available."""
    link = dbt_work / "current"
    try:
        dbt_work.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(new_path.parent.resolve(), target_is_directory=True)
    except OSError:
        yield new_path
        return
    try:
        yield link / new_path.name
    finally:
        try:
            link.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------------------------- serving
#
# Layout (ptpulse/config.py): build/<build_id>/ holds one build's analytics.duckdb + analytics_deid.duckdb;
# build/served is a relative symlink to the served build's folder; $PTPULSE_HOME/analytics.duckdb and
# analytics_deid.duckdb are fixed relative symlinks into build/served/. Serving a build is ONE rename (a new
# symlink over build/served), so a crash at any moment leaves either the old pair or the new pair served,
# never one file of each. A reader that opened the old files keeps its snapshot after the old folder is
# removed (POSIX: an open file outlives its last name).

_BUILD_FOLDER = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{6}(-[a-z]+)?$")  # new_build_id(), plus -adopted / -stale


def _served_names(settings: Settings) -> tuple[Path, Path]:
    return settings.analytics_db, settings.analytics_deid_db


def _stable_target(settings: Settings, stable: Path) -> str:
    """What a stable path's symlink holds: relative, so a moved or restored home keeps working."""
    return os.path.relpath(settings.served_dir / stable.name, stable.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a power cut after a swap must not bring the old link back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def served_build_dir(settings: Settings) -> Optional[Path]:
    """The folder of the build served now (where build/served points), or None before the first build."""
    link = settings.served_dir
    if not link.is_symlink():
        return None
    target = settings.build_dir / os.readlink(link)
    return target if target.is_dir() else None


def _replace_with_symlink(path: Path, target: str) -> None:
    """Point `path` at `target` in one atomic step: a new symlink renamed over it (never a moment without)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def serve_build_dir(settings: Settings, folder: Path) -> None:
    """Serve the pair in `folder` (a build/<build_id>/ folder): the single atomic rename of build/served.
    The stable paths are linked first (a no-op once they exist; dangling only before the first build)."""
    link_stable_paths(settings)
    _replace_with_symlink(settings.served_dir, folder.name)


def link_stable_paths(settings: Settings) -> None:
    """The documented paths $PTPULSE_HOME/analytics.duckdb and analytics_deid.duckdb as fixed symlinks into
    build/served/ (created once; each replacement is atomic and points at content already served)."""
    for stable in _served_names(settings):
        want = _stable_target(settings, stable)
        if stable.is_symlink() and os.readlink(stable) == want:
            continue
        _replace_with_symlink(stable, want)


def adopt_served_files(settings: Settings) -> Optional[str]:
    """Move an installation whose served files are plain files in $PTPULSE_HOME (the layout before builds were
    served through build/served, a copied home, or a file put there by hand) into the layout. Returns the
    adopted folder's name, or None when there was nothing to adopt.

    Both files are hard-linked (same inode: open readers see no change) into build/<id>-adopted/, build/served
    is pointed at that folder, then each top-level name is replaced by its symlink to the same content. Every
    step is one rename and each leaves the same, consistent pair readable, so a crash mid-way is harmless.
    """
    stables = _served_names(settings)
    foreign = [p for p in stables
               if (p.exists() or p.is_symlink()) and not (p.is_symlink() and os.readlink(p) == _stable_target(settings, p))]
    served_ok = settings.served_dir.is_symlink()
    if not foreign and (served_ok or not settings.served_dir.exists()):
        if served_build_dir(settings) is not None:
            link_stable_paths(settings)
        return None
    for p in stables:
        wal = Path(str(p) + ".wal")
        if wal.exists():
            raise RuntimeError(
                f"{wal} exists: a process wrote {p.name} in place and did not close it. Close that process "
                f"(or open {p} read-write once and close it, which checkpoints the file), then build again.")
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    folder = settings.build_dir / f"{new_build_id()}-adopted"
    folder.mkdir()
    for p in stables:
        if p.exists():
            source = p.resolve()
            try:
                os.link(source, folder / p.name)
            except OSError:  # another file system, or no hard links: a copy is the same content
                shutil.copy2(source, folder / p.name)
    if settings.served_dir.exists() and not settings.served_dir.is_symlink():
        os.rename(settings.served_dir, settings.build_dir / f"{new_build_id()}-stale")  # removed as abandoned
    _replace_with_symlink(settings.served_dir, folder.name)  # first: the links below must never dangle
    link_stable_paths(settings)
    return folder.name


def remove_abandoned_builds(settings: Settings) -> list[str]:
    """Remove build/<build_id>/ folders left by killed or failed builds: every build folder except the served
    one (and never build/dbt or build/docs). Call under the pipeline lock, so no other build is in progress;
    readers still holding a removed file keep reading it until they close it."""
    if not settings.build_dir.is_dir():
        return []
    served = served_build_dir(settings)
    removed = []
    for child in sorted(settings.build_dir.iterdir()):
        if child.name.startswith(f".{settings.served_dir.name}.") and child.is_symlink():  # swap killed mid-way
            child.unlink(missing_ok=True)
            continue
        if child.is_symlink() or not child.is_dir() or not _BUILD_FOLDER.match(child.name):
            continue
        if served is not None and child.name == served.name:
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child.name)
    for stable in _served_names(settings):
        for tmp in stable.parent.glob(f".{stable.name}.*.tmp"):
            if tmp.is_symlink():
                tmp.unlink(missing_ok=True)
    return removed


def build(
    settings: Settings,
    progress: ProgressFn = None,
    before_swap: Optional[Callable[[Path], None]] = None,
    project_dir: Path = DBT_PROJECT_DIR,
    dbt_vars: Optional[dict] = None,
    keep_failed: bool = False,
) -> BuildResult:
    """Build a new analytics file and swap it over settings.analytics_db if every error-severity test passed."""
    from dbt.version import __version__ as dbt_version

    t0 = time.perf_counter()
    started = datetime.now()
    build_id = new_build_id()
    settings.ensure()
    work = settings.build_dir / build_id
    new_path = work / settings.analytics_db.name
    dbt_work = settings.build_dir / "dbt"  # stable target/ so partial parsing is reused across builds

    def fail(message: str, run: Optional[DbtRun] = None) -> BuildResult:
        if not keep_failed and served_build_dir(settings) != work:
            shutil.rmtree(work, ignore_errors=True)
        return BuildResult(
            ok=False, served_path=settings.analytics_db if settings.analytics_db.exists() else None,
            seconds=time.perf_counter() - t0, models=run.models if run else 0, tests=run.tests if run else 0,
            message=message, build_id=build_id, failures=run.failures if run else [],
            warnings=run.warnings if run else [], new_path=new_path if keep_failed else None)

    if not settings.raw_db.exists():
        return fail(f"{settings.raw_db} does not exist: ingest source files first (`ptpulse ingest FOLDER`).")
    try:  # under the pipeline lock: no other build is in progress, so any other build folder is abandoned
        adopt_served_files(settings)
        removed = remove_abandoned_builds(settings)
    except (OSError, RuntimeError) as exc:
        return fail(f"could not prepare {settings.build_dir} (the served files are unchanged): {exc}")
    work.mkdir(parents=True, exist_ok=True)

    if progress:
        progress("app state", 0, 1)
    con = duckdb.connect(str(new_path))
    try:
        copy_actions(settings.app_db, con, work)
        write_build_context(con, build_id)
    except sqlite3.Error as exc:
        con.close()
        return fail(f"could not read app state {settings.app_db}: {exc}")
    finally:
        try:
            con.close()
        except duckdb.Error:
            pass

    variables = dict(dbt_vars or {})
    with _stable_path(new_path, dbt_work) as dbt_target:
        run = run_dbt(["build"], dbt_target, settings.raw_db, dbt_work, project_dir=project_dir,
                      build_id=build_id, dbt_vars=variables or None, progress=progress)
    if not run.ok:
        return fail(run.message, run)

    try:
        con = duckdb.connect(str(new_path))
        try:
            drop_build_only_views(con)
            row_counts = _mart_row_counts(con)
            history = _previous_history(settings.analytics_db)
            con.execute("create schema if not exists meta")
            con.execute(BUILDS_DDL)
            if history:
                con.executemany("insert into meta.builds values (?, ?, ?, ?, ?, ?, ?, ?)", history)
            tests_json = {"passed": run.passed, "warned": len(run.warnings), "failed": len(run.failures),
                          "total": run.tests, "warnings": run.warnings, "failures": run.failures}
            con.execute("insert into meta.builds values (?, ?, ?, 'success', ?, ?, ?, ?)",
                        [build_id, started, datetime.now(), dbt_version, git_rev(),
                         json.dumps(row_counts), json.dumps(tests_json)])
        finally:
            con.close()
        if before_swap is not None:
            if progress:
                progress("before swap", 0, 1)
            before_swap(new_path)
        con = duckdb.connect(str(new_path))
        try:
            broken = broken_views(con)
        finally:
            con.close()
        if broken:
            raise RuntimeError("the new file has views that cannot be queried (not served): " + "; ".join(broken[:10]))
        _checkpoint_close(new_path)
        if progress:
            progress("de-identified twin", 0, 1)
        deid_path = work / settings.analytics_deid_db.name
        write_deidentified(new_path, deid_path)
        verify_deidentified(deid_path, settings.raw_db)  # names and values (identifiers of raw patients)
        if Path(str(deid_path) + ".wal").exists():
            raise RuntimeError(f"{deid_path}.wal remains after checkpoint")
        previous = served_build_dir(settings)
        serve_build_dir(settings, work)  # ONE rename serves the pair: analytics file and twin of this build
    except Exception as exc:  # noqa: BLE001 - any failure here must leave the served files as they were
        return fail(f"build {build_id} failed after dbt: {type(exc).__name__}: {exc}", run)
    if previous is not None and previous.name != build_id:
        shutil.rmtree(previous, ignore_errors=True)  # open readers keep their snapshot (POSIX unlink semantics)
    if progress:
        progress("served", 1, 1)
    return BuildResult(
        ok=True, served_path=settings.analytics_db, seconds=time.perf_counter() - t0, models=run.models,
        tests=run.tests, message=run.message, build_id=build_id, failures=[], warnings=run.warnings,
        row_counts=row_counts, removed_builds=removed)


def generate_docs(settings: Settings, out_dir: Optional[Path] = None, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """`dbt docs generate` against a private copy of the served file; returns the folder with index.html."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"{settings.analytics_db} does not exist: run `ptpulse build` first")
    out = out_dir or settings.build_dir / "docs"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.build_dir) as tmp:
        copy = Path(tmp) / settings.analytics_db.name
        shutil.copy2(settings.analytics_db, copy)
        run = run_dbt(["docs", "generate"], copy, settings.raw_db, out, project_dir=project_dir)
    if not (out / "target" / "catalog.json").exists():
        raise RuntimeError(f"dbt docs generate failed: {run.message}")
    return out / "target"
