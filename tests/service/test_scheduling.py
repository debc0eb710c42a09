"""Fast service tests without a build: the cron schedule, service.yml, when an export counts as complete,
archiving, the alert email itself (real SMTP server), and demo mode refusing a network address."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from typer.testing import CliRunner

from ptpulse.cli import app as cli
from ptpulse.core.config import get_settings
from ptpulse.notify import Alert, Problem, read_secrets, send_alert, smtp_settings
from ptpulse.serve import ConfigError, Cron, archive_export, demo_bind_refusal, load_config, ready_exports


def test_cron_next_runs():
    nightly = Cron.parse("0 2 * * *")
    assert nightly.next_after(datetime(2026, 11, 30, 1, 59)) == datetime(2026, 11, 30, 2, 0)
    assert nightly.next_after(datetime(2026, 11, 30, 2, 0)) == datetime(2026, 12, 1, 2, 0)  # strictly after
    weekdays = Cron.parse("30 6 * * 1-5")  # Mon-Fri 06:30; 2026-12-05 is a Saturday
    assert weekdays.next_after(datetime(2026, 12, 4, 7, 0)) == datetime(2026, 12, 7, 6, 30)
    sunday = Cron.parse("0 3 * * 0")
    assert sunday.next_after(datetime(2026, 11, 30, 0, 0)) == datetime(2026, 12, 6, 3, 0)
    assert Cron.parse("*/15 * * * *").next_after(datetime(2026, 1, 1, 10, 16)) == datetime(2026, 1, 1, 10, 30)
    assert Cron.parse("0 0 1 */3 *").next_after(datetime(2026, 2, 10)) == datetime(2026, 4, 1)
    assert Cron.parse("@nightly") == nightly
    assert Cron.parse("off") is None


@pytest.mark.parametrize("text", ["0 2 * *", "61 2 * * *", "0 2 * * mon", "0 2 30 2 *"])
def test_bad_schedules_are_refused_by_name(text):
    with pytest.raises(ConfigError, match="schedule"):
        Cron.parse(text).next_after(datetime(2026, 1, 1))


def test_service_yml_read_and_refused(tmp_path):
    settings = get_settings(tmp_path).ensure()
    (tmp_path / "service.yml").write_text(
        "schedule: '15 3 * * *'\nsettle_seconds: 5\ncadence_hours: {marketing_spend: 7d, clinics: 48h}\n"
    )
    cfg = load_config(settings, poll_seconds=0.5)
    assert (cfg.schedule, cfg.settle_seconds, cfg.poll_seconds) == ("15 3 * * *", 5.0, 0.5)
    assert cfg.cadence_hours["marketing_spend"] == 168 and cfg.cadence_hours["clinics"] == 48
    assert cfg.cadence_hours["charges"] == 48  # defaults kept for sources not named
    assert cfg.backoff(1) == 120 and cfg.backoff(3) == 480 and cfg.backoff(20) == 3600
    (tmp_path / "service.yml").write_text("shedule: '0 2 * * *'\n")
    with pytest.raises(ConfigError, match=r"service\.yml: unknown key\(s\) shedule"):
        load_config(settings)
    (tmp_path / "service.yml").write_text("schedule: 'at two'\n")
    with pytest.raises(ConfigError, match=r"service\.yml: schedule: .* needs 5 fields"):
        load_config(settings)


def test_export_is_ready_when_settled_marked_or_manifest_complete(tmp_path):
    incoming = tmp_path / "incoming"
    (incoming / "processed").mkdir(parents=True)
    growing = incoming / "nightly"
    growing.mkdir()
    (growing / "charges.csv").write_text("a,b\n1,2\n")
    (incoming / "claims.csv.part").write_text("in flight")  # a transfer not finished: never an export
    watches: dict = {}
    assert ready_exports(incoming, watches, settle_s=60, clock=1000) == []
    assert ready_exports(incoming, watches, settle_s=60, clock=1059) == []
    with open(growing / "charges.csv", "a") as fh:  # still growing: the settle clock starts again
        fh.write("3,4\n")
    assert ready_exports(incoming, watches, settle_s=60, clock=1070) == []
    assert ready_exports(incoming, watches, settle_s=60, clock=1129) == []
    assert ready_exports(incoming, watches, settle_s=60, clock=1130) == [growing]

    marked = incoming / "marked"
    marked.mkdir()
    (marked / "intake_events.csv").write_text("x\n")
    (marked / ".done").write_text("")
    assert marked in ready_exports(incoming, watches, settle_s=60, clock=1131)  # the marker: at once

    vendor = incoming / "vendor"
    (vendor / "truth").mkdir(parents=True)
    (vendor / "truth" / "manifest.json").write_text(
        json.dumps({"rows": {"patients.csv": 3, "claims.csv": 2, "truth/appointment_truth.csv": 1}})
    )
    (vendor / "patients.csv").write_text("x\n")
    (vendor / ".done").write_text("")
    assert vendor not in ready_exports(incoming, watches, settle_s=0, clock=2000)  # claims.csv missing
    (vendor / "claims.csv").write_text("x\n")
    assert vendor in ready_exports(incoming, watches, settle_s=0, clock=2001)

    settings = get_settings(tmp_path)
    moved = archive_export(settings, marked, ok=False, stamp="20261130-020000")
    assert moved == incoming / "failed" / "20261130-020000-marked" and not marked.exists()
    assert (moved / "intake_events.csv").exists()
    loose = incoming / "remittances.835"
    loose.write_text("ISA*")
    (incoming / "remittances.835.done").write_text("")
    assert loose in ready_exports(incoming, watches, settle_s=600, clock=3000)
    archive_export(settings, loose, ok=True, stamp="s")
    assert (incoming / "processed" / "s-remittances.835").exists()
    assert not (incoming / "remittances.835.done").exists()


def test_alert_email_reaches_the_smtp_server(smtp_inbox):
    sent, detail = send_alert(
        Alert(
            "PT Pulse: refresh needs attention",
            "summary line",
            (Problem("nightly/claims.csv", "refused: missing column claim_id", "fix the export"),),
        )
    )
    assert sent, detail
    (msg,) = smtp_inbox.messages
    assert msg["To"] == "admin@practice.test" and msg["Subject"] == "PT Pulse: refresh needs attention"
    body = msg.get_payload(decode=True).decode()
    assert "nightly/claims.csv" in body and "problem: refused: missing column claim_id" in body
    assert "fix: fix the export" in body


def test_smtp_settings_from_secrets_never_show_the_password(tmp_path, monkeypatch, no_secrets):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        '[smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\nuser = "u"\npassword = "s3cret-pw"\n'
        'alert_to = "a@x.test, b@x.test"\n'
    )
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(secrets))
    settings = smtp_settings()
    assert settings.to == ("a@x.test", "b@x.test") and settings.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(settings)
    sent, detail = send_alert(Alert("s", "b"), settings)  # nothing listens on port 1
    assert not sent and "127.0.0.1:1" in detail and "s3cret-pw" not in detail
    monkeypatch.setenv("PTPULSE_SMTP_HOST", "")  # env wins over the file: alerts off, and it says how to turn on
    sent, detail = send_alert(Alert("s", "b"))
    assert not sent and "PTPULSE_SMTP_HOST" in detail
    secrets.write_text('[smtp\npassword = "s3cret-pw"')
    with pytest.raises(Exception, match="not valid TOML") as err:
        read_secrets()
    assert "s3cret-pw" not in str(err.value)


def test_demo_mode_refuses_a_network_address(tmp_path, monkeypatch, no_secrets):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.streamlit/secrets.toml of the machine
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert demo_bind_refusal(host, allow_demo_on_network=False) is None
    refusal = demo_bind_refusal("0.0.0.0", allow_demo_on_network=False)
    assert "refusing to serve demo mode on 0.0.0.0" in refusal and "--allow-demo-on-network" in refusal
    assert demo_bind_refusal("0.0.0.0", allow_demo_on_network=True) is None

    result = CliRunner().invoke(cli, ["app", "--host", "0.0.0.0", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "refusing to serve demo mode" in result.output
    result = CliRunner().invoke(cli, ["serve", "--host", "192.168.1.20", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "--allow-demo-on-network" in result.output

    # with sign-in configured ([auth] in the secrets.toml st.login reads) a network address is fine; a
    # PTPULSE_SECRETS_FILE (SMTP settings only) does not count: Streamlit never reads it
    other = tmp_path / "smtp-only.toml"
    other.write_text('[auth]\nredirect_uri = "https://pulse.example/oauth2callback"\n')
    monkeypatch.setenv("PTPULSE_SECRETS_FILE", str(other))
    assert demo_bind_refusal("0.0.0.0", allow_demo_on_network=False) is not None
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "https://pulse.example/oauth2callback"\ncookie_secret = "x"\n'
    )
    assert demo_bind_refusal("0.0.0.0", allow_demo_on_network=False) is None
