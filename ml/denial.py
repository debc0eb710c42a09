"""Denial risk before submission: P(the payer denies this claim) from what a biller can see when it is created.

Why this shape:
- Point in time. A claim is scored as of its creation (`created_at`: the submission time in the claims mart,
  or as_of for a claim not submitted yet). Features read only what was known then: the claim's own charge
  lines (CPT codes, units, minutes, modifiers), the patient's earlier charges this year (KX threshold), the
  authorization on file (received by then) and its visits used so far, whether this visit's note and the
  last progress note were signed by then, the episode's diagnosis and the payer. Never the claim's outcome,
  its payments, later claims or anything signed or received later (tests/ml/test_ml_denial.py scrambles all
  of that and checks the features do not move).
- Every feature names a fix: the reasons say what to change before submitting ("authorization has 0 visits
  left: request an extension"), not which column mattered.
- The same recipe as the no-show model (ml/tabular.py): shallow gradient-boosted trees (LightGBM) stopped and
  calibrated (sigmoid) on the latest quarter of the training claims, a logistic regression on the same
  features as the other candidate and the payer's own denial rate as the baseline, a time split for the card;
  the candidate is chosen on the validation slice of the training claims, never on the test claims, and served
  only when it beats the payer's rate, chance and the constant rate there (`evaluation.serving_decision`, the
  rule the three models share).
- Partial data: a practice without authorization or documentation exports simply has those features empty;
  empty features are dropped (named on the card) and the rest still train.
- Money: dollars at risk = probability x billed, summed; on generated data the card sets it beside the
  generator's expected denied dollars (true probability x billed) on the same test claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ml import tabular
from ml.evaluation import (
    VALIDATION_SHARE,
    Words,
    choose_candidate,
    classification_metrics,
    reliability_bins,
    serving_decision,
)

SEED = 20240611
FEATURE_VERSION = 2  # 2: the candidate chosen on the validation slice, not the test rows (an older file is retrained)
BOOSTED = "boosted_trees"
LOGISTIC = "logistic_regression"
CAL_SHARE = 0.25
PAYER_PRIOR = 20.0  # pseudo-claims at the overall rate that smooth a payer's own denial rate (baseline)
# CMS therapy KX threshold by calendar year (published figures); later years reuse the last one
KX_THRESHOLD_USD = {2022: 2150.0, 2023: 2230.0, 2024: 2330.0, 2025: 2410.0, 2026: 2480.0, 2027: 2550.0}
MEDICARE_CLASSES = ("medicare", "medicare_advantage")
EVAL_CODES = ("97161", "97162", "97163", "97164")

NUMERIC = [
    "billed_usd",
    "n_lines",
    "timed_units",
    "timed_minutes",
    "units_over_per_code",
    "visit_number",
    "has_eval_code",
    "has_cq",
    "has_kx",
    "ytd_billed_usd",
    "kx_share",
    "kx_missing",
    "ncci_no_59",
    "icd_initial_encounter",
    "requires_auth",
    "no_auth",
    "auth_visits_left",
    "auth_days_left",
    "note_signed",
    "visits_since_signed_progress",
]
CATEGORICAL = ["payer_id", "payer_class", "clinic_id", "icd_group"]
FEATURES = NUMERIC + CATEGORICAL

GROUPS: dict[str, list[str]] = {
    "auth": ["requires_auth", "no_auth", "auth_visits_left", "auth_days_left"],
    "note": ["note_signed"],
    "progress": ["visits_since_signed_progress"],
    "kx": ["ytd_billed_usd", "kx_share", "kx_missing", "has_kx"],
    "ncci": ["ncci_no_59"],
    "units": ["timed_units", "timed_minutes", "units_over_per_code"],
    "diagnosis": ["icd_initial_encounter"],
    "dx_group": ["icd_group"],
    "payer": ["payer_id", "payer_class"],
    "visit": ["visit_number", "has_eval_code", "n_lines", "billed_usd", "has_cq", "clinic_id"],
}
assert sorted(c for cols in GROUPS.values() for c in cols) == sorted(FEATURES)
# groups whose reason is a fix the biller can make before submitting (the others are context: the payer,
# the diagnosis group, the kind of visit), named only when nothing fixable raises the risk
FIXABLE = ("auth", "note", "progress", "kx", "ncci", "units", "diagnosis")
CONTEXT_MIN = 0.02  # a context group is named only when it adds 2 points or more (else it is noise to a biller)


@dataclass(frozen=True)
class DenialFrames:
    """What the denial features read (pandas, columns as in ml/warehouse.py `read_denial_frames`).

    `authorizations` and `notes` are None when the practice's exports do not include them.
    """

    claims: pd.DataFrame
    lines: pd.DataFrame
    visits: pd.DataFrame
    episodes: pd.DataFrame
    payers: pd.DataFrame
    authorizations: pd.DataFrame | None
    notes: pd.DataFrame | None
    as_of: pd.Timestamp


# ------------------------------------------------------------------------------------------- features

_FEATURE_SQL = """
with c as (
    select claim_id, episode_id, appointment_id, patient_key, clinic_id, payer_id, payer_class,
           cast(service_date as date) as service_date, billed_usd::double as billed_usd,
           cast(created_at as timestamp) as created_at
    from claims
),
lines_at as (
    -- the claim's own lines, posted by its creation
    select l.claim_id, l.cpt_code, coalesce(l.modifiers, '') as modifiers, l.units::double as units,
           l.minutes::double as minutes, coalesce(l.is_timed, false) as is_timed
    from lines as l inner join c using (claim_id)
    where l.posted_at is null or l.posted_at <= c.created_at
),
agg as (
    select
        claim_id,
        count(*) as n_lines,
        coalesce(sum(units) filter (where is_timed), 0) as timed_units,
        coalesce(sum(minutes) filter (where is_timed), 0) as timed_minutes,
        coalesce(sum(case when minutes >= 8 then floor((minutes + 7) / 15) else 0 end) filter (where is_timed), 0)
            as per_code_units,
        bool_or(cpt_code in ('97161', '97162', '97163', '97164')) as has_eval_code,
        bool_or(modifiers like '%CQ%') as has_cq,
        bool_or(modifiers like '%KX%') as has_kx,
        bool_or(cpt_code = '97140') and bool_or(cpt_code = '97530')
            and not bool_or(cpt_code = '97140' and modifiers like '%59%') as ncci_no_59
    from lines_at
    group by claim_id
),
visit_n as (
    select appointment_id, episode_id, cast(scheduled_start as date) as visit_date,
           row_number() over (partition by episode_id order by scheduled_start, appointment_id) as visit_number
    from visits
),
posted as (
    -- the patient's charges this calendar year, running total in posting order
    select patient_key, year(cast(service_date as date)) as yr, posted_at,
           sum(charge_usd::double) over (
               partition by patient_key, year(cast(service_date as date)) order by posted_at
               range between unbounded preceding and current row
           ) as cum_usd
    from lines
    where posted_at is not null
),
ytd as (
    -- what had been posted by the claim's creation (its own lines included)
    select c.claim_id, p.cum_usd as ytd_billed_usd
    from c asof left join posted as p
        on p.patient_key = c.patient_key and p.yr = year(c.service_date) and c.created_at >= p.posted_at
),
base as (
    select
        c.*,
        coalesce(a.n_lines, 0) as n_lines,
        coalesce(a.timed_units, 0) as timed_units,
        coalesce(a.timed_minutes, 0) as timed_minutes,
        coalesce(a.timed_units - a.per_code_units, 0) as units_over_per_code,
        coalesce(a.has_eval_code, false)::int as has_eval_code,
        coalesce(a.has_cq, false)::int as has_cq,
        coalesce(a.has_kx, false)::int as has_kx,
        coalesce(a.ncci_no_59, false)::int as ncci_no_59,
        v.visit_number,
        y.ytd_billed_usd,
        e.icd10_primary,
        coalesce(p.requires_auth, false)::int as requires_auth
    from c
    left join agg as a using (claim_id)
    left join visit_n as v using (appointment_id)
    left join ytd as y using (claim_id)
    left join episodes as e on e.episode_id = c.episode_id
    left join payers as p on p.payer_id = c.payer_id
)
select
    b.claim_id, b.created_at, b.service_date, b.episode_id, b.appointment_id, b.payer_id, b.payer_class, b.clinic_id,
    b.billed_usd, b.n_lines, b.timed_units, b.timed_minutes, b.units_over_per_code, b.visit_number,
    b.has_eval_code, b.has_cq, b.has_kx, b.ytd_billed_usd, b.ncci_no_59, b.requires_auth,
    (regexp_matches(coalesce(b.icd10_primary, ''), '^[ST].*A$'))::int as icd_initial_encounter,
    left(b.icd10_primary, 3) as icd_group
from base as b
"""

_AUTH_SQL = """
with c as (
    select f.claim_id, f.episode_id, f.service_date, f.created_at, f.visit_number
    from feats as f
),
visit_n as (
    select episode_id, cast(scheduled_start as date) as visit_date,
           row_number() over (partition by episode_id order by scheduled_start, appointment_id) as visit_number
    from visits
),
latest as (
    -- the authorization on file at creation that covers the service date's start: latest valid_from first
    select c.claim_id, a.visits_authorized, a.valid_from, a.valid_to
    from c
    inner join auths as a
        on a.episode_id = c.episode_id and a.received_at <= c.created_at and a.valid_from <= c.service_date
    qualify row_number() over (
        partition by c.claim_id order by a.valid_from desc, a.received_at desc, a.auth_id desc
    ) = 1
),
used_before as (
    -- visits of the episode before the authorization started (they count against an earlier one)
    select l.claim_id, count(v.visit_number) as before_n
    from latest as l
    inner join c using (claim_id)
    left join visit_n as v on v.episode_id = c.episode_id and v.visit_date < l.valid_from
    group by l.claim_id
)
select
    c.claim_id,
    case when l.claim_id is null then 1 else 0 end as no_auth,
    l.visits_authorized - (c.visit_number - coalesce(u.before_n, 0)) as auth_visits_left,
    date_diff('day', c.service_date, l.valid_to) as auth_days_left
from c
left join latest as l using (claim_id)
left join used_before as u using (claim_id)
"""

_NOTES_SQL = """
with c as (
    select f.claim_id, f.episode_id, f.appointment_id, f.created_at, f.visit_number from feats as f
),
n as (
    select episode_id, appointment_id, note_type, visit_number, signed_at
    from notes
    where note_type <> 'discharge_summary'
),
own as (
    select c.claim_id, bool_or(n.signed_at is not null and n.signed_at <= c.created_at) as signed
    from c inner join n on n.appointment_id = c.appointment_id
    group by c.claim_id
),
progress as (
    select c.claim_id, max(n.visit_number) as last_signed
    from c inner join n
        on n.episode_id = c.episode_id and n.note_type in ('initial_eval', 'progress_note', 're_eval')
        and n.signed_at is not null and n.signed_at <= c.created_at and n.visit_number <= c.visit_number
    group by c.claim_id
)
select c.claim_id,
       coalesce(o.signed, false)::int as note_signed,
       c.visit_number - coalesce(p.last_signed, 0) as visits_since_signed_progress
from c
left join own as o using (claim_id)
left join progress as p using (claim_id)
"""


def claim_times(claims: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """When each claim is scored: its submission time, or as_of for one not submitted yet (never later)."""
    sub = pd.to_datetime(claims["submitted_at"])
    return sub.fillna(pd.Timestamp(as_of)).clip(upper=pd.Timestamp(as_of))


def build_features(targets: pd.DataFrame, frames: DenialFrames, created_at: pd.Series | None = None) -> pd.DataFrame:
    """One row of point-in-time features per target claim (same order), as of the claim's creation.

    `targets` are rows of frames.claims; the history is frames.* . `created_at` overrides the scoring times
    (the leakage test pins them).
    """
    t = claim_times(targets, frames.as_of) if created_at is None else pd.to_datetime(created_at)
    claims = targets.reset_index(drop=True).assign(created_at=t.reset_index(drop=True).to_numpy())
    con = duckdb.connect()
    try:
        con.register("claims", claims)
        con.register("lines", frames.lines)
        con.register("visits", frames.visits)
        con.register("episodes", frames.episodes)
        con.register("payers", frames.payers)
        feats = con.sql(_FEATURE_SQL).df()
        con.register("feats", feats)
        if frames.authorizations is not None:
            con.register("auths", frames.authorizations)
            feats = feats.merge(con.sql(_AUTH_SQL).df(), on="claim_id", how="left")
        if frames.notes is not None:
            con.register("notes", frames.notes)
            feats = feats.merge(con.sql(_NOTES_SQL).df(), on="claim_id", how="left")
    finally:
        con.close()
    feats = claims[["claim_id"]].merge(feats, on="claim_id", how="left")
    for col in ("no_auth", "auth_visits_left", "auth_days_left", "note_signed", "visits_since_signed_progress"):
        if col not in feats:
            feats[col] = np.nan  # the export is missing: dropped before fitting, named on the card
    needs = feats["requires_auth"].astype(float) > 0
    for col in ("no_auth", "auth_visits_left", "auth_days_left"):
        feats[col] = feats[col].astype(float).where(needs)  # not asked of payers without prior auth
    medicare = feats["payer_class"].isin(MEDICARE_CLASSES)
    feats["visits_since_signed_progress"] = feats["visits_since_signed_progress"].astype(float).where(medicare)
    year = pd.to_datetime(feats["service_date"]).dt.year
    thresh = year.map(lambda y: KX_THRESHOLD_USD.get(int(y), KX_THRESHOLD_USD[max(KX_THRESHOLD_USD)]))
    feats["kx_thresh"] = thresh.astype(float)
    return feats


def add_kx(feats: pd.DataFrame, allowed_ratio: dict[str, float]) -> pd.DataFrame:
    """KX: the year's estimated allowed spend (charges x the payer's allowed share) over the threshold.

    Only Medicare Part B applies the therapy threshold; `kx_missing` flags a claim past it without KX.
    """
    f = feats.copy()
    ratio = f["payer_id"].map(allowed_ratio).astype(float).fillna(np.nanmedian(list(allowed_ratio.values()) or [0.5]))
    share = f["ytd_billed_usd"].astype(float) * ratio / f["kx_thresh"]
    medicare = (f["payer_class"] == "medicare").to_numpy()
    f["kx_share"] = share.where(medicare)
    f["kx_missing"] = ((share > 1) & medicare & (f["has_kx"] == 0)).astype(int)
    return f


# ------------------------------------------------------------------------------------------- model


@dataclass
class DenialModel:
    """Everything scoring needs, pickled as one object."""

    estimator: Any
    categories: dict[str, list[str]]
    numeric: list[str]
    reference: dict[str, Any]
    allowed_ratio: dict[str, float]
    payer_rates: dict[str, float]
    base_rate: float
    trained_at: str
    version: str
    train_rows: int
    kind: str = BOOSTED
    dropped: list[str] = field(default_factory=list)
    feature_version: int = FEATURE_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        if "kx_share" not in features:  # raw build_features output: add the fitted KX estimate
            features = add_kx(features, self.allowed_ratio)
        x = tabular.encode(features, self.categories, self.numeric)
        return tabular.integer_codes(x, list(self.categories)) if self.kind == LOGISTIC else x

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return self.estimator.predict_proba(self.matrix(features))[:, 1]


def _booster(numeric: list[str]) -> tabular.ShallowBooster:
    """Shallow trees (tabular.shallow_booster): denial causes mostly add up; a few leaves let a cause interact
    with the payer. A fixable cause can only raise the risk; signed notes and authorization left only lower it."""
    monotone = {c: 1 for c in ("kx_missing", "ncci_no_59", "units_over_per_code", "no_auth") if c in numeric}
    monotone |= {c: -1 for c in ("note_signed", "auth_visits_left", "auth_days_left") if c in numeric}
    return tabular.shallow_booster(SEED, min_samples_leaf=100, max_iter=400, monotone=monotone)


def allowed_ratios(claims: pd.DataFrame) -> dict[str, float]:
    """Per payer: median allowed / billed of paid claims (what the practice knows of its fee schedule)."""
    paid = claims[(claims["allowed_usd"].astype(float) > 0) & (claims["billed_usd"].astype(float) > 0)]
    ratio = paid["allowed_usd"].astype(float) / paid["billed_usd"].astype(float)
    return {str(k): float(v) for k, v in ratio.groupby(paid["payer_id"]).median().items()}


def payer_rates(payer: pd.Series, y: np.ndarray) -> dict[str, float]:
    """Each payer's denial rate, shrunk toward the overall rate (the baseline a biller knows by heart)."""
    overall = float(np.mean(y)) if len(y) else 0.0
    df = pd.DataFrame({"p": payer.astype("string").fillna("<na>").to_numpy(), "y": y})
    g = df.groupby("p")["y"].agg(["sum", "count"])
    return {str(k): float((r["sum"] + PAYER_PRIOR * overall) / (r["count"] + PAYER_PRIOR)) for k, r in g.iterrows()}


def payer_baseline(rates: dict[str, float], payer: pd.Series, overall: float) -> np.ndarray:
    return payer.astype("string").map(rates).astype(float).fillna(overall).to_numpy()


def _fit(kind: str, x: pd.DataFrame, y: np.ndarray, order: np.ndarray, numeric: list[str], categorical: list[str]):
    if kind == LOGISTIC:
        return tabular.logistic_baseline(numeric, categorical, ("ytd_billed_usd", "billed_usd")).fit(
            tabular.integer_codes(x, categorical), y
        )
    return tabular.fit_calibrated(_booster(numeric), x, y, order, CAL_SHARE, "sigmoid")


def _columns(features: pd.DataFrame, order: np.ndarray) -> tuple[list[str], list[str], list[str]]:
    fit_idx, _ = tabular.fit_rows(order, CAL_SHARE)
    rows = features.iloc[fit_idx]
    numeric, dropped_num = tabular.present_columns(rows, NUMERIC)
    categorical, dropped_cat = tabular.present_columns(rows, CATEGORICAL)
    return numeric, categorical, dropped_num + dropped_cat


def time_split(times: pd.Series, test_share: float = 0.2) -> pd.Timestamp:
    s = pd.to_datetime(times).sort_values()
    return s.iloc[int(len(s) * (1 - test_share))].normalize()


@dataclass
class Evaluation:
    card: dict[str, Any]
    calibration_bins: list[dict[str, Any]]
    test_predictions: pd.DataFrame


WORDS = Words(
    positives="denials",
    negatives="paid or adjusted",
    rows="claims",
    ranked="denials",
    baseline="the payer's own denial rate",
    constant="the constant denial rate",
)
RULE = (
    "the boosted trees and the logistic regression are fitted on the claims of the training window created before "
    "its latest 20% and compared on that latest part (the validation slice: ROC AUC, ties keep the trees; with "
    "fewer than 10 of either outcome there, or in the slices the candidates are fitted and calibrated on before "
    "it, the logistic regression by default); the chosen one is refitted on the whole training window and measured "
    "on the test period; it is served only if its ROC AUC there is above the payer's own denial rate's and "
    "chance's and its Brier score below always saying the training denial rate; else no denial score is served "
    "(the payer rate alone names no claim to fix)"
)


@dataclass
class _Fitted:
    p: np.ndarray
    dropped: list[str]


def _fit_predict(
    features: pd.DataFrame,
    y: np.ndarray,
    claims: pd.DataFrame,
    order: np.ndarray,
    kind: str,
    fit: np.ndarray,
    score: np.ndarray,
) -> _Fitted:
    """Candidate `kind` fitted on the claims `fit` by the recipe (allowed ratios, columns and categories from those
    claims; trees stopped and calibrated on their latest quarter), and its probabilities on the claims `score`."""
    f = add_kx(features, allowed_ratios(claims[fit]))
    numeric, categorical, dropped = _columns(f[fit].reset_index(drop=True), order[fit])
    cats = tabular.fit_categories(f[fit], categorical)
    keep = fit | score
    x = tabular.encode(f[keep], cats, numeric)
    on_fit, on_score = fit[keep], score[keep]
    model = _fit(kind, x[on_fit], y[fit], order[fit], numeric, categorical)
    x_score = x[on_score] if kind == BOOSTED else tabular.integer_codes(x[on_score], categorical)
    return _Fitted(model.predict_proba(x_score)[:, 1], dropped)


def evaluate(
    features: pd.DataFrame,
    y: np.ndarray,
    claims: pd.DataFrame,
    truth: pd.Series | None = None,
    test_share: float = 0.2,
) -> Evaluation:
    """Time split by claim creation: choose on the earlier claims, fit on them, measure on the later ones.

    The candidates (trees, regression) are compared on the validation slice, the latest 20% of the training
    claims, fitted on the claims before it (`evaluation.choose_candidate`); the chosen one is refitted on every
    training claim and measured on the test claims beside the payer's own rate, which with the constant rate and
    chance decides whether it is served (`evaluation.serving_decision`). `claims` (aligned with rows) supplies
    billed_usd and allowed_usd; `truth` the generator's true denial probabilities (oracle and expected denied
    dollars), when known.
    """
    features = features.reset_index(drop=True)
    claims = claims.reset_index(drop=True)
    times = pd.to_datetime(features["created_at"])
    split = time_split(times, test_share)
    train = (times < split).to_numpy()
    test = ~train
    order = times.astype("int64").to_numpy()
    cut = time_split(times[train], VALIDATION_SHARE)
    before = train & (times < cut).to_numpy()
    choice = choose_candidate(
        (BOOSTED, LOGISTIC),
        lambda kind, fit, score: _fit_predict(features, y, claims, order, kind, fit, score).p,
        y,
        before,
        train & ~before,
        order,
        default=LOGISTIC,
        start=cut.date().isoformat(),
        words=WORDS,
        cal_share=CAL_SHARE,
    )
    chosen = choice.kind
    fitted = _fit_predict(features, y, claims, order, chosen, train, test)
    p = fitted.p
    f = add_kx(features, allowed_ratios(claims[train]))
    rates = payer_rates(f.loc[train, "payer_id"], y[train])
    p_payer = payer_baseline(rates, f.loc[test, "payer_id"], float(y[train].mean()))
    metrics = classification_metrics(y[test], p)
    m_payer = classification_metrics(y[test], p_payer)
    brier_constant = float(np.mean((y[test] - float(y[train].mean())) ** 2))  # always the training denial rate
    serving = serving_decision(chosen, metrics, m_payer, brier_constant, WORDS)
    other = LOGISTIC if chosen == BOOSTED else BOOSTED
    tested = {chosen: metrics, other: choice.unmeasured(other)}
    billed = claims.loc[test, "billed_usd"].astype(float).to_numpy()
    oracle, truth_dollars = None, None
    if truth is not None:
        tv = pd.to_numeric(truth.reset_index(drop=True)[test], errors="coerce").to_numpy(float)
        ok = ~np.isnan(tv)
        if ok.sum() > 0 and 0 < y[test][ok].sum() < ok.sum():
            oracle = classification_metrics(y[test][ok], tv[ok])
            oracle["coverage"] = float(ok.mean())
            oracle["model_roc_auc_same_rows"] = classification_metrics(y[test][ok], p[ok])["roc_auc"]
            truth_dollars = float(np.nansum(tv * billed))
    frame = f.loc[test, ["payer_class", "clinic_id"]].assign(y=y[test], p=p)
    subgroups: dict[str, dict[str, Any]] = {}
    for col in ("payer_class", "clinic_id"):
        key = "clinic" if col == "clinic_id" else col
        subgroups[key] = {}
        for level, part in frame.groupby(frame[col].astype("string").fillna("unknown"), sort=True):
            subgroups[key][str(level)] = (
                {"n": int(len(part)), "note": "fewer than 30 test claims"}
                if len(part) < 30
                else classification_metrics(part["y"].to_numpy(), part["p"].to_numpy())
            )
    test_rate = float(y[test].mean())
    card = {
        **{k: metrics[k] for k in ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece")},
        "deployed_model": serving.served,
        "withheld": serving.reason if serving.withheld else None,
        "baseline_comparison": {
            "metric": "ROC AUC on the test period of the chosen model and the payer's rate (the candidates' figures "
            "on the validation slice, where the choice was made, are under `validation`)",
            BOOSTED: tested[BOOSTED]["roc_auc"],
            LOGISTIC: tested[LOGISTIC]["roc_auc"],
            "payer_rate": m_payer["roc_auc"],
            "brier": {
                BOOSTED: tested[BOOSTED]["brier"],
                LOGISTIC: tested[LOGISTIC]["brier"],
                "payer_rate": m_payer["brier"],
            },
            "brier_constant_rate": brier_constant,
            "best_model": chosen,
            "deployed": serving.served,
            "why": serving.reason,
            "chosen_on": choice.chosen_on,
            "chosen_by_default": choice.by_default,
            "validation": choice.validation,
            "serving_gate": serving.figures(),
            "rule": RULE,
        },
        "candidates": tested,
        "baselines": {"payer_rate": m_payer, "logistic_regression": tested[LOGISTIC]},
        "dropped_features": fitted.dropped,
        "oracle_roc_auc": oracle["roc_auc"] if oracle else None,
        "oracle": oracle,
        "baseline_roc_auc": m_payer["roc_auc"],
        "n_train": int(train.sum()),
        "n_test": int(test.sum()),
        "split_date": split.date().isoformat(),
        "base_rate_test": test_rate,
        "brier_reference": test_rate * (1 - test_rate),
        "mean_predicted_test": float(p.mean()),
        "dollars_at_risk": float(np.sum(p * billed)),
        "truth_dollars_at_risk": truth_dollars,
        "observed_denied_dollars": float(np.sum(y[test] * billed)),
        "billed_test_usd": float(billed.sum()),
        "subgroups": subgroups,
    }
    preds = pd.DataFrame({"y": y[test], "p": p, f"p_{chosen}": p, "p_payer": p_payer})
    return Evaluation(card, reliability_bins(y[test], p), preds)


def fit_final(
    features: pd.DataFrame, y: np.ndarray, claims: pd.DataFrame, trained_at: str, version: str, kind: str = BOOSTED
) -> DenialModel:
    """The deployed model: the chosen recipe on every labelled claim."""
    features = features.reset_index(drop=True)
    claims = claims.reset_index(drop=True)
    ratio = allowed_ratios(claims)
    f = add_kx(features, ratio)
    order = pd.to_datetime(f["created_at"]).astype("int64").to_numpy()
    numeric, categorical, dropped = _columns(f, order)
    cats = tabular.fit_categories(f, categorical)
    x = tabular.encode(f, cats, numeric)
    estimator = _fit(kind, x, y, order, numeric, categorical)
    return DenialModel(
        estimator=estimator,
        categories=cats,
        numeric=numeric,
        reference=tabular.reference_values(f, NUMERIC, CATEGORICAL),
        allowed_ratio=ratio,
        payer_rates=payer_rates(f["payer_id"], y),
        base_rate=float(np.mean(y)),
        trained_at=trained_at,
        version=version,
        train_rows=int(len(y)),
        kind=kind,
        dropped=dropped,
    )


# ------------------------------------------------------------------------------------------- reasons

_PAYER_WORDS = {
    "commercial": "commercial plan",
    "medicare": "Medicare",
    "medicare_advantage": "Medicare Advantage plan",
    "medicaid": "Medicaid plan",
    "workers_comp": "workers' comp carrier",
    "auto_pi": "auto / personal-injury carrier",
}


def _n(s: Any) -> pd.Series:
    return pd.to_numeric(pd.Series(s), errors="coerce").round().astype("Int64").astype("string")


def reason_texts(f: pd.DataFrame, payer_rates_: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(texts, problems): one plain sentence per feature group and claim naming what to fix, and whether the
    group shows a problem on this claim at all (a fix is only suggested where there is one). Vectorised."""
    f = f.reset_index(drop=True)
    idx = f.index

    def col(name: str) -> pd.Series:
        # float64, not a nullable dtype: a pd.NA in a comparison would fail np.where (seen at 200 clinics)
        return pd.to_numeric(f[name], errors="coerce").astype("float64") if name in f else pd.Series(np.nan, index=idx)

    left, days = col("auth_visits_left"), col("auth_days_left")
    auth = np.select(
        [col("no_auth") == 1, left < 0, days < 0, left.notna()],
        [
            "no authorization on file for a payer that requires one: get it before submitting",
            "authorization has 0 visits left (this visit is " + _n(-left) + " past it): request an extension",
            "authorization ended " + _n(-days) + " days before the visit: request a new one",
            "authorization has " + _n(left) + " visits left",
        ],
        "no prior authorization needed",
    )
    note = np.where(
        col("note_signed") == 0, "visit note not signed yet: sign it before submitting", "visit note signed"
    )
    since = col("visits_since_signed_progress")
    last = col("visit_number") - since
    progress = np.where(
        since >= 10,
        np.where(
            last > 1,
            "no signed progress note since visit " + _n(last) + ": sign the progress note before submitting",
            "no signed progress note since the evaluation: sign the progress note before submitting",
        ),
        "progress note up to date",
    )
    kx = np.where(
        col("kx_missing") == 1,
        "Medicare spend this year is past the KX threshold and the claim has no KX modifier: add KX",
        np.where(col("has_kx") == 1, "KX modifier on the claim", "below the Medicare KX threshold"),
    )
    ncci = np.where(
        col("ncci_no_59") == 1,
        "97140 billed with 97530 without modifier 59: add 59 if the services were distinct",
        "no code pair needing modifier 59",
    )
    over = col("units_over_per_code")
    units = np.where(
        over > 0,
        _n(over) + " more timed units than each code's own minutes support: check this payer's unit rule",
        np.where(
            col("timed_units") >= 5,
            _n(col("timed_units")) + " timed units on one visit: check the note supports the minutes",
            "units match the minutes",
        ),
    )
    diagnosis = np.where(
        col("icd_initial_encounter") == 1,
        "injury diagnosis coded as the initial encounter (7th character A): therapy uses D",
        "diagnosis coded for a subsequent encounter",
    )
    rate = f["payer_id"].astype("string").map(payer_rates_).astype(float)
    payer = (
        f["payer_class"].map(_PAYER_WORDS).fillna("payer")
        + " that denies "
        + _n(rate * 100).fillna("?")
        + "% of claims: check its billing rules"
    )
    visit = np.where(col("has_eval_code") == 1, "evaluation claim", "visit " + _n(col("visit_number")) + " claim")
    dx_group = "diagnosis group this payer often denies: check the code's coverage"
    problems = {
        "auth": (col("no_auth") == 1) | (left < 0) | (days < 0),
        "note": col("note_signed") == 0,
        "progress": since >= 10,
        "kx": col("kx_missing") == 1,
        "ncci": col("ncci_no_59") == 1,
        "units": (over > 0) | (col("timed_units") >= 5),
        "diagnosis": col("icd_initial_encounter") == 1,
        "dx_group": pd.Series(True, index=idx),
        "payer": pd.Series(True, index=idx),
        "visit": pd.Series(True, index=idx),
    }
    texts = {
        "auth": auth,
        "note": note,
        "progress": progress,
        "kx": kx,
        "ncci": ncci,
        "units": units,
        "diagnosis": diagnosis,
        "dx_group": pd.Series(dx_group, index=idx),
        "payer": payer,
        "visit": visit,
    }
    out = pd.DataFrame({g: pd.Series(np.asarray(v, dtype=object), index=idx).fillna("") for g, v in texts.items()})
    flags = pd.DataFrame({g: pd.Series(np.asarray(v, dtype=bool), index=idx) for g, v in problems.items()})
    return out[list(GROUPS)], flags[list(GROUPS)]


def _at_reference(f: pd.DataFrame, cols: list[str], reference: dict[str, Any]) -> np.ndarray:
    """Rows whose `cols` already hold the typical claim's values (both missing counts as the same): setting the
    group to them gives the same input, so its contribution is exactly 0. Unsure (a missing value against a
    present one) counts as different."""
    same = np.ones(len(f), dtype=bool)
    for c in cols:
        ref = reference.get(c)
        if ref is None or (isinstance(ref, float) and np.isnan(ref)):
            same &= f[c].isna().to_numpy(dtype=bool)
        else:
            same &= (f[c] == ref).fillna(False).to_numpy(dtype=bool)
    return same


def contributions(model: DenialModel, features: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """(p, contributions): per group, p(x) - p(x with that group set to the typical claim); one batch predict of
    the claims and, per group, only the claims whose group differs from the typical claim's (the others add 0:
    a third of the rows at 200 clinics)."""
    f = features.reset_index(drop=True)
    copies, changed = [f], []
    for cols in GROUPS.values():
        rows = np.flatnonzero(~_at_reference(f, cols, model.reference))
        g = f.iloc[rows].copy()
        for c in cols:
            g[c] = model.reference.get(c)
        copies.append(g)
        changed.append(rows)
    p_all = model.predict(pd.concat(copies, ignore_index=True))
    p = p_all[: len(f)]
    contrib = np.zeros((len(f), len(GROUPS)))
    start = len(f)
    for j, rows in enumerate(changed):
        contrib[rows, j] = p[rows] - p_all[start : start + len(rows)]
        start += len(rows)
    return p, pd.DataFrame(contrib, columns=list(GROUPS))


def explain(model: DenialModel, features: pd.DataFrame) -> pd.DataFrame:
    """probability, reason_1, reason_2, reason_group_1: the two groups that raise this claim's risk most.

    Fixable groups (authorization, notes, KX, modifiers, units, diagnosis) come first when they raise the
    risk at all, so the reasons say what to change; the payer or the visit only fill in when nothing fixable
    does. A reason is given only for a group that raises the risk.
    """
    f = add_kx(features.reset_index(drop=True), model.allowed_ratio)
    if f.empty:
        return pd.DataFrame(columns=["probability", "reason_1", "reason_2", "reason_group_1"])
    p, contrib = contributions(model, f)
    text_frame, flags = reason_texts(f, model.payer_rates)
    texts = text_frame.to_numpy(dtype=object)
    c = contrib.to_numpy()
    fixable = np.array([g in FIXABLE for g in GROUPS])
    # a group qualifies when it raises the risk and (for a fixable one) shows a problem on this claim;
    # fixable ones rank first: a margin larger than any probability difference
    ok = (c > 1e-4) & flags.to_numpy() & (fixable[None, :] | (c > CONTEXT_MIN))
    score = np.where(ok, c + 2.0 * fixable[None, :], -1.0)
    top = np.argsort(-score, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(f))
    ok1 = score[rows, top[:, 0]] > 0
    ok2 = score[rows, top[:, 1]] > 0
    names = np.array(list(GROUPS), dtype=object)
    return pd.DataFrame(
        {
            "probability": p,
            "reason_1": np.where(ok1, texts[rows, top[:, 0]], None),
            "reason_2": np.where(ok2, texts[rows, top[:, 1]], None),
            "reason_group_1": np.where(ok1, names[top[:, 0]], None),
        }
    )


# ------------------------------------------------------------------------------------------- populations


def _payer_claims(claims: pd.DataFrame) -> pd.Series:
    """Claims sent to a payer (the models' is_payer_claim): a payer named, not the practice's self-pay, and not voided
    (marts.claims.claim_status: its latest version a void, withdrawn from the payer). No payer can deny the others,
    so they are neither learnt from nor scored."""
    sent = claims["payer_id"].notna() & (claims["payer_class"] != "self_pay")
    if "claim_status" in claims:  # a mart built before claims had a status has none
        sent &= claims["claim_status"].ne("voided")
    return sent


def labelled(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims the payer has decided (paid, adjusted or denied), self-pay and payer-less ones left out: the training
    population."""
    decided = claims["is_adjudicated"].fillna(False).astype(bool)
    return claims[decided & _payer_claims(claims)].reset_index(drop=True)


def open_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """Claims not decided yet (or not submitted yet), self-pay and payer-less ones left out: what the biller can
    still fix."""
    decided = claims["is_adjudicated"].fillna(False).astype(bool)
    return claims[~decided & _payer_claims(claims)].reset_index(drop=True)
