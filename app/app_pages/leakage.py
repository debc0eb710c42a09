"""Revenue leakage (owner): where money is lost, by cause and month, as a low-high range whose assumptions
are written next to it and can be adjusted (app/lib/leakage.py)."""

import streamlit as st

from app.lib import charts, leakage, ui
from app.lib.formatting import fmt
from app.lib.queries.leakage import revenue_leakage

ctx = ui.page("leakage")
ui.require_tables(ctx, "marts.revenue_leakage", what="Revenue leakage")
f = ctx.filters
ctx.as_of_caption()

raw = revenue_leakage(ctx.reader, f)
if raw.empty:
    st.info("No leakage recorded in the selected months and clinics.")
    st.stop()

with st.expander("Assumptions: how much of what was at stake was really lost (adjust)"):
    st.caption(
        "Each cause puts dollars at stake (units × what a unit is worth). Not all of it was lost, so each "
        "figure is a range between two shares you can change. Denials are actual write-offs."
    )
    chosen: dict[str, tuple[float, float]] = {}
    for category in sorted(raw["category"].unique(), key=leakage.label):
        a = leakage.ASSUMPTIONS.get(category)
        if a is None or not a.adjustable:
            continue
        lo, hi = st.slider(
            a.label,
            0,
            100,
            (round(a.low * 100), round(a.high * 100)),
            step=5,
            format="%d%%",
            key=f"lk_share_{category}",
            help=a.why,
        )
        chosen[category] = (lo / 100, hi / 100)

df = leakage.with_range(raw, chosen).assign(label=lambda d: d["category"].map(leakage.label))
totals = leakage.by_category(df)
top = totals.iloc[0]
c1, c2, c3 = st.columns(3)
c1.metric(
    "Revenue lost in range",
    f"{fmt(totals['low_usd'].sum(), 'usd')} – {fmt(totals['high_usd'].sum(), 'usd')}",
    border=True,
    help="Low and high estimates under the assumptions above.",
)
c2.metric("Biggest cause", str(top["label"]), f"up to {fmt(top['high_usd'], 'usd')}", delta_color="off", border=True)
c3.metric("Events", fmt(totals["events"].sum(), "count"), border=True)

left, right = st.columns(2)
with left:
    ui.chart(charts.leakage_by_category(totals), totals, "leakage_by_category", "lk_cat")
with right:
    ui.chart(charts.leakage_trend(df), df, "leakage_by_month", "lk_month")

st.subheader("How each figure is estimated")
ui.table(
    totals[["label", "low_usd", "high_usd", "events", "assumption", "why"]],
    "leakage_assumptions",
    "lk_assumptions",
    column_config={
        "label": st.column_config.TextColumn("Cause"),
        "low_usd": ui.money("Low estimate"),
        "high_usd": ui.money("High estimate"),
        "events": st.column_config.NumberColumn("Events", format="%d"),
        "assumption": st.column_config.TextColumn("What is at stake", width="large"),
        "why": st.column_config.TextColumn("Why the range", width="large"),
    },
)
