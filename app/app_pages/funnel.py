"""Funnel: from referral received to discharge. How many reach each stage, where and why they drop out,
how long each step takes, broken down by clinic, source or payer; and the referrals behind any number
(names only for roles allowed to see identities)."""

import streamlit as st

from app.lib import charts, labels, ui
from app.lib.formatting import fmt
from app.lib.queries.funnel import (
    FUNNEL_BREAKDOWNS,
    STAGE_LABELS,
    STAGES,
    funnel_drilldown,
    funnel_exits,
    funnel_stages,
    funnel_summary,
    stage_durations,
)

ctx = ui.page("funnel")
ui.require_tables(ctx, "marts.referral_funnel", what="The Funnel")
f = ctx.filters

s = funnel_summary(ctx.reader, f).iloc[0]
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Referrals received", fmt(s["referrals"], "count"), border=True)
open_share = (s["open_referrals"] / s["referrals"]) if s["referrals"] else 0.0
maturing = open_share > 1 - s["maturity_bar"]
c2.metric(
    "Converted (finalized eval)" + (" (maturing)" if maturing else ""),
    fmt(s["conversion_webpt"], "pct"),
    border=True,
    help="WebPT definition: referrals with a finalized initial evaluation / referrals received.",
)
c3.metric(
    "First visit within 7 days",
    fmt(s["conversion_7day"], "pct"),
    border=True,
    help="Net Health definition: first visit no later than 7 days after the referral arrived.",
)
c4.metric(
    "Time to first contact",
    fmt(s["hours_to_first_contact"], "hours"),
    border=True,
    help="Mean hours from referral to first outreach, over referrals contacted (as on the Overview). "
    f"Median: {fmt(s['median_hours_to_contact'], 'hours')}. Healthy: minutes to hours.",
)
c5.metric(
    "Time to first visit",
    fmt(s["business_days_to_first_visit"], "days"),
    border=True,
    help="Mean business days from referral to initial evaluation, over referrals evaluated (as on the "
    f"Overview). Median: {fmt(s['median_business_days_to_eval'], 'days')}. Healthy: 3–4 business days.",
)

if maturing:
    st.caption(
        f":gray[◌ Still maturing: {s['open_referrals']:,.0f} of {s['referrals']:,.0f} referrals received in "
        "this range are still open (neither evaluated nor exited), so conversion will rise as they resolve. "
        "Compare with a period whose referrals have all had an outcome.]"
    )

# the label-table domain of each breakdown's codes (clinics are shown by their id)
GROUP_DOMAIN = {
    "Source type": "source_type",
    "Channel": "channel",
    "Payer class": "payer_class",
    "Intake kind": "intake_kind",
}
breakdown = st.segmented_control(
    "Break down by", ["No breakdown", *FUNNEL_BREAKDOWNS], default="No breakdown", key="fn_breakdown"
)
group = None if breakdown in (None, "No breakdown") else breakdown


def group_label(code: str) -> str:
    return labels.label(GROUP_DOMAIN[group], code) if group in GROUP_DOMAIN and code != "(unknown)" else code


stages = funnel_stages(ctx.reader, f, group)
shown_stages = (
    stages.assign(grp=labels.relabel(stages["grp"], GROUP_DOMAIN[group])) if group in GROUP_DOMAIN else stages
)
ui.chart(charts.funnel(shown_stages), shown_stages, "funnel_stages", "fn_stages")

left, right = st.columns(2)
with left:
    exits = labels.relabel_frame(
        funnel_exits(ctx.reader, f), {"exit_stage": "exit_stage", "exit_reason": "exit_reason"}
    )
    ui.chart(charts.exits(exits), exits, "funnel_exits", "fn_exits")
with right:
    durations = stage_durations(ctx.reader, f)
    ui.chart(charts.durations(durations), durations, "funnel_stage_durations", "fn_durations")

st.subheader("Referrals behind a number")
d1, d2 = st.columns(2)
stage = d1.selectbox("Reached stage", STAGES, format_func=STAGE_LABELS.get, key="fn_drill_stage")
group_value = None
if group:
    groups = sorted(stages["grp"].unique().tolist())
    group_value = d2.selectbox(group, groups, key="fn_drill_group", format_func=group_label)
drill = funnel_drilldown(ctx.reader, f, stage, group, group_value)
if not ctx.user.scope.phi:
    st.caption("Patients are shown by pseudonymous key: your role sees de-identified data only.")
st.caption(f"Latest {len(drill):,} referrals (up to 500) that reached **{STAGE_LABELS[stage]}**.")
ui.table(
    labels.relabel_frame(
        drill,
        {
            "source_type": "source_type",
            "channel": "channel",
            "payer_class": "payer_class",
            "current_stage": ("funnel_stage", "exit_stage"),
            "exit_stage": "exit_stage",
            "exit_reason": "exit_reason",
            "next_step_owner": "next_step_owner",
        },
        missing=None,  # no exit / no next step: the table's dash
    ),
    f"funnel_{stage}_referrals",
    "fn_drill",
    pinned=["referral_id"],
    column_config={
        "referral_id": "Referral",
        "received_at": st.column_config.DatetimeColumn("Received", format="MMM D, YYYY HH:mm"),
        "clinic_id": "Clinic",
        "patient_name": "Patient",
        "phone": "Phone",
        "patient_key": "Patient key",
        "source_type": "Source type",
        "channel": "Channel",
        "payer_class": "Payer class",
        "current_stage": "Where it is now",
        "exit_stage": "Left at",
        "exit_reason": "Why it left",
        "hours_to_contact": st.column_config.NumberColumn("Hours to contact", format="%.1f"),
        "business_days_to_eval": st.column_config.NumberColumn("Business days to evaluation", format="%.1f"),
        "next_step_owner": "Next step by",
    },
)
