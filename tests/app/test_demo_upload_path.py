"""Demo mode with your own data and no terminal (first-run review): the demo used to open as Practice owner, whose
menu has no Upload data page, and the empty home said "Ask an administrator or a clinic manager" -- in a demo that
person is the user, and nothing said to switch the Demo role picker; a browser reload went back to owner.
Now an empty demo opens as Administrator (Upload data one click away), a role that cannot upload is told to pick
Administrator under **Demo role**, and the pick is kept in the URL (?role=) -- in demo mode only. Signed in, the
message still says to ask an administrator and the URL cannot choose a role."""

from __future__ import annotations

import streamlit
from app_helpers import app_test, env, rendered_text

from app.lib import auth
from ptpulse.core.config import get_settings

HINT = "under **Demo role** in the sidebar"


def _empty_home(tmp_path):
    return get_settings(tmp_path / "home").ensure()


def _run(home, monkeypatch, *, role: str | None = None, query: dict | None = None, page: str | None = None):

    monkeypatch.delenv("PTPULSE_DEMO_ROLE", raising=False)
    values = {"PTPULSE_HOME": str(home.home)}
    if role:
        values["PTPULSE_DEMO_ROLE"] = role
    with env(**values):
        at = app_test()
        for key, value in (query or {}).items():
            at.query_params[key] = value
        at.run()
        if page:
            at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _infos(at) -> str:
    return "\n".join(i.value for i in at.info)


def test_an_empty_demo_opens_as_administrator_with_upload_data_reachable(tmp_path, monkeypatch):
    home = _empty_home(tmp_path)
    at = _run(home, monkeypatch)
    assert at.selectbox(key="demo_role").value == "admin"
    assert "Administrator" in at.warning[0].value  # the demo banner: "You are viewing as Administrator"
    text = rendered_text(at)
    assert "app_pages/upload.py" in text or "Upload exports" in text  # the first-run screen links to Upload data
    at.switch_page("app_pages/upload.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.file_uploader, "Upload data did not open for the demo's default role"


def test_a_demo_role_that_cannot_upload_is_told_to_switch_the_demo_role_picker(tmp_path, monkeypatch):
    home = _empty_home(tmp_path)
    at = _run(home, monkeypatch, role="owner")  # PTPULSE_DEMO_ROLE still wins over the empty-home default
    assert at.selectbox(key="demo_role").value == "owner"
    message = _infos(at)
    assert "Ask an administrator or a clinic manager" in message
    assert f"choose **{auth.ROLE_LABELS['admin']}** (or **{auth.ROLE_LABELS['manager']}**) {HINT}" in message
    assert at.selectbox(key="demo_role").label == "Demo role"  # the picker's real label
    # following the hint reaches the page
    at.selectbox(key="demo_role").set_value("admin").run()
    at.switch_page("app_pages/upload.py").run()
    assert at.file_uploader and not at.error


def test_the_demo_role_survives_a_reload_through_the_url(tmp_path, monkeypatch):
    home = _empty_home(tmp_path)
    at = _run(home, monkeypatch)
    with env(PTPULSE_HOME=str(home.home)):
        at.selectbox(key="demo_role").set_value("analyst").run()
    assert at.query_params.get("role") in ("analyst", ["analyst"])
    # a reload is a new session with the same URL
    again = _run(home, monkeypatch, role="owner", query={"role": "analyst"})
    assert again.selectbox(key="demo_role").value == "analyst"
    assert "Analyst" in again.warning[0].value
    junk = _run(home, monkeypatch, role="owner", query={"role": "root"})
    assert junk.selectbox(key="demo_role").value == "owner"


def test_signed_in_users_are_still_told_to_ask_an_administrator_and_the_url_picks_no_role(tmp_path, monkeypatch):
    """Unchanged when sign-in is configured: no demo hint, and ?role=admin does not make an owner an admin.
    (The demo half of the contrast is what the old code lacked.)"""
    from test_auth_email_verified import AUTH, Claims

    home = _empty_home(tmp_path)
    (home.home / "roles.yml").write_text("users:\n  owner@clinic.com: owner\n", encoding="utf-8")
    monkeypatch.setattr(streamlit, "user", Claims(name="Olive", email="owner@clinic.com", email_verified=True))
    with env(PTPULSE_HOME=str(home.home), PTPULSE_ROLES_FILE=str(home.home / "roles.yml")):
        at = app_test()
        at.secrets["auth"] = AUTH
        at.query_params["role"] = "admin"
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    message = _infos(at)
    assert "Ask an administrator or a clinic manager to upload them on the **Upload data** page." in message
    assert "Demo role" not in rendered_text(at) and not any(s.key == "demo_role" for s in at.selectbox)
    assert any("Practice owner" in c.value for c in at.caption)  # still the roles.yml role, not the URL's
    assert "Upload exports" not in rendered_text(at)

    demo = _run(home, monkeypatch, role="owner")
    assert HINT in _infos(demo)


def test_exports_loaded_but_not_built_tell_a_demo_owner_which_role_builds(tmp_path, monkeypatch):
    home = _empty_home(tmp_path)
    home.raw_db.parent.mkdir(parents=True, exist_ok=True)
    home.raw_db.touch()  # exports ingested, no served build yet
    assert _run(home, monkeypatch).selectbox(key="demo_role").value == "admin"
    message = _infos(_run(home, monkeypatch, role="owner"))
    assert "Ask an administrator to build them" in message
    assert f"choose **Administrator** {HINT}" in message


def test_a_demo_with_a_built_practice_still_opens_as_owner_and_messages_name_the_picker(monkeypatch):
    from app.lib import source_needs

    monkeypatch.delenv("PTPULSE_DEMO_ROLE", raising=False)
    assert auth.initial_demo_role(None, has_build=True) == "owner"  # the demo of a built practice, as before
    assert auth.initial_demo_role(None, has_build=False) == "admin"
    assert auth.initial_demo_role(["front-desk"], has_build=False) == "front_desk"
    monkeypatch.setenv("PTPULSE_DEMO_ROLE", "manager")
    assert auth.initial_demo_role("", has_build=False) == "manager"
    assert auth.initial_demo_role("Administrator", has_build=True) == "admin"

    signed_in = source_needs.missing_message("funnel", frozenset(), "Funnel", demo=False, role="owner")
    assert "Demo role" not in signed_in
    assert HINT in source_needs.missing_message("funnel", frozenset(), "Funnel", demo=True, role="owner")
    assert source_needs.missing_message("funnel", frozenset(), "Funnel", demo=True, role="admin") == signed_in
    assert "Demo role" not in source_needs.first_run_message("overview", False)  # outside a run: signed-in text


def test_the_demo_of_a_built_practice_opens_as_owner_and_keeps_the_role_in_the_url(app_home, monkeypatch):
    at = _run(app_home, monkeypatch)
    assert at.selectbox(key="demo_role").value == "owner"
    assert at.query_params.get("role") in ("owner", ["owner"])
    assert not at.error, [e.value for e in at.error]
