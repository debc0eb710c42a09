"""A referral re-sent under a new referral id (a second fax, a second entry) is counted twice by the funnel and left
open. Nothing may merge it silently, but Data health flags it: marts.data_quality_warnings rule possible_resend, on
the later referral, for the same patient from the same source within 7 days. Reproduced on a copy of the hand-built
tiny practice, landed through the real loader and built by real dbt.

- R30 and R31: the same patient, the same physician, a day apart: R31 is flagged.
- R32: the same patient from another source (a marketing lead) the same week: not flagged.
- R33: the same patient and physician 20 days after R30: a new referral, not flagged.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from tiny_variant import append_rows, build_tiny_variant

pytestmark = pytest.mark.slow

NPI = "1234567893"


@pytest.fixture(scope="module")
def resend_home(tmp_path_factory):
    received = "IE9{n},{ref},P30,CL001,received,{at},{kind},{source},{npi},{channel},PY1,M54.5,,,,fd1"
    physician = dict(kind="referral", source="physician", npi=NPI, channel="")

    def edit(src: Path) -> None:
        append_rows(
            src / "patients.csv",
            [
                "P30,Pat30,Test30,1970-03-01,F,555-0130,p30@example.com,30 Elm St,Springfield,IL,62701,PY1,M030,"
                "2025-03-01 00:00:00,2025-03-01 00:00:00"
            ],
        )
        append_rows(
            src / "intake_events.csv",
            [
                received.format(n=30, ref="R30", at="2025-03-03 09:00:00", **physician),
                received.format(n=31, ref="R31", at="2025-03-04 10:00:00", **physician),
                received.format(
                    n=32,
                    ref="R32",
                    at="2025-03-05 10:00:00",
                    kind="lead",
                    source="marketing",
                    npi="",
                    channel="search_ads",
                ),
                received.format(n=33, ref="R33", at="2025-03-23 10:00:00", **physician),
            ],
        )

    return build_tiny_variant(tmp_path_factory.mktemp("resend"), edit)


def test_a_referral_resent_within_a_week_is_flagged_once_on_the_later_one(resend_home):
    with duckdb.connect(str(resend_home.analytics_db), read_only=True) as con:
        rows = con.execute(
            "select source, column_name, severity, code_list, rows, distinct_codes from marts.data_quality_warnings "
            "where rule = 'possible_resend'"
        ).fetchall()
        counted = con.execute(
            "select count(*) from marts.referral_funnel where referral_id in ('R30', 'R31', 'R32', 'R33')"
        ).fetchone()
    assert rows == [("intake_events", "referral_id", "warning", None, 1, 1)]
    assert counted == (4,)  # flagged, never merged: every referral still counts


def test_the_tiny_practice_has_no_resend(tiny_home):
    with duckdb.connect(str(tiny_home.analytics_db), read_only=True) as con:
        assert con.execute(
            "select count(*) from marts.data_quality_warnings where rule = 'possible_resend'"
        ).fetchone() == (0,)
