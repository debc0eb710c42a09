"""The owner's weekly digest: last week's KPI tiles, the biggest movers (as a chart image), the top leakage item.

Why here and built from the pages' own questions: the digest must say what the Overview and Revenue leakage
pages say for the same week (kpi_summary, kpi_tile, current_goals, the leakage range), so it reuses them
instead of a second set of SQL. No patient appears in it: aggregates only.

Run weekly by a systemd timer (docs/deploy.md section 8):

    python -m app.lib.digest            # $PTPULSE_HOME; recipients PTPULSE_DIGEST_TO or [smtp] digest_to
    python -m app.lib.digest --html /tmp/digest.html --no-send    # look at it first
"""

from __future__ import annotations

import argparse
import html as htmllib
import math
import os
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from app.lib import chromium, goals, leakage
from app.lib.auth import Scope
from app.lib.db import AnalyticsDb
from app.lib.formatting import fmt, kpi_tile
from app.lib.queries.base import DbReader, Filters, Reader, build_info
from app.lib.queries.leakage import revenue_leakage
from app.lib.queries.overview import kpi_summary
from ptpulse.core import outbound
from ptpulse.core.config import Settings, get_settings

TILES = 8  # the first KPI_ORDER tiles with a value
MOVERS = 3
CHART_CID = "movers-chart"
STALE_EXIT = 3  # sent, but the build did not cover the week: the timer's unit is marked failed (OnFailure alert)


@dataclass(frozen=True)
class Digest:
    week: Filters
    tiles: pd.DataFrame  # kpi, label, value_text, delta_text, status, goal
    movers: pd.DataFrame  # kpi, label, value_text, previous_text, change (relative), direction improved|worsened
    leak: dict[str, Any] | None  # label, low_usd, high_usd, window
    subject: str
    stale: str = ""  # said first when the served build does not cover the week (`coverage_notice`), else ""

    def text(self) -> str:
        lines = [self.subject, ""] + ([self.stale, ""] if self.stale else [])
        lines += ["Key figures (change against the week before):"]
        for t in self.tiles.itertuples():
            lines.append(
                f"  {t.label}: {t.value_text}" + (f" ({t.delta_text})" if t.delta_text else "") + f" · {t.goal}"
            )
        lines += ["", "Biggest movers:"]
        for m in self.movers.itertuples():
            lines.append(f"  {m.label}: {m.previous_text} -> {m.value_text} ({m.change:+.0%}, {m.direction})")
        if not len(self.movers):
            lines.append("  none: no KPI moved with both weeks measured")
        if self.leak:
            lines += [
                "",
                f"Top revenue leakage ({self.leak['window']}): {self.leak['label']}, "
                f"{fmt(self.leak['low_usd'], 'usd')}–{fmt(self.leak['high_usd'], 'usd')} at stake.",
            ]
        lines += ["", "Open PT Pulse for the details (Overview, Revenue leakage)."]
        return "\n".join(lines)


def last_full_week(today: date) -> Filters:
    """The Monday–Sunday week before the one `today` is in."""
    monday = today - timedelta(days=today.weekday()) - timedelta(days=7)
    return Filters(monday, monday + timedelta(days=6))


# A build made after the week ended covers it when its data reaches at least this many days before the week's
# last day: a practice closed at weekends records nothing on Saturday or Sunday.
COVER_GRACE_DAYS = 2


def practice_zone() -> Any:
    """The zone the digest's week is in: the practice's ($PTPULSE_DEFAULT_TIMEZONE), else the server's named zone,
    else None (the server's local time)."""
    from app.lib.outreach import default_zone
    from ptpulse.core.zones import server_zone

    return default_zone() or server_zone()


def send_date(now: datetime | None = None) -> date:
    """Today on the practice's wall clock: the day the digest is sent, which decides the week it reports."""
    now = now or datetime.now(UTC)
    zone = practice_zone()
    return now.astimezone(zone).date() if zone is not None else now.astimezone().date()


def _utc(value: Any) -> datetime | None:
    """build_info.built_at (UTC without a zone) as an aware time; None when absent."""
    if value is None or (not isinstance(value, str | datetime) and pd.isna(value)):
        return None
    try:
        t = pd.Timestamp(value).to_pydatetime()
    except (TypeError, ValueError):
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def coverage_notice(week: Filters, as_of: Any, built_at: Any) -> str:
    """'' when the served build covers `week`, else the sentence the digest opens with ('Data through ...').

    Covered: the data reaches the week's last day, or the build was made after the week ended (on the practice's
    clock) and its data reaches the week's last working days (COVER_GRACE_DAYS). A nightly refresh failing since
    leaves an older build: the week is then reported as far as the data goes, and says so first."""
    through = _utc(as_of)
    data_day = through.date() if through is not None else None  # as_of is the clinics' wall clock, no zone
    if data_day is not None and data_day >= week.end:
        return ""
    built = _utc(built_at)
    zone = practice_zone()
    built_day = None if built is None else (built.astimezone(zone) if zone else built.astimezone()).date()
    if (
        data_day is not None
        and built_day is not None
        and built_day > week.end
        and data_day >= week.end - timedelta(days=COVER_GRACE_DAYS)
    ):
        return ""
    when = f"{data_day:%a %b %-d}" if data_day else "an unknown date"
    built_text = f", last built {built_day:%a %b %-d}" if built_day else ""
    return (
        f"Data through {when} only{built_text}: this digest does not cover the whole week of "
        f"{week.start:%b %-d}–{week.end:%b %-d}. The nightly refresh may be failing: see `ptpulse health`."
    )


def compose(r: Reader, app_db, today: date, info: dict[str, Any] | None = None) -> Digest:
    """The digest of the week before `today` (the pages' queries, the owner's targets); `info` is the build's
    build_info row (as_of, built_at): when the build does not cover that week the digest says so first."""
    week = last_full_week(today)
    info = build_info(r) if info is None else info
    stale = coverage_notice(week, info.get("as_of"), info.get("built_at"))
    summary = kpi_summary(r, week)
    targets = goals.targets_for(goals.current_goals(app_db), None)
    summary["target"] = summary["kpi"].map(targets)
    rows = []
    for row in summary.to_dict("records"):
        tile = kpi_tile(row)
        rows.append(
            {
                "kpi": row["kpi"],
                "label": tile.label,
                "value_text": tile.value,
                "delta_text": tile.delta or "",
                "status": tile.status,
                "goal": tile.goal_text or tile.goal,
                "has_value": row.get("value") is not None and not pd.isna(row.get("value")),
            }
        )
    tiles = pd.DataFrame(rows)
    tiles = tiles[tiles["has_value"]].head(TILES).drop(columns="has_value").reset_index(drop=True)

    both = summary[summary["value"].notna() & summary["previous"].notna() & (summary["previous"] != 0)].copy()
    both = both[~both["is_maturing"].fillna(False).astype(bool)]
    both["change"] = (both["value"] - both["previous"]) / both["previous"].abs()
    both = both[both["change"].map(math.isfinite) & (both["change"] != 0)]
    both = both.reindex(both["change"].abs().sort_values(ascending=False).index).head(MOVERS)
    up_good = both["better"].eq("higher")
    improved = (both["change"] > 0) == up_good
    movers = pd.DataFrame(
        {
            "kpi": both["kpi"],
            "label": both["label"],
            "value_text": [fmt(v, u) for v, u in zip(both["value"], both["unit"], strict=True)],
            "previous_text": [fmt(v, u) for v, u in zip(both["previous"], both["unit"], strict=True)],
            "change": both["change"].astype(float),
            "direction": improved.map({True: "improved", False: "worsened"}),
        }
    ).reset_index(drop=True)

    window = Filters(week.end - timedelta(days=89), week.end)
    leaks = revenue_leakage(r, window)
    leak = None
    if len(leaks):
        top = leakage.by_category(leakage.with_range(leaks)).iloc[0]
        if float(top["high_usd"]) > 0:
            leak = {
                "category": top["category"],
                "label": top["label"],
                "low_usd": float(top["low_usd"]),
                "high_usd": float(top["high_usd"]),
                "window": f"{window.start:%b %-d}–{window.end:%b %-d}",
            }
    subject = f"PT Pulse weekly: week of {week.start:%a %b %-d}" + (" (data incomplete)" if stale else "")
    return Digest(week=week, tiles=tiles, movers=movers, leak=leak, subject=subject, stale=stale)


def chart_html(d: Digest) -> str:
    """The movers as bars (green improved, red worsened), drawn with CSS and photographed by Chromium."""
    top = max([abs(c) for c in d.movers["change"]] + [0.01])
    bars = []
    for m in d.movers.itertuples():
        width = max(2, int(300 * abs(m.change) / top))
        color = "#2f9e44" if m.direction == "improved" else "#e03131"
        bars.append(
            f'<div class="row"><div class="l">{htmllib.escape(str(m.label))}</div>'
            f'<div class="b" style="width:{width}px;background:{color}"></div>'
            f'<div class="v">{m.change:+.0%} ({htmllib.escape(m.previous_text)} → {htmllib.escape(m.value_text)})</div>'
            "</div>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>"
        "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:16px;color:#1f2933;background:#fff}"
        "h2{font-size:16px;margin:0 0 12px}.row{display:flex;align-items:center;margin:10px 0}"
        ".l{width:230px;font-size:13px}.b{height:22px;border-radius:3px}.v{margin-left:10px;font-size:13px}"
        f"</style></head><body><h2>Biggest movers, week of {d.week.start:%b %-d}</h2>{''.join(bars)}</body></html>"
    )


def email_html(d: Digest, with_chart: bool) -> str:
    esc = htmllib.escape
    cells = "".join(
        f"<td style='border:1px solid #cbd2d9;padding:8px;vertical-align:top;width:25%'>"
        f"<div style='color:#52606d;font-size:12px'>{esc(t.label)}</div>"
        f"<div style='font-size:20px;font-weight:bold'>{esc(t.value_text)}</div>"
        f"<div style='font-size:12px'>{esc(t.delta_text)}</div>"
        f"<div style='color:#52606d;font-size:11px'>{esc(str(t.goal))}</div></td>" + ("</tr><tr>" if i % 4 == 3 else "")
        for i, t in enumerate(d.tiles.itertuples())
    )
    leak = (
        f"<p><b>Top revenue leakage</b> ({esc(d.leak['window'])}): {esc(d.leak['label'])}, "
        f"{fmt(d.leak['low_usd'], 'usd')}–{fmt(d.leak['high_usd'], 'usd')} at stake.</p>"
        if d.leak
        else ""
    )
    chart = f"<p><img src='cid:{CHART_CID}' alt='Biggest movers' width='720'></p>" if with_chart else ""
    movers = "".join(
        f"<li>{esc(str(m.label))}: {esc(m.previous_text)} → {esc(m.value_text)} ({m.change:+.0%}, {m.direction})</li>"
        for m in d.movers.itertuples()
    )
    return (
        f"<html><body style='font-family:Arial,sans-serif;color:#1f2933'><h2>{esc(d.subject)}</h2>"
        + (
            f"<p style='background:#fff3bf;border:1px solid #f59f00;padding:8px'><b>{esc(d.stale)}</b></p>"
            if d.stale
            else ""
        )
        + f"<table style='border-collapse:collapse'><tr>{cells}</tr></table>"
        f"<h3>Biggest movers</h3>{chart}<ul>{movers or '<li>No KPI moved with both weeks measured.</li>'}</ul>"
        f"{leak}<p style='color:#7b8794;font-size:12px'>Open PT Pulse for the details.</p></body></html>"
    )


def recipients(secrets: dict[str, Any] | None = None) -> list[str]:
    """PTPULSE_DIGEST_TO, else `digest_to` of [smtp] in secrets.toml (comma-separated)."""
    value = os.environ.get("PTPULSE_DIGEST_TO")
    if value is None:
        table = (outbound.read_secrets() if secrets is None else secrets).get("smtp") or {}
        value = str(table.get("digest_to", "")) if isinstance(table, dict) else ""
    return [a.strip() for a in value.split(",") if a.strip()]


def send(d: Digest, smtp: outbound.SmtpSettings, to: list[str]) -> str:
    """Email the digest (text + HTML with the movers chart inline when Chromium could draw it)."""
    images = []
    if len(d.movers):
        try:
            images.append(
                outbound.Attachment(
                    "movers.png", chromium.png(chart_html(d), 720, 60 + 46 * len(d.movers)), "image/png", cid=CHART_CID
                )
            )
        except chromium.ChromiumError:
            images = []  # the text and tiles still go out; the movers are listed in words anyway
    return outbound.send_email(smtp, d.subject, d.text(), to=to, attachments=images, html=email_html(d, bool(images)))


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.lib.digest", description="Email the owner's weekly digest.")
    p.add_argument("--today", help="Pretend today is this date (YYYY-MM-DD); default: today on the practice's clock")
    p.add_argument("--to", help="Comma-separated recipients (default PTPULSE_DIGEST_TO or [smtp] digest_to)")
    p.add_argument("--html", help="Also write the email's HTML to this file")
    p.add_argument("--no-send", action="store_true", help="Compose only (with --html to look at it)")
    args = p.parse_args(argv)
    settings = settings or get_settings()
    if not settings.analytics_db.exists():
        print(f"No analytics build at {settings.analytics_db}: run `ptpulse refresh` first.", file=sys.stderr)
        return 2
    r = DbReader(AnalyticsDb(settings.analytics_db), Scope("owner"))
    # the week before the send date, never the build's as_of: a failing nightly refresh must not resend an old week
    today = date.fromisoformat(args.today) if args.today else send_date()
    d = compose(r, settings.app_db, today)
    if d.stale:  # the timer's journal (and its OnFailure= hook, exit code 3) say so too
        print(f"warning: the served build is stale. {d.stale}", file=sys.stderr)
    if args.html:
        with open(args.html, "w", encoding="utf-8") as fh:
            fh.write(email_html(d, False))
    if args.no_send:
        print(d.text())
        return 0
    try:
        smtp = outbound.smtp_settings(need_recipients=False)
    except outbound.OutboundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    to = [a.strip() for a in args.to.split(",")] if args.to else recipients()
    if smtp is None or not to:
        print(
            "Digest not sent: set PTPULSE_SMTP_HOST (or [smtp] host) and PTPULSE_DIGEST_TO (or [smtp] digest_to).",
            file=sys.stderr,
        )
        return 2
    try:
        send(d, smtp, to)
    except outbound.OutboundError as exc:
        print(f"Digest not sent: {exc}", file=sys.stderr)
        return 1
    print(f"{datetime.now():%Y-%m-%d %H:%M} digest for the week of {d.week.start} emailed to {len(to)} recipient(s).")
    return STALE_EXIT if d.stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
