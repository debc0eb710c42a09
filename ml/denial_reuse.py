"""Which of the served build's denial scores a night may keep: exactly those that scoring tonight would give again.

Why: a night rescored every open claim (570 k at 900 clinics: 62.6 s of a 300 s night, even with nothing new), yet a
claim's score is fixed once it is submitted, unless one of its inputs changes. Everything a score reads
(ml/denial.py `build_features`, `explain`; ml/warehouse.py `read_denial_frames`):
- its own `marts.claims` row (CLAIM_INPUTS) and whether it is still open;
- the `marts.charge_lines` of its patient (year-to-date charges) and those carrying its claim id (its own lines);
- the completed `marts.appointments` of its episode and of its appointment's episode (visit numbers, authorization
  visits used); its episode's diagnosis (`marts.episodes`); its payer's prior-auth rule (`marts.dim_payers`);
- the raw authorizations of its episode and the raw notes of its episode or appointment (every version);
- its scoring time: the submission time, or as_of while it is not submitted (or submitted after as_of);
- the model, the ml code and the libraries running them, and which raw exports exist (`score_key`).

The rule (`mark_reused`): a served row is kept only when tonight's build continues the served one incrementally
(`meta.build_state`: same fingerprint and last full refresh; a full refresh rescores all), its `score_key` is
tonight's, the claim is open tonight and was submitted by both builds' as_of, none of the inputs above differ
between the served file and tonight's (rows compared with `except all` both ways, on the candidates' rows only) and
no raw authorization or note of its episode or appointment was loaded since the served build. Reuse is by patient,
as scoring's batches are: a patient is kept whole or rescored whole. So a kept row is the row scoring would write;
its `scored_at` is set to tonight's as_of like every other row (the score holds as of it, and the work queue's
`denial_fix_before_submit` due times read it as before). Inputs are compared by content, not by which raw loads
touched whom: the marts link rows across patients (a charge line to a claim by person and date, a patient id to a
person), so raw provenance would need dbt's linking again.
"""

from __future__ import annotations

import hashlib
import platform
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import duckdb
import pandas as pd

from ml import warehouse
from ptpulse.core.sql import quote_ident

SERVED = "ptpulse_served"  # the catalog the served analytics file is attached as, read-only
CANDIDATES = "denial_reuse_candidates"  # temp tables of the scoring connection
TOUCHED = "denial_reuse_touched"
REUSED = warehouse.DENIAL_REUSED  # the patients whose served rows are kept (scoring skips them)
# the claim columns the features, the population and the output row read
CLAIM_INPUTS = (
    "claim_id",
    "episode_id",
    "appointment_id",
    "patient_key",
    "clinic_id",
    "payer_id",
    "payer_class",
    "service_date",
    "submitted_at",
    "billed_usd",
    "is_adjudicated",
)
LINE_INPUTS = (
    "charge_id",
    "claim_id",
    "patient_key",
    "service_date",
    "cpt_code",
    "modifiers",
    "units",
    "minutes",
    "is_timed",
    "charge_usd",
    "posted_at",
)
LIBRARIES = ("duckdb", "lightgbm", "numpy", "pandas", "scikit-learn")


@dataclass(frozen=True)
class Reuse:
    """What a night kept: `patients` whose served rows are kept (REUSED), `claims` kept, and why none when 0."""

    patients: int = 0
    claims: int = 0
    why_not: str | None = None


def score_key(model_file: Path, code_sha: str, sources: dict[str, bool]) -> str:
    """What a score is a function of besides its claim's inputs: the model file, the ml code, the libraries that run
    them and which raw exports exist (an export arriving or going changes every claim's features). Without a model
    file (a model fitted in memory) the key is new each time: nothing is kept."""
    h = hashlib.sha256(Path(model_file).read_bytes() if Path(model_file).is_file() else uuid.uuid4().bytes)
    h.update(code_sha.encode() + platform.python_version().encode())
    for lib in LIBRARIES:
        h.update(f"\0{lib}={metadata.version(lib)}".encode())
    h.update(repr(sorted(sources.items())).encode())
    return h.hexdigest()[:16]


def _cols(alias: str, names: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.{quote_ident(c)}" for c in names)


def _continues_served(con: duckdb.DuckDBPyConnection) -> tuple[int | None, str | None]:
    """(the served build's raw load id, None) when tonight's file continues the served build incrementally, else
    (None, why not)."""
    try:
        rows = con.execute(
            f"""select (select count(*) from (select fingerprint, full_refresh_at from meta.build_state
                        intersect select fingerprint, full_refresh_at from {SERVED}.meta.build_state)),
                       (select max(raw_load_id) from {SERVED}.meta.build_state)"""
        ).fetchall()[0]
    except duckdb.Error:
        return None, "no build state to compare with the served build"
    if not rows[0]:
        return None, "a full build (or another build than the served one's line): every open claim is scored"
    if rows[1] is None:
        return None, "the served build recorded no raw load"
    return rows[1], None


def _candidates(con: duckdb.DuckDBPyConnection, key: str, as_of: pd.Timestamp) -> int:
    """CANDIDATES: claims open tonight with a served row of tonight's score_key, submitted by both as_ofs."""
    con.execute(
        f"""
        create or replace temp table {CANDIDATES} as
        select n.claim_id, n.patient_key, n.episode_id, n.appointment_id, n.payer_id
        from ({warehouse.open_claims_sql(con)}) as n
        inner join {SERVED}.ml.denial_scores as d on d.claim_id = n.claim_id
        cross join (select max(as_of) as as_of from {SERVED}.marts.build_info) as s
        where d.score_key = ? and n.patient_key is not null and n.submitted_at is not null
            and n.submitted_at <= ? and n.submitted_at <= s.as_of""",
        [key, as_of.to_pydatetime()],
    ).fetchall()  # DuckDB 2: finish the statement before the next one on this connection
    return con.execute(f"select count(*) from {CANDIDATES}").fetchall()[0][0]


def _diff(new_sql: str, old_sql: str) -> str:
    """The rows of two selects that the other does not hold (multisets), from either side."""
    return f"(({new_sql}) except all ({old_sql})) union all (({old_sql}) except all ({new_sql}))"


def _touched(con: duckdb.DuckDBPyConnection, raw_keys: pd.DataFrame) -> int:
    """TOUCHED: the candidates some input of which differs tonight (module docstring). Returns how many.

    Each input's rows are read once per file into a temp table and compared there: as one statement DuckDB read
    every side twice and the candidates' lines four times (48 s at 900 clinics on a night with nothing new)."""
    c = CANDIDATES

    def both(name: str, select: str) -> str:  # the same select over tonight's file and the served one, read once
        for side, db in (("new", ""), ("old", f"{SERVED}.")):
            con.execute(f"create or replace temp table {TOUCHED}_{name}_{side} as {select.format(db=db)}").fetchall()
        return _diff(f"select * from {TOUCHED}_{name}_new", f"select * from {TOUCHED}_{name}_old")

    claims = both(
        "claims", f"select {_cols('r', CLAIM_INPUTS)} from {{db}}marts.claims as r semi join {c} using (claim_id)"
    )
    # the lines of the candidates' patients, then those carrying a candidate's claim id (two semi joins, not an `or`
    # that keeps DuckDB from filtering the scan first): a line in both parts is there twice on both sides alike
    lines = both(
        "lines",
        " union all ".join(
            f"select {_cols('r', LINE_INPUTS)} from {{db}}marts.charge_lines as r semi join {c} using ({k})"
            for k in ("patient_key", "claim_id")
        ),
    )
    # the episodes a claim's features read: its own and its appointment's (tonight's and the served one's)
    con.execute(
        f"create or replace temp table {TOUCHED}_claim_episodes as select claim_id, episode_id from {c} union "
        + " union ".join(
            f"select c.claim_id, a.episode_id from {c} as c inner join {db}marts.appointments as a "
            "on a.appointment_id = c.appointment_id"
            for db in ("", f"{SERVED}.")
        )
    ).fetchall()
    visits = both(
        "visits",
        "select r.appointment_id, r.episode_id, r.scheduled_start from {db}marts.appointments as r "
        f"where r.status = 'completed' and r.episode_id in (select episode_id from {TOUCHED}_claim_episodes)",
    )
    episodes = both(
        "episodes",
        f"select r.episode_id, r.icd10_primary from {{db}}marts.episodes as r semi join {c} using (episode_id)",
    )
    payers = both("payers", "select r.payer_id, r.requires_auth from {db}marts.dim_payers as r")
    con.register("denial_reuse_raw", raw_keys)
    try:
        con.execute(
            f"""
            create or replace temp table {TOUCHED} as
            with claim_episodes as (select * from {TOUCHED}_claim_episodes),
            lines as ({lines}),
            episodes_changed as (
                select episode_id from ({visits})
                union select episode_id from ({episodes})
                union select episode_id from denial_reuse_raw where episode_id is not null
            )
            select claim_id from ({claims})
            union select claim_id from lines
            union select c.claim_id from {c} as c semi join lines as l on l.patient_key = c.patient_key
            union select claim_id from claim_episodes semi join episodes_changed using (episode_id)
            union select c.claim_id from {c} as c semi join denial_reuse_raw as r using (appointment_id)
            union select c.claim_id from {c} as c where c.payer_id in (select payer_id from ({payers}))"""
        ).fetchall()
    finally:
        con.unregister("denial_reuse_raw")
        for name in ("claims", "lines", "visits", "episodes", "payers"):
            for side in ("new", "old"):
                con.execute(f"drop table if exists {TOUCHED}_{name}_{side}").fetchall()
        con.execute(f"drop table if exists {TOUCHED}_claim_episodes").fetchall()
    return con.execute(f"select count(*) from {TOUCHED}").fetchall()[0][0]


def _reused_patients(con: duckdb.DuckDBPyConnection) -> Reuse:
    """REUSED: the patients every open claim of whom is a candidate and untouched."""
    con.execute(
        f"""
        create or replace temp table {REUSED} as
        select o.patient_key
        from ({warehouse.open_claims_sql(con)}) as o
        left join (select claim_id from {CANDIDATES} except select claim_id from {TOUCHED}) as k using (claim_id)
        where o.patient_key is not null
        group by o.patient_key
        having bool_and(k.claim_id is not null)"""
    ).fetchall()
    patients, claims = con.execute(
        f"""select (select count(*) from {REUSED}),
                   (select count(*) from ({warehouse.open_claims_sql(con)}) as o
                    semi join {REUSED} using (patient_key))"""
    ).fetchall()[0]
    return Reuse(patients=patients, claims=claims)


def mark_reused(
    con: duckdb.DuckDBPyConnection,
    served: Path | None,
    target: Path,
    key: str,
    raw_db: Path | None,
    as_of: pd.Timestamp,
) -> Reuse:
    """Attach the served file as SERVED (left attached for `warehouse.write_denial_scores`, detached by `detach`) and
    write REUSED (possibly empty). Anything unreadable or unlike tonight means no reuse, which is always correct."""
    con.execute(f"create or replace temp table {REUSED} (patient_key varchar)").fetchall()
    if pd.isna(as_of):
        return Reuse(why_not="no as_of")
    if not warehouse.attach_served(con, SERVED, served, target):
        return Reuse(why_not="no served build to reuse (first build, or scoring the served file itself)")
    since, why = _continues_served(con)
    if why:
        return Reuse(why_not=why)
    try:
        if not _candidates(con, key, as_of):
            return Reuse(why_not="no served score has tonight's score key (a new model, code or library)")
    except duckdb.Error:
        return Reuse(why_not="the served build has no denial scores with a score key")
    raw_keys = warehouse.raw_billing_loaded_since(raw_db, since)
    if raw_keys is None:
        return Reuse(why_not="raw.duckdb could not be read")
    try:
        _touched(con, raw_keys)
        return _reused_patients(con)
    except duckdb.Error:  # e.g. out of memory in the comparison's scans: score everyone, which is always right
        con.execute(f"create or replace temp table {REUSED} (patient_key varchar)").fetchall()
        return Reuse(why_not="comparing tonight's inputs with the served build failed")


def detach(con: duckdb.DuckDBPyConnection) -> None:
    """Detach the served file (a no-op when it was not attached)."""
    con.execute(f"detach database if exists {SERVED}").fetchall()
