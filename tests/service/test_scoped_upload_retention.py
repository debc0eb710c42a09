"""A clinic manager's limited upload (scoped_uploads/<upload-id>/: the files whose rows of other clinics were set
aside, patient rows among them) is deleted after PTPULSE_SCOPED_UPLOAD_DAYS by the refresh service's own jobs, not
only when someone uploads again: a home nobody uploads to must still forget them on time.

Before: only the Upload page pruned, at the next upload. Real folders, the service's real job function."""

from __future__ import annotations

import os
import time

from ptpulse.core.config import get_settings
from ptpulse.core.retention import IN_FLIGHT_S, SCOPED_DIR
from ptpulse.serve import run_job


def _limited_upload(home, name: str, age_days: float):
    folder = home / SCOPED_DIR / name
    folder.mkdir(parents=True)
    (folder / "scheduling_events.csv").write_text("appointment_id,clinic_id\nA1,CL002\n", encoding="utf-8")
    when = time.time() - age_days * 86400
    os.utime(folder, (when, when))
    return folder


def test_the_service_job_deletes_limited_uploads_past_their_days(tmp_path, monkeypatch):
    monkeypatch.setenv("PTPULSE_SCOPED_UPLOAD_DAYS", "30")
    settings = get_settings(tmp_path / "home").ensure()
    old = _limited_upload(settings.home, "20260101-000000-aaaaaa", age_days=31)
    recent = _limited_upload(settings.home, "20260201-000000-bbbbbb", age_days=2)

    result = run_job(settings, [], always_build=False)  # a scheduled run with nothing new: no build

    assert result["result"] == "nothing_loaded" and result["build"] is None
    assert not old.exists()
    assert sorted(p.name for p in recent.iterdir()) == ["scheduling_events.csv"]  # an administrator may still load it


def test_zero_days_prunes_every_finished_upload_but_never_one_in_flight(tmp_path, monkeypatch):
    """With 0 days the page deletes what its load did not need at once; the service removes any older folder, but
    never one younger than IN_FLIGHT_S: it may still be being saved or loaded by the Upload page."""
    monkeypatch.setenv("PTPULSE_SCOPED_UPLOAD_DAYS", "0")
    settings = get_settings(tmp_path / "home").ensure()
    finished = _limited_upload(settings.home, "20260201-000000-cccccc", age_days=(IN_FLIGHT_S + 60) / 86400)
    in_flight = _limited_upload(settings.home, "20260201-000000-dddddd", age_days=600 / 86400)
    run_job(settings, [], always_build=False)
    assert not finished.exists() and in_flight.exists()


def test_a_scoped_uploads_file_instead_of_a_folder_does_not_stop_the_refresh(tmp_path):
    settings = get_settings(tmp_path / "home").ensure()
    (settings.home / SCOPED_DIR).write_text("not a folder", encoding="utf-8")
    assert run_job(settings, [], always_build=False)["result"] == "nothing_loaded"
    assert (settings.home / SCOPED_DIR).read_text(encoding="utf-8") == "not a folder"  # never deleted by the prune
