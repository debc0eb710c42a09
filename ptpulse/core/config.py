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
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# The folder holding the ptpulse, ingestion and app packages and the dbt project: the checkout, or the
# site-packages folder of an installed wheel (pyproject.toml ships app/ and dbt_project/ beside the packages).
INSTALL_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = INSTALL_ROOT / "ingestion" / "contracts"
CODES_DIR = INSTALL_ROOT / "ingestion" / "codes"
DBT_PROJECT_DIR = INSTALL_ROOT / "dbt_project"
APP_DIR = INSTALL_ROOT / "app"


@dataclass(frozen=True)
class Settings:
    home: Path

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

    def ensure(self) -> Settings:
        self.home.mkdir(parents=True, exist_ok=True)
        return self


def get_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings for `home`, else `$PTPULSE_HOME`, else `./data`; paths are made absolute."""
    raw = home if home is not None else os.environ.get("PTPULSE_HOME", "data")
    return Settings(home=Path(raw).expanduser().resolve())


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
