"""Units per visit counts one set of charge lines in its numerator and its denominator: the lines linked to an
attended (completed) visit, G- and L-codes excluded, over those visits (kpi_facts_daily and
therapist_productivity alike). A line linked to no visit, or to an appointment that was not attended, counts in
neither (Data health lists unlinked lines, marts.link_health).

The defect: the numerator summed every line's units while `count(distinct appointment_id)` skipped the lines
with no visit, so a day with one visit of 3 units and an unlinked line of 4 showed 7.0 units per visit.

The tiny practice (tests/dbt/tiny_practice, March 2025 worked by hand: 37 units over 12 visits) plus two lines:
- CH101: 97110 x4 on 03-12 for P04, no appointment, no episode, on a claim (C20) the build does not hold: unlinked.
  03-12 has A13 (T2): 97162 x1 + 97110 x2.
- CH102: 97110 x3 on 03-11 on A05, P02's no-show that day (the export carries the appointment id). 03-11 has
  A10 (T2): 97162 x1 + 97110 x2.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.dbt.conftest import TINY, build_hand_practice

pytestmark = pytest.mark.slow

EXTRA_LINES = [
    "CH101,C20,,,P04,CL001,T1,2025-03-12,97110,GP,4,60,240.00,2025-03-12 15:00:00",
    "CH102,C05,A05,E02,P02,CL001,T1,2025-03-11,97110,GP,3,45,180.00,2025-03-11 15:00:00",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(TINY.glob("*.csv"))}
    files["charges.csv"] = files["charges.csv"].rstrip("\n") + "\n" + "\n".join(EXTRA_LINES) + "\n"
    return build_hand_practice(Path(tmp_path_factory.mktemp("units_per_visit")), files)


def _all(settings, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _kpi(settings, grain: str, period: str, clinic: str = "ALL") -> tuple[float, float] | None:
    rows = _all(
        settings,
        "select numerator, denominator from marts.practice_kpis where kpi = 'units_per_visit' and clinic_id = ? "
        "and grain = ? and period_start = cast(? as date)",
        [clinic, grain, period],
    )
    return rows[0] if rows else None


def test_the_extra_lines_are_what_the_scenario_says(home):
    lines = dict(
        _all(
            home,
            "select l.charge_id, (l.appointment_id, l.appointment_link, a.status) from marts.charge_lines l "
            "left join marts.appointments a using (appointment_id) where l.charge_id in ('CH101', 'CH102')",
        )
    )
    assert lines == {"CH101": (None, "unlinked", None), "CH102": ("A05", "source", "no_show")}
    # the unlinked line is reported where Data health reads it
    assert _all(
        home, "select sum(rows) from marts.link_health where source = 'charges' and link_status = 'unlinked'"
    ) == [(1,)]


def test_a_line_with_no_visit_counts_in_neither_part(home):
    assert _kpi(home, "day", "2025-03-12") == (3, 1)  # A13 only: was (7, 1), 7.0 units per visit
    assert _kpi(home, "day", "2025-03-12", "CL001") == (3, 1)


def test_a_line_on_an_appointment_not_attended_counts_in_neither_part(home):
    assert _kpi(home, "day", "2025-03-11") == (3, 1)  # A10 only: A05 was a no-show (was (6, 2))


def test_week_and_month_keep_the_hand_worked_numbers(home):
    assert _kpi(home, "month", "2025-03-01") == (37, 12)  # as in the tiny practice without the two lines
    assert _kpi(home, "week", "2025-03-10") == (19, 6)  # A03 4, A10 3, A13 3, A06 3, A11 3, A14 3
    facts = _all(
        home,
        "select sum(numerator), sum(denominator) from marts.kpi_facts_daily where kpi = 'units_per_visit'",
    )
    assert facts == [(37, 12)]


def test_therapist_productivity_uses_the_same_lines(home):
    rows = _all(
        home,
        "select therapist_id, billed_units, billable_visits, units_per_visit from marts.therapist_productivity "
        "where month = date '2025-03-01' and (billed_units > 0 or billable_visits > 0) order by 1",
    )
    # T1: A01 3, A02 3, A03 4, A04 3, A06 3, A08 3, A15 3, A18 3 (CH101 and CH102 are T1's: not counted)
    assert rows == [("T1", 25, 8, pytest.approx(25 / 8)), ("T2", 12, 4, pytest.approx(3.0))]
