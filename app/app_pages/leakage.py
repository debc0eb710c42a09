"""Revenue leakage (owner): where money is lost, in dollars, by cause and month, with the assumption behind
each estimate shown next to it."""

import streamlit as st

from app.lib import charts, queries, ui
from app.lib.formatting import fmt

ctx = ui.page("leakage")
ui.require_tables(ctx, "marts.revenue_leakage", what="Revenue leakage")
f = ctx.filters
ctx.as_of_caption()

df = queries.leakage(ctx.reader, f)
if df.empty:
    st.info("No leakage recorded in the selected months and clinics.")
    st.stop()
totals = df.groupby("category", as_index=False).agg(events=("events", "sum"), dollars_lost=("dollars_lost", "sum"),
                                                    assumption=("assumption", "first"))
totals = totals.sort_values("dollars_lost", ascending=False)
top = totals.iloc[0]
c1, c2, c3 = st.columns(3)
c1.metric("Revenue lost in range", fmt(totals["dollars_lost"].sum(), "usd"), border=True)
c2.metric("Biggest cause", str(top["category"]), fmt(top["dollars_lost"], "usd"), delta_color="off", border=True)
c3.metric("Events", fmt(totals["events"].sum(), "count"), border=True)

left, right = st.columns(2)
with left:
    ui.chart(charts.leakage_by_category(df), totals, "leakage_by_category", "lk_cat")
with right:
    ui.chart(charts.leakage_trend(df), df, "leakage_by_month", "lk_month")

st.subheader("How each figure is estimated")
ui.table(totals[["category", "dollars_lost", "events", "assumption"]], "leakage_assumptions", "lk_assumptions",
         column_config={"dollars_lost": ui.money("Dollars lost"), "assumption": st.column_config.TextColumn(
             "Assumption", width="large")})
