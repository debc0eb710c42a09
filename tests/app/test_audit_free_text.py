"""The audit log records who did what to which task, not the free text they typed: an outreach note may quote a
patient's name or phone, and it stays only in the action row (the task's history for staff who see PHI)."""

from __future__ import annotations

import json
import sqlite3

from app.lib import actions


def test_an_outreach_note_stays_out_of_the_audit_log(tmp_path):
    db = tmp_path / "app.sqlite"
    note = "Spoke to Jerry Luna at 555-0142, will call back"
    actions.record(db, "t1", "log_outreach", "ann", {"method": "call", "outcome": "no_answer", "note": note})
    con = sqlite3.connect(db)
    try:
        ((detail,),) = con.execute("select detail from audit_log").fetchall()
        ((payload,),) = con.execute("select payload from actions").fetchall()
    finally:
        con.close()
    assert "Jerry" not in detail and "555" not in detail
    assert {"method": "call", "outcome": "no_answer", "note_given": True}.items() <= json.loads(detail).items()
    assert json.loads(payload)["note"] == note  # the task keeps its note
