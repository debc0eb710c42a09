"""Overview (owner, manager): is the practice healthy? KPI tiles against a comparison of the user's choosing
(previous period, same period last year, or the owner's own target) and the published healthy band, a trend
for any KPI, how the clinics compare, and the practice's goals (owners set them here)."""

import pandas as pd
import streamlit as st

from app.lib import charts, drill, goals, ui
from app.lib.formatting import COMPARISONS, band_text, fmt
from app.lib.queries import overview_drill
from app.lib.queries.base import clinics
from app.lib.queries.overview import kpi_by_clinic, kpi_summary, kpi_trend

ctx = ui.page("overview")
ui.require_tables(ctx, "marts.practice_kpis", "marts.kpi_definitions", what="The Overview")
f = ctx.filters

summary = kpi_summary(ctx.reader, f)
in_view = ctx.user.scope.effective_clinics(f.clinics)
current = goals.current_goals(ctx.settings.app_db, ctx.user.scope.clinics)  # the practice's and the user's clinics
targets = goals.targets_for(current, None if in_view is None else list(in_view))

st.subheader(f"Key figures, {f.start:%b %-d, %Y} – {f.end:%b %-d, %Y}")
compare = (
    st.segmented_control(
        "Compare with",
        list(COMPARISONS),
        default="previous",
        format_func=lambda c: COMPARISONS[c].capitalize(),
        key="ov_compare",
    )
    or "previous"
)
against = {
    "previous": f"the previous {f.days} days",
    "last_year": "the same dates last year",
    "target": "your targets (a KPI without a target shows no arrow)",
}[compare]
st.caption(
    f"Arrows compare with {against}. ◎ = your target, set under **Practice goals** below. The healthy band comes "
    "from published industry benchmarks (named in each KPI's definition)."
)
if summary["value"].isna().all():
    st.info("No KPI values in this date range. Widen the range in the sidebar.")
ui.kpi_tiles(summary, compare=compare, targets=targets)

# ------------------------------------------------------------------- drill-through: the rows behind a tile
drill_labels = dict(zip(summary["kpi"], summary["label"].fillna(summary["kpi"]), strict=True))
drill_kpi = st.selectbox(
    "Show the rows behind a figure",
    [k for k in summary["kpi"] if k in overview_drill.DRILLS],
    index=None,
    format_func=drill_labels.get,
    placeholder="Pick a KPI",
    key="ov_drill",
)
if drill_kpi is not None:
    spec = overview_drill.DRILLS[drill_kpi]
    st.caption(
        f"The {spec.what} of the selected dates and clinics that make up this figure"
        + (": their count is the figure's denominator." if spec.counts_denominator else ".")
    )
drill.rows_behind(
    None if drill_kpi is None else drill_labels[drill_kpi],
    lambda: overview_drill.rows_behind(ctx.reader, f, drill_kpi),
    f"kpi_rows_{drill_kpi}",
    "ov_drill_rows",
    what="rows" if drill_kpi is None else overview_drill.DRILLS[drill_kpi].what,
)

st.divider()
names = dict(zip(summary["kpi"], summary["label"].fillna(summary["kpi"]), strict=True))
units = dict(zip(summary["kpi"], summary["unit"], strict=True))
default = next((i for i, k in enumerate(summary["kpi"]) if k == "no_show_rate"), 0)
kpi = st.selectbox("Look closer at", list(names), index=default, format_func=names.get, key="ov_kpi")
row = summary[summary["kpi"] == kpi].iloc[0]
left, right = st.columns(2)
with left:
    trend = kpi_trend(ctx.reader, f, kpi)
    ui.chart(
        charts.kpi_trend(trend, names[kpi], row["unit"], row["healthy_low"], row["healthy_high"], targets.get(kpi)),
        trend,
        f"kpi_trend_{kpi}",
        "ov_trend",
    )
with right:
    by_clinic = kpi_by_clinic(ctx.reader, f, kpi)
    ui.chart(
        charts.clinic_comparison(by_clinic, names[kpi], row["unit"], row["healthy_low"], row["healthy_high"]),
        by_clinic,
        f"kpi_by_clinic_{kpi}",
        "ov_clinics",
    )
if isinstance(row["definition"], str) and row["definition"]:
    st.caption(f"**{names[kpi]}**: {row['definition']}")

with st.expander("All KPIs as a table"):
    shown = summary.assign(
        value=[fmt(v, u) for v, u in zip(summary["value"], summary["unit"], strict=True)],
        previous=[fmt(v, u) for v, u in zip(summary["previous"], summary["unit"], strict=True)],
        last_year=[fmt(v, u) for v, u in zip(summary["last_year"], summary["unit"], strict=True)],
        target=[fmt(targets.get(k), u) for k, u in zip(summary["kpi"], summary["unit"], strict=True)],
        band=[
            band_text(lo, hi, u).capitalize()
            for lo, hi, u in zip(summary["healthy_low"], summary["healthy_high"], summary["unit"], strict=True)
        ],
    )
    ui.table(
        shown[["label", "value", "previous", "last_year", "target", "band", "definition"]],
        "kpi_summary",
        "ov_table",
        pinned=["label"],
        column_config={
            "label": "KPI",
            "value": "This period",
            "previous": "Previous period",
            "last_year": "Same period last year",
            "target": "Target",
            "band": "Healthy band",
            "definition": st.column_config.TextColumn("Definition", width="large"),
        },
    )

# ------------------------------------------------------------------------------------------- goals
clinic_names = clinics(ctx.reader).set_index("clinic_id")["clinic_name"].to_dict()


def _where(clinic_id: str) -> str:
    return "Whole practice" if clinic_id == goals.PRACTICE else clinic_names.get(clinic_id, clinic_id)


# a user limited to some clinics sets their clinics' targets only (goals.set_goal refuses the rest)
goal_scope = ctx.user.scope.clinics
goal_for = [goals.PRACTICE, *clinic_names] if goal_scope is None else [c for c in clinic_names if c in goal_scope]

with st.expander("Practice goals", icon=":material/flag:"):
    st.caption(
        (
            "Your own target per KPI, for the whole practice or one clinic. "
            if goal_scope is None
            else "Your own target per KPI, for one of your clinics (whole-practice targets are set by an owner of "
            "the whole practice). "
        )
        + "A clinic's own target applies when only that clinic is selected; otherwise the practice's. Every change "
        "is kept with who made it and when."
    )
    saved = st.session_state.pop("ov_goal_saved", None)
    if saved:
        st.success(saved, icon=":material/check:")
    if current.empty:
        st.caption("No targets set yet.")
    else:
        ui.table(
            current.assign(
                kpi=current["kpi"].map(names).fillna("Retired KPI"),
                clinic_id=current["clinic_id"].map(_where),
                target=[fmt(t, units.get(k)) for t, k in zip(current["target"], current["kpi"], strict=True)],
            ),
            "kpi_goals",
            "ov_goals",
            pinned=["kpi"],
            column_config={
                "kpi": "KPI",
                "clinic_id": "For",
                "target": "Target",
                "set_by": "Set by",
                "set_at": st.column_config.DatetimeColumn("Set at (UTC)", format="MMM D, YYYY HH:mm"),
            },
        )
    if goals.can_set(ctx.user.role) and not goal_for:
        st.caption("Your account is limited to clinics that have no data yet: no target can be set here.")
    elif goals.can_set(ctx.user.role):
        with st.form("ov_goal_form", clear_on_submit=False):
            g1, g2, g3 = st.columns([2, 2, 1])
            goal_kpi = g1.selectbox("KPI", list(names), format_func=names.get, key="ov_goal_kpi")
            where = g2.selectbox(
                "For",
                goal_for,
                format_func=_where,
                key="ov_goal_clinic",
            )
            unit = units.get(goal_kpi)
            value = g3.number_input(
                "Target" + (" (%)" if unit == "pct" else " ($)" if unit == "usd" else f" ({unit})"),
                value=None,
                step=0.1,
                key="ov_goal_value",
                help="Percentages as 8 for 8%. Leave empty and save to clear the target.",
            )
            if st.form_submit_button("Save target", icon=":material/save:"):
                try:
                    goals.set_goal(
                        ctx.settings.app_db,
                        goal_kpi,
                        None if value is None else goals.to_stored(value, unit),
                        ctx.user.email,
                        ctx.user.role,
                        clinic_id=where,
                        known_kpis=names,
                        clinics=goal_scope,
                    )
                except goals.GoalError as exc:
                    st.error(f"Target not saved: {exc}")
                else:
                    st.session_state["ov_goal_saved"] = f"Target for {names[goal_kpi]} ({_where(where)}) " + (
                        "cleared." if value is None else f"set to {fmt(goals.to_stored(value, unit), unit)}."
                    )
                    st.rerun()  # the tiles above were drawn with the old targets
    else:
        st.caption("Targets are set by the practice owner.")
    changes = goals.history(ctx.settings.app_db, limit=20, clinics=ctx.user.scope.clinics)
    if not changes.empty:
        st.markdown("**Recent changes**")
        ui.table(
            changes.assign(
                kpi=changes["kpi"].map(names).fillna("Retired KPI"),
                clinic_id=changes["clinic_id"].map(_where),
                target=[
                    "cleared" if pd.isna(t) else fmt(t, units.get(k))
                    for t, k in zip(changes["target"], changes["kpi"], strict=True)
                ],
                role=changes["role"].str.replace("_", " ").str.capitalize(),
            ),
            "kpi_goal_history",
            "ov_goal_history",
            pinned=["kpi"],
            column_config={
                "kpi": "KPI",
                "clinic_id": "For",
                "target": "Target",
                "set_by": "By",
                "role": "Role",
                "set_at": st.column_config.DatetimeColumn("When (UTC)", format="MMM D, YYYY HH:mm"),
            },
        )
