"""Where PT Pulse keeps its stores. One place, read from the environment, so every process agrees.

`$PTPULSE_HOME` (default `./data`) holds the three stores of docs/architecture.md plus the model artifacts:

- raw.duckdb        written only by ingestion (append-only events, load audit, quarantine)
- analytics.duckdb  built aside by dbt and served atomically; read-only for everyone else
- analytics_deid.duckdb  its de-identified twin (no dim_patients, no PHI or free-text columns), written and
                    served with it by every build: what analysts open directly and the SQL page queries
- build/            builds: `build/<build_id>/` holds one build's pair of analytics files; `build/served` is a
                    symlink to the served build's folder, replaced by ONE atomic rename per build, and the two
                    stable paths above are fixed symlinks `analytics.duckdb -> build/served/analytics.duckdb`
                    (and the same for the twin), so both served files always come from the same build
- app.sqlite        app state (work-queue actions, audit log), SQLite in WAL mode
- secrets/pseudonym.key  the installation secret behind patient_key (mode 0600; ptpulse/core/secrets.py;
                    $PTPULSE_SECRETS_DIR moves it elsewhere); never inside the analytics files
- tmp/duckdb/       where DuckDB spills when a writing connection reaches `$PTPULSE_MEMORY_LIMIT` (default
                    4GB; docs/scale.md): one folder per connection, removed by DuckDB when it closes
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# The folder holding the ptpulse, ingestion and app packages and the dbt project: the checkout, or the
# site-packages folder of an installed wheel (pyproject.toml ships app/ and dbt_project/ beside the packages).
INSTALL_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = INSTALL_ROOT / "ingestion" / "contracts"
CODES_DIR = INSTALL_ROOT / "ingestion" / "codes"
DBT_PROJECT_DIR = INSTALL_ROOT / "dbt_project"
APP_DIR = INSTALL_ROOT / "app"


MEMORY_LIMIT_ENV = "PTPULSE_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "4GB"
_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)", re.IGNORECASE)
_SPILL_SEQ = itertools.count()


class SettingError(ValueError):
    """An environment setting PT Pulse cannot use; the message names the variable and the fix (never its value)."""


def memory_limit_from_env() -> str:
    """`$PTPULSE_MEMORY_LIMIT` (a size such as 4GB, 6GiB or 512MB), else 4GB: the budget of every DuckDB
    connection that writes, so ingest and build stay flat at any chain size (docs/scale.md)."""
    value = os.environ.get(MEMORY_LIMIT_ENV, "").strip() or DEFAULT_MEMORY_LIMIT
    if not _SIZE.fullmatch(value):
        raise SettingError(
            f"${MEMORY_LIMIT_ENV} is not a size DuckDB understands: write a number and a unit, such as 4GB, "
            f"6GiB or 512MB (no percentage), or unset it for the default {DEFAULT_MEMORY_LIMIT}."
        )
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    memory_limit: str = field(default_factory=memory_limit_from_env)

    @property
    def raw_db(self) -> Path:
        return self.home / "raw.duckdb"

    @property
    def analytics_db(self) -> Path:
        """Stable path of the served analytics file (a symlink into `served_dir`; open it, never write it)."""
        return self.home / "analytics.duckdb"

    @property
    def analytics_deid_db(self) -> Path:
        """De-identified twin of analytics_db (ptpulse/core/deid.py); served together with it by every build.
        Stable path (a symlink into `served_dir`): what the SQL page and analysts open."""
        return self.home / "analytics_deid.duckdb"

    @property
    def state_db(self) -> Path:
        """The build state: dbt's staging and intermediate tables (the incremental models' own state, read only by
        the next build; never served). Written in place by each build, flagged inside while it does
        (`meta.build_in_progress`: the next build is full unless this one was served), so a night copies only the
        served marts, not three-quarters of the file (ptpulse/build/incremental.py)."""
        return self.home / "build_state.duckdb"

    @property
    def app_db(self) -> Path:
        return self.home / "app.sqlite"

    @property
    def incoming(self) -> Path:
        """Drop folder that `ptpulse refresh` ingests when no paths are given."""
        return self.home / "incoming"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def build_dir(self) -> Path:
        """Builds: `<build_id>/` folders (in progress, or the served one), dbt target/ and logs."""
        return self.home / "build"

    @property
    def served_dir(self) -> Path:
        """Symlink to the served build's folder (holding analytics.duckdb and analytics_deid.duckdb of ONE
        build); a build serves itself by renaming a new symlink over it (ptpulse/build/serving.py)."""
        return self.build_dir / "served"

    @property
    def lock_file(self) -> Path:
        return self.home / ".pipeline.lock"

    @property
    def duckdb_temp_root(self) -> Path:
        """Parent of the per-connection spill folders (on the same disk as the stores, not /tmp)."""
        return self.home / "tmp" / "duckdb"

    def duckdb_config(self, preserve_insertion_order: bool = True, folder: str | None = None) -> dict[str, str | bool]:
        """`duckdb.connect(..., config=...)` for a connection that writes: `memory_limit` and a private spill
        folder. DuckDB's default limit is 80% of RAM, so without this a chain-sized load grows until the box
        swaps. Each connection spills to its own folder (two instances sharing one would reuse file names);
        DuckDB creates it on first spill and removes it on close; folders of dead processes are removed here.
        `preserve_insertion_order=False` lets DuckDB stream more (dbt's models never rely on row order; the
        loader does, rowid being the file line, so it keeps the default). `folder`: a fixed spill folder name
        for a caller that never runs twice at once (the build's dbt: its profile must not change per build,
        or dbt re-parses the whole project)."""
        root = self.duckdb_temp_root
        root.mkdir(parents=True, exist_ok=True)
        _remove_dead_spill(root)
        config: dict[str, str | bool] = {
            "memory_limit": self.memory_limit,
            "temp_directory": str(root / (folder or f"{os.getpid()}-{next(_SPILL_SEQ)}")),
        }
        if not preserve_insertion_order:
            config["preserve_insertion_order"] = False
        return config

    def ensure(self) -> Settings:
        self.home.mkdir(parents=True, exist_ok=True)
        return self


def get_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings for `home`, else `$PTPULSE_HOME`, else `./data`; paths are made absolute."""
    raw = home if home is not None else os.environ.get("PTPULSE_HOME", "data")
    return Settings(home=Path(raw).expanduser().resolve())


def _remove_dead_spill(root: Path) -> None:
    """Spill folders left by a process that died (`<pid>-<n>` whose pid no longer runs): they can be GBs."""
    for folder in root.iterdir():
        pid = folder.name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


@contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block and restore the previous ones after it (dbt and AppTest
    read their settings from the environment of this process)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
