"""The ML artifacts a page shows beside its charts (model cards, backtests), read from $PTPULSE_HOME/models.

Pure functions: they return plain dicts and plain-language verdicts, so pages stay thin and tests need no
Streamlit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptpulse.config import Settings


def demand_backtest(settings: Settings) -> dict[str, Any] | None:
    """The demand backtest summary written by `ptpulse train`, or None before the first training."""
    path = settings.models_dir / "demand" / "backtest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def forecast_verdict(backtest: dict[str, Any]) -> tuple[str, str]:
    """('ok' | 'warn', sentence) telling a manager how far to trust the forecast, from the backtest."""
    rel, cov = backtest.get("relative_mase"), backtest.get("coverage_80")
    if rel is None:
        return "warn", "Not enough history yet to test the forecast against past weeks."
    if rel >= 1.0:
        return "warn", (f"On past weeks this forecast was no better than 'same week last year' (relative error "
                        f"{rel:.2f}); treat it as a rough guide until more history builds up.")
    coverage = f" and {cov:.0%} of actual weeks fell inside the 80% range" if cov is not None else ""
    return "ok", (f"On past weeks this forecast's error was {rel:.0%} of the 'same week last year' rule's"
                  f"{coverage}.")
