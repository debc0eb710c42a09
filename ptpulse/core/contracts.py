"""Source contracts: the columns, types, rules and natural key of every source file, read from YAML.

The contracts in `ingestion/contracts/*.yml` and the code lists in `ingestion/codes/*.csv` are data; this
module is the ONE place that parses them, checks that they make sense, and hands out `Contract` objects
to every reader: the loader generates its validation SQL from them (ingestion/), the generator writes
contract-shaped files from them (seed_data/), and the de-identification rule takes its PHI columns from
them (`phi_columns`, ptpulse/core/deid.py). A rule is changed by editing a YAML file, never the code.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ptpulse.core.config import CODES_DIR, CONTRACTS_DIR

# Contract type -> DuckDB type of the landed column. DECIMAL(18,2): money has two decimals (interfaces.md).
SQL_TYPES: dict[str, str] = {
    "varchar": "VARCHAR",
    "integer": "INTEGER",
    "decimal": "DECIMAL(18,2)",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
}

# How a value of each type must be written in a source file (used in quarantine details and docs).
TYPE_FORMATS: dict[str, str] = {
    "varchar": "any text",
    "integer": "a whole number, e.g. 12",
    "decimal": "a number, e.g. 120.50",
    "date": "YYYY-MM-DD",
    "timestamp": "YYYY-MM-DD HH:MM:SS",
    "boolean": "true or false",
}

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_COLUMN_KEYS = {
    "type",
    "required",
    "accepted",
    "pattern",
    "iana_zone",
    "min",
    "max",
    "codes",
    "phi",
    "description",
    "trim",
}


class ContractError(ValueError):
    """A contract or code list file is malformed (a bug in the repository, not in a source file)."""


@dataclass(frozen=True)
class Column:
    """One column of a source file and the rules its values must follow."""

    name: str
    type: str
    required: bool = False
    accepted: tuple[str, ...] | None = None
    pattern: str | None = None
    iana_zone: bool = False  # an IANA time zone name DuckDB knows (America/Chicago): times are converted with it
    min: Any = None
    max: Any = None
    codes: str | None = None  # ingestion/codes/<codes>.csv; a miss lands, flagged as a warning by dbt
    phi: bool = False
    description: str | None = None
    trim: bool = True  # surrounding whitespace removed before any rule (` T1 ` is `T1`, a tab alone is empty)

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]


@dataclass(frozen=True)
class Contract:
    """A source's contract: its columns in file order, natural key, event time and PHI flag."""

    source: str
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]
    event_time: str
    phi: bool = False
    description: str | None = None
    grain: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.source} has no column {name!r}")


@dataclass(frozen=True)
class DaysFromToday:
    """A date bound relative to the day of the load (`today+1d`, `today+400d`): date sanity for event times.

    One impossible future timestamp would otherwise become the warehouse's "now" (as_of is the latest past
    event), so event times may not lie more than a day or so after the load; appointments may be booked ahead.
    """

    days: int

    def __str__(self) -> str:
        return f"the load date {'+' if self.days >= 0 else '-'} {abs(self.days)} days"


_RELATIVE = re.compile(r"^today([+-]\d+)d$")


def _bound(value: Any, col_type: str, where: str) -> Any:
    """Parse a min/max bound into a Python value of the column's type, so a typo fails at load time."""
    if value is None:
        return None
    if isinstance(value, str) and value.startswith("today"):
        match = _RELATIVE.match(value)
        if not match or col_type not in ("date", "timestamp"):
            raise ContractError(f"{where}: relative bound {value!r} must look like today+400d, on a date or timestamp")
        return DaysFromToday(int(match.group(1)))
    try:
        if col_type == "integer":
            return int(value)
        if col_type == "decimal":
            return Decimal(str(value))
        if col_type == "date":
            return value if isinstance(value, date) else date.fromisoformat(str(value))
        if col_type == "timestamp":
            if isinstance(value, datetime):
                return value
            if isinstance(value, date):
                return datetime(value.year, value.month, value.day)
            return datetime.fromisoformat(str(value))
    except (ValueError, InvalidOperation) as exc:
        raise ContractError(f"{where}: bound {value!r} is not a valid {col_type}") from exc
    raise ContractError(f"{where}: min/max is only allowed on numbers, dates and timestamps, not {col_type}")


def _parse_column(name: str, spec: Mapping[str, Any], where: str, code_lists: Mapping[str, frozenset[str]]) -> Column:
    """Build one Column from its YAML mapping, rejecting unknown keys and types early."""
    where = f"{where}: column {name!r}"
    if not _IDENTIFIER.match(name):
        raise ContractError(f"{where}: column names must be lower_snake_case")
    if not isinstance(spec, Mapping):
        raise ContractError(f"{where}: expected a mapping of rules")
    unknown = set(spec) - _COLUMN_KEYS
    if unknown:
        raise ContractError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_COLUMN_KEYS)})")
    col_type = spec.get("type")
    if col_type not in SQL_TYPES:
        raise ContractError(f"{where}: type {col_type!r} is not one of {sorted(SQL_TYPES)}")
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ContractError(f"{where}: pattern {pattern!r} does not compile: {exc}") from exc
    codes = spec.get("codes")
    if codes is not None and codes not in code_lists:
        raise ContractError(f"{where}: code list {codes!r} not found in {CODES_DIR}")
    accepted = spec.get("accepted")
    return Column(
        name=name,
        type=col_type,
        required=bool(spec.get("required", False)),
        accepted=tuple(str(v) for v in accepted) if accepted is not None else None,
        pattern=pattern,
        iana_zone=bool(spec.get("iana_zone", False)),
        min=_bound(spec.get("min"), col_type, where),
        max=_bound(spec.get("max"), col_type, where),
        codes=codes,
        phi=bool(spec.get("phi", False)),
        description=spec.get("description"),
        trim=bool(spec.get("trim", True)),
    )


def parse_contract(
    data: Mapping[str, Any], path: Path | None = None, code_lists: Mapping[str, frozenset[str]] | None = None
) -> Contract:
    """Turn one YAML document into a checked Contract (source and column names become SQL identifiers)."""
    where = str(path) if path else "contract"
    code_lists = load_code_lists() if code_lists is None else code_lists
    source = data.get("source")
    if not isinstance(source, str) or not _IDENTIFIER.match(source):
        raise ContractError(f"{where}: 'source' must be a lower_snake_case name, got {source!r}")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, Mapping) or not raw_columns:
        raise ContractError(f"{where}: 'columns' must be a non-empty mapping")
    columns = tuple(_parse_column(n, s, where, code_lists) for n, s in raw_columns.items())
    names = {c.name for c in columns}
    if names & {"_load_id", "_row_hash", "_line"}:
        raise ContractError(f"{where}: column names starting with '_' are reserved for load metadata")
    natural_key = tuple(data.get("natural_key") or ())
    if not natural_key or not set(natural_key) <= names:
        raise ContractError(f"{where}: natural_key {list(natural_key)} must name columns of the contract")
    event_time = data.get("event_time")
    if event_time not in names:
        raise ContractError(f"{where}: event_time {event_time!r} must name a column of the contract")
    return Contract(
        source=source,
        columns=columns,
        natural_key=natural_key,
        event_time=event_time,
        phi=bool(data.get("phi", False)),
        description=data.get("description"),
        grain=data.get("grain"),
        path=path,
    )


@cache
def load_code_lists(directory: Path = CODES_DIR) -> dict[str, frozenset[str]]:
    """Every `<name>.csv` code list (first column `code`) as a set of valid codes, keyed by file stem."""
    lists: dict[str, frozenset[str]] = {}
    for path in sorted(directory.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "code" not in reader.fieldnames:
                raise ContractError(f"{path}: a code list needs a 'code' column")
            lists[path.stem] = frozenset(row["code"].strip() for row in reader if row["code"].strip())
    return lists


@cache
def load_contracts(directory: Path = CONTRACTS_DIR) -> dict[str, Contract]:
    """All contracts keyed by source, read once per process (they are data shipped with the code)."""
    code_lists = load_code_lists()
    contracts: dict[str, Contract] = {}
    for path in sorted(directory.glob("*.yml")):
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if not isinstance(data, Mapping):
            raise ContractError(f"{path}: expected a YAML mapping")
        contract = parse_contract(data, path, code_lists)
        if contract.source != path.stem:
            raise ContractError(f"{path}: source {contract.source!r} must match the file name")
        contracts[contract.source] = contract
    if not contracts:
        raise ContractError(f"no contracts found in {directory}")
    return contracts


def phi_columns(directory: Path = CONTRACTS_DIR) -> frozenset[str]:
    """Lower-cased names of every column flagged `phi: true` in any contract."""
    return frozenset(
        c.name.lower() for contract in load_contracts(directory).values() for c in contract.columns if c.phi
    )
