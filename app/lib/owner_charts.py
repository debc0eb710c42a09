"""Figure builders of the owner views (A/R aging, payer mix, denials, therapists, diagnoses, year over year):
pure functions from a query frame to a plotly figure, tested without Streamlit. They reuse charts.py's
layout, empty figure and healthy band so every page looks alike."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from app.lib.charts import PALETTE, _band, _layout, empty
from app.lib.queries.revenue import BUCKET_LABELS, BUCKETS


def ar_aging(df: pd.DataFrame) -> go.Figure:
    """Open A/R by age bucket (x, oldest last), stacked by payer class."""
    title = "Open A/R by age (days since service)"
    if df.empty:
        return empty(title, "No open claims.")
    fig = go.Figure()
    for i, (label, part) in enumerate(df.groupby("payer_class_label", sort=True)):
        by = part.set_index("ar_age_bucket")["open_balance_usd"].reindex(list(BUCKETS)).fillna(0.0)
        fig.add_bar(
            x=[BUCKET_LABELS[b] for b in BUCKETS],
            y=by.values,
            name=str(label),
            marker_color=PALETTE[i % len(PALETTE)],
            hovertemplate="%{x}: $%{y:,.0f}<extra>" + str(label) + "</extra>",
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="Still owed", tickformat="$,.0f")
    fig.update_xaxes(title="Age of the claim", categoryorder="array", categoryarray=[BUCKET_LABELS[b] for b in BUCKETS])
    return _layout(fig, title, height=380)


def payer_mix(df: pd.DataFrame) -> go.Figure:
    """Share of visits beside share of collections, per payer class (horizontal bars)."""
    title = "Payer mix: share of visits and of collections"
    if df.empty:
        return empty(title)
    d = df.sort_values("collection_share")
    fig = go.Figure()
    fig.add_bar(y=d["payer_class_label"], x=d["visit_share"], name="Visits", orientation="h", marker_color=PALETTE[0])
    fig.add_bar(
        y=d["payer_class_label"], x=d["collection_share"], name="Collections", orientation="h", marker_color=PALETTE[1]
    )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="Share", tickformat=".0%")
    return _layout(fig, title, height=max(300, 60 + 44 * len(d)))


def denials(df: pd.DataFrame) -> go.Figure:
    """Denied dollars by CARC group, largest on top, with the claim count in the hover."""
    title = "Denied dollars by reason group"
    if df.empty:
        return empty(title, "No denials in the selected months.")
    d = df.sort_values("denied_usd")
    fig = go.Figure(
        go.Bar(
            y=d["carc_group_label"],
            x=d["denied_usd"],
            orientation="h",
            marker_color=PALETTE[2],
            customdata=d["denied_claims"],
            hovertemplate="%{y}: $%{x:,.0f} on %{customdata} claims<extra></extra>",
        )
    )
    fig.update_xaxes(title="Denied", tickformat="$,.0f")
    return _layout(fig, title, height=max(300, 60 + 36 * len(d)))


def therapist_trend(
    df: pd.DataFrame, measure: str, label: str, unit: str | None, low=None, high=None, top: int = 12
) -> go.Figure:
    """One line per therapist over the months, with the KPI's healthy band when it has one. Only the `top`
    busiest therapists (most visits in range) get a line: a chain's thousand lines are unreadable and slow to
    draw; the table below the chart lists everyone, and a clinic filter narrows the chart."""
    title = f"{label} by therapist and month"
    if df.empty or measure not in df:
        return empty(title)
    n = df["therapist"].nunique()
    if n > top:
        busy = df.groupby("therapist", sort=True)["visits" if "visits" in df else measure].sum()
        df = df[df["therapist"].isin(busy.sort_values(ascending=False, kind="stable").index[:top])]
        title = f"{label} by month: the {top} busiest of {n:,} therapists (pick a clinic to narrow)"
    fig = go.Figure()
    for i, (name, part) in enumerate(df.groupby("therapist", sort=True)):
        part = part.sort_values("month")
        fig.add_scatter(
            x=pd.to_datetime(part["month"]),
            y=part[measure],
            mode="lines+markers",
            name=str(name),
            line=dict(color=PALETTE[i % len(PALETTE)]),
        )
    _band(fig, low, high)
    fig.update_xaxes(title="Month", dtick="M1", tickformat="%b %Y")
    fig.update_yaxes(title=label, tickformat={"pct": ".0%"}.get(unit or "", ""))
    return _layout(fig, title, height=380)


def diagnoses(df: pd.DataFrame, top: int = 12) -> go.Figure:
    """Referrals per diagnosis (the `top` most referred), converted part shaded darker."""
    title = "Referrals by diagnosis"
    if df.empty:
        return empty(title)
    d = df.nlargest(top, "referrals").sort_values("referrals")
    fig = go.Figure()
    fig.add_bar(y=d["diagnosis"], x=d["converted"], name="Converted", orientation="h", marker_color=PALETTE[0])
    fig.add_bar(
        y=d["diagnosis"],
        x=d["referrals"] - d["converted"],
        name="Not (yet) converted",
        orientation="h",
        marker_color=PALETTE[5 % len(PALETTE)],
    )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="Referrals")
    return _layout(fig, title, height=max(320, 60 + 30 * len(d)))


def yoy(df: pd.DataFrame, label: str, unit: str | None) -> go.Figure:
    """One KPI's months: this year (bars) against the same month last year (line)."""
    title = f"{label}: this year against last year"
    if df.empty:
        return empty(title)
    d = df.sort_values("month")
    x = pd.to_datetime(d["month"])
    fig = go.Figure()
    fig.add_bar(x=x, y=d["value"], name="This year", marker_color=PALETTE[0])
    fig.add_scatter(
        x=x, y=d["last_year"], name="Same month last year", mode="lines+markers", line=dict(color=PALETTE[1])
    )
    fig.update_xaxes(title="Month", dtick="M1", tickformat="%b %Y")
    fig.update_yaxes(title=label, tickformat={"pct": ".0%", "usd": "$,.0f"}.get(unit or "", ""))
    return _layout(fig, title, height=360)
