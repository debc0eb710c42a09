"""The Streamlit side of the app: cached data access, the page guard, and the few widgets every page
uses (KPI tiles, tables and charts that download as CSV). Everything else in app/lib is Streamlit-free."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.lib import audit, exports, formatting, labels, model_cards, source_needs
from app.lib.auth import (
    PAGE_ACCESS,
    PAGE_TITLES,
    UPLOAD_ROLES,
    AccessDenied,
    Scope,
    User,
    home_page_file,
    page_file,
    require_page,
)
from app.lib.db import AnalyticsBusy, AnalyticsDb, AnalyticsMissing
from app.lib.formatting import Tile, column_header, kpi_tile
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


def _local_from_utc(value: Any) -> datetime | None:
    """build_info.built_at (UTC without a zone, dbt's run start) as this server's wall time, which `datetime.now()`
    and the page's other times are in; None when absent or unreadable."""
    stamp = pd.to_datetime(value, errors="coerce") if value is not None else None
    if stamp is None or pd.isna(stamp):
        return None
    moment = stamp.to_pydatetime()
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return aware.astimezone().replace(tzinfo=None)  # astimezone(): the server's own zone


def freshness(info: Mapping[str, Any]) -> None:
    """The line under every title ('Data through Nov 29, 8:08 pm · updated this morning'), with the build's
    id and exact times behind an expander for whoever needs to quote them."""
    if not info:
        return
    built = _local_from_utc(info.get("built_at"))
    st.caption(formatting.freshness(info.get("as_of"), built, datetime.now()))
    with st.expander("About this data", icon=":material/schedule:"):
        exact = {
            "Data through": info.get("as_of"),
            "Built": built,
            "“Now” taken from": labels.label("as_of_source", info.get("as_of_source")),
            "Build": info.get("build_id"),
        }
        st.markdown(
            "\n".join(
                f"- {name}: {_exact(value)}"
                for name, value in exact.items()
                if value is not None and not (isinstance(value, float) and pd.isna(value))
            )
        )


def _exact(value: Any) -> str:
    if isinstance(value, datetime | pd.Timestamp):
        return f"{pd.Timestamp(value):%Y-%m-%d %H:%M:%S}"
    return str(value)


def refuse(message: str, home: str | None = None) -> None:
    """Refuse and stop; with `home` (the role's home page file), a link back to it so nobody is stranded."""
    st.error(message, icon=":material/lock:")
    if home:
        st.page_link(home, label="Go to your home page", icon=":material/home:")
    st.stop()


def _stop_with_sources(message: str, user: User) -> None:
    """First run / sources never loaded (app/lib/source_needs.py): say what to load and link to the Upload page."""
    st.info(message, icon=":material/upload_file:")
    if user.role in UPLOAD_ROLES:
        st.page_link(page_file("upload"), label="Upload exports", icon=":material/upload_file:")
    st.stop()


def _stop_not_built(user: User) -> None:
    """Data ingested but no served build: say so and point to the refresh (admins get the Admin page)."""
    can_build = user.role in PAGE_ACCESS["admin"]
    st.info(source_needs.not_built_message(can_build), icon=":material/build:")
    if can_build:
        st.page_link(page_file("admin"), label="Open Admin → Refresh now", icon=":material/sync:")
    st.stop()


# Tiles that fit their column at every width (the browser walk, tests/e2e/test_walk.py, checks it at 1440 and
# 834 px): a label wraps instead of ending in "…", a number shrinks with its tile (cqi: % of the tile's width)
# instead of being cut to "$1…", a word value (a cause, a diagnosis, a range) wraps, and below 1100 px a row of
# tiles wraps to two per line and charts side by side to one per line (a tablet with the menu open leaves ~530 px
# for the page). Style only: st.html sends a lone <style> without taking space on the page.
_TILE_CSS = """<style>
[data-testid="stMetric"] { container-type: inline-size; }
[data-testid="stMetricValue"] { font-size: clamp(0.9rem, 15cqi, 2.25rem); }
[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"],
[data-testid="stMetricLabel"] [data-testid="stMarkdownContainer"] p,
[data-testid="stMetricValue"] [data-testid="stMarkdownContainer"],
[data-testid="stMetricValue"] [data-testid="stMarkdownContainer"] p {
  white-space: normal; overflow: visible; text-overflow: clip; overflow-wrap: break-word;
}
@media (max-width: 1100px) {
  [data-testid="stHorizontalBlock"]:has([data-testid="stMetric"]) { flex-wrap: wrap; }
  [data-testid="stHorizontalBlock"]:has([data-testid="stMetric"]) > [data-testid="stColumn"] {
    min-width: calc(50% - 1rem);
  }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stPlotlyChart"]) { flex-wrap: wrap; }
  [data-testid="stHorizontalBlock"]:has(> [data-testid="stColumn"] [data-testid="stPlotlyChart"])
    > [data-testid="stColumn"] { min-width: 100%; }
}
</style>"""


def page(key: str, needs_data: bool = True) -> PageContext:
    """Guard at the top of every page: the role must be allowed (else refuse and stop), and the
    analytics file must exist (else say how to build it)."""
    user = current_user()
    st.html(_TILE_CSS)
    st.title(PAGE_TITLES[key])
    try:
        require_page(user, key)
    except AccessDenied as exc:
        _audit_refusal(user, key)
        refuse(str(exc), home_page_file(user.role))
    s = settings()
    db = get_db(str(s.analytics_db))
    reader = StReader(db, user.scope)
    filters = st.session_state.get(FILTERS_KEY) or Filters(date.today(), date.today())
    info: dict[str, Any] = {}
    if needs_data:
        try:
            info = build_info(reader)
        except AnalyticsMissing:
            if s.raw_db.exists():  # exports ingested, never built (or the build failed): build, do not re-upload
                _stop_not_built(user)
            _stop_with_sources(source_needs.first_run_message(key, user.role in UPLOAD_ROLES), user)
        except AnalyticsBusy as exc:
            st.warning(str(exc))
            st.stop()
        freshness(info)
        loaded = source_needs.loaded_sources(reader)  # central: every page in PAGE_SOURCES, before any query
        message = None if loaded is None else source_needs.missing_message(key, loaded, PAGE_TITLES[key])
        if message:
            _stop_with_sources(message, user)
    return PageContext(user=user, settings=s, reader=reader, filters=filters, info=info, key=key)


def model_status_notice(ctx: PageContext) -> None:
    """A page that reads models/status.json says so, once, when the file cannot be read (instead of a
    traceback); it then shows what the build scored, as it does when there is no file at all."""
    message = model_cards.status_unavailable(ctx.settings)
    if message:
        st.warning(message, icon=":material/report:")


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


_BAND_BADGE = {
    "in band": ":green[● in healthy band]",
    "below band": ":orange[● below healthy band]",
    "above band": ":orange[● above healthy band]",
    "maturing": ":gray[◌ maturing: outcomes still coming in]",
}
_GOAL_COLOR = {"met": "green", "missed": "red", "maturing": "gray", "no value": "gray"}


def tiles(rows: list[Tile], per_row: int = 4) -> None:
    for i in range(0, len(rows), per_row):
        cols = st.columns(per_row)
        for col, tile in zip(cols, rows[i : i + per_row], strict=False):
            with col:
                st.metric(tile.label, tile.value, tile.delta, delta_color=tile.delta_color, help=tile.help, border=True)
                lines = []
                if tile.note:
                    lines.append(f":gray[{tile.note}]")
                if tile.goal_text:
                    lines.append(f":{_GOAL_COLOR.get(tile.goal, 'gray')}[◎ {tile.goal_text}]")
                if tile.status in _BAND_BADGE:
                    lines.append(_BAND_BADGE[tile.status])
                if lines:
                    st.caption("  \n".join(lines))


def kpi_tiles(
    summary: pd.DataFrame,
    kpis: list[str] | None = None,
    per_row: int = 4,
    compare: str = "previous",
    targets: Mapping[str, float] | None = None,
) -> None:
    """KPI tiles with deltas against `compare` (formatting.COMPARISONS) and each KPI's target, if any."""
    rows = summary if kpis is None else summary[summary["kpi"].isin(kpis)]
    records = rows.to_dict("records")
    for r in records:
        r["target"] = (targets or {}).get(r["kpi"])
    tiles([kpi_tile(r, compare) for r in records], per_row=per_row)


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
        # bytes, not a callable: a deferred download gets a new id on every rerun and its click raced the
        # rerun its own on_click starts ("Deferred file not found"); bytes get a content-hash id, stable
        data=exports.to_csv_bytes(df),
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
    pinned: tuple[str, ...] | list[str] = (),
    placeholder: str = "–",
) -> None:
    """A table as wide as the page that scrolls sideways when it cannot fit, its key columns (`pinned`: the
    channel, source or cause a row is about) kept in view; a missing value reads `placeholder`, never None."""
    if df.empty:
        st.info(empty_message)
        return
    config = dict(column_config or {})
    for col in df.columns:  # a column the page did not label reads as words, never as its snake_case name
        if col not in config and "_" in str(col):
            config[col] = column_header(col)
    for col in pinned:
        spec = config.get(col)
        if spec is None or isinstance(spec, str):
            config[col] = st.column_config.Column(spec or col, pinned=True)
        else:
            config[col] = {**spec, "pinned": True}
    st.dataframe(
        df,
        hide_index=True,
        column_config=config or None,
        height=height,
        key=f"tbl_{key}",
        placeholder=placeholder,
        width="stretch",
    )
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
