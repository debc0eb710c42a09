"""The installation secret behind `patient_key`, and the pseudonym it keys.

`patient_key` = first 16 hex characters of HMAC-SHA256(secret, patient_id). Without the secret the key cannot
be recomputed from a patient id (an unkeyed hash of the id, with any prefix, can be brute-forced in seconds
over the id space), so de-identified readers (marketing, analysts, the SQL page) cannot re-identify patients.

- Where: `$PTPULSE_SECRETS_DIR/pseudonym.key`, default `$PTPULSE_HOME/secrets/pseudonym.key`: outside the
  analytics files and the source tree; folder mode 0700, file mode 0600 (refused when group/other can read it).
- When: created on first use (the first build) with 32 random bytes (64 hex characters).
- How it reaches dbt: only the file's *path* goes to dbt (env PTPULSE_PSEUDONYM_KEY_FILE, profiles.yml plugin
  config); the plugin ptpulse/build/dbt_plugin.py reads the file and registers the UDF `ptpulse_pseudonym`,
  so the secret never appears in SQL, compiled/run files, target/ artifacts or logs.
- Rotation (`ptpulse secret rotate`): a new secret, then every app action and outbound message whose task id
  embeds an old pseudonym is re-keyed to the new one (one transaction) (old -> new map over the distinct patient ids of raw.duckdb), then the
  new secret replaces the old one. Resumable: the new secret is first written as `pseudonym.key.next`, and a
  rerun after a crash finishes with that same secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _random
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ptpulse.core.config import Settings
from ptpulse.core.sql import quote_ident

KEY_FILE = "pseudonym.key"
KEY_BYTES = 32
PSEUDONYM_HEX = 16
# Task-id rules whose entity embeds a patient pseudonym (`rule:<patient_key>:<...>`), re-keyed on rotation.
PSEUDONYM_TASK_RULES = ("medicare_kx_threshold",)


class SecretError(RuntimeError):
    """The pseudonym secret is missing, malformed or readable by others."""


def secrets_dir(settings: Settings) -> Path:
    raw = os.environ.get("PTPULSE_SECRETS_DIR")
    return Path(raw).expanduser().resolve() if raw else settings.home / "secrets"


def key_path(settings: Settings) -> Path:
    return secrets_dir(settings) / KEY_FILE


def _next_path(path: Path) -> Path:
    return path.with_name(path.name + ".next")


def _write_new_key(path: Path) -> None:
    """Write a fresh random key to `path` (mode 0600, created exclusively)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path.parent, 0o700)
    except OSError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(_random.token_hex(KEY_BYTES) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def ensure_key(settings: Settings) -> Path:
    """The key file's path; creates the secret on first use. Refuses a half-finished rotation."""
    path = key_path(settings)
    if _next_path(path).exists():
        raise SecretError(
            f"{_next_path(path)} exists: a key rotation did not finish. Run `ptpulse secret rotate` again to finish it."
        )
    if not path.exists():
        try:
            _write_new_key(path)
        except FileExistsError:  # another process created it first: use theirs
            pass
    load_key(path)  # validate now, not in the middle of a dbt run
    return path


def load_key(path: Path) -> bytes:
    """The secret bytes in `path`; raises SecretError naming the file and the fix (never the content)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SecretError(
            f"{path} does not exist: run `ptpulse build` (creates it) or set "
            "PTPULSE_SECRETS_DIR to the folder holding pseudonym.key."
        ) from None
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(f"{path} is readable by other users: run `chmod 600 {path}`.")
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretError(
            f"{path} does not hold a {KEY_BYTES}-byte hex key: restore it from backup, or run "
            "`ptpulse secret rotate` to start a new one (pseudonyms change)."
        )
    return key


def pseudonym_one(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def key_id(settings: Settings) -> str:
    """A public name of the current secret: its pseudonym of a fixed label (one-way, reveals nothing of the key).
    Creates the secret on first use, like `ensure_key`. The build records it in its fingerprint, so a rotated
    secret rebuilds every table holding a patient_key in full (ptpulse/build/incremental.py)."""
    return pseudonym_one(load_key(ensure_key(settings)), "ptpulse:key-id")


def pseudonyms(key: bytes, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorised over the distinct values: HMAC once per distinct id, then a take() back to every row."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    encoded = pc.dictionary_encode(values)
    uniques = encoded.dictionary.to_pylist()
    keyed = pa.array([pseudonym_one(key, v) for v in uniques], type=pa.string())
    return pc.take(keyed, encoded.indices)


# -------------------------------------------------------------------------------------------- rotation


@dataclass
class Rotation:
    key_file: Path
    patients: int
    actions_rekeyed: int
    messages_rekeyed: int = 0


def raw_patient_ids(raw_db: Path) -> pa.Array:
    """Distinct patient ids over every raw table with a patient_id column (one scan per table)."""
    if not Path(raw_db).exists():
        return pa.array([], type=pa.string())
    con = duckdb.connect(str(raw_db), read_only=True)
    try:
        tables = con.execute(
            "select table_catalog, table_schema, table_name from information_schema.columns "
            "where column_name = 'patient_id' and table_schema = 'raw' and table_catalog = current_database() "
            "order by 1, 2, 3"
        ).fetchall()
        if not tables:
            return pa.array([], type=pa.string())
        union = " union ".join(
            f"select cast(patient_id as varchar) as patient_id from {quote_ident(c)}.{quote_ident(s)}.{quote_ident(t)}"
            for c, s, t in tables
        )
        rows = con.execute(f"select distinct patient_id from ({union}) where patient_id is not null").fetchall()
    finally:
        con.close()
    return pa.array([r[0] for r in rows], type=pa.string())  # distinct ids only: one per patient


# app.sqlite tables whose task_id embeds a patient pseudonym (docs/interfaces.md section 4): the Work queue's actions
# and the outbound message log (a queued message's write-back names its task). Keyed by the table's own row id.
# audit_log is left as written: it is the append-only record of what was done (its task ids name the old keys).
REKEYED_TABLES = {"actions": "action_id", "messages": "message_id"}


def _rekeyed(task_id: str, mapping: dict[str, str]) -> str | None:
    parts = task_id.split(":")
    if len(parts) >= 2 and parts[1] in mapping:
        parts[1] = mapping[parts[1]]
        return ":".join(parts)
    return None


def rekey_app_state(app_db: Path, mapping: dict[str, str]) -> dict[str, int]:
    """Rewrite task ids `rule:<old pseudonym>:...` of PSEUDONYM_TASK_RULES to the new pseudonym in every table of
    REKEYED_TABLES, all in one transaction; returns the rows changed per table. Idempotent (new pseudonyms are not
    in `mapping`), so a rerun after an interrupted rotation changes nothing twice."""
    counts = dict.fromkeys(REKEYED_TABLES, 0)
    if not Path(app_db).exists() or not mapping:
        return counts
    con = sqlite3.connect(app_db, timeout=30)
    try:
        present = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'").fetchall()}
        like = " or ".join("task_id like ?" for _ in PSEUDONYM_TASK_RULES)
        params = [r + ":%" for r in PSEUDONYM_TASK_RULES]
        with con:  # one transaction: a rotation never leaves a message keyed apart from its task's actions
            con.execute("begin immediate")
            for table, key in REKEYED_TABLES.items():
                if table not in present:
                    continue
                rows = con.execute(f"select {key}, task_id from {table} where {like}", params).fetchall()
                updates = [(new, row_id) for row_id, task_id in rows if (new := _rekeyed(task_id, mapping))]
                con.executemany(f"update {table} set task_id = ? where {key} = ?", updates)
                counts[table] = len(updates)
        return counts
    finally:
        con.close()


def rekey_actions(app_db: Path, mapping: dict[str, str]) -> int:
    """`rekey_app_state`, counting the actions changed (the messages are re-keyed with them)."""
    return rekey_app_state(app_db, mapping)["actions"]


def rotate_key(settings: Settings) -> Rotation:
    """Replace the secret; re-key app actions and messages whose task ids embed the old pseudonym. Run under the pipeline
    lock, then build (the served files keep the old pseudonyms until the next build)."""
    path = key_path(settings)
    nxt = _next_path(path)
    old = load_key(path) if path.exists() else None  # a bad old key is reported before anything changes
    if not nxt.exists():
        _write_new_key(nxt)
    new = load_key(nxt)
    ids = raw_patient_ids(settings.raw_db)
    changed = dict.fromkeys(REKEYED_TABLES, 0)
    if old is not None:
        mapping = dict(zip(pseudonyms(old, ids).to_pylist(), pseudonyms(new, ids).to_pylist(), strict=True))
        changed = rekey_app_state(settings.app_db, mapping)
    os.replace(nxt, path)
    return Rotation(
        key_file=path, patients=len(ids), actions_rekeyed=changed["actions"], messages_rekeyed=changed["messages"]
    )
