"""What a person reads instead of a code: one label table for every code the app shows.

Written once, in the dbt seed `dbt_project/seeds/labels.csv` (domain, code, label): channels, source types,
payer classes, funnel stages and exits, statuses, CARC groups, attribution models... dbt serves the same file
as `marts.labels` for SQL users, so the app and an analyst's query read the same words. The work queue's
rules and outreach outcomes keep their own seeds (app/lib/queue_vocabulary.py); `label()` reads them too,
so a page asks one function whatever the code.

A code the table does not know is still shown in words ("new_code" -> "New code") rather than raw, and a
missing value reads "Not recorded": no page shows snake_case, `None` or `nan`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from app.lib import queue_vocabulary
from ptpulse.core.config import DBT_PROJECT_DIR

LABELS_FILE = DBT_PROJECT_DIR / "seeds" / "labels.csv"
COLUMNS = ("domain", "code", "label")
NOT_RECORDED = "Not recorded"
# Domains whose words live in the work queue's own seeds.
QUEUE_RULE = "queue_rule"
QUEUE_OUTCOME = "queue_outcome"
# A code as stored: lower-case words joined by underscores (what no user should read).
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")


class LabelError(ValueError):
    """The label seed cannot be read as written (says which line and column to fix)."""


@cache
def table(path: Path = LABELS_FILE) -> Mapping[str, Mapping[str, str]]:
    """domain -> {code -> label}, read once per process; a malformed file stops with line, column and fix."""
    if not path.exists():
        raise LabelError(f"{path}: file not found; it ships with the repository (dbt_project/seeds), restore it.")
    out: dict[str, dict[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelError(
                f"{path.name}: missing column(s) {', '.join(missing)}; the header must be domain,code,label."
            )
        for line, row in enumerate(reader, 2):
            domain, code, text = ((row.get(c) or "").strip() for c in COLUMNS)
            for column, value in zip(COLUMNS, (domain, code, text), strict=True):
                if not value:
                    raise LabelError(f"{path.name} line {line}, column {column}: empty; every row needs all three.")
            if code in out.setdefault(domain, {}):
                raise LabelError(
                    f"{path.name} line {line}, column code: the same domain and code appear on an earlier line; "
                    "keep one row per code."
                )
            out[domain][code] = text
    return out


def _queue_domain(domain: str) -> Mapping[str, str] | None:
    if domain == QUEUE_RULE:
        return {k: r.label for k, r in queue_vocabulary.rules().items()}
    if domain == QUEUE_OUTCOME:
        return {k: o.label for k, o in queue_vocabulary.outcomes().items()}
    return None


def labels_for(domain: str) -> Mapping[str, str]:
    """Every code -> label of one domain (empty for an unknown domain)."""
    queue = _queue_domain(domain)
    return queue if queue is not None else table().get(domain, {})


def humanize(code: str) -> str:
    """A code the table does not know, in words: 'new_code' -> 'New code'."""
    words = str(code).replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else NOT_RECORDED


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT


def label(domain: str, code: Any) -> str:
    """The words for one code of a domain; unknown codes humanized, missing values 'Not recorded'."""
    if _missing(code) or str(code).strip() == "":
        return NOT_RECORDED
    return labels_for(domain).get(str(code), humanize(str(code)))


def relabel(values: pd.Series, domain: str | tuple[str, ...], missing: str | None = NOT_RECORDED) -> pd.Series:
    """A column of codes as labels (vectorised: one map over the distinct codes, not per row). Several
    domains: the first that knows a code names it (a referral's current stage is a stage or an exit).
    A missing code reads `missing` (None: left missing, for a table whose placeholder says it)."""
    known: dict[str, str] = {}
    for d in reversed((domain,) if isinstance(domain, str) else domain):
        known.update(labels_for(d))
    distinct = pd.unique(values.dropna().astype(str))
    mapping = {c: known.get(c, humanize(c)) for c in distinct}
    named = values.astype("string").map(mapping).astype(object)
    return named if missing is None else named.fillna(missing)


def relabel_frame(
    df: pd.DataFrame, columns: Mapping[str, str | tuple[str, ...]], missing: str | None = NOT_RECORDED
) -> pd.DataFrame:
    """A copy of df with each named column (column -> domain) shown as labels."""
    out = df.copy()
    for column, domain in columns.items():
        if column in out:
            out[column] = relabel(out[column], domain, missing)
    return out


def snake_codes(domains: Iterable[str] | None = None) -> frozenset[str]:
    """Every snake_case code of the table (and the queue seeds): what must never reach a page as is."""
    names = list(domains) if domains is not None else [*table(), QUEUE_RULE, QUEUE_OUTCOME]
    return frozenset(code for d in names for code in labels_for(d) if SNAKE.match(code))


@cache
def _snake_words() -> tuple[re.Pattern[str], Mapping[str, str]]:
    words: dict[str, str] = {}
    for domain in [*table(), QUEUE_RULE, QUEUE_OUTCOME]:
        for code, text in labels_for(domain).items():
            if SNAKE.match(code):
                words.setdefault(code, text)
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b")
    return pattern, words


def in_words(text: str) -> str:
    """Free text written for people (a model card, a note) with every snake_case code of the label table
    replaced by its label: '| auto_pi | 85 |' -> '| Auto / personal injury | 85 |'."""
    pattern, words = _snake_words()
    return pattern.sub(lambda m: words[m.group(0)], text)
