"""Referral sources (marketing, owner): the referring-physician scorecard, sources whose volume is falling,
and where each source's referrals end up. De-identified, except the referrer report's patient list (PHI roles only).
Everything on the page covers the clinics in view: a clinic-scoped user never sees another clinic's referrals."""

from datetime import datetime

import streamlit as st

from app.lib import charts, labels, send_ui, ui
from app.lib.formatting import fmt
from app.lib.queries.outreach import practice_label
from app.lib.queries.referral_sources import (
    open_referrals_by_source_type,
    source_outcomes,
    source_scorecard,
    source_types,
)

ctx = ui.page("referral_sources")
ui.require_tables(ctx, "marts.referral_source_performance", "marts.referral_funnel", what="Referral sources")

types = source_types(ctx.reader, ctx.filters)
default = types.index("physician") if "physician" in types else 0
source_type = st.selectbox(
    "Source type",
    ["(all)", *types],
    index=default + 1 if types else 0,
    key="rs_type",
    format_func=lambda t: "All source types" if t == "(all)" else labels.label("source_type", t),
)
card = source_scorecard(ctx.reader, None if source_type == "(all)" else source_type, ctx.filters)
fading = card[card["is_fading"].fillna(False).astype(bool)]

c1, c2, c3, c4 = st.columns(4)
c1.metric("Sources", fmt(len(card), "count"), border=True)
c2.metric(
    "Referrals, last 90 days",
    fmt(card["referrals_last_90d"].sum(), "count"),
    fmt(card["referrals_last_90d"].sum() - card["referrals_prior_90d"].sum(), "count") if len(card) else None,
    border=True,
    help="Change against the 90 days before.",
)
c3.metric(
    "Fading sources",
    fmt(len(fading), "count"),
    border=True,
    help="Sources whose referrals fell sharply in the last 90 days: call them.",
)
c4.metric("Net revenue from these sources", fmt(card["net_revenue_usd"].sum(), "usd"), border=True)
in_view = ctx.reader.scope.effective_clinics(ctx.filters.clinics)
st.caption(
    f"Scorecard covers all history of {'every clinic' if in_view is None else practice_label(ctx.reader, ctx.filters)}"
    " (the date range applies to the chart of where referrals end up, below)."
)
still_open = open_referrals_by_source_type(ctx.reader, None if source_type == "(all)" else source_type, ctx.filters)
if still_open["open"]:
    st.caption(
        f":gray[◌ {still_open['open']:,.0f} of {still_open['referrals']:,.0f} of these referrals are still open "
        "(neither evaluated nor exited): a source's conversion and plan completion still count them as not "
        "converted, so sources with many recent referrals read low until those resolve.]"
    )

st.subheader("Scorecard")
ui.table(
    card.assign(source_type=labels.relabel(card["source_type"], "source_type")),
    f"referral_scorecard_{source_type}",
    "rs_card",
    pinned=["source_name"],
    column_config={
        "source_type": "Source type",
        "source_id": "Source ID",
        "specialty": "Specialty",
        "referrals": st.column_config.NumberColumn("Referrals", format="%d"),
        "last_referral_date": st.column_config.DateColumn("Last referral", format="MMM D, YYYY"),
        "referrals_last_90d": st.column_config.NumberColumn("Last 90 days", format="%d"),
        "referrals_prior_90d": st.column_config.NumberColumn("90 days before", format="%d"),
        "source_name": "Source",
        "evaluated": "Evaluated",
        "conversion_rate": st.column_config.NumberColumn(
            "Conversion", format="percent", help="Referrals with a signed initial evaluation / referrals received."
        ),
        "poc_completion_rate": ui.pct("Plan completed"),
        "net_revenue_usd": ui.money("Net revenue"),
        "trend_pct": ui.pct("Trend (90 d)"),
        "median_business_days_to_eval": st.column_config.NumberColumn("Median days to eval", format="%.1f"),
        "visits_per_episode": st.column_config.NumberColumn("Visits / episode", format="%.1f"),
        "is_fading": st.column_config.CheckboxColumn("Fading"),
    },
)

left, right = st.columns(2)
with left:
    ui.chart(charts.trend_bars(fading.head(15)), fading, "fading_sources", "rs_fading")
with right:
    ui.chart(charts.source_scatter(card), card, "source_volume_conversion", "rs_scatter")

st.subheader("Where referrals end up")
by = st.radio(
    "Group sources by",
    ["source_type", "channel"],
    horizontal=True,
    key="rs_by",
    format_func={"source_type": "Source type", "channel": "Channel"}.get,
)
flows = source_outcomes(ctx.reader, ctx.filters, by)
ui.chart(charts.sankey(flows), flows, f"referral_outcomes_by_{by}", "rs_sankey")

# Referrer report (outbound, app/lib/send_ui.py): one physician's month as a PDF, downloaded or emailed.
st.subheader("Referrer report")
send_ui.referrer_panel(ctx, (ctx.as_of or datetime.now()).date())
