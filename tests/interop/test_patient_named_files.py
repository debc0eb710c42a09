"""A per-patient file name (Synthea writes `<Given>_<Family>_<uuid>.json`) is PHI. Re-sending such a file, or having
it refused, writes a load message that starts with its name; that message reaches marts.data_quality and the
de-identified twin, whose check then refused every later build ("data_quality.message: value(s) contain a patient
name"). Real loader, real dbt build, the real twin check, over the tiny practice plus one outside Synthea Bundle."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from ingestion.loader import ingest
from ptpulse.build.orchestrate import build
from ptpulse.core.config import get_settings

TINY = Path(__file__).parents[1] / "dbt" / "tiny_practice"
OUTSIDE = Path("/work/shared/interop/outside")


@pytest.mark.skipif(not OUTSIDE.is_dir(), reason=f"outside corpus not found at {OUTSIDE}")
def test_a_resent_or_refused_patient_named_file_never_stops_the_build(tmp_path):
    bundle = next(iter(sorted((OUTSIDE / "fhir-synthea-bundles").glob("*.json"))))
    given = bundle.name.split("_")[0].rstrip("0123456789")  # "Bob965" -> "Bob": the name the check looks for
    settings = get_settings(tmp_path / "home").ensure()
    files = tmp_path / "files"
    shutil.copytree(TINY, files)
    shutil.copy(bundle, files / bundle.name)
    broken = files / f"{bundle.stem}_page2.json"
    broken.write_text('{"resourceType": "Bundle", "entry": [')  # cut short: refused, its message names it
    first = ingest([files], settings)
    again = ingest([files / bundle.name, broken], settings)  # the upload page sent the same files again
    assert any(r.status == "skipped_same_hash" for r in again)
    assert any(r.status == "refused" and r.message.startswith(broken.name) for r in first + again)

    result = build(settings)
    assert result.ok, result.message
    with duckdb.connect(str(settings.home / "analytics_deid.duckdb"), read_only=True) as twin:
        messages = [m for (m,) in twin.execute("select distinct message from marts.data_quality").fetchall() if m]
    assert not [m for m in messages if given in m or bundle.stem in m]
    assert any(m.startswith("(file) is byte-identical to the file of load") for m in messages)
