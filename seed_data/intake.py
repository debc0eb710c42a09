"""Referrals and leads: arrival volume (capacity-driven, seasonal), source, patient, diagnosis, the intake
funnel (outreach, contact, exits) and the patients file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from seed_data import marketing as M
from seed_data import params as P
from seed_data.practice import DAY, ClinicCtx, PayerTable
from seed_data.reference import ICD10, REGION_P, STAFF, Pools, ids, opt

ICD_CODES = np.array([c for c, _ in ICD10])
ICD_REGION = np.array([r for _, r in ICD10])
REGIONS = np.array(list(REGION_P))
SOURCE = np.array(list(P.SOURCE_TYPE_P))
EXIT_KINDS = np.array(["unreachable", "declined", "insurance_denied", "lost"])
EXIT_P = np.array([P.P_UNREACHABLE, P.P_DECLINED, P.P_INSURANCE_DENIED, P.P_LOST])
DECLINE_REASONS = np.array(["cost", "no_time", "went_elsewhere", "symptoms_resolved", "prefers_home_program"])
DENY_REASONS = np.array(["not_covered", "out_of_network", "auth_denied", "no_benefits_left"])
LOST_REASONS = np.array(["went_elsewhere", "no_response_after_contact", "scheduling_conflict", "cost"])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Referrals:
    """One clinic's referrals (arrays aligned by referral index) plus derived frames."""

    n: int
    received: np.ndarray  # epoch seconds
    source: np.ndarray  # index into SOURCE
    physician: np.ndarray  # physician id or ""
    channel: np.ndarray  # channel index or -1 (channel on the received event)
    patient: np.ndarray  # patient index (within clinic)
    payer: np.ndarray  # payer index
    region: np.ndarray
    icd: np.ndarray
    age: np.ndarray
    p_schedule: np.ndarray
    exit_kind: np.ndarray  # -1 = scheduled, else index into EXIT_KINDS
    contact_at: np.ndarray  # epoch seconds of the reaching outreach (or last attempt)
    dropout_mult: np.ndarray
    on_path: np.ndarray  # referrals x channels
    base_logit: np.ndarray
    touches: pl.DataFrame
    outreach: pl.DataFrame  # ref, event_at, method, outcome
    patients: pl.DataFrame
    displaced: float = 0.0  # expected direct-access referrals intercepted by social leads (truth only)


def arrivals(ctx: ClinicCtx, boost: float = 1.0) -> np.ndarray:
    """Epoch seconds of each referral: Poisson per day scaled to keep therapists ~80% booked (times `boost` for
    candidates that marketing.draw_sources thins)."""
    rng, cal = ctx.rng, ctx.cal
    days = np.arange(ctx.start, ctx.as_of + 1)
    avg_dur = 0.15 * P.EVAL_MIN + 0.85 * P.FOLLOW_UP_MIN
    appts_week = P.TARGET_UTILIZATION * ctx.t_hours.sum() * 60 / avg_dur
    per_week = appts_week / P.APPTS_PER_REFERRAL
    wd = cal.wd(days)
    rate = per_week / sum(P.WEEKDAY_REFERRAL) * np.array(P.WEEKDAY_REFERRAL)[wd]
    rate = rate * np.array(P.MONTH_FACTOR)[cal.month[days - cal.d0]]
    rate = np.where(cal.is_holiday(days), rate * 0.15, rate)
    counts = rng.poisson(rate * boost)
    day = np.repeat(days, counts)
    office = wd[np.repeat(np.arange(len(days)), counts)] < 5
    sec = np.where(office, rng.integers(8 * 3600, 18 * 3600, size=len(day)), rng.integers(0, 86400, size=len(day)))
    return np.sort(day * DAY + sec)


def pick_physicians(ctx: ClinicCtx, received: np.ndarray) -> np.ndarray:
    """Weighted choice of referrer; fading physicians lose volume over the last FADE_DAYS to ~10%."""
    rng = ctx.rng
    n = len(received)
    cum = np.cumsum(ctx.ph_weight)
    ph = np.searchsorted(cum, rng.random(n) * cum[-1]).clip(0, len(cum) - 1)
    days_left = ctx.as_of - received // DAY
    keep = np.clip(days_left / P.FADE_DAYS, 0.08, 1.0)
    steady = np.flatnonzero(~ctx.ph_fading)
    w = ctx.ph_weight[steady] / ctx.ph_weight[steady].sum()
    move = ctx.ph_fading[ph] & (rng.random(n) > keep)
    ph[move] = steady[np.searchsorted(np.cumsum(w), rng.random(int(move.sum()))).clip(0, len(steady) - 1)]
    return ph


def make_patients(
    ctx: ClinicCtx, pools: Pools, payers: PayerTable, n: int, created: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Patients file rows plus (age at intake, payer index) arrays."""
    rng = ctx.rng
    age = np.concatenate(
        [
            rng.integers(12, 18, n),
            rng.integers(18, 31, n),
            rng.integers(31, 51, n),
            rng.integers(51, 65, n),
            rng.integers(65, 91, n),
        ]
    )
    band = rng.choice(5, size=n, p=[0.05, 0.15, 0.30, 0.27, 0.23])
    age = age.reshape(5, n)[band, np.arange(n)]
    old = age >= 65
    payer = np.where(
        old,
        rng.choice(len(payers.ids), size=n, p=payers.share_old),
        rng.choice(len(payers.ids), size=n, p=payers.share_young),
    )
    sex = rng.choice(np.array(["F", "M", "X", "U"]), size=n, p=[0.56, 0.435, 0.003, 0.002])
    first = np.where(
        sex == "M",
        pools.first_m[rng.integers(len(pools.first_m), size=n)],
        pools.first_f[rng.integers(len(pools.first_f), size=n)],
    )
    last = pools.last[rng.integers(len(pools.last), size=n)]
    created_day = created // DAY
    birth = created_day - (age * 365.25).astype(np.int64) - rng.integers(0, 365, size=n)
    phone = (
        rng.integers(200, 999, size=n).astype(str).astype(object)
        + "-555-"
        + np.char.zfill(rng.integers(0, 10000, size=n).astype(str), 4).astype(object)
    )
    has_email = rng.random(n) < 0.82
    email = (
        np.char.lower((first.astype(object) + "." + last.astype(object)).astype(str)).astype(object)
        + rng.integers(1, 99, size=n).astype(str).astype(object)
        + "@example.com"
    )
    pid = ids("PT", ctx.ci, np.arange(n), 6)
    member = opt(payers.cls[payer] != "self_pay", np.char.add("M", rng.integers(10**8, 10**9, size=n).astype(str)))
    df = pl.DataFrame(
        dict(
            patient_id=pid,
            first_name=first,
            last_name=last,
            birth_date=birth,
            sex=sex,
            phone=phone.astype(str),
            email=opt(has_email, email),
            address_line=pools.street[rng.integers(len(pools.street), size=n)],
            city=ctx.city,
            state=ctx.state,
            zip=np.char.zfill(rng.integers(10000, 99999, size=n).astype(str), 5),
            primary_payer_id=payers.ids[payer],
            member_id=member,
            created_at=created,
            updated_at=created + rng.integers(0, 3600, size=n),
        )
    )
    return df, age, payer


def business_hours(ctx: ClinicCtx, t: np.ndarray) -> np.ndarray:
    """Push times outside Mon-Fri 8:00-18:00 (or on holidays) to the next business morning."""
    day = t // DAY
    sec = t % DAY
    late = sec >= 18 * 3600
    day = np.where(late, day + 1, day)
    early = (sec < 8 * 3600) | late
    nb = ctx.cal.next_business(day)
    moved = nb != day
    sec = np.where(early | moved, 8 * 3600 + ctx.rng.integers(0, 2 * 3600, size=len(t)), sec)
    return nb * DAY + sec


def simulate_referrals(
    ctx: ClinicCtx, pools: Pools, payers: PayerTable, months: np.ndarray, mk: M.MarketingPlan
) -> Referrals:
    """Draw referrals and run the pre-evaluation funnel (outreach, contact, exits)."""
    rng = ctx.rng
    weights = mk.weights
    received, source, channel, month_idx, displaced = M.draw_sources(ctx, arrivals(ctx, mk.boost), months, mk)
    n = len(received)
    ph = pick_physicians(ctx, received)
    physician = np.where(source == 0, ctx.ph_ids[ph], "")

    # patients: mostly new, some returning for a new episode
    returning = (rng.random(n) < P.RETURNING_PATIENT_P) & (np.arange(n) > 50)
    new_idx = np.cumsum(~returning) - 1
    n_pat = int((~returning).sum())
    patients, age_p, payer_p = make_patients(ctx, pools, payers, n_pat, received[~returning])
    earlier = (rng.random(n) * np.maximum(new_idx, 1)).astype(np.int64)
    patient = np.where(returning, earlier, new_idx)
    age = age_p[patient]
    payer = payer_p[patient]

    region = rng.choice(REGIONS, size=n, p=list(REGION_P.values()))
    icd = np.empty(n, dtype=object)
    pick = rng.random(n)
    for r in REGIONS:  # eleven regions
        sel = region == r
        codes = ICD_CODES[ICD_REGION == r]
        icd[sel] = codes[(pick[sel] * len(codes)).astype(int)]

    touched = (
        (source == 2)
        | ((source == 1) & (rng.random(n) < P.DIRECT_ACCESS_TOUCHED_P))
        | ((source == 0) & (rng.random(n) < P.PHYSICIAN_TOUCHED_P))
    )
    touches, on_path = M.journeys(ctx, received, touched, channel, month_idx, weights)

    pre_exit = EXIT_P.sum()
    base_p = np.where(source == 0, 1 - pre_exit, 1 - pre_exit * 0.9)
    base_logit = np.where(source == 2, P.CHANNEL_BASE_LOGIT, np.log(base_p / (1 - base_p)))
    logit = base_logit + on_path @ M.CH_LOGIT
    p_schedule = sigmoid(logit)
    scheduled = rng.random(n) < p_schedule
    exit_kind = np.where(scheduled, -1, rng.choice(4, size=n, p=EXIT_P / EXIT_P.sum()))
    mult = np.array([P.CHANNEL_DROPOUT_MULT[c] for c in P.CHANNELS])
    dropout_mult = np.where(channel >= 0, mult[channel.clip(0)], 1.0)

    # outreach attempts: failures then (unless unreachable) one that reaches the patient
    first = business_hours(
        ctx, received + (rng.lognormal(np.log(P.CONTACT_HOURS_MEDIAN), 1.0, n) * 3600).astype(np.int64)
    )
    unreach = exit_kind == 0
    fails = np.where(unreach, rng.integers(3, 6, size=n), np.minimum(rng.geometric(0.72, size=n) - 1, 3))
    k = fails + (~unreach)
    ref = np.repeat(np.arange(n), k)
    seq = np.arange(len(ref)) - np.repeat(np.cumsum(k) - k, k)
    gap = rng.integers(1 * 3600, 8 * 3600, size=len(ref))
    gap[seq == 0] = 0
    start_of = np.repeat(np.cumsum(k) - k, k)
    cg = np.cumsum(gap)
    t = first[ref] + cg - cg[start_of]
    t = business_hours(ctx, t)
    reached = (seq == fails[ref]) & ~unreach[ref]
    outcome = np.where(
        reached, "reached", rng.choice(["voicemail", "no_answer", "wrong_number"], size=len(ref), p=[0.6, 0.35, 0.05])
    )
    method = np.where(
        source[ref] == 0,
        rng.choice(["call", "sms", "email", "fax"], size=len(ref), p=[0.55, 0.2, 0.1, 0.15]),
        rng.choice(["call", "sms", "email"], size=len(ref), p=[0.6, 0.28, 0.12]),
    )
    method = np.where(reached & (method == "fax"), "call", method)
    last_t = np.zeros(n, dtype=np.int64)
    last_t[ref] = t  # later rows overwrite: the last attempt per referral
    outreach = pl.DataFrame(dict(ref=ref, event_at=t, method=method, outcome=outcome))
    return Referrals(
        n=n,
        received=received,
        source=source,
        physician=physician,
        channel=channel,
        patient=patient,
        payer=payer,
        region=region,
        icd=icd.astype(str),
        age=age,
        p_schedule=p_schedule,
        exit_kind=exit_kind,
        contact_at=last_t,
        dropout_mult=dropout_mult,
        on_path=on_path,
        base_logit=base_logit,
        touches=touches,
        outreach=outreach,
        patients=patients,
        displaced=displaced,
    )


def intake_events(
    ctx: ClinicCtx, R: Referrals, payers: PayerTable, eval_lost: np.ndarray, eval_lost_at: np.ndarray
) -> pl.DataFrame:
    """All intake events: received, outreach, contacted, and exits (incl. lost after a missed eval)."""
    rng = ctx.rng
    n = R.n
    ref_id = ids("RF", ctx.ci, np.arange(n), 6).to_numpy()
    pat_id = R.patients["patient_id"].to_numpy()[R.patient]
    kind = np.where(R.source == 0, "referral", "lead")
    recv = pl.DataFrame(
        dict(
            ref=np.arange(n),
            event_type="received",
            event_at=R.received,
            intake_kind=kind,
            source_type=SOURCE[R.source],
            referring_physician_id=opt(R.source == 0, R.physician),
            channel=opt(R.channel >= 0, M.CH[R.channel.clip(0)]),
            payer_id=payers.ids[R.payer],
            icd10_code=opt((R.source == 0) | (rng.random(n) < 0.4), R.icd),
        )
    )
    o = R.outreach
    outreach = pl.DataFrame(
        dict(
            ref=o["ref"],
            event_type="outreach",
            event_at=o["event_at"],
            outreach_method=o["method"],
            outreach_outcome=o["outcome"],
        )
    )
    contacted_mask = R.exit_kind != 0
    ci = np.flatnonzero(contacted_mask)
    contacted = pl.DataFrame(dict(ref=ci, event_type="contacted", event_at=R.contact_at[ci]))
    ex = np.flatnonzero(R.exit_kind >= 0)
    ek = R.exit_kind[ex]
    delay = (
        np.select(
            [ek == 0, ek == 1, ek == 2],
            [rng.integers(24, 96, len(ex)), rng.integers(0, 48, len(ex)), rng.integers(24, 120, len(ex))],
            rng.integers(72, 336, len(ex)),
        )
        * 3600
    )
    reason = np.select(
        [ek == 1, ek == 2, ek == 3],
        [
            DECLINE_REASONS[rng.integers(0, len(DECLINE_REASONS), len(ex))],
            DENY_REASONS[rng.integers(0, len(DENY_REASONS), len(ex))],
            LOST_REASONS[rng.integers(0, len(LOST_REASONS), len(ex))],
        ],
        "",
    )
    exits = pl.DataFrame(
        dict(ref=ex, event_type=EXIT_KINDS[ek], event_at=R.contact_at[ex] + delay, reason=opt(ek != 0, reason))
    )
    el = np.flatnonzero(eval_lost)
    lost = pl.DataFrame(dict(ref=el, event_type="lost", event_at=eval_lost_at[el], reason="eval_no_show"))
    ev = pl.concat([recv, outreach, contacted, exits, lost], how="diagonal_relaxed")
    ev = ev.filter(pl.col("event_at") < (ctx.as_of + 1) * DAY).sort(["event_at", "ref"], maintain_order=True)
    staff = np.array(STAFF)
    r = ev["ref"].to_numpy()
    return ev.with_columns(
        event_id=pl.concat_str(
            [pl.lit(f"IE{ctx.ci + 1:03d}"), (pl.int_range(pl.len()) + 1).cast(pl.String).str.zfill(7)]
        ),
        referral_id=pl.Series(ref_id[r]),
        patient_id=pl.Series(pat_id[r]),
        clinic_id=pl.lit(ctx.clinic_id),
        recorded_by=pl.Series(staff[rng.integers(0, len(staff), ev.height)]),
    )
