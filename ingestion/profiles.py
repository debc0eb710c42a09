"""Source profiles: a vendor export (WebPT, Tebra, ...) mapped onto our contracts by a YAML file, not by code.

A profile (`ingestion/profiles/<name>.yml`, schema in ingestion/README.md "Source profiles") says, per vendor
file type, which contract it feeds, the header signature that recognises it, and how each contract column is
made from the vendor's columns: a rename, a constant, a value map, a parse with explicit date/time formats
and a time zone, or one derivation from a closed list (`DERIVATIONS`). A change flag (WebPT `export_flag`)
turns a deletion into a tombstone version (`_op = 'tombstone'`): history is never erased.

The profile is compiled to ONE DuckDB SELECT over the vendor file's rows (window functions for the 8-minute
rule, UNION ALL for one-row-to-many-events files); it produces contract-shaped text rows that then go
through the normal contract validation, quarantine and audit path of ingestion/loader.py, unchanged.
Vendor column names are resolved to positional columns (`_v1`, `_v2`, ...) in Python and never reach the
SQL; literals from a profile go through `lit`. `draft_profile` writes a starter profile from unseen headers.

Profiles are read from the installation (`ingestion/profiles/`, shipped) and from the practice's home
(`$PTPULSE_HOME/profiles/`, beside its stores, kept across upgrades); a home profile wins over a shipped one
of the same name (`available_profiles`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ingestion.files import _delimiter_hint
from ingestion.validation import DECIMAL_TEXT, INTEGER_TEXT, lit
from ptpulse.core.config import INSTALL_ROOT
from ptpulse.core.contracts import Contract, load_contracts
from ptpulse.core.sql import quote_ident

PROFILES_DIR = INSTALL_ROOT / "ingestion" / "profiles"
HOME_PROFILES = "profiles"  # $PTPULSE_HOME/profiles/: the practice's own profiles (they win over shipped ones)
DEFAULT_ZONE_ENV = "PTPULSE_DEFAULT_TIMEZONE"  # the practice's zone, as the FHIR import and outreach use it
DERIVATIONS = ("minutes_between", "hours_between", "date_to_timestamp", "concat", "cms_8_minute_units")
TRANSFORMS = ("upper", "lower", "modifiers_to_pipe", "digits")
PARSES = ("date", "timestamp", "decimal", "integer")
COLUMN_KEYS = {"from", "const", "derive", "args", "sep", "group_by", "map", "parse", "prefix", "transform"}
COLUMN_KEYS |= {"fallback", "default", "note", "null_values", "identical_rows"}
MAX_SKIP_LINES = 1000  # `skip_lines`: lines above the header (a report title, run date, blank line)
# `skip_lines: auto`: the header is the first of the file's first AUTO_HEADER_LINES lines that fits the file type's
# signature (a title block whose length varies: a date range, filters, a blank line)
AUTO_SKIP = "auto"
AUTO_HEADER_LINES = 20
# a record id made by `concat` (no row id in the export): the 2nd, 3rd, ... row of a file with the same key gets
# `<key>#2`, `<key>#3` (numbered in content order), so genuinely identical rows stay distinct (`identical_rows`)
OCCURRENCE_MARK = "#"
IDENTICAL_ROWS = ("keep", "merge")
OUT_TIMESTAMP, OUT_DATE = "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"
TOMBSTONE, UPSERT = "tombstone", "upsert"
# Empty-value tokens: a vendor cell holding one of these (trimmed, any case) is empty, before transforms and
# value maps. Conservative on purpose: `NA` (a code in some columns) and `-` (zero in Excel's accounting
# format) are NOT here; a profile lists them in `defaults.null_values` (which replaces this list) if it means them.
DEFAULT_NULL_VALUES = ("NULL", "N/A", "#N/A")
# money and counts: a currency sign (after or before a sign) with its spaces, and thousands grouping
CURRENCY_SIGN = r"^\s*([-+]?)\s*\$?\s*"
GROUPED_NUMBER = r"[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?\s*"
# accounting negatives: `(45.00)`, `$ (7.25)`, `($1,250.00)` and a trailing minus `85.00-` (`$85.00 -`)
PARENTHESES = r"^\s*\$?\s*\(\s*\$?\s*([0-9][0-9,.]*)\s*\)\s*$"
TRAILING_MINUS = r"^\s*\$?\s*([0-9][0-9,.]*)\s*-\s*$"
MONEY_FORMS = "1250.00, $1,250.00, -$12.00, (45.00), $ (7.25) or 85.00- (a negative)"
ZONED = ("%z", "%Z")  # a timestamp format that reads a UTC offset / zone name: the value is an exact instant


class ProfileError(ValueError):
    """A profile file is malformed or cannot be used; the message names the profile, the key and a fix."""


@dataclass(frozen=True)
class ProfileFile:
    """One vendor file type of a profile: how to recognise it and how its rows become contract rows."""

    name: str
    feeds: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    min_matches: int = 0
    partial: bool = False
    # lines above the header row (a report title): the header is on line skip_lines + 1. Not in the repr (the
    # mapping's fingerprint): it is read from `spec` / the profile's defaults, which are
    skip_lines: int = field(default=0, repr=False)
    # `skip_lines: auto`: the header is found per file (`header_skip`); skip_lines stays 0
    skip_auto: bool = field(default=False, repr=False)
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def score(self, names: Sequence[str]) -> int | None:
        """How well a header matches this file's signature (None: it does not match)."""
        have = {n.lower() for n in names}
        if any(f.lower() in have for f in self.forbidden):
            return None
        if self.required:
            if not all(r.lower() in have for r in self.required):
                return None
            return len(self.required) * 10 + sum(o.lower() in have for o in self.optional)
        hits = sum(k.lower() in have for k in self.known)
        return hits if self.min_matches and hits >= self.min_matches else None

    def missing(self, names: Sequence[str]) -> list[str]:
        have = {n.lower() for n in names}
        return [r for r in self.required if r.lower() not in have]


@dataclass(frozen=True)
class Profile:
    """A parsed, checked profile: its name (recorded on every load), defaults, value maps and file types."""

    name: str
    vendor: str
    defaults: Mapping[str, Any]
    value_maps: Mapping[str, Mapping[str, Any]]
    files: tuple[ProfileFile, ...]
    path: Path | None = None

    @property
    def timezone(self) -> str:
        return str(self.defaults.get("timezone", "clinic_local"))

    @property
    def null_values(self) -> tuple[str, ...]:
        """Cell values that mean empty (`defaults.null_values`, else `DEFAULT_NULL_VALUES`; `[]` = none)."""
        values = self.defaults.get("null_values")
        return DEFAULT_NULL_VALUES if values is None else tuple(str(v) for v in values)


# --- reading and checking ------------------------------------------------------------------------------------


def read_profile(path: Path, contracts: Mapping[str, Contract] | None = None) -> Profile:
    """Parse and check one profile YAML, so a mistake fails before any file is read."""
    contracts = load_contracts() if contracts is None else contracts
    where = f"profile {Path(path).name}"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProfileError(f"{where} could not be read as YAML ({type(exc).__name__}); fix the file.") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("profile"), str):
        raise ProfileError(f"{where}: expected a mapping with a 'profile' name; see ingestion/README.md.")
    defaults = dict(data.get("defaults") or {})
    value_maps = {str(k): _string_map(str(k), v, where) for k, v in (data.get("value_maps") or {}).items()}
    files = tuple(_parse_file(f, where, contracts, value_maps, defaults) for f in data.get("files") or ())
    if not files:
        raise ProfileError(f"{where}: 'files' is empty; add one entry per vendor file type.")
    profile = Profile(str(data["profile"]), str(data.get("vendor", "")), defaults, value_maps, files, Path(path))
    _check_timezone(profile, where)
    _check_null_values(defaults.get("null_values"), f"{where}: defaults.null_values")
    return profile


def _check_null_values(values: Any, where: str) -> None:
    if values is not None and (not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
        raise ProfileError(
            f'{where} must be a list of quoted texts (e.g. ["NULL", "N/A"]), or [] for none; YAML reads '
            f"an unquoted NULL or null as no value, so quote each one."
        )


def _string_map(name: str, mapping: Any, where: str) -> dict[str, Any]:
    """YAML reads `1: upsert` with an int key; vendor values are text, so keys become strings. Keys match
    trimmed and in any case (`map_key`), so two keys that differ only so must not map to different values."""
    result = {str(k): v for k, v in (mapping or {}).items()}
    seen: dict[str, Any] = {}
    for key, value in result.items():
        if map_key(key) in seen and seen[map_key(key)] != value:
            raise ProfileError(
                f"{where}: value_maps.{name} has keys that differ only in case or spaces ({key!r}) with "
                f"different values; keys are matched trimmed and in any case, so keep one."
            )
        seen[map_key(key)] = value
    return result


def map_key(value: str) -> str:
    """How a vendor value is looked up in a value map: trimmed, runs of whitespace as one space, lower case,
    because a practice types `initial evaluation` or `Initial  Evaluation ` as often as its configured name."""
    return " ".join(str(value).split()).lower()


def unmapped_default(mapping: Mapping[str, Any]) -> str | None:
    """The value a map gives a vendor value it does not know; None when `_unmapped` is flag / keep (absent),
    which pass the vendor value on for the contract to quarantine."""
    other = mapping.get("_unmapped", "flag")
    return None if other in ("flag", "keep", None) else str(other)


def _check_timezone(profile: Profile, where: str) -> None:
    zone = profile.timezone
    if zone == "ask":
        return  # refused at load time with a fix (see `clinic_zone_problem`)
    for key, name in (("timezone", zone), ("clinic_timezone", profile.defaults.get("clinic_timezone"))):
        if name in (None, "clinic_local"):
            continue
        try:
            ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            raise ProfileError(
                f"{where}: defaults.{key} must be an IANA zone (e.g. America/Chicago) or clinic_local."
            ) from None
    if zone != "clinic_local" and not profile.defaults.get("clinic_timezone"):
        raise ProfileError(
            f"{where}: times are in {zone}, so defaults.clinic_timezone (the clinics' IANA zone, used when the "
            f"clinic is not in raw.clinics) is required."
        )


def _parse_file(
    spec: Mapping[str, Any],
    where: str,
    contracts: Mapping[str, Contract],
    maps: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
) -> ProfileFile:
    name = str(spec.get("name", "?"))
    where = f"{where}, file {name!r}"
    feeds = spec.get("feeds")
    if not isinstance(feeds, str) or feeds not in contracts:
        raise ProfileError(f"{where}: 'feeds' must name one contract ({', '.join(sorted(contracts))}).")
    contract = contracts[feeds]
    match = spec.get("match") or {}
    columns = spec.get("columns") or {}
    for target, col in columns.items():
        if target not in contract.column_names:
            raise ProfileError(f"{where}: column {target!r} is not in the {feeds} contract.")
        _check_column(col, f"{where}, column {target!r}", maps)
        if "identical_rows" in col and (col.get("derive") != "concat" or target not in contract.natural_key):
            raise ProfileError(
                f"{where}, column {target!r}: identical_rows applies to a record id ({', '.join(contract.natural_key)}) "
                f"made with derive: concat only."
            )
        if col.get("identical_rows", "keep") not in IDENTICAL_ROWS:
            raise ProfileError(f"{where}, column {target!r}: identical_rows must be keep (default) or merge.")
    skip = spec.get("skip_lines", (defaults or {}).get("skip_lines", 0))
    skip_auto = skip == AUTO_SKIP
    if skip_auto:
        skip = 0
    elif isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip <= MAX_SKIP_LINES:
        raise ProfileError(
            f"{where}: skip_lines must be a whole number from 0 to {MAX_SKIP_LINES} (the lines above the header row), "
            f"or {AUTO_SKIP} (the first of the first {AUTO_HEADER_LINES} lines that fits the file type)."
        )
    for i, emit in enumerate(spec.get("emit") or ()):
        for key in ("event_type", "event_at"):
            if key not in emit:
                raise ProfileError(f"{where}: emit entry {i + 1} needs '{key}'.")
            _check_column(_as_column(emit[key], key), f"{where}, emit {i + 1} {key}", maps)
    if spec.get("emit") and not any(e.get("when", "always") == "always" for e in spec["emit"]):
        raise ProfileError(f"{where}: one emit entry must have `when: always`, so every vendor row is counted.")
    flag = spec.get("change_flag")
    if flag and (not isinstance(flag, Mapping) or flag.get("map") not in maps or not flag.get("column")):
        raise ProfileError(f"{where}: change_flag needs 'column' and 'map' (a name under value_maps).")
    required = tuple(str(c) for c in match.get("header_required") or ())
    known = tuple(str(c) for c in match.get("header_known") or ())
    if not required and not (known and match.get("header_min_matches")):
        raise ProfileError(f"{where}: match needs header_required, or header_known with header_min_matches.")
    return ProfileFile(
        name=name,
        feeds=feeds,
        required=required,
        optional=tuple(str(c) for c in match.get("header_optional") or ()),
        forbidden=tuple(str(c) for c in match.get("header_forbidden") or ()),
        known=known,
        min_matches=int(match.get("header_min_matches") or 0),
        partial=bool(spec.get("partial", False)),
        skip_lines=skip,
        skip_auto=skip_auto,
        spec=spec,
    )


def _as_column(value: Any, key: str) -> Mapping[str, Any]:
    """emit's event_type may be a constant, event_at a vendor column name: both become column specs."""
    if isinstance(value, Mapping):
        return value
    return {"const": value} if key == "event_type" else {"from": value, "parse": "timestamp"}


def _check_column(col: Any, where: str, maps: Mapping[str, Any]) -> None:
    if not isinstance(col, Mapping):
        raise ProfileError(f"{where}: expected a mapping such as {{from: vendor_column}}.")
    unknown = set(col) - COLUMN_KEYS
    if unknown:
        raise ProfileError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(COLUMN_KEYS))}."
        )
    sources = [k for k in ("from", "const", "derive") if k in col]
    if len(sources) != 1:
        raise ProfileError(f"{where}: give exactly one of from, const, derive.")
    if "derive" in col and col["derive"] not in DERIVATIONS:
        raise ProfileError(f"{where}: derive {col['derive']!r} is not one of {', '.join(DERIVATIONS)}.")
    if "map" in col and col["map"] not in maps:
        raise ProfileError(f"{where}: map {col['map']!r} is not under value_maps.")
    if "parse" in col and col["parse"] not in PARSES:
        raise ProfileError(f"{where}: parse must be one of {', '.join(PARSES)}.")
    if "transform" in col and col["transform"] not in TRANSFORMS:
        raise ProfileError(f"{where}: transform must be one of {', '.join(TRANSFORMS)}.")
    if "fallback" in col:
        _check_column(col["fallback"], f"{where} fallback", maps)
    if "null_values" in col:
        if "from" not in col:
            raise ProfileError(f"{where}: null_values applies to a `from` column only.")
        _check_null_values(col["null_values"], f"{where}: null_values")


@cache
def load_profiles(directory: Path = PROFILES_DIR) -> dict[str, Profile]:
    """The shipped profiles keyed by name, read once per process."""
    return _read_folder(directory)


def _read_folder(directory: Path) -> dict[str, Profile]:
    profiles: dict[str, Profile] = {}
    for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
        profile = read_profile(path)
        if profile.name in profiles:
            raise ProfileError(f"profile {path.name}: the name {profile.name!r} is used twice in {directory}.")
        profiles[profile.name] = profile
    return profiles


def home_profiles_dir(home: Path) -> Path:
    """Where a practice keeps its own profiles: `$PTPULSE_HOME/profiles/`, beside its stores (an upgrade of the
    installation replaces `ingestion/profiles/`, never the home)."""
    return Path(home) / HOME_PROFILES


def available_profiles(home: Path | None = None) -> dict[str, Profile]:
    """The profiles detection and `--profile NAME` use: the shipped ones, then the home's (`home_profiles_dir`),
    read on every call so a profile saved there is used by the next ingest; a home profile replaces a shipped
    one of the same name (a practice's fixed copy of a vendor profile keeps the vendor's name)."""
    profiles = dict(load_profiles())
    if home is not None and home_profiles_dir(home).is_dir():
        profiles.update(_read_folder(home_profiles_dir(home)))
    return profiles


def resolve_profile(name_or_path: str, home: Path | None = None) -> Profile:
    """`--profile NAME` (a shipped profile or one in the home's profiles/) or a path to a profile YAML (e.g. one
    `profile draft` wrote)."""
    profiles = available_profiles(home)
    if name_or_path in profiles:
        return profiles[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() in (".yml", ".yaml") and path.is_file():
        return read_profile(path)
    where = f" or {home_profiles_dir(home)}" if home is not None else ""
    raise ProfileError(
        f"no profile named {name_or_path!r} in ingestion/profiles/{where}. Use one of: "
        f"{', '.join(sorted(profiles))}, or the path of a profile .yml file (e.g. one written by "
        f"`ptpulse profile draft`)."
    )


HeaderAt = Callable[[int], Sequence[str] | None]


def header_skip(pfile: ProfileFile, names: Sequence[str] | None, header_at: HeaderAt | None) -> int | None:
    """How many lines of the file lie above the header `pfile` reads: its `skip_lines`, or with `skip_lines: auto`
    the first n < AUTO_HEADER_LINES whose line n + 1 fits the file type (None: no line does)."""
    if not pfile.skip_auto:
        return pfile.skip_lines
    for n in range(AUTO_HEADER_LINES):
        line = (names if n == 0 and names is not None else header_at(n) if header_at else None) or ()
        if pfile.score(line) is not None:
            return n
    return None


def header_names(pfile: ProfileFile, names: Sequence[str] | None, header_at: HeaderAt | None) -> Sequence[str]:
    """The column names a file type reads: line 1's, or line skip_lines + 1's (`header_at`) for a file type with
    `skip_lines` (none when that line cannot be read), or the header `skip_lines: auto` found."""
    skip = header_skip(pfile, names, header_at)
    if skip is None:
        return ()
    if skip == 0:
        return names or ()
    return (header_at(skip) if header_at else None) or ()


def detect(
    names: Sequence[str] | None, profiles: Mapping[str, Profile], header_at: HeaderAt | None = None
) -> tuple[Profile, ProfileFile] | None:
    """The profile file type whose header signature fits best: line 1's names, or for a file type with
    `skip_lines` the names on its header line (`header_at(skip_lines)`), or with `skip_lines: auto` the first of
    the first lines that fits it; None = no profile (native contract)."""
    best: tuple[int, Profile, ProfileFile] | None = None
    for profile in profiles.values():
        for pfile in profile.files:
            score = pfile.score(header_names(pfile, names, header_at))
            if score is not None and (best is None or score > best[0]):
                best = (score, profile, pfile)
    return (best[1], best[2]) if best else None


def file_of(profile: Profile, names: Sequence[str], header_at: HeaderAt | None = None) -> ProfileFile | str:
    """The file type of a forced profile that fits `names` (or, with `skip_lines`, its header line's names), or
    the problem: a line 1 that is not the header (a report title above it, another delimiter), else which
    columns the closest file type lacks. Only column names of the profile and counts are named, never the
    text of line 1 (it may be a data row)."""
    scored = [(f.score(header_names(f, names, header_at)), f) for f in profile.files]
    fitting = [(s, f) for s, f in scored if s is not None]
    if fitting:
        return max(fitting, key=lambda sf: sf[0])[1]
    untitled = [f for f in profile.files if f.skip_lines and f.score(names) is not None]
    if untitled:  # exported without its report title: reading from line skip_lines + 1 would drop rows
        return untitled_problem(profile, untitled[0])
    not_header = _not_a_header(profile, names)
    if not_header:
        return not_header
    closest = min(profile.files, key=lambda f: len(f.missing(names)) if f.required else 99)
    return (
        f"its header fits no file type of profile {profile.name!r}; the closest, {closest.name!r}, lacks "
        f"column(s) {', '.join(closest.missing(names)) or '(a known column set)'}"
    )


def untitled_problem(profile: Profile, pfile: ProfileFile) -> str:
    """Why a file whose line 1 already holds `pfile`'s column names is refused when `pfile` has `skip_lines`: read
    from line skip_lines + 1, its first rows would be lost."""
    return (
        f"line 1 already holds the column names of file type {pfile.name!r}, but profile {profile.name!r} reads the "
        f"header on line {pfile.skip_lines + 1} (skip_lines: {pfile.skip_lines}), which would drop "
        f"{pfile.skip_lines} line(s) of rows; nothing was loaded. This export has no report title: ingest it with a "
        f"copy of the profile without skip_lines, or export it with the title"
    )


def _not_a_header(profile: Profile, names: Sequence[str]) -> str | None:
    """Why line 1 is not a header this profile can read, when it shares no column name with the profile."""
    known = {n.lower() for f in profile.files for n in (*f.required, *f.optional, *f.known)}
    for f in profile.files:
        known |= {str(c["from"]).lower() for c in (f.spec.get("columns") or {}).values() if "from" in c}
    if any(n.lower() in known for n in names if n):
        return None
    hint = _delimiter_hint(list(names))
    if hint:
        return f"line 1 is one field, not the column names profile {profile.name!r} reads.{hint.rstrip('.')}"
    if all(f.skip_auto for f in profile.files):
        return (
            f"none of its first {AUTO_HEADER_LINES} lines holds the column names of a file type of profile "
            f"{profile.name!r} (skip_lines: auto)"
        )
    return (
        f"line 1 has {len(names)} field(s) and none is a column of profile {profile.name!r}: is there a report "
        f"title above the header? Set `skip_lines: <number of lines above the header>` on the file type in the "
        f"profile (`ptpulse profile draft` on the file proposes it), or delete the line(s) above the column names"
    )


# --- compiling a profile file type to SQL --------------------------------------------------------------------


def strptime_first(x: str, formats: Sequence[str]) -> str:
    """SQL: `x` read by the first of `formats` that reads it (NULL if none). DuckDB's %Y also reads `25` as
    the year 0025, so an Excel m/d/yy re-save would land 2000 years early: a %Y format only reads text with
    exactly 4 digits where %Y stands (`year_pattern`), and a %y format later in the list gets its chance.
    Formats without a zone only (`zoned`): a %z format gives a TIMESTAMPTZ, which must not be mixed with
    naive values (see `_Compiler.local_timestamp`)."""
    tries = [_strptime(x, f) for f in formats]
    return tries[0] if len(tries) == 1 else f"coalesce({', '.join(tries)})"


def zoned(fmt: str) -> bool:
    """A format that reads a UTC offset (%z) or zone name (%Z): DuckDB returns the exact instant (TIMESTAMPTZ)."""
    return any(token in ZONED for token in _format_tokens(fmt))


def _strptime(x: str, fmt: str) -> str:
    if zoned(fmt):  # ISO 8601's `Z` (UTC), which DuckDB's %z does not read
        x = f"regexp_replace({x}, '([0-9])\\s*[Zz]\\s*$', '\\1+00:00')"
    parsed = f"try_strptime({x}, {lit(fmt)})"
    if "%Y" not in _format_tokens(fmt):
        return parsed
    return f"CASE WHEN regexp_full_match({x}, {lit(year_pattern(fmt))}) THEN {parsed} END"


def _format_tokens(fmt: str) -> list[str]:
    return re.findall(r"%.|\s+|[^%\s]+|%", fmt)


def year_pattern(fmt: str) -> str:
    """A regex a text must fully match before a %Y format may read it: %Y is 4 digits, literals as written,
    whitespace any (as strptime skips it); other directives are left to strptime."""
    parts = []
    for token in _format_tokens(fmt):
        if token == "%Y":
            parts.append("[0-9]{4}")
        elif token == "%%":
            parts.append("%")
        elif token.startswith("%") and len(token) == 2:
            parts.append(".*?")
        elif token.isspace():
            parts.append(r"\s*")
        else:
            parts.append(re.escape(token))
    return r"\s*" + "".join(parts) + r"\s*"


class _Compiler:
    """Builds SQL expressions over `_vendor` (positional text columns `_v<i>`) for one profile file type."""

    def __init__(self, profile: Profile, pfile: ProfileFile, names: Sequence[str]) -> None:
        self.profile, self.pfile = profile, pfile
        self.position: dict[str, str] = {}
        for i, name in enumerate(names, start=1):
            self.position.setdefault(name, f"_v{i}")
        for i, name in enumerate(names, start=1):  # a case-only difference still finds the column
            self.position.setdefault(name.lower(), f"_v{i}")
        # ids in a vendor export are the practice's record ids (they merge with the same records from other
        # systems); `id_namespace` prefixes `prefix: true` ids only when two merged systems' ids would collide
        namespace = profile.defaults.get("id_namespace")
        self.namespace = str(namespace) if namespace else None
        self.dates = [str(f) for f in profile.defaults.get("date_formats") or [OUT_DATE]]
        self.stamps = [str(f) for f in profile.defaults.get("timestamp_formats") or [OUT_TIMESTAMP]]
        self.convert = profile.timezone not in ("clinic_local", "ask")
        self.offsets = any(zoned(f) for f in self.stamps)
        self.zoned = self.convert or self.offsets  # needs the clinic's zone (`_tz`, `_zone_sql`)
        self.nulls = profile.null_values

    def ref(self, vendor_column: str, nulls: Sequence[str] | None = None) -> str:
        """The vendor column's trimmed text, NULL when empty, when it is one of the profile's `null_values`
        (`nulls` overrides them for one column) or when the header lacks the column."""
        pos = self.position.get(str(vendor_column)) or self.position.get(str(vendor_column).lower())
        if pos is None:
            return "CAST(NULL AS VARCHAR)"
        tokens = self.nulls if nulls is None else tuple(str(n) for n in nulls)
        keys = sorted({map_key(t) for t in tokens if map_key(t)})
        if not keys:
            return f"nullif(trim({pos}), '')"
        listed = ", ".join(lit(k) for k in keys)
        return f"(CASE WHEN lower(trim({pos})) IN ({listed}) THEN NULL ELSE nullif(trim({pos}), '') END)"

    def parsed_date(self, x: str) -> str:
        return strptime_first(x, self.dates)

    def _each_format(self, x: str) -> list[tuple[str, str]]:
        """(format, SQL of `x` read by it) per timestamp format: TIMESTAMPTZ for a zoned format, else TIMESTAMP."""
        return [(f, _strptime(x, f)) for f in self.stamps]

    def local_timestamp(self, x: str) -> str:
        """SQL TIMESTAMP: `x` as the clinic's local wall time (what the contracts store), read by the first
        timestamp format that reads it. A value with a UTC offset is an exact instant: it becomes the clinic's
        wall time at that instant (`timezone(_tz, instant)`), whatever the profile's `timezone`, the host's or
        the session's zone. A value without one means what `timezone` says: clinic_local as written, else a wall
        time in that zone converted to the clinic's. NULL if no format reads it (or, for an offset, when the
        clinic's zone is unknown)."""
        tries = []
        for fmt, t in self._each_format(x):
            if zoned(fmt):
                tries.append(f"timezone(_tz, {t})")
            elif self.convert:
                tries.append(f"timezone(_tz, timezone({lit(self.profile.timezone)}, {t}))")
            else:
                tries.append(t)
        return tries[0] if len(tries) == 1 else f"coalesce({', '.join(tries)})"

    def utc_timestamp(self, x: str) -> str:
        """SQL TIMESTAMP: `x` as a UTC wall time (for durations across a DST change or between offsets); only
        used when a format reads offsets. A naive clinic_local value needs the clinic's zone (NULL without)."""
        tries = []
        for fmt, t in self._each_format(x):
            if zoned(fmt):
                tries.append(f"timezone('UTC', {t})")
            else:
                zone = lit(self.profile.timezone) if self.convert else "_tz"
                tries.append(f"timezone('UTC', timezone({zone}, {t}))")
        return tries[0] if len(tries) == 1 else f"coalesce({', '.join(tries)})"

    def column(self, col: Mapping[str, Any], target: str) -> str:
        """SQL text value of one contract column, built from its spec."""
        x = self.unmapped_value(col)
        if "map" in col:
            x = self.mapped(x, col["map"])
        prefix = col.get("prefix")
        if prefix is True:
            prefix = f"{self.namespace}:{target.removesuffix('_id')}" if self.namespace else None
        if prefix:
            x = f"({lit(str(prefix) + ':')} || {x})"
        if "fallback" in col:
            x = f"coalesce({x}, {self.column(col['fallback'], target)})"
        if "default" in col:
            x = f"coalesce({x}, {lit(str(col['default']))})"
        return x

    def unmapped_value(self, col: Mapping[str, Any]) -> str:
        """The column's value before its value map: the source, parsed and transformed."""
        if "const" in col:
            x = lit(str(col["const"]))
        elif "derive" in col:
            x = self.derive(col)
        else:
            x = self.ref(col["from"], col.get("null_values"))
        if "parse" in col:
            x = self.parse(x, col["parse"])
        if "transform" in col:
            x = self.transform(x, col["transform"])
        return x

    def parse(self, x: str, kind: str) -> str:
        """Explicit formats, first that fits wins; a value no format reads is passed on as written so the
        contract quarantines it (unless it would have needed a zone conversion: then a fixed marker)."""
        if kind == "timestamp":
            out = f"strftime({self.local_timestamp(x)}, {lit(OUT_TIMESTAMP)})"
            if not self.zoned:
                return f"CASE WHEN {x} IS NULL THEN NULL ELSE coalesce({out}, {x}) END"
            # never passed on as written: the contract's cast would drop or apply an offset its own way
            unread = lit("unreadable in the profile's timestamp_formats")
            if self.offsets:
                reads = " OR ".join(f"{t} IS NOT NULL" for f, t in self._each_format(x) if zoned(f))
                no_zone = lit(
                    "a time with a UTC offset, but the clinic's time zone is unknown (defaults.clinic_timezone)"
                )
                unread = f"CASE WHEN _tz IS NULL AND ({reads}) THEN {no_zone} ELSE {unread} END"
            return f"CASE WHEN {x} IS NULL THEN NULL ELSE coalesce({out}, {unread}) END"
        if kind == "date":
            return f"coalesce(strftime({self.parsed_date(x)}, {lit(OUT_DATE)}), {x})"
        return self.number(x)

    def number(self, x: str) -> str:
        """Money and counts: a currency sign and thousands grouping (`$1,250.00`) are export formatting, not
        data. Accounting negatives are negative: `(45.00)`, `$ (7.25)` and a trailing minus `85.00-` become
        `-45.00`, `-7.25`, `-85.00`. Any other comma (`12,50`, `1.250,00`, `1,2,3`) is a decimal comma or a typo,
        so the value passes on as written and the contract quarantines it, instead of landing 100 times too
        large; so does any other text (`unreadable_numbers` counts them with the forms that are read)."""
        negative = (
            f"CASE WHEN regexp_full_match({x}, {lit(PARENTHESES)}) "
            f"THEN '-' || regexp_extract({x}, {lit(PARENTHESES)}, 1) "
            f"WHEN regexp_full_match({x}, {lit(TRAILING_MINUS)}) "
            f"THEN '-' || regexp_extract({x}, {lit(TRAILING_MINUS)}, 1) ELSE {x} END"
        )
        bare = f"regexp_replace({negative}, {lit(CURRENCY_SIGN)}, '\\1')"
        return (
            f"CASE WHEN regexp_full_match({bare}, {lit(GROUPED_NUMBER)}) THEN replace({bare}, ',', '') "
            f"WHEN contains({bare}, ',') THEN {x} ELSE {bare} END"
        )

    def transform(self, x: str, kind: str) -> str:
        if kind == "upper":
            return f"upper({x})"
        if kind == "lower":
            return f"lower({x})"
        if kind == "digits":
            return f"nullif(regexp_replace({x}, '[^0-9]', '', 'g'), '')"
        # modifiers_to_pipe: "GP, KX" / "GP KX" / "GP-KX" -> "GP|KX"
        return f"nullif(trim(regexp_replace(upper({x}), '[^A-Z0-9]+', '|', 'g'), '|'), '')"

    def mapped(self, x: str, name: str) -> str:
        """Vendor value -> contract value, keys matched by `map_key`. `_unmapped`: `flag`/`keep` (default) pass
        the vendor value on, so the contract's accepted list quarantines it; any other value is the default
        target (counted in the load's notes by `unmapped_notes`)."""
        mapping = self.profile.value_maps[name]
        targets = {map_key(k): v for k, v in mapping.items() if not k.startswith("_")}
        branches = " ".join(f"WHEN {lit(k)} THEN {lit(None if v is None else str(v))}" for k, v in targets.items())
        default = unmapped_default(mapping)
        fallback = x if default is None else lit(default)
        return f"(CASE {self.key(x)} {branches} ELSE {fallback} END)" if branches else fallback

    def key(self, x: str) -> str:
        """SQL of `map_key`: the vendor value as value-map keys are compared."""
        return f"lower(trim(regexp_replace({x}, '\\s+', ' ', 'g')))"

    def defaulted(self, col: Mapping[str, Any]) -> str | None:
        """SQL condition: the column's vendor value is not in its value map and takes the `_unmapped` default
        (None when the column has no map or its map passes unknown values on)."""
        mapping = self.profile.value_maps.get(col.get("map", ""))
        if mapping is None or unmapped_default(mapping) is None:
            return None
        x = self.unmapped_value(col)
        keys = ", ".join(lit(k) for k in sorted({map_key(k) for k in mapping if not k.startswith("_")}))
        return f"{x} IS NOT NULL" + (f" AND {self.key(x)} NOT IN ({keys})" if keys else "")

    def derive(self, col: Mapping[str, Any]) -> str:
        fn, args = col["derive"], list(col.get("args") or [])
        if fn in ("minutes_between", "hours_between"):
            unit, scale = ("minute", "") if fn == "minutes_between" else ("second", " / 3600.0")
            a, b = (self.ref(c) for c in args[:2])
            if self.offsets:  # elapsed time between instants (offsets differ across a DST change)
                diff = f"date_diff({lit(unit)}, {self.utc_timestamp(a)}, {self.utc_timestamp(b)})"
                local = f"date_diff({lit(unit)}, {self.local_timestamp(a)}, {self.local_timestamp(b)})"
                diff = f"coalesce({diff}, {local})"
            else:
                diff = f"date_diff({lit(unit)}, {strptime_first(a, self.stamps)}, {strptime_first(b, self.stamps)})"
            if fn == "minutes_between":
                return f"CAST({diff} AS VARCHAR)"
            return f"CAST(round({diff}{scale}, 2) AS VARCHAR)"
        if fn == "date_to_timestamp":
            return self.day_or_time(self.ref(args[0]))
        if fn == "concat":
            parts = ", ".join(self.ref(c) for c in args)
            return f"nullif(concat_ws({lit(str(col.get('sep', ':')))}, {parts}), '')"
        return self.eight_minute_units(args[0], list(col.get("group_by") or []))

    def day_or_time(self, x: str) -> str:
        """A date field (note_finalized_date, payment_date) that exports also write with a time: a value the
        date_formats read is that day at 00:00:00 (day precision, no zone shift), any other is read by the
        timestamp_formats exactly as `parse: timestamp` reads it. Dates first: a date format never reads text
        with a time after it, while a date-only timestamp format would move a day through a zone conversion."""
        day = f"strftime({self.parsed_date(x)}, '%Y-%m-%d 00:00:00')"
        return f"coalesce({day}, {self.parse(x, 'timestamp')})"

    def eight_minute_units(self, minutes_column: str, group_by: list[str]) -> str:
        """CMS 8-minute rule. Per line without `group_by`: floor(m/15), +1 if the rest >= 8. With `group_by`
        (patient, date of service): total units = floor(total/15) (+1 if the rest >= 8) over the timed lines
        of the group; each line gets floor(m/15), and the units left go to the lines with the largest rest."""
        m = f"TRY_CAST({self.ref(minutes_column)} AS INTEGER)"
        if not group_by:
            return f"CAST({m} // 15 + CASE WHEN {m} % 15 >= 8 THEN 1 ELSE 0 END AS VARCHAR)"
        part = ", ".join([self.ref(c) for c in group_by] + [f"({m} IS NULL)"])
        total = f"sum({m}) OVER (PARTITION BY {part})"
        units_total = f"({total} // 15 + CASE WHEN {total} % 15 >= 8 THEN 1 ELSE 0 END)"
        left = f"({units_total} - sum({m} // 15) OVER (PARTITION BY {part}))"
        rank = f"row_number() OVER (PARTITION BY {part} ORDER BY {m} % 15 DESC, {m} DESC, _src_line)"
        return f"CASE WHEN {m} IS NOT NULL THEN CAST({m} // 15 + CASE WHEN {rank} <= {left} THEN 1 ELSE 0 END AS VARCHAR) END"

    def condition(self, when: Any) -> str:
        """`always`, or a mapping of not_null / is_null / equals / in / not_in on vendor columns (AND-ed)."""
        if when in (None, "always"):
            return "true"
        parts = []
        for col in _listed(when.get("not_null")):
            parts.append(f"{self.ref(col)} IS NOT NULL")
        for col in _listed(when.get("is_null")):
            parts.append(f"{self.ref(col)} IS NULL")
        for col, value in (when.get("equals") or {}).items():
            parts.append(f"coalesce({self.ref(col)} = {lit(str(value))}, false)")
        for col, values in (when.get("in") or {}).items():
            parts.append(f"coalesce({self.ref(col)} IN ({', '.join(lit(str(v)) for v in values)}), false)")
        for col, values in (when.get("not_in") or {}).items():
            parts.append(f"coalesce({self.ref(col)} NOT IN ({', '.join(lit(str(v)) for v in values)}), true)")
        return " AND ".join(parts) or "true"


def _listed(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def occurrence_keys(pfile: ProfileFile, contract: Contract) -> list[str]:
    """The record-id columns (natural key) this file type makes with `derive: concat` and numbers by occurrence
    (`identical_rows: keep`, the default): see `profile_sql`."""
    columns = pfile.spec.get("columns") or {}
    return [
        k
        for k in contract.natural_key
        if k in columns and columns[k].get("derive") == "concat" and columns[k].get("identical_rows", "keep") == "keep"
    ]


def profile_sql(profile: Profile, pfile: ProfileFile, names: Sequence[str], contract: Contract) -> str:
    """SELECT over temp `_vendor` (`_v<i>`, `_src_line`, `_breaks`, `_nul`) giving the contract's columns as
    text plus `_op` (upsert / tombstone), `_skip` and `_skip_column` (why a row is excluded, else NULL),
    `_src_line`, `_breaks`, `_nul` and `_occurrence`. Needs temp `_clinic_tz (clinic_id, tz)` when the profile
    converts zones.

    A record id made by `concat` of other columns (`occurrence_keys`) is the same for two genuinely identical
    rows (two $20.00 copays of one claim on one day): the duplicate rule would land one. So the rows of one file
    that share such a key are numbered (`_occurrence`) in the order of their contract values (then file line),
    and the 2nd, 3rd, ... get `<key>#2`, `<key>#3`. Numbering by content, not by position, makes the ids a
    function of the file's rows of that key: the same file re-read, or a later export re-sending the same rows
    in any order, gives the same ids, so it lands nothing twice."""
    c = _Compiler(profile, pfile, names)
    spec = pfile.spec
    columns = spec.get("columns") or {}
    text = {
        col.name: c.column(columns[col.name], col.name) if col.name in columns else None for col in contract.columns
    }

    skip, skip_column = "CAST(NULL AS VARCHAR)", "CAST(NULL AS VARCHAR)"
    op = lit(UPSERT)
    flag = spec.get("change_flag")
    if flag:
        mapped = c.mapped(c.ref(flag["column"]), flag["map"])
        op = f"(CASE WHEN {mapped} = {lit(TOMBSTONE)} THEN {lit(TOMBSTONE)} ELSE {lit(UPSERT)} END)"
    conditions = _exclusions(c, profile, spec)
    if conditions:
        skip = "CASE " + " ".join(f"WHEN {cond} THEN {lit(detail)}" for cond, _, detail in conditions) + " END"
        skip_column = "CASE " + " ".join(f"WHEN {cond} THEN {lit(col)}" for cond, col, _ in conditions) + " END"

    zone = _zone_sql(c, text.get("clinic_id"))
    emits = spec.get("emit") or []
    base = [f"{text[n] if text[n] is not None else 'CAST(NULL AS VARCHAR)'} AS {quote_ident('c_' + n)}" for n in text]
    extra = []
    for i, emit in enumerate(emits):
        extra.append(f"{c.column(_as_column(emit['event_type'], 'event_type'), 'event_type')} AS _e{i}_type")
        extra.append(f"{c.column(_as_column(emit['event_at'], 'event_at'), 'event_at')} AS _e{i}_at")
        extra.append(f"{c.condition(emit.get('when', 'always'))} AS _e{i}_when")
    meta = "_src_line, _breaks, _nul, _occurrence"
    inner = (
        f"SELECT {', '.join(base + extra)}, {op} AS _op, {skip} AS _skip, {skip_column} AS _skip_column, "
        f"_src_line, _breaks, _nul FROM (SELECT *, {zone} FROM _vendor)"
    )
    keys = occurrence_keys(pfile, contract)
    if keys:
        key_cols = [quote_ident("c_" + k) for k in keys]
        content = [f"{quote_ident('c_' + n)} NULLS FIRST" for n in text if n not in keys] + [
            f"_e{i}_{part} NULLS FIRST" for i in range(len(spec.get("emit") or [])) for part in ("type", "at")
        ]
        number = (
            f"row_number() OVER (PARTITION BY _skip IS NULL, {', '.join(key_cols)} "
            f"ORDER BY {', '.join([*content, '_op', '_src_line'])})"
        )
        mark = lit(OCCURRENCE_MARK)
        first = key_cols[0]
        inner = (
            f"SELECT * REPLACE (CASE WHEN _skip IS NULL AND _occurrence > 1 "
            f"THEN {first} || {mark} || CAST(_occurrence AS VARCHAR) ELSE {first} END AS {first}) "
            f"FROM (SELECT *, {number} AS _occurrence FROM ({inner}))"
        )
    else:
        inner = f"SELECT *, 1 AS _occurrence FROM ({inner})"

    def out(overrides: Mapping[str, str]) -> str:
        cols = ", ".join(f"{overrides.get(n, quote_ident('c_' + n))} AS {quote_ident(n)}" for n in text)
        return f"{cols}, _op, _skip, _skip_column, {meta}"

    if not emits:
        return f"SELECT {out({})} FROM ({inner})"
    branches = [f"SELECT {out({})} FROM p WHERE _skip IS NOT NULL"]
    for i in range(len(emits)):
        overrides = {"event_type": f"_e{i}_type", "event_at": f"_e{i}_at"}
        if "event_id" in text:  # each event of one vendor row gets its own id: <row id>:<event_type>
            overrides["event_id"] = f"(c_event_id || ':' || _e{i}_type)"
        branches.append(f"SELECT {out(overrides)} FROM p WHERE _skip IS NULL AND _e{i}_when")
    return f"WITH p AS MATERIALIZED ({inner}) " + " UNION ALL ".join(branches)


def _exclusions(c: _Compiler, profile: Profile, spec: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(SQL condition that excludes a vendor row, vendor column, detail) per profile filter and change flag."""
    conditions = []
    for rule in spec.get("filter") or ():
        vendor = str(rule["column"])
        ref = c.ref(vendor)
        if "in" in rule:
            values = ", ".join(lit(str(v)) for v in rule["in"])
            cond = f"NOT coalesce({ref} IN ({values}), false)"
            detail = f"{vendor}: the profile keeps only the value(s) {', '.join(map(str, rule['in']))}"
        else:
            values = ", ".join(lit(str(v)) for v in rule["not_in"])
            cond = f"coalesce({ref} IN ({values}), false)"
            detail = f"{vendor}: the profile excludes rows with this value ({rule.get('note', 'see the profile')})"
        conditions.append((cond, vendor, detail))
    flag = spec.get("change_flag")
    if flag:
        known = [k for k, v in profile.value_maps[flag["map"]].items() if v in (TOMBSTONE, UPSERT)]
        keys = ", ".join(lit(map_key(k)) for k in known)
        cond = f"NOT coalesce({c.key(c.ref(flag['column']))} IN ({keys}), false)"
        detail = f"{flag['column']}: the change flag is empty or not one of {', '.join(known)} (profile change_flag)"
        conditions.append((cond, str(flag["column"]), detail))
    return conditions


def _zone_sql(c: _Compiler, clinic: str | None) -> str:
    """The `_tz` column: the clinic's zone from temp `_clinic_tz`, else the profile's clinic_timezone."""
    if not c.zoned:
        return "CAST(NULL AS VARCHAR) AS _tz"
    default = lit(c.profile.defaults.get("clinic_timezone") or _default_zone())
    return f"coalesce((SELECT z.tz FROM _clinic_tz z WHERE z.clinic_id = {clinic or 'NULL'}), {default}) AS _tz"


def _default_zone() -> str | None:
    """The practice's zone ($PTPULSE_DEFAULT_TIMEZONE, an IANA name) for a clinic raw.clinics gives none."""
    import os

    zone = os.environ.get(DEFAULT_ZONE_ENV, "").strip()
    try:
        ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return zone or None


def unmapped_notes(con: Any, profile: Profile, pfile: ProfileFile, names: Sequence[str]) -> list[str]:
    """Per mapped column, how many vendor values its value map did not know and replaced by the `_unmapped`
    default: that default is a guess (a practice's own `Eval` would count as a follow-up), so the load says
    how often it was made. Also, per `parse: decimal` / `integer` column, how many values the parse could not
    read (the contract quarantines them with its generic hint; this note names the forms a profile reads).
    Counts only, never a value. Runs on `con` over temp `_vendor` (and `_clinic_tz` when the profile converts
    zones), the tables `profile_sql` reads; rows a filter excludes are not counted."""
    c = _Compiler(profile, pfile, names)
    checks = _defaulted_checks(c, pfile.spec)
    numbers = _number_checks(c, pfile.spec)
    if c.offsets and not c.convert:  # rows whose clinic has no known zone: their offset times cannot be placed
        numbers.append(("", {}, "_tz IS NULL"))
    empties = _default_checks(c, pfile.spec)
    if not checks and not numbers and not empties:
        return []
    kept = " AND ".join(f"NOT ({cond})" for cond, _, _ in _exclusions(c, profile, pfile.spec)) or "true"
    clinic = (pfile.spec.get("columns") or {}).get("clinic_id")
    zone = _zone_sql(c, c.column(clinic, "clinic_id") if clinic else None)
    counts = ", ".join(f"count(*) FILTER (WHERE {cond})" for _, _, cond in [*checks, *numbers, *empties])
    row = con.execute(f"SELECT {counts} FROM (SELECT *, {zone} FROM _vendor) WHERE {kept}").fetchone()
    notes = []
    for (target, col, _), n in zip(empties, row[len(checks) + len(numbers) :], strict=True):
        if n:
            source = f"{col['from']} " if "from" in col else ""
            notes.append(
                f"{target}: {n} empty {source}cell(s) took the default {col['default']} (a constant of the "
                f"profile, not a value of the export)"
            )
    row = row[: len(checks) + len(numbers)]
    for (target, col, _), n in zip(checks, row[: len(checks)], strict=True):
        if n:
            name = col["map"]
            default = unmapped_default(profile.value_maps[name])
            notes.append(
                f"{target}: {n} value(s) not in value map {name} became {default} (its `_unmapped`); add the "
                f"practice's spelling(s) to value_maps.{name} of the profile"
            )
    for (target, col, _), n in zip(numbers, row[len(checks) :], strict=True):
        if n and not target:
            notes.append(
                f"{n} row(s) of a clinic with no known time zone: a time with a UTC offset cannot be placed on its "
                f"clock and is quarantined; set defaults.clinic_timezone in the profile (or the clinic's timezone "
                f"in clinics, or {DEFAULT_ZONE_ENV})"
            )
        elif n:
            forms = MONEY_FORMS if col["parse"] == "decimal" else "12 or 1,250 (a whole number)"
            notes.append(
                f"{target}: {n} value(s) of {col['from']} could not be read as a number and were quarantined; "
                f"the profile reads {forms} and treats {', '.join(profile.null_values) or 'no text'} as empty "
                f"(defaults.null_values); a decimal comma (12,50) is never guessed"
            )
    return notes


def _default_checks(c: _Compiler, spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """(contract column, column spec with the `default` taken, SQL condition: the value is empty, so a profile
    constant replaces it) per column (and emit entry): the map's `_unmapped` value when the column has such a map
    (it fills an empty cell before any fallback or default), else the column's `default` (an empty cell, a null
    token, a value the map maps to empty, and an empty `fallback`). Counted in the load's notes."""
    specs = [(t, col, "true") for t, col in (spec.get("columns") or {}).items()]
    for emit in spec.get("emit") or ():
        when = c.condition(emit.get("when", "always"))
        specs += [(k, _as_column(emit[k], k), when) for k in ("event_type", "event_at")]
    checks = []
    for target, col, when in specs:
        if "const" in col or _windowed(col):
            continue
        mapping = c.profile.value_maps.get(col.get("map", ""))
        filler = unmapped_default(mapping) if mapping is not None else None
        if filler is not None:  # the map's `_unmapped` value fills an empty cell too (before fallback / default)
            checks.append((target, {**col, "default": filler}, f"({when}) AND {c.unmapped_value(col)} IS NULL"))
        elif "default" in col:
            x = c.column({k: v for k, v in col.items() if k != "default"}, target)
            checks.append((target, col, f"({when}) AND {x} IS NULL"))
    return checks


def _windowed(col: Mapping[str, Any]) -> bool:
    """A column spec (or its fallback) computed with a window function (cms_8_minute_units with group_by): it
    cannot be counted inside an aggregate's FILTER."""
    if col.get("derive") == "cms_8_minute_units" and col.get("group_by"):
        return True
    return isinstance(col.get("fallback"), Mapping) and _windowed(col["fallback"])


def _number_checks(c: _Compiler, spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """(contract column, column spec, SQL condition: the parsed text is not a number the contract reads) per
    `from` column with `parse: decimal` / `integer`."""
    checks = []
    for target, col in (spec.get("columns") or {}).items():
        if col.get("parse") in ("decimal", "integer") and "from" in col:
            text = DECIMAL_TEXT if col["parse"] == "decimal" else INTEGER_TEXT
            # as it reaches the contract (a value map may empty a token); a fallback is ours (and may be a window)
            x = c.column({k: v for k, v in col.items() if k not in ("fallback", "default")}, target)
            checks.append((target, col, f"{x} IS NOT NULL AND NOT regexp_full_match({x}, {lit(text)})"))
    return checks


def _defaulted_checks(c: _Compiler, spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """(contract column, column spec, SQL condition) for every mapped spec whose map has an `_unmapped`
    default: the column's own spec, its fallback (only where the column itself is empty) and emit entries."""
    specs = [(t, col, "true") for t, col in (spec.get("columns") or {}).items()]
    for emit in spec.get("emit") or ():
        when = c.condition(emit.get("when", "always"))
        specs += [(k, _as_column(emit[k], k), when) for k in ("event_type", "event_at")]
    checks = []
    while specs:
        target, col, when = specs.pop(0)
        test = c.defaulted(col)
        if test is not None:
            checks.append((target, col, f"({when}) AND {test}"))
        if "fallback" in col:
            primary = {k: v for k, v in col.items() if k not in ("fallback", "default")}
            specs.append((target, col["fallback"], f"({when}) AND {c.column(primary, target)} IS NULL"))
    return checks


def unsupplied(pfile: ProfileFile, contract: Contract) -> list[str]:
    """Required contract columns this file type has no mapping for (they quarantine as `required`)."""
    columns = pfile.spec.get("columns") or {}
    emitted = {"event_type", "event_at"} if pfile.spec.get("emit") else set()
    return [c for c in contract.required_columns if c not in columns and c not in emitted]


def clinic_zone_problem(profile: Profile) -> str | None:
    """A profile whose zone must be given per practice (`timezone: ask`) cannot load as shipped."""
    if profile.timezone == "ask":
        return (
            f"profile {profile.name!r} does not know the time zone of the export's times (`timezone: ask`). Copy "
            f"{profile.path.name if profile.path else 'the profile'}, set defaults.timezone (e.g. UTC) and "
            f"defaults.clinic_timezone, and ingest with --profile <path of the copy>"
        )
    return None


# --- `ptpulse profile draft` ---------------------------------------------------------------------------------

# Vendor spellings seen in the researched layouts (docs/research/vendor_layouts.md) -> contract column.
SYNONYMS: dict[str, str] = {
    "appointmnet_id": "appointment_id",
    "appointment": "appointment_id",
    "appt_id": "appointment_id",
    "case_id": "episode_id",
    "case": "episode_id",
    "episode": "episode_id",
    "patient": "patient_id",
    "patient_account": "patient_id",
    "patient_account_number": "patient_id",
    "patient_acct": "patient_id",
    "mrn": "patient_id",
    "clinic": "clinic_id",
    "facility_id": "clinic_id",
    "location_id": "clinic_id",
    "service_location_id": "clinic_id",
    "provider_id": "therapist_id",
    "therapist": "therapist_id",
    "rendering_provider_id": "therapist_id",
    "webpt_treating_therapist_id": "therapist_id",
    "start_date": "scheduled_start",
    "start_time": "scheduled_start",
    "appointment_start": "scheduled_start",
    "visit_date": "service_date",
    "date_of_service": "service_date",
    "dos": "service_date",
    "service_start_date": "service_date",
    "cpt": "cpt_code",
    "procedure_code": "cpt_code",
    "cpt_modifier": "modifiers",
    "procedure_modifier1": "modifiers",
    "charge_amount": "charge_usd",
    "total_charges": "charge_usd",
    "amount": "amount_usd",
    "dollar_amount_paid": "amount_usd",
    "charge_date": "posted_at",
    "posting_date": "posted_at",
    "note_finalized_date": "posted_at",
    "encounter_id": "claim_id",
    "visit_id": "claim_id",
    "record_pointer": "charge_id",
    "auth_start_date": "valid_from",
    "auth_end_date": "valid_to",
    "visit_authorized_for": "visits_authorized",
    "payment_date": "event_at",
    "deposit_date": "event_at",
    "payer": "payer_id",
    "insurance_id": "payer_id",
    "from_payer_id": "payer_id",
    "reason": "cancel_reason",
    "minutes": "minutes",
    "dob": "birth_date",
    "date_of_birth": "birth_date",
    "gender": "sex",
}


def normalise(name: str) -> str:
    """`PatientID`, `Patient ID`, `patient-id` -> `patient_id` (camel case split, separators to _)."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name).strip())
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return re.sub(r"_+", "_", text)


def non_header_problem(file_name: str, names: Sequence[str], known: int, outcome: str, fix: str) -> str | None:
    """Why line 1 is not a header row of column names (one field holding another delimiter; or `known` == 0 of
    its names a column any contract knows: a report title above the header, or a data row), or None. `outcome`
    says what did not happen, `fix` what to do. Names only the file and counts, never line 1's text (it may be a
    data row)."""
    hint = _delimiter_hint(list(names))
    if hint:
        return f"{file_name}: line 1 is one field, not a header row of column names.{hint}"
    if known == 0:
        return (
            f"{file_name}: none of the {len(names)} names on line 1 is a column any contract knows, so {outcome}. "
            f"Is there a report title above the header (delete it), or is line 1 a data row? {fix}"
        )
    return None


def known_columns(names: Sequence[str], contracts: Mapping[str, Contract] | None = None) -> int:
    """How many of `names` match a column of some contract (exact, normalised or synonym: `_match_column`)."""
    contracts = load_contracts() if contracts is None else contracts
    return sum(1 for n in names if any(_match_column(n, c) for c in contracts.values()))


def _refuse_non_header(file_name: str, names: Sequence[str], best: tuple[int, int, float]) -> None:
    """A draft needs the column names on line 1; a title line or another delimiter would become the profile's
    header signature."""
    problem = non_header_problem(
        file_name, names, best[1], "no profile was drafted", "Draft from a file with the column names on line 1."
    )
    if problem:
        raise ProfileError(problem)


def _match_column(name: str, contract: Contract) -> tuple[str, str] | None:
    """(contract column, how) for one vendor column name, or None."""
    if name in contract.column_names:
        return name, "exact"
    norm = normalise(name)
    if norm in contract.column_names:
        return norm, "normalised"
    for candidate in (norm, norm.removesuffix("_id"), norm + "_id"):
        target = SYNONYMS.get(candidate)
        if target in contract.column_names:
            return target, "synonym"
        if candidate in contract.column_names:
            return candidate, "normalised"
    return None


DRAFT_SCAN_LINES = 20  # `profile draft` looks this far down for the header under a report title


def header_line(lines: Sequence[Sequence[str] | None], contracts: Mapping[str, Contract] | None = None) -> int | None:
    """How many lines stand above the header row, from a file's first lines (split as CSV; None = a line that is
    no header row, e.g. empty): 0 when line 1 is a header (`non_header_problem` finds none), else the first line
    with at least two names, one of them a column some contract knows, and no other delimiter; None if none is."""
    contracts = load_contracts() if contracts is None else contracts
    for i, names in enumerate(lines):
        if not names:
            continue
        known = known_columns(names, contracts)
        if non_header_problem("", names, known, "", "") is None and (i == 0 or sum(map(bool, names)) > 1):
            return i
    return None


def draft_profile(
    headers: Mapping[str, Sequence[str]], name: str = "new_vendor", skips: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """A starter profile for files never seen before: per file, the contract its header most likely feeds,
    each column matched (exact / normalised / synonym) or flagged `unmatched`, and the contract's required
    columns nothing matched listed under `gaps`. Only header names are read, never a data row.

    Refuses (ProfileError) a file whose line 1 is not a header (one field: a report title or another
    delimiter; or no name any contract knows), rather than write a profile keyed on a title line. A contract
    is chosen by required columns matched, then columns matched, then the share of its required columns
    matched; a tie after that is not guessed: `feeds` says TODO with the candidates. `skips`: per file, the lines
    above its header (`header_line`): the entry gets `skip_lines` and `headers` holds the names of that line."""
    contracts = load_contracts()
    files = []
    for file_name, names in headers.items():
        scored = []
        for contract in contracts.values():
            matched = {n: _match_column(n, contract) for n in names}
            targets = {m[0] for m in matched.values() if m}
            hits = len(targets & set(contract.required_columns))
            score = (hits, len(targets), hits / max(len(contract.required_columns), 1))
            scored.append((score, contract, matched))
        scored.sort(key=lambda sc: sc[0], reverse=True)
        _refuse_non_header(file_name, names, scored[0][0])
        _, contract, matched = scored[0]
        tied = [sc[1].source for sc in scored if sc[0] == scored[0][0]]
        columns: dict[str, Any] = {}
        unmatched = []
        used: set[str] = set()
        for vendor, hit in matched.items():
            if hit and hit[0] not in used:
                used.add(hit[0])
                columns[hit[0]] = {"from": vendor, "note": f"{hit[1]} match"}
            else:
                unmatched.append(vendor)
        stem = normalise(Path(file_name).stem) or "file"
        gaps = [c for c in contract.required_columns if c not in used]
        skip = (skips or {}).get(file_name, 0)
        entry: dict[str, Any] = {
            "name": stem,
            **({"skip_lines": skip} if skip else {}),
            "feeds": contract.source if len(tied) == 1 else f"TODO: one of {', '.join(sorted(tied))}",
            "match": {"header_required": [n for n in names if matched.get(n)]},
            "columns": columns,
            "unmatched": unmatched,
            "gaps": gaps,
        }
        warnings = []
        if skip:
            warnings.append(
                f"the header is on line {skip + 1}: `skip_lines: {skip}` skips the {skip} line(s) above it (a report "
                f"title); every export of this type must have exactly that many (one without them is refused)"
            )
        if len(tied) > 1:
            warnings.append(
                f"the header fits {', '.join(sorted(tied))} equally well: set `feeds` to the contract this file "
                f"holds (columns and gaps are drafted for {contract.source})"
            )
        keys = [k for k in contract.natural_key if k in gaps]
        if keys:
            warnings.append(
                f"no column matched the key {', '.join(keys)}: map the export's row id. If you derive it with "
                f"`concat` of other columns, two genuinely identical rows (two $20.00 copays of one claim on one "
                f"day) get the same key: they are numbered <key>#2, #3 in each file and all land (counted in the "
                f"load's message), which is right only if a file always carries every row of a key (a full or "
                f"date-range export, not a changed-rows one)"
            )
        if warnings:
            entry["warnings"] = warnings
        files.append(entry)
    return {
        "profile": normalise(name) or "new_vendor",
        "schema_version": 1,
        "vendor": "TODO: vendor and product",
        "sources": [{"title": "TODO: where these column names come from (export documentation or a sample file)"}],
        "defaults": {
            "date_formats": ["%Y-%m-%d", "%m/%d/%Y"],
            "timestamp_formats": ["%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p"],
            "timezone": "clinic_local",
        },
        "value_maps": {},
        "files": files,
    }
