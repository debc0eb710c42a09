"""Linking without our ids (issue 8, item 4): charges, claims and notes that arrive without appointment / episode
ids (X12 837P, FHIR, EMR exports) are linked by ONE rule in dbt (intermediate.int_visit_links, patients matched
across sources by intermediate.int_patient_crosswalk), every row that cannot be linked is counted in
marts.link_health, and no row or dollar is lost or repeated on the way.

A hand-made practice worked by hand below: an EMR that carries its ids (patients emr:*, appointments, notes) and
a billing system that does not (patients bill:*, an X12-style patient id that embeds the member id, rendering
therapists named by NPI). Real loader, real dbt build.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import build_hand_practice

from ptpulse.core.config import Settings
from tests.built import open_built

X12_P1 = "x12:member/PAYER1/MEM001"  # how ingestion/interop/x12.py names a subscriber: the member id inside

FILES = {
    "clinics.csv": """clinic_id,clinic_name,address_line,city,state,zip,timezone,opened_on,treatment_tables,updated_at
CL1,Link PT,1 Main St,Springfield,IL,62701,America/Chicago,2020-01-01,6,2025-01-01 00:00:00
""",
    # T1 and T2 have NPIs (the billing system names them npi:<NPI>); T3 has none
    "therapists.csv": """therapist_id,clinic_id,first_name,last_name,credential,npi,hired_on,terminated_on,weekly_hours,work_days,day_start,day_end,updated_at
T1,CL1,Ann,Able,DPT,1111111111,2020-01-01,,40.00,Mon|Tue|Wed|Thu|Fri,08:00,17:00,2025-01-01 00:00:00
T2,CL1,Ben,Baker,PT,2222222222,2020-01-01,,40.00,Mon|Tue|Wed|Thu|Fri,08:00,17:00,2025-01-01 00:00:00
T3,CL1,Cy,Cole,PTA,,2020-01-01,,40.00,Mon|Tue|Wed|Thu|Fri,08:00,17:00,2025-01-01 00:00:00
""",
    "payers.csv": """payer_id,payer_name,payer_class,requires_auth,auth_visit_limit,updated_at
PY1,Acme Health,commercial,false,,2025-01-01 00:00:00
""",
    # bill:P1 = emr:P1 by member id (written differently); bill:P2x has emr:P2's name and birth date but another
    # member id (never merged); bill:P3 has no member id and emr:P3's name with accents and another case (merged)
    "patients.csv": """patient_id,first_name,last_name,birth_date,sex,phone,email,address_line,city,state,zip,primary_payer_id,member_id,created_at,updated_at
emr:P1,Ann,Lee,1960-01-01,F,,,,,,,PY1,MEM-001,2025-01-01 00:00:00,2025-01-01 00:00:00
bill:P1,ANN,LEE,1960-01-01,F,,,,,,,PY1,mem001,2025-01-01 00:00:00,2025-01-01 00:00:00
emr:P2,Bob,Ray,1970-02-02,M,,,,,,,PY1,M2,2025-01-01 00:00:00,2025-01-01 00:00:00
bill:P2x,Bob,Ray,1970-02-02,M,,,,,,,PY1,M9,2025-01-01 00:00:00,2025-01-01 00:00:00
emr:P3,Jose,Nunez,1980-03-03,M,,,,,,,PY1,M3,2025-01-01 00:00:00,2025-01-01 00:00:00
bill:P3,JOSÉ,Núñez,1980-03-03,M,,,,,,,PY1,,2025-01-01 00:00:00,2025-01-01 00:00:00
""",
    # emr:P1: two visits on 03-03 (T1 morning, T2 afternoon), 03-05, a cancelled 03-07, 03-10 without an episode
    # id (FHIR-style), 03-12; so E1 spans 03-03..03-12. emr:P2 03-04 (E2), emr:P3 03-06 (E3).
    "scheduling_events.csv": """event_id,appointment_id,episode_id,referral_id,patient_id,clinic_id,therapist_id,event_type,event_at,scheduled_start,duration_min,visit_type,cancel_reason,notice_hours,recorded_by
S01,A1,E1,,emr:P1,CL1,T1,completed,2025-03-03 10:00:00,2025-03-03 09:00:00,60,initial_eval,,,
S02,A2,E1,,emr:P1,CL1,T2,completed,2025-03-03 15:00:00,2025-03-03 14:00:00,60,follow_up,,,
S03,A3,E1,,emr:P1,CL1,T1,completed,2025-03-05 10:00:00,2025-03-05 09:00:00,60,follow_up,,,
S04,A8,E1,,emr:P1,CL1,T1,cancelled,2025-03-05 12:00:00,2025-03-07 09:00:00,60,follow_up,illness,45.00,
S05,A6,,,emr:P1,CL1,T1,completed,2025-03-10 10:00:00,2025-03-10 09:00:00,60,,,,
S06,A7,E1,,emr:P1,CL1,T1,completed,2025-03-12 10:00:00,2025-03-12 09:00:00,60,follow_up,,,
S07,A4,E2,,emr:P2,CL1,T1,completed,2025-03-04 10:00:00,2025-03-04 09:00:00,60,initial_eval,,,
S08,A5,E3,,emr:P3,CL1,T2,completed,2025-03-06 10:00:00,2025-03-06 09:00:00,60,initial_eval,,,
""",
    "charges.csv": """charge_id,claim_id,appointment_id,episode_id,patient_id,clinic_id,therapist_id,service_date,cpt_code,modifiers,units,minutes,charge_usd,posted_at
CH1,CLM1,,,bill:P1,CL1,npi:1111111111,2025-03-03,97110,GP,1,15,100.00,2025-03-03 18:00:00
CH2,CLM1,,,bill:P1,CL1,npi:2222222222,2025-03-03,97140,GP,1,15,80.00,2025-03-03 18:00:00
CH3,CLM1,,,bill:P1,CL1,,2025-03-03,97530,GP,1,15,50.00,2025-03-03 18:00:00
CH10,CLM1,,,bill:P1,CL1,npi:3333333333,2025-03-03,97112,GP,1,15,40.00,2025-03-03 18:00:00
CH4,CLM2,,,x12:member/PAYER1/MEM001,CL1,npi:1111111111,2025-03-05,97110,GP,2,30,120.00,2025-03-05 18:00:00
CH11,CLM2,,,x12:member/PAYER1/MEM001,CL1,npi:2222222222,2025-03-05,97140,GP,1,15,60.00,2025-03-05 18:00:00
CH5,CLM5,,,bill:P1,CL1,npi:1111111111,2025-03-07,97110,GP,1,15,70.00,2025-03-07 18:00:00
CH6,CLM3,,,bill:P2x,CL1,npi:1111111111,2025-03-04,97161,GP,1,,150.00,2025-03-04 18:00:00
CH7,CLM4,,,bill:P3,CL1,npi:2222222222,2025-03-06,97161,GP,1,,150.00,2025-03-06 18:00:00
CH8,CLM6,,,bill:P1,CL1,T1,2025-03-10,97110,GP,1,15,90.00,2025-03-10 18:00:00
CH9,CLM7,A4,E2,emr:P2,CL1,T1,2025-03-04,97110,GP,1,15,30.00,2025-03-04 18:00:00
""",
    "claims.csv": """claim_id,episode_id,patient_id,clinic_id,payer_id,service_date,submitted_at,billed_usd
CLM1,,bill:P1,CL1,PY1,2025-03-03,2025-03-04 09:00:00,270.00
CLM2,,x12:member/PAYER1/MEM001,CL1,PY1,2025-03-05,2025-03-06 09:00:00,180.00
CLM3,,bill:P2x,CL1,PY1,2025-03-04,2025-03-05 09:00:00,150.00
CLM4,,bill:P3,CL1,PY1,2025-03-06,2025-03-07 09:00:00,150.00
CLM5,,bill:P1,CL1,PY1,2025-03-07,2025-03-08 09:00:00,70.00
CLM6,,bill:P1,CL1,PY1,2025-03-10,2025-03-11 09:00:00,90.00
CLM7,E2,emr:P2,CL1,PY1,2025-03-04,2025-03-05 09:00:00,30.00
""",
    # RM2 pays a claim this practice never sent us: kept, counted, shown on Data health
    "remittances.csv": """remit_id,claim_id,payer_id,event_type,event_at,amount_usd,group_code,carc_code,check_number
RM1,CLM2,PY1,payer_payment,2025-03-20 12:00:00,90.00,,,K1
RM2,CLMX,PY1,payer_payment,2025-03-20 12:00:00,55.55,,,K1
RM3,CLM3,PY1,payer_payment,2025-03-20 12:00:00,20.00,,,K1
RM4,CLM7,PY1,contractual_adjustment,2025-03-20 12:00:00,10.00,CO,45,K1
RM5,CLMX,PY1,contractual_adjustment,2025-03-20 12:00:00,5.00,CO,45,K1
""",
    "documentation_events.csv": """note_id,episode_id,appointment_id,patient_id,clinic_id,therapist_id,note_type,service_date,created_at,signed_at,visit_number,icd10_primary,icd10_secondary,body_region,planned_visits,frequency_per_week,plan_weeks,outcome_measure,outcome_score,discharge_reason
N1,,,emr:P1,CL1,T1,daily_note,2025-03-03,2025-03-03 12:00:00,2025-03-03 12:30:00,,,,,,,,,,
N2,,,emr:P1,CL1,T1,discharge_summary,2025-03-12,2025-03-12 12:00:00,2025-03-12 12:30:00,,,,,,,,LEFS,60.0,goals_met
N3,E2,A4,emr:P2,CL1,T1,initial_eval,2025-03-04,2025-03-04 12:00:00,2025-03-04 12:30:00,1,M54.5,,lumbar,6,2,3,LEFS,40.0,
N4,,,bill:P2x,CL1,T1,daily_note,2025-03-04,2025-03-04 12:00:00,,,,,,,,,,,
""",
}

# charge -> (appointment_id, episode_id, appointment_link, episode_link, unlinked_reason), worked by hand
EXPECTED_CHARGES = {
    "CH1": ("A1", "E1", "patient_date_therapist", "appointment", None),  # two visits that day; T1's by NPI
    "CH2": ("A2", "E1", "patient_date_therapist", "appointment", None),  # ... and T2's
    "CH3": (None, "E1", "unlinked", "episode_span", "several_visits_on_date"),  # no therapist: no guess
    "CH10": (None, "E1", "unlinked", "episode_span", "several_visits_on_date"),  # a therapist of neither visit
    "CH4": ("A3", "E1", "patient_date", "appointment", None),  # X12 member id = emr:P1's member id
    "CH11": ("A3", "E1", "patient_date", "appointment", None),  # one visit: links under another therapist
    "CH5": (None, "E1", "unlinked", "episode_span", "no_visit_on_date"),  # the visit that day was cancelled
    "CH6": (None, None, "unlinked", "unlinked", "no_visit_on_date"),  # namesake with another member id
    "CH7": ("A5", "E3", "patient_date", "appointment", None),  # name + birth date (accents, case)
    "CH8": ("A6", "E1", "patient_date", "episode_span", None),  # its visit has no episode: E1's span holds it
    "CH9": ("A4", "E2", "source", "source", None),  # ids carried: kept as they are
}

EXPECTED_CLAIMS = {
    "CLM1": (None, "E1", "unlinked", "several_visits_on_date"),  # lines in two visits; two visits that day
    "CLM2": ("A3", "E1", "claim_lines", None),
    "CLM3": (None, None, "unlinked", "no_visit_on_date"),
    "CLM4": ("A5", "E3", "claim_lines", None),
    "CLM5": (None, "E1", "unlinked", "no_visit_on_date"),
    "CLM6": ("A6", "E1", "claim_lines", None),
    "CLM7": ("A4", "E2", "source", None),  # its lines carried their appointment
}


def _money_in(name: str, column: str) -> Decimal:
    lines = FILES[name].splitlines()
    at = lines[0].split(",").index(column)
    return sum((Decimal(x.split(",")[at]) for x in lines[1:] if x), Decimal(0))


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> Settings:
    return build_hand_practice(tmp_path_factory.mktemp("linking"), FILES)


def _q(settings: Settings, sql: str) -> list[tuple]:
    with open_built(settings.analytics_db) as con:
        return con.execute(sql).fetchall()


def test_patients_across_sources_by_member_id_else_name_and_birth_date(linked):
    person = dict(_q(linked, "select pid, person_id from intermediate.int_patient_crosswalk"))
    rule = dict(_q(linked, "select pid, match_rule from intermediate.int_patient_crosswalk"))
    assert person["bill:P1"] == person["emr:P1"] == person[X12_P1]  # MEM-001 = mem001 = the X12 id's member id
    assert person["bill:P3"] == person["emr:P3"] and rule["bill:P3"] == "name_birth_date"
    assert person["bill:P2x"] != person["emr:P2"]  # same name and birth date, another member id: not merged
    assert len(set(person.values())) == 4  # P1, P2, P2x, P3


def test_charge_lines_link_to_one_visit_and_episode_or_say_why(linked):
    got = {
        r[0]: r[1:]
        for r in _q(
            linked,
            "select c.charge_id, c.appointment_id, c.episode_id, c.appointment_link, c.episode_link, l.unlinked_reason "
            "from marts.charge_lines as c join intermediate.int_visit_links as l "
            "on l.source = 'charges' and l.row_id = c.charge_id",
        )
    }
    assert got == EXPECTED_CHARGES


def test_claims_take_the_visit_of_their_lines_else_their_own_date(linked):
    got = {
        r[0]: r[1:]
        for r in _q(
            linked,
            "select c.claim_id, c.appointment_id, c.episode_id, l.appointment_link, l.unlinked_reason "
            "from marts.claims as c join intermediate.int_visit_links as l on l.source = 'claims' and l.row_id = c.claim_id",
        )
    }
    assert got == EXPECTED_CLAIMS


def test_notes_link_and_a_discharge_summary_needs_no_visit(linked):
    got = {
        r[0]: r[1:]
        for r in _q(
            linked,
            "select row_id, appointment_id, episode_id, appointment_link, unlinked_reason "
            "from intermediate.int_visit_links where source = 'documentation_events'",
        )
    }
    assert got == {
        "N1": ("A1", "E1", "patient_date_therapist", None),
        "N2": (None, "E1", "not_expected", None),
        "N3": ("A4", "E2", "source", None),
        "N4": (None, None, "unlinked", "no_visit_on_date"),
    }
    # the linked discharge summary closes E1 with its outcome; the unplaceable note makes no episode of its own
    episodes = dict(_q(linked, "select episode_id, status from marts.episodes"))
    assert episodes == {"E1": "discharged", "E2": "active", "E3": "active"}


def test_every_row_and_dollar_is_kept_and_unlinked_ones_are_counted(linked):
    assert _q(linked, "select count(*), sum(charge_usd) from marts.charge_lines") == [
        (11, _money_in("charges.csv", "charge_usd"))
    ]
    assert _q(linked, "select count(*), sum(billed_usd) from marts.claims") == [
        (7, _money_in("claims.csv", "billed_usd"))
    ]
    health = {(r[0], r[1], r[2]): (r[3], r[4]) for r in _q(linked, "select * from marts.link_health")}
    assert health == {
        ("charges", "carried", "(none)"): (1, Decimal("30.00")),
        ("charges", "linked", "(none)"): (6, Decimal("600.00")),
        ("charges", "unlinked", "several_visits_on_date"): (2, Decimal("90.00")),
        ("charges", "unlinked", "no_visit_on_date"): (2, Decimal("220.00")),
        ("claims", "linked", "(none)"): (3, Decimal("420.00")),
        ("claims", "carried", "(none)"): (1, Decimal("30.00")),
        ("claims", "unlinked", "several_visits_on_date"): (1, Decimal("270.00")),
        ("claims", "unlinked", "no_visit_on_date"): (2, Decimal("220.00")),
        ("documentation_events", "linked", "(none)"): (2, None),
        ("documentation_events", "carried", "(none)"): (1, None),
        ("documentation_events", "unlinked", "no_visit_on_date"): (1, None),
        ("charge_claims", "carried", "(none)"): (11, Decimal("940.00")),  # every line carried its claim
        ("remittances", "carried", "(none)"): (3, Decimal("110.00")),
        ("remittances", "unlinked", "claim_not_loaded"): (2, Decimal("55.55")),  # its cash, shown on Data health
    }
    for source, name, column in (("charges", "charges.csv", "charge_usd"), ("claims", "claims.csv", "billed_usd")):
        [(rows, usd)] = _q(
            linked, f"select sum(rows), sum(amount_usd) from marts.link_health where source = '{source}'"
        )
        assert (rows, usd) == (len(FILES[name].splitlines()) - 1, _money_in(name, column))
    # the unknown claim's cash still counts in the practice's collections
    [(cash,)] = _q(
        linked, "select sum(amount_usd) from intermediate.int_remittances_attributed where event_type = 'payer_payment'"
    )
    assert cash == Decimal("165.55")


def test_linked_money_reaches_visits_and_episodes(linked):
    visits = dict(_q(linked, "select appointment_id, charges_usd from marts.visits"))
    assert visits == {
        "A1": Decimal("100.00"),
        "A2": Decimal("80.00"),
        "A3": Decimal("180.00"),
        "A4": Decimal("30.00"),
        "A5": Decimal("150.00"),
        "A6": Decimal("90.00"),
        "A7": Decimal("0.00"),
    }
    collected = dict(
        _q(linked, "select appointment_id, net_collected_usd from marts.visits where net_collected_usd <> 0")
    )
    assert collected == {"A3": Decimal("90.00")}  # CLM2's payment, on the visit its lines link to
    charges = dict(_q(linked, "select episode_id, charges_usd from marts.episodes"))
    # E1: claims CLM1, CLM2, CLM5, CLM6 (episode by lines' visit or span); CLM3 (the namesake) belongs to none
    assert charges == {"E1": Decimal("610.00"), "E2": Decimal("30.00"), "E3": Decimal("150.00")}


def test_data_health_says_what_is_unlinked_in_plain_words(linked):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    from app_helpers import open_page

    at = open_page(linked, "admin", "data_health")
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Rows with their ids"], metrics["Rows linked by the rule"], metrics["Rows not linked"]) == (
        "3",
        "11",
        "8",
    )
    assert metrics["Cash on claims not loaded"] == "$55.55"
    table = next(df.value for df in at.dataframe if "Why" in df.value.columns)
    rows = {
        (w, why.split(":")[0].split(".")[0]): n for w, n, why in table[["What", "Rows", "Why"]].itertuples(index=False)
    }
    assert rows == {
        ("Charge lines", "No attended visit of the patient on the date of service"): 2,
        (
            "Charge lines",
            "The patient had several visits that day and the rendering therapist does not say which one",
        ): 2,
        ("Claims", "No attended visit of the patient on the date of service"): 2,
        ("Claims", "The patient had several visits that day and the rendering therapist does not say which one"): 1,
        ("Clinical notes", "No attended visit of the patient on the date of service"): 1,
        ("Payments and adjustments (835, EOB, EMR front desk)", "The claim they pay is not in this build"): 2,
    }
