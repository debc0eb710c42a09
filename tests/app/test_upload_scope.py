"""Clinic scope on the Upload page and the Overview's goals form (review: HIGH, a manager limited to CL002 uploaded a
scheduling row cancelling a CL001 appointment, and a patients.csv giving a CL001 patient a new phone and email, and
both were landed and served; LOW, an owner limited to CL002 was offered, and could save, whole-practice targets).

Real two-clinic build (tests/app/multi_practice.py), the page in AppTest running the real `ptpulse ingest --json
--clinics` subprocess (the background refresh the page starts is replaced by a recorder: the ingest is what decides
what lands), raw.duckdb read back."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import duckdb
import pytest
from multi_practice import open_page, run, writable

from app.lib import audit, goals, uploads
from ptpulse.core.config import get_settings

SCOPED = "CL002"
OTHER = "CL001"


@pytest.fixture
def home(multi_built, tmp_path):
    return writable(multi_built, tmp_path / "home")


def _raw(home, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(home.raw_db), read_only=True) as con:
        return con.execute(sql.replace("raw.", "raw.raw."), params or []).fetchall()


def _rows(home, sql: str, params=None) -> list[dict[str, str]]:
    """Rows of raw as the text an export writes (timestamps `YYYY-MM-DD HH:MM:SS`, NULL as empty)."""
    with duckdb.connect(str(home.raw_db), read_only=True) as con:
        df = con.execute(sql.replace("raw.", "raw.raw."), params or []).df()
    return [{k: "" if v is None or v != v else str(v) for k, v in r.items()} for r in df.to_dict("records")]


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


EVENT_COLUMNS = (
    "event_id, appointment_id, episode_id, referral_id, patient_id, clinic_id, therapist_id, event_type, "
    "strftime(event_at, '%Y-%m-%d %H:%M:%S') AS event_at, "
    "strftime(scheduled_start, '%Y-%m-%d %H:%M:%S') AS scheduled_start, duration_min, visit_type, cancel_reason, "
    "notice_hours, recorded_by"
)


def _cancel(home, clinic: str, event_id: str) -> dict[str, str]:
    """A cancel of the clinic's latest booked appointment (as the review's repro wrote it)."""
    (row,) = _rows(
        home,
        f"SELECT {EVENT_COLUMNS} FROM raw.scheduling_events WHERE clinic_id = ? AND event_type = 'booked' "
        "ORDER BY event_at DESC, event_id LIMIT 1",
        [clinic],
    )
    return {
        **row,
        "event_id": event_id,
        "event_type": "cancelled",
        "cancel_reason": "schedule_conflict",
        "notice_hours": "35.0",
        "recorded_by": "mgr_oakpark",
    }


def _other_clinics_patient(home) -> dict[str, str]:
    """A patient seen only at the other clinic, with a new phone and email (the review's second repro)."""
    (row,) = _rows(
        home,
        "SELECT * EXCLUDE (_load_id, _row_hash, _line) REPLACE (strftime(birth_date, '%Y-%m-%d') AS birth_date, "
        "strftime(created_at, '%Y-%m-%d %H:%M:%S') AS created_at, strftime(updated_at, '%Y-%m-%d %H:%M:%S') AS "
        "updated_at) FROM raw.patients WHERE patient_id IN ("
        "SELECT patient_id FROM raw.scheduling_events GROUP BY patient_id HAVING bool_and(clinic_id = ?)) "
        "ORDER BY patient_id LIMIT 1",
        [OTHER],
    )
    return {**row, "phone": "312-555-0199", "email": "inbox@attacker.example"}


def _upload(at, home, files, clinics: str):
    at.file_uploader[0].set_value([(name, data, "text/csv") for name, data in files])
    run(at, home, PTPULSE_DEMO_ROLE="manager", PTPULSE_DEMO_CLINICS=clinics)
    at.button(key="upload_go").click()
    run(at, home, PTPULSE_DEMO_ROLE="manager", PTPULSE_DEMO_CLINICS=clinics)
    assert not at.exception, [e.value for e in at.exception]
    return at.dataframe[0].value.set_index("file")


def test_a_manager_limited_to_one_clinic_uploads_for_it_only(home, refreshes):
    own, other = _cancel(home, SCOPED, "SE-SCOPE-OWN"), _cancel(home, OTHER, "SE-SCOPE-OTHER")
    patient = _other_clinics_patient(home)
    phone_before = _raw(
        home, "SELECT list(phone ORDER BY phone) FROM raw.patients WHERE patient_id = ?", [patient["patient_id"]]
    )

    at = open_page(home, "manager", "upload", clinics=SCOPED)
    table = _upload(
        at,
        home,
        [("scheduling_events_oakpark.csv", _csv([own, other])), ("patients_update.csv", _csv([patient]))],
        SCOPED,
    )

    events = table.loc["scheduling_events_oakpark.csv"]
    assert events["result"] == "Landed"
    assert (events["rows_read"], events["rows_landed"], events["rows_quarantined"]) == (2, 1, 1)
    assert events["rows_read"] == events["rows_landed"] + events["rows_quarantined"] + events["rows_duplicate"]
    assert "(clinic_id): 1" in events["why_set_aside"]
    assert "clinics outside yours" in events["fix"] and "administrator" in events["fix"]
    patients = table.loc["patients_update.csv"]
    assert patients["result"] == "Refused" and patients["rows_landed"] == 0
    assert "no clinic column" in patients["fix"] and "administrator" in patients["fix"]
    page = table.to_json()
    assert OTHER not in page and patient["phone"] not in page and patient["email"] not in page

    # where the data lands: only the own clinic's cancel, recorded as an upload limited to CL002
    landed = _raw(home, "SELECT event_id FROM raw.scheduling_events WHERE event_id LIKE 'SE-SCOPE-%'")
    assert landed == [("SE-SCOPE-OWN",)]
    (rule,) = _raw(
        home,
        "SELECT q.rule, q.column_name, l.upload_scope FROM raw._quarantine q JOIN raw._loads l USING (load_id) "
        "WHERE l.file LIKE '%scheduling_events_oakpark.csv'",
    )
    assert rule == ("outside_upload_scope", "clinic_id", SCOPED)
    assert (
        _raw(home, "SELECT list(phone ORDER BY phone) FROM raw.patients WHERE patient_id = ?", [patient["patient_id"]])
        == phone_before
    )
    assert {r[0] for r in _raw(home, "SELECT upload_scope FROM raw._loads WHERE file LIKE '%patients_update.csv'")} == {
        SCOPED
    }

    infos = " ".join(i.value for i in at.info)  # the page says so up front
    assert "limited to 1 clinic(s) (CL002)" in infos and "`patients`" in infos and "administrator" in infos

    # kept out of incoming/: no refresh (which loads for every clinic) reads a limited upload
    assert not list(home.incoming.rglob("scheduling_events_oakpark.csv"))
    assert list((home.home / uploads.SCOPED_DIR).rglob("scheduling_events_oakpark.csv"))
    detail = json.loads(audit.recent(home.app_db).query("event == 'upload.ingested'")["detail"].iloc[0])
    assert detail["clinics"] == [SCOPED]
    assert refreshes == ["demo-manager@ptpulse.local"]  # the own clinic's row landed: the dashboards rebuild


def test_a_manager_of_every_clinic_uploads_as_before(home, refreshes):
    other = _cancel(home, OTHER, "SE-ALL-OTHER")
    patient = _other_clinics_patient(home)
    at = open_page(home, "manager", "upload", clinics="*")
    assert not [i for i in at.info if "limited to" in i.value]
    table = _upload(
        at, home, [("scheduling_events_all.csv", _csv([other])), ("patients_update.csv", _csv([patient]))], "*"
    )
    assert table.loc["scheduling_events_all.csv", "result"] == "Landed"
    assert table.loc["scheduling_events_all.csv", "rows_landed"] == 1
    assert table.loc["patients_update.csv", "rows_landed"] == 1
    assert _raw(home, "SELECT count(*) FROM raw.patients WHERE phone = '312-555-0199'") == [(1,)]
    # a load of every clinic: no scope recorded, the files in incoming/ as before
    assert {r[0] for r in _raw(home, "SELECT upload_scope FROM raw._loads WHERE file LIKE '%_all.csv'")} == {None}
    assert list(home.incoming.rglob("scheduling_events_all.csv"))
    detail = json.loads(audit.recent(home.app_db).query("event == 'upload.ingested'")["detail"].iloc[0])
    assert detail["clinics"] is None


def test_a_limited_upload_is_not_left_for_a_refresh_when_the_pipeline_is_busy(tmp_path, monkeypatch):
    """Busy past the ingest's wait: an upload of every clinic waits in incoming/ for the next refresh; a limited one
    cannot (a refresh loads for every clinic), so it is dropped and the manager is asked to upload again."""
    home = get_settings(tmp_path / "empty").ensure()
    saved = uploads.save_files(home, [("scheduling_events.csv", io.BytesIO(b"x"))], clinics=[SCOPED])
    assert saved.folder.parent == home.home / uploads.SCOPED_DIR and saved.clinics == (SCOPED,)

    def busy(cmd, **kwargs):
        assert cmd[cmd.index("--clinics") + 1] == SCOPED
        return SimpleNamespace(returncode=3, stdout=json.dumps({"error": "busy", "message": "", "files": []}))

    monkeypatch.setattr(uploads.subprocess, "run", busy)
    with pytest.raises(uploads.UploadError) as exc:
        uploads.run_ingest(home, saved)
    assert not isinstance(exc.value, uploads.PipelineBusyError) and "Upload the files again" in str(exc.value)
    assert not saved.folder.exists()


# ------------------------------------------------------------------------------------------ goals


def test_an_owner_limited_to_one_clinic_sets_that_clinics_targets_only(home):
    at = open_page(home, "owner", "overview", clinics=SCOPED)
    box = at.selectbox(key="ov_goal_clinic")  # options as shown (clinic names)
    assert len(box.options) == 1 and "Whole practice" not in box.options and box.value == SCOPED
    at.selectbox(key="ov_goal_kpi").set_value("no_show_rate")
    at.number_input(key="ov_goal_value").set_value(6.0)
    at.button(key="FormSubmitter:ov_goal_form-Save target").click()
    run(at, home, PTPULSE_DEMO_ROLE="owner", PTPULSE_DEMO_CLINICS=SCOPED)
    assert not at.error, [e.value for e in at.error]
    assert goals.current_goals(home.app_db)[["kpi", "clinic_id", "target"]].values.tolist() == [
        ["no_show_rate", SCOPED, 0.06]
    ]

    # the check is in set_goal itself, whatever the form offers
    for clinic in (goals.PRACTICE, OTHER):
        with pytest.raises(goals.GoalError, match="limited to some clinics"):
            goals.set_goal(home.app_db, "no_show_rate", 0.01, "o@x.com", "owner", clinic_id=clinic, clinics=(SCOPED,))
    assert len(goals.history(home.app_db)) == 1  # nothing written by the refusals
    goals.set_goal(home.app_db, "no_show_rate", 0.05, "o@x.com", "owner", clinic_id=goals.PRACTICE, clinics=None)

    owner = open_page(home, "owner", "overview", clinics="*")  # an owner of the whole practice: as before
    assert "Whole practice" in owner.selectbox(key="ov_goal_clinic").options
