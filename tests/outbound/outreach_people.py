"""The recipients and clocks of the outreach tests (test_outreach.py, test_send_rules_everywhere.py): one place, so
a reminder's appointment and the send time stay the same day apart in both."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

TZ = timezone(timedelta(hours=-5))
NOON = datetime(2026, 3, 10, 12, 0, tzinfo=TZ)
APPOINTMENT = datetime(2026, 3, 11, 9, 30)  # the clinic's wall clock, as the marts hold it


def people(*ids: str, **changes) -> pd.DataFrame:
    """Recipients in the work queue's columns, one per id; `p<id>={column: value}` changes that one's row."""
    rows = []
    for i in ids:
        row = {
            "task_id": f"confirm_high_risk:A{i}",
            "patient_id": i,
            "first_name": f"Pat{i}",
            "last_name": "Secretsurname",
            "phone": f"+1555000{i:0>4}",
            "email": f"p{i}@mail.test",
            "clinic_name": "Riverside PT",
            "appointment_time": APPOINTMENT,
            "therapist_name": "Dana Lee, DPT",
        }
        row.update(changes.get(f"p{i}", {}))
        rows.append(row)
    return pd.DataFrame(rows)
