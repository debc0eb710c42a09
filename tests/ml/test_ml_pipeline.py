"""The ML pipeline on the real small practice: tables, artifacts, truth, calibration, reproducibility.

Uses the shared session fixtures (a real generate -> ingest -> dbt build whose before-swap hook ran
`ml.train_score.score`, which trained because no model existed yet). Writes only into copies.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest
from ml_leakage import scramble_after

from ml import artifacts, warehouse
from ml.features import build_features, labelled_targets, scoring_times
from ml.train_score import score, train
from ml.warehouse import ML_TABLES

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
}
BACKTEST_KEYS = {"mase", "baseline_mase", "relative_mase", "smape", "coverage_80", "horizon_weeks", "cutoffs", "series"}


def _read(path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(sql).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def trained_with_truth(tmp_path_factory, built_home, small_practice):
    """A copy of the built home, retrained with the generator's truth, then scored."""
    home = tmp_path_factory.mktemp("ml_truth_home")
    shutil.copy2(built_home.analytics_db, home / "analytics.duckdb")
    from ptpulse.core.config import get_settings

    settings = get_settings(home)
    summary = train(settings, truth_dir=small_practice / "truth")
    return settings, summary


def test_build_wrote_every_ml_table(built_home):
    for table, cols in ML_TABLES.items():
        df = _read(built_home.analytics_db, f"select * from ml.{table}")
        assert list(df.columns) == list(cols), table
        assert len(df) > 0, table


def test_scores_cover_upcoming_appointments_with_reasons(built_home):
    scores = _read(built_home.analytics_db, "select * from ml.no_show_scores")
    upcoming = _read(
        built_home.analytics_db,
        """
        select appointment_id from marts.appointments
        where is_future and status not in ('cancelled', 'late_cancelled')""",
    )
    assert set(scores["appointment_id"]) == set(upcoming["appointment_id"])
    assert scores["probability"].between(0, 1).all()
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    assert scores["reason_1"].str.len().gt(0).all()
    assert (
        scores["probability"]
        .groupby(scores["risk_band"])
        .min()
        .reindex(["low", "medium", "high"])
        .dropna()
        .is_monotonic_increasing
    )
    assert scores["model_version"].nunique() == 1


def test_upcoming_scores_are_calibrated_by_visit_type(built_home):
    """Upcoming first visits (no history, no evaluation yet) are scored like the first visits of the past.

    The deployed model once read 76-88% for every upcoming initial evaluation (history: about 12%) because
    the body region, recorded by the evaluation note, was known in training only for evaluations that
    happened: its absence meant "missed". Tolerances allow for a handful of upcoming evaluations.
    """
    up = _read(
        built_home.analytics_db,
        """
        select s.probability, s.risk_band, s.clinic_id, a.visit_type
        from ml.no_show_scores s join marts.appointments a using (appointment_id)""",
    )
    hist = _read(
        built_home.analytics_db,
        """
        select visit_type, avg(case when status = 'no_show' then 1.0 else 0.0 end) as rate, count(*) as n
        from marts.appointments
        where not coalesce(is_future, false) and status in ('completed', 'no_show')
        group by visit_type""",
    ).set_index("visit_type")["rate"]
    recent = _read(
        built_home.analytics_db,
        """
        select avg(case when status = 'no_show' then 1.0 else 0.0 end) as rate
        from marts.appointments
        where not coalesce(is_future, false) and status in ('completed', 'no_show')
          and scheduled_start >= (select max(scheduled_start) from marts.appointments
                                  where not coalesce(is_future, false)) - interval 180 day""",
    )["rate"].iloc[0]
    by_type = up.groupby("visit_type")["probability"].agg(["mean", "size"])
    assert by_type.loc["initial_eval", "size"] >= 3
    assert abs(by_type.loc["initial_eval", "mean"] - hist["initial_eval"]) < 0.06, by_type
    assert abs(by_type.loc["follow_up", "mean"] - hist["follow_up"]) < 0.05, by_type
    assert abs(up["probability"].mean() - recent) < 0.04
    assert up["probability"].max() < 0.6  # no near-certain no-shows on the demo practice


def test_high_band_is_the_top_tenth_of_upcoming_per_clinic(built_home):
    scores = _read(built_home.analytics_db, "select clinic_id, probability, risk_band from ml.no_show_scores")
    for _, part in scores.groupby("clinic_id"):
        n = len(part)
        n_high, n_top30 = int(np.floor(0.1 * n + 0.5)), int(np.floor(0.3 * n + 0.5))
        assert (part["risk_band"] == "high").sum() == n_high
        assert part["risk_band"].isin(["high", "medium"]).sum() == n_top30
        ranked = part.sort_values("probability", ascending=False)["risk_band"].tolist()
        assert ranked == ["high"] * n_high + ["medium"] * (n_top30 - n_high) + ["low"] * (n - n_top30)


def test_model_card_and_backtest_artifacts(built_home):
    card = json.loads(artifacts.card_path(built_home).read_text())
    assert CARD_KEYS <= set(card)
    assert card["oracle_roc_auc"] is None  # the shared build had no truth
    assert {"clinic", "payer_class", "age_band"} <= set(card["subgroups"])
    assert card["n_train"] > card["n_test"] > 0
    assert artifacts.model_path(built_home).exists()
    assert "# No-show risk model card" in artifacts.card_path(built_home).with_suffix(".md").read_text()
    backtest = json.loads(artifacts.backtest_path(built_home).read_text())
    assert BACKTEST_KEYS <= set(backtest)
    assert backtest["horizon_weeks"] == 12 and len(backtest["cutoffs"]) >= 4
    assert "ALL" in backtest["series"]


def test_demand_forecast_and_staffing(built_home):
    fc = _read(built_home.analytics_db, "select * from ml.demand_forecast")
    future = fc[fc["actual"].isna()]
    assert set(fc["metric"]) == {"referrals", "evals", "visits"}
    assert set(future.groupby(["series", "metric"]).size()) == {12}
    assert (future["yhat_lower"] <= future["yhat"]).all() and (future["yhat"] <= future["yhat_upper"]).all()
    gap = _read(built_home.analytics_db, "select * from ml.staffing_gap")
    assert len(gap) == 12 * gap["clinic_id"].nunique()
    assert np.allclose(gap["gap_visits"], gap["forecast_visits"] - gap["capacity_visits"])
    assert (gap["capacity_visits"] > 0).all()


def test_attribution_credit_sums_to_path_totals(built_home):
    credit = _read(built_home.analytics_db, "select * from ml.attribution_credit")
    totals = _read(
        built_home.analytics_db, "select sum(conversions) c, sum(revenue_usd)::double r from marts.attribution_paths"
    )
    for model in ("markov", "shapley"):
        part = credit[credit["model"] == model]
        assert part["attributed_conversions"].sum() == pytest.approx(totals["c"].iloc[0])
        assert part["attributed_revenue_usd"].sum() == pytest.approx(totals["r"].iloc[0], abs=1.0)
        assert json.loads(part["settings"].iloc[0])["model"] == model


def test_truth_gives_oracle_and_channel_correlation(trained_with_truth):
    settings, summary = trained_with_truth
    card = json.loads(artifacts.card_path(settings).read_text())
    assert card["oracle_roc_auc"] is not None and card["oracle"]["coverage"] > 0.99
    assert 0.5 < card["roc_auc"] <= card["oracle_roc_auc"] + 0.02
    attr = json.loads(artifacts.attribution_path(settings).read_text())
    assert attr["spearman_markov"] is not None and attr["spearman_shapley"] is not None
    assert summary["no_show"]["oracle_roc_auc"] == card["oracle_roc_auc"]


def test_calibrated_and_better_than_chance_on_later_months(trained_with_truth):
    settings, _ = trained_with_truth
    card = json.loads(artifacts.card_path(settings).read_text())
    rate = card["base_rate_test"]
    assert card["brier"] < rate * (1 - rate)
    assert 0.7 < card["calibration_slope"] < 1.3
    assert abs(card["calibration_intercept"]) < 0.3
    assert card["ece"] < 0.04
    # the candidate chosen on the validation slice, never on these test rows (the other is not measured here);
    # against the patient's own history rate only "not clearly worse": without the body-region leak both sit near
    # 0.66 on the small practice's ~2,400 test appointments, where one standard error of a ROC AUC is about 0.017
    cmp = card["baseline_comparison"]
    assert cmp["chosen_on"].startswith("the validation slice") and card["candidates"][cmp["best_model"]]["roc_auc"]
    assert card["roc_auc"] > card["baseline_roc_auc"] - 0.02
    high = card["risk_bands_test"]["high"]["observed_rate"]
    assert high > 2 * card["risk_bands_test"]["low"]["observed_rate"]


def test_training_and_scoring_are_reproducible(tmp_path, trained_with_truth, small_practice):
    settings, _ = trained_with_truth
    from ptpulse.core.config import get_settings

    other = get_settings(tmp_path / "again")
    other.home.mkdir()
    shutil.copy2(settings.analytics_db, other.analytics_db)
    train(other, truth_dir=small_practice / "truth")
    a = json.loads(artifacts.card_path(settings).read_text())
    b = json.loads(artifacts.card_path(other).read_text())
    for volatile in ("trained_at", "fit_seconds", "truth_dir"):
        a.pop(volatile), b.pop(volatile)
    assert a == b
    assert json.loads(artifacts.backtest_path(settings).read_text()) == json.loads(
        artifacts.backtest_path(other).read_text()
    )
    # scoring twice (and into two files) gives the same tables: idempotent and deterministic
    first, second = tmp_path / "s1.duckdb", tmp_path / "s2.duckdb"
    shutil.copy2(settings.analytics_db, first)
    shutil.copy2(settings.analytics_db, second)
    score(settings, first)
    score(settings, first)
    score(other, second)
    for table in ML_TABLES:
        order = ", ".join(f'"{c}"' for c in list(ML_TABLES[table])[:3])
        # score_key names the model file a denial score came from (ml/denial_reuse.py): each home trained its own
        cols = "* exclude (score_key)" if table == "denial_scores" else "*"
        x = _read(first, f"select {cols} from ml.{table} order by {order}")
        y = _read(second, f"select {cols} from ml.{table} order by {order}")
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-9)


def test_score_trains_when_no_model_exists(tmp_path, built_home):
    from ptpulse.core.config import get_settings

    settings = get_settings(tmp_path / "fresh")
    settings.home.mkdir()
    target = tmp_path / "new.duckdb"
    shutil.copy2(built_home.analytics_db, target)
    _read(target, "select 1")  # readable before
    out = score(settings, target)
    assert out["trained"] is not None and artifacts.model_path(settings).exists()
    # the connection is closed: another process-level read-write open works at once
    con = duckdb.connect(str(target))
    con.close()


def test_real_marts_features_ignore_the_future(built_home):
    """The synthetic leakage test again, on the real small practice's marts (status_at, cancels, plans)."""
    con = duckdb.connect(str(built_home.analytics_db), read_only=True)
    try:
        marts = warehouse.read_marts(con)
    finally:
        con.close()
    targets = labelled_targets(marts.appointments).sample(12, random_state=5).reset_index(drop=True)
    times = scoring_times(targets, marts.as_of)
    history = 0
    for i in range(len(targets)):
        one = targets.iloc[[i]].reset_index(drop=True)
        base = build_features(one, marts)
        history += int(base["prior_appts"].iloc[0])
        scrambled = scramble_after(marts, times.iloc[i], keep={one["appointment_id"].iloc[0]}, seed=i)
        pd.testing.assert_frame_equal(base, build_features(one, scrambled))
    assert history > 0
