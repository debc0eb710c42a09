"""The dbt unit tests run once per test run, in the tiny practice's build (tests/dbt/conftest.py `tiny_home`); a
practice's own build leaves them out (orchestrate.BUILD_ARGS): they check the SQL on fixed fixture rows, so their
answer does not depend on the practice's data."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ptpulse.build.orchestrate import BUILD_ARGS

MODELS = Path(__file__).parents[2] / "dbt_project" / "models"


def _defined_unit_tests() -> set[str]:
    """Every unit test named in the project's YAML (the `- name:` entries under a `unit_tests:` key)."""
    names: set[str] = set()
    for path in MODELS.rglob("*.yml"):
        text = path.read_text(encoding="utf-8")
        if not re.search(r"^unit_tests:", text, re.M):
            continue
        block = text.split("unit_tests:", 1)[1]
        names |= set(re.findall(r"^  - name: (\S+)", block, re.M))
    return names


def test_every_dbt_unit_test_ran_and_passed_in_the_tiny_build(tiny_home):
    results = json.loads((tiny_home.build_dir / "dbt" / "target" / "run_results.json").read_text())["results"]
    ran = {r["unique_id"].rsplit(".", 1)[1]: r["status"] for r in results if r["unique_id"].startswith("unit_test.")}
    defined = _defined_unit_tests()
    assert len(defined) >= 10
    assert set(ran) == defined
    assert set(ran.values()) == {"pass"}


def test_a_practice_build_leaves_the_unit_tests_out(small_built):
    assert BUILD_ARGS[:1] == ["build"] and "unit_test" in BUILD_ARGS
    results = json.loads((small_built.build_dir / "dbt" / "target" / "run_results.json").read_text())["results"]
    assert results and not [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert any(r["unique_id"].startswith("test.") for r in results)  # its data tests did run
