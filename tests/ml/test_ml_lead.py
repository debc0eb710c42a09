"""Lead scoring: point-in-time features (no leakage), time split, calibration, expected value, the ml table."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from ml import artifacts, lead, warehouse

AS_OF = pd.Timestamp("2024-12-31 12:00")
TS_COLS = ["first_contact_at", "contacted_at", "scheduled_at", "evaluated_at", "exit_at"]


def make_referrals(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Synthetic funnel: conversion depends on source, payer and how fast the first call came."""
    rng = np.random.default_rng(seed)
    received = AS_OF - pd.to_timedelta(rng.uniform(0, 700, n), unit="D")
    source = rng.choice(["physician", "marketing", "direct_access"], n, p=[0.6, 0.25, 0.15])
    payer = rng.choice(["commercial", "medicare", "medicaid"], n, p=[0.6, 0.25, 0.15])
    call_h = rng.exponential(12, n)
    reachable = rng.random(n) < 0.85
    logit = 1.2 + 0.6 * (source == "direct_access") - 0.5 * (payer == "medicaid") - 0.04 * call_h - 3.0 * ~reachable
    converts = rng.random(n) < 1 / (1 + np.exp(-logit))
    first = received + pd.to_timedelta(call_h, unit="h")
    reached = pd.Series(first + pd.to_timedelta(rng.uniform(0, 48, n), unit="h")).where(reachable)
    sched = reached.where(converts) + pd.to_timedelta(rng.uniform(1, 24, n), unit="h")
    evaluated = sched + pd.to_timedelta(rng.uniform(1, 10, n), unit="D")
    exit_at = pd.Series(received + pd.to_timedelta(rng.uniform(2, 15, n), unit="D")).where(~converts)
    df = pd.DataFrame(
        {
            "referral_id": [f"R{i:05d}" for i in range(n)],
            "clinic_id": rng.choice(["C1", "C2"], n),
            "intake_kind": np.where(source == "physician", "referral", "lead"),
            "source_type": source,
            "channel": np.where(source == "marketing", "search_ads", None),
            "specialty": np.where(source == "physician", "orthopedic_surgery", None),
            "payer_class": payer,
            "received_at": received,
            "first_contact_at": first,
            "contacted_at": reached,
            "scheduled_at": sched,
            "evaluated_at": evaluated,
            "exit_at": exit_at,
            "exit_stage": np.where(converts, None, "lost"),
        }
    )
    for c in ["received_at", *TS_COLS]:
        df[c] = pd.to_datetime(df[c]).where(pd.to_datetime(df[c]) <= AS_OF)
    df.loc[df["exit_at"].isna(), "exit_stage"] = None
    return df


def scramble_after(referrals: pd.DataFrame, at: pd.Series, seed: int = 1) -> pd.DataFrame:
    """Rewrite everything learnt after each row's scoring time: later timestamps moved or erased, outcomes
    and whole-history columns replaced with garbage."""
    rng = np.random.default_rng(seed)
    r = referrals.copy()
    at = pd.to_datetime(at)
    for c in TS_COLS:
        ts = pd.to_datetime(r[c])
        later = (ts > at) | ts.isna()
        moved = at + pd.to_timedelta(rng.integers(1, 10**7, len(r)), unit="s")
        r[c] = np.where(later & (rng.random(len(r)) < 0.5), moved, np.where(later, pd.NaT, ts))
        r[c] = pd.to_datetime(r[c])
    r["exit_stage"] = rng.choice(["lost", "declined", None], len(r))
    r["outreach_attempts"] = rng.integers(0, 9, len(r))
    return r


@pytest.fixture(scope="module")
def synth():
    refs = make_referrals()
    rows, feats, y = lead.snapshots(refs, AS_OF)
    return refs, rows, feats, y


def _at(refs: pd.DataFrame, days: float) -> pd.Series:
    return pd.to_datetime(refs["received_at"]) + pd.Timedelta(days=days)


@pytest.mark.parametrize("age", [0.25, 1, 3, 7])
def test_features_ignore_everything_after_the_scoring_time(age):
    refs = make_referrals()
    at = _at(refs, age)
    is_open = lead.open_at(refs, at)
    scrambled = scramble_after(refs, at, seed=int(age * 4))
    assert (lead.open_at(scrambled, at) == is_open).all()
    a = lead.features_at(refs[is_open], at[is_open])
    b = lead.features_at(scrambled[is_open], at[is_open])
    pd.testing.assert_frame_equal(a, b)
    assert is_open.sum() > 500


def test_leakage_test_would_catch_a_change_before_the_scoring_time():
    refs = make_referrals()
    at = _at(refs, 3)
    is_open = lead.open_at(refs, at)
    changed = refs.copy()
    before = pd.to_datetime(changed["first_contact_at"]) < at
    changed.loc[before, "first_contact_at"] = pd.to_datetime(changed.loc[before, "first_contact_at"]) - pd.Timedelta(
        hours=1
    )
    a = lead.features_at(refs[is_open], at[is_open])
    b = lead.features_at(changed[is_open], at[is_open])
    assert not a.equals(b)


def test_snapshots_are_open_labelled_and_in_the_past(synth):
    refs, rows, feats, y = synth
    assert (rows["at"] <= AS_OF).all()
    assert (rows["received_at"] <= AS_OF - pd.Timedelta(days=lead.LABEL_DAYS)).all()
    full = rows.merge(refs, on="referral_id", suffixes=("", "_r"))
    assert not (full["evaluated_at"] <= full["at"]).any() and not (full["exit_at"] <= full["at"]).any()
    assert np.allclose(feats["days_open"], rows["age_days"])
    assert set(y) == {0, 1}


def test_open_now_excludes_evaluated_and_exited():
    refs = make_referrals()
    r, feats = lead.open_now(refs, AS_OF)
    assert r["evaluated_at"].isna().all() and r["exit_stage"].isna().all()
    assert len(r) == len(feats) > 0


def test_referrals_older_than_training_saw_are_not_scored():
    """Training snapshots stop at 30 days after receipt: an open referral older than that is not scored."""
    refs = make_referrals()
    r, _ = lead.open_now(refs, AS_OF)
    old = r.iloc[[0]].assign(referral_id="OLD", received_at=pd.Timestamp(AS_OF) - pd.Timedelta(days=454))
    edge = r.iloc[[0]].assign(referral_id="EDGE", received_at=pd.Timestamp(AS_OF) - pd.Timedelta(days=30))
    scored, _ = lead.open_now(pd.concat([refs, old, edge], ignore_index=True), AS_OF)
    assert "OLD" not in set(scored["referral_id"]) and "EDGE" in set(scored["referral_id"])
    assert (pd.to_datetime(scored["received_at"]) >= pd.Timestamp(AS_OF) - pd.Timedelta(days=30)).all()


def test_time_split_model_finds_signal_and_is_calibrated(synth):
    _, rows, feats, y = synth
    ev = lead.evaluate(rows, feats, y)
    split = pd.Timestamp(ev["split_date"])
    assert ev["n_train"] == int((rows["received_at"] < split).sum())
    assert ev["roc_auc"] > ev["baseline_roc_auc"] + 0.05
    assert ev["brier"] < ev["brier_reference"]
    assert 0.75 < ev["calibration_slope"] < 1.3
    assert abs(ev["mean_predicted_test"] - ev["base_rate_test"]) < 0.05


def test_reasons_are_plain_words_and_training_is_deterministic(synth):
    _, rows, feats, y = synth
    m1 = lead.fit_final(rows, feats, y, "t", "v")
    m2 = lead.fit_final(rows, feats, y, "t", "v")
    f = feats.head(200)
    out = lead.explain(m1, f)
    assert np.array_equal(out["p_convert"], lead.explain(m2, f)["p_convert"])
    assert out["p_convert"].between(0, 1).all()
    assert out["reason_1"].str.len().gt(3).all() and not out["reason_1"].str.contains("_|nan|None").any()
    texts = lead.reason_texts(
        pd.DataFrame(
            {
                "source_type": ["physician", "marketing"],
                "source_detail": ["orthopedic_surgery", "search_ads"],
                "payer_class": ["medicare", None],
                "clinic_id": ["C1", "C2"],
                "intake_kind": ["referral", "lead"],
                "days_open": [3.2, 0.3],
                "called": [1.0, 0.0],
                "hours_to_first_call": [2.5, np.nan],
                "reached": [1.0, 0.0],
                "days_since_reached": [1.5, np.nan],
                "booked": [0.0, 0.0],
            }
        )
    )
    assert texts.loc[0, "progress"] == "spoken to 1 day ago, evaluation not booked yet"
    assert texts.loc[1, "progress"] == "not called yet"
    assert texts.loc[0, "source"] == "physician referral (orthopedic surgery)"
    assert texts.loc[0, "wait"] == "received 3 days ago" and texts.loc[1, "wait"] == "received today"
    assert texts.loc[0, "speed"] == "first call 2 h after it came in" and texts.loc[1, "payer"] == "payer unknown"


def test_expected_value_shrinks_toward_payer_and_falls_back():
    eps = pd.DataFrame(
        {
            "payer_class": ["commercial"] * 300 + ["medicaid"] * 300 + ["commercial"],
            "source_type": ["physician"] * 150 + ["marketing"] * 150 + ["physician"] * 300 + ["direct_access"],
            "status": ["discharged"] * 601,
            "closed_on": [AS_OF - pd.Timedelta(days=100)] * 601,
            "net_revenue_usd": [1000.0] * 150 + [800.0] * 150 + [400.0] * 300 + [5000.0],
        }
    )
    table = lead.expected_values(eps, AS_OF)
    ev = lead.lookup_values(
        table,
        pd.Series(["commercial", "commercial", "medicaid", "medicaid", None]),
        pd.Series(["physician", "direct_access", "physician", "marketing", "physician"]),
    )
    assert 900 < ev[0] < 1000  # a large cell keeps (almost) its own mean
    assert 900 < ev[1] < 2000  # a one-episode cell is pulled hard toward the commercial mean
    medicaid = table[(table["payer_class"] == "medicaid") & table["source_type"].isna()]["expected_value_usd"].iloc[0]
    assert 400 <= ev[2] < medicaid and ev[3] == pytest.approx(medicaid)  # unseen cell -> the payer's mean
    overall = table.loc[table["payer_class"].isna(), "expected_value_usd"].iloc[0]
    assert ev[4] == pytest.approx(overall)


# ------------------------------------------------------------------------------- on the real build


def test_real_marts_features_ignore_the_future(built_home):
    con = duckdb.connect(str(built_home.analytics_db), read_only=True)
    try:
        refs = warehouse.read_lead_referrals(con)
        as_of = warehouse.as_of(con)
    finally:
        con.close()
    cutoff = pd.Series(as_of - pd.Timedelta(days=120), index=refs.index)
    is_open = lead.open_at(refs, cutoff)
    assert is_open.sum() > 5
    scrambled = scramble_after(refs, cutoff)
    assert (lead.open_at(scrambled, cutoff) == is_open).all()
    pd.testing.assert_frame_equal(
        lead.features_at(refs[is_open], cutoff[is_open]), lead.features_at(scrambled[is_open], cutoff[is_open])
    )


def test_build_wrote_lead_scores_for_every_open_referral(built_home):
    con = duckdb.connect(str(built_home.analytics_db), read_only=True)
    try:
        scores = con.sql("select * from ml.lead_scores").df()
        open_ids = set(  # open, and no older than the 30 days the model learns from (lead.open_now)
            con.sql("""select referral_id from marts.referral_funnel, marts.build_info b
                       where evaluated_at is null and exit_stage is null
                         and received_at >= b.as_of - interval 30 day""").df()["referral_id"]
        )
    finally:
        con.close()
    assert set(scores["referral_id"]) == open_ids and scores["referral_id"].is_unique
    assert scores["p_convert"].between(0, 1).all() and (scores["expected_value_usd"] > 0).all()
    assert np.allclose(scores["value_at_stake_usd"], scores["p_convert"] * scores["expected_value_usd"], atol=0.01)
    assert scores["reason_1"].str.len().gt(3).all()
    assert list(scores.columns) == list(warehouse.ML_TABLES["lead_scores"])


def test_lead_model_card(built_home):
    import json

    card = json.loads(artifacts.lead_card_path(built_home).read_text())
    for key in (
        "roc_auc",
        "brier",
        "calibration_slope",
        "calibration_intercept",
        "baseline_roc_auc",
        "n_train",
        "n_test",
        "split_date",
        "trained_at",
        "subgroups",
        "model_version",
        "brier_reference",
    ):
        assert key in card
    assert card["roc_auc"] > card["baseline_roc_auc"]
    assert card["brier"] < card["brier_reference"]
    assert card["fit_seconds"] < 15  # small practice: ~1 s alone; generous for a shared 2-core box


def test_score_is_idempotent_and_trains_the_lead_model_when_missing(copy_home, built_home):
    from ml.train_score import score

    home = copy_home(built_home)
    artifacts.lead_model_path(home).unlink()
    first = score(home, home.analytics_db)
    assert artifacts.lead_model_path(home).exists() and first["rows"]["lead_scores"] >= 0
    con = duckdb.connect(str(home.analytics_db), read_only=True)
    a = con.sql("select * from ml.lead_scores order by referral_id").df()
    con.close()
    score(home, home.analytics_db)
    con = duckdb.connect(str(home.analytics_db), read_only=True)
    b = con.sql("select * from ml.lead_scores order by referral_id").df()
    con.close()
    pd.testing.assert_frame_equal(a, b)
