"""One patient under two ids (re-registered mid-episode: same member id, a new patient id, the EMR re-sends the later
appointments under it) is one episode: visits keep one numbering, the referral one funnel row, and the build is
served (numbering by episode and patient id gave two "visit 2", the funnel doubled the referral and the build was
refused). Real loader, real dbt build, incremental and full."""

from __future__ import annotations

import duckdb
import pytest
from conftest import copy_of

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build

PATIENT = (
    "patient_id,first_name,last_name,birth_date,sex,phone,email,address_line,city,state,zip,primary_payer_id,"
    "member_id,created_at,updated_at\n"
    "P01B,Pat1,Test1,1970-01-01,F,555-01001,p1@example.com,1 Elm St,Springfield,IL,62701,PY1,M001,"
    "2025-03-08 00:00:00,2025-03-08 00:00:00\n"
)
HEADER = (
    "event_id,appointment_id,episode_id,referral_id,patient_id,clinic_id,therapist_id,event_type,event_at,"
    "scheduled_start,duration_min,visit_type,cancel_reason,notice_hours,recorded_by\n"
)
RESENT = HEADER + "".join(  # A02 and A03 of E01, same events, now under P01B
    f"{e},{a},E01,R01,P01B,CL001,T1,{t},{at},{start},45,follow_up,,,fd1\n"
    for e, a, t, at, start in [
        ("SE004", "A02", "booked", "2025-03-05 11:05:00", "2025-03-07 10:00:00"),
        ("SE005", "A02", "arrived", "2025-03-07 10:00:00", "2025-03-07 10:00:00"),
        ("SE006", "A02", "completed", "2025-03-07 10:45:00", "2025-03-07 10:00:00"),
        ("SE007", "A03", "booked", "2025-03-07 10:50:00", "2025-03-10 10:00:00"),
        ("SE008", "A03", "arrived", "2025-03-10 10:00:00", "2025-03-10 10:00:00"),
        ("SE009", "A03", "completed", "2025-03-10 10:45:00", "2025-03-10 10:00:00"),
    ]
)


@pytest.mark.parametrize("full_refresh", [False, True], ids=["incremental", "full"])
def test_a_patient_re_registered_mid_episode_is_one_episode(tiny_home, tmp_path, full_refresh):
    home = copy_of(tiny_home, tmp_path / "home")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "patients_new.csv").write_text(PATIENT)
    (tmp_path / "in" / "scheduling_events_resent.csv").write_text(RESENT)
    assert [r.rows_landed for r in ingest([tmp_path / "in"], home)] == [1, 6]
    result = build(home, full_refresh=full_refresh)
    assert result.ok, result.message
    assert result.full_refresh == full_refresh
    with duckdb.connect(str(home.analytics_db), read_only=True) as con:
        visits = con.execute(
            "select appointment_id, patient_id, visit_number from marts.appointments where episode_id = 'E01' "
            "and status = 'completed' order by scheduled_start"
        ).fetchall()
        funnel = con.execute("select count(*) from marts.referral_funnel where referral_id = 'R01'").fetchone()[0]
    assert visits[:3] == [("A01", "P01", 1), ("A02", "P01B", 2), ("A03", "P01B", 3)]
    assert [v[2] for v in visits] == list(range(1, len(visits) + 1))
    assert funnel == 1
