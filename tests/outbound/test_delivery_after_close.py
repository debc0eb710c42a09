"""A message queued for after quiet hours is delivered after its task was closed (the patient was reached and
booked, or marked lost, before 08:00): the delivery is recorded (message `sent`, its write-back in the task's
history) and the task stays done or lost, as the next build keeps it (real SQLite, the local SMS server)."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime, timedelta, timezone

import pandas as pd

from app.lib import actions, outreach

TZ = timezone(timedelta(hours=-5))


def test_a_message_delivered_after_its_task_closed_does_not_reopen_it(tmp_path, sms_server):
    api, sms = sms_server
    app_db = tmp_path / "app.sqlite"
    templates, policy = outreach.load()
    policy = dataclasses.replace(policy, retry_wait_s=0.01)
    who = pd.DataFrame(
        [
            {
                "task_id": f"confirm_high_risk:A{i}",
                "patient_id": i,
                "first_name": f"Pat{i}",
                "phone": f"+1555000000{i}",
                "clinic_name": "Riverside PT",
                "appointment_time": datetime(2026, 3, 11, 9, 30),
            }
            for i in ("1", "2")
        ]
    )
    for pid in ("1", "2"):
        outreach.record_consent(app_db, pid, "sms", True, "intake form", "desk@practice.test")
    evening = datetime(2026, 3, 10, 22, 15, tzinfo=TZ)
    res = outreach.send(app_db, who, templates["appointment_reminder"], "sms", {"sms": sms}, "desk", evening, policy)
    assert [r.status for r in res] == ["queued", "queued"]
    # before 08:00 the front desk confirms one appointment and marks the other patient lost
    actions.record(app_db, "confirm_high_risk:A1", "confirm", "desk", {"appointment_id": "A1"}, require_open=True)
    actions.record(app_db, "confirm_high_risk:A2", "mark_lost", "desk", {"reason": "Moved away"}, require_open=True)

    done = outreach.deliver_due(app_db, {"sms": sms}, datetime(2026, 3, 11, 8, 1, tzinfo=TZ), policy)

    assert [r.status for r in done] == ["sent", "sent"] and len(api.requests) == 2
    with sqlite3.connect(app_db) as con:
        written = con.execute("select count(*) from messages where status = 'sent' and action_id is not null")
        assert written.fetchone()[0] == 2  # each delivery written back to its task ...
    for task, status in (("confirm_high_risk:A1", "done"), ("confirm_high_risk:A2", "lost")):
        assert [h["action"] for h in actions.history(app_db, task)][-1] == "log_outreach"  # ... in its history
        state = actions.task_states(app_db, [task])[task]
        assert state.status == status and state.last_outreach == "sms: Left voicemail / message"
        assert not actions.is_visible(state, "2026-03-11T08:02:00")  # ... and the task stays closed
