"""`build()`: the steps of a build in order (ptpulse/build/__init__.py lists them), failing safe.

On any failure both served files are untouched and `BuildResult.message` names the failed model or test.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from ptpulse.build.app_state import copy_actions, write_build_context
from ptpulse.build.dbt_runner import DbtRun, run_dbt, stable_path
from ptpulse.build.finish import (
    BUILDS_DDL,
    broken_views,
    checkpoint_close,
    git_rev,
    mart_row_counts,
    previous_history,
)
from ptpulse.build.incremental import (
    StateHeld,
    close_state,
    export_mart_scopes,
    open_state,
    plan_build,
    record_state,
    start_from_served,
)
from ptpulse.build.serving import (
    TWIN_IDENTIFIERS,
    adopt_served_files,
    carry_twin_identifiers,
    new_build_id,
    record_verified_twin,
    remove_abandoned_builds,
    serve_build_dir,
    served_build_dir,
    verified_served_twin,
)
from ptpulse.core.config import DBT_PROJECT_DIR, Settings
from ptpulse.core.deid import verify_deidentified, write_deidentified
from ptpulse.core.progress import ProgressFn
from ptpulse.core.secrets import key_id

MART_SCOPES = "mart_scopes.duckdb"  # in the build folder, between dbt and the twin (export_mart_scopes)


# A practice's build runs every model, seed and data test, but not the dbt unit tests: those check the models' SQL
# on fixed fixture rows, not the practice's data, so they give the same answer every night (dbt's advice: unit
# tests in development and CI). `make test` runs them (tests/dbt/test_dbt_unit_tests.py). They were about a
# quarter of a small practice's build (28 s -> 21 s) and a fixed cost in every chain-scale night.
BUILD_ARGS = ["build", "--exclude-resource-type", "unit_test"]


@dataclass
class BuildResult:
    ok: bool
    served_path: Path | None
    seconds: float
    models: int
    tests: int
    message: str
    build_id: str
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    new_path: Path | None = None
    removed_builds: list[str] = field(default_factory=list)  # abandoned build folders removed by this build
    full_refresh: bool = True  # False: incremental, started from a copy of the served file (build/incremental.py)
    mode_reason: str = ""  # why full or incremental
    twin: dict = field(default_factory=dict)  # {"write": ..., "verify": ...}: what the twin step rewrote and scanned
    interrupted: bool = False  # stopped by Ctrl-C; `message` says whether anything was swapped


def build(
    settings: Settings,
    progress: ProgressFn = None,
    before_swap: Callable[[Path], None] | None = None,
    project_dir: Path = DBT_PROJECT_DIR,
    dbt_vars: dict | None = None,
    keep_failed: bool = False,
    full_refresh: bool = False,
    unit_tests: bool = False,
) -> BuildResult:
    """Build a new analytics file and swap it over settings.analytics_db if every error-severity test passed.
    `unit_tests` runs the dbt unit tests too (the test suite's tiny practice does; a practice's build does not).

    Ctrl-C (KeyboardInterrupt) at any step, dbt's included, is a result too (`interrupted`), never a traceback:
    the build's folder is removed and what was served stays served."""
    t0 = time.perf_counter()
    build_id = new_build_id()
    try:
        return _build(
            settings, build_id, t0, progress, before_swap, project_dir, dbt_vars, keep_failed, full_refresh, unit_tests
        )
    except KeyboardInterrupt:
        return _interrupted(settings, build_id, t0, keep_failed)


def _interrupted(settings: Settings, build_id: str, t0: float, keep_failed: bool) -> BuildResult:
    """The result of a build stopped by Ctrl-C, saying what is served now."""
    work = settings.build_dir / build_id
    served = served_build_dir(settings)
    if served is not None and served.name == build_id:  # stopped after the one rename that serves it
        message = f"interrupted after build {build_id} was served: it is the build served now"
    else:
        if not keep_failed:
            shutil.rmtree(work, ignore_errors=True)
        message = (
            "interrupted; the previous build is still served (nothing was swapped)"
            if settings.analytics_db.exists()
            else "interrupted; nothing was swapped (there is no earlier build, so nothing is served yet)"
        )
    return BuildResult(
        ok=False,
        served_path=settings.analytics_db if settings.analytics_db.exists() else None,
        seconds=time.perf_counter() - t0,
        models=0,
        tests=0,
        message=message,
        build_id=build_id,
        new_path=work / settings.analytics_db.name if keep_failed else None,
        interrupted=True,
    )


def _build(
    settings: Settings,
    build_id: str,
    t0: float,
    progress: ProgressFn,
    before_swap: Callable[[Path], None] | None,
    project_dir: Path,
    dbt_vars: dict | None,
    keep_failed: bool,
    full_refresh: bool,
    unit_tests: bool,
) -> BuildResult:
    from dbt.version import __version__ as dbt_version

    started = datetime.now()
    settings.ensure()
    work = settings.build_dir / build_id
    new_path = work / settings.analytics_db.name
    dbt_work = settings.build_dir / "dbt"  # stable target/ so partial parsing is reused across builds

    def fail(message: str, run: DbtRun | None = None) -> BuildResult:
        if not keep_failed and served_build_dir(settings) != work:
            shutil.rmtree(work, ignore_errors=True)
        return BuildResult(
            ok=False,
            served_path=settings.analytics_db if settings.analytics_db.exists() else None,
            seconds=time.perf_counter() - t0,
            models=run.models if run else 0,
            tests=run.tests if run else 0,
            message=message,
            build_id=build_id,
            failures=run.failures if run else [],
            warnings=run.warnings if run else [],
            new_path=new_path if keep_failed else None,
        )

    if not settings.raw_db.exists():
        return fail(f"{settings.raw_db} does not exist: ingest source files first (`ptpulse ingest FOLDER`).")
    try:  # under the pipeline lock: no other build is in progress, so any other build folder is abandoned
        adopt_served_files(settings)
        removed = remove_abandoned_builds(settings)
    except (OSError, RuntimeError) as exc:
        return fail(f"could not prepare {settings.build_dir} (the served files are unchanged): {exc}")
    work.mkdir(parents=True, exist_ok=True)

    try:  # the secret's public id: a rotated secret makes this build full (every patient_key changes)
        secret = key_id(settings)
    except (RuntimeError, OSError) as exc:
        return fail(f"could not read the pseudonym secret (the served files are unchanged): {exc}")
    plan = plan_build(
        settings.analytics_db,
        settings.raw_db,
        project_dir,
        dbt_vars,
        full_refresh,
        started,
        secret,
        state_db=settings.state_db,
    )
    if not plan.full:  # the served file's incremental marts: it is never written, a crash leaves it served
        if progress:
            progress("copy of the served build", 0, 1)
        try:
            start_from_served(settings.analytics_db, new_path)
        except (OSError, duckdb.Error) as exc:
            new_path.unlink(missing_ok=True)
            plan.full, plan.reason = True, f"could not copy the served file ({type(exc).__name__})"
            plan.state.full_refresh_at = started
    try:  # the state file is written in place from here: flagged until this build is served
        try:
            open_state(settings.state_db, plan.full, build_id)
        except StateHeld as held:  # a reader keeps the file: a full build writes a new one (the reader keeps its own)
            if plan.full:
                raise
            new_path.unlink(missing_ok=True)
            plan.full, plan.reason, plan.state.full_refresh_at = True, str(held), started
            open_state(settings.state_db, True, build_id)
    except (OSError, duckdb.Error, StateHeld) as exc:
        return fail(f"could not prepare the build state {settings.state_db} (the served files are unchanged): {exc}")

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
    with stable_path(new_path, dbt_work) as dbt_target:
        run = run_dbt(
            (["build"] if unit_tests else BUILD_ARGS) + (["--full-refresh"] if plan.full else []),
            dbt_target,
            settings.raw_db,
            dbt_work,
            project_dir=project_dir,
            dbt_vars=variables or None,
            progress=progress,
        )
    if run.interrupted:  # dbt returns Ctrl-C as its result: stop here as an interrupt anywhere else would
        raise KeyboardInterrupt
    if not run.ok:
        return fail(run.message, run)

    try:
        con = duckdb.connect(str(new_path))
        try:
            scopes = work / MART_SCOPES  # the keys the incremental marts rewrote: the twin patches those by key
            export_mart_scopes(con, scopes)  # before record_state drops them with the other hand-off tables
            record_state(con, plan.state)  # then: it drops the incremental models' hand-off tables
            row_counts = mart_row_counts(con)
            history = previous_history(settings.analytics_db)
            con.execute(BUILDS_DDL)
            if history:
                con.executemany("insert into meta.builds values (?, ?, ?, ?, ?, ?, ?, ?)", history)
            tests_json = {
                "passed": run.passed,
                "warned": len(run.warnings),
                "failed": len(run.failures),
                "total": run.tests,
                "warnings": run.warnings,
                "failures": run.failures,
            }
            con.execute(
                "insert into meta.builds values (?, ?, ?, 'success', ?, ?, ?, ?)",
                [
                    build_id,
                    started,
                    datetime.now(),
                    dbt_version,
                    git_rev(),
                    json.dumps(row_counts),
                    json.dumps(tests_json),
                ],
            )
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
        checkpoint_close(new_path)
        if progress:
            progress("de-identified twin", 0, 1)
        deid_path = work / settings.analytics_deid_db.name
        # incremental night: start from the served, verified twin and replace only the rows that changed; a full
        # build (or a served twin without the verified mark of the current rule) writes and scans it whole
        base = None if plan.full else verified_served_twin(settings)
        twin = {
            "write": write_deidentified(
                new_path,
                deid_path,
                config=settings.duckdb_config(preserve_insertion_order=False),
                base=base[0] if base else None,
                scopes=scopes,
            )
        }
        identifiers = work / TWIN_IDENTIFIERS  # raw's patient identifiers, for this check and the next night's
        if base:  # a night extends the served build's by the loads since; a full build reads raw whole
            carry_twin_identifiers(settings, identifiers)
        if progress:
            progress("de-identified twin check", 0, 1)
        # names over the whole file; values: what the served twin does not hold (of a mart patched by key: its
        # rows in the scope), and all of them against identifiers loaded since it was verified
        # (core/deid.py identifier_problems)
        twin["verify"] = verify_deidentified(
            deid_path,
            settings.raw_db,
            base=base[0] if base else None,
            since_load_id=base[1] if base else None,
            scopes=scopes,
            scoped=twin["write"]["scoped"],
            identifiers=identifiers,
            config=settings.duckdb_config(preserve_insertion_order=False),
        )
        scopes.unlink(missing_ok=True)  # plumbing: never served
        record_verified_twin(work, plan.state.raw_load_id)
        if Path(str(deid_path) + ".wal").exists():
            raise RuntimeError(f"{deid_path}.wal remains after checkpoint")
        previous = served_build_dir(settings)
        serve_build_dir(settings, work)  # ONE rename serves the pair: analytics file and twin of this build
    except Exception as exc:  # noqa: BLE001 - any failure here must leave the served files as they were
        return fail(f"build {build_id} failed after dbt: {type(exc).__name__}: {exc}", run)
    try:  # the state now matches the served build; a failure here only makes the next build full
        close_state(settings.state_db, plan.state)
    except (OSError, duckdb.Error) as exc:
        run.warnings.append(f"build state not recorded ({type(exc).__name__}): the next build is a full rebuild")
    if previous is not None and previous.name != build_id:
        shutil.rmtree(previous, ignore_errors=True)  # open readers keep their snapshot (POSIX unlink semantics)
    if progress:
        progress("served", 1, 1)
    return BuildResult(
        ok=True,
        served_path=settings.analytics_db,
        seconds=time.perf_counter() - t0,
        models=run.models,
        tests=run.tests,
        message=run.message,
        build_id=build_id,
        failures=[],
        warnings=run.warnings,
        row_counts=row_counts,
        removed_builds=removed,
        full_refresh=plan.full,
        mode_reason=plan.reason,
        twin=twin,
    )
