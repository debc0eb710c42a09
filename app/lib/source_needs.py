"""Which exports light up which page: the page -> sources mapping behind the page guard (ui.require_tables).

A practice may load any subset of sources (only X12 remittances, only a FHIR export, ...); every mart still
builds, possibly empty. A page whose inputs were never loaded must then say which export would fill it, not
show zeros that read like a real figure. The build lists what it holds in marts.source_coverage (one row per
ingestion contract); the app reads that mart, never raw.duckdb.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.lib.auth import PAGE_ACCESS, UPLOAD_ROLES, demo_switch_hint
from app.lib.queries.base import Reader

COVERAGE_TABLE = "marts.source_coverage"

# What a practice calls the export that feeds each source (ingestion/contracts/<source>.yml).
EXPORT_LABELS: Mapping[str, str] = {
    "authorizations": "an authorizations export",
    "charges": "a charges export (or 837P claim files)",
    "claims": "a claims export (or 837P claim files)",
    "clinics": "a clinics reference file",
    "documentation_events": "a documentation (notes) export",
    "intake_events": "an intake / referrals export",
    "marketing_spend": "a marketing spend sheet",
    "marketing_touches": "a marketing touches export",
    "patients": "a patients export",
    "payers": "a payers reference file",
    "referring_physicians": "a referring physicians reference file",
    "remittances": "a remittances export (or 835 files)",
    "scheduling_events": "a scheduling export",
    "therapists": "a therapists reference file",
}

# Page key -> groups of sources. The page needs at least one loaded source of EVERY group; within a group any
# one will do (the Overview has figures as soon as either referrals, visits or billing are in). Pages not
# listed (Data health, Admin, SQL) read only what the build always has.
PAGE_SOURCES: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "overview": (("scheduling_events", "intake_events", "charges", "claims"),),
    "funnel": (("intake_events",),),
    "referral_sources": (("intake_events",),),
    "attribution": (("intake_events",), ("marketing_touches", "marketing_spend")),
    "leakage": (("scheduling_events", "intake_events", "claims"),),
    "work_queue": (("intake_events", "scheduling_events", "documentation_events", "authorizations", "charges"),),
    "no_show": (("scheduling_events",),),
    "forecast": (("intake_events", "scheduling_events"),),
    "therapists": (("scheduling_events", "charges"),),
    "revenue": (("claims", "remittances"),),
    "diagnoses": (("intake_events",),),
    "year_over_year": (("scheduling_events", "intake_events", "charges", "claims"),),
}


def loaded_sources(reader: Reader) -> frozenset[str] | None:
    """Sources the served build holds rows of; None when the build predates marts.source_coverage."""
    if not reader.has(COVERAGE_TABLE):
        return None
    frame = reader.df(f"select source from {COVERAGE_TABLE} where is_loaded")
    return frozenset(frame["source"].tolist())


def _session_user() -> object | None:
    """The user of the current Streamlit run (set by app/streamlit_app.py), or None outside a run."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is None:
            return None
        import streamlit as st

        return st.session_state.get("ptpulse_user")  # app.lib.ui.USER_KEY (ui imports this module)
    except Exception:  # never let a hint break the page
        return None


def _demo_hint(allowed: frozenset[str], demo: bool | None, role: str | None) -> str:
    """Demo mode (no sign-in) and a role outside `allowed`: the person to ask is the user, so say which role to
    pick. Signed in, or a role that may already do it: nothing. Unset `demo`/`role` come from the session."""
    if demo is None or role is None:
        user = _session_user()
        demo = bool(getattr(user, "demo", False)) if demo is None else demo
        role = getattr(user, "role", None) if role is None else role
    if not demo or role in allowed:
        return ""
    return " " + demo_switch_hint(allowed)


def missing_message(
    page: str, loaded: frozenset[str], what: str, *, demo: bool | None = None, role: str | None = None
) -> str | None:
    """The "load X" sentence for a page whose needed sources were never loaded, or None when it can show data.

    Names each export with its source (the contract and file name) so the user knows which file to send."""
    unmet = [group for group in PAGE_SOURCES.get(page, ()) if not set(group) & loaded]
    if not unmet:
        return None
    wanted = " and ".join(" or ".join(f"{EXPORT_LABELS.get(s, s)} ({s})" for s in group) for group in unmet)
    return (
        f"**No data for this page yet.** Load {wanted} to see {what or 'this page'}: upload the files on the "
        "**Upload data** page (administrators and clinic managers), or run `ptpulse refresh <file or folder>`. "
        "Data health lists what has been loaded so far." + _demo_hint(UPLOAD_ROLES, demo, role)
    )


# What a new practice loads first, in the order that lights up most of the app (first-run screen).
FIRST_LOAD: tuple[str, ...] = (
    "clinics",
    "patients",
    "intake_events",
    "scheduling_events",
    "charges",
    "claims",
    "remittances",
    "marketing_touches",
    "marketing_spend",
)


def first_run_message(page: str, can_upload: bool, *, demo: bool | None = None, role: str | None = None) -> str:
    """The first-run screen (no analytics build yet): what to load, for this page first, and who can load it.

    In demo mode the one who can load it is the user, under another role: the message names the role picker."""
    needs = [s for group in PAGE_SOURCES.get(page, ()) for s in group]
    rest = [s for s in FIRST_LOAD if s not in needs]
    page_part = (
        "This page needs " + " or ".join(f"{EXPORT_LABELS.get(s, s)} (`{s}`)" for s in needs) + ". " if needs else ""
    )
    how = (
        "Upload them on the **Upload data** page: they are checked, loaded and the dashboards built in the "
        "background, no terminal needed."
        if can_upload
        else "Ask an administrator or a clinic manager to upload them on the **Upload data** page."
        + _demo_hint(UPLOAD_ROLES, demo, role or "")
    )
    return (
        "**Welcome to PT Pulse: no data has been loaded yet.** "
        + page_part
        + "Start with your practice-management exports: "
        + ", ".join(f"{EXPORT_LABELS.get(s, s)} (`{s}`)" for s in rest)
        + ". Name each CSV after what it holds (for example `intake_events.csv`). "
        + how
    )


def not_built_message(can_build: bool, *, demo: bool | None = None, role: str | None = None) -> str:
    """The screen for a home whose exports are loaded but whose dashboards are not built yet (the build has
    not run, or failed): nothing needs uploading again; the build does (admins: Admin -> Refresh now)."""
    how = (
        "Build them with **Admin → Refresh now** (or run `ptpulse build` on the server); if a build failed, "
        "the Admin page shows its log."
        if can_build
        else "Ask an administrator to build them (**Admin → Refresh now**, or `ptpulse build` on the server)."
        + _demo_hint(PAGE_ACCESS["admin"], demo, role or "")
    )
    return (
        "**Your data is loaded, but the dashboards are not built yet** (the build has not run, or the last one "
        "failed). There is no need to upload the exports again. " + how
    )
