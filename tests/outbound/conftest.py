"""Real local servers for the outbound tests: an SMTP server (aiosmtpd) and a Twilio-shaped SMS API
(http.server in a thread) that records each request and can be told to fail the next ones."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ptpulse.core.outbound import EmailChannel, SmsChannel, SmsSettings, SmtpSettings


@pytest.fixture
def setup(tmp_path):
    """(app.sqlite path, templates, policy) of the outreach tests: the shipped templates and policy, retries without
    the wait."""
    import dataclasses

    from app.lib import outreach

    templates, policy = outreach.load()
    return tmp_path / "app.sqlite", templates, dataclasses.replace(policy, retry_wait_s=0.01)


@pytest.fixture
def print_browser() -> str:
    """The Chromium that prints reports and charts (app/lib/chromium.py); skips, as the browser tests do, on a
    machine without one (.ci/run installs Debian's)."""
    from app.lib import chromium

    try:
        return chromium.executable()
    except chromium.ChromiumError:
        pytest.skip("needs a Chromium to print with (apt-get install -y chromium); .ci/run installs it")


@pytest.fixture
def smtp_server(local_smtp):
    """(inbox, EmailChannel) for the real local SMTP server (tests/conftest.py)."""
    inbox, port = local_smtp
    return inbox, EmailChannel(
        SmtpSettings(host="127.0.0.1", port=port, security="none", sender="clinic@practice.test")
    )


class SmsApi:
    """The recorded requests (path, auth user/password, form fields) and the answers still to fail with."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next: list[int] = []  # HTTP codes to answer with, one per coming request


@pytest.fixture
def sms_server():
    """(api, SmsChannel) for a local Twilio-compatible Messages endpoint on 127.0.0.1."""
    api = SmsApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's hook name
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
            auth = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:]).decode()
            user, _, password = auth.partition(":")
            api.requests.append({"path": self.path, "user": user, "password": password, "form": form})
            if api.fail_next:
                code = api.fail_next.pop(0)
                self.send_response(code)
                self.end_headers()
                self.wfile.write(json.dumps({"code": 21211, "message": f"refused {form.get('To')}"}).encode())
                return
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"sid": f"SM{len(api.requests):032d}", "status": "queued"}).encode())

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = SmsSettings(
        account_sid="ACtest0001",
        sender="+15550000000",
        auth_token="tok-secret-123",
        base_url=f"http://127.0.0.1:{server.server_address[1]}",
    )
    try:
        yield api, SmsChannel(settings)
    finally:
        server.shutdown()
        server.server_close()
