"""Revenue leakage (owner): where money is lost, by cause and month, as a low-high range whose assumptions
are written next to it and can be adjusted (app/lib/leakage.py)."""

import streamlit as st

from app.lib import charts, leakage, model_cards, ui
from app.lib.formatting import fmt
from app.lib.queries.leakage import revenue_leakage

ctx = ui.page("leakage")
ui.require_tables(ctx, "marts.revenue_leakage", what="Revenue leakage")
f = ctx.filters

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
    pinned=["label"],
    column_config={
        "label": st.column_config.TextColumn("Cause"),
        "low_usd": ui.money("Low estimate"),
        "high_usd": ui.money("High estimate"),
        "events": st.column_config.NumberColumn("Events", format="%d"),
        "assumption": st.column_config.TextColumn("What is at stake", width="large"),
        "why": st.column_config.TextColumn("Why the range", width="large"),
    },
)

# --- Denial risk before submission (ml/denial.py): a separate block, owned with the denial model ----------
if ctx.reader.has("ml.denial_scores"):
    from app.lib.queries.leakage import denial_risk_by_reason

    st.subheader("Claims at risk of denial: fix before the payer decides")
    risk = denial_risk_by_reason(ctx.reader, f)
    ui.model_status_notice(ctx)  # models/status.json unreadable: say so, no traceback
    if skipped := model_cards.not_enough_data(ctx.settings, "denial"):  # model skipped for want of data: why
        st.info(skipped)
    elif risk.empty:
        st.info("No open claims scored for the selected clinics.")
    else:
        st.caption(
            "Open claims (not yet decided by the payer) scored by the denial model: dollars at risk = chance of "
            "denial × billed. Grouped by the first fixable reason; each claim with a fix and 25% risk or more is "
            "a task in the work queue (Denial risk: fix the claim)."
        )
        d1, d2 = st.columns(2)
        d1.metric("Dollars at risk", fmt(risk["dollars_at_risk"].sum(), "usd"), border=True)
        d2.metric("Open claims scored", fmt(risk["claims"].sum(), "count"), border=True)
        ui.table(
            risk[["reason", "claims", "billed_usd", "dollars_at_risk", "mean_probability", "example_reason"]],
            "denial_risk_by_reason",
            "lk_denial_risk",
            pinned=["reason"],
            column_config={
                "reason": st.column_config.TextColumn("Reason to fix first"),
                "claims": st.column_config.NumberColumn("Claims", format="%d"),
                "billed_usd": ui.money("Billed"),
                "dollars_at_risk": ui.money("Dollars at risk"),
                "mean_probability": ui.pct("Mean chance of denial"),
                "example_reason": st.column_config.TextColumn("Example", width="large"),
            },
        )
