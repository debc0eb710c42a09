"""Incremental builds equal a full rebuild (issue 15, item 2).

The small practice is landed DAY BY DAY: raw.duckdb starts with every row of the event sources up to three days
before the last event, then each of those days arrives as new loads (the rows of that day under new load ids,
as the loader would land them) and an incremental build runs after each. A late correction of a year-old charge,
a corrected year-old scheduling event (visit numbers of its episode shift), a tombstone for an old remittance and
a charge line of a patient id nobody knows yet and a year-old note moved to another episode arrive among them; the next night a patients file makes that id
one person with an existing patient, so the old line must re-link and the patient's rows change person. On the
claim side: a year-old claim is denied on day 1 and paid on day 3; a payment carrying no claim id (case + visit
date, as WebPT sends it) links to a year-old claim on day 1 and is left unlinked on day 2, when that claim is
corrected to another episode. Intake arrives day by day too, so as_of moves each night: an open claim nothing
else touches ages into the next A/R bucket, and the front desk's confirms (app actions, no raw load) reach the
incremental marts. Every mart, intermediate and staging table must equal the full rebuild of the same raw data: all rows, all columns,
money to the cent. Real DuckDB, real dbt, no mocks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from conftest import copy_of
from night_helpers import FACTS, full_build_beside, new_load, project_snapshot, unmatched_rows

from app.lib import actions
from ingestion.loader import ingest as ingest_in
from ptpulse.build.incremental import KEPT_TABLES, read_state
from ptpulse.build.orchestrate import build as build_in
from ptpulse.core.config import DBT_PROJECT_DIR, Settings, get_settings
from ptpulse.core.contracts import load_contracts
from ptpulse.core.sql import quote_ident
from tests.built import file_of, open_built

pytestmark = pytest.mark.slow  # real builds: under xdist this file starts early (tests/conftest.py)

DAYS = 3
NEW_PATIENT = "PT000000001"  # sorts before every generated id: the merged person takes it as its person_id
RELINK_CHARGE = "CHG-RELINK-1"
BUILD_SPECIFIC = {"build_info"}  # this build's id and time: differs between any two builds by design
DENIED_THEN_PAID = ("RMT-DENY-1", "RMT-PAY-1")  # a denial (day 1), then a payer payment (day 3) for an old claim
CASE_PAYMENT = "RMT-CASE-1"  # no claim id: linked by (episode, date) to an old claim that day 2 moves episode
# the incremental event sources and intake, whose events also move as_of (is_future, A/R age) night by night
DAILY = {**FACTS, "intake_events": load_contracts()["intake_events"].event_time}
AGING_CLAIM = "CLM-AGING-1"  # an open claim (day 1) of a patient nothing else touches: it ages into 31-60 by as_of


def _land(con: duckdb.DuckDBPyConnection, source: str, select_sql: str, params: list, tag: str) -> int:
    """Insert the rows of `select_sql` (columns of raw.<source>, _load_id replaced) as one new load."""
    load_id = new_load(con, source, tag)
    con.execute(
        f"insert into raw.raw.{quote_ident(source)} by name "
        f"select * replace ({load_id}::bigint as _load_id) from ({select_sql})",
        params,
    )
    return load_id


def _land_remittance(con: duckdb.DuckDBPyConnection, remit_id: str, claim: tuple, event_type: str, day, tag: str):
    """A new remittance event of `event_type` for `claim` = (claim_id or None, episode_id or None, service_date,
    payer_id), modelled on the first landed event of that type."""
    _land(
        con,
        "remittances",
        "select * replace (? as remit_id, ? as claim_id, ? as episode_id, cast(? as date) as service_date, "
        "? as payer_id, cast(? as timestamp) + interval 11 hour as event_at) "
        "from raw.raw.remittances where event_type = ? order by remit_id limit 1",
        [remit_id, *claim, day, event_type],
        tag,
    )


def _served_row(settings: Settings, sql: str, params: list) -> tuple | None:
    con = open_built(settings.analytics_db)
    try:
        return con.execute(sql, params).fetchone()
    finally:
        con.close()


def _tables(con: duckdb.DuckDBPyConnection, schema: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() and schema_name = ? "
            "order by 1",
            [schema],
        ).fetchall()
    ]


def _differences(a: Path, b: Path, schema: str) -> dict[str, tuple[int, int, int, int]]:
    """Per table of `schema` that differs: (rows in a, rows in b, rows only in a, rows only in b)."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{file_of(a, schema)}' as a (read_only)")
        con.execute(f"attach '{file_of(b, schema)}' as b (read_only)")
        names = "select table_name from duckdb_tables() where database_name = ? and schema_name = ?"
        names_a = {r[0] for r in con.execute(names, ["a", schema]).fetchall()}
        names_b = {r[0] for r in con.execute(names, ["b", schema]).fetchall()}
        assert names_a == names_b, (schema, sorted(names_a ^ names_b))
        out = {}
        for t in sorted(names_a - BUILD_SPECIFIC):
            na = con.execute(f"select count(*) from a.{schema}.{quote_ident(t)}").fetchone()[0]
            nb = con.execute(f"select count(*) from b.{schema}.{quote_ident(t)}").fetchone()[0]
            only_a, only_b = unmatched_rows(con, "a", "b", schema, t), unmatched_rows(con, "b", "a", schema, t)
            if na != nb or only_a or only_b:
                out[t] = (na, nb, only_a, only_b)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def day_by_day(tmp_path_factory, ingested_home: Settings) -> dict:
    """Land the last DAYS days one by one with an incremental build after each; returns what happened."""
    project = project_snapshot(tmp_path_factory.mktemp("project"))

    def build(settings: Settings, **kw):
        return build_in(settings, project_dir=project, **kw)

    home = tmp_path_factory.mktemp("incremental_home")
    shutil.copy2(ingested_home.raw_db, home / "raw.duckdb")
    settings = get_settings(home).ensure()
    stash = home.parent / f"{home.name}_stash.duckdb"

    con = duckdb.connect(str(settings.raw_db))
    try:
        last = con.execute("select max(cast(event_at as date)) from raw.raw.scheduling_events").fetchone()[0]
        cut = last - timedelta(days=DAYS)
        con.execute(f"attach '{stash}' as stash")
        for source, t in DAILY.items():  # rows after the cut leave raw; they arrive day by day below
            con.execute(
                f"create table stash.{source} as select * from raw.raw.{source} where cast({t} as date) > ?", [cut]
            )
            con.execute(f"delete from raw.raw.{source} where cast({t} as date) > ?", [cut])
            con.execute(f"alter table raw.raw.{source} add column if not exists _op varchar")  # a profile's delete flag
    finally:
        con.close()

    first = build(settings)
    assert first.ok and first.full_refresh, first.message
    results = [first]
    edits: dict = {}
    observed: dict = {}
    con = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        old = cut - timedelta(days=300)
        # a year-old claim that was never denied; and one alone on its (episode, date), with another episode of
        # the same patient to move to
        paid = con.execute(
            "select claim_id, service_date, payer_id from raw.raw.claims where service_date < ? and claim_id not in "
            "(select claim_id from raw.raw.remittances where event_type = 'denial' and claim_id is not null) "
            "order by claim_id limit 1",
            [old],
        ).fetchone()
        moved = con.execute(
            "select c.claim_id, c.episode_id, c.service_date, c.payer_id, o.episode_id from raw.raw.claims as c "
            "inner join raw.raw.claims as o on o.patient_id = c.patient_id and o.episode_id <> c.episode_id "
            "where c.service_date < ? and c.claim_id <> ? and c.claim_id in (select any_value(claim_id) "
            "from raw.raw.claims group by episode_id, service_date having count(distinct claim_id) = 1) "
            "order by c.claim_id, o.episode_id limit 1",
            [old, paid[0]],
        ).fetchone()
        # a claim of a patient with no row in the last 200 days: its clone is the aging claim
        quiet = con.execute(
            "select c.claim_id from raw.raw.claims as c where c.service_date < ? and c.claim_id not in (?, ?) "
            "and c.patient_id not in (select patient_id from raw.raw.claims where service_date >= ? "
            "union select patient_id from raw.raw.scheduling_events where cast(event_at as date) >= ?) "
            "order by c.claim_id limit 1",
            [old, paid[0], moved[0], cut - timedelta(days=200), cut - timedelta(days=200)],
        ).fetchone()[0]
    finally:
        con.close()
    edits["denied_then_paid_claim"], edits["moved_claim"], edits["moved_to_episode"] = paid[0], moved[0], moved[4]
    edits["aging_service_date"] = last - timedelta(days=31)  # 0-30 at the first night's as_of, 31-60 by the last
    for day in range(1, DAYS + 1):
        d = cut + timedelta(days=day)
        con = duckdb.connect(str(settings.raw_db))
        try:
            con.execute(f"attach '{stash}' as stash (read_only)")
            for source, t in DAILY.items():
                _land(con, source, f"select * from stash.{source} where cast({t} as date) = ?", [d], f"day{day}")
            if day == 1:  # a denial for a year-old claim; a payment naming only the case and visit date of another
                _land_remittance(con, DENIED_THEN_PAID[0], (paid[0], None, paid[1], paid[2]), "denial", d, "denial")
                _land_remittance(con, CASE_PAYMENT, (None, moved[1], moved[2], moved[3]), "payer_payment", d, "case")
                _land(  # ... and a new open claim whose A/R age bucket only as_of moves after tonight
                    con,
                    "claims",
                    "select * replace (? as claim_id, ? as service_date, cast(? as timestamp) + interval 9 hour "
                    "as submitted_at) from raw.raw.claims where claim_id = ? order by submitted_at desc limit 1",
                    [AGING_CLAIM, edits["aging_service_date"], d, quiet],
                    "aging",
                )
            if day == 3:  # ... the denied claim is paid after all
                _land_remittance(
                    con, DENIED_THEN_PAID[1], (paid[0], None, paid[1], paid[2]), "payer_payment", d, "paid"
                )
            if day == 2:  # the case payment's claim is corrected to another episode of its patient: the payment's
                # (episode, date) now names no claim, so it must unlink (the claim's OLD episode widens the scope)
                _land(
                    con,
                    "claims",
                    "select * replace (? as episode_id, cast(? as timestamp) + interval 9 hour as submitted_at) "
                    "from raw.raw.claims where claim_id = ? order by submitted_at desc limit 1",
                    [moved[4], d, moved[0]],
                    "episode-fix",
                )
            if day == 2:  # late corrections and a delete, for records far older than the new days
                charge = con.execute(
                    "select charge_id, charge_usd from raw.raw.charges where posted_at < ? "
                    "order by posted_at, charge_id limit 1",
                    [cut - timedelta(days=300)],
                ).fetchone()
                _land(
                    con,
                    "charges",
                    "select * replace (charge_usd + 12.34 as charge_usd, cast(? as timestamp) + interval 9 hour "
                    "as posted_at) from raw.raw.charges where charge_id = ?",
                    [d, charge[0]],
                    "correction",
                )
                event = con.execute(
                    "select event_id, appointment_id from raw.raw.scheduling_events where event_type = 'completed' "
                    "and event_at < ? order by event_at, event_id limit 1",
                    [cut - timedelta(days=300)],
                ).fetchone()
                _land(
                    con,
                    "scheduling_events",
                    "select * replace ('no_show' as event_type, event_at + interval 1 second as event_at) "
                    "from raw.raw.scheduling_events where event_id = ?",
                    [event[0]],
                    "reschedule-fix",
                )
                remit = con.execute(
                    "select remit_id from raw.raw.remittances where event_type = 'payer_payment' and event_at < ? "
                    "order by event_at, remit_id limit 1",
                    [cut - timedelta(days=300)],
                ).fetchone()[0]
                _land(
                    con,
                    "remittances",
                    "select * replace ('tombstone' as _op, event_at + interval 1 day as event_at) "
                    "from raw.raw.remittances where remit_id = ?",
                    [remit],
                    "delete",
                )
                # a charge line of a patient id no patients file names yet (no ids carried): unlinked tonight
                relink = con.execute(
                    "select c.charge_id, c.appointment_id, c.patient_id from raw.raw.charges as c "
                    "where c.appointment_id is not null and c.claim_id is not null and c.service_date < ? "
                    "and c.appointment_id <> ? "  # not the visit corrected to a no-show above
                    "and c.patient_id in (select p.patient_id from raw.raw.patients as p where p.member_id is not null) "
                    "order by c.charge_id limit 1",
                    [cut - timedelta(days=300), event[1]],
                ).fetchone()
                _land(
                    con,
                    "charges",
                    "select * replace (? as charge_id, ? as patient_id, null as appointment_id, null as claim_id, "
                    "null as episode_id, cast(? as timestamp) + interval 10 hour as posted_at) "
                    "from raw.raw.charges where charge_id = ?",
                    [RELINK_CHARGE, NEW_PATIENT, d, relink[0]],
                    "unknown-patient",
                )
                # an old visit billed under the wrong appointment: its lines are corrected to another completed
                # visit of the patient, so the visit they leave must drop to no lines (its scope: the lines' old
                # and new appointments)
                misposted = con.execute(
                    "select c.appointment_id, o.appointment_id from raw.raw.charges as c "
                    "inner join raw.raw.scheduling_events as o on o.patient_id = c.patient_id "
                    "and o.appointment_id <> c.appointment_id and o.event_type = 'completed' "
                    "where c.service_date < ? and c.charge_id <> ? and c.appointment_id not in (?, ?) "
                    "and o.appointment_id not in (?, ?) order by c.charge_id, o.appointment_id limit 1",
                    [old, charge[0], event[1], relink[1], event[1], relink[1]],
                ).fetchone()
                _land(
                    con,
                    "charges",
                    "select * replace (? as appointment_id, cast(? as timestamp) + interval 11 hour as posted_at) "
                    "from raw.raw.charges where appointment_id = ? "
                    "qualify row_number() over (partition by charge_id order by posted_at desc) = 1",
                    [misposted[1], d, misposted[0]],
                    "misposted",
                )
                edits["misposted"] = misposted
                # a year-old note, its episode's only one, corrected to another episode of its patient: the episode
                # it leaves has no note left, so only the note's OLD episode in int_notes_summarised's scope drops it
                note = con.execute(
                    "select n.note_id, o.episode_id from raw.raw.documentation_events as n "
                    "inner join raw.raw.documentation_events as o on o.patient_id = n.patient_id "
                    "and o.episode_id <> n.episode_id where n.service_date < ? and n.episode_id in (select "
                    "episode_id from raw.raw.documentation_events group by all having count(distinct note_id) = 1) "
                    "order by n.note_id, o.episode_id limit 1",
                    [old],
                ).fetchone()
                _land(
                    con,
                    "documentation_events",
                    "select * replace (? as episode_id, cast(? as timestamp) + interval 12 hour as created_at) "
                    "from raw.raw.documentation_events where note_id = ? order by created_at desc limit 1",
                    [note[1], d, note[0]],
                    "note-episode-fix",
                )
                edits.update(
                    {
                        "charge_id": charge[0],
                        "charge_usd": charge[1] + Decimal("12.34"),
                        "appointment_id": event[1],
                        "remit_id": remit,
                        "relink_appointment_id": relink[1],
                    }
                )
            if day == 3:  # ... until a patients file names that id with the member id of an existing patient: the
                # two ids become one person (the new, smaller id), so the old line re-links to that patient's visit
                # and every row of the patient changes person
                _land(
                    con,
                    "patients",
                    "select * replace (? as patient_id, cast(? as timestamp) + interval 8 hour as updated_at) "
                    "from raw.raw.patients where patient_id = ? order by updated_at desc limit 1",
                    [NEW_PATIENT, d, relink[2]],
                    "new-patient",
                )
        finally:
            con.close()
        if day == 2:  # the front desk confirms a visit still scheduled and a completed one of months ago (no
            # other edit touches its episode): app actions, no raw load, yet marts.appointments.confirmed_at changes
            for sql, params in (
                ("select appointment_id from marts.appointments where status = 'scheduled' order by 1 limit 1", []),
                (
                    "select appointment_id from marts.appointments where status = 'completed' "
                    "and scheduled_start < ? order by scheduled_start desc, 1 limit 1",
                    [cut - timedelta(days=200)],
                ),
            ):
                (appointment,) = _served_row(settings, sql, params)
                actions.record(
                    settings.app_db,
                    f"confirm_high_risk:{appointment}",
                    "confirm",
                    "fd1",
                    {"appointment_id": appointment},
                )
                edits.setdefault("confirmed", []).append(appointment)
        result = build(settings)
        assert result.ok, result.message
        results.append(result)
        observed[day] = {
            "case_payment": _served_row(
                settings,
                "select claim_id, claim_link from intermediate.int_remittances_linked where remit_id = ?",
                [CASE_PAYMENT],
            ),
            "denied_then_paid": _served_row(
                settings,
                "select is_denied, payer_paid_usd from marts.claims where claim_id = ?",
                [paid[0]],
            ),
            "aging": _served_row(
                settings,
                "select c.ar_age_bucket, cast(k.as_of as date) from marts.claims as c "
                "cross join intermediate.int_clocks_resolved as k where c.claim_id = ?",
                [AGING_CLAIM],
            ),
        }

    full_settings, _ = full_build_beside(settings, tmp_path_factory.mktemp("full_home"), project_dir=project)
    return {
        "settings": settings,
        "full": full_settings,
        "results": results,
        "edits": edits,
        "observed": observed,
        "build": build,
    }


def test_each_night_is_incremental(day_by_day):
    kinds = [(r.full_refresh, r.mode_reason) for r in day_by_day["results"]]
    assert kinds[0][0] is True
    assert all(not full for full, _ in kinds[1:]), kinds


def test_marts_built_day_by_day_equal_a_full_rebuild(day_by_day):
    inc, full = day_by_day["settings"].analytics_db, day_by_day["full"].analytics_db
    for schema in ("marts", "intermediate", "staging"):
        assert _differences(inc, full, schema) == {}, schema


def test_late_correction_and_tombstone_outside_any_window_are_applied(day_by_day):
    e = day_by_day["edits"]
    con = open_built(day_by_day["settings"].analytics_db)
    try:
        usd = con.execute("select charge_usd from marts.charge_lines where charge_id = ?", [e["charge_id"]]).fetchone()
        status = con.execute(
            "select status from marts.appointments where appointment_id = ?", [e["appointment_id"]]
        ).fetchone()
        remits = con.execute("select count(*) from staging.stg_raw__remittances where remit_id = ?", [e["remit_id"]])
        assert remits.fetchone()[0] == 0
    finally:
        con.close()
    assert usd == (e["charge_usd"],)
    assert status == ("no_show",)


def test_a_new_patient_id_relinks_an_old_line_and_every_row_of_its_person(day_by_day):
    """The line landed on day 2 for an unknown patient id links to the visit once day 3's patients file makes
    that id one person with an existing patient; rows that did not change themselves moved person too."""
    con = open_built(day_by_day["settings"].analytics_db)
    try:
        line = con.execute(
            "select appointment_id, person_id, appointment_link from intermediate.int_visit_links "
            "where source = 'charges' and row_id = ?",
            [RELINK_CHARGE],
        ).fetchone()
        persons = con.execute(
            "select count(*) from intermediate.int_visit_links where person_id = ?", [NEW_PATIENT]
        ).fetchone()[0]
    finally:
        con.close()
    assert line == (day_by_day["edits"]["relink_appointment_id"], NEW_PATIENT, "patient_date")
    assert persons > 1


def test_the_next_night_starts_from_every_incremental_mart():
    """start_from_served keeps exactly the marts materialised incremental: one it dropped would quietly be rebuilt
    in full every night."""
    marts = DBT_PROJECT_DIR / "models" / "marts"
    incremental = {p.stem for p in marts.rglob("*.sql") if "materialized='incremental'" in p.read_text()}
    assert (
        incremental
        == {table for schema, table in KEPT_TABLES if schema == "marts"}
        == {"appointments", "charge_lines", "claims", "visits"}
    )


def test_a_visit_whose_lines_move_to_another_visit_is_left_without_lines(day_by_day):
    left, joined = day_by_day["edits"]["misposted"]
    sql = "select charge_lines, charges_usd from marts.visits where appointment_id = ?"
    assert _served_row(day_by_day["settings"], sql, [left]) == (0, 0)
    assert _served_row(day_by_day["settings"], sql, [joined]) == _served_row(day_by_day["full"], sql, [joined])


def test_an_open_claim_ages_by_as_of_on_nights_that_bring_nothing_for_it(day_by_day):
    """marts.claims is incremental: a claim no load touches still moves A/R bucket as as_of moves."""
    service = day_by_day["edits"]["aging_service_date"]
    buckets = []
    for day, seen in sorted(day_by_day["observed"].items()):
        bucket, as_of = seen["aging"]
        age = (as_of - service).days
        assert bucket == ("0-30" if age <= 30 else "31-60"), (day, as_of, bucket)
        buckets.append(bucket)
    assert buckets[0] == "0-30" and buckets[-1] == "31-60", buckets


def test_no_hand_off_table_is_served_or_counted_as_a_mart(day_by_day):
    """The scope tables the incremental models (marts among them) hand to each other are gone before the build's
    row counts are taken and before it is served."""
    con = open_built(day_by_day["settings"].analytics_db)
    try:
        tables = [t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()]
        (counts,) = con.execute("select row_counts from meta.builds order by finished_at desc limit 1").fetchone()
    finally:
        con.close()
    counted = json.loads(counts)
    assert not [t for t in tables + list(counted) if t.endswith(("__scope", "__prev"))]
    assert {"appointments", "charge_lines", "claims"} <= set(counted)


def test_front_desk_confirms_between_nights_reach_the_incremental_appointments(day_by_day):
    confirmed = day_by_day["edits"]["confirmed"]
    rows = [
        _served_row(day_by_day["settings"], "select confirmed_at from marts.appointments where appointment_id = ?", [a])
        for a in confirmed
    ]
    assert len(confirmed) == 2 and all(r is not None and r[0] is not None for r in rows), rows


def test_claim_side_changes_to_old_claims_are_applied_night_by_night(day_by_day):
    """A denial then a payment for a year-old claim, and a payment linked by case + date whose claim moves to
    another episode the next night, each show in the served build of that night (the scopes widen to them)."""
    e, seen = day_by_day["edits"], day_by_day["observed"]
    assert seen[1]["case_payment"] == (e["moved_claim"], "episode_date")
    assert seen[2]["case_payment"] == (None, "unlinked")
    assert seen[1]["denied_then_paid"][0] is True
    assert seen[3]["denied_then_paid"][0] is True
    assert seen[3]["denied_then_paid"][1] > seen[1]["denied_then_paid"][1]  # the day-3 payment counts
    episode = _served_row(
        day_by_day["settings"], "select episode_id from marts.claims where claim_id = ?", [e["moved_claim"]]
    )
    assert episode == (e["moved_to_episode"],)


def test_a_crashed_incremental_build_leaves_the_last_good_build_served(day_by_day):
    """The incremental build never writes the served file: a failure after dbt leaves it byte-identical. dbt has
    rewritten the build state in place by then (its in-progress flag stays), so the next build is full and equals the
    full rebuild (tests/dbt/test_build_state_file.py: and the one after it is incremental again)."""
    settings = day_by_day["settings"]
    served = settings.analytics_db.resolve()
    digest = hashlib.sha256(served.read_bytes()).hexdigest()

    def crash(_new: Path) -> None:
        raise RuntimeError("killed after dbt")

    failed = day_by_day["build"](settings, before_swap=crash)
    assert not failed.ok and "killed after dbt" in failed.message
    assert settings.analytics_db.resolve() == served
    assert hashlib.sha256(served.read_bytes()).hexdigest() == digest
    again = day_by_day["build"](settings)
    assert again.ok and again.full_refresh and "left mid-build" in again.mode_reason, again.message
    assert _differences(again.served_path, day_by_day["full"].analytics_db, "marts") == {}


def test_full_refresh_on_demand_and_when_the_project_changes(day_by_day, tmp_path):
    settings = day_by_day["settings"]
    state = read_state(settings.analytics_db)
    assert state is not None and state.raw_load_id is not None
    changed_vars = day_by_day["build"](settings, dbt_vars={"queue_lookback_days": 31})
    assert changed_vars.ok and changed_vars.full_refresh, changed_vars.message
    assert "changed" in changed_vars.mode_reason
    again = day_by_day["build"](settings, dbt_vars={"queue_lookback_days": 31})
    assert again.ok and not again.full_refresh, again.mode_reason
    forced = day_by_day["build"](settings, dbt_vars={"queue_lookback_days": 31}, full_refresh=True)
    assert forced.ok and forced.full_refresh and forced.mode_reason == "full refresh requested"


def test_claims_long_in_120_plus_are_not_recomputed_every_night(day_by_day):
    """An open claim already past 120 days stays '120+' whatever as_of does: the claims scope leaves it out (such
    claims pile up with history; recomputing them all each night made the mart's night grow with the chain)."""
    last = day_by_day["results"][-1].twin["write"]
    (stale,) = _served_row(day_by_day["settings"], "select count(*) from marts.claims where ar_age_bucket = '120+'", [])
    assert "marts.claims" in last["scoped"]
    rewritten = last["updated"].get("marts.claims", 0) // 2  # patched by key: each claim deleted and inserted once
    assert 0 < rewritten < stale, (rewritten, stale)


REKEYED = (  # SE046 / SE047 (arrived, completed of A18: episode E11, patient P11) re-sent under A16 (E08, P08)
    "event_id,appointment_id,episode_id,referral_id,patient_id,clinic_id,therapist_id,event_type,event_at,"
    "scheduled_start,duration_min,visit_type,cancel_reason,notice_hours,recorded_by\n"
    "SE046,A16,E08,R08,P08,CL001,T1,arrived,2025-04-02 09:00:00,2025-04-02 09:00:00,60,follow_up,,,fd1\n"
    "SE047,A16,E08,R08,P08,CL001,T1,completed,2025-04-02 10:00:00,2025-04-02 09:00:00,60,follow_up,,,fd1\n"
)


def test_an_event_re_sent_under_another_appointment_leaves_its_old_one_recomputed(tiny_home, tmp_path):
    """A check-in and check-out corrected onto the right appointment (same event ids, another appointment of
    another episode and patient): the old appointment is recomputed on the incremental night too. Before, its
    scope held only the new rows' appointments, so A18 stayed a completed visit (visits 13 instead of 12, March's
    net revenue per visit 104.17 instead of 113.64) until the weekly full refresh."""
    home = copy_of(tiny_home, tmp_path / "home")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scheduling_events_fix.csv").write_text(REKEYED)
    assert [r.rows_landed for r in ingest_in([tmp_path / "in"], home)] == [2]
    night = build_in(home)
    assert night.ok and not night.full_refresh, night.message
    full, _ = full_build_beside(home, tmp_path / "full")
    assert _differences(home.analytics_db, full.analytics_db, "marts") == {}
    with open_built(home.analytics_db) as con:
        statuses = dict(
            con.execute(
                "select appointment_id, status from marts.appointments where appointment_id in ('A16', 'A18')"
            ).fetchall()
        )
    assert statuses == {"A16": "completed", "A18": "scheduled"}
