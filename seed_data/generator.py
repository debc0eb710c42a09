"""Entry point: generate a synthetic PT practice's source exports (one CSV per contract) plus truth/.

Clinics are simulated independently from their own SeedSequence child and appended chunk by chunk, so
memory stays flat at any scale and the same seed always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from seed_data import care, dirt
from seed_data import marketing as M
from seed_data import params as P
from seed_data.billing import billing
from seed_data.intake import intake_events, sigmoid, simulate_referrals
from seed_data.practice import DAY, PayerTable, build_clinic, day_index, payer_table, payers_frame
from seed_data.reference import Calendar, Pools, ids, make_pools
from seed_data.writer import SOURCES, Writer, file_name, to_text

Progress = Callable[[str, float, float], None] | None


class ChannelTruth:
    """Accumulates each channel's true conversion rate, path removal effect and incremental new patients."""

    def __init__(self) -> None:
        k = len(P.CHANNELS)
        self.n = np.zeros(k)
        self.p_sum = np.zeros(k)
        self.removal = np.zeros(k)
        self.total = 0.0
        self.incremental = np.zeros(k)  # expected scheduled referrals per channel, all clinics

    def add(self, on_path: np.ndarray, base_logit: np.ndarray) -> None:
        touched = on_path.any(axis=1)
        op, b = on_path[touched], base_logit[touched]
        logit = b + op @ M.CH_LOGIT
        p = sigmoid(logit)
        self.total += p.sum()
        for c in range(len(P.CHANNELS)):  # six channels
            has = op[:, c]
            self.n[c] += has.sum()
            self.p_sum[c] += p[has].sum()
            self.removal[c] += (p[has] - sigmoid(logit[has] - M.CH_LOGIT[c])).sum()

    def add_incremental(
        self, on_path: np.ndarray, base_logit: np.ndarray, channel: np.ndarray, source: np.ndarray, displaced: float
    ) -> None:
        """Expected scheduled referrals lost had each channel been switched off (what an MMM estimates): its
        own leads' scheduling probability, plus its logit on other journeys, minus (social) the direct-access
        referrals its leads intercepted, valued at the clinic's direct-access scheduling rate."""
        logit = base_logit + on_path @ M.CH_LOGIT
        p = sigmoid(logit)
        own = np.bincount(channel[channel >= 0], weights=p[channel >= 0], minlength=len(P.CHANNELS))
        removal = p[:, None] - sigmoid(logit[:, None] - M.CH_LOGIT[None, :])
        other = on_path & (channel[:, None] != np.arange(len(P.CHANNELS))[None, :])
        direct = source == 1
        p_direct = float(p[direct].mean()) if direct.any() else 0.0
        self.incremental += own + (removal * other).sum(axis=0)
        self.incremental[M.SOCIAL] -= displaced * p_direct

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            dict(
                channel=list(P.CHANNELS),
                true_conversion_rate=np.round(self.p_sum / np.maximum(self.n, 1), 4),
                true_effect=np.round(self.removal / max(self.total, 1e-9), 4),
                true_incremental=np.round(self.incremental, 2),
                true_incremental_share=np.round(self.incremental / max(self.incremental.sum(), 1e-9), 4),
            )
        )


def simulate_clinic(
    ci: int,
    rng: np.random.Generator,
    pools: Pools,
    cal: Calendar,
    start: int,
    as_of: int,
    payers: PayerTable,
    truth: ChannelTruth,
) -> dict[str, pl.DataFrame]:
    """All source frames (typed) of one clinic, plus its appointment truth under key 'truth'."""
    ctx = build_clinic(ci, rng, pools, cal, start, as_of)
    months = M.month_starts(ctx)
    mk = M.plan(ctx, months)
    R = simulate_referrals(ctx, pools, payers, months, mk)
    Ep = care.simulate(ctx, R, payers)
    ref_ids = ids("RF", ci, np.arange(R.n), 6).to_numpy()
    pat_ids = R.patients["patient_id"].to_numpy()
    S = care.scheduling(ctx, R, Ep, ref_ids, pat_ids)
    notes = care.documentation(ctx, R, Ep, S)
    bill = billing(ctx, R, Ep, S.visits, payers, notes)
    tc = R.touches.sort(["touched_at", "ref", "seq"])
    touches = tc.with_columns(
        touch_id=ids("TC", ci, np.arange(tc.height), 7), referral_id=pl.Series(ref_ids[tc["ref"].to_numpy()])
    )
    truth.add(R.on_path, R.base_logit)
    truth.add_incremental(R.on_path, R.base_logit, R.channel, R.source, R.displaced)
    return dict(
        clinics=ctx.clinic,
        therapists=ctx.therapists,
        referring_physicians=ctx.physicians,
        patients=R.patients,
        intake_events=intake_events(ctx, R, payers, Ep.eval_lost, Ep.eval_lost_at),
        marketing_touches=touches,
        marketing_spend=M.spend_frame(ctx, months, mk.spend),
        scheduling_events=S.events,
        documentation_events=notes,
        truth=S.truth,
        **bill,
    )


def generate(
    out: Path,
    scale: str = "small",
    seed: int = 42,
    dirty: float = 0.005,
    as_of: date | None = None,
    progress: Progress = None,
    compress: bool = False,
) -> dict:
    """Write the practice to `out` and return {"rows": {file: n}, "as_of", "seconds", "dirt", ...}. `compress`:
    each export as `<source>.csv.gz` (the truth files stay plain CSV)."""
    t0 = time.perf_counter()
    out = Path(out)
    sc = P.SCALES[scale]
    as_of = as_of or P.DEFAULT_AS_OF
    try:
        first = date(as_of.year - sc.years, as_of.month, as_of.day) + timedelta(days=1)
    except ValueError:  # 29 February
        first = date(as_of.year - sc.years, 3, 1)
    cal = Calendar(first - timedelta(days=120), as_of + timedelta(days=200))
    start, end = day_index(first), day_index(as_of)
    pools = make_pools(seed)
    payers = payer_table()
    clean_root, dirt_root = np.random.SeedSequence(seed).spawn(2)
    clinic_seeds = clean_root.spawn(sc.clinics)
    chunks = [list(range(i, min(i + sc.chunk, sc.clinics))) for i in range(0, sc.clinics, sc.chunk)]
    dirt_seeds = dirt_root.spawn(len(chunks) + 1)
    last_second = datetime.combine(as_of, datetime.min.time()) + timedelta(days=1, seconds=-1)
    writer = Writer(out, compress)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    truth_fh = open(out / "truth" / "appointment_truth.csv", "wb")
    claim_fh = open(out / "truth" / "claim_truth.csv", "wb")
    truth_rows = claim_rows = 0
    dirt_counts: dict[str, Counter] = defaultdict(Counter)
    channel_truth = ChannelTruth()

    def emit(source: str, typed: pl.DataFrame, drng: np.random.Generator) -> None:
        text = to_text(source, typed)
        text, counts = dirt.inject(source, text, dirty, drng, latest=last_second)
        dirt_counts[source].update(counts)
        writer.write(source, text)

    try:
        emit("payers", payers_frame((start - 30) * DAY + 9 * 3600), np.random.default_rng(dirt_seeds[-1]))
        for k, chunk in enumerate(chunks):
            frames: dict[str, list[pl.DataFrame]] = defaultdict(list)
            for ci in chunk:
                res = simulate_clinic(
                    ci, np.random.default_rng(clinic_seeds[ci]), pools, cal, start, end, payers, channel_truth
                )
                for key, df in res.items():
                    frames[key].append(df)
                if progress:
                    progress("clinics", ci + 1, sc.clinics)
            drng = np.random.default_rng(dirt_seeds[k])
            for source in SOURCES:
                if source in frames:
                    emit(source, pl.concat(frames[source], how="diagonal_relaxed"), drng)
            tr = pl.concat(frames["truth"])
            tr.write_csv(truth_fh, include_header=truth_rows == 0 and k == 0, line_terminator="\n", float_precision=4)
            truth_rows += tr.height
            ct = pl.concat(frames["claim_truth"])
            ct.write_csv(claim_fh, include_header=k == 0, line_terminator="\n", float_precision=4)
            claim_rows += ct.height
    finally:
        writer.close()
        truth_fh.close()
        claim_fh.close()
    channel_truth.frame().write_csv(out / "truth" / "channel_effects.csv", line_terminator="\n", float_precision=4)
    rows = {file_name(s, compress): writer.rows.get(s, 0) for s in SOURCES}
    rows["truth/appointment_truth.csv"] = truth_rows
    rows["truth/claim_truth.csv"] = claim_rows
    rows["truth/channel_effects.csv"] = len(P.CHANNELS)
    manifest = dict(
        scale=scale,
        seed=seed,
        generator=generator_fingerprint(),
        as_of=as_of.isoformat(),
        history_start=first.isoformat(),
        dirty=dirty,
        clinics=sc.clinics,
        rows=rows,
        dirt={s: dict(sorted(c.items())) for s, c in sorted(dirt_counts.items()) if c},
    )
    (out / "truth" / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    seconds = round(time.perf_counter() - t0, 2)
    return dict(rows=rows, as_of=as_of.isoformat(), seconds=seconds, dirt=manifest["dirt"], out=str(out))


def generator_fingerprint() -> str:
    """A hash of the simulation's own source, written to truth/manifest.json.

    Benchmarks reuse a cached practice only when seed AND fingerprint match: the same seed under a changed
    generator is different data, and its truth files may lack columns the current models are scored on.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
