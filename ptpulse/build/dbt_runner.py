"""Step 3 of a build: dbt in-process against the new file, and the summary of its node results.

dbt's flags and adapter state are process-global, so runs are serialised (`_DBT_LOCK`) and dbt-duckdb's
cached DuckDB instance is closed after each run (the file must be reopened and renamed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ptpulse.core.config import DBT_PROJECT_DIR, Settings, scoped_environ
from ptpulse.core.progress import ProgressFn
from ptpulse.core.secrets import ensure_key

# dbt runs in-process; its flags and adapter state are process-global, so builds never overlap.
_DBT_LOCK = threading.Lock()

# This process's alias folder (`_alias_root`): (pid, path, the open lock file that reserves it)
_ALIAS: tuple[int, Path, object] | None = None
_PARSE_STATE = "partial_parse.msgpack"
_PARSE_PROJECT = "partial_parse.project"  # the project folder the parse state was read from

# dbt's per-node events that carry the node's `index` of dbt's total (`total`; `num_models` on test results): its
# "12 of 80 START ..." and result lines, fired before the node's `NodeFinished`
_NODE_COUNT_EVENTS = frozenset(
    {
        "LogStartLine",
        "LogModelResult",
        "LogTestResult",
        "LogSeedResult",
        "LogSnapshotResult",
        "LogFunctionResult",
        "LogFreshnessResult",
        "LogNodeNoOpResult",  # exposures, saved queries
        "SkippingDetails",
        "LogSkipBecauseError",
    }
)


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
    interrupted: bool = False  # Ctrl-C (KeyboardInterrupt) stopped dbt: nothing it wrote may be served


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


def dbt_env(target_file: Path, raw_db: Path, work_dir: Path, state_read_only: bool = False) -> dict[str, str]:
    """The environment dbt_project/profiles.yml reads: paths (the build state file is the one beside raw_db, attached
    read-only for a command that must not write it while a build may), and DuckDB's memory budget and spill folder
    (`settings:`) from the home holding raw_db; the spill folder is fixed so the profile, which dbt hashes
    into its partial-parsing state, is the same in every build."""
    duckdb_config = Settings(home=Path(raw_db).parent).duckdb_config(preserve_insertion_order=False, folder="dbt")
    return {
        "PTPULSE_BUILD_TARGET": str(target_file),
        "PTPULSE_RAW_DB": str(raw_db),
        "PTPULSE_STATE_DB": str(Settings(home=Path(raw_db).parent).state_db),
        "PTPULSE_STATE_READ_ONLY": "true" if state_read_only else "false",
        "PTPULSE_DBT_TARGET_PATH": str(work_dir / "target"),
        "PTPULSE_DUCKDB_MEMORY_LIMIT": str(duckdb_config["memory_limit"]),
        "PTPULSE_DUCKDB_TEMP_DIR": str(duckdb_config["temp_directory"]),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def run_dbt(
    args: list[str],
    target_file: Path,
    raw_db: Path,
    work_dir: Path,
    project_dir: Path = DBT_PROJECT_DIR,
    dbt_vars: dict | None = None,
    progress: ProgressFn = None,
    expected_nodes: int = 0,
    state_read_only: bool = False,
) -> DbtRun:
    """Run one dbt command in-process against `target_file`; summarise the node results. `state_read_only`: attach
    the build state file read-only (a command that only reads, beside builds that write it)."""
    from dbt.cli.main import dbtRunner

    work_dir.mkdir(parents=True, exist_ok=True)
    full_args = list(args) + [
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--log-path",
        str(work_dir / "logs"),
        "--target-path",
        str(work_dir / "target"),
        "--quiet",
    ]
    if dbt_vars:
        full_args += ["--vars", json.dumps(dbt_vars)]
    # dbt's own count of the nodes it runs, the N of its "12 of N" lines: each node's start and result events
    # carry it (`total`; `dbt build` adds the selected unit tests to it once it starts running nodes, so its
    # opening `ConcurrencyLine` count is too low). Each `NodeFinished` is one node done.
    count = {"done": 0, "total": expected_nodes}

    def on_event(event) -> None:
        if not progress:
            return
        name = event.info.name
        if name in _NODE_COUNT_EVENTS:
            total = getattr(event.data, "total", 0) or getattr(event.data, "num_models", 0) or 0
            count["total"] = max(count["total"], int(total))
        elif name == "ConcurrencyLine":  # before the first node: dbt's count so far (a lower bound)
            count["total"] = max(count["total"], int(getattr(event.data, "node_count", 0) or 0))
        elif name == "NodeFinished":
            node = getattr(event.data, "node_info", None)
            if node is not None and getattr(node, "materialized", "") == "ephemeral":
                return  # dbt does not count ephemeral models among its N
            count["done"] += 1
            label = getattr(node, "node_name", "") if node else ""
            progress(f"dbt {label}", count["done"], max(count["total"], count["done"]))

    env = dbt_env(target_file, raw_db, work_dir, state_read_only)
    try:  # the pseudonym secret's PATH only (ptpulse/core/secrets.py); created on the first build
        env["PTPULSE_PSEUDONYM_KEY_FILE"] = str(ensure_key(Settings(home=Path(raw_db).parent)))
    except (RuntimeError, OSError) as exc:
        return DbtRun(False, 0, 0, 0, [], [], [str(exc)], f"dbt build failed: {exc}", {})
    t0 = time.perf_counter()
    from dbt_common.events.functions import capture_stdout_logs, stop_capture_stdout_logs

    # What dbt prints (errors only, --quiet) is held until it ends: after a Ctrl-C it is its cancelled queries
    # and a Python traceback, which are dropped (dbt.log under --log-path keeps them); otherwise it is printed
    console = io.StringIO()
    with _DBT_LOCK:
        aliased = _through_alias(Path(raw_db).parent, env, work_dir / "target", project_dir)
        with scoped_environ(aliased):
            capture_stdout_logs(console)
            try:
                res = dbtRunner(callbacks=[on_event]).invoke(full_args)
            finally:
                stop_capture_stdout_logs()
                _release_dbt_duckdb()
        _keep_parse_state(work_dir / "target", project_dir)
    run = summarise(res, time.perf_counter() - t0)
    if console.getvalue() and not run.interrupted:
        sys.stdout.write(console.getvalue())
        sys.stdout.flush()
    return run


def _alias_root() -> Path | None:
    """A folder no other live process uses, the same for every run of this process: `<tmp>/ptpulse-dbt-<uid>/
    slot-<k>`, the first slot whose lock file this process can lock (held until it exits). A process started
    while no other holds slot 0 gets slot 0 again, so a home's parse state carries over between CLI runs.
    A forked child locks its own slot. None where locks or symlinks are not available."""
    global _ALIAS
    if _ALIAS is not None and _ALIAS[0] == os.getpid():
        return _ALIAS[1]
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    root = Path(tempfile.gettempdir()) / f"ptpulse-dbt-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        mine = root.lstat()
        if not root.is_dir() or root.is_symlink() or mine.st_uid != os.getuid() or mine.st_mode & 0o077:
            return None  # someone else's folder: links there could be re-pointed under us
        for slot in range(64):
            lock = open(root / f"slot-{slot}.lock", "a")  # noqa: SIM115 - held open for the process's life
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            _ALIAS = (os.getpid(), root / f"slot-{slot}", lock)
            return _ALIAS[1]
    except OSError:
        return None
    return None


def _through_alias(home: Path, env: dict[str, str], target_dir: Path, project_dir: Path) -> dict[str, str]:
    """`env` with every path under `home` spelled through this process's alias, a symlink to `home`, and the
    home's parse state made safe to use (`_prepare_parse_state`).

    Why: dbt hashes the profile's connection info (database, attached raw file, spill folder, key file: all
    paths under the home) into its partial-parse state, so each new home re-parsed the whole project (~2.5 s of
    a small build; the test suite makes ~100 homes). Through the alias those paths are the same for every home
    this process builds, so a home without parse state can start from the last one this slot wrote. Under
    `_DBT_LOCK`."""
    alias = _alias_root()
    _prepare_parse_state(target_dir, project_dir, alias)
    if alias is None:
        return env
    home = Path(os.path.normpath(home.absolute()))
    try:
        staged = alias.with_name(alias.name + ".new")
        if staged.is_symlink() or staged.exists():
            staged.unlink()
        staged.symlink_to(home, target_is_directory=True)
        os.replace(staged, alias)
    except OSError:
        return env
    out = dict(env)
    for key, value in env.items():
        path = Path(os.path.normpath(value)) if os.path.isabs(value) else None
        if path is not None and path.is_relative_to(home):  # spelled as given: `current/` must stay a symlink
            out[key] = str(alias / path.relative_to(home))
    return out


def _project_key(project_dir: Path) -> str:
    return str(Path(project_dir).resolve())


def _prepare_parse_state(target_dir: Path, project_dir: Path, alias: Path | None) -> None:
    """dbt compares every project file's hash and the vars with its saved parse state and re-parses what differs,
    but not the folder the files were read from: a state saved from another copy of the project (a moved install,
    a new venv, a test's copy) still points its seeds there, and the build fails or reads the wrong files. So the
    state is kept with the project folder it came from (`partial_parse.project`) and dropped when that differs;
    a home without state starts from its slot's last state of the same folder."""
    own = target_dir / _PARSE_STATE
    marker = target_dir / _PARSE_PROJECT
    try:
        if own.exists() and (not marker.exists() or marker.read_text() != _project_key(project_dir)):
            own.unlink()
        last = _slot_parse_state(alias, project_dir) if alias is not None else None
        if not own.exists() and last is not None and last.exists():
            target_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(last, own)
            marker.write_text(_project_key(project_dir))
    except OSError:
        own.unlink(missing_ok=True)


def _slot_parse_state(alias: Path, project_dir: Path) -> Path:
    """Where the slot keeps its last parse state of the project in `project_dir`."""
    folder = hashlib.sha256(_project_key(project_dir).encode()).hexdigest()[:16]
    return alias.with_name(f"{alias.name}.{folder}.parse")


def _keep_parse_state(target_dir: Path, project_dir: Path) -> None:
    """Record which project folder the parse state this run wrote belongs to, and keep a copy for the next new
    home of this process (`_through_alias`)."""
    own = target_dir / _PARSE_STATE
    if not own.exists():
        return
    alias = _alias_root()
    try:
        (target_dir / _PARSE_PROJECT).write_text(_project_key(project_dir))
        if alias is not None:
            kept = _slot_parse_state(alias, project_dir)
            staged = kept.with_name(kept.name + ".new")
            shutil.copyfile(own, staged)
            os.replace(staged, kept)
    except OSError:
        pass


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
    if isinstance(res.exception, KeyboardInterrupt):  # dbtRunner returns Ctrl-C as the run's exception
        message = "dbt build interrupted (Ctrl-C)"
        return DbtRun(False, models, tests, passed, failures, warnings, errors, message, timings, interrupted=True)
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


@contextmanager
def stable_path(new_path: Path, dbt_work: Path) -> Iterator[Path]:
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


def generate_docs(settings: Settings, out_dir: Path | None = None, project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """`dbt docs generate` against a private copy of the served file; returns the folder with index.html."""
    if not settings.analytics_db.exists():
        raise FileNotFoundError(f"{settings.analytics_db} does not exist: run `ptpulse build` first")
    out = out_dir or settings.build_dir / "docs"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.build_dir) as tmp:
        copy = Path(tmp) / settings.analytics_db.name
        shutil.copy2(settings.analytics_db, copy)
        run = run_dbt(["docs", "generate"], copy, settings.raw_db, out, project_dir=project_dir, state_read_only=True)
    if not (out / "target" / "catalog.json").exists():
        raise RuntimeError(f"dbt docs generate failed: {run.message}")
    return out / "target"
