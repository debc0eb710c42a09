"""The warehouse side of ML: reading the marts it learns from and writing schema `ml` into an analytics file.

ML reads only `marts.*` (never raw or staging) and writes only `ml.*`, with the column types of
docs/interfaces.md section 3 (`ML_TABLES`). Model files and cards on disk are ml/artifacts.py.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from ml.features import MartFrames
from ptpulse.core.sql import quote_ident

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
    "attribution_credit": {
        "model": "VARCHAR",
        "channel": "VARCHAR",
        "attributed_conversions": "DOUBLE",
        "attributed_revenue_usd": "DOUBLE",
        "settings": "JSON",
    },
}


def as_of(con: duckdb.DuckDBPyConnection) -> pd.Timestamp:
    return pd.Timestamp(con.execute("select max(as_of) from marts.build_info").fetchall()[0][0])


def read_marts(con: duckdb.DuckDBPyConnection) -> MartFrames:
    """The tables the no-show features need (only the columns used)."""
    appts = con.sql("""
        select appointment_id, episode_id, referral_id, patient_id, clinic_id, therapist_id, visit_type,
               booked_at, scheduled_start, duration_min, status, status_at, is_future
        from marts.appointments""").df()
    episodes = con.sql("""
        select episode_id, payer_class, body_region, eval_date, eval_note_signed_at, planned_visits,
               frequency_per_week
        from marts.episodes""").df()
    referrals = con.sql("select referral_id, source_type, received_at, payer_class from marts.referral_funnel").df()
    patients = con.sql("select patient_id, birth_date from marts.dim_patients").df()
    return MartFrames(appts, episodes, referrals, patients, as_of(con))


def read_lead_referrals(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The referral funnel columns lead scoring may read (ml/lead.py FUNNEL_COLUMNS), with physician specialty."""
    return con.sql("""
        select f.referral_id, f.clinic_id, f.intake_kind, f.source_type, f.channel, d.specialty, f.payer_class,
               f.received_at, f.first_contact_at, f.contacted_at, f.scheduled_at, f.evaluated_at, f.exit_at,
               f.exit_stage
        from marts.referral_funnel f
        left join marts.dim_referring_physicians d on d.physician_id = f.referring_physician_id
        order by f.referral_id""").df()


def read_lead_episodes(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Episodes with their referral's source type: the history expected episode values come from."""
    return con.sql("""
        select e.episode_id, e.payer_class, f.source_type, e.status,
               coalesce(e.discharge_date, e.last_visit_date) as closed_on, e.net_revenue_usd::double as net_revenue_usd
        from marts.episodes e
        left join marts.referral_funnel f on f.referral_id = e.referral_id
        order by e.episode_id""").df()


def read_demand_events(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """clinic_id, metric, at: new referrals (received), initial evaluations and visits (attended)."""
    return con.sql("""
        select clinic_id, 'referrals' as metric, received_at as at from marts.referral_funnel
        where received_at is not null and clinic_id is not null
        union all
        select clinic_id, 'evals', scheduled_start
        from marts.appointments where status = 'completed' and visit_type = 'initial_eval'
        union all
        select clinic_id, 'visits', scheduled_start from marts.appointments where status = 'completed'
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


def write_queue_tasks(con: duckdb.DuckDBPyConnection, days: int = HIGH_RISK_DAYS) -> int:
    """`ml.work_queue_tasks`: the no-show model's confirm tasks in the shape of marts.work_queue_candidates
    (queue and priority from the rules seed), so the app's queue is a plain union of the two.

    One task per upcoming scheduled visit in the high-risk band within `days` of as_of, unless the mart already
    holds a task with that id.
    """
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
        """,
        {"rule": HIGH_RISK_RULE, "days": int(days)},
    ).fetchall()  # DuckDB 2: finish the statement before the next one on this connection
    return con.execute("select count(*) from ml.work_queue_tasks").fetchall()[0][0]


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
