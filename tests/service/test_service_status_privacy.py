"""The refresh service's problems and waiting runs on Data health follow the loads table's privacy rule: a role
without PHI (analyst) sees no file or export name -- Synthea-style exporters name per-patient files
`<Given>_<Family>_<uuid>.json` -- and no role sees a server path. Driven by a real scheduler run that refuses
such a file, with the page rendered through AppTest."""

from __future__ import annotations

import json

from app.lib import service_status
from ptpulse.serve import Scheduler, ServiceConfig, read_status
from tests.app.app_helpers import open_page, rendered_text

PATIENT = "Rosalind_Quigley"
PATIENT_FILE = f"{PATIENT}_6f1c2a9e-1d4b-4c55-9d1e-2b0c1e9a7f10.json"
LOOSE_FILE = "Jerry_Luna_0a1b2c3d-1111-2222-3333-444455556666.json"


def _refused_patient_file_with_one_waiting(settings):
    """A real scheduler run refuses a per-patient FHIR file; a loose per-patient file waits behind it."""
    export = settings.incoming / "synthea_2026-12-01"
    export.mkdir(parents=True)
    (export / PATIENT_FILE).write_text('{"resourceType": "Bundle", "entry": [')  # cut off: refused
    (export / ".done").touch()
    scheduler = Scheduler(settings, ServiceConfig(schedule="off", settle_seconds=0, retries=0))
    scheduler.tick()
    assert scheduler.running is not None
    (settings.incoming / LOOSE_FILE).write_text('{"resourceType": "Bundle", "entry": []}')
    (settings.incoming / (LOOSE_FILE + ".done")).touch()
    scheduler.tick()  # queued behind the running job
    scheduler.wait_running(300)
    scheduler.stop()
    status = read_status(settings)
    assert status["last_run"]["result"] == "load_failed"
    # the files name their patients; the status file names neither (an export folder and a file number only)
    assert PATIENT not in json.dumps(status) and "Jerry_Luna" not in json.dumps(status)
    assert status["last_run"]["problems"][0]["what"].startswith("synthea_2026-12-01, file ")
    assert [p["exports"] for p in status["pending"]] == [["single file 1"]]
    return status


def test_analyst_sees_no_patient_file_name_in_the_service_tables(built_home, copy_home, no_secrets):
    settings = copy_home(built_home)
    status = _refused_patient_file_with_one_waiting(settings)
    status["stopped_at"] = None  # shown as a running scheduler, so every table renders
    (settings.home / "logs" / "service.json").write_text(json.dumps(status), encoding="utf-8")

    at = open_page(settings, "analyst", "data_health")
    assert not at.exception
    text = rendered_text(at)
    assert "The last run reported 1 problem(s)" in text
    for secret in (PATIENT, "Jerry_Luna", "Quigley", str(settings.home)):
        assert secret not in text, secret
    tables = {tuple(df.value.columns): df.value for df in at.dataframe}
    problems = tables[("What", "Problem", "Fix")]
    assert problems["What"].tolist() == ["(file)"] and problems["Problem"].str.startswith("refused").all()
    assert tables[("Run", "Attempt", "Due", "Exports")]["Exports"].tolist() == ["1 export(s)"]

    at = open_page(settings, "admin", "data_health")  # admins see the export folder and file number, no path
    text = rendered_text(at)
    assert PATIENT not in text and "Jerry_Luna" not in text and str(settings.home) not in text
    assert "synthea_2026-12-01, file " in text and "single file 1" in text


def test_a_crashed_refresh_names_its_log_inside_the_data_folder(built_home, copy_home, no_secrets):
    settings = copy_home(built_home)
    scheduler = Scheduler(settings, ServiceConfig(schedule="off", retries=0))
    scheduler.run_now()
    scheduler.tick()
    scheduler.running.proc.kill()  # the refresh dies without a result
    scheduler.wait_running(60)
    scheduler.stop()
    (problem,) = read_status(settings)["last_run"]["problems"]
    assert problem["what"] == "refresh process"
    assert "read its log logs/service-job-" in problem["fix"] and str(settings.home) not in problem["fix"]


def test_redaction_rule_for_roles_without_phi():
    home = "/srv/ptpulse"
    status = {
        "last_run": {
            "exports": [LOOSE_FILE],
            "archived": {LOOSE_FILE: f"failed/20261201-020000-{LOOSE_FILE}"},
            "problems": [
                {
                    "what": LOOSE_FILE,
                    "problem": f"refused: {LOOSE_FILE}: not valid JSON",
                    "fix": f"moved to incoming/failed/20261201-020000-{LOOSE_FILE}",
                },
                {
                    "what": "dbt build",
                    "problem": "a file the build read, 'Jose Garcia_99.ndjson', is named after a patient",
                    "fix": "",
                },
                {
                    "what": "refresh process",
                    "problem": "stopped (exit code -9) reading /srv/other/Ann_Lee_1.ndjson",
                    "fix": f"read its log {home}/logs/service-job-1.log",
                },
            ],
        },
    }
    analyst = service_status.problems(status, phi=False, home=home)
    assert analyst["What"].tolist() == ["(file)", "dbt build", "refresh process"]
    cells = " ".join(analyst.astype(str).to_numpy().ravel())
    assert "Jerry" not in cells and "Ann_Lee" not in cells and "/srv" not in cells
    assert "Jose" not in cells  # a quoted name with a space is replaced whole, not just its last word
    assert "read its log logs/service-job-1.log" in cells  # the data folder's own files stay useful
    admin = service_status.problems(status, phi=True, home=home)
    assert admin["What"].tolist() == [LOOSE_FILE, "dbt build", "refresh process"]
    assert "/srv/ptpulse" not in admin["Fix"].iloc[2]
