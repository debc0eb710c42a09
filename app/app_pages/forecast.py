"""Demand forecast (manager, owner): referrals, evaluations and visits per week, actual and forecast with
its interval (the fan), against therapist capacity; and the weeks where demand will outrun the staff."""

import pandas as pd
import streamlit as st

from app.lib import charts, labels, model_cards, ui
from app.lib.formatting import fmt
from app.lib.queries.base import Filters, clinics
from app.lib.queries.forecast import (
    backtest_row,
    coverage_off,
    forecast,
    forecast_series,
    history_weeks,
    losses_to_naive,
    not_assessed,
    on_baseline,
    practice_weeks,
    staffing,
    staffing_by_clinic,
    young_in_practice,
)

ctx = ui.page("forecast")
ui.require_tables(ctx, "ml.demand_forecast", what="Demand forecast")
ui.model_status_notice(ctx)  # models/status.json unreadable: say so, no traceback
if skipped := model_cards.not_enough_data(ctx.settings, "demand_forecast"):  # say why instead of empty charts
    st.info(skipped)
    st.stop()

series_options = forecast_series(ctx.reader, ctx.filters)
if not series_options:  # say which clinics and why: too young for even the flat baseline
    st.info(not_assessed(history_weeks(ctx.reader, ctx.filters)) or "No forecast for your clinics yet.")
    st.stop()
clinic_names = clinics(ctx.reader).set_index("clinic_id")["clinic_name"].to_dict()
c1, c2 = st.columns(2)
series = c1.selectbox(
    "Clinic",
    series_options,
    format_func=lambda s: "Whole practice" if s == "ALL" else clinic_names.get(s, s),
    key="fc_series",
)
metric = (
    c2.segmented_control(
        "Measure",
        ["visits", "evals", "referrals"],
        default="visits",
        key="fc_metric",
        format_func=lambda m: labels.label("forecast_metric", m),
    )
    or "visits"
)
fc = forecast(ctx.reader, series, metric)
capacity = None
if metric == "visits" and ctx.reader.has("ml.staffing_gap"):
    scope_filters = ctx.filters if series == "ALL" else Filters(ctx.filters.start, ctx.filters.end, (series,))
    capacity = staffing(ctx.reader, scope_filters)
label = labels.label("forecast_metric", metric)
future = fc[fc["actual"].isna() & fc["yhat"].notna()]
m1, m2, m3 = st.columns(3)
m1.metric(f"{label} forecast, next 4 weeks", fmt(future["yhat"].head(4).sum(), "count"), border=True)
low, high = fmt(future["yhat_lower"].head(4).sum(), "count"), fmt(future["yhat_upper"].head(4).sum(), "count")
m2.metric("Range (80% interval)", f"{low}–{high}", border=True)
if capacity is not None and not capacity.empty:
    short = capacity[(capacity["gap_visits"] > 0)]
    m3.metric(
        "Weeks short of capacity",
        fmt(len(short), "count"),
        border=True,
        help="Weeks where forecast visits exceed what the therapists on staff can see.",
    )
if closed := model_cards.closed_forecast(ctx.settings, series, metric, label):
    st.info(closed)
young_note = (  # a clinic opened lately: the practice history was fitted mostly without it / too young for the model
    young_in_practice(history_weeks(ctx.reader, ctx.filters, metric), practice_weeks(ctx.reader, metric))
    if series == "ALL"
    else on_baseline(history_weeks(ctx.reader, Filters(ctx.filters.start, ctx.filters.end, (series,)), metric))
)
if young_note:
    st.info(young_note)
ui.chart(charts.forecast_fan(fc, label, capacity), fc, f"forecast_{series}_{metric}", "fc_fan")

staffing_skipped = model_cards.not_enough_data(ctx.settings, "staffing_gap")
if ctx.reader.has("ml.staffing_gap") and staffing_skipped:
    st.subheader("Staffing gap")
    st.info(staffing_skipped)
elif ctx.reader.has("ml.staffing_gap"):
    st.subheader("Staffing gap")
    # the verdict covers the clinics with a visit forecast only: name the young ones and those left out
    assessed = history_weeks(ctx.reader, ctx.filters, "visits")
    if left_out := not_assessed(assessed):
        st.warning(left_out)
    if (young := on_baseline(assessed)) and young != young_note:  # not twice for the clinic on screen
        st.info(young)
    left, right = st.columns(2)
    gap = staffing(ctx.reader, ctx.filters)
    with left:
        ui.chart(charts.staffing_gap(gap), gap, "staffing_gap", "fc_gap")
    with right:
        short = staffing_by_clinic(ctx.reader, ctx.filters)
        st.markdown("**Clinic-weeks short of capacity**")
        ui.table(
            short,
            "staffing_gap_by_clinic",
            "fc_short",
            empty_message="No clinic assessed is short of capacity."
            if (assessed["method"] == "none").any()
            else "No clinic is short of capacity.",
            pinned=["clinic_id"],
            column_config={
                "clinic_id": "Clinic",
                "week_start": st.column_config.DateColumn("Week of", format="MMM D, YYYY"),
                "forecast_visits": st.column_config.NumberColumn("Forecast visits", format="%.0f"),
                "capacity_visits": st.column_config.NumberColumn("Capacity", format="%.0f"),
                "gap_visits": st.column_config.NumberColumn("Gap", format="%.0f"),
            },
        )

st.subheader("How far to trust it")
scope = ctx.user.scope.clinics  # a scoped manager sees their clinics' backtest rows, never the practice's
backtest = model_cards.scoped_backtest(model_cards.demand_backtest(ctx.settings), scope, series)
if backtest is None:
    st.caption("The backtest appears after the first training (`ptpulse train` or `ptpulse refresh`).")
elif model_cards.is_unreadable(backtest):  # a damaged file: say so, no traceback and no empty tiles
    st.warning(model_cards.forecast_verdict(backtest)[1])
else:
    kind, sentence = model_cards.forecast_verdict(backtest)
    (st.success if kind == "ok" else st.warning)(sentence)
    if scope is None or backtest.get("relative_mase") is not None:  # a clinic not backtested: the verdict says so
        b1, b2, b3, b4 = st.columns(4)
        b1.metric(
            "Relative error (MASE vs baseline)",
            fmt(backtest.get("relative_mase"), "ratio"),
            border=True,
            help="Forecast MASE / seasonal-naive MASE over a rolling-origin backtest; below 1 beats the baseline.",
        )
        b2.metric(
            "80% range coverage",
            fmt(backtest.get("coverage_80"), "pct"),
            border=True,
            help="Share of actual weeks inside the forecast's 80% range; 75–85% is honest.",
        )
        b3.metric("sMAPE", f"{backtest['smape']:.1f}%" if backtest.get("smape") is not None else "–", border=True)
        b4.metric(
            "Backtest cutoffs",
            fmt(len(backtest.get("cutoffs") or []), "count"),
            border=True,
            help=f"{backtest.get('horizon_weeks', 12)}-week horizon from each cutoff; "
            f"baseline: {backtest.get('baseline', '')}",
        )

    # --- per metric and per series beside the pooled figure (ml/train_score.py per_series_metric) ---
    def _name(s: str) -> str:
        return "whole practice" if s == "ALL" else clinic_names.get(s, s)

    shown = backtest_row(backtest, series, metric)
    if shown is None:
        st.caption(
            f"{_name(series).capitalize()} {label.lower()} was not backtested on its own (the whole practice and "
            "the busiest clinics are); the figures above are for the whole practice."
            if scope is None
            else f"{_name(series).capitalize()} {label.lower()} was not backtested on its own."
        )
    elif shown.get("loses_to_naive"):
        st.warning(
            f"For {_name(series)} {label.lower()} this forecast lost to 'same week last year' on past weeks "
            f"(relative error {fmt(shown['relative_mase'], 'ratio')}): plan this one with last year's week."
        )
    else:
        st.caption(
            f"{_name(series).capitalize()} {label.lower()} on past weeks: relative error "
            f"{fmt(shown['relative_mase'], 'ratio')} (below 1 beats 'same week last year'), "
            f"{fmt(shown['coverage_80'], 'pct')} of actual weeks inside the 80% range."
        )
    if coverage_off(shown):
        st.caption(
            f"That range held {fmt(shown['coverage_80'], 'pct')} of actual weeks, outside the honest 75–85%: "
            + ("it is wider than it needs to be." if shown["coverage_80"] > 0.85 else "expect more weeks outside it.")
        )
    losses = losses_to_naive(backtest)
    if losses:
        lead = (
            "The pooled figure beats the baseline, but these lose to it"
            if backtest.get("pooled_hides_loss")
            else "These lose to the baseline"
        )
        st.warning(
            f"{lead} (relative error above 1): "
            + "; ".join(f"{_name(h['series'])} {h['metric']} {fmt(h['relative_mase'], 'ratio')}" for h in losses)
            + ". Plan those with the baseline (same week last year) instead."
        )
    if backtest.get("breakdown"):
        with st.expander("Backtest per metric and series"):
            ui.table(
                pd.DataFrame(backtest["breakdown"]),
                "demand_backtest_breakdown",
                "fc_breakdown",
                column_config={
                    "series": st.column_config.TextColumn("Series"),
                    "metric": st.column_config.TextColumn("Metric"),
                    "relative_mase": st.column_config.NumberColumn("Relative MASE", format="%.3f"),
                    "coverage_80": ui.pct("80% coverage"),
                    "loses_to_naive": st.column_config.CheckboxColumn("Loses to baseline"),
                },
            )
