"""Overview (owner, manager): is the practice healthy? KPI tiles against the previous period and the
healthy band, a trend for any KPI, and how the clinics compare."""

import streamlit as st

from app.lib import charts, ui
from app.lib.queries.overview import kpi_by_clinic, kpi_summary, kpi_trend

ctx = ui.page("overview")
ui.require_tables(ctx, "marts.practice_kpis", "marts.kpi_definitions", what="The Overview")
f = ctx.filters
ctx.as_of_caption()

summary = kpi_summary(ctx.reader, f)
st.subheader(f"Key figures, {f.start:%b %-d, %Y} – {f.end:%b %-d, %Y}")
st.caption(
    f"Arrows compare with the previous {f.days} days. Green band = the healthy range from industry benchmarks "
    "(named in each KPI's definition)."
)
if summary["value"].isna().all():
    st.info("No KPI values in this date range. Widen the range in the sidebar.")
ui.kpi_tiles(summary)

st.divider()
labels = dict(zip(summary["kpi"], summary["label"].fillna(summary["kpi"]), strict=True))
default = next((i for i, k in enumerate(summary["kpi"]) if k == "no_show_rate"), 0)
kpi = st.selectbox("Look closer at", list(labels), index=default, format_func=labels.get, key="ov_kpi")
row = summary[summary["kpi"] == kpi].iloc[0]
left, right = st.columns(2)
with left:
    trend = kpi_trend(ctx.reader, f, kpi)
    ui.chart(
        charts.kpi_trend(trend, labels[kpi], row["unit"], row["healthy_low"], row["healthy_high"]),
        trend,
        f"kpi_trend_{kpi}",
        "ov_trend",
    )
with right:
    by_clinic = kpi_by_clinic(ctx.reader, f, kpi)
    ui.chart(
        charts.clinic_comparison(by_clinic, labels[kpi], row["unit"], row["healthy_low"], row["healthy_high"]),
        by_clinic,
        f"kpi_by_clinic_{kpi}",
        "ov_clinics",
    )
if isinstance(row["definition"], str) and row["definition"]:
    st.caption(f"**{labels[kpi]}**: {row['definition']}")

with st.expander("All KPIs as a table"):
    ui.table(
        summary[["label", "value", "previous", "unit", "healthy_low", "healthy_high", "definition"]],
        "kpi_summary",
        "ov_table",
    )
