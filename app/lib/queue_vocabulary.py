"""The work queue's vocabulary, written once in two dbt seeds and read here from the CSV files directly.

- `dbt_project/seeds/work_queue_rules.csv`: each rule's name, label, priority (and the escalated priority
  some rules move to), who works it (`queue`: front_desk or clinician), what its task is about (`subject`)
  and which step emits it (the work_queue_candidates mart or the no-show scores).
- `dbt_project/seeds/work_queue_outcomes.csv`: each outreach outcome's label, whether it counts as a
  contact (a person was reached) and whether it closes the task.

Why CSV seeds: dbt loads the same files (`marts.work_queue_rules`, `marts.work_queue_outcomes`), so the
mart's rules and the app's labels cannot drift apart. Read with the csv module (no warehouse needed), once
per process. A malformed file stops the app with the file, line, column and the fix.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ptpulse.core.config import DBT_PROJECT_DIR

SEEDS_DIR = DBT_PROJECT_DIR / "seeds"
RULES_FILE = SEEDS_DIR / "work_queue_rules.csv"
OUTCOMES_FILE = SEEDS_DIR / "work_queue_outcomes.csv"

QUEUES: tuple[str, ...] = ("front_desk", "clinician")
RULE_COLUMNS = ("rule", "label", "queue", "priority", "escalated_priority", "subject", "emitted_by", "description")
OUTCOME_COLUMNS = ("outcome", "label", "counts_as_contact", "closes_task")


class VocabularyError(ValueError):
    """A work-queue seed file that cannot be read as written (says where and what to fix)."""


@dataclass(frozen=True)
class Rule:
    rule: str
    label: str
    queue: str  # who works it: front_desk or clinician
    priority: int  # 1 = most urgent
    escalated_priority: int | None  # the priority the rule moves to when its escalation holds (None: never)
    subject: str  # what the task's entity is: referral, episode, appointment, note...
    emitted_by: str  # work_queue_candidates (dbt) or ml.no_show_scores (added in the app)
    description: str

    @property
    def worked_by(self) -> str:
        """'Front desk' or 'Clinician', for display."""
        return self.queue.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Outcome:
    outcome: str
    label: str
    counts_as_contact: bool  # a person was spoken to (the build counts it as the referral's contact)
    closes_task: bool  # the outreach finishes the task; otherwise it stays open for follow-up


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise VocabularyError(f"{path}: file not found; it ships with the repository (dbt_project/seeds), restore it.")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise VocabularyError(
                f"{path.name}: missing column(s) {', '.join(missing)}; the header must be {','.join(columns)}."
            )
        return [(line, {k: (v or "").strip() for k, v in row.items() if k}) for line, row in enumerate(reader, 2)]


def _int(path: Path, line: int, column: str, text: str, optional: bool = False) -> int | None:
    if optional and text == "":
        return None
    if not text.isdigit():
        raise VocabularyError(
            f"{path.name} line {line}, column {column}: expected a whole number"
            + (" or blank" if optional else "")
            + "; correct that cell."
        )
    return int(text)


def _bool(path: Path, line: int, column: str, text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise VocabularyError(f"{path.name} line {line}, column {column}: expected true or false; correct that cell.")
    return text.lower() == "true"


def _key(path: Path, line: int, column: str, text: str, seen: set[str]) -> str:
    if not text:
        raise VocabularyError(f"{path.name} line {line}, column {column}: empty; every row needs a name.")
    if text in seen:
        raise VocabularyError(
            f"{path.name} line {line}, column {column}: the same name appears on an earlier "
            "line; each name may appear once, merge the two rows."
        )
    seen.add(text)
    return text


@cache
def rules(path: Path = RULES_FILE) -> Mapping[str, Rule]:
    """rule -> Rule, in the file's order (the order rules are listed in filters)."""
    out: dict[str, Rule] = {}
    for line, row in _rows(path, RULE_COLUMNS):
        name = _key(path, line, "rule", row["rule"], set(out))
        if row["queue"] not in QUEUES:
            raise VocabularyError(
                f"{path.name} line {line}, column queue: expected one of {', '.join(QUEUES)}; correct that cell."
            )
        if not row["label"]:
            raise VocabularyError(
                f"{path.name} line {line}, column label: empty; every rule needs the label users see."
            )
        out[name] = Rule(
            rule=name,
            label=row["label"],
            queue=row["queue"],
            priority=_int(path, line, "priority", row["priority"]),
            escalated_priority=_int(path, line, "escalated_priority", row["escalated_priority"], True),
            subject=row["subject"],
            emitted_by=row["emitted_by"],
            description=row["description"],
        )
    return out


@cache
def outcomes(path: Path = OUTCOMES_FILE) -> Mapping[str, Outcome]:
    """outcome -> Outcome, in the file's order (the order the outreach form lists them)."""
    out: dict[str, Outcome] = {}
    for line, row in _rows(path, OUTCOME_COLUMNS):
        name = _key(path, line, "outcome", row["outcome"], set(out))
        out[name] = Outcome(
            outcome=name,
            label=row["label"] or name,
            counts_as_contact=_bool(path, line, "counts_as_contact", row["counts_as_contact"]),
            closes_task=_bool(path, line, "closes_task", row["closes_task"]),
        )
    return out
