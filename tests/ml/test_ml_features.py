"""Point-in-time features: nothing after the scoring time may move a feature (the leakage test)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ml_leakage import scramble_after as _scramble_after

from ml.features import (
    FEATURES,
    MartFrames,
    build_features,
    known_at,
    labelled_targets,
    scoring_times,
    upcoming_targets,
)

CUTOFF = pd.Timestamp("2024-06-01 09:30")


def _on_the_books(marts: MartFrames, cutoff: pd.Timestamp) -> pd.DataFrame:
    a = marts.appointments
    return a[
        (a["booked_at"] <= cutoff)
        & (a["scheduled_start"] > cutoff + pd.Timedelta(hours=48))
        & (a["scheduled_start"] < cutoff + pd.Timedelta(days=30))
    ].reset_index(drop=True)


def test_features_ignore_everything_after_the_scoring_time(synthetic):
    marts, _ = synthetic
    targets = _on_the_books(marts, CUTOFF)
    assert len(targets) > 50
    pinned = pd.Series(CUTOFF, index=targets.index)
    before = build_features(targets, marts, score_at=pinned)
    scrambled = _scramble_after(marts, CUTOFF, keep=set(targets["appointment_id"]))
    after = build_features(targets, scrambled, score_at=pinned)
    pd.testing.assert_frame_equal(before, after)
    # the history features are not trivially constant: the test could have failed
    assert before["prior_no_shows"].sum() > 10 and before["days_since_last_visit"].notna().sum() > 30


def test_leakage_test_would_catch_a_change_before_the_cutoff(synthetic):
    marts, _ = synthetic
    targets = _on_the_books(marts, CUTOFF)
    pinned = pd.Series(CUTOFF, index=targets.index)
    before = build_features(targets, marts, score_at=pinned)
    a = marts.appointments.copy()
    known = (a["scheduled_start"] < CUTOFF - pd.Timedelta(days=1)) & a["patient_id"].isin(targets["patient_id"])
    a.loc[known, "status"] = "no_show"
    after = build_features(
        targets, MartFrames(a, marts.episodes, marts.referrals, marts.patients, marts.as_of), score_at=pinned
    )
    assert (after["prior_no_shows"] > before["prior_no_shows"]).any()


def test_default_scoring_time_is_48h_before_and_features_ignore_later_events(synthetic):
    marts, _ = synthetic
    targets = labelled_targets(marts.appointments).sample(25, random_state=4).reset_index(drop=True)
    t = scoring_times(targets, marts.as_of)
    expected = (targets["scheduled_start"] - pd.Timedelta(hours=48)).where(
        lambda s: s >= targets["booked_at"], targets["booked_at"]
    )
    pd.testing.assert_series_equal(t, expected, check_names=False)
    for i in range(len(targets)):
        one = targets.iloc[[i]].reset_index(drop=True)
        base = build_features(one, marts)
        scrambled = _scramble_after(marts, t.iloc[i], keep={one["appointment_id"].iloc[0]}, seed=i)
        pd.testing.assert_frame_equal(base, build_features(one, scrambled))


def test_history_counts_match_a_naive_reference(synthetic):
    marts, _ = synthetic
    a = marts.appointments
    targets = labelled_targets(a).sample(60, random_state=2).reset_index(drop=True)
    f = build_features(targets, marts)
    end = known_at(a)
    for i, row in targets.iterrows():  # a slow, obvious reference on a few rows
        mine = (a["patient_id"] == row["patient_id"]) & (end <= f.loc[i, "scoring_at"])
        seen = a[mine & a["status"].isin(["completed", "no_show"])].sort_values("scheduled_start")
        assert f.loc[i, "prior_cancels"] == (mine & a["status"].isin(["cancelled", "late_cancelled"])).sum()
        assert f.loc[i, "prior_appts"] == len(seen)
        assert f.loc[i, "prior_no_shows"] == (seen["status"] == "no_show").sum()
        assert f.loc[i, "no_shows_last5"] == (seen["status"].tail(5) == "no_show").sum()
        done = seen[seen["status"] == "completed"]
        if len(done):
            gap = (
                row["scheduled_start"]
                - done["scheduled_start"].iloc[-1]
                - pd.Timedelta(minutes=int(done["duration_min"].iloc[-1]))
            ).total_seconds() / 86400
            assert f.loc[i, "days_since_last_visit"] == pytest.approx(gap)
        else:
            assert np.isnan(f.loc[i, "days_since_last_visit"])


def test_upcoming_are_scored_no_later_than_as_of(synthetic):
    marts, _ = synthetic
    up = upcoming_targets(marts.appointments)
    assert len(up) and up["is_future"].all()
    f = build_features(up, marts)
    assert (pd.to_datetime(f["scoring_at"]) <= marts.as_of).all()
    assert set(FEATURES) <= set(f.columns)


def test_a_slot_booked_after_it_happened_never_counts_its_own_outcome(synthetic):
    """A walk-in entered the day after: scored at its booking, it counted itself in its history (one more prior
    appointment, days since the last visit < 0). It is scored just before its start instead."""
    marts, _ = synthetic
    a = marts.appointments.copy()
    targets = labelled_targets(a).sample(30, random_state=7).reset_index(drop=True)
    honest = build_features(targets, marts, score_at=targets["scheduled_start"] - pd.Timedelta(seconds=1))
    late = a["appointment_id"].isin(targets["appointment_id"])
    a.loc[late, "booked_at"] = a.loc[late, "scheduled_start"] + pd.Timedelta(days=1)  # entered after the slot
    backdated = MartFrames(a, marts.episodes, marts.referrals, marts.patients, marts.as_of)
    f = build_features(
        labelled_targets(a).set_index("appointment_id").loc[targets["appointment_id"]].reset_index(), backdated
    )
    assert (f["scoring_at"] < targets["scheduled_start"]).all()
    assert not (f["days_since_last_visit"] < 0).any()
    history = ["prior_appts", "prior_no_shows", "no_shows_last5", "days_since_last_visit", "episode_visits"]
    pd.testing.assert_frame_equal(f[history], honest[history])
