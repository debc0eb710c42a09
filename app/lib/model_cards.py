"""The ML artifacts a page shows beside its charts (model cards, backtests), read from $PTPULSE_HOME/models.

Pure functions: they return plain dicts and plain-language verdicts, so pages stay thin and tests need no
Streamlit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.lib.queries.forecast import COVERAGE_BAND, coverage_off
from ptpulse.core.config import Settings

STATUS_UNAVAILABLE = (
    "Model status unavailable: the models' status file (models/status.json) cannot be read, so this page cannot "
    "say whether a model was skipped for want of data. Figures below come from the last scored build. The next "
    "`ptpulse build` rewrites the file."
)


UNREADABLE: dict[str, Any] = {"status": "unreadable"}  # what a damaged JSON artifact reads as (never raises)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object written by training or scoring: None when there is no file, UNREADABLE (a copy) when the
    file is not a JSON object (truncated, damaged, unreadable): a damaged file must never become a traceback."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return dict(UNREADABLE)
    return data if isinstance(data, dict) else dict(UNREADABLE)


def is_unreadable(data: dict[str, Any] | None) -> bool:
    return data is not None and data.get("status") == UNREADABLE["status"] and len(data) == 1


def _status_models(settings: Settings) -> dict[str, Any] | None:
    """The `models` mapping of models/status.json; {} when there is no file; None when it cannot be read."""
    data = read_json(settings.models_dir / "status.json")
    if data is None:
        return {}
    models = None if is_unreadable(data) else data.get("models", {})
    return models if isinstance(models, dict) else None


def status_unavailable(settings: Settings) -> str | None:
    """STATUS_UNAVAILABLE when models/status.json exists but cannot be read, else None (pages show it once)."""
    return STATUS_UNAVAILABLE if _status_models(settings) is None else None


def not_enough_data(settings: Settings, model: str) -> str | None:
    """'Not enough data yet: <reason>' when `model` produced nothing in the last build for want of data, else None.

    Read from `models/status.json` (written by every ML scoring, one entry per model: no_show, lead, denial,
    demand_backtest, demand_forecast, staffing_gap, attribution); the reason names what is there and the
    minimum the model needs (ml/sufficiency.py), so a page can say which export would light it up. A file that
    cannot be read says nothing here (as no file does); status_unavailable() is the page's message for it.
    """
    models = _status_models(settings) or {}
    entry = models.get(model) or {}
    if not isinstance(entry, dict):
        return None
    if entry.get("status") != "not_trained":
        return None
    if entry.get("withheld"):  # trained and measured, but no better than what needs no model: not served
        why = str(entry.get("reason") or "the model did no better than its baselines").removeprefix("not served: ")
        return f"Scores withheld: {why}."
    return f"Not enough data yet: {entry.get('reason') or 'the model could not be trained'}."


def closed_forecast(settings: Settings, series: str, metric: str, label: str) -> str | None:
    """Why `series`' `metric` is forecast 0, when scoring found it closed (ml.demand.closed_series, recorded in
    models/status.json under demand_forecast.closed), else None."""
    entry = (_status_models(settings) or {}).get("demand_forecast")
    closed = entry.get("closed") if isinstance(entry, dict) else None
    for row in closed if isinstance(closed, list) else []:
        if isinstance(row, dict) and row.get("series") == series and row.get("metric") == metric:
            return (
                f"No {label.lower()} in the last {row.get('zero_weeks')} complete weeks (since the week of "
                f"{row.get('since')}): this looks closed, so its forecast is 0 and it has no staffing gap."
            )
    return None


def demand_backtest(settings: Settings) -> dict[str, Any] | None:
    """The demand backtest summary written by `ptpulse train`, None before the first training, UNREADABLE when
    the file is damaged (forecast_verdict says so)."""
    return read_json(settings.models_dir / "demand" / "backtest.json")


def forecast_verdict(backtest: dict[str, Any]) -> tuple[str, str]:
    """('ok' | 'warn', sentence) telling a manager how far to trust the forecast, from the backtest: 'warn' when it
    loses to the baseline or its 80% range held a share of weeks outside COVERAGE_BAND (the page's honest band)."""
    if is_unreadable(backtest):
        return "warn", (
            "The forecast's backtest file (models/demand/backtest.json) cannot be read, so how far to trust the "
            "forecast is unknown until the next training (`ptpulse train` or `ptpulse refresh`) rewrites it."
        )
    rel, cov = backtest.get("relative_mase"), backtest.get("coverage_80")
    if backtest.get("status") == "not_trained" and backtest.get("reason"):
        return "warn", f"Not enough data yet to test the forecast against past weeks: {backtest['reason']}."
    if rel is None and backtest.get("headline_series"):  # a scoped user's clinic (scoped_backtest)
        return "warn", (
            "This clinic was not backtested on its own (only the busiest clinics are), so how far to trust its "
            "forecast is not measured yet."
        )
    if rel is None:
        return "warn", "Not enough history yet to test the forecast against past weeks."
    if rel >= 1.0:
        return "warn", (
            f"On past weeks this forecast was no better than 'same week last year' (relative error "
            f"{rel:.2f}); treat it as a rough guide until more history builds up."
        )
    error = f"On past weeks this forecast's error was {rel:.0%} of the 'same week last year' rule's"
    if coverage_off(backtest):  # a point that wins with a band that lies is not 'ok': plan on the range, not luck
        low, high = COVERAGE_BAND
        return "warn", (
            f"{error}, but {cov:.0%} of actual weeks fell inside its 80% range (an honest range holds "
            f"{low:.0%}–{high:.0%}): "
            + ("expect more weeks outside it." if cov < low else "it is wider than it needs to be.")
        )
    coverage = f" and {cov:.0%} of actual weeks fell inside the 80% range" if cov is not None else ""
    return "ok", f"{error}{coverage}."


def no_show_card(settings: Settings) -> dict[str, Any] | None:
    """The no-show model card written by training (`models/no_show/model_card.json`), None before it,
    UNREADABLE when the file is damaged."""
    return read_json(settings.models_dir / "no_show" / "model_card.json")


def no_show_verdict(card: dict[str, Any] | None) -> tuple[str, str | None]:
    """('ok' | 'fallback' | 'refuse' | 'unknown', sentence): may the no-show scores be shown, and what to say.

    A model that ranked past appointments worse than its own logistic-regression baseline is refused: the
    page and the work queue show this sentence instead of its scores. Training normally prevents it by
    deploying the regression instead ('fallback', said on the page); a card from before that rule, or a
    hand-copied model, can still lose. When both models lost to the patient's own history rate (or to always
    saying the practice rate), training serves that rate instead ('fallback', said plainly), or nothing when
    even that is no better than chance (a `withheld` card: 'refuse').
    """
    if card is None:
        return "unknown", None
    if is_unreadable(card):
        # the deployed model is the one training chose; only the card saying so is damaged
        return "unknown", (
            "The no-show model card (models/no_show/model_card.json) cannot be read, so this page cannot show "
            "how the model compared with its baseline. Scores are those of the last scored build; the next "
            "training (`ptpulse train`) rewrites the card."
        )
    auc = card.get("roc_auc")
    logit = ((card.get("baselines") or {}).get("logistic_regression") or {}).get("roc_auc")
    cmp = card.get("baseline_comparison") or {}
    if card.get("withheld") is True:  # training measured the models and served nothing (ml/no_show.serving_choice)
        return "refuse", (
            "No-show scores are withheld: "
            + (card.get("reason") or "on past appointments no model predicted no-shows better than chance")
            + ". The next training tries again as appointments build up."
        )
    if card.get("deployed_model") == "history_rate":
        why = cmp.get("why")
        return "fallback", (
            "Scores are each patient's own no-show rate so far, not a trained model: "
            + (f"on past appointments {why}. " if why else "on past appointments the trained models did worse. ")
            + "Risk bands rank patients by their own record; a later training tries the models again."
        )
    if auc is not None and logit is not None and auc < logit:
        return "refuse", (
            f"No-show scores are withheld: on past appointments this model ranked no-shows worse "
            f"than a plain logistic regression on the same features (ROC AUC {auc:.3f} vs "
            f"{logit:.3f}). Retrain (`ptpulse train`, then `ptpulse build`): training now deploys "
            "whichever of the two ranks better."
        )
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


# ------------------------------------------------------------------------------ the card, in the user's scope
_HEADING = re.compile(r"^(#+)\s*(.*?)\s*$")


def scoped_card_markdown(text: str, clinics: Iterable[str] | None) -> str:
    """The model card's markdown as a user scoped to `clinics` may read it (None = every clinic: unchanged).

    Its 'By subgroup -> clinic' table keeps the user's clinics' rows only (a table left with no row says so), and
    every practice-wide count goes: the train/test sizes and rates, the risk bands' counts, the other subgroup
    tables. With two clinics, the practice's test size and rate minus the user's clinic row gave the other clinic's
    (n, no-show rate). The metrics (ROC AUC, Brier, calibration) stay: they count nobody."""
    if clinics is None:
        return text
    allowed = set(clinics)
    out: list[str] = []
    in_clinic = in_subgroups = False
    skipping: int | None = None  # the heading level of a practice-wide section being left out
    seen_header = kept = 0
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            level, title = len(heading.group(1)), heading.group(2).strip().lower()
            if in_clinic and seen_header and not kept:
                out.append("| (no clinic of yours in the test period) |")
            if skipping is not None and level <= skipping:
                skipping = None
            if level == 2:
                in_subgroups = title.startswith("by subgroup")
            in_clinic = title == "clinic" and level >= 3
            seen_header = kept = 0
            out.append(line)
            if skipping is None and (
                (level == 2 and title.startswith("risk bands")) or (in_subgroups and level >= 3 and not in_clinic)
            ):
                skipping = level
                out += ["", PRACTICE_ONLY]
            continue
        if skipping is not None or line.startswith(_PRACTICE_LINES):
            continue
        if in_clinic and line.lstrip().startswith("|"):
            first = line.strip().strip("|").split("|")[0].strip()
            if not seen_header or set(first) <= set("-: "):
                seen_header += 1
                out.append(line)
            elif first in allowed:
                kept += 1
                out.append(line)
            continue
        out.append(line)
    if in_clinic and seen_header and not kept:
        out.append("| (no clinic of yours in the test period) |")
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


PRACTICE_ONLY = "(practice-wide counts: shown to users of every clinic)"
# card lines that state practice-wide counts or rates (the train/test sizes, the constant predictor's Brier = r(1-r))
_PRACTICE_LINES = ("Trained on ", "Brier score of always predicting")
# what a scoped user reads of the JSON card: the model, how it was chosen and its metrics, not the practice's counts
_SCOPED_JSON_KEYS = (
    "status", "reason", "roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece",
    "deployed_model", "withheld", "model_version", "trained_at", "as_of", "population", "label", "scoring_time",
    "features", "dropped_features", "calibration", "risk_bands",
)  # fmt: skip


def scoped_card_json(card: dict[str, Any], clinics: Iterable[str] | None) -> dict[str, Any]:
    """The JSON model card as a user scoped to `clinics` may read it (None = every clinic: unchanged): the model and
    its metrics, and `subgroups.clinic` of the user's clinics only; no practice-wide count (scoped_card_markdown)."""
    if clinics is None:
        return card
    allowed = set(clinics)
    out = {k: card[k] for k in _SCOPED_JSON_KEYS if k in card}
    subgroups = card.get("subgroups")
    if isinstance(subgroups, dict) and isinstance(subgroups.get("clinic"), dict):
        out["subgroups"] = {"clinic": {k: v for k, v in subgroups["clinic"].items() if k in allowed}}
    out["practice_wide"] = PRACTICE_ONLY
    return out


# headline and pooled figures computed over every clinic (or the whole practice): never shown to a scoped user
_PRACTICE_FIGURES = (
    "mase",
    "baseline_mase",
    "relative_mase",
    "smape",
    "coverage_80",
    "coverage_80_raw",
    "by_metric",
    "practice_extra",
    "clinics",
    "interval_scale",
)


def scoped_backtest(
    backtest: dict[str, Any] | None, clinics: Iterable[str] | None, series: str
) -> dict[str, Any] | None:
    """backtest.json as a user scoped to `clinics` may see it (None = every clinic: unchanged).

    Rows of other clinics and of the whole practice (ALL) are dropped, and the headline figures become the
    pooled row of `series`, the clinic on screen (None when it was not backtested on its own), so a manager of
    CL001 reads neither CL002's errors nor the practice's. `headline_series` tells forecast_verdict whose they are.
    """
    if clinics is None or backtest is None or is_unreadable(backtest):
        return backtest
    allowed = set(clinics)

    def mine(rows: Any) -> list[dict[str, Any]]:
        return [r for r in rows or [] if isinstance(r, dict) and r.get("series") in allowed]

    breakdown = mine(backtest.get("breakdown"))
    pooled = next((r for r in breakdown if r.get("series") == series and r.get("metric") == "pooled"), {})
    return {
        **{k: v for k, v in backtest.items() if k not in _PRACTICE_FIGURES},
        **{k: pooled.get(k) for k in ("mase", "baseline_mase", "relative_mase", "smape", "coverage_80")},
        "headline_series": series,
        "scope": f"headline figures: {series} alone, metrics pooled",
        "series": [s for s in backtest.get("series") or [] if s in allowed],
        "breakdown": breakdown,
        "hidden_losses": mine(backtest.get("hidden_losses")),
        "pooled_hides_loss": False,  # that flag is about the whole practice's pooled figure
        "forecasts": mine(backtest.get("forecasts")),
    }
