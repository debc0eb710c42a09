"""The warehouse side of ML: reading the marts it learns from and writing schema `ml` into an analytics file.

ML reads only `marts.*` (never raw or staging) and writes only `ml.*`, with the column types of
docs/interfaces.md section 3 (`ML_TABLES`). Model files and cards on disk are ml/artifacts.py.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from ml.denial import FIXABLE, DenialFrames
from ml.features import OPTIONAL_APPOINTMENT, OPTIONAL_PATIENT, MartFrames
from ptpulse.core.sql import quote_ident, quote_literal

# Column types of each ml table, in order (docs/interfaces.md section 3).
ML_TABLES: dict[str, dict[str, str]] = {
    "no_show_scores": {
        "appointment_id": "VARCHAR",
        "clinic_id": "VARCHAR",
        "scheduled_start": "TIMESTAMP",
        "probability": "DOUBLE",
        "risk_band": "VARCHAR",
        "reason_1": "VARCHAR",
        "reason_2": "VARCHAR",
        "model_version": "VARCHAR",
        "scored_at": "TIMESTAMP",
    },
    "no_show_calibration": {"bin": "INTEGER", "mean_predicted": "DOUBLE", "observed_rate": "DOUBLE", "n": "BIGINT"},
    "demand_forecast": {
        "series": "VARCHAR",
        "metric": "VARCHAR",
        "week_start": "DATE",
        "actual": "DOUBLE",
        "yhat": "DOUBLE",
        "yhat_lower": "DOUBLE",
        "yhat_upper": "DOUBLE",
        "fit_key": "VARCHAR",  # what the series' fit was a function of (ml/demand.py fit_key): equal -> reused
    },
    "staffing_gap": {
        "clinic_id": "VARCHAR",
        "week_start": "DATE",
        "forecast_visits": "DOUBLE",
        "capacity_visits": "DOUBLE",
        "gap_visits": "DOUBLE",
    },
    "lead_scores": {
        "referral_id": "VARCHAR",
        "clinic_id": "VARCHAR",
        "p_convert": "DOUBLE",
        "expected_value_usd": "DOUBLE",
        "value_at_stake_usd": "DOUBLE",
        "reason_1": "VARCHAR",
        "model_version": "VARCHAR",
        "scored_at": "TIMESTAMP",
    },
    "denial_scores": {
        "claim_id": "VARCHAR",
        "clinic_id": "VARCHAR",
        "episode_id": "VARCHAR",
        "payer_id": "VARCHAR",
        "service_date": "DATE",
        "submitted_at": "TIMESTAMP",
        "billed_usd": "DOUBLE",
        "probability": "DOUBLE",
        "dollars_at_risk": "DOUBLE",
        "reason_group": "VARCHAR",
        "reason_1": "VARCHAR",
        "reason_2": "VARCHAR",
        "model_version": "VARCHAR",
        "scored_at": "TIMESTAMP",
        # what the score is a function of besides the claim's inputs (ml/denial_reuse.py score_key): equal -> may be kept
        "score_key": "VARCHAR",
    },
    "attribution_credit": {
        "model": "VARCHAR",
        "channel": "VARCHAR",
        "attributed_conversions": "DOUBLE",
        "attributed_revenue_usd": "DOUBLE",
        "settings": "JSON",
    },
    "channel_incrementality": {
        "channel": "VARCHAR",
        "effect": "DOUBLE",
        "lo": "DOUBLE",
        "hi": "DOUBLE",
        "share": "DOUBLE",
        "method": "VARCHAR",
    },
}


def as_of(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    return pd.Timestamp(con.execute("select max(as_of) from marts.build_info").fetchall()[0][0])


def _optional(con: duckdb.DuckDBPyConnection, table: str, names: tuple[str, ...]) -> str:
    """', col, ...' for the optional feature columns this mart has (none today; a practice's extra fields)."""
    have = {
        r[0]
        for r in con.execute(
            "select column_name from information_schema.columns where table_schema = 'marts' and table_name = ?",
            [table],
        ).fetchall()
    }
    return "".join(f", {quote_ident(c)}" for c in names if c in have)


# Patients the no-show features are read for (features are per patient and episode history, so a patient kept
# keeps every feature exact). Training over a row budget keeps a deterministic hash share of patients (every
# month in proportion; docs/scale.md); scoring needs only the patients with an upcoming appointment.
SAMPLE_BUCKETS = 10_000
UPCOMING_PATIENTS = "select patient_id from marts.appointments where is_future"


def training_share(con: duckdb.DuckDBPyConnection, row_budget: int) -> float:
    """Share of patients to train the no-show model on: 1.0 unless the appointments exceed `row_budget`."""
    return _share(con, "marts.appointments", row_budget)


def _share(con: duckdb.DuckDBPyConnection, table: str, row_budget: int) -> float:
    n = con.execute(f"select count(*) from {table}").fetchone()[0]
    return 1.0 if n <= row_budget else max(1, int(SAMPLE_BUCKETS * row_budget / n)) / SAMPLE_BUCKETS


def _sample_where(
    column: str, only: str | None, share: float, batch: tuple[int, int] | None = None
) -> tuple[str, list]:
    """The `where` (and its parameters) keeping the keys (patients, referrals) of the subquery `only`, else a hash
    share of the keys (the same on every run), else everyone. `batch` (i, n) with `only`: the i-th of n hash
    batches of those keys."""
    if only and batch is not None:
        # the hash on the keys of `only`, not on every row of the table read (3x slower at 900 clinics)
        of_batch = f"select k.key from ({only}) as k(key) where hash(k.key) % ? = ?"
        return f"where {column} in ({of_batch})", [batch[1], batch[0]]
    if only:
        return f"where {column} in ({only})", []
    if share < 1.0:
        return f"where hash({column}) % ? < ?", [SAMPLE_BUCKETS, round(share * SAMPLE_BUCKETS)]
    return "", []


def read_marts(con: duckdb.DuckDBPyConnection, patient_share: float = 1.0, upcoming_only: bool = False) -> MartFrames:
    """The tables the no-show features need (only the columns used, plus optional ones when present).

    `patient_share` < 1: only that share of patients (hash of patient_id, the same on every run) with their
    whole history, episodes and referrals: bounds training memory at chain scale. `upcoming_only`: only the
    patients with an upcoming appointment (all that scoring needs). Either way features stay exact."""
    where, params = _sample_where("patient_id", UPCOMING_PATIENTS if upcoming_only else None, patient_share)
    appts = con.execute(
        f"""
        select appointment_id, episode_id, referral_id, patient_id, clinic_id, therapist_id, visit_type,
               booked_at, scheduled_start, duration_min, status, status_at, is_future
               {_optional(con, "appointments", OPTIONAL_APPOINTMENT)}
        from marts.appointments {where}""",
        params,
    ).df()

    def kept(column: str) -> str:  # only the rows the kept appointments refer to
        return f"where {column} in (select {column} from marts.appointments {where})" if where else ""

    episodes = con.execute(
        f"""
        select episode_id, payer_class, body_region, eval_date, eval_note_signed_at, planned_visits,
               frequency_per_week
        from marts.episodes {kept("episode_id")}""",
        params,
    ).df()
    referrals = con.execute(
        f"select referral_id, source_type, received_at, payer_class from marts.referral_funnel {kept('referral_id')}",
        params,
    ).df()
    patients = con.execute(
        f"select patient_id, birth_date {_optional(con, 'dim_patients', OPTIONAL_PATIENT)} from marts.dim_patients "
        f"{kept('patient_id')}",
        params,
    ).df()
    return MartFrames(appts, episodes, referrals, patients, as_of(con))


# Claims the denial features are read for. Every feature is the claim's own lines, its patient's charges this
# year, and its episode's visits, notes and authorizations, so a patient kept keeps every feature exact (the
# payer-level rates are then estimated on that share). Training over a row budget keeps a hash share of
# patients; scoring needs only the patients with an undecided claim (ml/denial.py open_claims).
OPEN_CLAIM = "not coalesce(is_adjudicated, false) and payer_id is not null and payer_class is distinct from 'self_pay'"
OPEN_CLAIM_PATIENTS = f"select patient_key from marts.claims where {OPEN_CLAIM}"
# a night's patients whose served denial scores are kept (ml/denial_reuse.py): a temp table of the scoring connection
DENIAL_REUSED = "denial_reuse_patients"
RESCORED_PATIENTS = f"{OPEN_CLAIM_PATIENTS} and patient_key not in (select patient_key from {DENIAL_REUSED})"


def open_claim_count(con: duckdb.DuckDBPyConnection, rescored_only: bool = False) -> int:
    """Claims the denial model scores (not decided yet, billed to a payer); `rescored_only`: of the patients whose
    served scores are not kept tonight (DENIAL_REUSED)."""
    skip = f" and patient_key not in (select patient_key from {DENIAL_REUSED})" if rescored_only else ""
    return con.execute(f"select count(*) from marts.claims where {OPEN_CLAIM}{skip}").fetchall()[0][0]


def open_claims_sql(con: duckdb.DuckDBPyConnection) -> str:
    """The claims rows the denial model scores, as SQL: ml/denial.py `open_claims` (voided ones left out when the mart
    has a status), for the reuse rule to match the scored population exactly."""
    voided = " and claim_status is distinct from 'voided'" if _optional(con, "claims", ("claim_status",)) else ""
    return f"select * from marts.claims where {OPEN_CLAIM}{voided}"


def denial_training_share(con: duckdb.DuckDBPyConnection, row_budget: int) -> float:
    """Share of patients to train the denial model on: 1.0 unless the claims exceed `row_budget`."""
    return _share(con, "marts.claims", row_budget)


def read_denial_frames(
    con: duckdb.DuckDBPyConnection,
    raw_db: Path | None = None,
    patient_share: float = 1.0,
    open_only: bool = False,
    batch: tuple[int, int] | None = None,
    rescored_only: bool = False,
) -> DenialFrames:
    """The marts the denial features read, plus authorizations and notes from the raw database when given.

    The marts carry no authorization rows and no per-note signing times, and dbt models are not ours to
    change, so those two come read-only from raw.duckdb, every version kept (an amended note or a re-sent
    authorization counts from the moment it arrived: the features pick what was on file at each claim).
    Without a readable raw file (another process writing it, a practice without those exports) they are
    None: the features go empty and are dropped with a note on the model card.
    `batch` (i, n) with `open_only`: only the i-th of n hash batches of those patients (scoring in batches);
    `rescored_only` with it: only the patients whose served scores are not kept tonight (ml/denial_reuse.py).
    """
    only = (RESCORED_PATIENTS if rescored_only else OPEN_CLAIM_PATIENTS) if open_only else None
    kept, params = _sample_where("patient_key", only, patient_share, batch)
    claims = con.execute(
        f"""
        select claim_id, episode_id, appointment_id, patient_key, clinic_id, payer_id, payer_class, service_date,
               submitted_at, billed_usd::double as billed_usd, allowed_usd::double as allowed_usd, is_denied,
               is_adjudicated {_optional(con, "claims", ("claim_status",))}
        from marts.claims {kept} order by claim_id""",
        params,
    ).df()
    line_columns = """charge_id, claim_id, patient_key, service_date, cpt_code, modifiers, units, minutes, is_timed,
               charge_usd::double as charge_usd, posted_at"""
    # the kept patients' lines, and every line carrying a kept claim's id: a line under another patient's key (two
    # exports naming the patient differently) is still its claim's, whichever batch that patient falls in
    own_lines = (
        f"union select {line_columns} from marts.charge_lines "
        f"where claim_id in (select claim_id from marts.claims {kept})"
        if kept
        else ""
    )
    lines = con.execute(
        f"select {line_columns} from marts.charge_lines {kept} {own_lines}", params * (2 if kept else 1)
    ).df()
    # whole episodes (visit numbers rank within one): those of the kept claims and of their appointments
    episode_ids = (
        f"""select episode_id from marts.claims {kept} union
        select a.episode_id from marts.appointments as a
        where a.appointment_id in (select appointment_id from marts.claims {kept})"""
        if kept
        else ""
    )
    of_episodes = f"and episode_id in ({episode_ids})" if kept else ""
    visits = con.execute(
        f"""
        select appointment_id, episode_id, scheduled_start from marts.appointments
        where status = 'completed' {of_episodes}""",
        params * 2,
    ).df()
    episodes = con.execute(
        f"select episode_id, icd10_primary from marts.episodes where true {of_episodes}", params * 2
    ).df()
    payers = con.sql("select payer_id, requires_auth from marts.dim_payers").df()
    auths, notes = _read_raw_billing_context(raw_db, claims[["episode_id", "appointment_id"]] if kept else None)
    return DenialFrames(claims, lines, visits, episodes, payers, auths, notes, as_of(con))


_BILLING = {"authorizations", "documentation_events"}


def _read_raw_billing_context(
    raw_db: Path | None, scope: pd.DataFrame | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Authorizations and notes from raw; with `scope` (the claims read), only the rows those claims can join to
    (the features join them by the claim's episode or appointment)."""
    if raw_db is None or not Path(raw_db).exists():
        return None, None
    try:
        raw = duckdb.connect(str(raw_db), read_only=True)
    except duckdb.Error:  # locked by a writer: train on the marts alone
        return None, None
    try:
        tables = {r[0] for r in raw.execute("select table_name from information_schema.tables").fetchall()}
        of_episodes = of_claims = ""
        if scope is not None:
            raw.register("scope", scope)
            of_episodes = "where episode_id in (select episode_id from scope)"
            of_claims = f"{of_episodes} or appointment_id in (select appointment_id from scope)"
        auths = (
            raw.sql(
                """
                select auth_id, episode_id, try_cast(visits_authorized as integer) as visits_authorized,
                       try_cast(valid_from as date) as valid_from, try_cast(valid_to as date) as valid_to,
                       try_cast(received_at as timestamp) as received_at
                from raw.raw.authorizations """
                + of_episodes
            ).df()
            if "authorizations" in tables
            else None
        )
        notes = (
            raw.sql(
                """
                select note_id, episode_id, appointment_id, note_type, try_cast(visit_number as integer) as visit_number,
                       try_cast(created_at as timestamp) as created_at, try_cast(signed_at as timestamp) as signed_at
                from raw.raw.documentation_events """
                + of_claims
            ).df()
            if "documentation_events" in tables
            else None
        )
        sent = _sent(raw)
    finally:
        raw.close()
    return (auths if sent["authorizations"] else None), (notes if sent["documentation_events"] else None)


def _sent(raw: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Whether raw holds any authorizations and notes: an export with no rows at all is a missing export (its
    features dropped); one with no rows in a batch's scope is not."""
    tables = {r[0] for r in raw.execute("select table_name from information_schema.tables").fetchall()}
    return {
        t: t in tables and raw.execute(f"select exists (select 1 from raw.raw.{t})").fetchone()[0]
        for t in sorted(_BILLING)
    }


def read_the_sources(frames: DenialFrames, sources: dict[str, bool]) -> bool:
    """Whether `frames` hold exactly the raw exports `sources` (`raw_billing_sources`, a score key's) names: raw
    taken by another writer between the key and a read leaves the read without them."""
    read = {"authorizations": frames.authorizations is not None, "documentation_events": frames.notes is not None}
    return read == {t: bool(sources.get(t)) for t in sorted(_BILLING)}


def raw_billing_sources(raw_db: Path | None) -> dict[str, bool]:
    """Which of the two raw exports the denial features read are there (`_sent`); {"unreadable": True} when raw
    exists but cannot be opened. Part of a denial score's key (ml/denial_reuse.py)."""
    if raw_db is None or not Path(raw_db).exists():
        return dict.fromkeys(sorted(_BILLING), False)
    try:
        raw = duckdb.connect(str(raw_db), read_only=True)
    except duckdb.Error:
        return {"unreadable": True}
    try:
        return _sent(raw)
    finally:
        raw.close()


def raw_billing_loaded_since(raw_db: Path | None, load_id: int) -> pd.DataFrame | None:
    """episode_id, appointment_id of every raw authorization and note loaded after `load_id` (the served build's
    last raw load): the claims they can join to are rescored (ml/denial_reuse.py). None when raw cannot be read."""
    empty = pd.DataFrame({"episode_id": pd.Series(dtype="string"), "appointment_id": pd.Series(dtype="string")})
    if raw_db is None or not Path(raw_db).exists():
        return empty
    try:
        raw = duckdb.connect(str(raw_db), read_only=True)
    except duckdb.Error:
        return None
    try:
        sent = _sent(raw)
        parts = [
            f"select cast(episode_id as varchar), cast({'appointment_id' if t == 'documentation_events' else 'null'} "
            f"as varchar) from raw.raw.{t} where _load_id > ?"
            for t in sorted(_BILLING)
            if sent[t]
        ]
        if not parts:
            return empty
        keys = raw.execute(" union all ".join(parts), [load_id] * len(parts)).df()
        return keys.set_axis(["episode_id", "appointment_id"], axis=1)
    except duckdb.Error:
        return None
    finally:
        raw.close()


def lead_training_share(con: duckdb.DuckDBPyConnection, row_budget: int) -> float:
    """Share of referrals to train the lead model on: 1.0 unless the referrals exceed `row_budget`."""
    return _share(con, "marts.referral_funnel", row_budget)


def read_lead_referrals(
    con: duckdb.DuckDBPyConnection, share: float = 1.0, received_since: pd.Timestamp | None = None
) -> pd.DataFrame:
    """The referral funnel columns lead scoring may read (ml/lead.py FUNNEL_COLUMNS), with physician specialty.

    `share` < 1: that share of referrals (hash of referral_id, the same on every run): bounds training memory at
    chain scale, and a referral's features are its own, so the sample keeps them exact. `received_since`: only
    referrals received at or after it (scoring reads the young ones it may score, not 3 years of funnel)."""
    where, params = _sample_where("f.referral_id", None, share)
    if received_since is not None:
        where = f"{where} and f.received_at >= ?" if where else "where f.received_at >= ?"
        params = [*params, received_since.to_pydatetime()]
    return con.execute(
        f"""
        select f.referral_id, f.clinic_id, f.intake_kind, f.source_type, f.channel, d.specialty, f.payer_class,
               f.received_at, f.first_contact_at, f.contacted_at, f.scheduled_at, f.evaluated_at, f.exit_at,
               f.exit_stage
        from marts.referral_funnel f
        left join marts.dim_referring_physicians d on d.physician_id = f.referring_physician_id
        {where}
        order by f.referral_id""",
        params,
    ).df()


def read_lead_episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Episodes with their referral's source type: the history expected episode values come from."""
    return con.sql("""
        select e.episode_id, e.payer_class, f.source_type, e.status,
               coalesce(e.discharge_date, e.last_visit_date) as closed_on, e.net_revenue_usd::double as net_revenue_usd
        from marts.episodes e
        left join marts.referral_funnel f on f.referral_id = e.referral_id
        order by e.episode_id""").df()


# The events demand counts, one row each (clinic_id, metric, event_at): new referrals (received), initial
# evaluations and visits (attended)
DEMAND_EVENTS = """
    select clinic_id, 'referrals' as metric, received_at as event_at from marts.referral_funnel
    where received_at is not null and clinic_id is not null
    union all
    select clinic_id, 'evals', scheduled_start
    from marts.appointments where status = 'completed' and visit_type = 'initial_eval'
    union all
    select clinic_id, 'visits', scheduled_start from marts.appointments where status = 'completed'"""


def read_weekly_demand(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """clinic_id, metric, at (the Monday of the week), n: the DEMAND_EVENTS counted per clinic and week in SQL (a
    chain has tens of millions of visits: docs/scale.md)."""
    return con.sql(f"""
        select clinic_id, metric, date_trunc('week', event_at)::timestamp as "at", count(*) as n
        from ({DEMAND_EVENTS}) as events
        where event_at is not null
        group by all
        order by clinic_id, metric, "at"
    """).df()


def read_therapists(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.sql("""
        select clinic_id, available_minutes_per_week::double as available_minutes_week, hired_on, terminated_on
        from marts.dim_therapists""").df()


def read_visit_minutes(con: duckdb.DuckDBPyConnection, as_of_ts: pd.Timestamp) -> pd.Series:
    """Median booked minutes per attended visit per clinic over the last 180 days (and ALL)."""
    df = con.execute(
        """
        select coalesce(clinic_id, 'ALL') as clinic_id, median(duration_min)::double as minutes
        from marts.appointments
        where status = 'completed' and scheduled_start >= ?::timestamp - interval 180 day
        group by grouping sets ((clinic_id), ())""",
        [as_of_ts.to_pydatetime()],
    ).df()
    return df.set_index("clinic_id")["minutes"]


def read_paths(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.sql("""
        select path, path_length, conversions::double as conversions,
               non_conversions::double as non_conversions, revenue_usd::double as revenue_usd
        from marts.attribution_paths order by path""").df()


# ------------------------------------------------------------------------------------------ ml tables


HIGH_RISK_RULE = "confirm_high_risk"
HIGH_RISK_DAYS = 7  # upcoming visits this close to as_of get a confirm task
DENIAL_RULE = "denial_fix_before_submit"
DENIAL_TASK_P = 0.25  # ~3.5x the practice's denial rate: a short list where most claims have a real problem

_DENIAL_TASKS_SQL = """
    select
        $drule || ':' || d.claim_id as task_id,
        r.rule,
        r.queue,
        d.clinic_id,
        e.patient_id,
        e.patient_key,
        e.referral_id,
        d.episode_id,
        c.appointment_id,
        'Denial risk ' || cast(round(d.probability * 100) as integer) || '% on a $'
            || cast(round(d.billed_usd) as integer) || ' claim for the visit on '
            || strftime(d.service_date, '%a %b %-d') || ': ' || d.reason_1 || coalesce('; ' || d.reason_2, '')
            as reason,
        r.priority,
        d.scored_at + interval 24 hour as due_at,
        d.scored_at as created_at
    from ml.denial_scores as d
    inner join marts.claims as c using (claim_id)
    left join marts.episodes as e on e.episode_id = d.episode_id
    inner join marts.work_queue_rules as r on r.rule = $drule
    where d.probability >= $dp and list_contains($fixable, d.reason_group) and d.reason_1 is not null
        and $drule || ':' || d.claim_id not in (select task_id from marts.work_queue_candidates)
"""


def write_queue_tasks(con: duckdb.DuckDBPyConnection, days: int = HIGH_RISK_DAYS) -> int:
    """`ml.work_queue_tasks`: the models' tasks in the shape of marts.work_queue_candidates (queue and priority
    from the rules seed), so the app's queue is a plain union of the two.

    No-show: one task per upcoming scheduled visit in the high-risk band within `days` of as_of. Denials
    (when `ml.denial_scores` exists): one task per open claim scored at DENIAL_TASK_P or more whose first reason
    is a fix (ml/denial.py FIXABLE). Never a task id the mart already holds.
    """
    has_denials = bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = 'ml' and table_name = 'denial_scores'"
        ).fetchall()[0][0]
    )
    con.execute("create schema if not exists ml")
    con.execute(
        """
        create or replace table ml.work_queue_tasks as
        select
            $rule || ':' || s.appointment_id as task_id,
            r.rule,
            r.queue,
            s.clinic_id,
            a.patient_id,
            a.patient_key,
            a.referral_id,
            a.episode_id,
            s.appointment_id,
            'High no-show risk (' || cast(round(s.probability * 100) as integer) || '%) for the visit on '
                || strftime(s.scheduled_start, '%a %b %-d %H:%M')
                || coalesce(': ' || s.reason_1, '') || coalesce('; ' || s.reason_2, '') as reason,
            r.priority,
            s.scheduled_start - interval 24 hour as due_at,
            s.scored_at as created_at
        from ml.no_show_scores as s
        inner join marts.appointments as a using (appointment_id)
        inner join marts.work_queue_rules as r on r.rule = $rule
        cross join (select max(as_of) as as_of from marts.build_info) as b
        where s.risk_band = 'high' and a.status = 'scheduled'
            and s.scheduled_start >= b.as_of and s.scheduled_start < b.as_of + to_days(cast($days as integer))
            and $rule || ':' || s.appointment_id not in (select task_id from marts.work_queue_candidates)
        """
        + ("union all" + _DENIAL_TASKS_SQL if has_denials else ""),
        {"rule": HIGH_RISK_RULE, "days": int(days)}
        | ({"drule": DENIAL_RULE, "dp": DENIAL_TASK_P, "fixable": list(FIXABLE)} if has_denials else {}),
    ).fetchall()  # DuckDB 2: finish the statement before the next one on this connection
    return con.execute("select count(*) from ml.work_queue_tasks").fetchall()[0][0]


def read_served_forecast(served: Path, target: Path) -> pd.DataFrame | None:
    """The served file's `ml.demand_forecast`, when it is another file than `target` and has the rows' fit keys.

    What a nightly build's forecast reuses (ml/demand.py forecast_all). Anything unreadable (no served build yet,
    an older file, the file busy) gives None: every series is then refit, which is always correct."""
    try:
        if not Path(served).exists() or Path(served).resolve() == Path(target).resolve():
            return None
        con = duckdb.connect(str(served), read_only=True)
    except (OSError, duckdb.Error):
        return None
    try:
        has_key = con.execute(
            "select count(*) from duckdb_columns() where schema_name = 'ml' and table_name = 'demand_forecast' "
            "and column_name = 'fit_key'"
        ).fetchone()[0]
        return con.execute("select * from ml.demand_forecast").df() if has_key else None
    except duckdb.Error:
        return None
    finally:
        con.close()


def attach_served(con: duckdb.DuckDBPyConnection, alias: str, served: Path | None, target: Path) -> bool:
    """Attach the served analytics file read-only as `alias` when it is another file than `target` (what a night's
    denial scores reuse, ml/denial_reuse.py); False when there is none or it cannot be opened."""
    try:
        if served is None or not Path(served).exists() or Path(served).resolve() == Path(target).resolve():
            return False
        con.execute(f"detach database if exists {quote_ident(alias)}").fetchall()
        con.execute(f"attach {quote_literal(Path(served).resolve())} as {quote_ident(alias)} (read_only)").fetchall()
    except (OSError, duckdb.Error):
        return False
    return True


def write_denial_scores(
    con: duckdb.DuckDBPyConnection, fresh: pd.DataFrame, served: str | None, as_of: pd.Timestamp
) -> int:
    """`ml.denial_scores`: the rows scored tonight plus, from the attached served file `served`, the rows of the
    open claims of the patients whose scores are kept (DENIAL_REUSED), with tonight's `scored_at`; by claim_id."""
    rows = write_table(con, "denial_scores", fresh)
    if served is None or not con.execute(f"select count(*) from {DENIAL_REUSED}").fetchall()[0][0]:
        return rows
    cols = ", ".join("cast(? as timestamp)" if c == "scored_at" else quote_ident(c) for c in ML_TABLES["denial_scores"])
    con.execute(
        f"""
        create or replace table ml.denial_scores as
        select * from (
            from ml.denial_scores
            union all
            select {cols}
            from {quote_ident(served)}.ml.denial_scores
            where claim_id in (
                select claim_id from ({open_claims_sql(con)}) as o semi join {DENIAL_REUSED} using (patient_key)
            )
        )
        order by claim_id""",
        [as_of.to_pydatetime()],
    ).fetchall()  # DuckDB 2: finish the statement before the next one on this connection
    return con.execute("select count(*) from ml.denial_scores").fetchall()[0][0]


def write_table(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> int:
    """Create or replace `ml.<name>` with the interface's columns and types (idempotent)."""
    cols = ML_TABLES[name]
    frame = df.reindex(columns=list(cols)).copy()
    con.execute("create schema if not exists ml")
    select = ", ".join(f"cast({quote_ident(c)} as {t}) as {quote_ident(c)}" for c, t in cols.items())
    con.register("_ml_frame", frame)
    try:
        con.execute(f"create or replace table ml.{name} as select {select} from _ml_frame")
    finally:
        con.unregister("_ml_frame")
    return len(frame)
