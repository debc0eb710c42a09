"""Plotly figure builders: pure functions from a DataFrame to a figure, tested without Streamlit.

Conventions: plain-language titles and axis labels, units on the axis (%, $), a healthy band drawn as a
shaded area where the KPI's definition gives one, and an explicit empty figure (with a message) when there is no data.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from app.lib import labels

PALETTE = px.colors.qualitative.Safe
BAND_COLOR = "rgba(46, 160, 67, 0.12)"
MATURING_COLOR = "#b0b0b0"  # periods whose cohort has not had its outcomes yet
_TICK = {"pct": ".0%", "usd": "$,.0f"}


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    """The one layout every chart shares: title top left, legend (no title of its own: the labels say it)
    in a row along the bottom of the figure, where it cannot overlap the title or the plot; plotly grows
    the bottom margin to fit it."""
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left", title_text=""),
        template="plotly_white",
    )
    return fig


def monthly_axis(fig: go.Figure, months: pd.Series) -> go.Figure:
    """A monthly x axis for a monthly measure: one tick per month (every third past a year), never the
    weekly ticks plotly picks for two or three points."""
    n = int(pd.Series(months).nunique())
    fig.update_xaxes(title="", dtick="M1" if n <= 12 else "M3", tickformat="%b %Y", ticklabelmode="instant")
    return fig


def shade_maturing(fig: go.Figure, months: pd.Series, maturing: pd.Series) -> go.Figure:
    """Grey out the months whose outcomes are still coming in (one band over the trailing run of them)."""
    young = pd.to_datetime(pd.Series(months)[pd.Series(maturing).fillna(False).astype(bool).to_numpy()])
    if young.empty:
        return fig
    fig.add_vrect(
        x0=young.min() - pd.Timedelta(days=15),
        x1=young.max() + pd.Timedelta(days=15),
        fillcolor="rgba(150, 150, 150, 0.15)",
        line_width=0,
        annotation_text="still maturing",
        annotation_position="top left",
    )
    return fig


def empty(title: str, message: str = "No data for the selected filters.") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=220)


def _band(fig: go.Figure, low: Any, high: Any, horizontal: bool = True) -> None:
    if _missing(low) and _missing(high):
        return
    lo = 0 if _missing(low) else float(low)
    hi = float(high) if not _missing(high) else None
    if hi is None:
        (fig.add_hline if horizontal else fig.add_vline)(
            lo, line_dash="dot", line_color="green", annotation_text="healthy from here"
        )
        return
    (fig.add_hrect if horizontal else fig.add_vrect)(
        lo, hi, fillcolor=BAND_COLOR, line_width=0, annotation_text="healthy band", annotation_position="top left"
    )


def kpi_trend(
    df: pd.DataFrame, label: str, unit: str | None, low: Any = None, high: Any = None, target: Any = None
) -> go.Figure:
    """Monthly KPI line with its healthy band, the owner's target (dashed) and young months greyed."""
    title = f"{label} by month"
    if df.empty or df["value"].isna().all():
        return empty(title)
    maturing = df["is_maturing"].astype(bool) if "is_maturing" in df else pd.Series(False, index=df.index)
    fig = go.Figure()
    fig.add_scatter(
        x=df["month"],
        y=df["value"].where(~maturing),
        mode="lines+markers",
        name=label,
        line=dict(color=PALETTE[0]),
        showlegend=bool(maturing.any()),
    )
    if maturing.any():
        # the last mature point joins the grey segment so the line does not break
        grey = maturing | maturing.shift(-1, fill_value=False)
        fig.add_scatter(
            x=df["month"],
            y=df["value"].where(grey),
            mode="lines+markers",
            name="Still maturing",
            line=dict(color=MATURING_COLOR, dash="dot"),
            marker=dict(color=[MATURING_COLOR if m else PALETTE[0] for m in maturing]),
        )
    _band(fig, low, high)
    if not _missing(target):
        fig.add_hline(
            float(target), line_dash="dash", line_color="#444", annotation_text="target", annotation_position="right"
        )
    fig.update_yaxes(title=label, tickformat=_TICK.get(unit or "", None))
    monthly_axis(fig, df["month"])
    return _layout(fig, title)


def clinic_comparison(df: pd.DataFrame, label: str, unit: str | None, low: Any = None, high: Any = None) -> go.Figure:
    title = f"{label} by clinic"
    if df.empty:
        return empty(title)
    fig = px.bar(df, x="value", y="clinic_name", orientation="h", color_discrete_sequence=PALETTE)
    _band(fig, low, high, horizontal=False)
    fig.update_xaxes(title=label, tickformat=_TICK.get(unit or "", None))
    fig.update_yaxes(title="", autorange="reversed")
    return _layout(fig, title, height=max(260, 28 * len(df) + 80))


def funnel(df: pd.DataFrame) -> go.Figure:
    """Referrals reaching each stage; one funnel per group (side by side as % of received when grouped)."""
    title = "Referrals reaching each stage"
    if df.empty or df["reached"].sum() == 0:
        return empty(title)
    groups = df["grp"].unique().tolist()
    if len(groups) == 1:
        fig = go.Figure(
            go.Funnel(
                y=df["stage_label"], x=df["reached"], textinfo="value+percent initial", marker=dict(color=PALETTE[0])
            )
        )
        return _layout(fig, title, height=400)
    received = df[df["stage"] == "received"].set_index("grp")["reached"]
    plot = df.assign(share=df["reached"] / df["grp"].map(received).where(lambda s: s > 0))
    fig = px.line(
        plot,
        x="stage_label",
        y="share",
        color="grp",
        markers=True,
        color_discrete_sequence=PALETTE,
        hover_data={"reached": True},
    )
    fig.update_yaxes(title="Share of received referrals", tickformat=".0%")
    fig.update_xaxes(title="")
    return _layout(fig, title + " (share of received)", height=400)


def exits(df: pd.DataFrame) -> go.Figure:
    title = "Where referrals drop out, and why"
    if df.empty:
        return empty(title, "No exits in the selected range.")
    fig = px.bar(
        df, x="referrals", y="exit_stage", color="exit_reason", orientation="h", color_discrete_sequence=PALETTE
    )
    fig.update_yaxes(title="")
    fig.update_xaxes(title="Referrals")
    return _layout(fig, title)


def durations(df: pd.DataFrame) -> go.Figure:
    title = "Time in each stage (median days, whisker to 90th percentile)"
    if df.empty or df["median_days"].isna().all():
        return empty(title)
    err = (df["p90_days"] - df["median_days"]).clip(lower=0)
    fig = go.Figure(
        go.Bar(
            x=df["median_days"],
            y=df["step"],
            orientation="h",
            marker_color=PALETTE[1],
            error_x=dict(type="data", array=err, symmetric=False, arrayminus=[0] * len(df)),
        )
    )
    fig.update_yaxes(autorange="reversed", title="")
    fig.update_xaxes(title="Days")
    return _layout(fig, title)


def sankey(df: pd.DataFrame, title: str = "Where referrals from each source end up") -> go.Figure:
    if df.empty:
        return empty(title)
    sources = df["source"].unique().tolist()
    outcomes = df["outcome"].unique().tolist()
    labels = sources + outcomes
    idx = {("s", s): i for i, s in enumerate(sources)} | {("o", o): len(sources) + i for i, o in enumerate(outcomes)}
    fig = go.Figure(
        go.Sankey(
            node=dict(
                label=labels, pad=12, thickness=14, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))]
            ),
            link=dict(
                source=[idx[("s", s)] for s in df["source"]],
                target=[idx[("o", o)] for o in df["outcome"]],
                value=df["referrals"].tolist(),
            ),
        )
    )
    return _layout(fig, title, height=460)


def source_scatter(df: pd.DataFrame) -> go.Figure:
    """Referral volume against conversion, bubble = net revenue: who sends patients who finish care."""
    title = "Referral volume vs conversion (bubble = net revenue)"
    if df.empty:
        return empty(title)
    plot = df.assign(
        net_revenue=df["net_revenue_usd"].fillna(0).clip(lower=0),
        status=df["is_fading"].map({True: "Fading", False: "Steady"}).fillna("Steady"),
    )
    fig = px.scatter(
        plot,
        x="referrals",
        y="conversion_rate",
        size="net_revenue",
        color="status",
        hover_name="source_name",
        size_max=40,
        color_discrete_map={"Fading": "#d62728", "Steady": PALETTE[0]},
    )
    fig.update_yaxes(title="Conversion (signed evaluations / referrals)", tickformat=".0%")
    fig.update_xaxes(title="Referrals")
    return _layout(fig, title, height=420)


def trend_bars(df: pd.DataFrame) -> go.Figure:
    """Last 90 days against the 90 days before, for sources whose volume is falling."""
    title = "Falling sources: referrals, last 90 days vs the 90 before"
    if df.empty:
        return empty(title, "No source is falling off. ")
    long = df[["source_name", "referrals_prior_90d", "referrals_last_90d"]].melt(
        id_vars="source_name",
        value_vars=["referrals_prior_90d", "referrals_last_90d"],
        var_name="window",
        value_name="referrals",
    )
    long["window"] = long["window"].map({"referrals_prior_90d": "Prior 90 days", "referrals_last_90d": "Last 90 days"})
    fig = px.bar(
        long,
        x="referrals",
        y="source_name",
        color="window",
        barmode="group",
        orientation="h",
        color_discrete_sequence=[PALETTE[3], "#d62728"],
    )
    fig.update_yaxes(title="")
    return _layout(fig, title, height=max(260, 40 * len(df) + 100))


def attribution_compare(df: pd.DataFrame, labels: dict[str, str]) -> go.Figure:
    """Attributed revenue per channel under each model, side by side."""
    title = "Attributed revenue by channel, per model"
    if df.empty:
        return empty(title)
    plot = df.assign(model_label=df["model"].map(labels).fillna(df["model"]))
    fig = px.bar(
        plot,
        x="channel",
        y="attributed_revenue_usd",
        color="model_label",
        barmode="group",
        color_discrete_sequence=PALETTE,
    )
    fig.update_yaxes(title="Attributed net revenue", tickformat="$,.0f")
    fig.update_xaxes(title="")
    return _layout(fig, title, height=420)


def incrementality_vs_credit(df: pd.DataFrame, path_label: str) -> go.Figure:
    """Per channel: share of path credit beside share of incremental new patients, the latter with its interval.

    Shares of the net incremental total can be negative: a channel that costs patients has a bar below zero,
    which path credit (always >= 0) cannot show.
    """
    title = "Incremental effect vs path credit, by channel"
    if df.empty:
        return empty(title, "The marketing-mix model appears once the ML step has scored a build with spend.")
    fig = go.Figure()
    fig.add_bar(
        x=df["channel"], y=df["path_share"], name=f"Path credit ({path_label})", marker_color=PALETTE[1], opacity=0.7
    )
    err_hi = (df["share_hi"] - df["share"]).clip(lower=0)
    err_lo = (df["share"] - df["share_lo"]).clip(lower=0)
    fig.add_bar(
        x=df["channel"],
        y=df["share"],
        name="Incremental effect (marketing-mix model, 90% interval)",
        marker_color=PALETTE[0],
        error_y=dict(type="data", symmetric=False, array=err_hi, arrayminus=err_lo, color="#444"),
    )
    fig.add_hline(y=0, line_color="#888", line_width=1)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="Share of new patients", tickformat=".0%")
    fig.update_xaxes(title="")
    return _layout(fig, title, height=420)


def spend_vs_revenue(df: pd.DataFrame, model_label: str) -> go.Figure:
    title = f"Spend vs attributed revenue ({model_label})"
    if df.empty:
        return empty(title)
    long = df[["channel", "spend_usd", "attributed_revenue_usd"]].melt(
        id_vars="channel", value_vars=["spend_usd", "attributed_revenue_usd"], var_name="measure", value_name="usd"
    )
    long["measure"] = long["measure"].map({"spend_usd": "Spend", "attributed_revenue_usd": "Attributed revenue"})
    fig = px.bar(
        long, x="channel", y="usd", color="measure", barmode="group", color_discrete_sequence=["#d62728", PALETTE[0]]
    )
    fig.update_yaxes(title="USD", tickformat="$,.0f")
    fig.update_xaxes(title="")
    return _layout(fig, title)


def monthly_metric(df: pd.DataFrame, metric: str, label: str, unit: str) -> go.Figure:
    """One line per channel over months, on a monthly axis; months flagged `is_maturing` are shaded."""
    title = f"{label} by channel and month"
    if df.empty or df[metric].isna().all():
        return empty(title, "No spend in the selected months (ROI and cost per patient need spend).")
    fig = px.line(df, x="month", y=metric, color="channel", markers=True, color_discrete_sequence=PALETTE)
    fig.update_yaxes(title=label, tickformat=_TICK.get(unit, ".1f") if unit != "ratio" else ".0%")
    monthly_axis(fig, df["month"])
    if "is_maturing" in df:
        shade_maturing(fig, df["month"], df["is_maturing"])
    return _layout(fig, title)


def path_lengths(df: pd.DataFrame) -> go.Figure:
    title = "Touches before a decision (path length)"
    if df.empty:
        return empty(title)
    long = df[["path_length", "conversions", "non_conversions"]].melt(
        id_vars="path_length", value_vars=["conversions", "non_conversions"], var_name="result", value_name="paths"
    )
    long["result"] = long["result"].map({"conversions": "Converted", "non_conversions": "Did not convert"})
    fig = px.bar(
        long,
        x="path_length",
        y="paths",
        color="result",
        barmode="stack",
        color_discrete_sequence=[PALETTE[0], PALETTE[5]],
    )
    fig.update_xaxes(title="Touches in the path", dtick=1)
    fig.update_yaxes(title="Referrals")
    return _layout(fig, title)


def leakage_by_category(totals: pd.DataFrame) -> go.Figure:
    """Low estimate as a solid bar, the rest of the range up to the high estimate as a lighter one."""
    title = "Revenue lost by cause (low – high estimate)"
    if totals.empty:
        return empty(title)
    t = totals.sort_values("high_usd")
    fig = go.Figure()
    fig.add_bar(
        x=t["low_usd"],
        y=t["label"],
        orientation="h",
        name="Low estimate",
        marker_color="#d62728",
        text=t["low_usd"].map(lambda v: f"${v:,.0f}"),
        textposition="inside",
    )
    fig.add_bar(
        x=t["high_usd"] - t["low_usd"],
        y=t["label"],
        orientation="h",
        name="Up to the high estimate",
        marker_color="rgba(214, 39, 40, 0.3)",
        text=t["high_usd"].map(lambda v: f"${v:,.0f}"),
        textposition="outside",
    )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="Dollars lost", tickformat="$,.0f")
    fig.update_yaxes(title="")
    return _layout(fig, title, height=max(280, 40 * len(t) + 120))


def leakage_trend(df: pd.DataFrame) -> go.Figure:
    """Low estimates stacked by cause per month, with the month's high estimate as a line above them."""
    title = "Revenue lost by month"
    if df.empty:
        return empty(title)
    fig = px.bar(df, x="month", y="low_usd", color="label", color_discrete_sequence=PALETTE)
    high = df.groupby("month", as_index=False)["high_usd"].sum()
    fig.add_scatter(
        x=high["month"],
        y=high["high_usd"],
        mode="lines+markers",
        name="High estimate (all causes)",
        line=dict(color="#444", dash="dash"),
    )
    fig.update_yaxes(title="Dollars lost (low estimate)", tickformat="$,.0f")
    monthly_axis(fig, df["month"])
    return _layout(fig, title)


def risk_bands(counts: pd.DataFrame) -> go.Figure:
    """Bars of upcoming appointments per risk band; `counts` has risk_band and appointments (queries.no_show)."""
    title = "Upcoming appointments by no-show risk"
    if counts.empty:
        return empty(title, "No scored upcoming appointments.")
    order = {"low": 0, "medium": 1, "high": 2}
    counts = counts.sort_values("risk_band", key=lambda s: s.map(order))
    colors = {"low": PALETTE[0], "medium": "#ff9f1c", "high": "#d62728"}
    counts = counts.assign(band=labels.relabel(counts["risk_band"], "risk_band"))
    fig = px.bar(
        counts,
        x="band",
        y="appointments",
        color="band",
        color_discrete_map={labels.label("risk_band", k): c for k, c in colors.items()},
    )
    fig.update_xaxes(title="Risk band")
    fig.update_yaxes(title="Appointments")
    fig.update_layout(showlegend=False)
    return _layout(fig, title, height=300)


def calibration(df: pd.DataFrame) -> go.Figure:
    """Predicted vs observed no-show rate per bin: on the diagonal means the percentages can be trusted."""
    title = "Calibration: predicted vs observed no-show rate"
    if df.empty:
        return empty(title, "No calibration data (the model has not been evaluated yet).")
    top = float(max(df["mean_predicted"].max(), df["observed_rate"].max(), 0.05)) * 1.1
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, top], y=[0, top], mode="lines", line=dict(dash="dot", color="grey"), name="Perfect calibration"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=df["mean_predicted"],
            y=df["observed_rate"],
            mode="lines+markers",
            marker=dict(size=(df["n"] / max(df["n"].max(), 1) * 20 + 6).tolist(), color=PALETTE[0]),
            name="Model",
            text=df["n"].map(lambda n: f"{n:,} appointments"),
        )
    )
    fig.update_xaxes(title="Predicted probability", tickformat=".0%")
    fig.update_yaxes(title="Observed no-show rate", tickformat=".0%")
    return _layout(fig, title)


def observed_no_show(df: pd.DataFrame) -> go.Figure:
    title = "Observed no-show rate by week"
    if df.empty:
        return empty(title)
    fig = px.line(df, x="week", y="no_show_rate", color_discrete_sequence=[PALETTE[2]])
    fig.add_hline(0.10, line_dash="dot", line_color="grey", annotation_text="US PT mean ≈10%")
    fig.update_yaxes(title="No-show rate", tickformat=".0%")
    fig.update_xaxes(title="")
    return _layout(fig, title, height=300)


def forecast_fan(df: pd.DataFrame, metric_label: str, capacity: pd.DataFrame | None = None) -> go.Figure:
    """Actuals, forecast and its interval (the fan), with capacity when forecasting visits."""
    title = f"{metric_label}: actual and forecast per week"
    if df.empty:
        return empty(title, "No forecast for this series yet.")
    fig = go.Figure()
    fc = df[df["yhat"].notna()]
    fig.add_trace(
        go.Scatter(x=fc["week_start"], y=fc["yhat_upper"], line=dict(width=0), showlegend=False, hoverinfo="skip")
    )
    fig.add_trace(
        go.Scatter(
            x=fc["week_start"],
            y=fc["yhat_lower"],
            line=dict(width=0),
            fill="tonexty",
            fillcolor="rgba(31, 119, 180, 0.18)",
            name="Forecast interval",
        )
    )
    fig.add_trace(
        go.Scatter(x=fc["week_start"], y=fc["yhat"], line=dict(color=PALETTE[0], dash="dash"), name="Forecast")
    )
    act = df[df["actual"].notna()]
    fig.add_trace(go.Scatter(x=act["week_start"], y=act["actual"], line=dict(color="black"), name="Actual"))
    if capacity is not None and not capacity.empty:
        fig.add_trace(
            go.Scatter(
                x=capacity["week_start"],
                y=capacity["capacity_visits"],
                line=dict(color="#d62728", shape="hv"),
                name="Therapist capacity",
            )
        )
    fig.update_yaxes(title=metric_label)
    fig.update_xaxes(title="")
    return _layout(fig, title, height=420)


def staffing_gap(df: pd.DataFrame) -> go.Figure:
    title = "Forecast visits minus capacity per week (above zero = short of therapists)"
    if df.empty:
        return empty(title)
    colors = ["#d62728" if g > 0 else PALETTE[0] for g in df["gap_visits"].fillna(0)]
    fig = go.Figure(go.Bar(x=df["week_start"], y=df["gap_visits"], marker_color=colors))
    fig.update_yaxes(title="Visits")
    return _layout(fig, title, height=300)


def quarantine(df: pd.DataFrame) -> go.Figure:
    title = "Quarantined rows by rule"
    if df.empty:
        return empty(title, "Nothing quarantined. ")
    df = df.assign(rule=labels.relabel(df["rule"], "quarantine_rule"))  # the rule in words, not its code
    fig = px.bar(df, x="rows", y="rule", color="source", orientation="h", color_discrete_sequence=PALETTE)
    fig.update_yaxes(title="", autorange="reversed")
    fig.update_xaxes(title="Rows")
    return _layout(fig, title, height=max(260, 26 * len(df) + 90))


def queue_by_rule(df: pd.DataFrame) -> go.Figure:
    title = "Open tasks by reason"
    if df.empty:
        return empty(title, "The queue is empty. ")
    counts = df.groupby("rule_label", as_index=False).size().sort_values("size")
    fig = px.bar(counts, x="size", y="rule_label", orientation="h", color_discrete_sequence=[PALETTE[0]])
    fig.update_xaxes(title="Tasks")
    fig.update_yaxes(title="")
    return _layout(fig, title, height=max(220, 30 * len(counts) + 90))
