"""Sign-in against a real OIDC provider: oidc-provider-mock on the loopback address, the app served by
`ptpulse app` with `[auth]` in its .streamlit/secrets.toml, Debian's chromium signing in.

An owner and a front-desk user get their roles from roles.yml, a liaison hers from the IdP's `groups` claim
(`roles_claim` in [auth], `claim_roles:` in roles.yml); an unknown user is refused; sign-out ends the
session; a user removed from roles.yml is refused at the next request. Never runs `playwright install`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.e2e_helpers import TIMEOUT_MS

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium"),
]


def _wait_up(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the app did not come up:\n{log.read_text()[-3000:]}")


ROLES_YML = """\
users:
  owner@practice.test: owner
  desk@practice.test: {role: front_desk}
claim_roles:
  pt-marketing: marketing
"""


@pytest.fixture
def oidc_app(built_home, tmp_path):
    """The OIDC provider, and the app signed in through it, with roles.yml naming an owner and a front desk."""
    from oidc_provider_mock import run_server_in_thread

    home = tmp_path / "home"
    shutil.copytree(built_home.home, home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    (home / "roles.yml").write_text(ROLES_YML, encoding="utf-8")
    with run_server_in_thread() as server:
        idp = f"http://localhost:{server.server_port}"
        # a user the roles file does not name: the IdP's groups claim gives the role (claim_roles: below)
        body = json.dumps({"email": "liaison@practice.test", "groups": ["staff", "PT-Marketing"]}).encode()
        req = urllib.request.Request(f"{idp}/users/liaison@practice.test", data=body, method="PUT")
        req.add_header("Content-Type", "application/json")
        urllib.request.urlopen(req, timeout=10).close()
        port = free_port()
        url = f"http://localhost:{port}"
        work = tmp_path / "work"
        (work / ".streamlit").mkdir(parents=True)
        (work / ".streamlit" / "secrets.toml").write_text(
            "[auth]\n"
            f'redirect_uri = "{url}/oauth2callback"\n'
            'cookie_secret = "test-cookie-secret-not-a-real-one"\n'
            'client_id = "ptpulse"\n'
            'client_secret = "test-client-secret"\n'
            f'server_metadata_url = "{idp}/.well-known/openid-configuration"\n'
            'roles_claim = "groups"\n',
            encoding="utf-8",
        )
        log = tmp_path / "app.log"
        env = dict(os.environ, HOME=str(tmp_path / "user"))  # no ~/.streamlit of the machine
        env.pop("PTPULSE_DEMO_ROLE", None)
        cmd = [sys.executable, "-m", "ptpulse.cli", "app", "--home", str(home), "--port", str(port)]
        with open(log, "wb") as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=str(work), stdout=fh, stderr=subprocess.STDOUT)
        try:
            _wait_up(f"http://127.0.0.1:{port}", proc, log)
            yield url, home
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _sign_in(page, url: str, email: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="sub"]').fill(email)  # the provider's authorization form
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{url}/**")


def _sign_out(page, url: str) -> None:
    """Sign out in the app; st.logout ends the session at the provider too (RP-initiated logout)."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Sign out").first.click()
    end = page.get_by_role("button", name="End session")
    end.wait_for()
    end.click()
    page.goto(url)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_owner_front_desk_and_unknown_user_sign_in_through_oidc(oidc_app, chromium):
    from playwright.sync_api import expect

    url, home = oidc_app
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})  # the session's chromium
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)

        _sign_in(page, url, "owner@practice.test")
        expect(page.get_by_text("Signed in as")).to_be_visible()
        expect(page.get_by_text("Practice owner").first).to_be_visible()
        assert page.get_by_text("Demo mode").count() == 0
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()  # the owner's home page
        _sign_out(page, url)

        _sign_in(page, url, "desk@practice.test")
        expect(page.get_by_text("Front desk").first).to_be_visible()
        expect(page.get_by_role("heading", name="Work queue", level=1)).to_be_visible()  # front desk's home
        assert page.get_by_role("link", name="Overview").count() == 0  # not in the front desk's menu
        # removed from roles.yml: the next request refuses the session
        (home / "roles.yml").write_text(ROLES_YML.replace("  desk@practice.test: {role: front_desk}\n", ""))
        page.reload()
        expect(page.get_by_text("has no PT Pulse role")).to_be_visible()
        _sign_out(page, url)

        _sign_in(page, url, "liaison@practice.test")  # role from the groups claim, not from users:
        expect(page.get_by_text("Marketing / liaison").first).to_be_visible()
        expect(page.get_by_role("heading", name="Referral sources", level=1)).to_be_visible()
        assert page.get_by_role("link", name="Data health").count() == 0
        # the group's mapping removed from roles.yml: the next request refuses the session
        (home / "roles.yml").write_text("users:\n  owner@practice.test: owner\n", encoding="utf-8")
        page.reload()
        expect(page.get_by_text("has no PT Pulse role")).to_be_visible()
        _sign_out(page, url)

        _sign_in(page, url, "stranger@elsewhere.test")
        expect(page.get_by_text("has no PT Pulse role")).to_be_visible()
        assert page.get_by_role("heading", name="Work queue").count() == 0
        assert page.get_by_text("Signed in as").count() == 0
    finally:
        context.close()
    # both refusals are in the audit log, with the account and no role
    con = sqlite3.connect(home / "app.sqlite")
    refused = con.execute("select actor, role from audit_log where event = 'sign_in_refused' order by id").fetchall()
    assert refused == [
        ("desk@practice.test", "none"),
        ("liaison@practice.test", "none"),
        ("stranger@elsewhere.test", "none"),
    ]
