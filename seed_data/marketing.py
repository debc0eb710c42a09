"""Marketing: monthly spend per clinic x channel, the leads it buys, and multi-touch journeys before intake.

Paid channels' leads follow their spend through geometric adstock and a Hill saturation curve (a marketing-mix
model's own assumptions, so an MMM can recover them); unpaid channels (organic web, word of mouth) have their own
levels. Social leads intercept direct-access callers who would have scheduled more often, so social's net
incremental effect on new patients is negative. A channel on a journey also shifts the lead's odds of being
scheduled by CHANNEL_LOGIT. truth/channel_effects.csv holds both: the path effect (`true_effect`) and the
incremental new patients had the channel been switched off (`true_incremental`, what an MMM estimates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from seed_data import params as P
from seed_data.practice import DAY, ClinicCtx

CH = np.array(P.CHANNELS)
CH_LOGIT = np.array([P.CHANNEL_LOGIT[c] for c in P.CHANNELS])
PAID = np.array([P.CHANNEL_BUDGET[c] > 0 for c in P.CHANNELS])
LEAD_SHARE = np.array([P.CHANNEL_LEAD_SHARE[c] for c in P.CHANNELS]) / sum(P.CHANNEL_LEAD_SHARE.values())
SOCIAL, ORGANIC, EVENTS, WOM = (P.CHANNELS.index(c) for c in ("social", "organic_web", "events", "word_of_mouth"))
CAMPAIGNS = {
    "search_ads": ("google_brand", "google_back_pain", "google_sports_injury"),
    "social": ("fb_local_awareness", "ig_running_clinic", "fb_free_screen"),
    "organic_web": ("seo_blog", "google_business_profile"),
    "events": ("health_fair", "5k_sponsor", "workshop_back_pain"),
    "employer": ("onsite_ergonomics", "employer_wellness"),
    "word_of_mouth": ("refer_a_friend", "past_patient"),
}


def month_starts(ctx: ClinicCtx) -> np.ndarray:
    """Day index of the first of each month from history start through as_of."""
    first = np.datetime64(np.datetime64(int(ctx.start), "D"), "M")
    last = np.datetime64(np.datetime64(int(ctx.as_of), "D"), "M")
    months = np.arange(first, last + 1)
    return (months.astype("datetime64[D]") - np.datetime64("1970-01-01", "D")).astype(np.int64)


@dataclass
class MarketingPlan:
    """One clinic's spend and what it does: the per-month P(lead kept) per channel and the arrival mix.

    Candidates arrive at `boost` times the capacity-driven referral rate, each with a source drawn from
    `candidate_p` (physician, direct access, then one entry per channel); a channel's candidate is kept with
    probability `keep[month, channel]` (adstocked, saturated spend for paid channels) and a direct-access one with
    1 - `displaced[month]` (social leads intercept people who would have called). At the planned budget the kept
    mix matches SOURCE_TYPE_P and CHANNEL_LEAD_SHARE.
    """

    spend: np.ndarray  # months x channels, USD
    keep: np.ndarray  # months x channels
    displaced: np.ndarray  # months: P(a direct-access candidate is intercepted by social)
    candidate_p: np.ndarray  # 2 + channels
    boost: float
    weights: np.ndarray  # months x channels: expected lead mix (journey touches are drawn from it)


def geometric_adstock(x: np.ndarray, decay: float | np.ndarray) -> np.ndarray:
    """Carry-over along axis 0 (months), scaled by (1 - decay) so a steady spend keeps its level."""
    out = np.empty_like(x, dtype=float)
    acc = np.zeros(x.shape[1:])
    for t in range(len(x)):  # months, not rows
        acc = x[t] + decay * acc
        out[t] = acc
    return out * (1 - np.asarray(decay))


def hill(x: np.ndarray, half: float | np.ndarray, slope: float | np.ndarray) -> np.ndarray:
    xs = np.power(np.maximum(x, 0.0), slope)
    return xs / (xs + np.power(half, slope))


def spend_matrix(ctx: ClinicCtx, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spend, plan), months x channels: a clinic plan around the budget, monthly noise, paused months, events in
    bursts and one channel's mid-history push; unpaid channels spend 0."""
    rng = ctx.rng
    n = len(months)
    budget = np.array([P.CHANNEL_BUDGET[c] for c in P.CHANNELS]) * ctx.size
    plan = budget * rng.lognormal(0.0, P.CHANNEL_BUDGET_MIX_SD, size=len(CH))
    spend = plan[None, :] * rng.lognormal(0.0, P.CHANNEL_SPEND_NOISE_SD, size=(n, len(CH)))
    pause = np.array([P.CHANNEL_PAUSE_P.get(c, 0.0) for c in P.CHANNELS])
    spend *= rng.random((n, len(CH))) >= pause[None, :]
    spend[:, EVENTS] /= 1 - P.CHANNEL_PAUSE_P["events"]  # events: bigger bursts in fewer months
    paid = np.flatnonzero(PAID)
    push = paid[rng.integers(0, len(paid))]  # one paid channel gets a budget increase halfway
    spend[n // 2 :, push] *= 1.6
    return np.round(spend, 2), plan


def plan(ctx: ClinicCtx, months: np.ndarray) -> MarketingPlan:
    """Spend, the leads it buys (adstock + saturation) and the unpaid channels' own levels."""
    rng = ctx.rng
    spend, planned = spend_matrix(ctx, months)
    n = len(months)
    keep = np.zeros((n, len(CH)))
    for c, name in enumerate(P.CHANNELS):  # six channels
        if PAID[c]:
            decay, half, slope = P.CHANNEL_ADSTOCK[name], P.CHANNEL_HILL_HALF[name], P.CHANNEL_HILL_SLOPE[name]
            keep[:, c] = hill(geometric_adstock(spend[:, c] / planned[c], decay), half, slope)
    trend = np.linspace(*P.ORGANIC_LEVEL, n)
    keep[:, ORGANIC] = trend * rng.lognormal(0.0, P.UNPAID_NOISE_SD, n)
    keep[:, WOM] = P.WORD_OF_MOUTH_LEVEL * rng.lognormal(0.0, P.UNPAID_NOISE_SD, n)
    keep = keep.clip(0.0, 1.0)
    share = LEAD_SHARE * P.SOURCE_TYPE_P["marketing"]
    q_channel = share / np.maximum(keep.mean(axis=0), 1e-3)  # the clinic's planned mix, on average over history
    # direct access: inflate so that after social's interception its share is SOURCE_TYPE_P at plan
    x = P.SOCIAL_DISPLACEMENT * share[SOCIAL] / P.SOURCE_TYPE_P["direct_access"]
    d_base = x / (1 + x)
    q_direct = P.SOURCE_TYPE_P["direct_access"] / (1 - d_base)
    cand = np.concatenate([[P.SOURCE_TYPE_P["physician"], q_direct], q_channel])
    displaced = (P.SOCIAL_DISPLACEMENT * q_channel[SOCIAL] * keep[:, SOCIAL] / q_direct).clip(0.0, 0.9)
    expected = q_channel[None, :] * keep
    return MarketingPlan(
        spend=spend,
        keep=keep,
        displaced=displaced,
        candidate_p=cand / cand.sum(),
        boost=float(cand.sum()),
        weights=expected / expected.sum(axis=1, keepdims=True),
    )


def draw_sources(
    ctx: ClinicCtx, received: np.ndarray, months: np.ndarray, mk: MarketingPlan
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Thin candidate arrivals into referrals: (received, source, channel or -1, month index, expected number of
    direct-access referrals social intercepted)."""
    rng = ctx.rng
    month_idx = np.searchsorted(months, received // DAY, side="right") - 1
    cand = rng.choice(len(mk.candidate_p), size=len(received), p=mk.candidate_p)
    u = rng.random(len(received))
    is_channel = cand >= 2
    p_keep = np.where(
        is_channel,
        mk.keep[month_idx, (cand - 2).clip(0)],
        np.where(cand == 1, 1 - mk.displaced[month_idx], 1.0),
    )
    kept = u < p_keep
    displaced = float(mk.displaced[month_idx[cand == 1]].sum())
    c = cand[kept]
    return received[kept], np.minimum(c, 2), np.where(c >= 2, c - 2, -1), month_idx[kept], displaced


def spend_frame(ctx: ClinicCtx, months: np.ndarray, spend: np.ndarray) -> pl.DataFrame:
    """Rows reported on the 5th of the next month; months not yet reported by as_of are left out."""
    m = np.repeat(months, len(CH))
    nxt = (np.datetime64(0, "D") + m).astype("datetime64[M]") + 1
    rep_day = (nxt.astype("datetime64[D]") - np.datetime64(0, "D")).astype(np.int64) + 4
    rep = rep_day * DAY + 9 * 3600 + ctx.rng.integers(0, 8 * 3600, size=len(m))
    df = pl.DataFrame(
        dict(
            month=m, clinic_id=ctx.clinic_id, channel=np.tile(CH, len(months)), spend_usd=spend.ravel(), reported_at=rep
        )
    )
    return df.filter(pl.col("reported_at") <= (ctx.as_of + 1) * DAY - 1)


def journeys(
    ctx: ClinicCtx,
    received: np.ndarray,
    touched: np.ndarray,
    last_channel: np.ndarray,
    month_idx: np.ndarray,
    weights: np.ndarray,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Touch paths (1-5 touches) ending before each touched referral's received time.

    Returns the touches (referral index, channel, campaign, touched_at) and a (referrals x channels) bool
    matrix of which channels appear on each path.
    """
    rng = ctx.rng
    idx = np.flatnonzero(touched)
    k = rng.choice(np.arange(1, 6), size=len(idx), p=P.TOUCHES_P)
    ref = np.repeat(idx, k)
    seq = np.arange(len(ref)) - np.repeat(np.cumsum(k) - k, k)  # 0..k-1
    is_last = seq == np.repeat(k - 1, k)
    w = weights[month_idx[ref]]
    u = rng.random(len(ref))[:, None]
    ch = (u > np.cumsum(w, axis=1)).sum(axis=1).clip(0, len(CH) - 1)
    sticky = rng.random(len(ref)) < 0.35  # journeys often repeat their final channel
    lc = last_channel[ref]
    has_lc = lc >= 0
    ch = np.where((is_last | sticky) & has_lc, lc, ch)
    gaps = rng.exponential(4.0, size=len(ref)) * DAY + rng.integers(600, 7200, size=len(ref))
    # touch j is before received by the sum of gaps of touches j..k-1
    grp_end = np.repeat(np.cumsum(k), k) - 1
    after = np.concatenate([[0.0], np.cumsum(gaps)])
    before = after[grp_end + 1] - after[np.arange(len(ref))]
    t = received[ref] - before.astype(np.int64)
    camp_choice = rng.random(len(ref))
    campaign = np.empty(len(ref), dtype=object)
    for c_i, name in enumerate(P.CHANNELS):  # six channels
        sel = ch == c_i
        opts = np.array(CAMPAIGNS[name])
        campaign[sel] = opts[(camp_choice[sel] * len(opts)).astype(int)]
    on_path = np.zeros((len(received), len(CH)), dtype=bool)
    on_path[ref, ch] = True
    df = pl.DataFrame(dict(ref=ref, seq=seq, channel=CH[ch], campaign=campaign.astype(str), touched_at=t))
    return df, on_path
