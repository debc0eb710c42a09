"""Real local servers for the outbound tests: an SMTP server (aiosmtpd) and a Twilio-shaped SMS API
(http.server in a thread) that records each request and can be told to fail the next ones."""

from __future__ import annotations

import base64
import json
import socket
import threading
import urllib.parse
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ptpulse.core.outbound import EmailChannel, SmsChannel, SmsSettings, SmtpSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """What the local SMTP server received: one parsed email per message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd handler hook
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    """(inbox, EmailChannel) for a real SMTP server on 127.0.0.1 (no TLS, no login)."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", sender="clinic@practice.test")
    try:
        yield inbox, EmailChannel(settings)
    finally:
        controller.stop()


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
