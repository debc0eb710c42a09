"""Realism metrics computed from the generated CSVs with DuckDB (shared by the tests and for tuning)."""

from __future__ import annotations

from pathlib import Path

import duckdb


def connect(folder: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per CSV (all columns read as text, then cast in queries)."""
    con = duckdb.connect()
    for f in sorted(Path(folder).glob("*.csv")):
        con.execute(f"create view {f.stem} as select * from read_csv('{f}', header=true, all_varchar=true)")
    truth = Path(folder) / "truth" / "appointment_truth.csv"
    con.execute(f"create view appointment_truth as select * from read_csv('{truth}', header=true)")
    con.execute("""
        create view appt as
        with e as (select *, cast(event_at as timestamp) as ts from scheduling_events)
        select appointment_id, any_value(episode_id) as episode_id, any_value(patient_id) as patient_id,
               any_value(therapist_id) as therapist_id, any_value(visit_type) as visit_type,
               min(ts) filter (where event_type = 'booked') as booked_at,
               arg_max(cast(scheduled_start as timestamp), ts) filter (where event_type in ('booked','rescheduled')) as start,
               any_value(cast(duration_min as int)) as duration_min,
               coalesce(max(event_type) filter (where event_type in ('completed','no_show','cancelled','late_cancelled')),
                        'scheduled') as status
        from e group by appointment_id""")
    return con


def one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return con.execute(sql).fetchone()[0]


def realism(folder: Path) -> dict[str, float]:
    con = connect(folder)
    m: dict[str, float] = {}
    m["no_show_rate"] = one(
        con,
        """select avg((status = 'no_show')::int) from appt
                                    where status <> 'scheduled'""",
    )
    m["late_cancel_rate"] = one(
        con, "select avg((status = 'late_cancelled')::int) from appt where status <> 'scheduled'"
    )
    m["cancel_rate"] = one(con, "select avg((status = 'cancelled')::int) from appt where status <> 'scheduled'")
    ep = """with v as (select episode_id, count(*) filter (where status = 'completed') as visits,
                         max(start) as last_start from appt group by episode_id),
             d as (select episode_id, any_value(discharge_reason) as reason from documentation_events
                   where note_type = 'discharge_summary' group by episode_id),
             p as (select episode_id, max(planned_visits::int) as planned from documentation_events
                   where note_type = 'initial_eval' group by episode_id)
             select v.*, d.reason, p.planned from v join p using (episode_id) left join d using (episode_id)
             where v.visits > 0"""
    con.execute(f"create view ep as {ep}")
    m["visits_per_discharge"] = one(con, "select avg(visits) from ep where reason is not null")
    closed = "last_start < (select max(start) from appt where status <> 'scheduled') - interval 45 day"
    m["early_dropout"] = one(con, f"select avg((visits < 3)::int) from ep where {closed}")
    m["poc_completion"] = one(con, f"select avg((visits >= planned)::int) from ep where {closed}")
    m["poc_completion_formal"] = one(
        con,
        f"""select avg((visits >= planned or reason in ('plan_completed','goals_met'))::int)
                                              from ep where {closed}""",
    )
    m["visits_per_week"] = one(
        con,
        """select avg(visits / greatest(1, date_diff('day', first, last) / 7.0)) from
        (select episode_id, count(*) as visits, min(start) as first, max(start) as last from appt
         where status = 'completed' group by episode_id having count(*) >= 4)""",
    )
    m["units_per_visit"] = one(
        con,
        """select sum(units::int) / count(distinct appointment_id) from charges
                                       where cpt_code not like 'G%' and cpt_code not like 'L%'""",
    )
    m["completed_visits"] = one(con, "select count(*) from appt where status = 'completed'")
    m["net_per_visit"] = one(
        con,
        """select sum(amount_usd::double) filter (where event_type in ('payer_payment','patient_payment'))
                                     / (select count(*) from appt where status = 'completed') from remittances""",
    )
    m["denial_rate"] = one(
        con,
        """select count(distinct claim_id) filter (where event_type = 'denial') /
                                   (select count(*) from claims) from remittances""",
    )
    m["conversion"] = one(
        con,
        """with r as (select referral_id from intake_events where event_type = 'received'
                                             and event_at::timestamp < timestamp '2026-09-01'),
                                   e as (select distinct s.referral_id from appt a join scheduling_events s using (appointment_id)
                                         where a.visit_type = 'initial_eval' and a.status = 'completed')
                                   select count(e.referral_id) / count(*) from r left join e using (referral_id)""",
    )
    m["bdays_to_eval_median"] = one(
        con,
        """with r as (select referral_id, min(event_at::timestamp) as rec from intake_events
                                                    where event_type = 'received' group by 1),
        e as (select s.referral_id, min(a.start) as ev from appt a join scheduling_events s using (appointment_id)
              where a.visit_type = 'initial_eval' and a.status = 'completed' group by 1)
        select median((select count(*) from range(r.rec::date + 1, e.ev::date + 1, interval 1 day) t(d)
                      where isodow(d) <= 5)) from r join e using (referral_id)""",
    )
    m["hours_to_contact_median"] = one(
        con,
        """select median(date_diff('minute', r, c) / 60.0) from
        (select referral_id, min(event_at::timestamp) filter (where event_type = 'received') as r,
                min(event_at::timestamp) filter (where event_type = 'contacted') as c from intake_events group by 1)
        where c is not null""",
    )
    return m


if __name__ == "__main__":
    import sys

    for k, v in realism(Path(sys.argv[1])).items():
        print(f"{k:28s} {v:.4f}")
