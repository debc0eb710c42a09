from __future__ import annotations

import pytest

from app.lib import auth


def test_every_page_has_a_title_and_someone_who_may_open_it():
    assert set(auth.PAGE_ACCESS) == set(auth.PAGE_TITLES)
    for page, roles in auth.PAGE_ACCESS.items():
        assert roles, page
        assert roles <= set(auth.ROLES)


def test_home_page_is_allowed_for_each_role():
    for role in auth.ROLES:
        assert auth.can_view(role, auth.HOME_PAGE[role])


def test_sql_is_analyst_only_and_admin_is_admin_only():
    assert auth.PAGE_ACCESS["sql"] == {"analyst"}
    assert auth.PAGE_ACCESS["admin"] == {"admin"}


def test_deidentified_roles_cannot_see_phi():
    assert not auth.Scope("marketing").phi
    assert not auth.Scope("analyst").phi
    assert auth.Scope("front_desk").phi


def test_require_page_refuses_with_reason():
    user = auth.User(email="m@x", role="marketing")
    with pytest.raises(auth.AccessDenied, match="Work queue"):
        auth.require_page(user, "work_queue")
    auth.require_page(user, "attribution")


def test_scope_intersects_requested_clinics():
    scoped = auth.Scope("front_desk", ("C1", "C2"))
    assert scoped.effective_clinics(None) == ("C1", "C2")
    assert scoped.effective_clinics(["C2", "C9"]) == ("C2",)
    assert scoped.effective_clinics(["C9"]) == ()
    assert auth.Scope("owner").effective_clinics(None) is None
    assert auth.Scope("owner").effective_clinics(["C9"]) == ("C9",)


def test_scope_key_differs_by_role_and_clinics():
    keys = {
        auth.Scope("owner").key,
        auth.Scope("marketing").key,
        auth.Scope("front_desk", ("C1",)).key,
        auth.Scope("front_desk", ("C2",)).key,
    }
    assert len(keys) == 4


def test_roles_file_maps_email_and_domain():
    cfg = auth.parse_roles("""
users:
  Owner@Clinic.com: owner
  desk@clinic.com: {role: front_desk, clinics: [C001]}
domains:
  agency.com: {role: marketing}
""")
    owner = auth.user_from_roles("owner@clinic.com", cfg)
    assert owner.role == "owner" and owner.clinics is None
    desk = auth.user_from_roles("DESK@clinic.com", cfg)
    assert desk.role == "front_desk" and desk.clinics == ("C001",)
    assert auth.user_from_roles("ann@agency.com", cfg).role == "marketing"
    assert auth.user_from_roles("stranger@else.com", cfg) is None


def test_roles_file_errors_name_the_entry():
    with pytest.raises(ValueError, match="users.bob@x.com.*unknown role 'boss'"):
        auth.parse_roles("users:\n  bob@x.com: boss\n", source="roles.yml")


def test_demo_user_scopes_front_desk_to_first_clinic(monkeypatch):
    monkeypatch.delenv("PTPULSE_DEMO_CLINICS", raising=False)
    assert auth.demo_user("front_desk", ["C1", "C2"]).clinics == ("C1",)
    assert auth.demo_user("owner", ["C1", "C2"]).clinics is None
    monkeypatch.setenv("PTPULSE_DEMO_CLINICS", "C2")
    assert auth.demo_user("owner", ["C1", "C2"]).clinics == ("C2",)


def test_demo_role_from_env(monkeypatch):
    monkeypatch.setenv("PTPULSE_DEMO_ROLE", "front_desk")
    assert auth.demo_role_from_env() == "front_desk"
    monkeypatch.setenv("PTPULSE_DEMO_ROLE", "hacker")
    assert auth.demo_role_from_env() == "owner"


def test_pages_are_declared_once_and_feed_menu_and_matrix():
    """One PAGES registry: every page file is declared (and nothing else), the access matrix and titles are
    views of it, and the app's navigation builds its menu from it (no second list in streamlit_app.py)."""
    from pathlib import Path

    app_dir = Path(auth.__file__).resolve().parents[1]
    files = {p.name for p in (app_dir / "app_pages").glob("*.py") if p.name != "__init__.py"}
    assert {p.file for p in auth.PAGES} == files
    assert list(auth.PAGE_ACCESS) == [p.key for p in auth.PAGES]
    assert all(auth.PAGE_ACCESS[p.key] == p.roles and auth.PAGE_TITLES[p.key] == p.title for p in auth.PAGES)
    assert [p.section for p in auth.PAGES] == sorted(
        [p.section for p in auth.PAGES], key=["Practice", "Operations", "Data"].index
    )
    entry = (app_dir / "streamlit_app.py").read_text(encoding="utf-8")
    assert "auth.PAGES" in entry and "ICONS" not in entry and "SECTIONS" not in entry
    with pytest.raises(ValueError, match="unknown role"):
        auth._page("x", "X", ":material/x:", "Data", "janitor")
