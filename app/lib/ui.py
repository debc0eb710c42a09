"""The Streamlit side of the app: cached data access, the page guard, and the few widgets every page
uses (KPI tiles, tables and charts that download as CSV). Everything else in app/lib is Streamlit-free."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.lib import audit, exports, source_needs
from app.lib.auth import PAGE_TITLES, AccessDenied, Scope, User, require_page
from app.lib.db import AnalyticsBusy, AnalyticsDb, AnalyticsMissing
from app.lib.formatting import Tile, kpi_tile
from app.lib.privacy import deidentify
from app.lib.queries.base import Filters, build_info
from ptpulse.core.config import Settings, get_settings

USER_KEY = "ptpulse_user"
FILTERS_KEY = "ptpulse_filters"


@st.cache_resource(show_spinner=False)
def get_db(path: str) -> AnalyticsDb:
    """One shared, swap-aware read-only handle per analytics file path (per server process)."""
    return AnalyticsDb(path)


@st.cache_data(ttl=3600, max_entries=4000, show_spinner=False)
def _cached_df(path: str, identity: str, scope_key: str, sql: str, params: tuple) -> pd.DataFrame:
    """Query results keyed by file identity (a new build = new keys), the user's scope and the bound
    parameters. The scope is in the key so a result computed for one role/clinic set is never served to
    another, even though the SQL already differs by scope."""
    return get_db(path).query(sql, _thaw(params))


def _freeze(params: Mapping[str, Any] | None) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (params or {}).items()))


def _thaw(params: tuple) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params}


@dataclass
class StReader:
    """queries.base.Reader with Streamlit caching; de-identified roles get PHI columns stripped after the cache."""

    db: AnalyticsDb
    scope: Scope

    def df(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        ident = self.db.identity().token
        frame = _cached_df(str(self.db.path), ident, self.scope.key, sql, _freeze(params))
        return frame if self.scope.phi else deidentify(frame)

    def has(self, table: str) -> bool:
        return self.db.has_table(table)


def settings() -> Settings:
    return get_settings()


def current_user() -> User:
    user = st.session_state.get(USER_KEY)
    if not isinstance(user, User):
        st.error("You are not signed in. Reload the app to sign in.")
        st.stop()
    return user


@dataclass
class PageContext:
    user: User
    settings: Settings
    reader: StReader
    filters: Filters
    info: dict[str, Any]
    key: str = ""  # the page's key (auth.PAGES), for the source guard of require_tables

    @property
    def as_of(self) -> datetime | None:
        value = self.info.get("as_of")
        if value is None or pd.isna(value):
            return None
        return pd.Timestamp(value).to_pydatetime()

    def as_of_caption(self) -> None:
        built = self.info.get("built_at")
        st.caption(
            f"Data as of **{self.info.get('as_of', 'unknown')}** · build {self.info.get('build_id', '?')}"
            + (f", built {built}" if built is not None else "")
        )


def refuse(message: str) -> None:
    st.error(message, icon=":material/lock:")
    st.stop()


def page(key: str, needs_data: bool = True) -> PageContext:
    """Guard at the top of every page: the role must be allowed (else refuse and stop), and the
    analytics file must exist (else say how to build it)."""
    user = current_user()
    st.title(PAGE_TITLES[key])
    try:
        require_page(user, key)
    except AccessDenied as exc:
        _audit_refusal(user, key)
        refuse(str(exc))
    s = settings()
    db = get_db(str(s.analytics_db))
    reader = StReader(db, user.scope)
    filters = st.session_state.get(FILTERS_KEY) or Filters(date.today(), date.today())
    info: dict[str, Any] = {}
    if needs_data:
        try:
            info = build_info(reader)
        except AnalyticsMissing as exc:
            st.info(f"**No data yet.** {exc}")
            st.stop()
        except AnalyticsBusy as exc:
            st.warning(str(exc))
            st.stop()
    return PageContext(user=user, settings=s, reader=reader, filters=filters, info=info, key=key)


def _audit_refusal(user: User, page_key: str) -> None:
    try:
        audit.log(settings().app_db, user.email, user.role, "access.refused", {"page": page_key})
    except Exception:  # auditing a refusal must never turn it into a crash
        pass


def require_tables(ctx: PageContext, *tables: str, what: str = "") -> None:
    """Stop with a clear message when the page cannot show data: the build lacks a table the page reads, or
    none of the exports the page needs (source_needs.PAGE_SOURCES) was ever loaded. The second case says
    which export to load instead of showing zeros that read like real figures."""
    loaded = source_needs.loaded_sources(ctx.reader)
    message = None if loaded is None else source_needs.missing_message(ctx.key, loaded, what)
    if message:
        st.info(message, icon=":material/upload_file:")
        st.stop()
    missing = [t for t in tables if not ctx.reader.has(t)]
    if missing:
        st.info(
            f"{what or 'This page'} needs {', '.join(missing)}, which the served build does not have yet. "
            "Run `ptpulse refresh` (or ask an admin to use **Admin → Refresh now**)."
        )
        st.stop()


# ----------------------------------------------------------------------------------------- widgets


def tiles(rows: list[Tile], per_row: int = 4) -> None:
    for i in range(0, len(rows), per_row):
        cols = st.columns(per_row)
        for col, tile in zip(cols, rows[i : i + per_row], strict=False):
            with col:
                st.metric(tile.label, tile.value, tile.delta, delta_color=tile.delta_color, help=tile.help, border=True)
                badge = {
                    "in band": ":green[● in healthy band]",
                    "below band": ":orange[● below healthy band]",
                    "above band": ":orange[● above healthy band]",
                    "maturing": ":gray[◌ maturing: outcomes still coming in]",
                }.get(tile.status)
                if badge:
                    st.caption(badge)


def kpi_tiles(summary: pd.DataFrame, kpis: list[str] | None = None, per_row: int = 4) -> None:
    rows = summary if kpis is None else summary[summary["kpi"].isin(kpis)]
    tiles([kpi_tile(r) for r in rows.to_dict("records")], per_row=per_row)


def _on_download(name: str, rows: int, identified: bool) -> None:
    user = current_user()
    if identified:
        audit.log(
            settings().app_db,
            user.email,
            user.role,
            "export.identified",
            {"table": name, "rows": rows, "page": st.session_state.get("ptpulse_page", "")},
        )


def download(df: pd.DataFrame, name: str, key: str, label: str = "Download CSV") -> None:
    """CSV download, formula-injection safe; exports with identities go to the audit log."""
    identified = exports.has_identities(df)
    st.download_button(
        label,
        data=lambda: exports.to_csv_bytes(df),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"dl_{key}",
        on_click=_on_download,
        args=(name, len(df), identified),
        icon="⬇️",
    )


def table(
    df: pd.DataFrame,
    name: str,
    key: str,
    column_config: dict | None = None,
    height: int | str = "auto",
    empty_message: str = "Nothing to show for the selected filters.",
) -> None:
    if df.empty:
        st.info(empty_message)
        return
    st.dataframe(df, hide_index=True, column_config=column_config, height=height, key=f"tbl_{key}")
    download(df, name, key)


def chart(fig: go.Figure, df: pd.DataFrame, name: str, key: str) -> None:
    st.plotly_chart(fig, key=f"fig_{key}", config={"displaylogo": False})
    if not df.empty:
        download(df, name, key, label="Download chart data (CSV)")


def money(label: str) -> Any:
    return st.column_config.NumberColumn(label, format="dollar")


def pct(label: str) -> Any:
    return st.column_config.NumberColumn(label, format="percent")


def jsonable(value: Any) -> str:
    return json.dumps(value, default=str)
