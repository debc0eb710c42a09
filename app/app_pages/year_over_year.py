"""Year over year (owner, manager, analyst): every monthly KPI for the last 12 months against the same month
a year earlier; pick a KPI to see the monthly numerators and denominators behind it."""

import streamlit as st

from app.lib import drill, owner_charts, ui
from app.lib.formatting import fmt, fmt_delta
from app.lib.queries import year_over_year as q

ctx = ui.page("year_over_year")
ui.require_tables(ctx, "marts.practice_kpis", what="year-over-year KPIs")
f = ctx.filters
st.caption(
    "The 12 months up to the end of the selected range, each against the same month a year earlier "
    "(the practice, or the selected clinics combined). The latest month may still be in progress."
)

months = q.yoy(ctx.reader, f)
if months.empty:
    st.info("No monthly KPIs up to the selected end date.")
    st.stop()

latest = q.kpi_year_table(months)
table = latest.assign(
    this_month=[fmt(v, u) for v, u in zip(latest["value"], latest["unit"], strict=True)],
    same_month_last_year=[fmt(v, u) for v, u in zip(latest["last_year"], latest["unit"], strict=True)],
    change_text=[
        fmt_delta(v, p, u) or "–" for v, p, u in zip(latest["value"], latest["last_year"], latest["unit"], strict=True)
    ],
    direction=[
        "–" if c != c or c is None else ("better" if imp else ("same" if c == 0 else "worse"))
        for c, imp in zip(latest["change"], latest["improved"], strict=True)
    ],
)[["label", "month", "this_month", "same_month_last_year", "change_text", "direction"]]

picked = drill.summary(
    table,
    "year_over_year",
    "yoy_table",
    "label",
    column_config={
        "label": st.column_config.TextColumn("KPI", pinned=True),
        "month": st.column_config.DateColumn("Month", format="MMM YYYY"),
        "this_month": st.column_config.TextColumn("This year"),
        "same_month_last_year": st.column_config.TextColumn("Same month last year"),
        "change_text": st.column_config.TextColumn("Change"),
        "direction": st.column_config.TextColumn("Better or worse"),
    },
    prompt="Show a KPI's months",
)
if picked is not None:
    one = months[months["label"] == picked]
    unit = one["unit"].iloc[0] if len(one) else None
    ui.chart(owner_charts.yoy(one, picked, unit), one, "yoy_kpi_months", "yoy_chart")
drill.rows_behind(
    picked,
    lambda: q.kpi_months(ctx.reader, f, picked),
    "yoy_kpi_rows",
    "yoy_rows",
    column_config={"month": st.column_config.DateColumn("Month", format="MMM YYYY")},
    what="monthly figures",
)
