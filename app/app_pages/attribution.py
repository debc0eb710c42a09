"""Attribution & ROI (marketing, owner): what each channel adds (the marketing-mix model's incremental effect
beside path credit, and which to use for budget decisions), what each channel returns under each attribution
model (first, last, linear, time-decay, position-based; Markov and Shapley when the ML step has run), spend
against attributed revenue, ROI and cost per new patient by month, and how many touches a decision takes.

Clinics: spend, path credit (heuristic models), ROI, cost per new patient and the paths to a decision cover the
months and clinics in view. The marketing-mix model and Markov/Shapley exist for the whole practice only: a user
limited to some clinics is told so instead of seeing them; an owner who picks a clinic sees them marked
practice-wide."""

import streamlit as st

from app.lib import charts, labels, model_cards, ui
from app.lib.formatting import fmt, unreported_text
from app.lib.queries.attribution import (
    HEURISTIC_MODELS,
    MODEL_LABELS,
    attribution_by_channel,
    attribution_monthly,
    available_models,
    budget_guidance,
    incrementality,
    marketing_new_patients,
    marketing_totals,
    path_lengths,
    practice_wide_allowed,
    top_paths,
)
from app.lib.queries.outreach import practice_label

ctx = ui.page("attribution")
ui.require_tables(ctx, "marts.attribution_roi", "marts.attribution_paths", what="Attribution & ROI")
ui.model_status_notice(ctx)  # models/status.json unreadable: say so, no traceback
f = ctx.filters
in_view = ctx.reader.scope.effective_clinics(f.clinics)
whole = practice_wide_allowed(ctx.reader)  # False: limited to some clinics, no practice-wide figure
where = "all clinics" if in_view is None else f"{practice_label(ctx.reader, f)} only"
st.caption(
    f"Months {f.start:%b %Y} – {f.end:%b %Y}, {where}. A conversion is an evaluated referral; its value is the net "
    "revenue actually collected for the episode."
)
PRACTICE_ONLY = (
    "{what} is worked out for the whole practice only (it has no per-clinic figure), so it is not shown to an "
    "account limited to some clinics."
)
practice_wide_note = "" if in_view is None else " Practice-wide: the clinic filter does not apply to it."

with st.expander("How to read this page", icon=":material/help:"):
    st.markdown(
        "- **Path credit, not effect.** Each model splits the credit for a new patient across the touches on "
        "their path (first touch, last touch, evenly, more to recent touches...). It says which channels were "
        "*on the path*, not how many patients a channel *brought in* that would not have come anyway. The "
        "**incremental effect** (marketing-mix model, first chart) measures that from how new patients move with "
        "each channel's spend and leads across clinics and months; a pause test in one area confirms it.\n"
        "- **Fractional patients.** Because credit is split, a channel can be credited with 0.5 or 110.8 new "
        "patients: half of one patient's credit, or credit summed over many shared paths. The totals add up to "
        "the real number of patients.\n"
        "- **Models disagree on purpose.** A channel that looks strong under every model is a safe bet; one that "
        "only looks strong under first touch mostly starts journeys others finish.\n"
        "- **Recent months are still maturing.** Referrals from the last weeks are still turning into "
        "evaluations and revenue, so their ROI reads low until they do (shaded on the monthly chart)."
    )

st.subheader("What each channel adds")
inc = incrementality(ctx.reader) if whole else None
if inc is None:
    st.info(PRACTICE_ONLY.format(what="The marketing-mix model (what each channel adds)"))
elif inc.empty:
    skipped = model_cards.not_enough_data(ctx.settings, "channel_incrementality")
    st.caption(skipped or "The marketing-mix model appears here once the ML step has scored a build.")
else:
    guide = budget_guidance(inc)
    st.markdown(guide["text"])
    path_model = inc["path_model"].iloc[0]
    shown_inc = inc.assign(channel=labels.relabel(inc["channel"], "channel"))
    ui.chart(
        charts.incrementality_vs_credit(shown_inc, MODEL_LABELS.get(path_model, str(path_model))),
        shown_inc,
        "incrementality_vs_credit",
        "at_incr",
    )
    named = dict(zip(inc["channel"], shown_inc["channel"], strict=True))
    if guide["negative"]:
        st.warning(
            f"{', '.join(named[c] for c in guide['negative'])}: fewer new patients with more of it (the whole "
            "interval is below zero). Its path credit is not a return: cut or test before spending more."
        )
    if guide["uncertain"]:
        st.caption(
            f"Not yet distinguishable from zero: {', '.join(named[c] for c in guide['uncertain'])} (the interval "
            "crosses zero); move budget there only with a test."
        )
    st.caption(
        "Incremental effect = new patients scheduled that would not have been had the channel been off, over "
        "every complete month, as a share of the net total; the bar's line is its 90% interval. Paid channels are "
        "measured through their spend (carry-over and saturation fitted per channel), unpaid ones (word of "
        "mouth, organic web) through their lead volume." + practice_wide_note
    )

st.subheader("Path credit by model")
models = available_models(ctx.reader)
if not whole:
    st.caption(PRACTICE_ONLY.format(what="Markov and Shapley credit"))
elif not ctx.reader.has("ml.attribution_credit"):
    st.caption("Markov and Shapley appear here once the ML step has scored a build.")
elif skipped := model_cards.not_enough_data(ctx.settings, "attribution"):  # data-driven models skipped: why
    st.info(f"Markov and Shapley: {skipped[0].lower()}{skipped[1:]}")
else:
    st.caption(
        "Markov and Shapley estimate each channel's share from every path in the warehouse; "
        "their shares are applied to this period's conversions and revenue"
        + ("" if in_view is None else " in the clinics selected")
        + " so all models compare alike."
    )
chosen = st.multiselect(
    "Models to compare", models, default=models, format_func=lambda m: MODEL_LABELS.get(m, m), key="at_models"
)
by_channel = attribution_by_channel(ctx.reader, f)
shown = by_channel.assign(channel=labels.relabel(by_channel["channel"], "channel"))
compare = shown[shown["model"].isin(chosen)]
ui.chart(charts.attribution_compare(compare, dict(MODEL_LABELS)), compare, "attribution_by_model", "at_compare")

model = st.selectbox(
    "Model for the detail below",
    models,
    format_func=lambda m: MODEL_LABELS.get(m, m),
    index=models.index("position") if "position" in models else 0,
    key="at_model",
)
detail = shown[shown["model"] == model]
paid = marketing_totals(by_channel, model)
newp = marketing_new_patients(ctx.reader, f)
c1, c2, c3, c4 = st.columns(4)
no_spend = newp["spend_usd"] is None  # no spend reported for any month in range: unknown, not $0
c1.metric(
    "Marketing spend",
    fmt(None if no_spend else paid["spend_usd"], "usd"),
    border=True,
    help="No marketing spend was loaded for these months (Upload data: marketing_spend)." if no_spend else None,
)
c2.metric(
    "Revenue credited to marketing",
    fmt(paid["attributed_revenue_usd"], "usd"),
    border=True,
    help="Net revenue this model credits to the channels you pay for (not physician referrals or direct access).",
)
c3.metric(
    "Marketing ROI",
    fmt(paid["roi"], "pct"),
    border=True,
    help="(revenue credited to paid channels − spend) / spend. With the linear model this is the Overview's "
    "'Attributed marketing ROI'.",
)
c4.metric(
    "Cost per new patient",
    fmt(newp["cost_per_new_patient"], "usd"),
    border=True,
    help="Spend / marketing-sourced referrals evaluated in these months and clinics (as on the Overview; a patient "
    "counts once, whatever the model). A month with no spend reported yet is left out, its new patients too. "
    "Benchmarks: ≈$274 organic, ≈$445 paid.",
)
left_out = unreported_text(newp["unreported_months"], "cost_per_new_patient")
if left_out:  # as under the Overview's tile: the months the figure leaves out
    c4.caption(f":gray[{left_out}]")
st.caption(
    "Attribution splits a patient's credit across the touches on their path, so a channel's "
    "'new patients' below can be fractional (0.5 = half of one patient's credit; see *How to read this page*)."
)

left, right = st.columns(2)
with left:
    ui.chart(
        charts.spend_vs_revenue(detail, MODEL_LABELS.get(model, model)), detail, f"spend_vs_revenue_{model}", "at_spend"
    )
with right:
    no_spend = ~(detail["spend_usd"].fillna(0) > 0)
    roi_table = detail.assign(
        roi=detail["roi"].map(lambda v: fmt(v, "pct")).mask(no_spend, "no spend recorded"),
        cost_per_new_patient=detail["cost_per_new_patient"]
        .map(lambda v: fmt(v, "usd"))
        .mask(no_spend, "no spend recorded"),
    )
    ui.table(
        roi_table[
            ["channel", "spend_usd", "attributed_conversions", "attributed_revenue_usd", "roi", "cost_per_new_patient"]
        ],
        f"roi_by_channel_{model}",
        "at_roi",
        pinned=["channel"],
        column_config={
            "channel": "Channel",
            "spend_usd": ui.money("Spend"),
            "attributed_revenue_usd": ui.money("Attributed revenue"),
            "attributed_conversions": st.column_config.NumberColumn("New patients (credited)", format="%.1f"),
            "roi": st.column_config.TextColumn("ROI"),
            "cost_per_new_patient": st.column_config.TextColumn("Cost per credited new patient"),
        },
    )

if model in HEURISTIC_MODELS:
    monthly = attribution_monthly(ctx.reader, f, model)
    monthly = monthly.assign(channel=labels.relabel(monthly["channel"], "channel"))
    metric = st.radio(
        "Monthly measure",
        ["roi", "cost_per_new_patient", "attributed_revenue_usd"],
        horizontal=True,
        format_func={
            "roi": "ROI",
            "cost_per_new_patient": "Cost per credited new patient",
            "attributed_revenue_usd": "Attributed revenue",
        }.get,
        key="at_metric",
    )
    unit = {"roi": "pct", "cost_per_new_patient": "usd", "attributed_revenue_usd": "usd"}[metric]
    label = {
        "roi": "ROI",
        "cost_per_new_patient": "Cost per credited new patient",
        "attributed_revenue_usd": "Attributed revenue",
    }[metric]
    ui.chart(charts.monthly_metric(monthly, metric, label, unit), monthly, f"attribution_monthly_{model}", "at_monthly")
    if monthly["is_maturing"].any():
        st.caption(
            ":gray[◌ Shaded months are still maturing: their referrals are still becoming evaluations and "
            "revenue, so ROI and cost per patient will move.]"
        )
else:
    st.caption(
        "Data-driven models are fitted on all history (their shares, applied to this period, are above), "
        "so they have no monthly split."
    )

st.subheader("Paths to a decision")
st.caption(
    f"Referrals decided in {f.start:%b %Y} – {f.end:%b %Y}, {where}: evaluated then (the conversions credited "
    "above), or counted as not converting then (they exited, or stayed open long enough after receipt to count as "
    "lost). Each path is the marketing touches before the referral, then its source."
)
lengths = path_lengths(ctx.reader, f)
if lengths.empty:
    st.caption("No referral was decided in these months and clinics.")
else:
    left, right = st.columns(2)
    with left:
        ui.chart(charts.path_lengths(lengths), lengths, "path_lengths", "at_lengths")
    with right:
        ui.table(
            top_paths(ctx.reader, f),
            "top_paths",
            "at_paths",
            pinned=["path"],
            column_config={
                "path": st.column_config.TextColumn("Path", width="medium"),
                "path_length": st.column_config.NumberColumn("Touches", format="%d", width="small"),
                "conversions": st.column_config.NumberColumn("Converted", format="%d", width="small"),
                "non_conversions": st.column_config.NumberColumn("Did not convert", format="%d", width="small"),
                "revenue_usd": ui.money("Revenue"),
            },
        )
