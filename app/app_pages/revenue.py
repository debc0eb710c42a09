"""A/R, payers & denials (owner, manager, analyst): open A/R by age bucket and payer, the payer mix of visits
and collections, and denials by CARC reason group; pick a row to see the claims or visits behind it
(patient names only for roles that may see them)."""

import streamlit as st

from app.lib import drill, owner_charts, ui
from app.lib.formatting import fmt
from app.lib.queries import revenue as q

ctx = ui.page("revenue")
ui.require_tables(ctx, "marts.ar_aging", "marts.payer_mix", "marts.denial_reasons", what="A/R, payer mix and denials")
f = ctx.filters

aging = q.ar_aging(ctx.reader, f)
mix = q.payer_mix(ctx.reader, f)
groups = q.denials_by_group(ctx.reader, f)

total_ar = float(aging["open_balance_usd"].sum()) if len(aging) else 0.0
old_ar = (
    float(aging.loc[aging["ar_age_bucket"].isin(["91-120", "120+"]), "open_balance_usd"].sum()) if len(aging) else 0.0
)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Open A/R", fmt(total_ar, "usd"), border=True, help="Still owed by payers and patients at the data date.")
c2.metric("Over 90 days", fmt(old_ar / total_ar if total_ar else None, "pct"), border=True, help="Share of open A/R.")
c3.metric("Collections (months in range)", fmt(mix["collected_usd"].sum() if len(mix) else 0, "usd"), border=True)
c4.metric("Denied (months in range)", fmt(groups["denied_usd"].sum() if len(groups) else 0, "usd"), border=True)


def codes_of(df, code_col: str, picked: str | None) -> list[str]:
    """The codes behind a picked label (a label may name several codes)."""
    return df.loc[df[f"{code_col}_label"] == picked, code_col].astype(str).unique().tolist()


tab_ar, tab_mix, tab_den = st.tabs(["A/R aging", "Payer mix", "Denial reasons"])

with tab_ar:
    st.caption("Open claims at the data date by days since the date of service (the date filter does not apply).")
    ui.chart(owner_charts.ar_aging(aging), aging, "ar_aging", "rv_ar_chart")
    by_class = (
        aging.pivot_table(index="payer_class_label", columns="ar_age_bucket", values="open_balance_usd", aggfunc="sum")
        .reindex(columns=list(q.BUCKETS))
        .fillna(0.0)
        .assign(total_usd=lambda d: d.sum(axis=1))
        .sort_values("total_usd", ascending=False)
        .reset_index()
        .rename(columns={"payer_class_label": "payer_class"})
    )
    money_cols = {b: ui.money(q.BUCKET_LABELS[b]) for b in q.BUCKETS}
    picked = drill.summary(
        by_class,
        "ar_aging_by_payer_class",
        "rv_ar",
        "payer_class",
        column_config={
            "payer_class": st.column_config.TextColumn("Payer class", pinned=True),
            **money_cols,
            "total_usd": ui.money("Total"),
        },
        prompt="Show the open claims of a payer class",
    )
    drill.rows_behind(
        picked,
        lambda: q.ar_claims(ctx.reader, f, codes_of(aging, "payer_class", picked)),
        "ar_open_claims",
        "rv_ar_rows",
        column_config={
            "billed_usd": ui.money("Billed"),
            "insurance_balance_usd": ui.money("Owed by payer"),
            "patient_balance_usd": ui.money("Owed by patient"),
            "open_balance_usd": ui.money("Still owed"),
        },
        what="open claims",
    )
    with st.expander("By payer"):
        ui.table(
            q.ar_by_payer(ctx.reader, f),
            "ar_aging_by_payer",
            "rv_ar_payer",
            column_config={
                **money_cols,
                "total_usd": ui.money("Total"),
                "payer": st.column_config.TextColumn("Payer", pinned=True),
                "payer_class": st.column_config.TextColumn("Payer class"),
                "open_claims": st.column_config.NumberColumn("Open claims", format="%d"),
            },
        )

with tab_mix:
    st.caption(
        "Whole months touching the range. Visits by the payer of the episode; collections = payer and patient "
        "payments posted in those months (cash basis, like net revenue per visit)."
    )
    ui.chart(owner_charts.payer_mix(mix), mix, "payer_mix", "rv_mix_chart")
    picked_mix = drill.summary(
        mix[["payer_class_label", "visits", "visit_share", "collected_usd", "collection_share"]],
        "payer_mix_table",
        "rv_mix",
        "payer_class_label",
        column_config={
            "payer_class_label": st.column_config.TextColumn("Payer class", pinned=True),
            "visits": st.column_config.NumberColumn("Visits", format="%d"),
            "visit_share": ui.pct("Share of visits"),
            "collected_usd": ui.money("Collections"),
            "collection_share": ui.pct("Share of collections"),
        },
        prompt="Show the visits of a payer class",
    )
    drill.rows_behind(
        picked_mix,
        lambda: q.payer_class_visits(ctx.reader, f, codes_of(mix, "payer_class", picked_mix)),
        "payer_class_visits",
        "rv_mix_rows",
        column_config={"charges_usd": ui.money("Charges"), "net_collected_usd": ui.money("Collected")},
        what="visits",
    )

with tab_den:
    st.caption("Claims by the month of their first denial and that denial's reason code (CARC), grouped by family.")
    ui.chart(owner_charts.denials(groups), groups, "denials_by_group", "rv_den_chart")
    picked_den = drill.summary(
        groups[
            ["carc_group_label", "denied_claims", "denied_usd", "paid_after_denial_claims", "written_off_usd", "codes"]
        ],
        "denials_by_group_table",
        "rv_den",
        "carc_group_label",
        column_config={
            "carc_group_label": st.column_config.TextColumn("Reason group", pinned=True),
            "denied_claims": st.column_config.NumberColumn("Denied claims", format="%d"),
            "denied_usd": ui.money("Denied"),
            "paid_after_denial_claims": st.column_config.NumberColumn("Paid after all", format="%d"),
            "written_off_usd": ui.money("Written off"),
            "codes": st.column_config.TextColumn("Reason codes"),
        },
        prompt="Show the denied claims of a reason group",
    )
    drill.rows_behind(
        picked_den,
        lambda: q.denied_claims(ctx.reader, f, codes_of(groups, "carc_group", picked_den)),
        "denied_claims",
        "rv_den_rows",
        column_config={
            "billed_usd": ui.money("Billed"),
            "denied_usd": ui.money("Denied"),
            "payer_paid_usd": ui.money("Paid"),
            "write_off_usd": ui.money("Written off"),
        },
        what="denied claims",
    )
    with st.expander("By reason code"):
        ui.table(
            q.denial_codes(ctx.reader, f),
            "denials_by_code",
            "rv_den_codes",
            column_config={
                "denial_carc": st.column_config.TextColumn("Code"),
                "reason": st.column_config.TextColumn("What it means", width="large"),
                "carc_group": st.column_config.TextColumn("Group"),
                "denied_claims": st.column_config.NumberColumn("Denied claims", format="%d"),
                "denied_usd": ui.money("Denied"),
            },
        )
