"""Referrals by diagnosis (owner, manager, marketing, analyst): which conditions are referred and how many
convert, by ICD-10-CM category or chapter; pick a row to see the referrals behind it (patient names only for
roles that may see them, never for marketing and analysts)."""

import streamlit as st

from app.lib import drill, owner_charts, ui
from app.lib.formatting import fmt
from app.lib.queries import diagnoses as q

ctx = ui.page("diagnoses")
ui.require_tables(ctx, "marts.referral_diagnoses", what="referrals by diagnosis")
f = ctx.filters
st.caption(
    "Whole calendar months touching the range, by the month the referral arrived. The diagnosis is the "
    "referral's own, else the one documented at the evaluation. Converted = signed initial evaluation."
)

cats = q.by_category(ctx.reader, f)
if cats.empty:
    st.info("No referrals in the selected months and clinics.")
    st.stop()

known = cats[cats["icd10_category"] != "none"]
c1, c2, c3 = st.columns(3)
c1.metric("Referrals", fmt(cats["referrals"].sum(), "count"), border=True)
c2.metric(
    "With a diagnosis",
    fmt(known["referrals"].sum() / cats["referrals"].sum(), "pct"),
    border=True,
    help="Share of referrals whose diagnosis is on file (from the referral or the evaluation).",
)
c3.metric("Most referred", known.iloc[0]["diagnosis"] if len(known) else "–", border=True)

level = st.radio("Group by", ["Diagnosis category", "ICD-10 chapter"], horizontal=True, key="dx_level")
view = cats if level == "Diagnosis category" else q.by_chapter(cats)
ui.chart(owner_charts.diagnoses(view), view, "referrals_by_diagnosis", "dx_chart")

picked = drill.summary(
    view[["diagnosis", "referrals", "share", "evaluated", "converted", "conversion_rate", "still_open"]],
    "referrals_by_diagnosis_table",
    "dx_table",
    "diagnosis",
    column_config={
        "diagnosis": st.column_config.TextColumn("Diagnosis", pinned=True, width="large"),
        "referrals": st.column_config.NumberColumn("Referrals", format="%d"),
        "share": ui.pct("Share"),
        "evaluated": st.column_config.NumberColumn("Evaluated", format="%d"),
        "converted": st.column_config.NumberColumn("Converted", format="%d"),
        "conversion_rate": ui.pct("Conversion"),
        "still_open": st.column_config.NumberColumn("Still open", format="%d"),
    },
    prompt="Show the referrals of a diagnosis",
)
if picked is not None and level == "ICD-10 chapter":
    st.caption("Pick a diagnosis category (Group by → Diagnosis category) to see its referrals.")
else:
    drill.rows_behind(
        picked,
        lambda: q.category_referrals(ctx.reader, f, picked),
        "diagnosis_referrals",
        "dx_rows",
        column_config={
            "received_at": st.column_config.DatetimeColumn("Received", format="MMM D, YYYY"),
            "evaluated_at": st.column_config.DatetimeColumn("Evaluated", format="MMM D, YYYY"),
            "converted_webpt": st.column_config.CheckboxColumn("Converted"),
        },
        what="referrals",
    )
