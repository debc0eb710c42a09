"""The monthly referrer report: the marts' figures for one referring physician, as HTML and as a PDF printed
by the Chromium the project already uses (headless --print-to-pdf; no extra PDF library).

Why HTML first: the same page is what a test reads the figures from, what the app previews, and what
Chromium prints, so the PDF cannot disagree with the marts.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from app.lib import chromium

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "referrer_report.html"


class ReportError(RuntimeError):
    """The PDF could not be made (says what to install or set)."""


def _text(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()


def physician_name(p: dict[str, Any]) -> str:
    """The referring physician as the report addresses them: the directory's display name (`physician_name`,
    'Sonya Estrada, MD'; not patient PHI, so every role's report has it), else first and last name with the
    credential, else the NPI."""
    if _text(p.get("physician_name")):
        return _text(p["physician_name"])
    name = " ".join(_text(p.get(k)) for k in ("first_name", "last_name")).strip()
    return (
        f"{name}, {_text(p['credential'])}"
        if name and _text(p.get("credential"))
        else name or _text(p.get("physician_id"))
    )


def _cell(v: Any) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "–"
    if isinstance(v, pd.Timestamp | datetime | date):
        return f"{pd.Timestamp(v):%Y-%m-%d}"
    if isinstance(v, float):
        return f"{v:.1f}" if v != int(v) else f"{v:.0f}"
    return str(v)


def render_html(report: dict[str, Any], practice: str, as_of: date | str, show_patients: bool = True) -> str:
    """The report page (autoescaped: names from the EMR cannot inject markup); without `show_patients`
    (a de-identified role) only the totals, no per-patient table."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    rows = report["rows"].copy()
    if "outcome_change" in rows:
        rows["outcome_change"] = ["–" if pd.isna(v) else f"{float(v):+.1f}" for v in rows["outcome_change"]]
    records = [{k: _cell(v) for k, v in r.items()} for r in rows.to_dict("records")]
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        practice=practice,
        physician=report["physician"],
        physician_name=physician_name(report["physician"]),
        month_label=f"{report['month']:%B %Y}",
        as_of=str(as_of)[:10],
        totals=report["totals"],
        rows=records,
        show_patients=show_patients,
    )


def render_pdf(html: str) -> bytes:
    """The report printed by headless Chromium (app/lib/chromium.py)."""
    try:
        return chromium.pdf(html)
    except chromium.ChromiumError as exc:
        raise ReportError(str(exc)) from None


def filename(report: dict[str, Any]) -> str:
    """referrals-<physician's family name>-<YYYY-MM>.pdf (the NPI when the directory has no name); never a
    patient's."""
    p = report["physician"]
    family = _text(p.get("physician_family_name")) or _text(p.get("last_name")) or _text(p.get("physician_id"))
    last = "".join(ch for ch in family if ch.isalnum())
    return f"referrals-{last}-{report['month']:%Y-%m}.pdf"
