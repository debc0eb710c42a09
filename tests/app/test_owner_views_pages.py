"""The owner views of issue 14 (Therapists; A/R, payers & denials; Referrals by diagnosis; Year over year):
each page renders its key figures for every allowed role (AppTest on the real built home), a picked row opens
the rows behind it, and those rows carry patient identities only for roles allowed to see them. The figure
builders and the pure frame helpers are tested directly (AppTest cannot read plotly figures)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from app_helpers import open_page, rendered_text, rerun

from app.lib import auth, owner_charts
from app.lib.queries import diagnoses, revenue, therapists, year_over_year

KEY_FIGURE = {
    "therapists": "Visits per day worked",
    "revenue": "Open A/R",
    "diagnoses": "Referrals",
    "year_over_year": None,  # a table, no tiles
}
# page -> (selectbox key of a summary, what the expander says is behind the picked row)
DRILLS = {
    "therapists": [("pick_th_summary", "Appointments behind")],
    "revenue": [
        ("pick_rv_ar", "Open claims behind"),
        ("pick_rv_mix", "Visits behind"),
        ("pick_rv_den", "Denied claims behind"),
    ],
    "diagnoses": [("pick_dx_table", "Referrals behind")],
    "year_over_year": [("pick_yoy_table", "Monthly figures behind")],
}
PATIENT_ROWS = {"pick_th_summary", "pick_rv_ar", "pick_rv_mix", "pick_rv_den", "pick_dx_table"}
CASES = [(role, page) for page in KEY_FIGURE for role in auth.ROLES if auth.can_view(role, page)]


def test_pages_are_registered_for_the_roles_the_issue_names():
    assert auth.PAGE_ACCESS["therapists"] == {"owner", "manager", "analyst"}
    assert auth.PAGE_ACCESS["revenue"] == {"owner", "manager", "analyst"}
    assert auth.PAGE_ACCESS["diagnoses"] == {"owner", "manager", "marketing", "analyst"}
    assert auth.PAGE_ACCESS["year_over_year"] == {"owner", "manager", "analyst"}
    assert not auth.can_view("front_desk", "revenue") and not auth.can_view("marketing", "therapists")


@pytest.mark.parametrize("role,page", CASES)
def test_page_renders_and_drills_through(app_home, role, page):
    at = open_page(app_home, role, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if KEY_FIGURE[page]:
        assert KEY_FIGURE[page] in [m.label for m in at.metric]
    assert at.dataframe, "the page shows its summary table"
    for key, behind in DRILLS[page]:
        box = at.selectbox(key=key)
        assert box.options, f"{key}: nothing to pick"
        box.set_value(box.options[0])
        rerun(at, app_home)
        assert not at.exception, [e.value for e in at.exception]
        labels = [e.label for e in at.expander]
        assert any(label.startswith(behind) for label in labels), labels
        if key in PATIENT_ROWS:
            cols = set().union(*(set(d.value.columns) for d in at.dataframe))
            assert "patient_key" in cols, f"{key}: the rows behind carry the pseudonymous key"
            if role in auth.PHI_ROLES:
                assert "patient_name" in cols, f"{key}: {role} sees who the rows are"
            else:
                assert not cols & {"patient_name", "phone", "patient_id"}, f"{key}: {role} must not see identities"
    text = rendered_text(at)
    assert "None" not in text.split() and " nan " not in text


def test_refused_roles_get_no_rows(app_home):
    at = open_page(app_home, "front_desk", "revenue")
    assert any("not available to the" in e.value for e in at.error)
    assert not at.dataframe


# ------------------------------------------------------------------------------------------- pure helpers


def test_payer_mix_shares_sum_to_one_and_get_labels():
    df = revenue.with_shares(
        pd.DataFrame(
            {
                "payer_class": ["medicare", "commercial", "unknown"],
                "visits": [30, 70, 0],
                "collected_usd": [300.0, 600.0, 100.0],
            }
        )
    )
    assert df["visit_share"].sum() == pytest.approx(1.0) and df["collection_share"].sum() == pytest.approx(1.0)
    assert df.iloc[0]["payer_class_label"] == "Commercial"  # largest collections first
    assert set(df["payer_class_label"]) == {"Commercial", "Medicare", "Payer not on file"}
    assert revenue.plain("some_new_class", "payer_class") == "Some new class"
    empty = revenue.with_shares(pd.DataFrame({"payer_class": [], "visits": [], "collected_usd": []}))
    assert empty.empty


def test_band_status_uses_the_kpi_band():
    bands = pd.DataFrame(
        {
            "kpi": ["arrival_rate", "units_per_visit"],
            "label": ["a", "u"],
            "healthy_low": [0.8, 3.0],
            "healthy_high": [None, 4.0],
        }
    )
    df = therapists.with_band_status(
        pd.DataFrame({"arrival_rate": [0.7, 0.9, None], "units_per_visit": [2.5, 3.5, 4.5]}), bands
    )
    assert df["arrival_rate_status"].tolist() == ["below band", "in band", ""]
    assert df["units_per_visit_status"].tolist() == ["below band", "in band", "above band"]


def test_year_over_year_change_follows_the_better_direction():
    df = year_over_year.with_change(
        pd.DataFrame(
            {
                "kpi": ["no_show_rate", "no_show_rate", "arrival_rate"],
                "label": ["No-show rate"] * 2 + ["Arrival rate"],
                "unit": ["pct"] * 3,
                "better": ["lower", "lower", "higher"],
                "month": [date(2025, 10, 1), date(2025, 11, 1), date(2025, 11, 1)],
                "value": [0.10, 0.08, 0.85],
                "last_year": [0.12, 0.06, None],
            }
        )
    )
    nov = df[(df["kpi"] == "no_show_rate") & (df["month"] == date(2025, 11, 1))].iloc[0]
    assert nov["change"] == pytest.approx(0.02) and not nov["improved"]
    assert df[df["month"] == date(2025, 10, 1)].iloc[0]["improved"]
    latest = year_over_year.kpi_year_table(df)
    assert latest["kpi"].tolist() == ["no_show_rate", "arrival_rate"]  # Overview order, latest month each
    assert pd.isna(latest.iloc[1]["change"])


def test_diagnosis_labels_and_chapter_rollup():
    cats = diagnoses.with_rates(
        pd.DataFrame(
            {
                "icd10_category": ["M54", "M99", "none"],
                "icd10_chapter": ["Musculoskeletal system and connective tissue"] * 2 + ["No diagnosis on file"],
                "referrals": [10, 5, 5],
                "coded_on_referral": [8, 5, 0],
                "evaluated": [8, 4, 0],
                "converted": [6, 4, 0],
                "still_open": [1, 0, 0],
            }
        )
    )
    assert cats["diagnosis"].tolist() == [
        "M54 · Back and neck pain (dorsalgia)",
        "M99 · Musculoskeletal system and connective tissue",
        "No diagnosis on file",
    ]
    assert cats["share"].sum() == pytest.approx(1.0)
    chapters = diagnoses.by_chapter(cats)
    top = chapters.iloc[0]
    assert top["referrals"] == 15 and top["conversion_rate"] == pytest.approx(10 / 15)


# ------------------------------------------------------------------------------------------- figure builders


def test_ar_aging_figure_stacks_payer_classes_over_ordered_buckets():
    df = pd.DataFrame(
        {
            "payer_class_label": ["Medicare", "Medicare", "Commercial"],
            "ar_age_bucket": ["120+", "0-30", "31-60"],
            "open_balance_usd": [50.0, 100.0, 20.0],
        }
    )
    fig = owner_charts.ar_aging(df)
    assert {t.name for t in fig.data} == {"Medicare", "Commercial"}
    medicare = next(t for t in fig.data if t.name == "Medicare")
    assert list(medicare.x) == ["0-30 days", "31-60 days", "61-90 days", "91-120 days", "120+ days"]
    assert list(medicare.y) == [100.0, 0.0, 0.0, 0.0, 50.0]
    assert fig.layout.barmode == "stack"
    assert owner_charts.ar_aging(df.iloc[0:0]).layout.annotations[0].text == "No open claims."


def test_payer_mix_denials_diagnoses_and_yoy_figures():
    mix = revenue.with_shares(
        pd.DataFrame({"payer_class": ["medicare", "commercial"], "visits": [1, 3], "collected_usd": [10.0, 30.0]})
    )
    fig = owner_charts.payer_mix(mix)
    assert [t.name for t in fig.data] == ["Visits", "Collections"] and fig.layout.xaxis.tickformat == ".0%"
    den = pd.DataFrame(
        {"carc_group_label": ["Coding", "Timely filing"], "denied_usd": [5.0, 9.0], "denied_claims": [1, 2]}
    )
    assert list(owner_charts.denials(den).data[0].y) == ["Coding", "Timely filing"]  # largest at the top
    dx = pd.DataFrame({"diagnosis": ["a", "b"], "referrals": [4, 2], "converted": [1, 2]})
    fig = owner_charts.diagnoses(dx)
    assert [t.name for t in fig.data] == ["Converted", "Not (yet) converted"]
    assert list(fig.data[1].x) == [0, 3]
    yo = pd.DataFrame({"month": [date(2025, 10, 1), date(2025, 11, 1)], "value": [0.8, 0.9], "last_year": [0.7, None]})
    fig = owner_charts.yoy(yo, "Arrival rate", "pct")
    assert [t.name for t in fig.data] == ["This year", "Same month last year"] and fig.layout.yaxis.tickformat == ".0%"


def test_therapist_trend_draws_one_line_per_therapist_and_the_band():
    df = pd.DataFrame(
        {
            "therapist": ["A", "A", "B"],
            "month": [date(2025, 10, 1), date(2025, 11, 1), date(2025, 11, 1)],
            "arrival_rate": [0.8, 0.9, 0.7],
        }
    )
    fig = owner_charts.therapist_trend(df, "arrival_rate", "Arrival rate", "pct", 0.8, None)
    assert [t.name for t in fig.data] == ["A", "B"]
    assert fig.layout.shapes, "the healthy band (from 80%) is drawn"
    assert owner_charts.therapist_trend(df.iloc[0:0], "visits", "Visits", "count").layout.annotations
    # a chain: only the busiest therapists get a line, and the title says how many there are
    chain = pd.DataFrame(
        {"therapist": [f"T{i:02d}" for i in range(30)], "month": date(2025, 11, 1), "visits": range(30)}
    ).assign(arrival_rate=0.8)
    fig = owner_charts.therapist_trend(chain, "arrival_rate", "Arrival rate", "pct", top=12)
    assert sorted(t.name for t in fig.data) == [f"T{i:02d}" for i in range(18, 30)]
    assert "the 12 busiest of 30 therapists" in fig.layout.title.text
