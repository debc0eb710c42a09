"""Where PT Pulse keeps its stores. One place, read from the environment, so every process agrees.

`$PTPULSE_HOME` (default `./data`) holds the three stores of DESIGN.md plus the model artifacts:

- raw.duckdb        written only by ingestion (append-only events, load audit, quarantine)
- analytics.duckdb  built aside by dbt and swapped in atomically; read-only for everyone else
- analytics_deid.duckdb  its de-identified twin (no dim_patients, no PHI or free-text columns), written and
                    swapped with it by every build: what analysts open directly and the SQL page queries
- app.sqlite        app state (work-queue actions, audit log), SQLite in WAL mode
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    home: Path

    @property
    def raw_db(self) -> Path:
        return self.home / "raw.duckdb"

    @property
    def analytics_db(self) -> Path:
        return self.home / "analytics.duckdb"

    @property
    def analytics_deid_db(self) -> Path:
        """De-identified twin of analytics_db (ptpulse/privacy.py); served together with it by every build."""
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
        """Scratch space for builds in progress (the next analytics file, dbt target/ and logs)."""
        return self.home / "build"

    @property
    def lock_file(self) -> Path:
        return self.home / ".pipeline.lock"

    def ensure(self) -> "Settings":
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
