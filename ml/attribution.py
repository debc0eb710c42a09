"""Data-driven attribution over the path summary mart: first-order Markov removal effect and exact Shapley.

Input is `marts.attribution_paths` (path = channels joined by " > ", conversions, non_conversions,
revenue_usd), one row per distinct path, so everything here works on a few thousand rows at most and is
vectorised over paths and coalitions, never over referrals.

Why both models: Markov credits a channel by how much the conversion probability of the whole journey graph
drops when the channel is removed (order-aware, uses non-converting paths); Shapley splits each coalition's
conversions fairly among its members (order-blind, axiomatic). Where they disagree, the heuristics in dbt
usually disagree too, and the page shows all of them. Both distribute exactly the observed total (conversions
and revenue), which the tests check as axioms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SEPARATOR = " > "
OTHER = "other"
MAX_SHAPLEY_CHANNELS = 12  # 2**12 = 4096 coalitions: exact and instant


@dataclass(frozen=True)
class PathTable:
    """Paths as channel-index sequences after grouping; the shared input of both models."""

    channels: list[str]
    steps: pd.DataFrame  # path_idx, pos, ch (int) - one row per step
    conversions: np.ndarray
    non_conversions: np.ndarray
    revenue: np.ndarray
    grouped: dict[str, str]  # original channel -> group, only for channels folded into OTHER


def prepare_paths(paths: pd.DataFrame, max_channels: int = MAX_SHAPLEY_CHANNELS) -> PathTable:
    """Split paths into steps and fold the smallest channels into `other` when there are too many.

    Exact Shapley costs 2**n coalitions, so at most `max_channels` channels survive; the ones kept are those
    present on the most converting paths (ties by name, so the choice is deterministic).
    """
    df = paths.reset_index(drop=True)
    conv = df["conversions"].fillna(0).to_numpy(float)
    nonconv = df["non_conversions"].fillna(0).to_numpy(float)
    rev = df["revenue_usd"].fillna(0).to_numpy(float) if "revenue_usd" in df else np.zeros(len(df))
    steps = (
        df["path"]
        .fillna("")
        .str.split(SEPARATOR)
        .explode()
        .str.strip()
        .rename("channel")
        .reset_index()
        .rename(columns={"index": "path_idx"})
    )
    steps = steps[steps["channel"].notna() & (steps["channel"] != "")]
    steps["pos"] = steps.groupby("path_idx").cumcount()

    presence = steps.drop_duplicates(["path_idx", "channel"]).assign(c=lambda s: conv[s["path_idx"]])
    weight = presence.groupby("channel")["c"].sum()
    ranked = sorted(weight.index, key=lambda c: (-weight[c], c))
    grouped: dict[str, str] = {}
    if len(ranked) > max_channels:
        keep = set(ranked[: max_channels - 1])
        grouped = {c: OTHER for c in ranked if c not in keep}
        steps["channel"] = steps["channel"].where(steps["channel"].isin(keep), OTHER)
    channels = sorted(steps["channel"].unique())
    index = {c: i for i, c in enumerate(channels)}
    steps = steps.assign(ch=steps["channel"].map(index).astype(int))[["path_idx", "pos", "ch"]]
    return PathTable(channels, steps.reset_index(drop=True), conv, nonconv, rev, grouped)


# ------------------------------------------------------------------------------------------------ Markov


def _absorption_values(q: np.ndarray, r: np.ndarray) -> float:
    """Expected absorbed value from the start state (index 0): solve (I - Q) x = r."""
    n = q.shape[0]
    x = np.linalg.solve(np.eye(n) - q, r)
    return float(x[0])


def markov_removal_effects(table: PathTable) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Removal effects of each channel on expected conversions and on expected revenue.

    States: 0 = start, 1..n = channels; absorbing conversion / null. Transition probabilities are the
    maximum-likelihood estimates from path counts (each path weighted by its conversions + non-conversions).
    Revenue uses the same chain with each channel's conversion edge valued at the mean revenue per
    conversion of the paths ending there, so a channel whose patients drop out early earns less revenue.
    Removing a channel redirects every transition into it to null (its column of Q is zeroed).
    """
    n = len(table.channels)
    size = n + 1
    weight = table.conversions + table.non_conversions
    s = table.steps
    q_counts = np.zeros((size, size))
    if len(s):
        first = s[s["pos"] == 0]
        np.add.at(q_counts, (np.zeros(len(first), int), first["ch"].to_numpy() + 1), weight[first["path_idx"]])
        nxt = s.copy()
        nxt["pos"] -= 1
        pairs = s.merge(nxt, on=["path_idx", "pos"], suffixes=("", "_next"))
        np.add.at(q_counts, (pairs["ch"].to_numpy() + 1, pairs["ch_next"].to_numpy() + 1), weight[pairs["path_idx"]])
        last = s.loc[s.groupby("path_idx")["pos"].idxmax()]
    else:
        last = s
    conv_counts = np.zeros(size)
    null_counts = np.zeros(size)
    value_counts = np.zeros(size)
    last_state = last["ch"].to_numpy() + 1
    np.add.at(conv_counts, last_state, table.conversions[last["path_idx"]])
    np.add.at(null_counts, last_state, table.non_conversions[last["path_idx"]])
    np.add.at(value_counts, last_state, table.revenue[last["path_idx"]])
    # paths with no channel at all go start -> absorbing directly
    empty = np.setdiff1d(np.arange(len(weight)), s["path_idx"].unique())
    conv_counts[0] += table.conversions[empty].sum()
    null_counts[0] += table.non_conversions[empty].sum()
    value_counts[0] += table.revenue[empty].sum()

    out_total = q_counts.sum(axis=1) + conv_counts + null_counts
    safe = np.where(out_total > 0, out_total, 1.0)
    q = q_counts / safe[:, None]
    r_conv = conv_counts / safe
    r_value = value_counts / safe  # = P(convert here) * mean revenue per conversion here

    base_conv = _absorption_values(q, r_conv)
    base_value = _absorption_values(q, r_value)
    re_conv = np.zeros(n)
    re_value = np.zeros(n)
    for k in range(n):  # one small linear solve per channel (n <= a few dozen)
        qk = q.copy()
        qk[:, k + 1] = 0.0
        if base_conv > 0:
            re_conv[k] = 1 - _absorption_values(qk, r_conv) / base_conv
        if base_value > 0:
            re_value[k] = 1 - _absorption_values(qk, r_value) / base_value
    info = {
        "p_conversion": base_conv,
        "expected_revenue_per_path": base_value,
        "removal_effect": dict(zip(table.channels, np.round(re_conv, 6).tolist(), strict=False)),
        "removal_effect_revenue": dict(zip(table.channels, np.round(re_value, 6).tolist(), strict=False)),
    }
    return np.clip(re_conv, 0, None), np.clip(re_value, 0, None), info


def _shares(effects: np.ndarray, total: float) -> np.ndarray:
    s = effects.sum()
    return effects / s * total if s > 0 else np.zeros_like(effects)


def markov_attribution(paths: pd.DataFrame, max_channels: int = MAX_SHAPLEY_CHANNELS) -> pd.DataFrame:
    """Markov credit per channel: removal effects normalised to the observed totals."""
    table = prepare_paths(paths, max_channels)
    re_conv, re_value, info = markov_removal_effects(table)
    settings = {
        "model": "markov",
        "order": 1,
        "normalisation": "removal effects scaled to observed totals",
        "max_channels": max_channels,
        "grouped_into_other": sorted(table.grouped),
        "paths": len(paths),
        **info,
    }
    return _frame(
        "markov",
        table.channels,
        _shares(re_conv, table.conversions.sum()),
        _shares(re_value, table.revenue.sum()),
        settings,
    )


# ----------------------------------------------------------------------------------------------- Shapley


def _coalition_values(masks: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """v(S) = total value of paths whose channel set is a subset of S, for every S (subset-sum DP)."""
    v = np.zeros(1 << n)
    np.add.at(v, masks, values)
    for i in range(n):
        block = v.reshape(-1, 2, 1 << i)
        block[:, 1, :] += block[:, 0, :]
    return v


def shapley_values(masks: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact Shapley values of the game v(S) = sum of values of paths contained in S.

    phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + i) - v(S)), vectorised over all
    2**n coalitions at once per channel.
    """
    if n == 0:
        return np.zeros(0)
    v = _coalition_values(masks, values, n)
    all_masks = np.arange(1 << n)
    sizes = np.array([bin(m).count("1") for m in range(1 << n)]) if n <= 16 else None
    weights = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) if s < n else 0.0 for s in range(n + 1)]
    )
    phi = np.zeros(n)
    for i in range(n):
        bit = 1 << i
        without = all_masks[(all_masks & bit) == 0]
        phi[i] = np.sum(weights[sizes[without]] * (v[without | bit] - v[without]))
    return phi


def shapley_attribution(paths: pd.DataFrame, max_channels: int = MAX_SHAPLEY_CHANNELS) -> pd.DataFrame:
    """Shapley credit per channel for conversions and for revenue (two games on the same coalitions)."""
    table = prepare_paths(paths, max_channels)
    n = len(table.channels)
    s = table.steps
    masks = np.zeros(len(table.conversions), dtype=np.int64)
    if len(s):
        uniq = s.drop_duplicates(["path_idx", "ch"])
        np.bitwise_or.at(masks, uniq["path_idx"].to_numpy(), (1 << uniq["ch"].to_numpy()).astype(np.int64))
    touched = masks > 0  # a path without channels belongs to no coalition: nobody can claim it
    phi_conv = shapley_values(masks[touched], table.conversions[touched], n)
    phi_rev = shapley_values(masks[touched], table.revenue[touched], n)
    settings = {
        "model": "shapley",
        "game": "v(S) = value of paths whose channel set is a subset of S",
        "exact": True,
        "coalitions": 1 << n,
        "max_channels": max_channels,
        "grouped_into_other": sorted(table.grouped),
        "paths": len(paths),
        "unattributed_conversions": float(table.conversions[~touched].sum()),
    }
    return _frame("shapley", table.channels, phi_conv, phi_rev, settings)


def to_cents(values: np.ndarray) -> np.ndarray:
    """Dollar credits rounded to the cent so that they still sum to their total rounded to the cent.

    Rounding each channel alone loses or adds a cent per few channels ($100 over three equal channels: 33.33 x 3
    = 99.99). Largest remainder: every credit is floored to the cent, then the cents still owed to the total go one
    each to the credits with the largest remainders (ties to the earlier channel, so the result is deterministic).
    Negative credits (a refund on a path) are handled alike.
    """
    x = np.asarray(values, float) * 100.0
    if len(x) == 0:
        return x
    base = np.floor(x)
    remainder = x - base
    owed = int(round(float(x.sum()))) - int(base.sum())  # 0 <= owed < len(x), up to float noise
    order = np.argsort(-remainder, kind="stable")
    if owed >= 0:
        base[order[: min(owed, len(x))]] += 1
    else:  # float noise only: take the cent back from the smallest remainders
        base[order[::-1][: min(-owed, len(x))]] -= 1
    return base / 100.0


def _frame(
    model: str, channels: list[str], conv: np.ndarray, rev: np.ndarray, settings: dict[str, Any]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model,
            "channel": channels,
            "attributed_conversions": np.asarray(conv, float),
            "attributed_revenue_usd": to_cents(np.asarray(rev, float)),
            "settings": json.dumps(settings, sort_keys=True, default=float),
        }
    )


def attribute(paths: pd.DataFrame, max_channels: int = MAX_SHAPLEY_CHANNELS) -> pd.DataFrame:
    """Both models stacked: the rows of `ml.attribution_credit`."""
    cols = ["model", "channel", "attributed_conversions", "attributed_revenue_usd", "settings"]
    if paths is None or len(paths) == 0:
        return pd.DataFrame(columns=cols)
    return pd.concat(
        [markov_attribution(paths, max_channels), shapley_attribution(paths, max_channels)], ignore_index=True
    )[cols]
