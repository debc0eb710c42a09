"""Entry points the CLI and the build call: `train` (fit, evaluate, write artifacts) and `score` (write `ml.*`).

`score` runs inside the build, on the new analytics file before it is swapped in: it opens that file
read-write, trains first when no usable model exists, writes every `ml` table with create-or-replace (so a
re-run is idempotent) and closes its connection before returning.

Truth (generator runs only): `train(..., truth_dir=...)` or `$PTPULSE_TRUTH_DIR` -> `oracle_roc_auc` and
the channel rank correlation in the artifacts; otherwise those are null.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ml import artifacts, attribution, demand, denial, denial_reuse, lead, mmm, no_show, sufficiency, tabular, warehouse
from ml.evaluation import spearman
from ml.features import FEATURES, LEAD_HOURS, build_features, labelled_targets, upcoming_targets
from ptpulse.core.config import Settings
from ptpulse.core.progress import ProgressFn

TRAIN_STEPS = 6
SCORE_STEPS = 6
THREADS_ENV = tabular.THREADS_ENV
# Appointments the no-show model trains on at most (~50 clinics x 3 years, ~1.5 GB of frames and features);
# above it a hash share of patients is used (warehouse.read_marts), said on the card. docs/scale.md.
ROW_BUDGET_ENV = "PTPULSE_ML_ROW_BUDGET"
DEFAULT_ROW_BUDGET = 1_500_000
DENIAL_ROW_BUDGET = 1_000_000  # claims: each carries its lines and episode history into pandas (docs/scale.md)
DENIAL_SCORE_BATCH = 200_000  # open claims per scoring batch: their patients' whole history is read (docs/scale.md)
LEAD_ROW_BUDGET = 400_000  # referrals: each becomes up to 10 snapshots (~4.4 on average, ~1.8 M rows; docs/scale.md)


def _threads() -> int:
    """Threads for model fitting (tabular.threads: $PTPULSE_ML_THREADS, default 1); the boosters read it too."""
    return tabular.threads()


def _row_budget() -> int:
    """$PTPULSE_ML_ROW_BUDGET appointments (default 1.5 M): the no-show training set's memory bound."""
    try:
        return max(1, int(os.environ.get(ROW_BUDGET_ENV, DEFAULT_ROW_BUDGET)))
    except ValueError:
        return DEFAULT_ROW_BUDGET


def _report(progress: ProgressFn, step: str, done: int, total: int) -> None:
    if progress is not None:
        progress(step, done, total)


# ------------------------------------------------------------------------------------ training decision

# The marts the models, the backtest and attribution read (ml/warehouse.py). Their row counts plus the build's as_of
# (the latest recorded event: marts.build_info, data-driven, equal for a rebuild of the same data) are the cheap
# fingerprint of the training data a decision was made on.
TRAINING_MARTS = (
    "appointments",
    "episodes",
    "referral_funnel",
    "dim_patients",
    "dim_payers",
    "dim_referring_physicians",
    "dim_therapists",
    "claims",
    "charge_lines",
    "attribution_paths",
    "marketing_mix_monthly",
)
_ML_DIR = Path(__file__).parent
# every ml module's code: a change to any of them (features, the serving rule, the backtest) decides again once;
# a comment or docstring does not (artifacts.code_fingerprint)
_ML_CODE_SHA = artifacts.code_fingerprint(*_ML_DIR.glob("*.py"))[:12]
MODEL_VERSIONS = {
    "no_show": lambda: no_show.FEATURE_VERSION,
    "lead": lambda: lead.FEATURE_VERSION,
    "denial": lambda: denial.FEATURE_VERSION,
}
# How many times each model was fitted / decided in this process (tests read it; a build scores in-process).
TRAINING_RUNS: dict[str, int] = {"no_show": 0, "lead": 0, "denial": 0, "demand_backtest": 0}


def data_fingerprint(con: duckdb.DuckDBPyConnection, raw_db: Path | None = None) -> dict[str, Any]:
    """What the training data looked like, cheaply: as_of and the row count of each mart ML reads (None when the
    mart does not exist), plus the row counts of the raw authorizations and notes the denial model reads. Without a
    connection (a unit test fitting frames directly) it is empty: such a decision never matches a build's."""
    if con is None:
        return {"as_of": None, "rows": {}, "raw_rows": {}}
    present = {
        r[0]
        for r in con.execute("select table_name from information_schema.tables where table_schema = 'marts'").fetchall()
    }
    counts = {
        t: (con.execute(f"select count(*) from marts.{t}").fetchone()[0] if t in present else None)
        for t in TRAINING_MARTS
    }
    as_of_ts = warehouse.as_of(con) if "build_info" in present else None
    return {
        "as_of": None if as_of_ts is None or pd.isna(as_of_ts) else pd.Timestamp(as_of_ts).isoformat(),
        "rows": counts,
        "raw_rows": _raw_counts(raw_db),
    }


def _raw_counts(raw_db: Path | None) -> dict[str, int | None]:
    """Rows of the raw authorizations and notes (the denial model's extra inputs); {} when raw is not readable."""
    if raw_db is None or not Path(raw_db).exists():
        return {}
    try:
        raw = duckdb.connect(str(raw_db), read_only=True)
    except duckdb.Error:
        return {}
    try:
        tables = {
            r[0]
            for r in raw.execute(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        }
        return {
            t: raw.execute(f"select count(*) from raw.raw.{t}").fetchone()[0]
            for t in sorted(tables & {"authorizations", "documentation_events"})
        }
    except duckdb.Error:
        return {}
    finally:
        raw.close()


def decision_key(model: str, data: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint recorded on a model card as `decided_on`: the model's FEATURE_VERSION, the ml code, the
    no-show row budget and the training data (`data_fingerprint`; the raw counts only for the denial model)."""
    return {
        "feature_version": MODEL_VERSIONS[model](),
        "code": _ML_CODE_SHA,
        "row_budget": _row_budget(),
        "as_of": data.get("as_of"),
        "rows": data.get("rows"),
        **({"raw_rows": data.get("raw_rows")} if model == "denial" else {}),
    }


def decision_unchanged(card_file: Path, model: str, data: dict[str, Any]) -> bool:
    """True when the card records a decision not to serve a model (not enough data, or withheld by the serving
    rule) made on exactly this fingerprint: training again would decide the same, so the build skips it."""
    card = _read_json(card_file) or {}
    return card.get("status") == sufficiency.NOT_TRAINED and card.get("decided_on") == _plain(decision_key(model, data))


def _plain(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, numpy ints plain ints)."""
    return json.loads(json.dumps(value, default=artifacts._json_default))


# ------------------------------------------------------------------------------------------- training


def train(
    settings: Settings,
    analytics_path: Path | None = None,
    progress: ProgressFn = None,
    truth_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Fit the no-show model, backtest demand, run attribution; write artifacts under models_dir.

    Reads `analytics_path` (default: the served analytics file) read-only.
    """
    path = Path(analytics_path) if analytics_path is not None else settings.analytics_db
    con = duckdb.connect(str(path), read_only=True, config=settings.duckdb_config())  # memory budget: docs/scale.md
    try:
        with threadpool_limits(limits=_threads(), user_api="openmp"):
            return _train(con, settings, progress, artifacts.truth_dir(truth_dir))
    finally:
        con.close()


def _train(
    con: duckdb.DuckDBPyConnection, settings: Settings, progress: ProgressFn, truth: Path | None
) -> dict[str, Any]:
    started = time.perf_counter()
    trained_at = datetime.now(UTC).replace(microsecond=0).isoformat()
    _report(progress, "no-show features", 0, TRAIN_STEPS)
    data = data_fingerprint(con, settings.raw_db)
    share = warehouse.training_share(con, _row_budget())
    marts = warehouse.read_marts(con, patient_share=share)
    card = train_no_show(con, settings, marts, trained_at, truth, progress, patient_share=share, data=data)

    _report(progress, "demand backtest", 2, TRAIN_STEPS)
    backtest = demand_backtest(con, marts.as_of, progress=progress)
    backtest["decided_on"] = _plain(data)
    artifacts.write_json(artifacts.backtest_path(settings), backtest)

    _report(progress, "attribution", 3, TRAIN_STEPS)
    paths = warehouse.read_paths(con)
    attr_reason = sufficiency.attribution(paths)
    credit = attribution.attribute(paths if attr_reason is None else paths.iloc[:0])
    incr, mmm_settings = mmm.incrementality(con)
    attr = attribution_summary(credit, artifacts.read_truth(truth, "channel_effects.csv"), incr, mmm_settings)
    attr = {"status": sufficiency.NOT_TRAINED if attr_reason else sufficiency.TRAINED, "reason": attr_reason, **attr}
    artifacts.write_json(artifacts.attribution_path(settings), attr)
    _report(progress, "lead model", 4, TRAIN_STEPS)
    lead_card = train_lead(con, settings, trained_at, data=data)
    _report(progress, "denial model", 5, TRAIN_STEPS)
    denial_card = train_denial(con, settings, trained_at, truth, data=data)
    _report(progress, "done", TRAIN_STEPS, TRAIN_STEPS)

    headline = (
        "roc_auc",
        "pr_auc",
        "brier",
        "calibration_slope",
        "calibration_intercept",
        "ece",
        "oracle_roc_auc",
        "baseline_roc_auc",
        "n_train",
        "n_test",
        "split_date",
        "deployed_model",
        "baseline_comparison",
    )
    return {
        "no_show": {k: card.get(k) for k in ("status", "reason", *headline, "model_version")},
        "demand": {
            k: backtest.get(k)
            for k in (
                "status",
                "reason",
                "mase",
                "baseline_mase",
                "relative_mase",
                "smape",
                "coverage_80",
                "horizon_weeks",
                "cutoffs",
            )
        },
        "attribution": {
            k: attr[k] for k in ("status", "reason", "spearman_markov", "spearman_shapley", "spearman_mmm")
        },
        "lead": {k: lead_card.get(k) for k in ("status", "reason", *LEAD_HEADLINE)},
        "denial": {k: denial_card.get(k) for k in ("status", "reason", *DENIAL_HEADLINE)},
        "models_dir": str(settings.models_dir),
        "seconds": round(time.perf_counter() - started, 2),
    }


NO_SHOW_POPULATION = "past appointments that were attended or missed (cancellations excluded)"


def train_no_show(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    marts: Any,
    trained_at: str,
    truth: Path | None,
    progress: ProgressFn = None,
    patient_share: float = 1.0,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit, evaluate and save the no-show model (or write a not_trained card saying why). Returns the card.
    `patient_share` < 1: `marts` holds that sample of patients (row budget), recorded on the card. `data`: the
    training data's fingerprint (`data_fingerprint`), recorded on the card as `decided_on` with the model version."""
    TRAINING_RUNS["no_show"] += 1
    decided_on = _plain(decision_key("no_show", data if data is not None else data_fingerprint(con, settings.raw_db)))
    targets = labelled_targets(marts.appointments)
    y = (targets["status"] == "no_show").to_numpy(int)
    reason = sufficiency.as_of_missing(marts.as_of) or sufficiency.binary(
        y,
        targets["scheduled_start"],
        no_show.time_split,
        rows="past appointments with an outcome",
        positive="no-shows",
        negative="attended",
    )
    if reason:
        return _not_trained(
            artifacts.model_path(settings),
            artifacts.card_path(settings),
            "No-show risk model card",
            reason,
            trained_at,
            marts.as_of,
            population=NO_SHOW_POPULATION,
            decided_on=decided_on,
        )
    features = build_features(targets, marts)
    truth_probs = artifacts.read_truth(truth, "appointment_truth.csv", NO_SHOW_TRUTH)
    p_true = (
        targets[["appointment_id"]].merge(truth_probs, on="appointment_id", how="left")["p_no_show"]
        if truth_probs is not None
        else None
    )

    _report(progress, "no-show model", 1, TRAIN_STEPS)
    t0 = time.perf_counter()
    ev = no_show.evaluate(features, y, targets["scheduled_start"], p_true)
    digest = hashlib.sha256(
        json.dumps([ev.card["roc_auc"], ev.card["brier"], ev.card["n_train"], str(marts.as_of)], default=str).encode()
    ).hexdigest()[:8]
    version = f"ns{no_show.FEATURE_VERSION}-{marts.as_of:%Y%m%d}-{digest}"
    kind = ev.card["deployed_model"]
    if kind is None:  # nothing beat chance and the constant rate on the test period: measured, but not served
        return _not_trained(
            artifacts.model_path(settings),
            artifacts.card_path(settings),
            "No-show risk model card",
            f"not served: on the test period (after {ev.card['split_date']}) {ev.card['withheld']}",
            trained_at,
            marts.as_of,
            population=NO_SHOW_POPULATION,
            **{k: v for k, v in ev.card.items() if k not in ("deployed_model", "withheld")},
            deployed_model=None,
            withheld=True,
            model_version=version,
            decided_on=decided_on,
        )
    model = no_show.fit_final(features, y, targets["scheduled_start"], trained_at, version, kind=kind)
    model.extra["calibration_bins"] = ev.calibration_bins
    card = {
        "status": sufficiency.TRAINED,
        "reason": None,
        **ev.card,
        "trained_at": trained_at,
        "model_version": version,
        "as_of": marts.as_of.isoformat(),
        "population": NO_SHOW_POPULATION,
        "decided_on": decided_on,
        "label": "status = no_show",
        "scoring_time": f"{LEAD_HOURS} h before the start (or at booking, if later, but always before the start)",
        "calibration": (
            "sigmoid (Platt) fitted on the last 25% of the training period, which also early-stops the trees"
        )
        if kind == no_show.BOOSTED
        else model.calibration,
        "features": no_show.HISTORY_FEATURES
        if kind == no_show.HISTORY
        else [c for c in FEATURES if c not in model.dropped],
        "risk_bands": "ranks among the upcoming appointments scored together, per clinic: high = top "
        f"{no_show.HIGH_SHARE:.0%}, medium = the next "
        f"{no_show.MEDIUM_SHARE - no_show.HIGH_SHARE:.0%}, low = the rest",
        "recent_thresholds": model.thresholds,
        "deployed_train_rows": model.train_rows,
        "calibration_bins": ev.calibration_bins,
        "truth_dir": str(truth) if truth else None,
        "oracle_definition": ORACLE_DEFINITION,
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "training_sample": {
            "patient_share": patient_share,
            "row_budget": _row_budget(),
            "method": "every appointment of all patients"
            if patient_share >= 1.0
            else f"every appointment of {patient_share:.1%} of patients (hash of patient_id, the same each run): "
            f"the appointments exceed ${ROW_BUDGET_ENV}; every month is kept in proportion and the split is still "
            "by time",
        },
    }
    artifacts.save_model(artifacts.model_path(settings), model)
    artifacts.write_json(artifacts.card_path(settings), card)
    artifacts.write_text(artifacts.card_path(settings).with_suffix(".md"), model_card_markdown(card))
    return card


def _not_trained(
    model_file: Path, card_file: Path, title: str, reason: str, trained_at: str, as_of: Any, **extra: Any
) -> dict[str, Any]:
    """Write the card of a model skipped for want of data (status not_trained + reason) and drop any old model.

    The model file goes so that the card and the model never disagree; the card's `decided_on` (the model
    version and the training data's fingerprint, `decision_key`) lets the next build skip training while it is
    unchanged (`score`), and scores nothing until new data, a new version or `ptpulse train` decides again.
    """
    card = {
        "status": sufficiency.NOT_TRAINED,
        "reason": reason,
        "trained_at": trained_at,
        "as_of": None if as_of is None or pd.isna(as_of) else pd.Timestamp(as_of).isoformat(),
        **extra,
    }
    model_file.unlink(missing_ok=True)
    artifacts.write_json(card_file, card)
    verdict = "Scores withheld" if extra.get("withheld") is True else "Not enough data yet"
    artifacts.write_text(card_file.with_suffix(".md"), f"# {title}\n\n{verdict}: {reason}.\n")
    return card


NO_SHOW_TRUTH = ("appointment_id", "p_no_show")  # the oracle; the file's other columns are for the bench
ORACLE_DEFINITION = (
    "The oracle is the generator's true P(no-show | not cancelled) for each test appointment (truth/"
    "appointment_truth.csv p_no_show), the same population and label as the model. It is the best ranking "
    "possible with the generator's hidden traits (each patient's propensity, a patient's intent to drop out), "
    "which no export holds, so a model of the exports stays below it; it is not a ceiling on PR AUC for a "
    "finite test set, and a real practice has no oracle (null)."
)


LEAD_HEADLINE = (
    "roc_auc",
    "brier",
    "calibration_slope",
    "calibration_intercept",
    "baseline_roc_auc",
    "n_train",
    "n_test",
    "split_date",
    "model_version",
)


DENIAL_HEADLINE = (
    "roc_auc",
    "brier",
    "calibration_slope",
    "calibration_intercept",
    "oracle_roc_auc",
    "baseline_roc_auc",
    "dollars_at_risk",
    "truth_dollars_at_risk",
    "n_train",
    "n_test",
    "split_date",
    "deployed_model",
    "model_version",
)


DENIAL_POPULATION = "claims the payer has decided (paid, adjusted or denied), self-pay left out"


def train_denial(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    trained_at: str,
    truth: Path | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit, evaluate and save the denial model; write models/denial/model_card.json and .md. Returns the card.

    Authorizations and notes come from raw.duckdb beside the analytics file (ml/warehouse.py says why). `data`:
    the training data's fingerprint, recorded as `decided_on` (see `train_no_show`).
    """
    t0 = time.perf_counter()
    TRAINING_RUNS["denial"] += 1
    decided_on = _plain(decision_key("denial", data if data is not None else data_fingerprint(con, settings.raw_db)))
    share = warehouse.denial_training_share(con, DENIAL_ROW_BUDGET)
    frames = warehouse.read_denial_frames(con, settings.raw_db, patient_share=share)
    claims = denial.labelled(frames.claims)
    y = claims["is_denied"].fillna(False).astype(int).to_numpy()
    reason = sufficiency.as_of_missing(frames.as_of) or sufficiency.binary(
        y,
        denial.claim_times(claims, frames.as_of),
        denial.time_split,
        rows="claims the payer has decided",
        positive="denied",
        negative="paid or adjusted",
    )
    if reason:
        return _not_trained(
            artifacts.denial_model_path(settings),
            artifacts.denial_card_path(settings),
            "Denial risk model card",
            reason,
            trained_at,
            frames.as_of,
            population=DENIAL_POPULATION,
            decided_on=decided_on,
        )
    feats = denial.build_features(claims, frames)
    truth_probs = artifacts.read_truth(truth, "claim_truth.csv")
    p_true = (
        claims[["claim_id"]].merge(truth_probs[["claim_id", "p_denial"]], on="claim_id", how="left")["p_denial"]
        if truth_probs is not None
        else None
    )
    t_fit = time.perf_counter()
    ev = denial.evaluate(feats, y, claims, p_true)
    digest = hashlib.sha256(
        json.dumps([ev.card["roc_auc"], ev.card["brier"], ev.card["n_train"], str(frames.as_of)], default=str).encode()
    ).hexdigest()[:8]
    version = f"den{denial.FEATURE_VERSION}-{frames.as_of:%Y%m%d}-{digest}"
    if ev.card["deployed_model"] is None:  # measured on the test period, no better than its baselines: not served
        return _not_trained(
            artifacts.denial_model_path(settings),
            artifacts.denial_card_path(settings),
            "Denial risk model card",
            f"not served: on the test period (after {ev.card['split_date']}) {ev.card['withheld']}",
            trained_at,
            frames.as_of,
            population=DENIAL_POPULATION,
            **{k: v for k, v in ev.card.items() if k not in ("deployed_model", "withheld")},
            deployed_model=None,
            withheld=True,
            model_version=version,
            decided_on=decided_on,
        )
    model = denial.fit_final(feats, y, claims, trained_at, version, kind=ev.card["deployed_model"])
    model.extra["calibration_bins"] = ev.calibration_bins
    card = {
        "status": sufficiency.TRAINED,
        "reason": None,
        **ev.card,
        "trained_at": trained_at,
        "model_version": version,
        "as_of": frames.as_of.isoformat(),
        "population": DENIAL_POPULATION,
        "decided_on": decided_on,
        "label": "the payer denied the claim (claims.is_denied)",
        "scoring_time": "the claim's creation: its submission time, or as_of for a claim not submitted yet",
        "calibration": "sigmoid (Platt) fitted on the last 25% of the training claims, which also early-stops the trees"
        if model.kind == denial.BOOSTED
        else "none: logistic regression fitted by likelihood on every labelled claim",
        "features": [c for c in denial.FEATURES if c not in model.dropped],
        "sources": {
            "authorizations": frames.authorizations is not None,
            "documentation": frames.notes is not None,
        },
        "dollars_at_risk_rule": "sum over the test claims of probability x billed; truth_dollars_at_risk is the "
        "same sum with the generator's true probabilities (generated data only)",
        "calibration_bins": ev.calibration_bins,
        "truth_dir": str(truth) if truth else None,
        "fit_seconds": round(time.perf_counter() - t_fit, 2),
        "feature_seconds": round(t_fit - t0, 2),
        "training_sample": {
            "patient_share": share,
            "row_budget": DENIAL_ROW_BUDGET,
            "method": "every claim of all patients"
            if share >= 1.0
            else f"every claim of {share:.1%} of patients (hash of the patient key, the same each run): the claims "
            f"exceed {DENIAL_ROW_BUDGET:,}; each claim keeps its exact features, payer rates are estimated on the "
            "sample and the split is still by time",
        },
    }
    artifacts.save_model(artifacts.denial_model_path(settings), model)
    artifacts.write_json(artifacts.denial_card_path(settings), card)
    artifacts.write_text(artifacts.denial_card_path(settings).with_suffix(".md"), denial_card_markdown(card))
    return card


@dataclass(frozen=True)
class DenialScoring:
    """What `score_denials` wrote: `rows` in ml.denial_scores, of which `scored` tonight and `reused` kept from the
    served build (ml/denial_reuse.py); `why_not_reused` when none was kept."""

    rows: int
    scored: int
    reused: int = 0
    why_not_reused: str | None = None


def score_denials(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    model: denial.DenialModel | None,
    served: Path | None = None,
    target: Path | None = None,
) -> DenialScoring:
    """`ml.denial_scores`: every claim not decided yet, with probability, dollars at risk and two reasons.

    Empty (normal columns) without a trained model or open claims. `served` (the served analytics file) and `target`
    (the file `con` writes): the rows of the patients none of whose open claims' inputs changed since the served
    build are kept from it, the rest are scored (ml/denial_reuse.py: the rule, and why the table is the same as
    scoring every claim). Scored in hash batches of patients of about DENIAL_SCORE_BATCH open claims: a claim's
    features read only its own patient's history and its own lines (warehouse.read_denial_frames), so a batch scores
    exactly as the whole would, and memory follows the batch (570 k open claims at 900 clinics: 7 GB at once).
    """
    if model is None:
        empty = warehouse.write_table(con, "denial_scores", pd.DataFrame())
        return DenialScoring(rows=empty, scored=0, why_not_reused="no denial model")
    as_of_ts = warehouse.as_of(con)
    sources = warehouse.raw_billing_sources(settings.raw_db)
    key = denial_reuse.score_key(artifacts.denial_model_path(settings), _ML_CODE_SHA, sources)
    try:
        reuse = denial_reuse.mark_reused(con, served, target or Path(), key, settings.raw_db, as_of_ts)
        batches = -(-warehouse.open_claim_count(con, rescored_only=True) // DENIAL_SCORE_BATCH)
        keyed = (key, sources)
        tables = [t for i in range(batches) if len(t := _denial_batch(con, settings, model, (i, batches), keyed))]
        fresh = (
            pd.concat(tables, ignore_index=True).sort_values("claim_id", ignore_index=True)
            if tables
            else pd.DataFrame()
        )
        rows = warehouse.write_denial_scores(con, fresh, denial_reuse.SERVED if reuse.claims else None, as_of_ts)
    finally:
        denial_reuse.detach(con)
    return DenialScoring(rows=rows, scored=len(fresh), reused=rows - len(fresh), why_not_reused=reuse.why_not)


def _denial_batch(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    model: denial.DenialModel,
    batch: tuple[int, int],
    keyed: tuple[str, dict[str, bool]],
) -> pd.DataFrame:
    """The denial_scores rows of one hash batch of the patients with an open claim whose served scores are not kept
    tonight (empty without as_of). `keyed` (score key, the raw exports it names): the rows carry the key only when
    the batch read those exports; raw opened by another writer between the key and the batch reads none, and a
    score without them must not be kept on later nights (a null key never matches)."""
    frames = warehouse.read_denial_frames(con, settings.raw_db, open_only=True, batch=batch, rescored_only=True)
    key = keyed[0] if warehouse.read_the_sources(frames, keyed[1]) else None
    open_ = denial.open_claims(frames.claims)
    if not len(open_) or sufficiency.as_of_missing(frames.as_of):
        return pd.DataFrame()
    scored = denial.explain(model, denial.build_features(open_, frames))
    billed = open_["billed_usd"].astype(float).to_numpy()
    return pd.DataFrame(
        {
            **{c: open_[c].to_numpy() for c in ("claim_id", "clinic_id", "episode_id", "payer_id", "service_date")},
            "submitted_at": open_["submitted_at"].to_numpy(),
            "billed_usd": billed,
            "probability": scored["probability"].to_numpy(float),
            "dollars_at_risk": scored["probability"].to_numpy(float) * billed,
            "reason_group": scored["reason_group_1"].to_numpy(),
            "reason_1": scored["reason_1"].to_numpy(),
            "reason_2": scored["reason_2"].to_numpy(),
            "model_version": model.version,
            "scored_at": frames.as_of,
            "score_key": key,
        }
    )


def train_lead(
    con: duckdb.DuckDBPyConnection, settings: Settings, trained_at: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fit, evaluate and save the lead-scoring model; write models/lead/model_card.json. Returns the card.
    `data`: the training data's fingerprint, recorded as `decided_on` (see `train_no_show`)."""
    t0 = time.perf_counter()
    TRAINING_RUNS["lead"] += 1
    decided_on = _plain(decision_key("lead", data if data is not None else data_fingerprint(con, settings.raw_db)))
    as_of_ts = warehouse.as_of(con)
    reason = sufficiency.as_of_missing(as_of_ts)
    share = 1.0
    if reason is None:
        share = warehouse.lead_training_share(con, LEAD_ROW_BUDGET)
        rows, feats, y = lead.snapshots(warehouse.read_lead_referrals(con, share=share), as_of_ts)
        reason = sufficiency.binary(
            y,
            rows["at"],
            lead.time_split,
            train_times=rows["received_at"],
            rows=f"snapshots of referrals received at least {lead.LABEL_DAYS} days before as_of",
            positive="evaluated",
            negative="not evaluated",
        )
    if reason:
        return _not_trained(
            artifacts.lead_model_path(settings),
            artifacts.lead_card_path(settings),
            "Lead scoring model card",
            reason,
            trained_at,
            as_of_ts,
            decided_on=decided_on,
        )
    ev = lead.evaluate(rows, feats, y)
    digest = hashlib.sha256(
        json.dumps([ev["roc_auc"], ev["brier"], ev["n_train"], str(as_of_ts)], default=str).encode()
    ).hexdigest()[:8]
    version = f"lead{lead.FEATURE_VERSION}-{as_of_ts:%Y%m%d}-{digest}"
    if not ev["served"]:  # measured, but no better than what needs no model: no lead scores (the queue ranks as before)
        return _not_trained(
            artifacts.lead_model_path(settings),
            artifacts.lead_card_path(settings),
            "Lead scoring model card",
            f"not served: on the test period (referrals received from {ev['split_date']}) {ev['serving']}",
            trained_at,
            as_of_ts,
            **{k: v for k, v in ev.items() if k not in ("served",)},
            served=False,
            withheld=True,
            model_version=version,
            decided_on=decided_on,
        )
    model = lead.fit_final(rows, feats, y, trained_at, version, kind=ev["deployed_model"])
    card = {
        "status": sufficiency.TRAINED,
        "reason": None,
        **ev,
        "trained_at": trained_at,
        "model_version": version,
        "as_of": as_of_ts.isoformat(),
        "decided_on": decided_on,
        "population": "referrals still open (not evaluated, not exited) at the scoring time, received at "
        f"least {lead.LABEL_DAYS} days before as_of (so the outcome is known)",
        "label": "the referral reaches an initial evaluation (referral_funnel.evaluated_at)",
        "scoring_time": "each referral at "
        + ", ".join(f"{a:g}" for a in lead.AGES_DAYS)
        + " days after receipt, while still open; only events before that moment",
        "calibration": "sigmoid (Platt) fitted on the last 25% of the training period, which also early-stops the trees"
        if model.kind == lead.BOOSTED
        else "none: logistic regression fitted by likelihood on every labelled snapshot",
        "baseline": "conversion rate by source type (training rows)",
        "expected_value": f"mean collected net revenue of closed episodes by payer class x source type, "
        f"shrunk toward the payer-class and overall means ({lead.EV_SHRINK:g} pseudo-episodes); "
        f"episodes closed in the last {lead.EV_SETTLE_DAYS} days left out",
        "features": lead.FEATURES,
        "deployed_train_rows": model.train_rows,
        "fit_seconds": round(time.perf_counter() - t0, 2),
        "training_sample": {
            "referral_share": share,
            "row_budget": LEAD_ROW_BUDGET,
            "method": "every referral"
            if share >= 1.0
            else f"{share:.1%} of referrals (hash of referral_id, the same each run): the referrals exceed "
            f"{LEAD_ROW_BUDGET:,}; each keeps its exact features, the source-type baseline is measured on the same "
            "sample, expected values still come from every episode and the split is still by time",
        },
    }
    artifacts.save_model(artifacts.lead_model_path(settings), model)
    artifacts.write_json(artifacts.lead_card_path(settings), card)
    return card


_NO_SERIES = pd.DataFrame({"series": [], "metric": [], "week_start": [], "y": []})


def demand_backtest(
    con: duckdb.DuckDBPyConnection,
    as_of: pd.Timestamp,
    cfg: demand.DemandSettings | None = None,
    progress: ProgressFn = None,
) -> dict[str, Any]:
    """Rolling-origin backtest on the practice series (headline) and the busiest clinics (detail).

    `progress` moves from step 2 towards 3 of TRAIN_STEPS with each fitted origin, naming the series and metric."""
    cfg = cfg or demand.DemandSettings()
    TRAINING_RUNS["demand_backtest"] += 1

    def fold(name: str, metric: str, done: int, total: int) -> None:
        step = f"demand backtest: {name} {metric}, origin {done} of {total}"
        _report(progress, step, 2 + done / max(total, 1), TRAIN_STEPS)

    reason = sufficiency.as_of_missing(as_of)
    series = demand.weekly_series(warehouse.read_weekly_demand(con), as_of) if reason is None else _NO_SERIES
    reason = reason or sufficiency.backtest(series, demand.SEASON, cfg.horizon_weeks)
    names = demand.backtest_series_names(series, cfg)
    points, summary = (
        demand.backtest(series, cfg, select=names, progress=fold) if reason is None else (None, pd.DataFrame())
    )
    if summary.empty:
        points = pd.DataFrame(columns=["series", "metric", "evaluated"])
        summary = pd.DataFrame(columns=["series", "metric", "cutoff"])
    is_all = points["series"] == demand.ALL
    practice = summary[summary["series"] == demand.ALL]
    head = demand.summarise(practice, points[is_all])
    clinics = summary[summary["series"] != demand.ALL]
    by_metric = {
        m: demand.summarise(practice[practice["metric"] == m], points[is_all & (points["metric"] == m)])
        for m in demand.METRICS
    }
    return {
        "status": sufficiency.NOT_TRAINED if reason else sufficiency.TRAINED,
        "reason": reason,
        **{k: head[k] for k in ("mase", "baseline_mase", "relative_mase", "smape", "coverage_80")},
        "horizon_weeks": cfg.horizon_weeks,
        "cutoffs": sorted(summary["cutoff"].unique().tolist()) if len(summary) else [],
        "series": names,
        "scope": "headline figures: whole-practice series (ALL), metrics referrals, evals and visits pooled",
        "method": demand.backtest_method(cfg),
        "history_weeks": cfg.history_weeks,
        "baseline": "seasonal naive: same week last year (y[t-52]); last-4-weeks mean where no y[t-52]",
        "coverage_80_raw": head["coverage_80_raw"],
        "calibration_cutoffs": sorted(
            {c.date().isoformat() for c in points.loc[~points["evaluated"].astype(bool), "cutoff"]}
        )
        if len(points)
        else [],
        "interval_scale": demand.final_interval_scales(points, cfg) if len(points) else {},
        "mase_scale": "in-sample MAE of the one-step naive forecast on each origin's training window",
        "by_metric": by_metric,
        **per_series_metric(summary, points),
        "practice_extra": {k: head[k] for k in ("mean4_mase", "relative_mase_vs_mean4", "baseline_smape", "forecasts")},
        "clinics": demand.summarise(clinics, points[~is_all]),
        "forecasts": summary.to_dict(orient="records"),
    }


def per_series_metric(summary: pd.DataFrame, points: pd.DataFrame) -> dict[str, Any]:
    """Every backtest figure per series x metric beside the pooled headline, and the losses it would hide.

    `breakdown`: one row per series (ALL and the backtested clinics) and metric, plus one pooled row per
    series. `hidden_losses`: the rows that lose to seasonal naive (relative MASE > 1) while the practice's
    pooled figure beats it; `pooled_hides_loss` says whether there is any (the Demand page shows them).
    """
    rows: list[dict[str, Any]] = []
    if summary.empty:
        return {"breakdown": rows, "hidden_losses": [], "pooled_hides_loss": False}
    keys = ("mase", "baseline_mase", "relative_mase", "smape", "coverage_80", "forecasts")
    for (name, metric), part in summary.groupby(["series", "metric"], sort=True):
        pts = points[(points["series"] == name) & (points["metric"] == metric)]
        rows.append({"series": name, "metric": metric, **{k: demand.summarise(part, pts)[k] for k in keys}})
    for name, part in summary.groupby("series", sort=True):
        pts = points[points["series"] == name]
        rows.append({"series": name, "metric": "pooled", **{k: demand.summarise(part, pts)[k] for k in keys}})
    for r in rows:
        r["loses_to_naive"] = bool(r["relative_mase"] is not None and r["relative_mase"] > 1)
    pooled = next((r for r in rows if r["series"] == demand.ALL and r["metric"] == "pooled"), None)
    pooled_wins = pooled is not None and not pooled["loses_to_naive"]
    hidden = [r for r in rows if pooled_wins and r["metric"] != "pooled" and r["loses_to_naive"]]
    return {"breakdown": rows, "hidden_losses": hidden, "pooled_hides_loss": bool(hidden)}


def attribution_summary(
    credit: pd.DataFrame,
    truth: pd.DataFrame | None,
    incr: pd.DataFrame | None = None,
    mmm_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Credit per model and channel, the MMM's incremental effects, and rank correlations with the truth.

    Path models are scored against the path effect (`true_effect`) as before; every model is also scored against
    the incremental new patients (`true_incremental`, what a budget decision needs) as `spearman_<model>_incremental`
    ; `spearman_mmm` is the MMM against the incremental truth.
    """
    incr = incr if incr is not None else pd.DataFrame(columns=["channel", "effect", "lo", "hi", "share", "method"])
    out: dict[str, Any] = {
        "credit": credit.drop(columns="settings").to_dict(orient="records"),
        "incrementality": incr.to_dict(orient="records"),
        "mmm": mmm_settings or {},
        "spearman_markov": None,
        "spearman_shapley": None,
        "spearman_mmm": None,
        "truth_channels": None,
    }
    if truth is None:
        return out
    out["truth_channels"] = truth["channel"].tolist()
    for model in ("markov", "shapley"):
        part = credit[credit["model"] == model].merge(truth, on="channel")
        if part.empty:
            continue
        out[f"spearman_{model}"] = spearman(part["attributed_conversions"], part["true_effect"])
        if "true_incremental" in part:
            out[f"spearman_{model}_incremental"] = spearman(part["attributed_conversions"], part["true_incremental"])
    part = incr.merge(truth, on="channel")
    if len(part) and "true_incremental" in part:
        out["spearman_mmm"] = spearman(part["effect"].astype(float), part["true_incremental"])
    return out


# -------------------------------------------------------------------------------------------- scoring


def _usable(model: Any) -> bool:
    return isinstance(model, no_show.NoShowModel) and model.feature_version == no_show.FEATURE_VERSION


def _usable_lead(model: Any) -> bool:
    return isinstance(model, lead.LeadModel) and model.feature_version == lead.FEATURE_VERSION


def _usable_denial(model: Any) -> bool:
    return isinstance(model, denial.DenialModel) and model.feature_version == denial.FEATURE_VERSION


def score(
    settings: Settings, analytics_path: Path, progress: ProgressFn = None, truth_dir: str | Path | None = None
) -> dict[str, Any]:
    """Write every `ml` table into `analytics_path` (read-write), training first if there is no model.

    A model without enough data (ml/sufficiency.py) has no model file: its tables are written empty with
    their normal columns, and `models/status.json` says for this build which model produced output and,
    for each that did not, why.
    """
    started = time.perf_counter()
    con = duckdb.connect(str(analytics_path), config=settings.duckdb_config())  # memory budget: docs/scale.md
    try:
        with threadpool_limits(limits=_threads(), user_api="openmp"):
            trained = None
            now = datetime.now(UTC).replace(microsecond=0).isoformat()
            data = data_fingerprint(con, settings.raw_db)
            training: dict[str, dict[str, Any]] = {}
            model = artifacts.load_model(artifacts.model_path(settings))
            if not _usable(model) and not decision_unchanged(artifacts.card_path(settings), "no_show", data):
                trained = _train(con, settings, progress, artifacts.truth_dir(truth_dir))
                model = artifacts.load_model(artifacts.model_path(settings))
            training["no_show"] = _training_note(artifacts.card_path(settings), trained is not None)
            lead_model = artifacts.load_model(artifacts.lead_model_path(settings))
            ran = trained is not None
            if (
                not _usable_lead(lead_model)
                and trained is None
                and not decision_unchanged(artifacts.lead_card_path(settings), "lead", data)
            ):  # e.g. a home trained before lead scoring, or new data since "not enough data"
                train_lead(con, settings, now, data=data)
                lead_model = artifacts.load_model(artifacts.lead_model_path(settings))
                ran = True
            training["lead"] = _training_note(artifacts.lead_card_path(settings), ran)
            denial_model = artifacts.load_model(artifacts.denial_model_path(settings))
            ran = trained is not None
            if (
                not _usable_denial(denial_model)
                and trained is None
                and not decision_unchanged(artifacts.denial_card_path(settings), "denial", data)
            ):  # a home trained before denial scoring, or new data since the last decision
                train_denial(con, settings, now, artifacts.truth_dir(truth_dir), data=data)
                denial_model = artifacts.load_model(artifacts.denial_model_path(settings))
                ran = True
            training["denial"] = _training_note(artifacts.denial_card_path(settings), ran)
            training["demand_backtest"] = {"ran": trained is not None}
            model = model if _usable(model) else None
            lead_model = lead_model if _usable_lead(lead_model) else None
            denial_model = denial_model if _usable_denial(denial_model) else None
            _report(progress, "denial scores", 0, SCORE_STEPS)
            denials = score_denials(con, settings, denial_model, settings.analytics_db, analytics_path)
            _report(progress, _denial_note(denials), 0, SCORE_STEPS)
            served = warehouse.read_served_forecast(settings.analytics_db, analytics_path)
            rows, status = _score(con, settings, model, progress, served)
            rows["denial_scores"] = denials.rows
            _report(progress, "lead scores", SCORE_STEPS - 1, SCORE_STEPS)
            as_of_ts = warehouse.as_of(con)
            lead_table = (
                lead.score_open(
                    lead_model,
                    warehouse.read_lead_referrals(con, received_since=lead.oldest_scored(as_of_ts)),
                    warehouse.read_lead_episodes(con),
                    as_of_ts,
                )
                if lead_model is not None and sufficiency.as_of_missing(as_of_ts) is None
                else pd.DataFrame()
            )
            rows["lead_scores"] = warehouse.write_table(con, "lead_scores", lead_table)
            for name, card_file, m in (
                ("no_show", artifacts.card_path(settings), model),
                ("lead", artifacts.lead_card_path(settings), lead_model),
                ("denial", artifacts.denial_card_path(settings), denial_model),
            ):
                status[name] = _card_status(card_file, m)
            backtest = _read_json(artifacts.backtest_path(settings))
            status["demand_backtest"] = {
                "status": backtest.get("status", sufficiency.TRAINED) if backtest else sufficiency.NOT_TRAINED,
                "reason": backtest.get("reason") if backtest else "not backtested: no training has run yet",
            }
            artifacts.write_json(
                artifacts.status_path(settings),
                {
                    "as_of": None if pd.isna(as_of_ts) else as_of_ts.isoformat(),
                    "written_at": now,
                    "models": status,
                    "training": training,
                    "denial_scoring": asdict(denials),
                },
            )
            _report(progress, "done", SCORE_STEPS, SCORE_STEPS)
    finally:
        con.close()
    return {
        "rows": rows,
        "trained": trained,
        "training": training,
        "status": status,
        "model_version": model.version if model else None,
        "lead_model_version": lead_model.version if lead_model else None,
        "denial_model_version": denial_model.version if denial_model else None,
        "denial_scoring": asdict(denials),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _denial_note(denials: DenialScoring) -> str:
    """The progress line of the denial step: how many open claims were scored and how many kept (counts only)."""
    kept = (
        f"{denials.reused:,} kept from the served build" if denials.reused else f"none kept: {denials.why_not_reused}"
    )
    return f"denial scores: {denials.scored:,} open claims scored, {kept}"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _training_note(card_file: Path, ran: bool) -> dict[str, Any]:
    """Whether this build fitted the model (`ran`) and when its card's decision was made (`decided_at`): a build
    that skips training says so, with the decision it kept (models/status.json `training`)."""
    card = _read_json(card_file) or {}
    note: dict[str, Any] = {"ran": ran, "decided_at": card.get("trained_at"), "status": card.get("status")}
    if not ran and card.get("status") == sufficiency.NOT_TRAINED:
        note["why_not_retrained"] = (
            "the training data (row counts, as_of) and the model version are unchanged since this decision; "
            "new data, a new version or `ptpulse train` decides again"
        )
    return note


def _card_status(card_file: Path, model: Any) -> dict[str, Any]:
    """A classifier's status for this build: trained when its model is loaded, else the reason on its card."""
    if model is not None:
        return {"status": sufficiency.TRAINED, "reason": None, "model_version": model.version}
    card = _read_json(card_file) or {}
    status = {"status": sufficiency.NOT_TRAINED, "reason": card.get("reason") or "not trained: no model card yet"}
    return {**status, "withheld": True} if card.get("withheld") is True else status  # measured, not served


def _step(reason: str | None) -> dict[str, Any]:
    return {"status": sufficiency.NOT_TRAINED if reason else sufficiency.TRAINED, "reason": reason}


def _score(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    model: no_show.NoShowModel | None,
    progress: ProgressFn,
    served_forecast: pd.DataFrame | None = None,
) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """The no-show, demand, staffing and attribution tables; ((table -> rows), (model -> status, reason)).
    `served_forecast`: the served build's forecast, whose unchanged series are reused (demand.forecast_all)."""
    rows: dict[str, int] = {}
    status: dict[str, dict[str, Any]] = {}
    _report(progress, "no-show scores", 0, SCORE_STEPS)
    marts = warehouse.read_marts(con, upcoming_only=True)  # history of the patients scored only: docs/scale.md
    no_as_of = sufficiency.as_of_missing(marts.as_of)
    upcoming = upcoming_targets(marts.appointments) if no_as_of is None else marts.appointments.iloc[:0]
    table = pd.DataFrame()
    if model is not None and len(upcoming):
        scored = no_show.explain(model, build_features(upcoming, marts))
        table = pd.DataFrame(
            {
                "appointment_id": upcoming["appointment_id"].to_numpy(),
                "clinic_id": upcoming["clinic_id"].to_numpy(),
                "scheduled_start": upcoming["scheduled_start"].to_numpy(),
                **{c: scored[c].to_numpy() for c in ("probability", "risk_band", "reason_1", "reason_2")},
                "model_version": model.version,
                "scored_at": marts.as_of,
            }
        )
    rows["no_show_scores"] = warehouse.write_table(con, "no_show_scores", table)
    rows["no_show_calibration"] = warehouse.write_table(
        con, "no_show_calibration", pd.DataFrame(model.extra.get("calibration_bins", []) if model else [])
    )
    rows["work_queue_tasks"] = warehouse.write_queue_tasks(con)

    _report(progress, "demand forecast", 1, SCORE_STEPS)
    cfg = demand.DemandSettings()
    series = demand.weekly_series(warehouse.read_weekly_demand(con), marts.as_of) if no_as_of is None else _NO_SERIES
    reason = no_as_of or sufficiency.forecast(series)
    backtest = _read_json(artifacts.backtest_path(settings)) or {}
    forecast = (
        demand.forecast_all(
            series,
            cfg,
            scales=backtest.get("interval_scale"),
            previous=served_forecast,
        )
        if reason is None
        else pd.DataFrame(columns=list(warehouse.ML_TABLES["demand_forecast"]))
    )
    # why a series is forecast 0 (a closed clinic): the Demand page says so beside its chart
    status["demand_forecast"] = {**_step(reason), "closed": demand.closed_series(series) if reason is None else []}
    rows["demand_forecast"] = warehouse.write_table(
        con, "demand_forecast", forecast.assign(week_start=pd.to_datetime(forecast["week_start"]).dt.date)
    )

    _report(progress, "staffing gap", 2, SCORE_STEPS)
    therapists = warehouse.read_therapists(con)
    reason = no_as_of or sufficiency.staffing(forecast, therapists)
    gap = (
        demand.staffing_gap(forecast, therapists, warehouse.read_visit_minutes(con, marts.as_of), marts.as_of)
        if reason is None
        else pd.DataFrame()
    )
    status["staffing_gap"] = _step(reason)
    rows["staffing_gap"] = warehouse.write_table(
        con, "staffing_gap", gap.assign(week_start=pd.to_datetime(gap["week_start"]).dt.date) if len(gap) else gap
    )

    _report(progress, "attribution", 3, SCORE_STEPS)
    paths = warehouse.read_paths(con)
    reason = sufficiency.attribution(paths)
    status["attribution"] = _step(reason)
    rows["attribution_credit"] = warehouse.write_table(
        con, "attribution_credit", attribution.attribute(paths) if reason is None else pd.DataFrame()
    )
    incr, mmm_settings = mmm.incrementality(con)
    status["channel_incrementality"] = _step(mmm_settings.get("reason"))
    rows["channel_incrementality"] = warehouse.write_table(con, "channel_incrementality", incr)
    return rows, status


# ------------------------------------------------------------------------------------------ model card


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _sample_lines(card: dict[str, Any]) -> list[str]:
    """The card's sampling note, only when the model saw a sample (chain scale, docs/scale.md)."""
    sample = card.get("training_sample") or {}
    if sample.get("patient_share", 1.0) >= 1.0:
        return []
    return [f"Sampled for memory: {sample['method']}.", ""]


def model_card_markdown(card: dict[str, Any]) -> str:
    """A model card a clinic manager can read: what it predicts, how well, for whom, and its limits."""
    base = card.get("base_rate_test")
    fallback = card.get("deployed_model") == no_show.LOGISTIC
    cmp = card.get("baseline_comparison") or {}
    chosen = cmp.get("best_model")
    val = cmp.get("validation") or {}

    def on_validation(kind: str) -> str:
        return _fmt((val.get(kind) or {}).get("roc_auc"))

    name = str(chosen).replace("_", " ")
    where = (
        "on the validation slice, the latest part of the training period, never on the test period the figures below "
        "come from (the other candidate is not measured there)"
    )
    if cmp.get("chosen_by_default"):
        choice = f"Chosen by {cmp.get('chosen_on')}."  # "default: the logistic regression, because …"
    else:
        other = no_show.LOGISTIC if chosen == no_show.BOOSTED else no_show.BOOSTED
        choice = (
            f"The {name} was chosen over the {other.replace('_', ' ')} {where} (ROC AUC {on_validation(chosen)} vs "
            f"{on_validation(other)})."
        )
    if card.get("deployed_model") == no_show.HISTORY:
        what = (
            "No trained model: the score is each patient's own no-show rate so far, smoothed toward the "
            f"practice's rate with {no_show.HISTORY_PRIOR:g} pseudo-appointments, because on the test period "
            f"{cmp.get('why')}. {choice} A later training tries the models again."
        )
    elif cmp.get("chosen_by_default"):
        what = f"{'Logistic regression (scikit-learn)' if fallback else 'Gradient-boosted trees (LightGBM)'}; {choice}"
        what += f" Calibration: {card['calibration']}."
    elif fallback:
        what = (
            "Logistic regression (scikit-learn), deployed instead of the gradient-boosted trees because the "
            f"trees lost to it {where} (ROC AUC {on_validation(no_show.BOOSTED)} vs "
            f"{on_validation(no_show.LOGISTIC)}); calibration: {card['calibration']}."
        )
    else:
        what = (
            f"Gradient-boosted trees (LightGBM) with {card['calibration']}; they beat the logistic regression {where} "
            f"(ROC AUC {on_validation(no_show.BOOSTED)} vs {on_validation(no_show.LOGISTIC)}), else the regression "
            "would be deployed."
        )
    if cmp.get("why") and card.get("deployed_model") != no_show.HISTORY:
        what += f" Served because on the test period {cmp['why']}."
    dropped = card.get("dropped_features") or []
    lines = [
        "# No-show risk model card",
        "",
        f"Model `{card['model_version']}`, trained {card['trained_at']} on data as of {card['as_of']}.",
        "",
        "## What it predicts",
        "",
        f"The probability that a booked appointment ends as a no-show, scored {card['scoring_time']}. "
        f"Population: {card['population']}. {what}",
        "",
        "Features (all point-in-time: only what was known at the scoring time): "
        + ", ".join(f"`{f}`" for f in card["features"])
        + ".",
        "",
    ]
    if dropped:
        lines += [
            "Not used because the data has no value for them at all: " + ", ".join(f"`{f}`" for f in dropped) + ".",
            "",
        ]
    lines += [
        "## How well (time-based split)",
        "",
        f"Trained on {card['n_train']:,} appointments before {card['split_date']}, tested on the "
        f"{card['n_test']:,} after it. Test no-show rate {_fmt(base)}.",
        "",
        *_sample_lines(card),
        "| metric | deployed model | patient history rate | logistic regression | true probabilities (oracle) |",
        "|---|---|---|---|---|",
    ]
    hist = card["baselines"]["history_rate"]
    logit = card["baselines"]["logistic_regression"]
    oracle = card.get("oracle") or {}
    for key, label in (
        ("roc_auc", "ROC AUC"),
        ("pr_auc", "PR AUC"),
        ("brier", "Brier score"),
        ("calibration_slope", "calibration slope (1 = ideal)"),
        ("calibration_intercept", "calibration intercept (0 = ideal)"),
        ("ece", "ECE"),
    ):
        lines.append(
            f"| {label} | {_fmt(card[key])} | {_fmt(hist.get(key))} | {_fmt(logit.get(key))} | "
            f"{_fmt(oracle.get(key))} |"
        )
    lines += [
        "",
        f"Brier score of always predicting the test period's own rate: {_fmt(card.get('brier_reference'))}; of "
        "always predicting the training rate (the bar a served score must beat): "
        f"{_fmt((card['baselines'].get('constant_rate') or {}).get('brier'), 4)}.",
        "",
    ]
    if logit.get("roc_auc") is None:
        lines += [f"Logistic regression: {logit.get('note') or 'not measured on the test period'}.", ""]
    if card.get("oracle_roc_auc"):
        lines += [
            f"The model reaches {card['roc_auc'] / card['oracle_roc_auc']:.1%} of the ROC AUC of the "
            "generator's true probabilities on the same test rows. " + card.get("oracle_definition", ""),
            "",
        ]
    bands = card["risk_bands_test"]
    lines += [
        "## Risk bands",
        "",
        "High = the top 10% of the upcoming appointments by risk (call each one), medium = the next 20% "
        "(confirm by text), low = the rest: ranks among the appointments scored together, per clinic, so "
        "the lists always have that size. The probability itself says how likely a miss is.",
        "",
        "| band (test period) | appointments | observed no-show rate |",
        "|---|---|---|",
    ]
    for b in ("high", "medium", "low"):
        lines.append(f"| {b} | {bands[b]['n']:,} | {_fmt(bands[b]['observed_rate'])} |")
    lines += ["", "## By subgroup (test period)", ""]
    for group, levels in card["subgroups"].items():
        lines += [
            f"### {group}",
            "",
            "| level | n | no-show rate | mean predicted | ROC AUC | calibration slope |",
            "|---|---|---|---|---|---|",
        ]
        for level, m in levels.items():
            lines.append(
                f"| {level} | {m['n']:,} | {_fmt(m.get('base_rate'))} | {_fmt(m.get('mean_predicted'))} | "
                f"{_fmt(m.get('roc_auc'))} | {_fmt(m.get('calibration_slope'))} |"
            )
        lines.append("")
    lines += [
        "## Limits",
        "",
        "- Cancellations are not predicted; a cancel recorded before the scoring time counts as history.",
        "- The appointment's own start time is its latest one; a reschedule inside the last 48 h is not "
        "distinguishable in the marts.",
        "- Reasons are the two feature groups that move this appointment's risk most away from a typical "
        "appointment; they describe the model, not causes.",
        "- Age and payer are used because no-show risk differs by them; check the subgroup table before "
        "acting differently on any group.",
        "",
    ]
    return "\n".join(lines)


def denial_card_markdown(card: dict[str, Any]) -> str:
    """The denial model card in words: what it predicts, how well, the money, and its limits."""
    cmp = card.get("baseline_comparison") or {}
    dropped = card.get("dropped_features") or []
    truth_usd = card.get("truth_dollars_at_risk")
    lines = [
        "# Denial risk model card",
        "",
        f"Model `{card['model_version']}`, trained {card['trained_at']} on data as of {card['as_of']}.",
        "",
        "## What it predicts",
        "",
        f"The probability that the payer denies a claim, scored at {card['scoring_time']}. Population: "
        f"{card['population']}. Deployed: {card['deployed_model'].replace('_', ' ')} (choice: "
        f"{cmp.get('chosen_on')}). On the test period it scored ROC AUC {_fmt(card.get('roc_auc'))} against "
        f"{_fmt(cmp.get('payer_rate'))} for the payer's own denial rate; calibration: {card['calibration']}.",
        "",
        "Features (only what was known when the claim was created): "
        + ", ".join(f"`{f}`" for f in card["features"])
        + ".",
        "",
    ]
    if dropped:
        lines += [
            "Not used because the data has no value for them at all (an export the practice does not send): "
            + ", ".join(f"`{f}`" for f in dropped)
            + ".",
            "",
        ]
    lines += _sample_lines(card)
    lines += [
        "## How well (time-based split)",
        "",
        f"Trained on {card['n_train']:,} claims created before {card['split_date']}, tested on the "
        f"{card['n_test']:,} after it. Test denial rate {_fmt(card.get('base_rate_test'))}.",
        "",
        "| metric | deployed model | payer's denial rate | true probabilities (oracle) |",
        "|---|---|---|---|",
    ]
    payer = card["baselines"]["payer_rate"]
    oracle = card.get("oracle") or {}
    for key, label in (
        ("roc_auc", "ROC AUC"),
        ("pr_auc", "PR AUC"),
        ("brier", "Brier score"),
        ("calibration_slope", "calibration slope (1 = ideal)"),
        ("calibration_intercept", "calibration intercept (0 = ideal)"),
    ):
        lines.append(f"| {label} | {_fmt(card[key])} | {_fmt(payer.get(key))} | {_fmt(oracle.get(key))} |")
    lines += [
        "",
        "## Dollars at risk (test claims)",
        "",
        f"Billed ${card['billed_test_usd']:,.0f}; at risk by the model (probability x billed) "
        f"${card['dollars_at_risk']:,.0f}; actually denied ${card['observed_denied_dollars']:,.0f}"
        + (f"; expected by the true probabilities ${truth_usd:,.0f}." if truth_usd is not None else "."),
        "",
        "## Limits",
        "",
        "- Reasons name the fixable cause that raises this claim's risk most (authorization, note signing, KX, "
        "modifier 59, units, diagnosis coding); they describe the model, check the claim before changing it.",
        "- The payer's denial rate enters through the payer itself (learned on earlier claims), not a running "
        "rate: the claims mart does not say when each earlier denial arrived.",
        "- Authorizations and note signing times are read from the raw exports; without them those features "
        "are dropped and named above.",
        "",
    ]
    return "\n".join(lines) + "\n"
