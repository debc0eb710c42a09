"""Data file names out of text a role without PHI, an alert or a service log will show.

Why one module: exporters name files after patients (Synthea writes `<Given>_<Family>_<uuid>.json`), and a
loader's or build's message names the file it is about. The Data health page (app/lib/service_status.py), the
administrator's alerts (ptpulse.notify) and service.json (ptpulse.serve) must all drop those names the same way,
so the patterns live here, in the floor every layer may import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FILE_WORD = "(file)"
PATH_WORD = "(server path)"
# the suffixes of the files a practice delivers, and of the loader's own partial and working copies
_SUFFIXES = r"(?:csv|tsv|txt|dat|json|ndjson|xml|zip|gz|xlsx?|835|837|x12|edi|part|tmp|hl7|parquet)"
# a name with a data file's suffix, wherever a message quotes it (belt and braces behind the known names)
_FILE_NAME = re.compile(r"[^\s'\"`/\\:,;()]+\." + _SUFFIXES + r"\b", re.I)
# a quoted file name may hold spaces ('Jose Garcia_99.ndjson'): the whole quoted name, not just its last word
_QUOTED_FILE_NAME = re.compile(r"(['\"`])[^'\"`\n]*?\." + _SUFFIXES + r"\1", re.I)
_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\][^\s'\"`]+")


def scrub_file_names(text: str, names: Iterable[str] = (), placeholder: str = FILE_WORD, paths: bool = True) -> str:
    """`text` without a data file's name: every one of `names` (the file's path, name, stem, its path inside the
    export ...; longest first), then any absolute path (unless `paths` is False: a traceback's code paths), quoted
    file name or other name with a data file's suffix, replaced by `placeholder` (paths by PATH_WORD)."""
    out = str(text)
    for name in sorted({str(n) for n in names if n and len(str(n)) > 2}, key=len, reverse=True):
        out = out.replace(name, placeholder)
    if paths:
        out = _ABS_PATH.sub(PATH_WORD, out)
    out = _QUOTED_FILE_NAME.sub(placeholder, out)
    return _FILE_NAME.sub(placeholder, out)
