"""The same generated practice written as other systems export it, for round-trip tests and demos.

Each writer reads the native CSVs the generator wrote (the current version of every row, as the practice's
EMR / clearinghouse holds it) and writes one format into its own folder: `write(native, out) -> {file: rows}`.
The round-trip tests (tests/roundtrip/) ingest each format and compare the marts with the native build.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

Writer = Callable[[Path, Path], dict[str, int]]

# format name -> module under seed_data.formats that defines write(native, out)
_MODULES = {
    "webpt": "seed_data.formats.webpt",
    "x12": "seed_data.formats.x12",
    "fhir-bulk": "seed_data.formats.fhir_bulk",  # written by rt-fhir
}
FORMATS: tuple[str, ...] = ("native", *_MODULES)


def writer(name: str) -> Writer:
    """The writer of one format, imported when asked (a format's module may not be installed yet)."""
    if name not in _MODULES:
        raise ValueError(f"unknown format {name!r}: choose from {', '.join(FORMATS)}")
    try:
        module = importlib.import_module(_MODULES[name])
    except ModuleNotFoundError as exc:
        raise ValueError(f"format {name!r} is not available in this build ({exc.name} is missing)") from exc
    return module.write


def write_formats(native: Path, out: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """Write each named non-native format of the practice in `native` into out/<format>/."""
    return {name: writer(name)(Path(native), Path(out) / name) for name in names if name != "native"}
