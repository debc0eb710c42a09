"""The owner's weekly digest: the Overview's figures for last week, the biggest movers as an inline chart
image, the top leakage item; emailed to the local SMTP server by the same entry point the timer runs."""

from __future__ import annotations

import email as email_parser
import shutil
from datetime import date
from email import policy as email_policy

import pytest

from app.lib import digest, goals
from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.formatting import fmt
from app.lib.queries.base import DbReader, build_info
from app.lib.queries.overview import kpi_summary
from ptpulse.core.config import get_settings


@pytest.fixture(scope="module")
def home(built_home, tmp_path_factory):
    target = tmp_path_factory.mktemp("digest_home") / "home"
    shutil.copytree(built_home.home, target, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    return get_settings(target)


def test_digest_figures_are_the_overview_figures(home):
    r = DbReader(AnalyticsDb(home.analytics_db), Scope("owner"))
    today = build_info(r)["as_of"].date()
    goals.set_goal(home.app_db, "no_show_rate", 0.05, "owner@x", "owner")
    d = digest.compose(r, home.app_db, today)
    assert d.week.start.weekday() == 0 and (d.week.end - d.week.start).days == 6 and d.week.end < today
    summary = kpi_summary(r, d.week).set_index("kpi")
    assert len(d.tiles) == digest.TILES
    for t in d.tiles.itertuples():
        assert t.value_text == fmt(summary.loc[t.kpi, "value"], summary.loc[t.kpi, "unit"])
    assert "target" in d.tiles.set_index("kpi").loc["no_show_rate", "goal"].lower()
    changes = d.movers["change"].abs().tolist()
    assert changes == sorted(changes, reverse=True) and len(d.movers) == digest.MOVERS
    for m in d.movers.itertuples():
        row = summary.loc[m.kpi]
        assert m.change == pytest.approx((row["value"] - row["previous"]) / abs(row["previous"]))
        assert m.direction == ("improved" if (m.change > 0) == (row["better"] == "higher") else "worsened")
    assert d.leak is not None and d.leak["high_usd"] >= d.leak["low_usd"] > 0
    assert d.leak["label"] in d.text() and "patient" not in d.text().lower()


def test_digest_is_emailed_with_the_chart_inline(home, smtp_server, monkeypatch, tmp_path, print_browser):
    inbox, channel = smtp_server
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PTPULSE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("PTPULSE_SMTP_PORT", str(channel.settings.port))
    monkeypatch.setenv("PTPULSE_SMTP_SECURITY", "none")
    monkeypatch.setenv("PTPULSE_SMTP_FROM", "pulse@practice.test")
    monkeypatch.setenv("PTPULSE_DIGEST_TO", "owner@practice.test")
    monkeypatch.delenv("PTPULSE_ALERT_TO", raising=False)
    out = tmp_path / "digest.html"
    today = build_info(DbReader(AnalyticsDb(home.analytics_db), Scope("owner")))["as_of"].date()
    # the week before the send date (default: today); the fixture's data is not current, so it is pretended
    assert digest.main(["--html", str(out), "--today", str(today)], settings=home) == 0
    (received,) = inbox.messages
    msg = email_parser.message_from_bytes(received.as_bytes(), policy=email_policy.default)
    assert msg["To"] == "owner@practice.test" and msg["Subject"].startswith("PT Pulse weekly: week of ")
    html = msg.get_body(("html",)).get_content()
    assert f"cid:{digest.CHART_CID}" in html and "Biggest movers" in html
    (image,) = [p for p in msg.walk() if p.get_content_type() == "image/png"]
    assert image["Content-ID"] == f"<{digest.CHART_CID}>" and image.get_content().startswith(b"\x89PNG")
    assert "Top revenue leakage" in msg.get_body(("plain",)).get_content()
    assert out.read_text().startswith("<html>")


def test_digest_without_recipients_says_what_to_set(home, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(tmp_path / "none.toml"))
    for name in ("PTPULSE_SMTP_HOST", "PTPULSE_DIGEST_TO"):
        monkeypatch.delenv(name, raising=False)
    assert digest.main(["--today", str(date(2026, 1, 15))], settings=home) == 2
    assert "PTPULSE_DIGEST_TO" in capsys.readouterr().err
