"""The one-way layer rule (pyproject.toml [tool.importlinter]) holds, and it would catch an upward import.

`make test` enforces what `make lint` reports: a module that imports back up the layers (the base floor
importing the ML package, the app importing the build) fails here, with import-linter's report naming the
importing line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')"
)


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _broken(report: str) -> str:
    """The "Broken contracts" section of a lint-imports report (names the contracts and importing lines)."""
    return report.split("Broken contracts", 1)[1] if "Broken contracts" in report else ""


def test_the_repository_keeps_its_layers():
    run = _lint(ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


LAYOUT = {
    "ptpulse/__init__.py": "",
    "ptpulse/core/__init__.py": "",
    "ptpulse/core/config.py": "",
    "ptpulse/cli.py": "import ptpulse.refresh\n",
    "ptpulse/refresh.py": "import ptpulse.build\nimport ml\nimport ingestion\n",
    "ptpulse/build/__init__.py": "import ptpulse.core.config\n",
    "ingestion/__init__.py": "import ptpulse.core.config\n",
    "seed_data/__init__.py": "import ptpulse.core.config\n",
    "ml/__init__.py": "import ptpulse.core.config\n",
    "app/__init__.py": "import ptpulse.core.config\n",
}


def test_a_well_layered_tree_passes(tmp_path):
    _tree(tmp_path, LAYOUT)
    run = _lint(tmp_path)
    assert run.returncode == 0, run.stdout[-4000:]


@pytest.mark.parametrize(
    "importer, imported, contract",
    [
        ("ptpulse/core/config.py", "ml", "ptpulse.core imports nothing of ours"),
        ("ingestion/__init__.py", "ptpulse.build", "One-way layers"),
        ("ml/__init__.py", "ingestion", "One-way layers"),
        ("app/__init__.py", "ptpulse.build", "The app imports the base floor only"),
        ("ptpulse/build/__init__.py", "app", "Nothing below the app imports it"),
    ],
)
def test_an_upward_import_breaks_a_contract(tmp_path, importer, imported, contract):
    _tree(tmp_path, LAYOUT)
    path = tmp_path / importer
    path.write_text(path.read_text() + f"import {imported}\n")
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert contract in _broken(run.stdout), run.stdout[-4000:]


def test_a_cycle_between_siblings_breaks_the_acyclic_contract(tmp_path):
    _tree(tmp_path, {**LAYOUT, "ml/a.py": "import ml.b\n", "ml/b.py": "import ml.a\n"})
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert "No import cycles" in _broken(run.stdout), run.stdout[-4000:]
