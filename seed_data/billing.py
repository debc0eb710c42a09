"""Billing: charge lines (8-minute rule, GP/CQ/KX modifiers), one claim per visit, remittances (835-like:
payments, CO-45 contractual adjustments, PR-1/2/3 patient responsibility, denials with CARC codes,
appeals, write-offs), patient payments and prior authorizations.

Per claim the balance identity holds by construction: billed = payer_payment + contractual_adjustment +
patient_responsibility + write_off + open insurance balance, with every term >= 0 (an adjudication's
events are emitted together or not at all).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from seed_data import params as P
from seed_data.care import Episodes
from seed_data.intake import Referrals
from seed_data.practice import DAY, ClinicCtx, PayerTable
from seed_data.reference import ids, opt

TIMED = np.array(P.TIMED_CODES)
PAYER_FACTOR_SPREAD = 0.05

# --- denials: a logit over causes a biller can see before the claim goes out -------------------------------
# Each term is a real, fixable reason payers deny outpatient therapy claims. The intercept per payer class is
# set so the practice-level denial rate stays in its published band (5-10%, tests/seed_data).
DENY_CLASS_LOGIT = {
    "commercial": -3.5,
    "medicare": -3.9,
    "medicare_advantage": -3.1,
    "medicaid": -3.1,
    "workers_comp": -3.3,
    "auto_pi": -3.4,
}
DENY_PAYER_SPREAD = 0.35  # per-payer offset around its class (plans differ within a class)
DENY_AUTH_EXHAUSTED = 4.6  # visit beyond the authorized visits, no extension
DENY_AUTH_EXPIRED = 3.2  # service date after the authorization's end date
DENY_KX_MISSING = 3.0  # Medicare, year-to-date spend past the KX threshold, no KX modifier
DENY_NOTE_UNSIGNED = 2.6  # the visit's note not signed when the claim was submitted
DENY_PROGRESS_OVERDUE = 2.2  # Medicare / MA: past visit 10 and the progress note not signed yet
DENY_UNITS_PER_CODE = 2.0  # non-CMS payer: more units than each code's own minutes support
DENY_HIGH_UNITS = 0.7  # 5+ timed units on one visit: medical-necessity review
DENY_NCCI_NO_59 = 2.2  # 97140 with 97530 on one visit without modifier 59
DENY_INITIAL_ENCOUNTER = 1.6  # injury code with 7th character A (initial encounter) on therapy
P_KX_APPLIED = 0.8  # the biller adds KX on this share of claims past the threshold
P_MOD_59 = 0.55  # share of 97140 + 97530 visits that carry modifier 59 on 97140
# the CARC a payer gives for each cause (the first active cause in this order wins)
DENY_CARC = (
    ("auth_exhausted", "198"),
    ("auth_expired", "197"),
    ("kx_missing", "119"),
    ("ncci_no_59", "236"),
    ("units_per_code", "151"),
    ("note_unsigned", "16"),
    ("progress_overdue", "50"),
    ("initial_encounter", "16"),
    ("high_units", "50"),
)


def units_8min(minutes: np.ndarray) -> np.ndarray:
    """Medicare 8-minute rule on total timed minutes: 8-22 -> 1, 23-37 -> 2, 38-52 -> 3, ..."""
    return np.where(minutes >= 8, (minutes + 7) // 15, 0)


def allocate_units(mins: np.ndarray) -> np.ndarray:
    """Distribute the visit's total units over its timed codes (rows x codes): full 15-minute blocks first,
    then the remaining units to the codes with the most leftover minutes (CMS method)."""
    total = units_8min(mins.sum(axis=1))
    base = mins // 15
    rem = np.where(mins > 0, mins % 15, -1)
    extra = total - base.sum(axis=1)
    order = np.argsort(-rem, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(mins.shape[1])[None, :].repeat(len(mins), 0), axis=1)
    return base + ((rank < extra[:, None]) & (mins > 0))


def visit_lines(ctx: ClinicCtx, vt: np.ndarray, is_medicare: np.ndarray) -> pl.DataFrame:
    """Charge lines for each visit (visit index, cpt, units, minutes)."""
    rng = ctx.rng
    n = len(vt)
    # timed minutes and how many timed codes share them
    total = np.select(
        [vt == 0, vt == 2],
        [np.where(rng.random(n) < 0.6, rng.integers(10, 32, n), 0), np.clip(rng.normal(25, 6, n), 8, 40)],
        np.clip(rng.normal(P.TIMED_MINUTES_MEAN, P.TIMED_MINUTES_SD, n), 12, 75),
    ).astype(np.int64)
    k = np.where(vt == 1, rng.choice([1, 2, 3], size=n, p=[0.2, 0.45, 0.35]), 1)
    share = rng.gamma(2.0, size=(n, 3)) * (np.arange(3)[None, :] < k[:, None])
    share /= share.sum(axis=1, keepdims=True)
    mins = np.floor(share * total[:, None]).astype(np.int64)
    mins[np.arange(n), k - 1] += total - mins.sum(axis=1)
    # distinct timed codes by weight (Gumbel top-k)
    g = np.log(np.array(P.TIMED_CODES_P))[None, :] + rng.gumbel(size=(n, len(TIMED)))
    codes = TIMED[np.argsort(-g, axis=1)[:, :3]]
    units = allocate_units(mins)
    # a code left with 0 units is not billed; its minutes stay documented on the visit's main code
    orphan = np.where(units == 0, mins, 0).sum(axis=1)
    mins = np.where(units == 0, 0, mins)
    mins[np.arange(n), np.argmax(units, axis=1)] += orphan
    visit = np.repeat(np.arange(n), 3)
    timed = pl.DataFrame(
        dict(v=visit, cpt=codes.ravel(), units=units.ravel(), minutes=mins.ravel(), slot=np.tile([1, 2, 3], n))
    )
    timed = timed.filter(pl.col("units") > 0)
    ev_code = np.where(vt == 0, rng.choice(["97161", "97162", "97163"], size=n, p=[0.3, 0.55, 0.15]), "97164")
    ev = np.flatnonzero(vt != 1)
    untimed = [pl.DataFrame(dict(v=ev, cpt=ev_code[ev], units=1, slot=0))]
    for code, p, slot in (("97010", 0.15, 4), ("ESTIM", 0.10, 5), ("20560", 0.04, 6)):
        sel = np.flatnonzero((vt == 1) & (rng.random(n) < p))
        c = np.where(is_medicare[sel], "G0283", "97014") if code == "ESTIM" else np.full(len(sel), code)
        untimed.append(pl.DataFrame(dict(v=sel, cpt=c, units=1, slot=slot)))
    lines = pl.concat([timed, *untimed], how="diagonal_relaxed").sort(["v", "slot"])
    price = pl.DataFrame(dict(cpt=list(P.CPT_CHARGE), price=list(P.CPT_CHARGE.values())))
    return lines.join(price, on="cpt", how="left").with_columns(charge_usd=pl.col("units") * pl.col("price"))


def authorizations(
    ctx: ClinicCtx, v: pl.DataFrame, payer: np.ndarray, payers: PayerTable
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Prior auths for payers that need them (initial + usually an extension); returns them, the visits past
    the authorized count without an extension, and the visits dated outside every auth window."""
    rng = ctx.rng
    ep = v["ep"].to_numpy()
    vn = v["visit_number"].to_numpy()
    day = v["day"].to_numpy()
    needs = payers.auth[payer]
    limit = payers.limit[payer]
    first = (vn == 1) & needs
    n1 = int(first.sum())
    a1 = pl.DataFrame(
        dict(
            ep=ep[first],
            episode_id=v["episode_id"].filter(first),
            patient_id=v["patient_id"].filter(first),
            payer=payer[first],
            visits_authorized=limit[first],
            valid_from=day[first],
            valid_to=day[first] + rng.choice([60, 90], size=n1),
            received_at=(day[first] + rng.integers(0, 3, n1)) * DAY + rng.integers(9, 17, n1) * 3600,
        )
    )
    ext_ep = np.unique(ep[needs & (vn == limit)])
    extended = np.zeros(int(ep.max()) + 1 if len(ep) else 1, dtype=bool)
    got = rng.random(len(ext_ep)) < 0.88
    extended[ext_ep[got]] = True
    trig = needs & (vn == limit - 1) & extended[ep]
    n2 = int(trig.sum())
    a2 = pl.DataFrame(
        dict(
            ep=ep[trig],
            episode_id=v["episode_id"].filter(trig),
            patient_id=v["patient_id"].filter(trig),
            payer=payer[trig],
            visits_authorized=rng.choice([8, 12], size=n2),
            valid_from=day[trig] + 1,
            valid_to=day[trig] + 61,
            received_at=(day[trig] + 1) * DAY + rng.integers(9, 17, n2) * 3600,
        )
    )
    auths = (
        pl.concat([a1, a2], how="diagonal_relaxed")
        .filter(pl.col("received_at") < (ctx.as_of + 1) * DAY)
        .sort(["received_at", "ep"])
    )
    auths = auths.with_columns(
        auth_id=ids("AU", ctx.ci, np.arange(auths.height), 6),
        clinic_id=pl.lit(ctx.clinic_id),
        payer_id=pl.Series(payers.ids[auths["payer"].to_numpy()]),
    )
    uncovered = needs & (vn > limit) & ~extended[ep]
    # the service date against the windows: the first auth's, then the extension's (from its own start)
    size = len(extended)
    to1 = np.full(size, -1, dtype=np.int64)
    to1[ep[first]] = a1["valid_to"].to_numpy()
    from2 = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    to2 = np.full(size, -1, dtype=np.int64)
    from2[ep[trig]] = a2["valid_from"].to_numpy()
    to2[ep[trig]] = a2["valid_to"].to_numpy()
    in_window = (day <= to1[ep]) | ((day >= from2[ep]) & (day <= to2[ep]))
    expired = needs & ~in_window & (to1[ep] >= 0)
    return auths, uncovered, expired


def billing(
    ctx: ClinicCtx, R: Referrals, Ep: Episodes, visits: pl.DataFrame, payers: PayerTable, notes: pl.DataFrame
) -> dict[str, pl.DataFrame]:
    """Charges, claims, remittances and authorizations for the completed visits of one clinic, and each
    claim's true denial probability (`claim_truth`, from causes visible before submission)."""
    rng = ctx.rng
    end = (ctx.as_of + 1) * DAY
    v = visits.sort("start")
    n = v.height
    ref = v["ref"].to_numpy()
    payer = R.payer[ref]
    cls = payers.cls[payer]
    medicare = cls == "medicare"
    vt = v["vtype"].to_numpy()
    lines = visit_lines(ctx, vt, np.isin(cls, ["medicare", "medicare_advantage"]))
    lv = lines["v"].to_numpy()
    billed = np.bincount(lv, weights=lines["charge_usd"].to_numpy(), minlength=n).round(2)

    pct = np.array([P.PAYER_CLASS[c]["allowed"] for c in payers.cls]) * (
        1 + PAYER_FACTOR_SPREAD * np.sin(np.arange(len(payers.ids)) * 2.1)
    )
    allowed = (billed * pct[payer]).round(2)
    year = (np.datetime64(0, "D") + v["day"].to_numpy()).astype("datetime64[Y]").astype(int) + 1970
    cum = (
        pl.DataFrame(dict(p=R.patient[ref], y=year, a=allowed))
        .select(pl.col("a").cum_sum().over(["p", "y"]))["a"]
        .to_numpy()
    )
    thresh = np.array([P.KX_THRESHOLD.get(int(y), 2410.0) for y in range(1970, 2101)])[year - 1970]
    drng = np.random.default_rng(rng.integers(2**62))  # billing slips: their own stream
    kx_due = medicare & (cum > thresh)
    kx = kx_due & (drng.random(n) < P_KX_APPLIED)
    cq = np.isin(cls, ["medicare", "medicare_advantage"]) & (ctx.t_cred[v["ther"].to_numpy()] == "PTA")
    mods = np.where(cq, "GP|CQ", "GP")
    mods = np.where(kx, np.char.add(mods, "|KX"), mods)
    cpt = lines["cpt"].to_numpy()
    has = {c: np.bincount(lv, weights=(cpt == c).astype(float), minlength=n) > 0 for c in ("97140", "97530")}
    pair = has["97140"] & has["97530"]
    mod59 = pair & (drng.random(n) < P_MOD_59)
    line_mods = np.where(mod59[lv] & (cpt == "97140"), np.char.add(mods[lv], "|59"), mods[lv])

    claim_id = ids("CM", ctx.ci, np.arange(n), 7)
    posted = v["start"].to_numpy() + 3600 + rng.integers(0, 36 * 3600, n)
    charges = lines.with_columns(
        claim_id=claim_id[lv],
        appointment_id=v["appointment_id"][lv],
        episode_id=v["episode_id"][lv],
        patient_id=v["patient_id"][lv],
        clinic_id=pl.lit(ctx.clinic_id),
        therapist_id=v["therapist_id"][lv],
        service_date=v["day"][lv],
        modifiers=pl.Series(line_mods),
        posted_at=pl.Series(posted[lv]),
        minutes=pl.when(pl.col("cpt").is_in(list(P.TIMED_CODES))).then(pl.col("minutes")).otherwise(None),
    ).rename({"cpt": "cpt_code"})
    submitted = posted + rng.integers(1, 4, n) * DAY + rng.integers(0, 6 * 3600, n)
    # Charge lines are exported with their claim: a visit whose claim is not submitted by as_of has no lines
    # in the export yet (cutting lines at posted_at alone left lines pointing at claims that do not exist).
    charges = charges.filter(pl.Series(submitted[lv] < end))
    charges = charges.with_columns(charge_id=ids("CH", ctx.ci, np.arange(charges.height), 8))

    claims = pl.DataFrame(
        dict(
            claim_id=claim_id,
            episode_id=v["episode_id"],
            patient_id=v["patient_id"],
            clinic_id=ctx.clinic_id,
            payer_id=payers.ids[payer],
            service_date=v["day"],
            submitted_at=submitted,
            billed_usd=billed,
        )
    ).filter(pl.col("submitted_at") < end)

    auths, uncovered, expired = authorizations(ctx, v, payer, payers)
    timed = np.isin(cpt, TIMED)
    mins = lines["minutes"].fill_null(0).to_numpy()
    units = lines["units"].to_numpy()
    timed_units = np.bincount(lv, weights=np.where(timed, units, 0), minlength=n)
    per_code = np.bincount(lv, weights=np.where(timed, units_8min(mins), 0), minlength=n)
    causes = {
        "auth_exhausted": uncovered,
        "auth_expired": expired & ~uncovered,
        "kx_missing": kx_due & ~kx,
        "ncci_no_59": pair & ~mod59,
        "units_per_code": ~np.isin(cls, ["medicare", "medicare_advantage"]) & (timed_units > per_code),
        **documentation_gaps(v, notes, submitted, cls),
        "initial_encounter": np.char.endswith(R.icd[ref].astype(str), "A"),
        "high_units": timed_units >= 5,
    }
    p_deny = denial_probability(cls, payer, causes)
    remits = remittances(ctx, v, payer, cls, billed, allowed, submitted, p_deny, denial_carc(causes), payers)
    truth = pl.DataFrame(dict(claim_id=claim_id, p_denial=p_deny.round(4), billed_usd=billed)).filter(
        pl.Series(submitted < end)
    )
    return dict(charges=charges, claims=claims, remittances=remits, authorizations=auths, claim_truth=truth)


def documentation_gaps(v: pl.DataFrame, notes: pl.DataFrame, submitted: np.ndarray, cls: np.ndarray) -> dict:
    """Per visit: its note not signed by submission; for Medicare / MA past visit 10, the last required
    progress note (visit 10, 20, ...) not signed by submission either."""
    signed = notes.filter(pl.col("note_type") != "discharge_summary").select(
        "appointment_id", "episode_id", "visit_number", "note_type", signed=pl.col("signed_at").fill_null(-1)
    )
    own = v.select("appointment_id").join(signed, on="appointment_id", how="left")["signed"].fill_null(-1).to_numpy()
    vn = v["visit_number"].to_numpy()
    m = (vn // 10) * 10
    progress = (
        signed.filter(pl.col("note_type") == "progress_note")
        .group_by("episode_id", "visit_number")
        .agg(pl.col("signed").max())
    )
    last = (
        pl.DataFrame(dict(episode_id=v["episode_id"], visit_number=m))
        .join(progress, on=["episode_id", "visit_number"], how="left")["signed"]
        .fill_null(-1)
        .to_numpy()
    )
    mc = np.isin(cls, ["medicare", "medicare_advantage"])
    return {
        "note_unsigned": (own < 0) | (own > submitted),
        "progress_overdue": mc & (vn > 10) & (vn % 10 != 0) & ((last < 0) | (last > submitted)),
    }


def denial_probability(cls: np.ndarray, payer: np.ndarray, causes: dict[str, np.ndarray]) -> np.ndarray:
    """The true probability that the payer denies each claim: class intercept, plan offset, then the causes."""
    base = np.array([DENY_CLASS_LOGIT.get(c, -np.inf) for c in cls])
    offset = DENY_PAYER_SPREAD * np.sin(payer * 1.7 + 0.4)
    effect = {
        "auth_exhausted": DENY_AUTH_EXHAUSTED,
        "auth_expired": DENY_AUTH_EXPIRED,
        "kx_missing": DENY_KX_MISSING,
        "ncci_no_59": DENY_NCCI_NO_59,
        "units_per_code": DENY_UNITS_PER_CODE,
        "note_unsigned": DENY_NOTE_UNSIGNED,
        "progress_overdue": DENY_PROGRESS_OVERDUE,
        "initial_encounter": DENY_INITIAL_ENCOUNTER,
        "high_units": DENY_HIGH_UNITS,
    }
    logit = base + offset + sum(effect[k] * causes[k] for k in effect)
    return np.where(np.isfinite(base), 1 / (1 + np.exp(-logit)), 0.0)


def denial_carc(causes: dict[str, np.ndarray]) -> np.ndarray:
    """The CARC of the first active cause (DENY_CARC order); '' where no cause is active (drawn at random)."""
    out = np.full(len(next(iter(causes.values()))), "", dtype=object)
    for cause, code in reversed(DENY_CARC):
        out = np.where(causes[cause], code, out)
    return out.astype(str)


def patient_share(
    ctx: ClinicCtx, pat: np.ndarray, cls: np.ndarray, allowed: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Patient responsibility (amount, CARC 1 deductible / 2 coinsurance / 3 copay) by plan design."""
    rng = np.random.default_rng(ctx.rng.integers(2**62))  # per-patient plan traits
    n_p = int(pat.max()) + 1 if len(pat) else 1
    copay = rng.choice([20.0, 30.0, 40.0, 50.0], size=n_p)
    design = rng.choice(3, size=n_p, p=[0.6, 0.25, 0.15])  # copay, coinsurance, high deductible
    month = (np.datetime64(0, "D") + day).astype("datetime64[M]").astype(int) % 12
    d = design[pat]
    com = cls == "commercial"
    ded = com & (d == 2) & (month <= 2)
    coin = (com & ((d == 1) | ((d == 2) & (month > 2)))) | (cls == "medicare")
    cop = (com & (d == 0)) | (cls == "medicare_advantage")
    amt = np.select(
        [ded, coin, cop, cls == "self_pay"], [allowed, allowed * 0.2, np.minimum(copay[pat], allowed), allowed], 0.0
    ).round(2)
    carc = np.select([ded, coin, cop], ["1", "2", "3"], "")
    return amt, carc


def remittances(
    ctx: ClinicCtx,
    v: pl.DataFrame,
    payer: np.ndarray,
    cls: np.ndarray,
    billed: np.ndarray,
    allowed: np.ndarray,
    submitted: np.ndarray,
    p_deny: np.ndarray,
    cause_carc: np.ndarray,
    payers: PayerTable,
) -> pl.DataFrame:
    """Adjudication and money events per claim, cut at as_of (later ones are still open A/R)."""
    rng = ctx.rng
    n = len(billed)
    end = (ctx.as_of + 1) * DAY
    claim_id = ids("CM", ctx.ci, np.arange(n), 7)
    pat = v["patient_id"].to_numpy()
    pat_idx = np.unique(pat, return_inverse=True)[1]
    pr, pr_carc = patient_share(ctx, pat_idx, cls, allowed, v["day"].to_numpy())
    self_pay = cls == "self_pay"
    lag_mu = np.array([P.PAYER_CLASS[c]["lag"] for c in cls])
    lag_sd = np.array([P.PAYER_CLASS[c]["lag_sd"] for c in cls])
    decided = submitted + (np.maximum(rng.normal(lag_mu, lag_sd), 3) * DAY).astype(np.int64)
    decided = np.where(self_pay, v["start"].to_numpy() + 3600, decided)
    denied = ~self_pay & (rng.random(n) < p_deny)
    carc = np.where(cause_carc != "", cause_carc, rng.choice(P.DENIAL_CARC, size=n, p=P.DENIAL_CARC_P))
    recover = denied & (rng.random(n) < np.where(carc == "16", 0.7, P.P_APPEAL_RECOVERED))
    paid_at = np.where(denied, decided + rng.integers(30, 76, n) * DAY, decided)
    paid = ~denied | recover
    wo_at = decided + rng.integers(45, 101, n) * DAY
    payer_ids = payers.ids[payer]
    chk = np.char.add(np.char.add(payer_ids.astype(str), "-"), (paid_at // DAY).astype(str))
    idx = np.arange(n)
    frames = []

    def ev(
        mask: np.ndarray,
        etype: str,
        at: np.ndarray,
        amount: np.ndarray,
        group: str,
        carc_v: np.ndarray | str = "",
        check: np.ndarray | str = "",
        with_payer: bool = True,
    ) -> None:
        """Append one kind of remittance event for the claims in mask ("" = null)."""
        sel = np.flatnonzero(mask)
        carc_s = np.broadcast_to(np.asarray(carc_v, dtype=str), (n,))[sel]
        chk_s = np.broadcast_to(np.asarray(check, dtype=str), (n,))[sel]
        grp = np.full(len(sel), group)
        pay = payer_ids[sel] if with_payer else np.full(len(sel), "")
        frames.append(
            pl.DataFrame(
                dict(
                    c=idx[sel],
                    event_type=pl.Series(np.full(len(sel), etype)),
                    event_at=at[sel],
                    amount_usd=np.asarray(amount, dtype=float)[sel],
                    group_code=opt(grp != "", grp),
                    carc_code=opt(carc_s != "", carc_s),
                    check_number=opt(chk_s != "", chk_s),
                    payer_id=opt(pay != "", pay),
                )
            )
        )

    pay_amt = (allowed - pr).round(2)
    ev(denied, "denial", decided, billed, "CO", carc)
    ev(paid & ~self_pay & (pay_amt > 0), "payer_payment", paid_at, pay_amt, "", "", chk)
    ev(paid & (billed - allowed > 0), "contractual_adjustment", paid_at, (billed - allowed).round(2), "CO", "45")
    ev(paid & (pr > 0), "patient_responsibility", paid_at, pr, "PR", pr_carc)
    ev(denied & ~recover, "write_off", wo_at, billed, "CO", carc)
    u = rng.random(n)
    full = u < np.where(self_pay, 0.93, P.P_PATIENT_PAYS)
    part = ~full & (u < np.where(self_pay, 0.95, P.P_PATIENT_PAYS + P.P_PATIENT_PAYS_PARTIAL))
    pp_at = np.where(self_pay, paid_at, paid_at + rng.integers(5, 46, n) * DAY)
    pp_amt = np.where(full, pr, (pr * 0.5).round(2))
    ev(paid & (pr > 0) & (full | part), "patient_payment", pp_at, pp_amt, "", with_payer=False)
    # only claims in the export (submitted by as_of) have remittances: a self-pay visit is paid at the visit,
    # but its claim, and so its money events, appear once the claim is submitted
    r = pl.concat(frames, how="diagonal_relaxed")
    r = r.filter((r["event_at"] < end) & pl.Series(submitted[r["c"].to_numpy()] < end)).sort(
        ["event_at", "c", "event_type"]
    )
    return r.with_columns(claim_id=claim_id[r["c"].to_numpy()], remit_id=ids("RM", ctx.ci, np.arange(r.height), 8))
