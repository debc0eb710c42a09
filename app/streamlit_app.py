"""PT Pulse app entry point: who is this (auth gate), what may they open (navigation by role), and the
shared filters every page reads (date range and clinics, kept in the URL so a view can be shared).

Authentication: OIDC through st.login when `[auth]` is configured in .streamlit/secrets.toml; each email
maps to a role and clinics in roles.yml ($PTPULSE_ROLES_FILE or $PTPULSE_HOME/roles.yml). Without [auth]
the app runs in demo mode: a visible banner and a role picker (preset with PTPULSE_DEMO_ROLE, kept in the URL as
?role= so a reload keeps it; Administrator while nothing is built, so Upload data is one click away).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.lib import auth, filters, ui  # noqa: E402
from app.lib.db import AnalyticsBusy, AnalyticsMissing  # noqa: E402
from app.lib.queries.base import Filters, clinics, data_date_range  # noqa: E402

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="PT Pulse", page_icon=":material/physical_therapy:", layout="wide")


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def practice_clinics(settings) -> list[str]:
    """All clinic ids (for demo scoping); empty when there is no build yet."""
    try:
        reader = ui.StReader(ui.get_db(str(settings.analytics_db)), auth.Scope("admin"))
        return clinics(reader)["clinic_id"].tolist()
    except (AnalyticsMissing, AnalyticsBusy):
        return []


def roles_claim(config: auth.RolesConfig) -> str:
    """The IdP claim that carries groups: `roles_claim:` in roles.yml, else `roles_claim` in the [auth] table
    of secrets.toml, else none (roles come from roles.yml's users and domains only)."""
    if config.claim:
        return config.claim
    try:
        return str((st.secrets.get("auth") or {}).get("roles_claim") or "").strip()
    except (FileNotFoundError, KeyError, AttributeError):
        return ""


def oidc_user(settings) -> auth.User:
    """The signed-in user from st.user and roles.yml; refuses unknown emails."""
    if not st.user.is_logged_in:
        st.title("PT Pulse")
        st.write("Sign in with your practice account to continue.")
        st.button("Sign in", on_click=st.login, type="primary")
        st.stop()
    email = str(st.user.get("email") or "")
    path = auth.roles_file_path(settings.home)
    try:
        config = auth.load_roles(path)
    except ValueError as exc:
        st.error(f"The roles file is invalid: {exc}")
        st.stop()
    verified = st.user.get("email_verified")
    if auth.email_unverified(verified):  # never a role for an address the IdP has not verified (auth.py)
        if st.session_state.get("ptpulse_refusal_audited") != email:
            from app.lib import audit

            audit.log(
                settings.app_db,
                email or "(no email claim)",
                "none",
                "sign_in_refused",
                {"reason": "email_not_verified", "email_verified": str(verified)},
            )
            st.session_state["ptpulse_refusal_audited"] = email
        st.error(
            f"Your sign-in provider has not verified the address {email or '(none)'}, so PT Pulse cannot give it a "
            "role. Verify the address with your provider (or ask your administrator), then sign in again."
        )
        st.button("Sign out", on_click=st.logout)
        st.stop()
    claim = roles_claim(config)
    groups = auth.claim_values(st.user.get(claim)) if claim else ()
    user = auth.user_from_roles(
        email, config, name=str(st.user.get("name") or ""), groups=groups, email_verified=verified
    )
    if user is None:
        if st.session_state.get("ptpulse_refusal_audited") != email:  # once per session and account
            from app.lib import audit

            audit.log(
                settings.app_db, email or "(no email claim)", "none", "sign_in_refused", {"roles_file": str(path)}
            )
            st.session_state["ptpulse_refusal_audited"] = email
        st.error(f"{email or 'This account'} has no PT Pulse role. Ask an administrator to add it to {path}.")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{user.name or user.email}** · {auth.ROLE_LABELS[user.role]}")
        st.button("Sign out", on_click=st.logout, key="logout")
    return user


ROLE_KEY = "ptpulse_demo_role"  # the demo role itself; the picker's widget state is only its view
GO_HOME_KEY = "ptpulse_go_home"


def _role_changed() -> None:
    """A new demo role lands on that role's home page (with its menu), never on a page it may not open.

    The role is kept outside the widget: the switch to the home page starts a run without this run's widget
    values, and the picker would otherwise snap back to the old role."""
    st.session_state[ROLE_KEY] = st.session_state["demo_role"]
    st.session_state[GO_HOME_KEY] = True


def has_served_build(settings) -> bool:
    try:
        return ui.get_db(str(settings.analytics_db)).exists()
    except Exception:  # unreadable: treat as a practice with data (the historical owner default)
        return True


def demo_user(settings) -> auth.User:
    """Demo mode: no sign-in; pick a role. A new browser session starts as the URL's ?role= (kept there so a
    reload keeps the choice), else PTPULSE_DEMO_ROLE, else Administrator while nothing is built (so someone
    trying the app with their own exports lands where Upload data is), else Practice owner."""
    if ROLE_KEY not in st.session_state:
        st.session_state[ROLE_KEY] = auth.initial_demo_role(
            st.query_params.get(auth.DEMO_ROLE_PARAM), has_served_build(settings)
        )
    st.session_state["demo_role"] = st.session_state[ROLE_KEY]
    with st.sidebar:
        role = st.selectbox(
            auth.DEMO_ROLE_LABEL,
            auth.ROLES,
            key="demo_role",
            format_func=auth.ROLE_LABELS.get,
            help="Demo mode: no sign-in is configured. Pick a role to see the app as that user.",
            on_change=_role_changed,
        )
    user = auth.demo_user(role, practice_clinics(settings))
    st.warning(
        f"**Demo mode** — no sign-in is configured, anyone with this URL can use the app. "
        f"You are viewing as **{auth.ROLE_LABELS[role]}**"
        + (f" (clinics {', '.join(user.clinics)})" if user.clinics else "")
        + ".",
        icon=":material/science:",
    )
    return user


PERIOD_NOTE_KEY = "ptpulse_period_note"


def shared_filters(user: auth.User, settings) -> Filters:
    """Date range and clinics in the sidebar, read from and written back to the URL query string."""
    reader = ui.StReader(ui.get_db(str(settings.analytics_db)), user.scope)
    try:
        clinic_df = clinics(reader)
        lo, hi = data_date_range(reader)
    except (AnalyticsMissing, AnalyticsBusy):
        today = date.today()
        return Filters(*filters.default_range(None, None, today))
    options = clinic_df["clinic_id"].tolist()
    names = dict(zip(clinic_df["clinic_id"], clinic_df["clinic_name"], strict=True))
    if "f_dates" not in st.session_state or "f_clinics" not in st.session_state:
        start, end, chosen, note = filters.from_query_checked(st.query_params.to_dict(), lo, hi, options, date.today())
        st.session_state["f_dates"] = (start, end)
        st.session_state["f_clinics"] = chosen
        if note:  # shown once, on the page the link opened (main)
            st.session_state[PERIOD_NOTE_KEY] = note
    st.session_state["f_clinics"] = [c for c in st.session_state["f_clinics"] if c in options]
    with st.sidebar:
        st.subheader("Filters")
        picked = st.date_input(
            "Date range",
            key="f_dates",
            min_value=lo,
            max_value=hi,
            format="YYYY-MM-DD",
            help="Referrals received / activity in this range. Defaults to the last 90 days.",
        )
        chosen = st.multiselect(
            "Clinics",
            options,
            key="f_clinics",
            format_func=lambda c: names.get(c, c),
            placeholder="All my clinics",
            help="Leave empty for every clinic you have access to.",
        )
    if isinstance(picked, (tuple, list)) and len(picked) == 2:
        start, end = picked
    else:  # the user is half-way through picking a range: keep the previous one
        prev = st.session_state.get(ui.FILTERS_KEY)
        start, end = (prev.start, prev.end) if prev else filters.default_range(lo, hi, date.today())
    wanted = filters.to_query(start, end, list(chosen))
    current = st.query_params.to_dict()
    if any(current.get(k) != v for k, v in wanted.items()) or ("clinics" in current and "clinics" not in wanted):
        st.query_params.clear()
        st.query_params.update(wanted)
    return Filters(start, end, tuple(chosen) or None)


def navigation(user: auth.User) -> st.navigation:
    """Every page is registered (so a deep link reaches the page's own guard, which refuses); only the
    role's pages are listed in the menu. The default page is a hidden redirect to the role's home page,
    so every real page keeps its own shareable URL (/overview, /work_queue, ...)."""
    pages: dict[str, st.Page] = {}
    sections: dict[str, list] = {}
    for p in auth.PAGES:
        pages[p.key] = st.Page(
            PAGES_DIR / p.file,
            title=p.title,
            icon=p.icon,
            url_path=p.key,
            visibility="visible" if auth.can_view(user.role, p.key) else "hidden",
        )
        sections.setdefault(p.section, []).append(pages[p.key])
    home = pages[auth.HOME_PAGE[user.role]]
    landing = st.Page(lambda: st.switch_page(home), title="Home", url_path="home", default=True, visibility="hidden")
    sections = {"": [landing], **sections}
    nav = st.navigation(sections)
    mine = [pages[k] for k in auth.pages_for(user.role)]
    if len(mine) < 2:  # Streamlit draws no menu for a single visible page: a one-page role still gets one
        with st.sidebar:
            st.caption("Your pages")
            for p in mine:
                st.page_link(p, label=p.title, icon=p.icon)
    if st.session_state.pop(GO_HOME_KEY, False) and nav.url_path != home.url_path:
        st.switch_page(home)
    return nav


def main() -> None:
    settings = ui.settings()
    user = oidc_user(settings) if auth_configured() else demo_user(settings)
    st.session_state[ui.USER_KEY] = user
    st.session_state[ui.FILTERS_KEY] = shared_filters(user, settings)
    if user.demo and st.query_params.get(auth.DEMO_ROLE_PARAM) != user.role:
        st.query_params[auth.DEMO_ROLE_PARAM] = user.role  # demo only: a reload keeps the picked role
    page = navigation(user)
    st.session_state["ptpulse_page"] = page.url_path
    if page.url_path not in ("", "home") and (note := st.session_state.pop(PERIOD_NOTE_KEY, None)):
        st.warning(note, icon=":material/date_range:")  # not on the redirect, whose output is never shown
    page.run()


main()
