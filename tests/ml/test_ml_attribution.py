"""Attribution axioms (efficiency, symmetry, null channel, single-channel paths) and hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml.attribution import attribute, markov_attribution, shapley_attribution


def _paths(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["path", "conversions", "non_conversions", "revenue_usd"])
    df["path_length"] = df["path"].str.count(" > ") + 1
    return df


def _credit(df: pd.DataFrame, col: str = "attributed_conversions") -> dict[str, float]:
    return dict(zip(df["channel"], df[col], strict=False))


RANDOM = _paths(
    [
        ("search_ads > social > word_of_mouth", 12, 30, 9000.0),
        ("social", 4, 60, 2500.0),
        ("organic_web > search_ads", 9, 20, 7000.0),
        ("employer", 7, 5, 6000.0),
        ("events > employer > organic_web", 3, 11, 1800.0),
        ("word_of_mouth", 15, 10, 14000.0),
        ("physician > social", 20, 8, 21000.0),
    ]
)


@pytest.mark.parametrize("model", [markov_attribution, shapley_attribution])
def test_credit_sums_to_total(model):
    out = model(RANDOM)
    assert out["attributed_conversions"].sum() == pytest.approx(RANDOM["conversions"].sum())
    assert out["attributed_revenue_usd"].sum() == pytest.approx(RANDOM["revenue_usd"].sum(), abs=0.05)
    assert (out["attributed_conversions"] >= -1e-9).all()


@pytest.mark.parametrize("model", [markov_attribution, shapley_attribution])
def test_single_channel_paths_get_their_own_conversions(model):
    paths = _paths([("a", 5, 5, 500.0), ("b", 3, 1, 900.0), ("c", 0, 7, 0.0)])
    credit = _credit(model(paths))
    assert credit == pytest.approx({"a": 5, "b": 3, "c": 0})
    revenue = _credit(model(paths), "attributed_revenue_usd")
    assert revenue == pytest.approx({"a": 500, "b": 900, "c": 0})


@pytest.mark.parametrize("model", [markov_attribution, shapley_attribution])
def test_symmetric_channels_get_equal_credit(model):
    paths = _paths(
        [
            ("a > b", 4, 2, 400.0),
            ("b > a", 4, 2, 400.0),
            ("a", 2, 3, 200.0),
            ("b", 2, 3, 200.0),
            ("c > a > b", 1, 1, 100.0),
            ("c > b > a", 1, 1, 100.0),
        ]
    )
    credit = _credit(model(paths))
    assert credit["a"] == pytest.approx(credit["b"])


@pytest.mark.parametrize("model", [markov_attribution, shapley_attribution])
def test_channel_that_never_helps_gets_zero(model):
    # x only ever ends journeys that do not convert
    paths = _paths([("a", 5, 5, 500.0), ("b > a", 2, 1, 300.0), ("x", 0, 10, 0.0), ("a > x", 0, 3, 0.0)])
    credit = _credit(model(paths))
    assert credit["x"] == pytest.approx(0.0, abs=1e-9)
    assert sum(credit.values()) == pytest.approx(7.0)


def test_shapley_hand_computed():
    # v(a)=2, v(b)=0, v(ab)=4 -> phi_a = 1/2*2 + 1/2*(4-0) = 3, phi_b = 1/2*0 + 1/2*(4-2) = 1
    paths = _paths([("a", 2, 9, 200.0), ("a > b", 2, 1, 600.0)])
    out = shapley_attribution(paths)
    assert _credit(out) == pytest.approx({"a": 3.0, "b": 1.0})
    # revenue game: v(a)=200, v(ab)=800 -> phi_a = 100 + 400 = 500, phi_b = 0 + 300 = 300
    assert _credit(out, "attributed_revenue_usd") == pytest.approx({"a": 500.0, "b": 300.0})


def test_markov_hand_computed():
    # start->a 2, start->b 2; a->b 1, a->null 1; b->conv 2, b->null 1
    # P = 1/2 * (1/2 * 2/3) + 1/2 * 2/3 = 1/2; without a: 1/3 (RE 1/3); without b: 0 (RE 1)
    # shares 1/4 and 3/4 of 2 conversions
    paths = _paths([("a > b", 1, 0, 100.0), ("a", 0, 1, 0.0), ("b", 1, 1, 100.0)])
    out = markov_attribution(paths)
    assert _credit(out) == pytest.approx({"a": 0.5, "b": 1.5})
    settings = json.loads(out["settings"].iloc[0])
    assert settings["p_conversion"] == pytest.approx(0.5)
    assert settings["removal_effect"] == pytest.approx({"a": 1 / 3, "b": 1.0})


def test_small_channels_grouped_and_coalitions_bounded():
    rng = np.random.default_rng(0)
    names = [f"ch{i:02d}" for i in range(20)]
    rows = []
    for _ in range(200):
        k = int(rng.integers(1, 4))
        path = " > ".join(rng.choice(names, size=k, replace=False))
        rows.append((path, float(rng.integers(0, 5)), float(rng.integers(0, 9)), float(rng.integers(0, 900))))
    paths = _paths(rows).groupby("path", as_index=False).sum()
    out = attribute(paths, max_channels=8)
    for model in ("markov", "shapley"):
        part = out[out["model"] == model]
        assert len(part) == 8 and "other" in set(part["channel"])
        assert part["attributed_conversions"].sum() == pytest.approx(paths["conversions"].sum())
        settings = json.loads(part["settings"].iloc[0])
        assert len(settings["grouped_into_other"]) == 13
    assert json.loads(out[out["model"] == "shapley"]["settings"].iloc[0])["coalitions"] == 256


def test_attribution_is_deterministic_and_handles_empty():
    a = attribute(RANDOM)
    b = attribute(RANDOM.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(
        a.sort_values(["model", "channel"]).reset_index(drop=True),
        b.sort_values(["model", "channel"]).reset_index(drop=True),
        check_exact=False,
    )
    empty = attribute(RANDOM.iloc[0:0])
    assert list(empty.columns) == ["model", "channel", "attributed_conversions", "attributed_revenue_usd", "settings"]
    assert len(empty) == 0


def _cents(values) -> list[int]:
    """Dollars as whole cents, asserting each is one (no fraction of a cent stored)."""
    cents = [round(float(v) * 100) for v in values]
    assert [c / 100 for c in cents] == pytest.approx([float(v) for v in values], abs=1e-9)
    return cents


# Rounded one channel at a time, $100.00 shared by three equal channels was stored as 3 x 33.33 = $99.99: the
# stored credits of a model must add up to the paths' revenue to the cent (largest remainder).
CENT_CASES = {
    "three equal shares": _paths([("a > b > c", 1, 0, 100.00), ("a", 1, 1, 0.0), ("b", 1, 1, 0.0), ("c", 1, 1, 0.0)]),
    "refund on a path": _paths(
        [
            ("direct_access", 0, 1, 0.0),
            ("search_ads > social > search_ads", 1, 0, -50.0),
            ("events > physician_referral", 1, 0, 460.0),
            ("physician_referral", 3, 3, 170.0),
            ("social > organic_web > social", 1, 0, 320.0),
        ]
    ),
    "random": RANDOM.assign(revenue_usd=RANDOM["revenue_usd"] + [0.01, 0.07, 0.33, 0.5, 0.99, 0.02, 0.41]),
    "seven way split": _paths([("a > b > c > d > e > f > g", 3, 1, 1000.01), ("a > c", 1, 4, 12.34)]),
}


@pytest.mark.parametrize("name", CENT_CASES)
def test_revenue_credit_sums_to_the_cent(name):
    paths = CENT_CASES[name]
    total = round(float(paths["revenue_usd"].sum()) * 100)
    out = attribute(paths)
    for model, part in out.groupby("model"):
        assert sum(_cents(part["attributed_revenue_usd"])) == total, (model, part["attributed_revenue_usd"].tolist())


def test_cents_go_to_the_largest_remainders():
    from ml.attribution import to_cents

    assert to_cents(np.array([100 / 3] * 3)).tolist() == [33.34, 33.33, 33.33]  # ties: the earlier channel
    assert to_cents(np.array([0.004, 0.003, 0.003])).tolist() == [0.01, 0.0, 0.0]
    assert to_cents(np.array([10.006, -0.006, -0.3])).tolist() == pytest.approx([10.01, -0.01, -0.3])  # a refund
    assert to_cents(np.array([1.25, 2.5])).tolist() == [1.25, 2.5]  # already in cents: unchanged
    assert to_cents(np.array([])).tolist() == []
