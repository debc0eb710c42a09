"""One analyst query in its own process: both sides of the process boundary.

App side, `run_in_worker`: makes a private work folder (request, DuckDB spill folder, result), hands it to a
worker process (`python -m app.lib.sql_worker`, its own session) and watches it every 20 ms: SIGKILL when the
statement passes the wall-clock limit or the worker's resident memory passes the hard cap. It returns the
row-capped result (Arrow, read into pandas) or raises SqlRefused with a message that says what limit was hit
and what to do. The worker's peak RSS is reported either way: its own high-water mark (VmHWM, reset by exec), never
wait4's ru_maxrss, which on Linux also counts the app's memory at the fork that started the worker.

Worker side, `main`: caps its own address space (RLIMIT_AS, so an allocation DuckDB does not count, such as
one 1.5 GB string, fails at once instead of growing), lowers its priority, re-checks the statement, opens the
twin with `open_locked` (for a clinic-scoped analyst: only their clinics' rows, sql_guard.scope_twin), runs the
query, and writes the result as an Arrow IPC file. The worker's limits bound only the worker, so what crosses to
the app is made flat and measured first: lists, structs, maps, unions, blobs and any other non-scalar column
are rendered as text by DuckDB (pandas would hold a nested cell as tens of Python objects: ~30x its Arrow
size), every text cell is cut after Limits.cell_chars characters (marked CUT_MARK; the page says so), and the
result is refused when what the app will hold of it (pandas frame, the browser's copy, the CSV download) would
pass Limits.result_mb (`_held_bytes`; Python strings cost ~50 bytes each plus up to 4 a character, which
Arrow's own size does not show). String values and error
messages are scrubbed of server paths (a second lock behind the statement check's refusals), after nested
values became text and before cells are cut (so no path is left half-scrubbed at a cut).
A fresh process per query is simple and cannot leak state between analysts. To keep the start-up (Python,
duckdb and pyarrow imports: ~0.5 s) off the analyst's wait, one *spare* worker is started ahead of time: it
imports, then blocks reading its folder's path from stdin; each query takes the spare, and the next one is
started when the query is done (so its imports do not compete with the query for CPU).
A spare has seen no query and holds no connection; it exits when the app closes its stdin (or exits).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import duckdb

from app.lib.sql_guard import (
    CATALOG,
    MAX_WORKERS,
    Limits,
    NotDeidentified,
    Sandbox,
    SqlRefused,
    SqlResult,
    attach_twin,
    check_shown_tables,
    check_statement,
    scope_twin,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.02
STARTUP_S = 5.0  # allowance for start-up (imports, attach, verification) before the statement's clock starts
SCRUBBED = "<server path>"
CUT_MARK = " …[cut]"  # ends a text cell cut at Limits.cell_chars characters
# DuckDB types that cross to the app as they are (one fixed-size value or one string a cell); every other
# type (LIST, ARRAY, STRUCT, MAP, UNION, BLOB, BIT, BIGNUM, ...) is rendered as text in the worker.
FLAT_TYPES = frozenset(
    {
        "boolean",
        "tinyint",
        "smallint",
        "integer",
        "bigint",
        "hugeint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "uhugeint",
        "float",
        "double",
        "decimal",
        "date",
        "time",
        "time with time zone",
        "timestamp",
        "timestamp_s",
        "timestamp_ms",
        "timestamp_ns",
        "timestamp with time zone",
        "interval",
        "uuid",
        "enum",
        "null",
        "varchar",
    }
)


# ---------------------------------------------------------------------------------------------- app side
def _memory_mb(pid: int | str) -> tuple[float, float]:
    """(resident memory, its high-water mark) of `pid` in MB; (0, 0) when unknown, e.g. not on Linux.
    VmHWM belongs to the process's own address space since its exec, so it never counts the parent's."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, kb = line.split()[:2]
                    found[name] = int(kb) / 1024
    except (OSError, ValueError):
        pass
    return found.get("VmRSS:", 0.0), found.get("VmHWM:", 0.0)


_spare_lock = threading.Lock()
_spare: subprocess.Popen | None = None


def _spawn() -> subprocess.Popen:
    """A new worker that imports everything, then waits for the path of its work folder on stdin."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "app.lib.sql_worker"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _start(workdir: Path) -> subprocess.Popen:
    """Hand `workdir` to the spare worker (or a new one if there is no live spare)."""
    global _spare
    with _spare_lock:
        proc, _spare = _spare, None
    if proc is None or proc.poll() is not None:
        proc = _spawn()
    try:
        proc.stdin.write(f"{workdir}\n".encode())
        proc.stdin.close()
    except BrokenPipeError:  # the spare died while waiting (e.g. killed by an operator): use a fresh one
        proc.wait()
        proc = _spawn()
        proc.stdin.write(f"{workdir}\n".encode())
        proc.stdin.close()
    return proc


def _refill() -> None:
    """Start the next spare once a query is done (not while it runs: its imports would compete for CPU)."""
    global _spare
    with _spare_lock:
        if _spare is None or _spare.poll() is not None:
            _spare = _spawn()


def _exit_code(status: int) -> int:
    return os.waitstatus_to_exitcode(status)


def _watch(proc: subprocess.Popen, workdir: Path, limits: Limits, started: float) -> tuple[str | None, float]:
    """Wait for the worker; kill it on the time or memory limit. Returns (reason killed or None, the peak
    resident memory seen in MB)."""
    deadline = started + STARTUP_S + limits.time_limit_s
    ready, peak = False, 0.0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = _exit_code(status)
            return None, peak
        now = time.perf_counter()
        if not ready and (workdir / "ready").exists():
            ready, deadline = True, now + limits.time_limit_s
        rss, high_water = _memory_mb(proc.pid)
        peak = max(peak, rss, high_water)
        reason = "time" if now > deadline else "memory" if rss > limits.rss_cap_mb else None
        if reason:
            _kill(proc)
            return reason, peak
        time.sleep(POLL_S)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the worker's process group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status, _ = os.wait4(proc.pid, 0)
    proc.returncode = _exit_code(status)


def _message(kind: str, limits: Limits, detail: str = "") -> str:
    return {
        "time": f"The query ran longer than {limits.time_limit_s:g} s and was stopped (its worker process was "
        "ended; other users are not affected). Aggregate more, add a WHERE clause or a LIMIT.",
        "memory": f"The query needed more memory than the SQL page allows ({limits.memory_limit_mb} MB for the "
        "query) and was stopped (other users are not affected). Aggregate earlier, select fewer or "
        "narrower columns, or add a WHERE clause.",
        "temp": f"The query needed more than {limits.temp_limit_mb} MB of scratch disk and was stopped. "
        "Aggregate earlier, sort fewer rows, or add a WHERE clause.",
        "too_large": f"The result is larger than {limits.result_mb} MB even within the {limits.row_cap:,}-row "
        "cap; select fewer or narrower columns.",
        "crashed": f"The query's worker process stopped unexpectedly ({detail}), most likely because it ran out "
        f"of memory ({limits.memory_limit_mb} MB allowed). Aggregate earlier or add a WHERE clause.",
    }.get(kind, detail)


def _read_result(path: Path):
    """The worker's Arrow file as pandas, typed like DuckDB's own .df() (decimals as floats, dates as
    datetime64)."""
    import pyarrow as pa
    import pyarrow.ipc

    with pa.memory_map(str(path)) as source:
        table = pyarrow.ipc.open_file(source).read_all()
    fields = [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
    table = table.cast(pa.schema(fields))
    return table.to_pandas(date_as_object=False)


def run_in_worker(deid_path: Path, statement: str, limits: Limits, clinics: Sequence[str] | None = None) -> SqlResult:
    """Run one checked statement in a fresh worker process under `limits`; see the module docstring.
    `clinics`: the analyst's clinic scope (None = every clinic)."""
    workdir = Path(tempfile.mkdtemp(prefix="ptpulse-sql-"))  # mode 0700: the query text stays private
    proc = None
    try:
        (workdir / "request.json").write_text(
            json.dumps(
                {
                    "sql": statement,
                    "deid_path": str(Path(deid_path).resolve()),
                    "served_path": str(Path(deid_path).absolute()),
                    "limits": asdict(limits),
                    "clinics": None if clinics is None else [str(c) for c in clinics],
                }
            )
        )
        started = time.perf_counter()
        proc = _start(workdir)
        killed, peak = _watch(proc, workdir, limits, started)
        seconds = time.perf_counter() - started
        if killed:
            raise SqlRefused(_message(killed, limits), peak)
        status_file = workdir / "status.json"
        if not status_file.exists():
            how = (
                f"signal {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0
                else f"exit code {proc.returncode}"
            )
            raise SqlRefused(_message("crashed", limits, how), peak)
        status = json.loads(status_file.read_text())
        peak = max(peak, status.get("peak_rss_mb", 0.0))  # its growth after the watcher's last look
        if status["kind"] != "ok":
            raise SqlRefused(_message(status["kind"], limits, status.get("message", "")), peak)
        frame = _read_result(workdir / "result.arrow")
        return SqlResult(frame, status["truncated"], seconds, peak, status.get("cells_cut", False))
    finally:
        if proc is not None and proc.returncode is None:  # interrupted while watching: never leave it running
            _kill(proc)
        shutil.rmtree(workdir, ignore_errors=True)
        _refill()


# ------------------------------------------------------------------------------------------- worker side
def open_locked(
    deid_path: Path,
    limits: Limits,
    temp_dir: Path,
    clinics: Sequence[str] | None = None,
    statement: str = "",
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB under `limits` with the twin attached READ_ONLY and verified, then no file access,
    no extension autoloading, no Python replacement scans, and a locked configuration.

    With `clinics` (a clinic-scoped analyst) the twin is never left attached: an in-memory copy holding only
    their clinics' rows of the tables `statement` names takes its place (sql_guard.scope_twin), before the
    configuration is locked."""
    con = duckdb.connect(
        ":memory:",
        config={
            "threads": limits.threads,
            "memory_limit": f"{limits.memory_limit_mb}MB",
            "temp_directory": str(temp_dir),
            "max_temp_directory_size": f"{limits.temp_limit_mb}MB",
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    try:
        if clinics is None:
            attach_twin(con, deid_path)
        else:
            scope_twin(con, deid_path, clinics, statement)
        con.execute(f"use {CATALOG}")
        con.execute("set python_enable_replacements = false")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _scrubber(paths: list[str]):
    """A function that replaces every known server path in a string (longest first)."""
    secrets = sorted({p for p in paths if p and len(p) > 1}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, SCRUBBED)
        return text

    return scrub, secrets


def _scrub_table(table, secrets: list[str]):
    """Replace server paths inside the result's string columns (Arrow compute, whole columns at once); nested
    values reach it as text (`_flat_result`), so it sees them too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            for secret in secrets:
                column = pc.replace_substring(column, pattern=secret, replacement=SCRUBBED)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _flat_result(con: duckdb.DuckDBPyConnection, statement: str, limits: Limits, keep_chars: int):
    """The statement's first row_cap + 1 rows as an Arrow table with only flat columns: a column of a type
    outside FLAT_TYPES is cast to VARCHAR by DuckDB (its own text, e.g. `[1, 2]`, `{'a': 1}`), and every text
    cell longer than `keep_chars` characters is cut there (and marked), so no huge cell is built in Arrow.
    Columns are taken by position (`#n`): result names may repeat."""
    rel = con.sql(statement)
    names, kinds = rel.columns, rel.types
    text = [k.id == "varchar" or k.id not in FLAT_TYPES for k in kinds]
    as_text = rel.project(  # VARCHAR too: a JSON column (VARCHAR's id) must not be cut as JSON
        ", ".join(
            f'cast(#{i} as varchar) as "c{i}"' if is_text else f'#{i} as "c{i}"'
            for i, is_text in enumerate(text, start=1)
        )
    )
    mark = CUT_MARK.replace("'", "''")
    cut = as_text.project(
        ", ".join(
            f"case when length(#{i}) > {keep_chars} then left(#{i}, {keep_chars}) || '{mark}' else #{i} end as \"c{i}\""
            if is_text
            else f'#{i} as "c{i}"'
            for i, is_text in enumerate(text, start=1)
        )
    )
    return cut.limit(limits.row_cap + 1).to_arrow_table().rename_columns(names)


def _is_text(kind) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _cut_cells(table, chars: int):
    """Cut every text cell longer than `chars` characters to `chars` + CUT_MARK; returns (table, whether any
    cell is cut: here, or already in DuckDB and then shortened below `chars` by scrubbing)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns, cut = [], False
    for column in table.columns:
        if _is_text(column.type):
            long = pc.greater(pc.utf8_length(column), chars)
            if pc.any(long).as_py():
                short = pc.binary_join_element_wise(pc.utf8_slice_codeunits(column, 0, chars), CUT_MARK, "")
                column = pc.if_else(long, short, column)
            cut = cut or bool(pc.any(pc.ends_with(column, pattern=CUT_MARK)).as_py())
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names), cut


def _held_bytes(table) -> int:
    """About what the app process holds for `table`: its pandas frame (`_read_result`), the copy st.dataframe
    sends to the browser (Arrow, about the table's own size) and the CSV download (`ui.table`).
    The frame's text is counted as one Python str a cell (49 bytes + 1 a character when ASCII, at most 76 + 4
    a character otherwise) plus its pointer, as pandas 2 holds it (pandas 3 keeps text in Arrow, less);
    numbers, dates and timestamps 8 bytes a cell (decimals become floats); other types (times, intervals) as
    Python objects, 96 bytes a cell over their Arrow size. The CSV: text's UTF-8 bytes plus quotes and a comma,
    24 characters for any other cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in table.columns:
        kind, rows = column.type, len(column)
        if _is_text(kind):
            chars = pc.utf8_length(column)
            utf8 = pc.binary_length(column)
            per_cell = pc.if_else(pc.equal(chars, utf8), pc.add(chars, 49), pc.add(pc.multiply(chars, 4), 76))
            frame = (pc.sum(per_cell).as_py() or 0) + 8 * rows
            csv = (pc.sum(utf8).as_py() or 0) + 3 * rows
        elif (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_date(kind)
            or pa.types.is_timestamp(kind)
            or pa.types.is_duration(kind)
            or pa.types.is_dictionary(kind)
            or pa.types.is_null(kind)
        ):
            frame, csv = max(column.nbytes, 8 * rows), 24 * rows
        else:
            frame, csv = column.nbytes + 96 * rows, 24 * rows
        total += frame + column.nbytes + csv
    return total


def _write_status(workdir: Path, **status) -> None:
    tmp = workdir / "status.json.tmp"
    tmp.write_text(json.dumps({**status, "peak_rss_mb": _memory_mb("self")[1]}))
    os.replace(tmp, workdir / "status.json")


def main() -> None:
    """Import everything, wait for a work folder on stdin (empty line / EOF: exit), run its request."""
    import resource

    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - imported before the wait, used by _scrub_table
    import pyarrow.ipc

    line = sys.stdin.readline().strip()
    if not line:
        return
    workdir = Path(line)
    request = json.loads((workdir / "request.json").read_text())
    limits = Limits(**request["limits"])
    cap = limits.address_space_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    os.nice(5)  # the app's own threads come first on a shared machine
    deid_path = Path(request["deid_path"])
    served = Path(request.get("served_path") or deid_path)  # the path as configured (a link to the build)
    scrub, secrets = _scrubber(
        [
            str(deid_path),
            str(deid_path.parent),
            str(served),
            str(served.parent),
            str(workdir),
            str(REPO_ROOT),
            os.path.expanduser("~"),
            tempfile.gettempdir(),
        ]
    )
    try:
        statement = check_statement(request["sql"])  # the worker does not trust its caller
        os.chdir(deid_path.parent)
        con = open_locked(Path(deid_path.name), limits, workdir / "spill", request.get("clinics"), statement)
        check_shown_tables(con, statement)  # SHOW <name> only of a table or view: never of a setting
        (workdir / "ready").touch()
        # cut in DuckDB with room for a whole path past the cut, so scrubbing sees every path the cell shows
        keep = limits.cell_chars + max((len(s) for s in secrets), default=0) + 1
        table = _flat_result(con, statement, limits, keep)
        truncated = table.num_rows > limits.row_cap
        table = _scrub_table(table.slice(0, limits.row_cap), secrets)
        table, cells_cut = _cut_cells(table, limits.cell_chars)
        if _held_bytes(table) > limits.result_mb * 2**20:
            return _write_status(workdir, kind="too_large")
        with pa.OSFile(str(workdir / "result.arrow"), "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        _write_status(workdir, kind="ok", truncated=truncated, cells_cut=cells_cut)
    except (SqlRefused, NotDeidentified) as exc:
        _write_status(workdir, kind="refused", message=scrub(str(exc)))
    except duckdb.OutOfMemoryException as exc:
        _write_status(workdir, kind="temp" if "max_temp_directory_size" in str(exc) else "memory")
    except MemoryError:
        _write_status(workdir, kind="memory")
    except duckdb.Error as exc:
        _write_status(workdir, kind="error", message=f"DuckDB error: {scrub(str(exc))[:2000]}")
    except Exception as exc:  # noqa: BLE001 - any failure becomes the analyst's message, never a traceback
        kind = "memory" if "memory" in type(exc).__name__.lower() else "error"
        _write_status(workdir, kind=kind, message=f"The query failed: {type(exc).__name__}: {scrub(str(exc))[:2000]}")


if __name__ == "__main__":
    main()


_slots = threading.BoundedSemaphore(MAX_WORKERS)


def run_readonly(
    sandbox: Sandbox,
    sql: str,
    row_cap: int | None = None,
    time_limit_s: float | None = None,
    clinics: Sequence[str] | None = None,
) -> SqlResult:
    """Check one analyst query here, then run it in a fresh, limited worker process; `clinics` is the
    analyst's clinic scope (None = every clinic): a scoped analyst's worker holds no other clinic's row."""

    statement = check_statement(sql)
    limits = sandbox.limits
    overrides = {k: v for k, v in (("row_cap", row_cap), ("time_limit_s", time_limit_s)) if v is not None}
    if overrides:
        limits = replace(limits, **overrides)
    if not _slots.acquire(timeout=limits.time_limit_s):
        raise SqlRefused(f"{MAX_WORKERS} analyst queries are already running; try again in a few seconds.")
    try:
        return run_in_worker(sandbox.path, statement, limits, clinics)
    finally:
        _slots.release()
