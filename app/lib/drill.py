"""Drill-through for the owner views: pick a row of a summary table (click it, or choose it from the list
under the table) and the rows behind it open in an expander. The rows come from the page's query module,
which already decides per role whether identities are selected; this helper only renders."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from app.lib import ui


def summary(
    df: pd.DataFrame,
    name: str,
    key: str,
    label_col: str,
    column_config: dict | None = None,
    prompt: str = "Show the rows behind",
) -> str | None:
    """Render the summary with single-row selection; returns the label of the row picked (table click wins,
    else the list), or None when nothing is picked."""
    if df.empty:
        st.info("Nothing to show for the selected filters.")
        return None
    event = st.dataframe(
        df,
        hide_index=True,
        column_config=column_config,
        key=f"tbl_{key}",
        on_select="rerun",
        selection_mode="single-row",
    )
    ui.download(df, name, key)
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(df):
        return str(df.iloc[rows[0]][label_col])
    options = [str(v) for v in df[label_col].tolist()]
    return st.selectbox(
        prompt, options, index=None, placeholder="Pick a row (or click one in the table)", key=f"pick_{key}"
    )


def rows_behind(
    picked: str | None,
    fetch: Callable[[], pd.DataFrame],
    name: str,
    key: str,
    column_config: dict | None = None,
    what: str = "rows",
) -> pd.DataFrame | None:
    """The rows behind the picked summary row, in an expander (open), with a CSV download (audited when
    the rows carry identities). Nothing is queried until a row is picked."""
    if picked is None:
        st.caption(f"Pick a row to see the {what} behind it.")
        return None
    rows = fetch()
    with st.expander(f"{what.capitalize()} behind “{picked}”: {len(rows):,}", expanded=True):
        ui.table(rows, name, key, column_config=column_config, height=360, empty_message=f"No {what} behind this row.")
    return rows
