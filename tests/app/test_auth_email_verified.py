"""No role for an address the IdP has not verified: a self-registered or multi-tenant account can carry any
email (attacker@clinic.com), and a `domains:` rule in roles.yml would hand it the domain's role. The sign-in is
refused and audited when the `email_verified` claim is present and false; an IdP that sends no such claim is
unaffected. The app runs through AppTest with [auth] configured; only Streamlit's `st.user` (the IdP's claims)
is stood in for, as no IdP runs here."""

from __future__ import annotations

import pytest
import streamlit
from app_helpers import app_test, env

from app.lib import audit, auth

ROLES = (
    "users:\n  owner@clinic.com: owner\ndomains:\n  clinic.com: {role: manager}\nclaim_roles:\n  pt-desk: front_desk\n"
)
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x",
    "client_id": "c",
    "client_secret": "s",
    "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration",
    "roles_claim": "groups",
}


class Claims(dict):
    """What `st.user` is for a signed-in account: the IdP's claims, read with .get and attributes."""

    is_logged_in = True

    def __getattr__(self, key):
        return self.get(key)


def _sign_in(home, monkeypatch, **claims):

    (home.home / "roles.yml").write_text(ROLES, encoding="utf-8")
    monkeypatch.setattr(streamlit, "user", Claims(name="Mallory", iss="https://idp.example", **claims))
    with env(PTPULSE_HOME=str(home.home), PTPULSE_ROLES_FILE=str(home.home / "roles.yml")):
        at = app_test()
        at.secrets["auth"] = AUTH
        at.run()
    return at


@pytest.mark.parametrize("verified", [False, "false"])
def test_an_unverified_email_gets_no_domain_role_and_is_audited(app_home, copy_home, monkeypatch, verified):
    home = copy_home(app_home)
    at = _sign_in(home, monkeypatch, email="attacker@clinic.com", email_verified=verified)
    assert not at.exception
    assert any("has not verified the address attacker@clinic.com" in e.value for e in at.error)
    assert not any("Signed in as" in c.value for c in at.sidebar.caption)
    log = audit.recent(home.app_db)
    refused = log[(log["event"] == "sign_in_refused") & (log["actor"] == "attacker@clinic.com")]
    assert len(refused) == 1 and "email_not_verified" in refused.iloc[0]["detail"]


def test_verified_or_unstated_emails_sign_in_as_before(app_home, copy_home, monkeypatch):
    home = copy_home(app_home)
    for claims in ({"email_verified": True}, {}):  # an IdP may send no email_verified claim at all
        at = _sign_in(home, monkeypatch, email="ann@clinic.com", **claims)
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert any("Signed in as" in c.value and "Clinic manager" in c.value for c in at.sidebar.caption)


def test_the_rule_covers_users_groups_and_domains():
    cfg = auth.parse_roles(ROLES)
    for email, groups in (("owner@clinic.com", ()), ("x@else.test", ("pt-desk",)), ("a@clinic.com", ())):
        assert auth.user_from_roles(email, cfg, groups=groups) is not None
        assert auth.user_from_roles(email, cfg, groups=groups, email_verified=True) is not None
        assert auth.user_from_roles(email, cfg, groups=groups, email_verified=False) is None
        assert auth.user_from_roles(email, cfg, groups=groups, email_verified="FALSE") is None
