"""Denial risk on the real small practice: point-in-time features, model card against the generator's truth,
scores, the work-queue rule, plain-word reasons and partial exports (no authorizations, no notes).

Uses the shared session fixtures (a real generate -> ingest -> dbt build whose scoring step trained every
model); writes only into copies.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml import artifacts, denial, tabular, warehouse
from ml.evaluation import serving_decision
from ml.train_score import train_denial

CARD_KEYS = {
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
    "trained_at",
    "subgroups",
    "deployed_model",
    "baseline_comparison",
    "candidates",
    "dropped_features",
    "dollars_at_risk",
    "truth_dollars_at_risk",
}


def _frames(settings) -> denial.DenialFrames:
    con = duckdb.connect(str(settings.analytics_db), read_only=True)
    try:
        return warehouse.read_denial_frames(con, settings.raw_db)
    finally:
        con.close()


@pytest.fixture(scope="module")
def frames(built_home) -> denial.DenialFrames:
    return _frames(built_home)


@pytest.fixture(scope="module")
def with_truth(tmp_path_factory, built_home, small_practice):
    """A copy of the built home whose denial model is retrained with the generator's truth."""
    from ptpulse.core.config import get_settings

    home = tmp_path_factory.mktemp("denial_truth_home")
    shutil.copy2(built_home.analytics_db, home / "analytics.duckdb")
    shutil.copy2(built_home.raw_db, home / "raw.duckdb")
    settings = get_settings(home)
    con = duckdb.connect(str(settings.analytics_db), read_only=True)
    try:
        card = train_denial(con, settings, "2026-01-01T00:00:00+00:00", small_practice / "truth")
    finally:
        con.close()
    return settings, card


def scramble_after(fr: denial.DenialFrames, cutoff: pd.Timestamp, keep: str, seed: int = 1) -> denial.DenialFrames:
    """Rewrite everything the practice learnt after `cutoff`; the claim `keep` keeps its own facts."""
    rng = np.random.default_rng(seed)
    c = fr.claims.copy()
    # outcomes of every claim: garbage (a claim's own outcome is never known at its creation)
    c["is_denied"] = rng.random(len(c)) < 0.5
    c["is_adjudicated"] = rng.random(len(c)) < 0.5
    c["allowed_usd"] = rng.random(len(c)) * 500
    # claims created after the cutoff: moved, re-priced, half of them gone
    later = (pd.to_datetime(c["submitted_at"]) > cutoff) & (c["claim_id"] != keep)
    c.loc[later, "billed_usd"] = rng.random(later.sum()) * 900
    c.loc[later, "service_date"] = (cutoff + pd.to_timedelta(rng.integers(1, 40, later.sum()), unit="D")).normalize()
    c = c[~later | (rng.random(len(c)) < 0.5)]
    # charge lines posted after the cutoff (other claims'): new codes, units, minutes, modifiers, dollars
    ln = fr.lines.astype({"units": float, "minutes": float})
    late = (pd.to_datetime(ln["posted_at"]) > cutoff).to_numpy()
    ln.loc[late, "cpt_code"] = rng.choice(["97140", "97530", "97110"], late.sum())
    ln.loc[late, "modifiers"] = rng.choice(["GP", "GP|KX", "GP|59"], late.sum())
    ln.loc[late, "units"] = rng.integers(1, 6, late.sum())
    ln.loc[late, "minutes"] = rng.integers(1, 80, late.sum())
    ln.loc[late, "charge_usd"] = rng.random(late.sum()) * 400
    # visits after the cutoff: half of them gone, new ones added
    v = fr.visits.copy()
    after = (pd.to_datetime(v["scheduled_start"]) > cutoff).to_numpy()
    extra = v[after].assign(appointment_id=lambda d: d["appointment_id"] + "x", scheduled_start=cutoff)
    v = pd.concat([v[~after | (rng.random(len(v)) < 0.5)], extra.assign(scheduled_start=cutoff + pd.Timedelta(1, "h"))])
    # authorizations received later: any content; notes signed or created later: signed at random later times
    a = fr.authorizations.astype({"visits_authorized": float})
    recv = (pd.to_datetime(a["received_at"]) > cutoff).to_numpy()
    a.loc[recv, "visits_authorized"] = rng.integers(0, 30, recv.sum())
    a.loc[recv, "valid_from"] = (cutoff - pd.to_timedelta(rng.integers(0, 90, recv.sum()), unit="D")).normalize()
    a.loc[recv, "valid_to"] = (cutoff + pd.to_timedelta(rng.integers(0, 90, recv.sum()), unit="D")).normalize()
    n = fr.notes.copy()
    signed_later = (pd.to_datetime(n["signed_at"]) > cutoff).to_numpy()
    n.loc[signed_later, "signed_at"] = cutoff + pd.to_timedelta(rng.integers(1, 10**6, signed_later.sum()), unit="s")
    unsigned = n["signed_at"].isna().to_numpy() & (rng.random(len(n)) < 0.5)
    n.loc[unsigned, "signed_at"] = cutoff + pd.Timedelta(minutes=5)  # signed after the cutoff at last
    return replace(fr, claims=c, lines=ln, visits=v, authorizations=a, notes=n)


def test_features_ignore_everything_after_the_claim_is_created(frames):
    labelled = denial.labelled(frames.claims)
    # claims with something to look at: auth payers, Medicare past visit 10, unsigned notes at creation
    picks = pd.concat(
        [
            labelled[labelled["payer_id"].isin(["PY02", "PY06", "PY08"])].sample(5, random_state=1),
            labelled[labelled["payer_class"] == "medicare"].sample(4, random_state=2),
            labelled.sample(3, random_state=3),
        ]
    ).reset_index(drop=True)
    times = denial.claim_times(picks, frames.as_of)
    informative = 0
    for i in range(len(picks)):
        one = picks.iloc[[i]].reset_index(drop=True)
        base = denial.build_features(one, frames)
        informative += int(base[["auth_visits_left", "visits_since_signed_progress"]].notna().any(axis=None))
        scrambled = scramble_after(frames, times.iloc[i], keep=one["claim_id"].iloc[0], seed=i)
        pd.testing.assert_frame_equal(base, denial.build_features(one, scrambled), check_dtype=False)
    assert informative >= 5


def test_leakage_test_would_catch_a_note_signed_after_creation(frames):
    labelled = denial.labelled(frames.claims)
    f = denial.build_features(labelled, frames)
    row = f[f["note_signed"] == 1].iloc[0]
    one = labelled[labelled["claim_id"] == row["claim_id"]].reset_index(drop=True)
    notes = frames.notes.copy()
    own = notes["appointment_id"] == row["appointment_id"]
    notes.loc[own, "signed_at"] = pd.Timestamp(row["created_at"]) + pd.Timedelta(hours=1)
    moved = denial.build_features(one, replace(frames, notes=notes))
    assert moved["note_signed"].iloc[0] == 0


def test_card_scores_and_queue_of_the_built_practice(built_home):
    card = json.loads(artifacts.denial_card_path(built_home).read_text())
    assert CARD_KEYS <= set(card)
    assert card["dropped_features"] == [] and card["sources"] == {"authorizations": True, "documentation": True}
    assert card["roc_auc"] > card["baseline_roc_auc"] + 0.05
    assert "Denial risk model card" in artifacts.denial_card_path(built_home).with_suffix(".md").read_text()
    con = duckdb.connect(str(built_home.analytics_db), read_only=True)
    try:
        scores = con.sql("select * from ml.denial_scores").df()
        open_claims = con.sql(
            "select count(*) from marts.claims where not is_adjudicated and payer_class <> 'self_pay' "
            "and claim_status <> 'voided'"
        ).fetchall()[0][0]
        tasks = con.sql("select * from ml.work_queue_tasks where rule = 'denial_fix_before_submit'").df()
    finally:
        con.close()
    assert list(scores.columns) == list(warehouse.ML_TABLES["denial_scores"])
    assert len(scores) == open_claims > 0 and scores["claim_id"].is_unique
    assert scores["probability"].between(0, 1).all()
    np.testing.assert_allclose(scores["dollars_at_risk"], scores["probability"] * scores["billed_usd"])
    assert len(tasks) > 0 and tasks["task_id"].is_unique
    flagged = scores[(scores["probability"] >= warehouse.DENIAL_TASK_P) & scores["reason_group"].isin(denial.FIXABLE)]
    assert len(tasks) == len(flagged)
    assert tasks["reason"].str.startswith("Denial risk ").all() and tasks["patient_id"].notna().all()


def test_model_against_the_generators_truth(with_truth):
    """Small practice (~1,900 test claims): close to the oracle, calibrated, dollars near the expected."""
    _, card = with_truth
    # the causes carry real signal (the oracle's own AUC on ~1,900 claims moves 0.74-0.77 with the draw)
    assert card["oracle_roc_auc"] > 0.72
    assert card["roc_auc"] >= 0.9 * card["oracle_roc_auc"]
    assert 0.7 <= card["calibration_slope"] <= 1.3
    assert abs(card["dollars_at_risk"] / card["truth_dollars_at_risk"] - 1) < 0.2
    assert card["deployed_model"] in (denial.BOOSTED, denial.LOGISTIC)


def test_reasons_name_the_fix_in_plain_words():
    f = pd.DataFrame(
        {
            "claim_id": ["a", "b", "c", "d"],
            "payer_id": ["PY02", "PY05", "PY01", "PY06"],
            "payer_class": ["commercial", "medicare", "commercial", "medicare_advantage"],
            "no_auth": [0, np.nan, np.nan, 0],
            "auth_visits_left": [-1, np.nan, np.nan, 4],
            "auth_days_left": [20, np.nan, np.nan, -3],
            "note_signed": [1, 0, 1, 1],
            "visit_number": [13, 14, 3, 12],
            "visits_since_signed_progress": [np.nan, 13, np.nan, 2],
            "kx_missing": [0, 1, 0, 0],
            "has_kx": [0, 0, 0, 0],
            "ncci_no_59": [0, 0, 1, 0],
            "units_over_per_code": [0, 0, 1, 0],
            "timed_units": [3, 3, 4, 5],
            "icd_initial_encounter": [0, 0, 1, 0],
            "has_eval_code": [0, 0, 0, 0],
        }
    )
    texts, problems = denial.reason_texts(f, {"PY02": 0.08})
    assert texts.loc[0, "auth"].startswith("authorization has 0 visits left")
    assert texts.loc[3, "auth"].startswith("authorization ended 3 days before the visit")
    assert texts.loc[1, "progress"].startswith("no signed progress note since the evaluation")
    assert texts.loc[1, "note"].startswith("visit note not signed yet")
    assert texts.loc[1, "kx"].endswith("add KX")
    assert "modifier 59" in texts.loc[2, "ncci"] and "7th character A" in texts.loc[2, "diagnosis"]
    assert texts.loc[0, "payer"] == "commercial plan that denies 8% of claims: check its billing rules"
    assert problems.loc[0, "auth"] and not problems.loc[0, "note"] and not problems.loc[2, "progress"]
    f2 = f.assign(visits_since_signed_progress=[np.nan, 11, np.nan, 2], visit_number=[13, 21, 3, 12])
    assert denial.reason_texts(f2, {})[0].loc[1, "progress"].startswith("no signed progress note since visit 10")
    # nullable columns (DuckDB hands back Int64/Float64 with NULLs): the 200-clinic chain's scoring crashed on
    # `bool(pd.NA)` inside np.where before the columns were read as float64
    nullable = f2.assign(
        visit_number=pd.array([13, pd.NA, 3, 12], dtype="Int64"),
        visits_since_signed_progress=pd.array([pd.NA, 11, pd.NA, 2], dtype="Float64"),
        auth_visits_left=pd.array([-1, pd.NA, pd.NA, 4], dtype="Int64"),
    )
    texts3 = denial.reason_texts(nullable, {})[0]
    assert (
        texts3.loc[1, "progress"]
        == "no signed progress note since the evaluation: sign the progress note before submitting"
    )
    assert texts3.loc[0, "auth"].startswith("authorization has 0 visits left")


def test_a_practice_without_authorization_or_notes_exports_still_trains(frames):
    """Real exports: a practice that sends no authorizations and no notes gets a model without those features."""
    partial = replace(frames, authorizations=None, notes=None)
    claims = denial.labelled(partial.claims)
    feats = denial.build_features(claims, partial)
    y = claims["is_denied"].astype(int).to_numpy()
    ev = denial.evaluate(feats, y, claims)
    gone = {"no_auth", "auth_visits_left", "auth_days_left", "note_signed", "visits_since_signed_progress"}
    assert set(ev.card["dropped_features"]) == gone
    assert ev.card["roc_auc"] > ev.card["baseline_roc_auc"]
    model = denial.fit_final(feats, y, claims, "t", "v", kind=ev.card["deployed_model"])
    out = denial.explain(model, denial.build_features(denial.open_claims(partial.claims), partial))
    assert np.isfinite(out["probability"]).all() and out["reason_1"].notna().any()


def test_training_is_deterministic(frames):
    claims = denial.labelled(frames.claims)
    feats = denial.build_features(claims, frames)
    y = claims["is_denied"].astype(int).to_numpy()
    a = denial.fit_final(feats, y, claims, "t", "v")
    b = denial.fit_final(feats, y, claims, "t", "v")
    np.testing.assert_array_equal(a.predict(feats.head(300)), b.predict(feats.head(300)))


def test_contributions_equal_predicting_every_group_of_every_claim(frames):
    """Groups already at the typical claim's values are not predicted again (their contribution is exactly 0): the
    result must equal the brute force, where each group of each claim is set to the reference and predicted."""
    claims = denial.labelled(frames.claims)
    feats = denial.build_features(claims, frames)
    model = denial.fit_final(feats, claims["is_denied"].astype(int).to_numpy(), claims, "t", "v")
    f = denial.add_kx(denial.build_features(denial.open_claims(frames.claims), frames), model.allowed_ratio)
    p, contrib = denial.contributions(model, f)
    brute = []
    for cols in denial.GROUPS.values():
        g = f.copy()
        for c in cols:
            g[c] = model.reference.get(c)
        brute.append(model.predict(g))
    np.testing.assert_array_equal(p, model.predict(f))
    np.testing.assert_allclose(contrib.to_numpy(), (p[None, :] - np.array(brute)).T, rtol=0, atol=1e-12)
    assert (contrib.to_numpy() == 0).any()  # some groups were skipped as typical, and are 0 exactly


def _features_by_claim(targets: pd.DataFrame, fr: denial.DenialFrames) -> pd.DataFrame:
    return denial.build_features(targets, fr).sort_values("claim_id").reset_index(drop=True)


def test_scoped_reads_keep_every_feature_exact(built_home, frames):
    """Scoring reads only the patients with an open claim and training over the row budget a hash share of
    patients (chain-scale memory, docs/scale.md): each claim read keeps the features the whole warehouse gives."""
    con = duckdb.connect(str(built_home.analytics_db), read_only=True)
    try:
        scoped = warehouse.read_denial_frames(con, built_home.raw_db, open_only=True)
        half = warehouse.read_denial_frames(con, built_home.raw_db, patient_share=0.5)
        assert warehouse.denial_training_share(con, len(frames.claims)) == 1.0
        assert warehouse.denial_training_share(con, len(frames.claims) // 4) == pytest.approx(0.25, abs=0.01)
    finally:
        con.close()
    open_all, open_scoped = denial.open_claims(frames.claims), denial.open_claims(scoped.claims)
    assert 0 < len(open_scoped) == len(open_all) and len(scoped.claims) < len(frames.claims)
    assert len(scoped.lines) < len(frames.lines) and len(scoped.visits) < len(frames.visits)
    assert len(scoped.notes) < len(frames.notes) and len(scoped.authorizations) < len(frames.authorizations)
    pd.testing.assert_frame_equal(_features_by_claim(open_scoped, scoped), _features_by_claim(open_all, frames))

    share = len(half.claims) / len(frames.claims)
    assert 0.35 < share < 0.65
    kept = frames.claims[frames.claims["claim_id"].isin(half.claims["claim_id"])]
    pd.testing.assert_frame_equal(_features_by_claim(half.claims, half), _features_by_claim(kept, frames))


def test_only_claims_sent_to_a_payer_are_learnt_from_or_scored():
    claims = pd.DataFrame(
        {
            "claim_id": ["payer_open", "payer_done", "self_pay_done", "no_payer_open", "no_payer_done"],
            "payer_id": ["P1", "P1", "SELF", None, None],
            "payer_class": ["commercial", "commercial", "self_pay", None, None],
            "is_adjudicated": [False, True, False, False, False],
        }
    )
    assert list(denial.open_claims(claims)["claim_id"]) == ["payer_open"]
    claims["is_adjudicated"] = [False, True, True, False, True]
    assert list(denial.labelled(claims)["claim_id"]) == ["payer_done"]


def test_a_voided_claim_is_neither_learnt_from_nor_scored():
    """A claim whose latest version is a void (marts.claims.claim_status) was withdrawn from the payer: no denial
    to prevent (before, an unadjudicated voided claim was scored and could raise a denial_fix_before_submit task)."""
    claims = pd.DataFrame(
        {
            "claim_id": ["open", "voided_open", "done", "voided_done"],
            "payer_id": ["P1"] * 4,
            "payer_class": ["commercial"] * 4,
            "is_adjudicated": [False, False, True, True],
            "claim_status": ["submitted", "voided", "submitted", "voided"],
        }
    )
    assert list(denial.open_claims(claims)["claim_id"]) == ["open"]
    assert list(denial.labelled(claims)["claim_id"]) == ["done"]


def test_the_gate_serves_only_a_model_ahead_of_the_payer_rate_and_the_constant():
    """The one rule (evaluation.serving_decision) in the denial model's words: ahead of the payer's own rate on
    ranking and of the constant rate on Brier, or why not; no model-free fallback."""

    def gate(kind, m, payer, constant):
        return serving_decision(kind, m, payer, constant, denial.WORDS)

    ok = {"roc_auc": 0.80, "brier": 0.05}
    assert gate(denial.BOOSTED, ok, {"roc_auc": 0.70}, 0.06).served == denial.BOOSTED
    ranked = gate(denial.LOGISTIC, ok, {"roc_auc": 0.80}, 0.06)
    assert ranked.withheld and "payer's own denial rate" in ranked.reason and "logistic regression" in ranked.reason
    brier = gate(denial.BOOSTED, ok, {"roc_auc": 0.70}, 0.05)
    assert brier.withheld and "constant denial rate" in brier.reason
    assert gate(denial.BOOSTED, {"roc_auc": None, "brier": 0.01}, {"roc_auc": 0.6}, 0.05).withheld


def test_the_denial_choice_never_reads_the_test_claims(frames):
    """The test claims' labels rewritten so that the trees rank them perfectly, then so that the regression does:
    choosing on the test claims followed; the choice on the validation slice stays what it is on the real labels,
    and only the chosen model is measured on the test claims."""
    claims = denial.labelled(frames.claims)
    feats = denial.build_features(claims, frames).reset_index(drop=True)
    y = claims["is_denied"].astype(int).to_numpy()
    times = pd.to_datetime(feats["created_at"])
    train = (times < denial.time_split(times)).to_numpy()
    order = times.astype("int64").to_numpy()
    f = denial.add_kx(feats, denial.allowed_ratios(claims.reset_index(drop=True)[train]))
    numeric, categorical, _ = denial._columns(f[train].reset_index(drop=True), order[train])
    x = tabular.encode(f, tabular.fit_categories(f[train], categorical), numeric)
    preds = {}
    for kind in (denial.BOOSTED, denial.LOGISTIC):
        model = denial._fit(kind, x[train], y[train], order[train], numeric, categorical)
        x_test = x[~train] if kind == denial.BOOSTED else tabular.integer_codes(x[~train], categorical)
        preds[kind] = model.predict_proba(x_test)[:, 1]
    real = denial.evaluate(feats, y, claims).card["baseline_comparison"]
    for favoured, p in preds.items():
        y_rig = y.copy()
        rows = np.flatnonzero(~train)
        y_rig[rows] = 0
        y_rig[rows[np.argsort(-p, kind="stable")[: int(y[~train].sum())]]] = 1
        card = denial.evaluate(feats, y_rig, claims).card
        cmp = card["baseline_comparison"]
        assert cmp["best_model"] == real["best_model"] and cmp["validation"] == real["validation"], favoured
        loser = ({denial.BOOSTED, denial.LOGISTIC} - {cmp["best_model"]}).pop()
        assert cmp[loser] is None and card["baselines"]["logistic_regression"]["roc_auc"] == cmp[denial.LOGISTIC]


def test_labels_the_features_cannot_explain_are_withheld(frames):
    """Denials shuffled across claims: no model can beat the payer rate, so the card serves nothing and says why
    (same keys as a served card, deployed_model None), and the served file's card says 'Scores withheld'."""
    claims = denial.labelled(frames.claims)
    feats = denial.build_features(claims, frames)
    y = np.random.default_rng(3).permutation(claims["is_denied"].astype(int).to_numpy())
    ev = denial.evaluate(feats, y, claims)
    assert ev.card["deployed_model"] is None and ev.card["withheld"]
    assert ev.card["baseline_comparison"]["best_model"] in (denial.BOOSTED, denial.LOGISTIC)
    served_keys = set(denial.evaluate(feats, claims["is_denied"].astype(int).to_numpy(), claims).card)
    assert set(ev.card) == served_keys
