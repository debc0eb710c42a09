"""Episodes of care: the appointment-by-appointment simulation (no-shows, cancels, dropout, plan of care),
scheduling events and clinical documentation.

The simulation steps through appointment number k for all open episodes at once (vectorised across
episodes), because a patient's next appointment depends on the outcome of the last one (prior no-shows,
gap since the last visit, rebooking after a miss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from seed_data import params as P
from seed_data.intake import Referrals, sigmoid
from seed_data.practice import DAY, ClinicCtx, PayerTable
from seed_data.reference import MEASURE, MEASURE_SPEC, STAFF, ids, opt

VISIT_TYPES = np.array(["initial_eval", "follow_up", "re_eval"])
OUTCOMES = np.array(["completed", "no_show", "late_cancelled", "cancelled"])
CANCEL_REASONS = np.array(
    [
        "illness",
        "schedule_conflict",
        "transportation",
        "weather",
        "financial",
        "feeling_better",
        "clinic_cancelled",
        "other",
    ]
)
CANCEL_REASON_P = np.array([0.28, 0.30, 0.08, 0.04, 0.05, 0.10, 0.05, 0.10])
EARLY_REASONS = np.array(["goals_met", "insurance_exhausted", "referred_out", "moved_or_other"])


@dataclass
class Episodes:
    """Per-episode arrays (index = episode) and the appointment table of one clinic."""

    ref: np.ndarray  # referral index
    therapist: np.ndarray  # evaluating / primary therapist index
    freq: np.ndarray
    weeks: np.ndarray
    planned: np.ndarray
    formal: np.ndarray  # early stop with a formal discharge
    reeval: np.ndarray
    appts: pl.DataFrame  # one row per appointment, typed (simulated, before as_of truncation)
    eval_lost: np.ndarray  # per referral: eval missed and not rebooked
    eval_lost_at: np.ndarray
    open: np.ndarray  # still in care when the simulation passed the booking horizon


def draw_plan(ctx: ClinicCtx, n: int, dropout_mult: np.ndarray) -> tuple[np.ndarray, ...]:
    """Plan of care and how many visits each patient will attend before stopping (dropout hazard)."""
    rng = ctx.rng
    freq = rng.choice(P.FREQ, size=n, p=P.FREQ_P)
    weeks = rng.choice(P.PLAN_WEEKS, size=n, p=P.PLAN_WEEKS_P)
    planned = np.clip(freq * weeks, 4, 36)
    target = np.full(n, -1)
    for v in range(1, 37):  # visit number; vectorised over episodes
        h = P.DROP_AFTER_VISIT.get(v, P.DROP_LATER) * dropout_mult
        stop = (target < 0) & ((rng.random(n) < h) | (v >= planned))
        target[stop] = v
    target[target < 0] = planned[target < 0]
    early = target < planned
    formal = early & (target >= 4) & (rng.random(n) < P.P_FORMAL_DISCHARGE_EARLY)
    reeval = (planned > 12) & (rng.random(n) < P.P_RE_EVAL)
    return freq, weeks, planned, target, formal, reeval


def simulate(ctx: ClinicCtx, R: Referrals, payers: PayerTable) -> Episodes:
    """Run every scheduled referral's appointments until it stops or passes the booking horizon."""
    rng, cal = ctx.rng, ctx.cal
    ep_ref = np.flatnonzero(R.exit_kind == -1)
    E = len(ep_ref)
    evaluators = np.flatnonzero(ctx.t_cred != "PTA")
    w = ctx.t_hours[evaluators] / ctx.t_hours[evaluators].sum()
    t_eval = evaluators[rng.choice(len(evaluators), size=E, p=w)]
    ptas = np.flatnonzero(ctx.t_cred == "PTA")
    t_fu = t_eval.copy()
    if len(ptas):
        to_pta = rng.random(E) < 0.3
        t_fu[to_pta] = ptas[rng.integers(0, len(ptas), int(to_pta.sum()))]
    freq, weeks, planned, target, formal, reeval = draw_plan(ctx, E, R.dropout_mult[ep_ref])
    dropout = (target < planned) & ~formal
    trailing_wanted = dropout & (rng.random(E) < 0.6)

    n_pat = int(R.patient.max()) + 1 if R.n else 0
    re_pat = rng.normal(0, P.NS_PATIENT_SD, size=n_pat)
    fixed = (
        P.NS_BASE
        + ctx.ns_effect
        + re_pat[R.patient[ep_ref]]
        + P.NS_AGE_12_30 * ((R.age[ep_ref] >= 12) & (R.age[ep_ref] <= 30))
        + P.NS_MEDICAID * (payers.cls[R.payer[ep_ref]] == "medicaid")
    )
    gap_mult = rng.lognormal(0.0, 0.2, size=E)

    contact_day = R.contact_at[ep_ref] // DAY
    lag = rng.choice(P.EVAL_LAG_BDAYS, size=E, p=P.EVAL_LAG_P)
    cur_day = cal.snap_workday(cal.add_business(contact_day, lag), ctx.t_work[t_eval])
    booked = R.contact_at[ep_ref] + rng.integers(60, 1200, size=E)
    eval_booked = booked.copy()
    attended = np.zeros(E, dtype=np.int64)
    prior_ns = np.zeros(E, dtype=np.int64)
    consec = np.zeros(E, dtype=np.int64)
    last_att = contact_day.copy()
    trailing = np.zeros(E, dtype=bool)
    eval_misses = np.zeros(E, dtype=np.int64)
    active = np.ones(E, dtype=bool)
    eval_lost = np.zeros(R.n, dtype=bool)
    eval_lost_at = np.zeros(R.n, dtype=np.int64)
    horizon = ctx.as_of + P.FUTURE_DAYS
    cols: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "ep",
            "day",
            "start",
            "dur",
            "ther",
            "vtype",
            "outcome",
            "booked",
            "p",
            "logit_observable",
            "visit_number",
            "trailing",
        )
    }

    for _step in range(400):
        e = np.flatnonzero(active & (cur_day <= horizon))
        if len(e) == 0:
            break
        m = len(e)
        vt = np.where(attended[e] == 0, 0, np.where(reeval[e] & (attended[e] + 1 == 13), 2, 1))
        ther = np.where(vt == 1, t_fu[e], t_eval[e])
        day = cal.snap_workday(cur_day[e], ctx.t_work[ther])
        dur = np.select([vt == 0, vt == 2], [P.EVAL_MIN, P.RE_EVAL_MIN], P.FOLLOW_UP_MIN)
        s0, s1 = ctx.t_start_min[ther], ctx.t_end_min[ther]
        slots = np.maximum((s1 - s0 - dur) // 15, 1)
        start = day * DAY + (s0 + 15 * (rng.random(m) * slots).astype(np.int64)) * 60
        bk = np.minimum(booked[e], start - 1800)
        lead = (start - bk) / DAY
        gap_w = np.clip((day - last_att[e]) / 7.0 - 0.6, 0, 4)
        wd = cal.wd(day)
        intent = trailing[e]
        logit = (
            fixed[e]
            + P.NS_LEAD_PER_LOG_DAY * np.log1p(lead)
            + P.NS_PRIOR * np.minimum(prior_ns[e], 3)
            + P.NS_MON_FRI * ((wd == 0) | (wd == 4))
            + P.NS_GAP_PER_WEEK * gap_w * (attended[e] > 0)
            + P.NS_EVAL * (vt == 0)
            + P.NS_DROPOUT_INTENT * intent
        )
        p = sigmoid(logit)
        # what an export could in principle reveal: the draw without the patient's propensity and intent
        logit_observable = logit - re_pat[R.patient[ep_ref[e]]] - P.NS_DROPOUT_INTENT * intent
        u = rng.random(m)
        out = np.select([u < p, u < p + P.P_LATE_CANCEL, u < p + P.P_LATE_CANCEL + P.P_CANCEL], [1, 2, 3], 0)
        for k, v in (
            ("ep", e),
            ("day", day),
            ("start", start),
            ("dur", dur),
            ("ther", ther),
            ("vtype", vt),
            ("outcome", out),
            ("booked", bk),
            ("p", p),
            ("visit_number", np.where(out == 0, attended[e] + 1, 0)),
            ("logit_observable", logit_observable),
            ("trailing", intent),
        ):
            cols[k].append(v)

        done = out == 0
        attended[e] += done
        last_att[e] = np.where(done, day, last_att[e])
        prior_ns[e] += out == 1
        consec[e] = np.where(done, 0, consec[e] + 1)

        # what happens next
        stop = np.zeros(m, dtype=bool)
        eval_miss = (vt == 0) & ~done
        eval_misses[e] += eval_miss
        rebook_p = np.where(out == 3, 0.85, P.P_EVAL_REBOOK)
        give_up = eval_miss & ((rng.random(m) > rebook_p) | (eval_misses[e] >= 2))
        r_idx = ep_ref[e[give_up]]
        eval_lost[r_idx] = True
        eval_lost_at[r_idx] = start[give_up] + rng.integers(2, 10, int(give_up.sum())) * DAY
        stop |= give_up
        reached = attended[e] >= target[e]
        start_trailing = reached & trailing_wanted[e] & ~trailing[e] & done
        stop |= reached & ~start_trailing
        stop |= trailing[e]  # the trailing appointment is the last one
        stop |= consec[e] >= 3
        trailing[e] |= start_trailing
        active[e[stop]] = False

        f = freq[e]
        base_gap = np.where(f == 1, 7, np.where(f == 2, rng.choice([3, 4], size=m), 2))
        gap = np.maximum(np.round(base_gap * gap_mult[e] + rng.normal(0, 0.6, m)), 1).astype(np.int64)
        gap = np.where(start_trailing, gap + rng.integers(2, 10, m), gap)
        nxt = np.where(done, day + gap, day + rng.integers(1, 6, m))
        cur_day[e] = nxt
        mode = rng.random(m)
        end_t = start + dur * 60
        call_in = nxt * DAY + 9 * 3600 - (rng.uniform(0.2, 3.0, m) * DAY).astype(np.int64)
        batch = np.maximum(eval_booked[e] + 3600 * 2, end_t - 30 * DAY)
        at_visit = np.where(done, end_t - rng.integers(0, 600, m), start + rng.integers(2, 30, m) * 3600)
        booked[e] = np.where(mode < 0.60, at_visit, np.where((mode < 0.85) & (attended[e] < 8), batch, call_in))
        booked[e] = np.maximum(booked[e], np.where(done, end_t - 600, start + 3600))

    a = {k: np.concatenate(v) if v else np.array([], dtype=np.int64) for k, v in cols.items()}
    appts = pl.DataFrame(a).sort(["start", "ep"])
    return Episodes(
        ref=ep_ref,
        therapist=t_eval,
        freq=freq,
        weeks=weeks,
        planned=planned,
        formal=formal,
        reeval=reeval,
        appts=appts,
        eval_lost=eval_lost,
        eval_lost_at=eval_lost_at,
        open=active,
    )


@dataclass
class Scheduled:
    """Scheduling output of one clinic, cut at as_of."""

    events: pl.DataFrame
    truth: pl.DataFrame
    visits: pl.DataFrame  # completed visits by as_of (drive notes and billing)
    appts: pl.DataFrame  # appointments kept (with ids), for episode summaries


def lay_out_days(ctx: ClinicCtx, appts: pl.DataFrame) -> pl.DataFrame:
    """Place each therapist's appointments of a day one after another (spread over the working day, in the
    simulated order) instead of at random slots, so a therapist is rarely double-booked."""
    s0 = pl.Series(ctx.t_start_min)
    s1 = pl.Series(ctx.t_end_min)
    a = (
        appts.with_columns(day=pl.col("start") // DAY)
        .sort(["ther", "day", "start", "ep"])
        .with_columns(
            s0=pl.col("ther").map_batches(lambda t: s0.gather(t)), s1=pl.col("ther").map_batches(lambda t: s1.gather(t))
        )
    )
    grp = ["ther", "day"]
    a = a.with_columns(offset=pl.col("dur").cum_sum().over(grp) - pl.col("dur"), load=pl.col("dur").sum().over(grp))
    span = pl.col("s1") - pl.col("s0")
    stretch = pl.min_horizontal(pl.lit(1.4), span / pl.col("load")).clip(lower_bound=1.0)
    off = ((pl.col("offset") * stretch / 15).floor() * 15).cast(pl.Int64) % (span - 30).clip(lower_bound=45)
    a = a.with_columns(start=pl.col("day") * DAY + (pl.col("s0") + off) * 60)
    return (
        a.with_columns(booked=pl.min_horizontal("booked", pl.col("start") - 1800))
        .drop("day", "s0", "s1", "offset", "load")
        .sort(["start", "ep"])
    )


def scheduling(ctx: ClinicCtx, R: Referrals, Ep: Episodes, ref_ids: np.ndarray, pat_ids: np.ndarray) -> Scheduled:
    """Turn simulated appointments into scheduler events, truncated at as_of (future: booked only)."""
    rng = ctx.rng
    end = (ctx.as_of + 1) * DAY
    a = (
        lay_out_days(ctx, Ep.appts)
        .with_row_index("k")
        .filter((pl.col("booked") < end) & (pl.col("start") < (ctx.as_of + P.FUTURE_DAYS + 1) * DAY))
    )
    n = a.height
    ep = a["ep"].to_numpy()
    ref = Ep.ref[ep]
    start = a["start"].to_numpy()
    booked = a["booked"].to_numpy()
    dur = a["dur"].to_numpy()
    out = a["outcome"].to_numpy().copy()
    lead_h = (start - booked) / 3600
    out = np.where((out == 3) & (lead_h < 25), 2, out)  # not enough notice for a regular cancel
    notice = np.where(
        out == 3,
        24 + rng.random(n) * np.clip(lead_h - 24, 0, 240),
        rng.uniform(0.5, 1, n) * np.clip(np.minimum(lead_h, 23.5), 0.5, None),
    )
    resched = (rng.random(n) < P.P_RESCHEDULE) & (lead_h > 72)
    shift = rng.choice([-3, -2, -1, 1, 2, 3, 7], size=n) * DAY
    orig = start + shift  # the first booked slot: also on one of the therapist's working days
    orig = ctx.cal.snap_workday(orig // DAY, ctx.t_work[a["ther"].to_numpy()]) * DAY + orig % DAY
    orig = np.where(orig > booked + 4 * 3600, orig, start)
    resched_at = booked + (rng.uniform(0.2, 0.8, n) * (np.minimum(orig, start) - booked)).astype(np.int64)
    base = pl.DataFrame(
        dict(
            appointment_id=ids("AP", ctx.ci, a["k"].to_numpy(), 7),
            episode_id=ids("EP", ctx.ci, ep, 6),
            referral_id=ref_ids[ref],
            patient_id=pat_ids[R.patient[ref]],
            clinic_id=ctx.clinic_id,
            therapist_id=ctx.t_ids[a["ther"].to_numpy()],
            duration_min=dur,
            visit_type=VISIT_TYPES[a["vtype"].to_numpy()],
        )
    )
    outcome_t = np.select(
        [out == 1, out >= 2],
        [start + rng.integers(15, 46, n) * 60, start - (notice * 3600).astype(np.int64)],
        start + dur * 60,
    )
    ev_booked = base.with_columns(
        event_type=pl.lit("booked"), event_at=booked, scheduled_start=np.where(resched, orig, start)
    )
    ev_res = base.filter(resched).with_columns(
        event_type=pl.lit("rescheduled"), event_at=resched_at[resched], scheduled_start=start[resched]
    )
    is_cancel = out >= 2
    reason = CANCEL_REASONS[rng.choice(len(CANCEL_REASONS), size=n, p=CANCEL_REASON_P)]
    ev_out = base.with_columns(
        event_type=pl.Series(OUTCOMES[out]),
        event_at=outcome_t,
        scheduled_start=start,
        cancel_reason=opt(is_cancel, reason),
        notice_hours=opt(is_cancel, np.round(notice, 2)),
    )
    done = out == 0
    ev_arr = base.filter(done).with_columns(
        event_type=pl.lit("arrived"),
        event_at=start[done] - rng.integers(0, 900, int(done.sum())),
        scheduled_start=start[done],
    )
    staff = np.array(STAFF[:-1])
    # future appointments (start after as_of) appear only as booked/rescheduled, even if a cancel was logged
    ev_out = ev_out.filter(start < end)
    ev = pl.concat([ev_booked, ev_res, ev_arr, ev_out], how="diagonal_relaxed").filter(pl.col("event_at") < end)
    ev = ev.sort(["event_at", "appointment_id"]).with_columns(
        event_id=ids("SE", ctx.ci, np.arange(ev.height), 8),
        recorded_by=pl.Series(staff[rng.integers(0, len(staff), ev.height)]),
    )
    resolved = start < end
    # Truth matches the no-show label, which leaves cancelled appointments out: P(no-show | not cancelled).
    # The draw above is no-show (p), then a late or regular cancel (up to P_LATE_CANCEL + P_CANCEL), else
    # attended, so given "not cancelled" the odds are p against what is left for attending.
    p = a["p"].to_numpy()
    attend = np.clip(1 - p - P.P_LATE_CANCEL - P.P_CANCEL, 0, None)
    # The bench's point-in-time ceiling (bench/noshow_ceiling.py) also needs the draw's parts: the log-odds
    # without the hidden traits (each patient's propensity, the intent to drop out), the intent, the outcome.
    truth = pl.DataFrame(
        dict(
            appointment_id=base["appointment_id"],
            patient_id=base["patient_id"],
            scheduled_start=pl.from_epoch(pl.Series(start), time_unit="s"),
            p_no_show=np.round(p / (p + attend), 4),
            p_no_show_any=np.round(p, 4),
            logit_observable=np.round(a["logit_observable"].to_numpy(), 4),
            dropout_intent=a["trailing"].to_numpy(),
            outcome=OUTCOMES[out],
        )
    )
    truth = truth.filter(resolved)
    comp = done & (start + dur * 60 < end)
    visits = base.filter(comp).with_columns(
        ep=ep[comp],
        ref=ref[comp],
        day=start[comp] // DAY,
        start=start[comp],
        vtype=a["vtype"].to_numpy()[comp],
        visit_number=a["visit_number"].to_numpy()[comp],
        ther=a["ther"].to_numpy()[comp],
    )
    kept = a.with_columns(outcome=pl.Series(out))
    return Scheduled(events=ev, truth=truth, visits=visits, appts=kept)


def documentation(ctx: ClinicCtx, R: Referrals, Ep: Episodes, S: Scheduled) -> pl.DataFrame:
    """EMR notes: eval with plan of care, daily/progress notes, re-eval, discharge summary (formal at the
    last visit; some self-discharges weeks later); outcome scores improve with the share of plan attended."""
    rng = ctx.rng
    end = (ctx.as_of + 1) * DAY
    E = len(Ep.ref)
    sim = Ep.appts
    att_final = np.bincount(sim.filter(pl.col("outcome") == 0)["ep"].to_numpy(), minlength=E)
    last_start = np.full(E, -1, dtype=np.int64)
    np.maximum.at(last_start, sim["ep"].to_numpy(), sim["start"].to_numpy())
    ended = ~Ep.open & (last_start < end) & (att_final > 0)
    completed_plan = att_final >= Ep.planned
    formal = ended & (completed_plan | Ep.formal)

    region = R.region[Ep.ref]
    measure = np.array([MEASURE[r] for r in region])
    hib = np.array([MEASURE_SPEC[m][0] for m in measure])
    mx = np.array([MEASURE_SPEC[m][1] for m in measure])
    mean0 = np.array([MEASURE_SPEC[m][2] for m in measure])
    mcid = np.array([MEASURE_SPEC[m][3] for m in measure])
    s0 = np.clip(rng.normal(mean0, 12), 2, mx - 2)
    frac = np.clip(att_final / Ep.planned, 0, 1)
    gain = mcid * (0.4 + 1.9 * frac) + rng.normal(0, mcid * 0.6)
    s_end = np.clip(np.where(hib, s0 + gain, s0 - gain), 0, mx)

    v = S.visits
    ep = v["ep"].to_numpy()
    vn = v["visit_number"].to_numpy()
    vt = v["vtype"].to_numpy()
    note_type = np.where(
        vt == 0, "initial_eval", np.where(vt == 2, "re_eval", np.where(vn % 10 == 0, "progress_note", "daily_note"))
    )
    plan_note = vt != 1
    scored = note_type != "daily_note"
    interim = s0[ep] + (s_end[ep] - s0[ep]) * np.clip(vn / np.maximum(att_final[ep], 1), 0, 1)
    score = np.where(vt == 0, s0[ep], interim)
    alt = rng.random(len(ep)) < 0.15
    icd = R.icd[Ep.ref[ep]]
    sec = np.where(np.isin(region[ep], ["hip", "knee", "ankle_foot", "neuro", "other"]), "R26.2", "M62.81")
    notes = v.select("episode_id", "appointment_id", "patient_id", "clinic_id", "therapist_id").with_columns(
        note_type=pl.Series(note_type),
        service=v["start"] + v["duration_min"] * 60,
        visit_number=v["visit_number"],
        icd10_primary=opt(plan_note, icd),
        icd10_secondary=opt(plan_note & alt, sec),
        body_region=opt(plan_note, region[ep]),
        planned_visits=opt(plan_note, Ep.planned[ep]),
        frequency_per_week=opt(plan_note, Ep.freq[ep]),
        plan_weeks=opt(plan_note, Ep.weeks[ep] + 4 * (vt == 2)),
        outcome_measure=opt(scored, measure[ep]),
        outcome_score=opt(scored, np.round(score, 1)),
    )
    # discharge summaries: formal at the last visit; some self-discharges ~30-45 days after the last visit
    last_visit = v.group_by("ep").agg(pl.all().sort_by("start").last()).sort("ep")
    lv_ep = last_visit["ep"].to_numpy()
    fm = formal[lv_ep]
    reason = np.where(
        completed_plan[lv_ep],
        np.where(rng.random(len(lv_ep)) < 0.3, "goals_met", "plan_completed"),
        EARLY_REASONS[rng.choice(4, size=len(lv_ep), p=[0.6, 0.15, 0.12, 0.13])],
    )
    self_d = ended[lv_ep] & ~fm & (rng.random(len(lv_ep)) < P.P_SELF_DISCHARGE_SUMMARY)
    svc = last_visit["start"].to_numpy() + last_visit["duration_min"].to_numpy() * 60
    svc = np.where(self_d, (last_visit["day"].to_numpy() + rng.integers(30, 46, len(lv_ep))) * DAY + 12 * 3600, svc)
    keep = fm | self_d
    dis = (
        last_visit.filter(keep)
        .select("episode_id", "appointment_id", "patient_id", "clinic_id", "therapist_id", "visit_number")
        .with_columns(
            appointment_id=opt(~self_d[keep], last_visit["appointment_id"].to_numpy()[keep]),
            note_type=pl.lit("discharge_summary"),
            service=svc[keep],
            body_region=pl.Series(region[lv_ep][keep]),
            outcome_measure=opt(fm[keep], measure[lv_ep][keep]),
            outcome_score=opt(fm[keep], np.round(s_end[lv_ep][keep], 1)),
            discharge_reason=pl.Series(np.where(fm, reason, "self_discharged")[keep]),
        )
    )
    allnotes = pl.concat([notes, dis], how="diagonal_relaxed")
    n = allnotes.height
    service = allnotes["service"].to_numpy()
    created = service + rng.integers(300, 4 * 3600, n)
    kind = rng.random(n)
    signed = np.where(
        kind < P.P_UNSIGNED,
        -1,
        np.where(
            kind < P.P_UNSIGNED + P.P_SIGN_LATE,
            service + rng.integers(25 * 3600, 120 * 3600, n),
            created + rng.integers(120, 12 * 3600, n),
        ),
    )
    signed_s = opt((signed >= 0) & (signed < end), signed)
    allnotes = allnotes.with_columns(
        created_at=created, signed_at=signed_s, service_date=pl.Series(service // DAY)
    ).filter(pl.col("created_at") < end)
    allnotes = allnotes.sort(["created_at", "episode_id"]).with_columns(
        note_id=ids("NT", ctx.ci, np.arange(allnotes.height), 8)
    )
    return allnotes
