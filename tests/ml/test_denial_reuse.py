"""A night scores the denial model only where something changed, and its table equals scoring every open claim.

Real builds of the small practice (incremental nights with ML scoring, ptpulse/build + ml/train_score.score), real
raw loads landed as the loader would: a late correction of an open claim's charge line (more units) must rescore
that claim's patient, and only such patients (ml/denial_reuse.py); the served table must equal what scoring every
open claim of the same file gives, row for row. A new model or a full refresh rescores everything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from night_helpers import new_load, project_snapshot

from ml import artifacts, denial_reuse, train_score, warehouse
from ptpulse.build.orchestrate import build
from ptpulse.core.config import Settings, get_settings
from ptpulse.refresh import _score_before_swap

pytestmark = pytest.mark.slow  # real builds


def _night(settings: Settings, project: Path, **kw) -> dict:
    """An (incremental unless told) build with ML scoring; models/status.json's `denial_scoring` of it."""
    result = build(settings, project_dir=project, before_swap=_score_before_swap(settings, None), **kw)
    assert result.ok, result.message
    return json.loads((settings.models_dir / "status.json").read_text())["denial_scoring"] | {
        "full": result.full_refresh
    }


def _open_claims(settings: Settings) -> int:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return len(con.sql(f"select 1 from ({warehouse.open_claims_sql(con)}) where patient_key is not null").df())


def _all_scored(settings: Settings, scratch: Path) -> tuple[int, int, int]:
    """(rows only in the served table, rows only in a scoring of every open claim of a copy of the served file, rows)."""
    copy = scratch / "rescored.duckdb"
    shutil.copy2(settings.analytics_db, copy)
    model = artifacts.load_model(artifacts.denial_model_path(settings))
    with duckdb.connect(str(copy)) as con:
        scoring = train_score.score_denials(con, settings, model)  # no served file: every open claim
        assert scoring.reused == 0 and scoring.scored == scoring.rows
        con.execute(f"attach '{Path(settings.analytics_db).resolve()}' as served (read_only)")
        return con.execute(
            """select (select count(*) from (from served.ml.denial_scores except all from ml.denial_scores)),
                      (select count(*) from (from ml.denial_scores except all from served.ml.denial_scores)),
                      (select count(*) from ml.denial_scores)"""
        ).fetchall()[0]


def _served_score(settings: Settings, claim_id: str) -> tuple:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute(
            "select probability, reason_1, reason_2 from ml.denial_scores where claim_id = ?", [claim_id]
        ).fetchall()[0]


@pytest.fixture(scope="module")
def nights(tmp_path_factory, built_home: Settings) -> dict:
    """The small practice's served build, a night with nothing new, then a night with one corrected charge line."""
    project = project_snapshot(tmp_path_factory.mktemp("project"))
    home = tmp_path_factory.mktemp("reuse_home")
    shutil.copytree(
        built_home.home, home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build")
    )
    settings = get_settings(home).ensure()
    quiet = _night(settings, project)  # scores carry this code's score_key from here on
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        claim_id, patient_key = con.execute(
            """select d.claim_id, c.patient_key from ml.denial_scores as d inner join marts.claims as c using (claim_id)
            inner join marts.charge_lines as l using (claim_id)
            where l.is_timed and l.posted_at <= c.submitted_at order by d.claim_id limit 1"""
        ).fetchall()[0]
        patient_claims = con.execute(
            f"select count(*) from ({warehouse.open_claims_sql(con)}) where patient_key = ?", [patient_key]
        ).fetchall()[0][0]
    before = _served_score(settings, claim_id)
    with duckdb.connect(str(settings.raw_db)) as con:  # a late correction: one timed line of the claim, 3 more units
        load_id = new_load(con, "charges", "correction")
        con.execute(
            "insert into raw.raw.charges by name select * replace (units + 3 as units, ? as _load_id) "
            "from raw.raw.charges where claim_id = ? and units is not null order by posted_at desc, charge_id limit 1",
            [load_id, claim_id],
        )
    corrected = _night(settings, project)
    return {
        "settings": settings,
        "project": project,
        "quiet": quiet,
        "corrected": corrected,
        "claim": claim_id,
        "patient_claims": patient_claims,
        "before": before,
        "after": _served_score(settings, claim_id),
        "open": _open_claims(settings),
        "scratch": tmp_path_factory.mktemp("scratch"),
    }


def test_a_night_with_nothing_new_scores_no_claim(nights):
    quiet = nights["quiet"]
    assert not quiet["full"]
    assert quiet["scored"] == 0 and quiet["reused"] == quiet["rows"] > 0, quiet


def test_a_night_rescores_only_the_patients_a_change_touched(nights):
    night = nights["corrected"]
    assert not night["full"] and night["rows"] == nights["open"]
    # exactly the corrected claim's patient, all of its open claims (a patient is kept or scored whole)
    assert 1 <= nights["patient_claims"] == night["scored"] < nights["open"], night
    assert night["reused"] == night["rows"] - night["scored"] > 0
    assert nights["after"] != nights["before"]  # the correction moved the claim's score: it was not kept


def test_the_night_equals_scoring_every_open_claim(nights):
    only_served, only_rescored, rows = _all_scored(nights["settings"], nights["scratch"])
    assert (only_served, only_rescored) == (0, 0) and rows == nights["open"] == nights["corrected"]["rows"]


def test_a_new_model_or_a_full_refresh_rescores_every_claim(nights):
    settings, project = nights["settings"], nights["project"]
    model_file = artifacts.denial_model_path(settings)
    model = artifacts.load_model(model_file)
    model.version += "-retrained"
    artifacts.save_model(model_file, model)
    new_model = _night(settings, project)
    assert not new_model["full"] and new_model["reused"] == 0 and new_model["scored"] == new_model["rows"] > 0
    assert "score key" in new_model["why_not_reused"]
    assert _night(settings, project)["scored"] == 0  # the next quiet night keeps them all again
    full = _night(settings, project, full_refresh=True)
    assert full["full"] and full["reused"] == 0 and full["scored"] == full["rows"] > 0
    assert "full build" in full["why_not_reused"]
    assert _all_scored(settings, nights["scratch"])[:2] == (0, 0)


def test_a_comparison_that_fails_rescores_every_claim_instead_of_failing_the_night(nights, monkeypatch):
    """The comparison's scans can run out of memory on a big chain: the night then scores every open claim."""

    def out_of_memory(*_args):
        raise duckdb.OutOfMemoryException("failed to pin block (injected)")

    settings = nights["settings"]
    tonight = nights["scratch"] / "failed_comparison.duckdb"  # tonight's file: a copy of the served one
    shutil.copy2(settings.analytics_db, tonight)
    model = artifacts.load_model(artifacts.denial_model_path(settings))
    monkeypatch.setattr(denial_reuse, "_touched", out_of_memory)
    with duckdb.connect(str(tonight)) as con:
        scoring = train_score.score_denials(con, settings, model, served=settings.analytics_db, target=tonight)
    assert scoring.reused == 0 and scoring.scored == scoring.rows > 0 and "comparing" in scoring.why_not_reused
