"""`ptpulse generate --format`: each format in its own subfolder, native kept only when asked for."""

from __future__ import annotations

from typer.testing import CliRunner

from ptpulse.cli import app


def test_generate_writes_each_format_in_its_folder(tmp_path):
    out = tmp_path / "p"
    result = CliRunner().invoke(
        app, ["generate", "--out", str(out), "--dirty", "0", "--format", "webpt", "--format", "x12"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["webpt", "x12"]  # the native work folder is removed
    assert sorted(p.name for p in (out / "webpt").iterdir()) == [
        "webpt_appointments.csv",
        "webpt_authorizations.csv",
        "webpt_charges.csv",
        "webpt_transactions.csv",
    ]
    assert {p.suffix for p in (out / "x12").iterdir()} == {".835", ".837"}
    assert (out / "x12" / "837P_202610.837").read_text().startswith("ISA*00*")


def test_generate_native_with_a_format_keeps_native_in_its_folder(tmp_path):
    out = tmp_path / "p"
    result = CliRunner().invoke(app, ["generate", "--out", str(out), "--dirty", "0", "--format", "native,webpt"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["native", "webpt"]
    assert (out / "native" / "claims.csv").exists() and (out / "native" / "truth" / "manifest.json").exists()


def test_generate_refuses_an_unknown_format(tmp_path):
    result = CliRunner().invoke(app, ["generate", "--out", str(tmp_path / "p"), "--format", "hl7v2"])
    assert result.exit_code == 2
    assert "hl7v2 is not a format" in result.output and "webpt" in result.output
    assert not (tmp_path / "p").exists()
