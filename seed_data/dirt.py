"""Realistic defects, injected into the contract-formatted text AFTER clean generation, from their own
random stream, so `dirty=0` output is exactly the clean data and the clean data never depends on `dirty`.

Kinds (counted per source in truth/manifest.json so ingestion tests can check quarantine counts):
- duplicate: an exact copy of a row (appended)
- resent: same natural key, different content, later event time (appended; latest wins downstream)
- malformed_date: a date/timestamp cell like "2024-13-45" or "31/02/2024" (replaces the row)
- missing_id: a required id left empty (replaces the row)
- unknown_code: CPT 99999, an unknown channel, CARC 999 (replaces the row)
- negative_units: charges with units -1 (replaces the row)
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import numpy as np
import polars as pl

from seed_data.writer import _text, columns, contract

BAD_DATES = ("2024-13-45", "31/02/2024", "2025-02-30 25:61:00", "not a date")
UNKNOWN = {
    "charges": ("cpt_code", "99999"),
    "marketing_touches": ("channel", "tv_radio"),
    "marketing_spend": ("channel", "billboard"),
    "intake_events": ("channel", "tiktok"),
    "remittances": ("carc_code", "999"),
}
# column changed on a re-sent version (besides the later event time)
RESENT_CHANGE: dict[str, str | None] = {
    "clinics": "treatment_tables",
    "therapists": "day_end",
    "referring_physicians": "practice_name",
    "payers": "payer_name",
    "patients": "phone",
    "intake_events": "recorded_by",
    "marketing_touches": "campaign",
    "marketing_spend": "spend_usd",
    "scheduling_events": "recorded_by",
    "authorizations": "visits_authorized",
    "documentation_events": "signed_at",
    "charges": "modifiers",
    "claims": None,
    "remittances": "check_number",
}
# claims: a corrected claim keeps its amount (only submitted_at moves), so balance identities stay intact


def kinds_for(source: str) -> list[str]:
    k = ["duplicate", "resent", "malformed_date", "missing_id"]
    if source in UNKNOWN:
        k.append("unknown_code")
    if source == "charges":
        k.append("negative_units")
    return k


def _set(df: pl.DataFrame, rows: np.ndarray, col: str, value: pl.Series | str | None) -> pl.DataFrame:
    """Replace `col` at the given row positions (vectorised)."""
    if isinstance(value, pl.Series):
        full = pl.Series([None] * df.height, dtype=pl.String).scatter(rows, value)
    else:
        full = pl.Series([value] * df.height, dtype=pl.String)
    mask = np.zeros(df.height, dtype=bool)
    mask[rows] = True
    return df.with_columns(pl.when(pl.Series(mask)).then(full).otherwise(pl.col(col)).alias(col))


def _later(text: pl.Series, seconds: np.ndarray, latest: datetime | None = None) -> pl.Series:
    """`text` moved `seconds` later, but never past `latest` (the end of history: a re-sent version is
    recorded before the export is cut, so it may not be newer than as_of). A value already at `latest` stays
    there (a tie: downstream, the later line wins)."""
    ts = text.str.strptime(pl.Datetime, "%Y-%m-%d %H:%M:%S", strict=False)
    moved = ts + pl.Series(seconds * 1_000_000).cast(pl.Duration("us"))
    if latest is not None:
        moved = pl.select(
            pl.max_horizontal(moved.clip(upper_bound=latest), pl.min_horizontal(ts, pl.lit(latest)))
        ).to_series()
    return moved.dt.strftime("%Y-%m-%d %H:%M:%S")


def _changed(
    source: str, col: str, vals: pl.Series, rng: np.random.Generator, latest: datetime | None = None
) -> pl.Series:
    typ = columns(source)[col].type
    n = len(vals)
    if col == "signed_at":
        return _later(vals.fill_null("2026-01-01 12:00:00"), rng.integers(3600, 48 * 3600, n), latest)
    if typ == "decimal":
        x = vals.cast(pl.Float64, strict=False).fill_null(0) * rng.uniform(0.9, 1.1, n)
        return pl.select(_text(pl.lit(x), "decimal", pl.Float64)).to_series()
    if typ == "integer":
        return (vals.cast(pl.Int64, strict=False).fill_null(1) + pl.Series(rng.integers(1, 5, n))).cast(pl.String)
    if col == "modifiers":
        return vals.fill_null("GP") + "|59"
    if col == "day_end":
        return pl.Series(["18:30"] * n)
    if col == "phone":
        return pl.Series(
            np.char.add(
                np.char.add(rng.integers(200, 999, n).astype(str), "-555-"),
                np.char.zfill(rng.integers(0, 9999, n).astype(str), 4),
            )
        )
    return vals.fill_null("") + pl.Series(["_upd"] * n)


def inject(
    source: str, df: pl.DataFrame, rate: float, rng: np.random.Generator, latest: datetime | None = None
) -> tuple[pl.DataFrame, Counter]:
    """Return the text frame with defects added, and counts per kind. `latest` (the last second of history,
    as_of 23:59:59) caps every timestamp a re-sent version moves, so dirt never records the future."""
    counts: Counter = Counter()
    if rate <= 0 or df.height == 0:
        return df, counts
    spec = contract(source)
    cols = columns(source)
    n_bad = int(rng.binomial(df.height, rate))
    if n_bad == 0:
        return df, counts
    rows = np.sort(rng.choice(df.height, size=min(n_bad, df.height), replace=False))
    kinds = np.array(kinds_for(source))[rng.integers(0, len(kinds_for(source)), len(rows))]
    event_col = spec.event_time
    date_cols = [c for c, s in cols.items() if s.type in ("date", "timestamp") and s.required]
    id_cols = [c for c, s in cols.items() if s.required and s.type == "varchar" and c.endswith("_id")]
    if not id_cols:
        id_cols = [c for c in spec.natural_key if cols[c].type == "varchar"]
    extra = []
    for kind in ("duplicate", "resent"):
        r = rows[kinds == kind]
        if len(r) == 0:
            continue
        part = df[r]
        if kind == "resent":
            if cols[event_col].type == "timestamp":
                later = _later(part[event_col], rng.integers(3600, 72 * 3600, len(r)), latest)
                part = part.with_columns(later.alias(event_col))
            ch = RESENT_CHANGE[source]
            if ch is not None:
                part = part.with_columns(_changed(source, ch, part[ch], rng, latest).alias(ch))
        extra.append(part)
        counts[kind] += len(r)
    r = rows[kinds == "malformed_date"]
    if len(r):
        col = date_cols[int(rng.integers(0, len(date_cols)))]
        df = _set(df, r, col, pl.Series(np.array(BAD_DATES)[rng.integers(0, len(BAD_DATES), len(r))]))
        counts["malformed_date"] += len(r)
    r = rows[kinds == "missing_id"]
    if len(r):
        df = _set(df, r, id_cols[int(rng.integers(0, len(id_cols)))], None)
        counts["missing_id"] += len(r)
    r = rows[kinds == "unknown_code"]
    if len(r):
        col, val = UNKNOWN[source]
        df = _set(df, r, col, val)
        counts["unknown_code"] += len(r)
    r = rows[kinds == "negative_units"]
    if len(r):
        df = _set(df, r, "units", "-1")
        counts["negative_units"] += len(r)
    if extra:
        df = pl.concat([df, *extra])
    return df, counts
