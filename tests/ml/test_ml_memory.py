"""ML's memory bounds at chain scale (docs/scale.md): scoring reads only the history of the patients it scores,
and training over $PTPULSE_ML_ROW_BUDGET uses a hash share of patients and says so on the model card."""

from __future__ import annotations

import json

import duckdb
import pandas as pd

from ml import artifacts, demand, lead, train_score, warehouse
from ml.features import build_features, labelled_targets, upcoming_targets
from ml.train_score import ROW_BUDGET_ENV, train


def test_scoring_reads_only_upcoming_patients_and_their_features_are_unchanged(built_home):
    with duckdb.connect(str(built_home.analytics_db), read_only=True) as con:
        full = warehouse.read_marts(con)
        scored = warehouse.read_marts(con, upcoming_only=True)
    upcoming = upcoming_targets(full.appointments)
    assert len(upcoming) > 0
    assert len(scored.appointments) < len(full.appointments)
    a = build_features(upcoming, full).set_index(upcoming["appointment_id"])
    kept = upcoming_targets(scored.appointments)
    b = build_features(kept, scored).set_index(kept["appointment_id"])
    pd.testing.assert_frame_equal(a, b.loc[a.index], check_dtype=False)


def test_training_over_the_row_budget_samples_patients_and_says_so(built_home, copy_home, monkeypatch):
    settings = copy_home(built_home)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        total = con.execute("select count(*) from marts.appointments").fetchone()[0]
        share = warehouse.training_share(con, total // 2)
        sample = warehouse.read_marts(con, patient_share=share)
        full = warehouse.read_marts(con)
    assert 0.4 <= share <= 0.5
    patients = full.appointments["patient_id"].nunique()
    assert 0.3 * patients < sample.appointments["patient_id"].nunique() < 0.7 * patients
    kept = set(sample.appointments["patient_id"])
    whole = full.appointments[full.appointments["patient_id"].isin(kept)]
    assert len(whole) == len(sample.appointments)  # a kept patient keeps every appointment (exact features)

    monkeypatch.setenv(ROW_BUDGET_ENV, str(total // 2))
    summary = train(settings)
    card = json.loads(artifacts.card_path(settings).read_text())
    assert card["training_sample"]["patient_share"] == share
    assert summary["no_show"]["n_train"] + summary["no_show"]["n_test"] < len(labelled_targets(full.appointments))
    assert "Sampled for memory" in artifacts.card_path(settings).with_suffix(".md").read_text()


def test_lead_training_over_its_budget_samples_referrals_and_says_so(built_home, copy_home, monkeypatch):
    """A chain's 4.4 M referrals made 19 M snapshots and a 20.8 GB training peak: over LEAD_ROW_BUDGET referrals
    the lead model trains on a hash share of them, each read whole (its features are its own, so exact)."""
    settings = copy_home(built_home)
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        total = con.execute("select count(*) from marts.referral_funnel").fetchone()[0]
        share = warehouse.lead_training_share(con, total // 2)
        full = warehouse.read_lead_referrals(con)
        sample = warehouse.read_lead_referrals(con, share=share)
        assert warehouse.read_lead_referrals(con, share=share).equals(sample)  # the same referrals every run
        monkeypatch.setattr(train_score, "LEAD_ROW_BUDGET", total // 2)
        card = train_score.train_lead(con, settings, "2026-01-01T00:00:00+00:00")
    assert 0.4 <= share <= 0.5 and 0.3 * total < len(sample) < 0.7 * total
    same = full.set_index("referral_id").loc[sample["referral_id"]].reset_index()
    pd.testing.assert_frame_equal(same, sample)
    assert card["training_sample"]["referral_share"] == share
    assert "of referrals (hash of referral_id" in card["training_sample"]["method"]
    _, _, y_full = lead.snapshots(full, warehouse_as_of(settings))
    assert card["n_train"] + card["n_test"] < len(y_full)


def test_lead_scoring_reads_only_young_referrals_and_scores_them_the_same(built_home):
    with duckdb.connect(str(built_home.analytics_db), read_only=True) as con:
        as_of = warehouse.as_of(con)
        full = warehouse.read_lead_referrals(con)
        young = warehouse.read_lead_referrals(con, received_since=lead.oldest_scored(as_of))
    assert 0 < len(young) < len(full) / 5
    a, fa = lead.open_now(full, as_of)
    b, fb = lead.open_now(young, as_of)
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(fa, fb)


def test_weekly_demand_counted_in_sql_is_the_series_counted_from_every_event(built_home):
    """Scoring and the backtest read weekly counts, not 28 M visit rows (6.9 GB at 900 clinics)."""
    with duckdb.connect(str(built_home.analytics_db), read_only=True) as con:
        as_of = warehouse.as_of(con)
        counts = warehouse.read_weekly_demand(con)
        events = con.sql(f"select clinic_id, metric, event_at as at from ({warehouse.DEMAND_EVENTS})").df()
    assert counts["n"].sum() == len(events) and len(counts) < len(events) / 5
    assert (pd.to_datetime(counts["at"]).dt.day_of_week == 0).all()
    pd.testing.assert_frame_equal(demand.weekly_series(counts, as_of), demand.weekly_series(events, as_of))


def warehouse_as_of(settings) -> pd.Timestamp:
    with duckdb.connect(str(settings.analytics_db), read_only=True) as con:
        return warehouse.as_of(con)


def test_denial_scores_in_patient_batches_equal_scoring_every_open_claim_at_once(built_home, copy_home, monkeypatch):
    """570 k open claims at 900 clinics held 7 GB at once; scored in hash batches of patients, each batch reads only
    its patients' history (a claim's features are its own patient's) and the table is the same."""
    settings = copy_home(built_home)
    model = artifacts.load_model(artifacts.denial_model_path(settings))
    with duckdb.connect(str(settings.analytics_db)) as con:
        n_open = warehouse.open_claim_count(con)
        whole = warehouse.read_denial_frames(con, settings.raw_db, open_only=True)
        third = warehouse.read_denial_frames(con, settings.raw_db, open_only=True, batch=(0, 3))
        assert train_score.score_denials(con, settings, model).rows == n_open > 0
        once = con.sql("select * from ml.denial_scores order by claim_id").df()
        monkeypatch.setattr(train_score, "DENIAL_SCORE_BATCH", n_open // 3)
        assert train_score.score_denials(con, settings, model).rows == n_open
        batched = con.sql("select * from ml.denial_scores order by claim_id").df()
    assert 0.2 * len(whole.claims) < len(third.claims) < 0.5 * len(whole.claims)
    assert set(third.claims["patient_key"]) <= set(whole.claims["patient_key"])
    pd.testing.assert_frame_equal(once, batched)


def test_a_claims_line_under_another_patients_key_is_read_in_its_claims_batch(built_home, copy_home, monkeypatch):
    """Two exports may name one patient differently: a claim's own line then carries another patient's key. The
    claim's batch still reads it (by claim id), so batched scores equal scoring every open claim at once."""
    settings = copy_home(built_home)
    model = artifacts.load_model(artifacts.denial_model_path(settings))
    with duckdb.connect(str(settings.analytics_db)) as con:
        n_open = warehouse.open_claim_count(con)
        batches = -(-n_open // (n_open // 3))
        # an open claim's line moved to the key of a patient scored in another batch
        charge_id, claim_id, other = con.execute(
            f"""
            with o as (select claim_id, patient_key, hash(patient_key) % ? as b from ({warehouse.open_claims_sql(con)}))
            select l.charge_id, o.claim_id, (select min(x.patient_key) from o as x where x.b <> o.b)
            from o inner join marts.charge_lines as l using (claim_id) where l.is_timed
            order by l.charge_id limit 1""",
            [batches],
        ).fetchall()[0]
        con.execute("update marts.charge_lines set patient_key = ? where charge_id = ?", [other, charge_id])
        claim_batch = con.execute(
            f"select hash(patient_key) % ? from ({warehouse.open_claims_sql(con)}) where claim_id = ?",
            [batches, claim_id],
        ).fetchall()[0][0]
        frames = warehouse.read_denial_frames(con, settings.raw_db, open_only=True, batch=(claim_batch, batches))
        assert charge_id in set(frames.lines["charge_id"])
        assert train_score.score_denials(con, settings, model).rows == n_open
        once = con.sql("select * from ml.denial_scores order by claim_id").df()
        monkeypatch.setattr(train_score, "DENIAL_SCORE_BATCH", n_open // 3)
        assert train_score.score_denials(con, settings, model).rows == n_open
        batched = con.sql("select * from ml.denial_scores order by claim_id").df()
    pd.testing.assert_frame_equal(once, batched)


def test_a_batch_that_could_not_read_raw_carries_no_score_key(built_home, copy_home, monkeypatch):
    """The score key names which raw exports the features read; a writer taking raw.duckdb after the key was made
    leaves the batches without notes and authorizations, and such scores must never be kept on a later night."""
    settings = copy_home(built_home)
    model = artifacts.load_model(artifacts.denial_model_path(settings))
    writers: list[duckdb.DuckDBPyConnection] = []
    mark_reused = train_score.denial_reuse.mark_reused

    def then_a_writer_takes_raw(*args, **kwargs):
        reuse = mark_reused(*args, **kwargs)
        writers.append(duckdb.connect(str(settings.raw_db)))  # read-write: the batches' read-only opens now fail
        return reuse

    monkeypatch.setattr(train_score.denial_reuse, "mark_reused", then_a_writer_takes_raw)
    try:
        with duckdb.connect(str(settings.analytics_db)) as con:
            assert warehouse.raw_billing_sources(settings.raw_db) == {
                "authorizations": True,
                "documentation_events": True,
            }
            scoring = train_score.score_denials(con, settings, model)
            rows, keyed = con.execute("select count(*), count(score_key) from ml.denial_scores").fetchall()[0]
    finally:
        for w in writers:
            w.close()
    assert rows == scoring.rows > 0 and keyed == 0
