"""The `ptpulse` command line. Thin: parse, take the lock where needed, call the library, print.

The only module that draws with rich: library code reports through a `ProgressFn` callback
(ptpulse/core/progress.py) and returns data (ingestion/status.py), rendered here.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ptpulse.core.config import SettingError, Settings
from ptpulse.core.config import get_settings as _get_settings
from ptpulse.core.lock import PipelineBusy, pipeline_lock


def _flags_without_a_type() -> None:
    """Help shows a boolean option as a plain flag (`--json`), not `--json <bool>`: typer's rich help gives every
    option its type, a flag's too (typer 0.29), though a flag takes no value. Patched once, for every command."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_ptpulse_flag", False):  # another typer: its own help, unpatched
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else original(self, ctx)

    display_type_rich._ptpulse_flag = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()

app = typer.Typer(
    help="PT Pulse: referral-to-discharge analytics for outpatient physical therapy practices.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

HomeOpt = typer.Option(None, "--home", help="Data folder (default: $PTPULSE_HOME or ./data).")
WaitOpt = typer.Option(0.0, "--wait", help="Seconds to wait for another pipeline command to finish.")
FullRefreshOpt = typer.Option(
    False,
    "--full-refresh",
    help="Rebuild the incremental tables from all of raw.duckdb (otherwise only what new loads touched; a full "
    "refresh also happens by itself weekly and when contracts or models change).",
)


class Scale(StrEnum):
    small = "small"
    medium = "medium"
    large = "large"


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float, float], None]]:
    """A rich bar for one command on stderr; each call sets the current step and how far along it is.

    Not a terminal (`make demo` piped, the app's refresh log): one plain line per step instead, because a rich
    bar there draws only once, when the command ends, and the log reader would see nothing until then."""
    from ingestion.files import safe_text

    if not err.is_terminal:
        last: dict[str, Any] = {"step": None, "at": 0.0}

        def plain(step: str, done: float, total: float) -> None:
            now = time.monotonic()
            if step == last["step"] and now - last["at"] < 5:
                return
            last.update(step=step, at=now)
            share = f" {done:,.0f}/{total:,.0f}" if total else ""
            err.file.write(f"{title}: {safe_text(step, 200)}{share}\n")
            err.file.flush()

        yield plain
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(title, total=None)

        def report(step: str, done: float, total: float) -> None:
            # the description is rich markup: a step (a file name) is escaped, and `:x:` kept from becoming emoji
            text = escape(safe_text(f"{title}: {step}", 200)).replace(":", ":\u200b")
            bar.update(task, description=text, completed=done, total=total)

        yield report


def _text(message: object, style: str = "") -> Text:
    """A message as inert text: no rich markup (`[auth]`, `[/x]` stay as written), no emoji codes, control
    characters shown as \\xNN; its own line breaks kept."""
    from ingestion.files import safe_text

    lines = str(message).split("\n")
    return Text("\n".join(safe_text(line, 4000) for line in lines), style=style)


def get_settings(home: Path | None = None) -> Settings:
    """The settings of `home`; a setting PT Pulse cannot use (a bad $PTPULSE_MEMORY_LIMIT) ends the command with
    its one-line message and exit code 2, not a traceback."""
    try:
        return _get_settings(home)
    except SettingError as exc:
        _fail(str(exc), code=2)
        raise  # unreachable: _fail exits


def _fail(message: str, code: int = 1) -> None:
    err.print(Text("error: ", style="bold red") + _text(message))
    raise typer.Exit(code)


def _stop(message: str, code: int) -> None:
    """Not an error of the command's: Ctrl-C (code 130, as a shell reports SIGINT) or nothing to do."""
    err.print(_text(message, style="yellow"))
    raise typer.Exit(code)


def _environment_problem(exc: BaseException, home: Path) -> tuple[str, int] | None:
    """A full disk, a read-only home or a store another program holds open: (one line with the fix, exit code).
    None for anything else, which is a bug and keeps its traceback. Names the home, never a file's content."""
    import errno
    import os

    import duckdb

    text = str(exc)
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in text:
        return (
            f"the disk holding {home} is full: free space there (or move PTPULSE_HOME) and run the command again. "
            "What was being written was rolled back; the files served before are unchanged.",
            1,
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f"{home} is not writable ({os.strerror(exc.errno).lower()}): PT Pulse keeps its stores, lock and builds "
            "there. Give the user running it write access, or set PTPULSE_HOME to a writable folder.",
            1,
        )
    if isinstance(exc, duckdb.IOException) and "lock" in text.lower():
        return (
            f"a store in {home} (raw.duckdb or an analytics file) is held open by another program (a DuckDB shell, "
            "a notebook): close it and run the command again. Nothing was changed.",
            3,
        )
    if isinstance(exc, duckdb.FatalException):
        return (
            f"DuckDB stopped writing in {home} (the database was invalidated, most often by a full disk): free "
            "space there and run the command again. What was being written was rolled back.",
            1,
        )
    return None


@contextmanager
def _plain_environment_errors(home: Path, as_json: bool = False) -> Iterator[None]:
    """Writer commands: an environment problem (`_environment_problem`) ends the command with its line, no
    traceback; everything else propagates."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - filtered just below, the rest re-raised
        problem = _environment_problem(exc, home)
        if problem is None:
            raise
        _json_fail(as_json, "environment", problem[0], code=problem[1])


INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it


def _ingest_interrupted(started: bool) -> str:
    """What Ctrl-C out of ingestion left: the loader rolls back the file it was loading before re-raising."""
    if started:
        return "interrupted: the file being loaded was rolled back; nothing was built"
    return "interrupted before anything was loaded; nothing was built"


def _watched(report) -> tuple[Callable[[str, float, float], None], dict[str, bool]]:
    """`report` and a flag set once it is first called (the loader reports each file before loading it)."""
    seen = {"started": False}

    def watched(step: str, done: float, total: float) -> None:
        seen["started"] = True
        report(step, done, total)

    return watched, seen


def _as_of(value: str | None) -> date | None:
    """`--as-of`: a calendar date written YYYY-MM-DD, else a usage error (exit 2) naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date: write it YYYY-MM-DD, e.g. 2024-06-30") from None


@app.command()
def generate(
    out_dir: Path = typer.Option(Path("demo_practice"), "--out", help="Folder to write the exports to."),
    scale: Scale = typer.Option(Scale.small, help="small: 1 clinic x 2 years; medium: 25 x 3; large: 900 x 3."),
    seed: int = typer.Option(42, help="Random seed; the same seed gives byte-identical files."),
    dirty: float = typer.Option(0.005, help="Share of rows given realistic defects (0 for none)."),
    as_of: str | None = typer.Option(
        None, help="Last day of history, YYYY-MM-DD (default: a fixed date).", callback=_as_of, metavar="YYYY-MM-DD"
    ),
    formats: list[str] = typer.Option(
        ["native"],
        "--format",
        help="native, webpt (WebPT Standard Extract), x12 (837P + 835) or fhir-bulk; repeat or comma-separate. "
        "With any non-native format each one is written to its own subfolder of --out (native/, webpt/, ...).",
    ),
    gzip_files: bool = typer.Option(
        False,
        "--gzip",
        help="Write each native export as <source>.csv.gz (a 900-clinic chain's 29 GB of CSV is ~6 GB); "
        "`ptpulse ingest` reads them as they are. Native format only.",
    ),
) -> None:
    """Write a synthetic practice's exports (one CSV per source) and its truth/ folder, or the same practice
    as vendor / interchange formats."""
    import shutil

    from seed_data.formats import FORMATS, write_formats
    from seed_data.generator import generate as run

    names = list(dict.fromkeys(f.strip().lower() for spec in formats for f in spec.split(",") if f.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        _fail(f"--format {', '.join(unknown) or '(empty)'} is not a format: choose from {', '.join(FORMATS)}", 2)
    as_of_date = as_of  # a date already: parsed and checked by _as_of
    only_native = names == ["native"]
    if gzip_files and not only_native:
        _fail("--gzip writes the native exports only: drop --format, or drop --gzip", 2)
    native_dir = out_dir if only_native else out_dir / ("native" if "native" in names else ".native-work")
    with progress_bar(f"generate {scale.value}") as report:
        summary = run(
            native_dir,
            scale=scale.value,
            seed=seed,
            dirty=dirty,
            as_of=as_of_date,
            progress=report,
            compress=gzip_files,
        )
        rows = {f"native/{k}" if not only_native else k: v for k, v in summary.get("rows", {}).items()}
        if not only_native:
            try:
                for fmt, files in write_formats(native_dir, out_dir, names).items():
                    report(f"format {fmt}", 1, 1)
                    rows.update({f"{fmt}/{name}": n for name, n in files.items()})
            except ValueError as exc:
                _fail(str(exc), 2)
            finally:
                if "native" not in names:
                    shutil.rmtree(native_dir, ignore_errors=True)
            if "native" not in names:
                rows = {k: v for k, v in rows.items() if not k.startswith("native/")}
    table = Table("file", "rows", title=_text(f"Wrote {out_dir}"))
    for name, n in sorted(rows.items()):
        table.add_row(_text(name), f"{n:,}")
    out.print(table)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(
        ...,
        help="Export files or folders of them: CSV, FHIR R4 JSON/NDJSON, X12 835/837P, each also as .gz or in a "
        ".zip (truth/ folders are skipped).",
    ),
    home: Path | None = HomeOpt,
    wait: float = WaitOpt,
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="Map every CSV with this source profile (a name in ingestion/profiles/ or $PTPULSE_HOME/profiles/, "
        "or a .yml path). "
        "Without it, a header that fits a profile's signature is mapped automatically.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON result per file on stdout (counts, rules, fixes; never values)."
    ),
    clinics: list[str] | None = typer.Option(
        None,
        "--clinics",
        metavar="IDS",
        help="Limit the load to these clinic ids (comma-separated or repeated; '' = none): rows of other clinics, or "
        "naming records kept at them, are quarantined as outside_upload_scope, and files without a clinic column "
        "(patients, payers, referring physicians, remittances, marketing touches) and FHIR / X12 files are refused. "
        "The app's Upload page passes the clinics of a user limited to some. Without it: every clinic.",
    ),
    reload: bool = typer.Option(
        False,
        "--reload",
        help="Read files loaded before again instead of skipping them (skipped_same_hash): rows they landed "
        "count as duplicates, so only rows set aside then (e.g. for a setting fixed since) land.",
    ),
) -> None:
    """Validate and land source files in raw.duckdb; bad rows go to quarantine with a reason."""
    from ingestion.files import discover
    from ingestion.loader import ingest as run
    from ingestion.loader import upload_scope
    from ingestion.profiles import ProfileError
    from ingestion.status import quarantine_by_load

    settings = get_settings(home)
    scope = None if clinics is None else [c.strip() for value in clinics for c in value.split(",") if c.strip()]
    try:
        upload_scope(scope)
    except ValueError as exc:
        _json_fail(as_json, "clinics", f"--clinics: {exc}", code=2)
    missing = _missing(paths)
    if missing:  # a typo: refused before raw.duckdb or its load history is touched
        _json_fail(as_json, "no_such_path", missing, code=2)
    if not discover(paths):  # only empty folders: say so, rather than print an empty table and succeed
        _json_fail(as_json, "no_files", _no_files(paths), code=2)
    seen = {"started": False}
    try:
        with (
            _plain_environment_errors(settings.home, as_json),
            pipeline_lock(settings, "ingest", wait_s=wait),
            progress_bar("ingest") as report,
        ):
            steps, seen = _watched(_plain_steps(report))
            results = run(paths, settings, progress=steps, profile=profile, clinics=scope, reload=reload)
            rules = quarantine_by_load(settings, [r.load_id for r in results]) if as_json else {}
    except PipelineBusy as exc:
        _json_fail(as_json, "busy", str(exc), code=3)
    except ProfileError as exc:
        _json_fail(as_json, "profile", str(exc), code=2)
    except KeyboardInterrupt:  # the loader rolled the file back (and recorded it) before re-raising Ctrl-C
        _json_fail(as_json, "interrupted", _ingest_interrupted(seen["started"]), code=INTERRUPTED)
    if as_json:
        sys.stdout.write(json.dumps(_loads_json(results, rules), indent=2, default=str) + "\n")
    else:
        _print_loads(results)
    if any(r.status in ("refused", "failed") for r in results):
        raise typer.Exit(2)


def _json_fail(as_json: bool, kind: str, message: str, code: int) -> None:
    """A whole-command failure: JSON on stdout for `--json` callers (the app's upload page), else the usual line."""
    if as_json:
        sys.stdout.write(json.dumps({"error": kind, "message": message, "files": []}) + "\n")
        raise typer.Exit(code)
    if code == INTERRUPTED:
        _stop(message, code)
    _fail(message, code=code)


def _missing(paths) -> str | None:
    """The message for given paths that do not exist (named as given), or None when all exist."""
    missing = [str(p) for p in paths if not os.path.lexists(p)]  # a dangling link exists: the loader refuses it
    if not missing:
        return None
    return (
        f"no such file or folder: {', '.join(missing)}. Nothing was loaded. Check the path (a typo? relative "
        "paths start from the current folder) and give the folder of the practice's exports, or the files "
        "themselves."
    )


def _no_files(paths) -> str:
    """The message for paths that hold no file at all (empty folders)."""
    names = ", ".join(str(p) for p in paths)
    return (
        f"no files found in {names}: nothing to load. Put the practice's exports there (one CSV per source, "
        "named after what it holds, e.g. intake_events.csv; FHIR JSON/NDJSON or a zip of a Bulk export; X12 "
        "835/837 files), or give the files themselves."
    )


def _nothing_mapped(r) -> bool:
    """A file the loader read but mapped to no source (e.g. JSON with no resource PT Pulse maps): its result
    is `loaded` with no source and no row, and its message says why."""
    return r.status == "loaded" and r.source is None and r.rows_read == 0


def _loads_json(results, rules: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """`ingest --json`: per file its name (no folder; a zip member as `export.zip!member`), source, status, row counts,
    quarantined rows by rule and column, and the refusal's fix. Counts, file, rule and column names only: never a
    row value."""
    from ingestion.files import delivered_name

    files = []
    for r in results:
        files.append(
            {
                "file": delivered_name(r.file),
                "path": r.file,
                "source": r.source,
                "profile": r.profile,
                "status": r.status,
                "load_id": r.load_id,
                "rows_read": r.rows_read,
                "rows_landed": r.rows_landed,
                "rows_quarantined": r.rows_quarantined,
                "rows_duplicate": r.rows_duplicate,
                "quarantine_by_rule": rules.get(r.load_id, []),
                "message": r.message,
            }
        )
    totals = {k: sum(f[k] for f in files) for k in ("rows_read", "rows_landed", "rows_quarantined", "rows_duplicate")}
    return {"files": files, "totals": totals}


def _plain(text: object, limit: int = 2000):
    """File names and messages as inert text: control/escape characters shown as \\xNN, and no rich markup
    or emoji codes interpreted (`[bold]`, `:x:` stay as written)."""
    from rich.text import Text

    from ingestion.files import safe_text

    return Text(safe_text(str(text), limit))


def _plain_steps(report):
    """The progress callback with the step (a file name) cut and its control characters escaped; the rich bar
    escapes markup and emoji codes itself (`progress_bar`), so plain log lines carry the name as written."""
    from ingestion.files import safe_text

    return lambda step, done, total: report(safe_text(step, 120), done, total)


def _print_loads(results) -> None:
    from ingestion.files import delivered_name  # a zip member as `export.zip!member`, a .gz as itself

    if not results:
        return
    profiled = any(r.profile for r in results)  # the source profile that mapped a vendor export, if any did
    table = Table("file", "source", *(["profile"] if profiled else []), "status", "read", "landed", "quarantined")
    table.add_column("duplicate")
    for r in results:
        table.add_row(
            _plain(delivered_name(r.file), 120),
            _text(r.source or "?"),
            *([_text(r.profile or "-")] if profiled else []),
            _text("nothing mapped" if _nothing_mapped(r) else r.status),
            f"{r.rows_read:,}",
            f"{r.rows_landed:,}",
            f"{r.rows_quarantined:,}",
            f"{r.rows_duplicate:,}",
        )
    out.print(table)
    for r in results:
        if r.status in ("refused", "failed"):
            err.print(_plain(f"{r.status} {r.file}: {r.message}"), style="red")
        elif _nothing_mapped(r):
            err.print(_plain(f"nothing landed from {r.file}: {r.message}"), style="yellow")
    loaded = [(r.file, r.sha256, r.message) for r in results if r.status == "loaded" and not _nothing_mapped(r)]
    for file, message in _file_notes(loaded):
        err.print(_plain(f"note {delivered_name(file)}: {message}", NOTE_LIMIT))


NOTE_LIMIT = 600  # characters of a loaded file's note line (the load messages are counts and codes, never values)


QUARANTINE_HINT = re.compile(r"^[\d,]+ row\(s\) quarantined: see .*\(load_id (\d+)\)")


def _file_notes(loads) -> list[tuple[str, str]]:
    """One note per loaded file from its loads' messages [(file, sha256, message)]: a FHIR / X12 file has one load
    per target source, each repeating the file's notes (types not mapped, voided claims, 835 imbalance...), so the
    distinct parts are joined once, in order, and the loads' "N row(s) quarantined: see ..." hints (their counts are
    in the table) become one naming the load ids, first. Files whose loads say nothing are left out."""
    parts: dict[tuple[str, str | None], dict[str, None]] = {}
    quarantined: dict[tuple[str, str | None], list[str]] = {}
    for file, sha, message in loads:
        for part in (message or "").split("; "):
            hint = QUARANTINE_HINT.match(part.strip())
            if hint:
                quarantined.setdefault((file, sha), []).append(hint.group(1))
                parts.setdefault((file, sha), {})
            elif part.strip():
                parts.setdefault((file, sha), {})[part.strip()] = None
    notes = []
    for (file, sha), found in parts.items():
        ids = quarantined.get((file, sha))
        hint = [f"rows quarantined: see `ptpulse status` and raw._quarantine (load_id {', '.join(ids)})"] if ids else []
        notes.append((file, "; ".join([*hint, *found])))  # the hint first: a long note is cut at its end
    return notes


@app.command()
def status(
    home: Path | None = HomeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Loads, quarantine counts by rule, and freshness per source."""
    from ingestion.status import StatusUnavailable, status_report

    settings = get_settings(home)
    if not settings.home.is_dir():  # a typo'd --home / $PTPULSE_HOME, not a home with no loads yet
        _fail(
            f"no such folder: {home if home is not None else settings.home} (the PT Pulse home). Check --home or "
            "$PTPULSE_HOME: it is the folder that holds raw.duckdb.",
            code=2,
        )
    try:
        report = status_report(settings)
    except StatusUnavailable as exc:
        _fail(str(exc), code=3)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        render_status(report, out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _load_style(status: str) -> str:
    return {"refused": "red", "failed": "red", "skipped_same_hash": "dim", "skipped_not_data": "dim"}.get(status, "")


def _read_as(r: dict[str, Any]) -> str:
    return (r["source"] or "?") + (f" (profile {r['profile']})" if r.get("profile") else "")


def _fits(table: Table, console: Console) -> bool:
    """The table drawn whole at the console's width: no cell wrapped, folded or cut short."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(10_000)  # measured at its natural width, not clamped to the console
    return Measurement.get(console, unbounded, table).maximum <= console.width


def render_status(report: dict[str, list[dict[str, Any]]], console: Console) -> None:
    """Three rich tables: recent loads, quarantine by rule, freshness per source.

    The loads are one table of nine columns where it fits (a wide terminal); at 80 columns (a small terminal, a CI
    log) two that each fit: what each load was (file, read as, status) and its row counts, joined by the load id.
    Names and numbers are never cut mid-word: counts, statuses and times do not wrap; a long file name folds."""
    from ingestion.files import delivered_name, safe_text

    if not report["loads"]:
        console.print("No loads yet. Run `ptpulse ingest <folder>` (or `ptpulse refresh`) first.")
        return
    recent = report["loads"][-30:]

    def file_cell(r: dict[str, Any]) -> Text:
        return Text(safe_text(delivered_name(r["file"]), 120), overflow="fold")

    def counts(r: dict[str, Any]) -> list[str]:
        return [_fmt(r[k]) for k in ("rows_read", "rows_landed", "rows_quarantined", "rows_duplicate")]

    def number(header: str) -> dict[str, Any]:
        return {"header": header, "justify": "right", "no_wrap": True}

    wide = Table(title="Loads (latest 30)")
    wide.add_column("id", justify="right", no_wrap=True)
    wide.add_column("file", overflow="fold")
    wide.add_column("source", overflow="fold")
    wide.add_column("status", no_wrap=True)
    for header in ("read", "landed", "quarantined", "duplicate"):
        wide.add_column(**number(header))
    wide.add_column("finished (UTC)", no_wrap=True)
    for r in recent:
        wide.add_row(
            _fmt(r["load_id"]),
            file_cell(r),
            _text(_read_as(r)),
            r["status"],
            *counts(r),
            _fmt(r["finished_at"]),
            style=_load_style(r["status"]),
        )
    if _fits(wide, console):
        console.print(wide)
    else:  # narrow: what each load was, then its rows, each table within the width
        what = Table(title="Loads (latest 30)")
        what.add_column("id", justify="right", no_wrap=True)
        what.add_column("file / read as", overflow="fold", ratio=1)
        what.add_column("status", no_wrap=True)
        for r in recent:
            cell = file_cell(r) + Text("\n") + Text(safe_text(_read_as(r), 200), style="dim")
            what.add_row(_fmt(r["load_id"]), cell, r["status"], style=_load_style(r["status"]))
        console.print(what)
        rows = Table(title="Rows per load")
        rows.add_column("id", justify="right", no_wrap=True)
        for header in ("read", "landed", "quarantined", "duplicate"):
            rows.add_column(**number(header))
        rows.add_column("finished (UTC)", no_wrap=True)
        for r in recent:
            rows.add_row(_fmt(r["load_id"]), *counts(r), _fmt(r["finished_at"]), style=_load_style(r["status"]))
        console.print(rows)
    for r in recent:
        if r["status"] in ("refused", "failed"):
            # Text, not markup: names and messages are shown as written (no `[bold]`, no `:x:` emoji) and
            # control characters escaped, whatever a file was called
            console.print(
                Text(safe_text(f"{r['status']} load {r['load_id']} {r['file']}: {r['message']}", 2000), style="red")
            )
    loaded = [(r["file"], r.get("sha256"), r["message"]) for r in recent if r["status"] == "loaded"]
    for file, message in _file_notes(loaded):
        console.print(Text(safe_text(f"note {delivered_name(file)}: {message}", NOTE_LIMIT)))
    if report["quarantine_by_rule"]:
        quarantine = Table(title="Quarantine by rule")
        quarantine.add_column("source", no_wrap=True)
        quarantine.add_column("rule", overflow="fold")
        quarantine.add_column("column", overflow="fold")
        quarantine.add_column(**number("rows"))
        for r in report["quarantine_by_rule"]:
            quarantine.add_row(r["source"], r["rule"], Text(r["column"] or "-"), _fmt(r["rows"]))
        console.print(quarantine)
    fresh = Table(title="Freshness")
    fresh.add_column("source", no_wrap=True)
    fresh.add_column("last load (UTC)", no_wrap=True)
    fresh.add_column("latest event", no_wrap=True)
    fresh.add_column(**number("rows"))
    for r in report["freshness"]:
        fresh.add_row(r["source"], _fmt(r["last_load_at"]), _fmt(r["latest_event_at"]), _fmt(r["rows"]))
    console.print(fresh)


@app.command()
def build(
    home: Path | None = HomeOpt,
    wait: float = WaitOpt,
    score: bool = typer.Option(True, help="Score ML models into the new file before it is swapped in."),
    full_refresh: bool = FullRefreshOpt,
) -> None:
    """Run dbt build into a new analytics file and swap it in only if every error-severity test passed."""
    from ptpulse.refresh import nothing_loaded, run_build

    settings = get_settings(home)
    try:
        with (
            _plain_environment_errors(settings.home),
            pipeline_lock(settings, "build", wait_s=wait),
            progress_bar("build") as report,
        ):
            if nothing_loaded(settings):  # an empty warehouse would be served as if healthy
                _stop(_nothing_loaded(settings), code=1)
            result = run_build(settings, score=score, progress=report, full_refresh=full_refresh)
    except PipelineBusy as exc:
        _fail(str(exc), code=3)
    except KeyboardInterrupt:  # before the build began (the build itself returns Ctrl-C as its result)
        _stop("interrupted before the build started; nothing was swapped", INTERRUPTED)
    _finish_build(result)


def _nothing_loaded(settings: Settings) -> str:
    """Why nothing was built: no file ever landed a row (`ptpulse.refresh.nothing_loaded`)."""
    why = (
        f"{settings.raw_db} does not exist"
        if not settings.raw_db.exists()
        else f"no file has landed a row in {settings.raw_db} (every file given so far was refused or empty)"
    )
    served = (
        "the files served before are unchanged"
        if settings.analytics_db.exists()
        else "there is no earlier build, so nothing is served yet"
    )
    return (
        f"nothing loaded yet: ptpulse ingest FOLDER (the folder of the practice's exports), then build. {why}, so "
        f"there is nothing to build: nothing was built, and {served}."
    )


def _finish_build(result) -> None:
    if result.ok:
        out.print(
            Text("built and served", style="green")
            + _text(
                f" {result.served_path} in {result.seconds:.1f}s ({result.models} models, {result.tests} tests; "
                f"{'full refresh' if result.full_refresh else 'incremental'}: {result.mode_reason})"
            )
        )
    elif result.interrupted:
        _stop(result.message, INTERRUPTED)
    elif result.served_path is None:
        _fail(f"build failed; there is no earlier build, so nothing is served yet.\n{result.message}")
    else:
        _fail(f"build failed, the previous analytics files are still served.\n{result.message}")


@app.command()
def train(home: Path | None = HomeOpt, wait: float = WaitOpt) -> None:
    """Fit the no-show, demand, denial and lead models and run referral attribution on the served analytics file,
    and write their model cards."""
    from ml.train_score import train as run

    settings = get_settings(home)
    if not settings.analytics_db.exists():
        _fail(f"{settings.analytics_db} does not exist yet: run `ptpulse refresh` first.")
    try:
        with (
            _plain_environment_errors(settings.home),
            pipeline_lock(settings, "train", wait_s=wait),
            progress_bar("train") as report,
        ):
            summary = run(settings, progress=report)
    except PipelineBusy as exc:
        _fail(str(exc), code=3)
    out.print_json(data=summary)


@app.command()
def refresh(
    paths: list[Path] | None = typer.Argument(
        None, help="Folders or files to ingest (default: $PTPULSE_HOME/incoming)."
    ),
    home: Path | None = HomeOpt,
    wait: float = WaitOpt,
    full_refresh: bool = FullRefreshOpt,
) -> None:
    """Ingest what is new, build, score and swap, in sequence under the pipeline lock."""
    from ingestion.files import discover
    from ingestion.profiles import ProfileError
    from ptpulse.refresh import refresh as run

    settings = get_settings(home)
    incoming = settings.incoming.resolve()
    missing = _missing(paths or [])
    if missing:  # a typo: refused before raw.duckdb or its load history is touched, and nothing is built
        _fail(missing, code=2)
    if paths and all(Path(p).resolve() != incoming for p in paths) and not discover(paths):
        _fail(_no_files(paths), code=2)
    seen = {"started": False}
    try:
        with (
            _plain_environment_errors(settings.home),
            pipeline_lock(settings, "refresh", wait_s=wait),
            progress_bar("refresh") as report,
        ):
            steps, seen = _watched(_plain_steps(report))
            result = run(settings, paths=paths or None, progress=steps, full_refresh=full_refresh)
    except PipelineBusy as exc:
        _fail(str(exc), code=3)
    except ProfileError as exc:  # a broken profile in $PTPULSE_HOME/profiles/: nothing was loaded
        _fail(str(exc), code=2)
    except KeyboardInterrupt:  # out of ingestion: the build returns Ctrl-C as its result (`_finish_build`)
        _stop(_ingest_interrupted(seen["started"]), INTERRUPTED)
    _print_loads(result.loads)
    if result.build is None and result.loads:  # files were given, but no file has ever landed a row
        _stop(_nothing_loaded(settings), code=2)
    if result.build is None:  # nothing to load, and nothing was ever loaded: no build was tried
        _fail(_empty_incoming(settings.incoming, result.waiting), code=2)
    if not result.loads and not result.waiting:
        err.print(_text(f"nothing new to load in {settings.incoming}: rebuilding from what was loaded before"))
    _finish_build(result.build)
    if any(r.status in ("refused", "failed") for r in result.loads):
        raise typer.Exit(2)


def _empty_incoming(incoming: Path, waiting: list) -> str:
    """Why a refresh on a home with nothing loaded yet did nothing."""
    if waiting:
        names = ", ".join(Path(w).name for w in waiting)
        return (
            f"nothing to load yet: {len(waiting)} export(s) in {incoming} are not complete ({names}: a file still "
            "being written or named .part/.tmp). Run refresh again when they are complete, or add a .done file "
            "beside or inside an export to mark it finished. Nothing was built: nothing was loaded before."
        )
    return (
        f"{incoming} is empty and nothing was loaded before, so there is nothing to build. Put the practice's "
        "exports there (one CSV per source, named after what it holds, e.g. intake_events.csv; FHIR JSON/NDJSON "
        "or a zip of a Bulk export; X12 835/837 files), or give their folder: `ptpulse refresh FOLDER`."
    )


profile_app = typer.Typer(help="Source profiles: map a vendor's export onto the contracts.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")


@profile_app.command("draft")
def profile_draft(
    files: list[Path] = typer.Argument(..., help="Sample CSV exports of the new vendor (only headers are read)."),
    name: str = typer.Option("new_vendor", "--name", help="Profile name (also the id namespace)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the YAML here (default: stdout)."),
) -> None:
    """Write a starter profile from a new vendor's headers: each column matched to a contract column or
    flagged `unmatched`, and the required contract columns nothing matched listed as `gaps`."""
    import yaml

    from ingestion.files import FileRefused, display_name, read_header
    from ingestion.profiles import DRAFT_SCAN_LINES, ProfileError, draft_profile, header_line

    def line(path: Path, n: int) -> list[str] | None:
        try:
            return read_header(path, n)
        except FileRefused:
            return None

    headers, skips = {}, {}
    for path in files:
        if path.suffix.lower() != ".csv":
            _fail(
                f"{display_name(path)} is not a CSV file: profile draft reads the header row of a vendor's CSV "
                "export. Give a sample .csv export (FHIR and X12 files need no profile).",
                code=2,
            )
        try:
            headers[display_name(path)] = read_header(path)
        except FileRefused as exc:  # line 1 empty (a blank line above a title?): the header may be further down
            headers[display_name(path)], first_problem = [], exc
        except OSError:
            _fail(f"{display_name(path)} could not be read.", code=2)
        else:
            first_problem = None
        # a report title above the header: propose skip_lines (lines are read down to the header only)
        lines = [headers[display_name(path)] or None]
        skip = header_line(lines)
        while skip is None and len(lines) < DRAFT_SCAN_LINES:
            lines.append(line(path, len(lines)))
            skip = header_line(lines)
        if skip:
            headers[display_name(path)], skips[display_name(path)] = lines[skip], skip
        elif first_problem is not None:
            _fail(str(first_problem), code=2)
    try:
        draft = draft_profile(headers, name, skips)
    except ProfileError as exc:  # a title line or another delimiter on line 1: no profile keyed on it
        _fail(str(exc), code=2)
    text = yaml.safe_dump(draft, sort_keys=False, allow_unicode=True, width=120)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(
            _plain(
                f"wrote {output}: edit value_maps and the TODOs, check it with `ptpulse ingest --profile {output} "
                f"...`, then `ptpulse profile install {output}` to detect it in every ingest, refresh and upload"
            )
        )


@profile_app.command("install")
def profile_install(
    file: Path = typer.Argument(..., help="A finished profile .yml (e.g. one `profile draft` wrote and you edited)."),
    home: Path | None = HomeOpt,
    replace: bool = typer.Option(False, "--replace", help="Overwrite a home profile of the same name."),
) -> None:
    """Check a profile and copy it to $PTPULSE_HOME/profiles/<name>.yml, where every ingest, refresh and upload
    of this home detects it (it wins over a shipped profile of the same name; upgrades leave it in place)."""
    from ingestion.profiles import ProfileError, home_profiles_dir, read_profile

    try:
        profile = read_profile(file)
    except ProfileError as exc:
        _fail(str(exc), code=2)
    folder = home_profiles_dir(get_settings(home).home)
    target = folder / f"{profile.name}.yml"
    if target.exists() and not replace:
        _fail(f"{target} exists: give --replace to overwrite it with {file}.", code=2)
    folder.mkdir(parents=True, exist_ok=True)
    target.write_bytes(file.read_bytes())
    out.print(_plain(f"installed profile {profile.name!r} as {target}: the next ingest, refresh or upload detects it"))


secret_app = typer.Typer(help="The installation secret behind patient_key (keyed pseudonyms).", no_args_is_help=True)
app.add_typer(secret_app, name="secret")


@secret_app.command("rotate")
def secret_rotate(
    home: Path | None = HomeOpt,
    wait: float = WaitOpt,
    rebuild: bool = typer.Option(True, "--build/--no-build", help="Build at once so served files use the new key."),
) -> None:
    """New pseudonym secret: every patient_key changes; app actions on tasks keyed by it are re-keyed."""
    from ptpulse.core.secrets import SecretError, rotate_key
    from ptpulse.refresh import run_build

    settings = get_settings(home)
    result = None
    try:
        with (
            _plain_environment_errors(settings.home),
            pipeline_lock(settings, "secret rotate", wait_s=wait),
            progress_bar("secret rotate") as report,
        ):
            rot = rotate_key(settings)
            if rebuild and settings.raw_db.exists():
                result = run_build(settings, progress=report)
    except PipelineBusy as exc:
        _fail(str(exc), code=3)
    except SecretError as exc:
        _fail(str(exc))
    out.print(
        _text(
            f"new pseudonym secret in {rot.key_file} ({rot.patients:,} patients); "
            f"{rot.actions_rekeyed:,} app action(s) and {rot.messages_rekeyed:,} message(s) re-keyed"
        )
    )
    if result is not None:
        _finish_build(result)
    elif settings.analytics_db.exists():
        out.print("served files keep the old pseudonyms until the next `ptpulse build`")


HostOpt = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 = every interface).")
DemoNetOpt = typer.Option(
    False, "--allow-demo-on-network", help="Serve demo mode (no sign-in) on a non-loopback address anyway."
)


@app.command(name="app")
def run_app(
    port: int = typer.Option(8501, help="Port to serve on."),
    home: Path | None = HomeOpt,
    host: str = HostOpt,
    allow_demo_on_network: bool = DemoNetOpt,
) -> None:
    """Start the Streamlit app (demo mode unless OIDC auth is configured)."""
    import os

    from ptpulse.serve import app_command, bind_problem, demo_bind_refusal

    refusal = demo_bind_refusal(host, allow_demo_on_network)
    if refusal:
        _fail(refusal, code=2)
    settings = get_settings(home)
    taken = bind_problem(host, port)
    if taken:  # before the URL: Streamlit's own check would come after it, and read as a failure of the URL
        _fail(taken, code=3)
    env = dict(os.environ, PTPULSE_HOME=str(settings.home))
    out.print(_text(f"PT Pulse on http://{'localhost' if host in ('127.0.0.1', 'localhost') else host}:{port}"))
    # exec, not a child: a kill of `ptpulse app` (or systemd stopping it) stops the server itself, and the
    # port is free again at once
    sys.stdout.flush()
    os.execve(sys.executable, app_command(port, host), env)


@app.command()
def serve(
    home: Path | None = HomeOpt,
    port: int = typer.Option(8501, help="Port the app serves on."),
    host: str = HostOpt,
    allow_demo_on_network: bool = DemoNetOpt,
    schedule: str | None = typer.Option(
        None, help="Cron schedule of the full refresh, e.g. '0 2 * * *' (default: service.yml, else nightly 02:00)."
    ),
    settle: float | None = typer.Option(None, help="Seconds an export must stop changing before it is ingested."),
    poll: float | None = typer.Option(None, help="Seconds between looks at incoming/ and the clock."),
    with_app: bool = typer.Option(True, "--app/--no-app", help="Also serve the app (--no-app: scheduler only)."),
) -> None:
    """The app plus its scheduler: nightly refresh, exports dropped in incoming/ ingested, alerts on failure."""
    from ptpulse.serve import ConfigError, bind_problem, configure_logging, demo_bind_refusal, load_config
    from ptpulse.serve import serve as run

    refusal = demo_bind_refusal(host, allow_demo_on_network) if with_app else None
    if refusal:
        _fail(refusal, code=2)
    taken = bind_problem(host, port) if with_app else None
    if taken:  # the app child would otherwise fail and be restarted with back-off, for ever
        _fail(taken, code=3)
    settings = get_settings(home)
    try:
        config = load_config(settings, schedule=schedule, settle_seconds=settle, poll_seconds=poll)
    except ConfigError as exc:
        _fail(str(exc), code=2)
    configure_logging()
    raise typer.Exit(run(settings, config, port=port, host=host, with_app=with_app))


@app.command()
def health(
    home: Path | None = HomeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Probe for a monitor: served build and its age, last refresh, lock, next run, source freshness.
    Exit code 0 when healthy, 1 when not."""
    from ptpulse.health import health_report

    report = health_report(get_settings(home))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        build = report["served_build"] or {}
        out.print(f"[bold]{'healthy' if report['healthy'] else 'UNHEALTHY'}[/]")
        out.print(_text(f"served build: {build.get('build_id') or '-'} ({build.get('age_hours', '-')} h old)"))
        last = report["last_refresh"] or {}
        out.print(_text(f"last refresh: {last.get('result', '-')} at {last.get('finished_at', '-')}"))
        lock = report["lock"]["holder"] or "free"
        out.print(_text(f"next run: {report['scheduler'].get('next_run') or '-'}; lock: {lock}"))
        for problem in report["problems"]:
            err.print(_plain(f"problem: {problem}"), style="red")
    raise typer.Exit(0 if report["healthy"] else 1)


if __name__ == "__main__":
    app()
