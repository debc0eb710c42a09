"""The ML artifacts a page shows beside its charts (model cards, backtests), read from $PTPULSE_HOME/models.

Pure functions: they return plain dicts and plain-language verdicts, so pages stay thin and tests need no
Streamlit.
"""

from __future__ import annotations

import json
from typing import Any

from ptpulse.core.config import Settings


def not_enough_data(settings: Settings, model: str) -> str | None:
    """'Not enough data yet: <reason>' when `model` produced nothing in the last build for want of data, else None.

    Read from `models/status.json` (written by every ML scoring, one entry per model: no_show, lead, denial,
    demand_backtest, demand_forecast, staffing_gap, attribution); the reason names what is there and the
    minimum the model needs (ml/sufficiency.py), so a page can say which export would light it up.
    """
    path = settings.models_dir / "status.json"
    if not path.exists():
        return None
    entry = (json.loads(path.read_text(encoding="utf-8")).get("models") or {}).get(model) or {}
    if entry.get("status") != "not_trained":
        return None
    return f"Not enough data yet: {entry.get('reason') or 'the model could not be trained'}."


def demand_backtest(settings: Settings) -> dict[str, Any] | None:
    """The demand backtest summary written by `ptpulse train`, or None before the first training."""
    path = settings.models_dir / "demand" / "backtest.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def forecast_verdict(backtest: dict[str, Any]) -> tuple[str, str]:
    """('ok' | 'warn', sentence) telling a manager how far to trust the forecast, from the backtest."""
    rel, cov = backtest.get("relative_mase"), backtest.get("coverage_80")
    if backtest.get("status") == "not_trained" and backtest.get("reason"):
        return "warn", f"Not enough data yet to test the forecast against past weeks: {backtest['reason']}."
    if rel is None:
        return "warn", "Not enough history yet to test the forecast against past weeks."
    if rel >= 1.0:
        return "warn", (
            f"On past weeks this forecast was no better than 'same week last year' (relative error "
            f"{rel:.2f}); treat it as a rough guide until more history builds up."
        )
    coverage = f" and {cov:.0%} of actual weeks fell inside the 80% range" if cov is not None else ""
    return "ok", (f"On past weeks this forecast's error was {rel:.0%} of the 'same week last year' rule's{coverage}.")


def no_show_card(settings: Settings) -> dict[str, Any] | None:
    """The no-show model card written by training (`models/no_show/model_card.json`), or None before it."""
    path = settings.models_dir / "no_show" / "model_card.json"
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def no_show_verdict(card: dict[str, Any] | None) -> tuple[str, str | None]:
    """('ok' | 'fallback' | 'refuse' | 'unknown', sentence): may the no-show scores be shown, and what to say.

    A model that ranked past appointments worse than its own logistic-regression baseline is refused: the
    page and the work queue show this sentence instead of its scores. Training normally prevents it by
    deploying the regression instead ('fallback', said on the page); a card from before that rule, or a
    hand-copied model, can still lose.
    """
    if card is None:
        return "unknown", None
    auc = card.get("roc_auc")
    logit = ((card.get("baselines") or {}).get("logistic_regression") or {}).get("roc_auc")
    if auc is not None and logit is not None and auc < logit:
        return "refuse", (
            f"No-show scores are withheld: on past appointments this model ranked no-shows worse "
            f"than a plain logistic regression on the same features (ROC AUC {auc:.3f} vs "
            f"{logit:.3f}). Retrain (`ptpulse train`, then `ptpulse build`): training now deploys "
            "whichever of the two ranks better."
        )
    cmp = card.get("baseline_comparison") or {}
    if card.get("deployed_model") == "logistic_regression":
        trees = cmp.get("boosted_trees")
        versus = f" (ROC AUC {trees:.3f} vs {logit:.3f})" if trees is not None and logit is not None else ""
        return "fallback", (
            "Scores come from a logistic regression: on past appointments the gradient-boosted "
            f"model ranked no-shows worse than it{versus}, so the simpler model is deployed. "
            "The model card below says more."
        )
    return "ok", None


def no_show_servable(settings: Settings) -> bool:
    """False when the deployed no-show model lost to its baseline (its scores must not reach the queue)."""
    return no_show_verdict(no_show_card(settings))[0] != "refuse"
