"""Marketing: monthly spend per clinic x channel, and multi-touch journeys that precede intake.

A channel's spend in a month sets how many marketing leads it brings that month; a channel's presence on a
journey shifts the lead's odds of being scheduled by CHANNEL_LOGIT (its true incremental effect, written to
truth/channel_effects.csv so Markov/Shapley attribution can be checked against it).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from seed_data import params as P
from seed_data.practice import DAY, ClinicCtx

CH = np.array(P.CHANNELS)
CH_LOGIT = np.array([P.CHANNEL_LOGIT[c] for c in P.CHANNELS])
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


def spend_matrix(ctx: ClinicCtx, months: np.ndarray) -> np.ndarray:
    """Spend (months x channels): budget x clinic size x noise, events in bursts, a mid-history push."""
    rng = ctx.rng
    n = len(months)
    budget = np.array([P.CHANNEL_BUDGET[c] for c in P.CHANNELS]) * ctx.size
    noise = rng.lognormal(0.0, 0.18, size=(n, len(CH)))
    spend = budget[None, :] * noise
    ev = list(P.CHANNELS).index("events")
    spend[:, ev] *= rng.random(n) < 0.45  # events happen in some months only
    spend[:, ev] *= 2.0
    push = rng.integers(0, len(CH))  # one channel gets a budget increase halfway
    spend[n // 2 :, push] *= 1.6
    return np.round(spend, 2)


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


def channel_weights(spend: np.ndarray) -> np.ndarray:
    """Share of marketing leads per channel and month: diminishing returns on spend x efficiency."""
    eff = np.array([P.CHANNEL_EFFICIENCY[c] for c in P.CHANNELS])
    w = np.power(spend + 20.0, 0.8) * eff[None, :]
    return w / w.sum(axis=1, keepdims=True)


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
