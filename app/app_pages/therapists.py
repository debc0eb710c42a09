"""Therapists (owner, manager, analyst): visits, arrival rate, units per visit and productivity per
therapist, by month, against the practice's healthy band where one exists; pick a therapist to see the
appointments behind the figures (patient names only for roles that may see them)."""

import streamlit as st

from app.lib import drill, owner_charts, ui
from app.lib.formatting import band_text, fmt
from app.lib.queries import therapists as q

ctx = ui.page("therapists")
ui.require_tables(ctx, "marts.therapist_productivity", what="per-therapist figures")
f = ctx.filters
st.caption(
    "Whole calendar months touching the selected range. **Productivity** = attended visits per day worked "
    "(a day with at least one attended visit). Arrival rate and units per visit use the Overview's formulas."
)

bands = q.bands(ctx.reader)
summary = q.with_band_status(q.therapist_summary(ctx.reader, f), bands)
if summary.empty:
    st.info("No appointments with an outcome in the selected months and clinics.")
    st.stop()

band = {row["kpi"]: row for row in bands.to_dict("records")}
c1, c2, c3, c4 = st.columns(4)
c1.metric("Visits", fmt(summary["visits"].sum(), "count"), border=True)
c2.metric(
    "Arrival rate",
    fmt(summary["visits"].sum() / max(summary["appointments"].sum(), 1), "pct"),
    border=True,
    help=band_text(
        band.get("arrival_rate", {}).get("healthy_low"), band.get("arrival_rate", {}).get("healthy_high"), "pct"
    ),
)
c3.metric(
    "Units per visit",
    fmt(summary["billed_units"].sum() / max(summary["billable_visits"].sum(), 1), "ratio"),
    border=True,
    help=band_text(
        band.get("units_per_visit", {}).get("healthy_low"), band.get("units_per_visit", {}).get("healthy_high"), "ratio"
    ),
)
c4.metric(
    "Visits per day worked",
    fmt(summary["visits"].sum() / max(summary["days_worked"].sum(), 1), "ratio"),
    border=True,
    help="No published benchmark: compare therapists with each other and with their own past months.",
)

measures = {
    "Visits": ("visits", "count", None, None),
    "Arrival rate": ("arrival_rate", "pct", "arrival_rate", None),
    "Units per visit": ("units_per_visit", "ratio", "units_per_visit", None),
    "Visits per day worked": ("visits_per_day_worked", "ratio", None, None),
}
choice = st.radio("Measure", list(measures), horizontal=True, key="th_measure")
col, unit, kpi, _ = measures[choice]
months = q.therapist_months(ctx.reader, f)
low, high = (band[kpi]["healthy_low"], band[kpi]["healthy_high"]) if kpi in band else (None, None)
ui.chart(owner_charts.therapist_trend(months, col, choice, unit, low, high), months, "therapists_by_month", "th_trend")

st.subheader("By therapist")
table = summary[
    [
        "therapist",
        "visits",
        "appointments",
        "arrival_rate",
        "arrival_rate_status",
        "units_per_visit",
        "units_per_visit_status",
        "visits_per_day_worked",
        "days_worked",
        "scheduled_hours",
        "no_shows",
        "cancellations",
    ]
]
picked = drill.summary(
    table,
    "therapists",
    "th_summary",
    "therapist",
    column_config={
        "therapist": st.column_config.TextColumn("Therapist", pinned=True),
        "visits": st.column_config.NumberColumn("Visits", format="%d"),
        "appointments": st.column_config.NumberColumn("Appointments", format="%d"),
        "arrival_rate": ui.pct("Arrival rate"),
        "arrival_rate_status": st.column_config.TextColumn("vs band"),
        "units_per_visit": st.column_config.NumberColumn("Units / visit", format="%.2f"),
        "units_per_visit_status": st.column_config.TextColumn("vs band "),
        "visits_per_day_worked": st.column_config.NumberColumn("Visits / day worked", format="%.1f"),
        "days_worked": st.column_config.NumberColumn("Days worked", format="%d"),
        "scheduled_hours": st.column_config.NumberColumn("Scheduled hours", format="%.0f"),
        "no_shows": st.column_config.NumberColumn("No-shows", format="%d"),
        "cancellations": st.column_config.NumberColumn("Cancellations", format="%d"),
    },
    prompt="Show a therapist's appointments",
)
drill.rows_behind(
    picked,
    lambda: q.therapist_appointments(ctx.reader, f, picked),
    "therapist_appointments",
    "th_rows",
    column_config={
        "scheduled_start": st.column_config.DatetimeColumn("Scheduled", format="MMM D, YYYY h:mm a"),
        "status": st.column_config.TextColumn("Outcome"),
        "billable_units": st.column_config.NumberColumn("Units", format="%d"),
    },
    what="appointments",
)
