"""Marketing-mix model: incremental new patients per channel from monthly spend and leads, with an interval.

Path models (ml/attribution.py, the dbt heuristics) split the credit for patients who came; they cannot see a
channel that *costs* patients (e.g. lead forms that intercept people who would have called anyway and schedule
less often). This model regresses each clinic's scheduled referrals per month on what marketing put in:

- stage 1, paid channels (spend > 0): leads per clinic-month = scale x season x Hill(geometric adstock of
  spend / the clinic's mean spend). Adstock decay and the Hill half-saturation and slope are chosen per
  channel by rolling-origin time-series CV on the channel-tagged lead counts (leads answer to spend directly,
  so this is where carry-over and saturation are identified). The fitted, spend-driven leads are the channel's
  stage-2 regressor: spend acts as the instrument, so leads a channel displaces elsewhere count against it.
- unpaid channels (no spend: word of mouth, organic web): their own monthly lead counts are the regressor.
- stage 2: scheduled referrals = clinic level + physician referrals + the practice's seasonal baseline
  + sum over channels of beta_c x regressor_c, a ridge regression (penalty chosen by rolling-origin CV).
  A channel's effect = beta_c x its regressor summed over the window: the new patients lost had it been off.

Intervals: a cluster bootstrap over clinics (moving blocks of months when there are few clinics) refitting both
stages with the chosen hyper-parameters. Everything is a few hundred to a few thousand clinic-months of numpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

DECAYS = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75)
HALVES = (0.5, 0.8, 1.2, 2.0)
SLOPES = (1.0, 1.5)
RIDGE = (0.0, 1.0, 10.0, 30.0, 100.0)
BOOTSTRAP = 200
LEVEL = 0.90
MIN_MONTHS = 12
MIN_CLINICS_FOR_CLUSTERS = 8
BLOCK_MONTHS = 4
MATURE_DAYS = 14  # a month counts once its referrals have had this long to be scheduled
METHOD = "mmm"
PER_LEAD_BOUND = 1.0


@dataclass
class Panel:
    """Clinic x month arrays (aligned), channels on the last axis."""

    clinics: list[str]
    months: pd.DatetimeIndex
    channels: list[str]
    spend: np.ndarray  # clinics x months x channels
    leads: np.ndarray  # clinics x months x channels
    scheduled: np.ndarray  # clinics x months: referrals received in the month that were ever scheduled
    physician: np.ndarray  # clinics x months: physician referrals received (not moved by marketing)

    @property
    def paid(self) -> np.ndarray:
        return self.spend.sum(axis=(0, 1)) > 0


@dataclass
class MMMResult:
    effects: pd.DataFrame  # channel, effect, lo, hi, share, method
    settings: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ data


def read_panel(con: duckdb.DuckDBPyConnection) -> Panel | None:
    """The panel from marts.marketing_mix_monthly and marts.referral_funnel; None without spend or leads.

    Only matured months count (MATURE_DAYS after the month's end, before the last referral received): a practice
    whose spend and intake cover no matured month yet gets a panel of 0 months, not None, so `insufficient` says
    how many complete months there are instead of asking it to load what it has loaded."""
    mix = con.sql(
        "select clinic_id, month::date as month, channel, spend_usd::double as spend_usd, leads::double as leads "
        "from marts.marketing_mix_monthly"
    ).df()
    outcome = con.sql(
        """
        select clinic_id, date_trunc('month', received_at)::date as month,
               count(*) filter (where scheduled_at is not null)::double as scheduled,
               count(*) filter (where source_type = 'physician')::double as physician
        from marts.referral_funnel
        where clinic_id is not null and received_at is not null
          and date_trunc('month', received_at) + interval 1 month + to_days($mature)
              <= (select max(received_at) from marts.referral_funnel)
        group by all""",
        params={"mature": MATURE_DAYS},
    ).df()
    return build_panel(mix, outcome)


def build_panel(mix: pd.DataFrame, outcome: pd.DataFrame) -> Panel | None:
    """Align the long frames on every clinic x complete month; missing spend or leads are 0.

    None only without marketing spend or leads (`mix`). Without a complete month of referrals (`outcome`
    empty: none matured yet) the panel has 0 months, and without a clinic in both frames 0 clinics, so
    `insufficient` can say what is short instead of "load marketing_spend and intake"."""
    if mix.empty:
        return None
    outcome = outcome.assign(month=pd.to_datetime(outcome["month"]))
    mix = mix.assign(month=pd.to_datetime(mix["month"]))
    clinics = sorted(set(outcome["clinic_id"]) & set(mix["clinic_id"]))
    months = pd.DatetimeIndex(sorted(outcome["month"].unique()))
    channels = sorted(mix["channel"].dropna().unique())
    if not channels:
        return None
    grid = pd.MultiIndex.from_product([clinics, months, channels], names=["clinic_id", "month", "channel"])
    m = mix.groupby(["clinic_id", "month", "channel"])[["spend_usd", "leads"]].sum().reindex(grid, fill_value=0.0)
    shape = (len(clinics), len(months), len(channels))
    o = outcome.groupby(["clinic_id", "month"])[["scheduled", "physician"]].sum()
    o = o.reindex(pd.MultiIndex.from_product([clinics, months]), fill_value=0.0)
    return Panel(
        clinics=clinics,
        months=months,
        channels=channels,
        spend=m["spend_usd"].to_numpy(float).reshape(shape),
        leads=m["leads"].to_numpy(float).reshape(shape),
        scheduled=o["scheduled"].to_numpy(float).reshape(shape[:2]),
        physician=o["physician"].to_numpy(float).reshape(shape[:2]),
    )


# ----------------------------------------------------------------------------------------- transforms


def adstock(x: np.ndarray, decay: float) -> np.ndarray:
    """Geometric carry-over along axis 1 (months), scaled by (1 - decay) so a steady spend keeps its level."""
    out = np.empty_like(x, dtype=float)
    acc = np.zeros(x.shape[0])
    for t in range(x.shape[1]):  # months, not rows
        acc = x[:, t] + decay * acc
        out[:, t] = acc
    return out * (1 - decay)


def hill(x: np.ndarray, half: float, slope: float) -> np.ndarray:
    xs = np.power(np.maximum(x, 0.0), slope)
    return xs / (xs + half**slope)


def season(panel: Panel) -> np.ndarray:
    """Month factor shared by all clinics: physician referrals (untouched by marketing) over their mean."""
    total = panel.physician.sum(axis=0)
    return total / total.mean() if total.mean() > 0 else np.ones(len(panel.months))


def response(spend: np.ndarray, decay: float, half: float, slope: float) -> np.ndarray:
    """Hill(adstock(spend / clinic's mean spend)): clinics x months, 0 for a clinic that never spent."""
    plan = spend.mean(axis=1, keepdims=True)
    rel = np.divide(spend, plan, out=np.zeros_like(spend), where=plan > 0)
    return hill(adstock(rel, decay), half, slope)


def _scale(leads: np.ndarray, x: np.ndarray, months: slice) -> np.ndarray:
    """Poisson MLE of each clinic's scale for leads ~ scale x x (closed form: sum leads / sum x)."""
    den = x[:, months].sum(axis=1)
    return np.divide(leads[:, months].sum(axis=1), den, out=np.zeros_like(den), where=den > 0)


def _origins(n: int) -> list[int]:
    """Rolling-origin CV cut points: train on months [0, o), test on [o, o + horizon)."""
    return sorted({int(n * f) for f in (0.55, 0.7, 0.85)} - {0, n})


def fit_response(leads: np.ndarray, spend: np.ndarray, seas: np.ndarray) -> dict[str, float]:
    """Adstock decay, Hill half and slope for one paid channel, by rolling-origin CV on its lead counts."""
    n = leads.shape[1]
    best: dict[str, float] = {}
    best_err = np.inf
    horizon = max(3, n // 6)
    for decay in DECAYS:
        for half in HALVES:
            for slope in SLOPES:
                x = response(spend, decay, half, slope) * seas[None, :]
                err = 0.0
                for o in _origins(n):
                    g = _scale(leads, x, slice(0, o))
                    test = slice(o, min(n, o + horizon))
                    err += float(((leads[:, test] - g[:, None] * x[:, test]) ** 2).sum())
                if err < best_err:
                    best_err, best = err, {"decay": decay, "half": half, "slope": slope, "cv_sse": round(err, 2)}
    return best


# ----------------------------------------------------------------------------------------------- stage 2


def _design(panel: Panel, params: dict[str, dict[str, float]], seas: np.ndarray) -> np.ndarray:
    """Regressors (clinics x months x k): physician referrals, seasonal baseline, one per channel."""
    cols = [panel.physician, panel.physician.mean(axis=1, keepdims=True) * seas[None, :]]
    for c, name in enumerate(panel.channels):
        if panel.paid[c]:
            p = params[name]
            x = response(panel.spend[:, :, c], p["decay"], p["half"], p["slope"]) * seas[None, :]
            cols.append(_scale(panel.leads[:, :, c], x, slice(None))[:, None] * x)
        else:
            cols.append(panel.leads[:, :, c])
    return np.stack(cols, axis=2)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float, months: slice) -> tuple[np.ndarray, np.ndarray]:
    """Bounded ridge on clinic-demeaned data of the given months: (coefficients, clinic means of y and x).

    Per-lead channel coefficients are bounded to [-PER_LEAD_BOUND, PER_LEAD_BOUND]: a lead is at most one new
    patient and displaces at most about one; the bound keeps a short series from crediting a channel with two
    patients per lead. Columns are standardised so the penalty treats channels alike.
    """
    xs, ys = x[:, months], y[:, months]
    mx, my = xs.mean(axis=1, keepdims=True), ys.mean(axis=1, keepdims=True)
    a = (xs - mx).reshape(-1, x.shape[2])
    b = (ys - my).ravel()
    scale = a.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    a = a / scale
    k = a.shape[1]
    pen = np.sqrt(lam * len(b) * 1e-2) * np.eye(k)
    pen[0, 0] = pen[1, 1] = 0.0  # physician referrals and the seasonal baseline are controls: not shrunk
    bound = np.full(k, np.inf)
    bound[2:] = PER_LEAD_BOUND * scale[2:]
    fit = lsq_linear(np.vstack([a, pen]), np.concatenate([b, np.zeros(k)]), bounds=(-bound, bound), method="bvls")
    return fit.x / scale, np.concatenate([my, mx[:, 0, :]], axis=1)


def _choose_ridge(x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float]]:
    n = x.shape[1]
    horizon = max(3, n // 6)
    errs = {}
    for lam in RIDGE:
        err = 0.0
        for o in _origins(n):
            beta, means = _ridge(x, y, lam, slice(0, o))
            test = slice(o, min(n, o + horizon))
            pred = means[:, :1] + ((x[:, test] - means[:, None, 1:]) @ beta)
            err += float(((y[:, test] - pred) ** 2).sum())
        errs[str(lam)] = round(err, 2)
    return float(min(RIDGE, key=lambda v: errs[str(v)])), errs


def _effects(panel: Panel, params: dict[str, dict[str, float]], lam: float, seas: np.ndarray) -> np.ndarray:
    x = _design(panel, params, seas)
    beta, _ = _ridge(x, panel.scheduled, lam, slice(None))
    return beta[2:] * x[:, :, 2:].sum(axis=(0, 1))


def _resample_clinics(panel: Panel, rng: np.random.Generator) -> Panel:
    """One cluster-bootstrap panel: clinics drawn with replacement (each keeps its whole series)."""
    idx = rng.integers(0, len(panel.clinics), len(panel.clinics))
    return Panel(
        [panel.clinics[i] for i in idx],
        panel.months,
        panel.channels,
        panel.spend[idx],
        panel.leads[idx],
        panel.scheduled[idx],
        panel.physician[idx],
    )


def _block_months(n: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block month indices for one clinic's regression rows (the transforms keep their time order)."""
    block = min(BLOCK_MONTHS, n)
    starts = rng.integers(0, n - block + 1, int(np.ceil(n / block)))
    return (starts[:, None] + np.arange(block)[None, :]).ravel()[:n]


def fit(panel: Panel, bootstrap: int = BOOTSTRAP, seed: int = 0) -> MMMResult:
    """Effects per channel with a bootstrap interval; see the module docstring for the model."""
    started = time.perf_counter()
    seas = season(panel)
    params = {
        name: fit_response(panel.leads[:, :, c], panel.spend[:, :, c], seas)
        for c, name in enumerate(panel.channels)
        if panel.paid[c]
    }
    x = _design(panel, params, seas)
    lam, ridge_cv = _choose_ridge(x, panel.scheduled)
    beta, _ = _ridge(x, panel.scheduled, lam, slice(None))
    effect = beta[2:] * x[:, :, 2:].sum(axis=(0, 1))

    rng = np.random.default_rng(seed)
    draws = np.empty((bootstrap, len(panel.channels)))
    clustered = len(panel.clinics) >= MIN_CLINICS_FOR_CLUSTERS
    for b in range(bootstrap):  # a few hundred small least-squares fits
        if clustered:
            draws[b] = _effects(_resample_clinics(panel, rng), params, lam, seas)
        else:
            t = _block_months(len(panel.months), rng)
            bb, _ = _ridge(x[:, t], panel.scheduled[:, t], lam, slice(None))
            draws[b] = bb[2:] * x[:, :, 2:].sum(axis=(0, 1))
    tail = (1 - LEVEL) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail], axis=0)
    total = effect.sum()
    effects = pd.DataFrame(
        {
            "channel": panel.channels,
            "effect": effect,
            "lo": lo,
            "hi": hi,
            "share": effect / total if total > 0 else np.full(len(effect), np.nan),
            "method": METHOD,
        }
    )
    settings = {
        "model": METHOD,
        "outcome": "referrals received in the month that were scheduled (all sources)",
        "effect_unit": "incremental scheduled referrals over the window",
        "clinics": len(panel.clinics),
        "months": len(panel.months),
        "first_month": panel.months[0].date().isoformat(),
        "last_month": panel.months[-1].date().isoformat(),
        "paid_channels": [c for c, p in zip(panel.channels, panel.paid, strict=True) if p],
        "response": params,
        "ridge": lam,
        "ridge_cv_sse": ridge_cv,
        "per_lead": dict(zip(panel.channels, np.round(beta[2:], 4).tolist(), strict=True)),
        "interval": f"{int(LEVEL * 100)}% {'cluster (clinic)' if clustered else 'moving-block (months)'} bootstrap",
        "bootstrap": bootstrap,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return MMMResult(effects, settings)


def insufficient(panel: Panel | None) -> str | None:
    """Why the model cannot run, in words; None when it can."""
    if panel is None:
        return "not computed: no marketing spend or leads per clinic and month (load marketing_spend and intake)"
    if len(panel.months) < MIN_MONTHS:
        return f"not computed: {len(panel.months)} complete months; needs at least {MIN_MONTHS}"
    if not panel.clinics:
        return "not computed: no clinic has both marketing spend or leads and referrals received"
    if not panel.paid.any():
        return "not computed: no channel has spend recorded"
    return None


def incrementality(con: duckdb.DuckDBPyConnection, bootstrap: int = BOOTSTRAP) -> tuple[pd.DataFrame, dict]:
    """The rows of `ml.channel_incrementality` and the run's settings (with `reason` when skipped)."""
    try:
        panel = read_panel(con)
    except duckdb.CatalogException:  # an analytics file built before the mart existed
        panel = None
    reason = insufficient(panel)
    if reason is not None:
        cols = ["channel", "effect", "lo", "hi", "share", "method"]
        return pd.DataFrame(columns=cols), {"model": METHOD, "reason": reason}
    res = fit(panel, bootstrap=bootstrap)  # type: ignore[arg-type]
    return res.effects, {**res.settings, "reason": None}
