"""Round-trip fixtures (shared by the WebPT, X12 and FHIR Bulk tests): one clean generated practice, built
natively and from each format, alone or with the native CSVs, with the real loader and the real dbt build.

The practice is the small scale at dirty=0: a format must reproduce the figures the native CSVs give, so
the native side carries no defects a format would legitimately drop. Homes are built once per session
(treat them as read-only) and compared mart by mart with `mismatches`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ptpulse.core.config import Settings, get_settings
from tests.built import open_built
from tests.conftest import shared_dir

_HOMES: dict[str, Settings] = {}


@pytest.fixture(scope="session")
def rt_native_csv(clean_small_practice) -> Path:
    """The native exports of the round-trip practice (small, seed 42, no dirt: the root conftest's
    clean_small_practice, which the generator tests read too)."""
    return clean_small_practice


@pytest.fixture(scope="session")
def rt_build(tmp_path_factory) -> Callable[[str, list[Path]], Settings]:
    """build(name, paths): a home with those exports ingested and built (dbt only), once per name and test run
    (shared_dir: one pytest-xdist worker builds it, the others reuse it)."""
    from ingestion.loader import ingest
    from ptpulse.build.orchestrate import build

    def _make(name: str, paths: list[Path]) -> Callable[[Path], None]:
        def make(home: Path) -> None:
            settings = get_settings(home).ensure()
            results = ingest(paths, settings)
            assert not [r for r in results if r.status in ("refused", "failed")], f"{name}: a file was refused"
            result = build(settings)
            assert result.ok, f"{name}: {result.message}"

        return make

    def _build(name: str, paths: list[Path]) -> Settings:
        if name not in _HOMES:
            _HOMES[name] = get_settings(shared_dir(tmp_path_factory, f"rt_home_{name}", _make(name, paths))).ensure()
        return _HOMES[name]

    return _build


@pytest.fixture(scope="session")
def rt_native(rt_build, rt_native_csv) -> Settings:
    return rt_build("native", [rt_native_csv])


def mart(settings: Settings, sql: str) -> pl.DataFrame:
    """A query over the served analytics file of a home (read-only)."""
    con = open_built(settings)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def raw(settings: Settings, sql: str) -> pl.DataFrame:
    con = duckdb.connect(str(settings.raw_db), read_only=True)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()


def mismatches(expected: pl.DataFrame, actual: pl.DataFrame, key: list[str]) -> dict[str, int]:
    """Rows missing / extra by key, and per column the number of keyed rows whose values differ (null = null).

    Counts only, never values (the practice's rows are PHI-shaped); {} when the frames agree exactly.
    Select money as integer cents (`cents()` in SQL) so that equality is to the cent."""
    cols = [c for c in expected.columns if c not in key]
    assert sorted(expected.columns) == sorted(actual.columns), "compare the same columns on both sides"
    e = expected.with_columns(pl.lit(True).alias("_e"))
    a = actual.rename({c: f"{c}__a" for c in cols}).with_columns(pl.lit(True).alias("_a"))
    j = e.join(a, on=key, how="full", coalesce=True, nulls_equal=True)
    out = {"_missing": j["_a"].is_null().sum(), "_extra": j["_e"].is_null().sum()}
    both = j.filter(pl.col("_e") & pl.col("_a"))
    for c in cols:
        out[c] = both.filter(~pl.col(c).eq_missing(pl.col(f"{c}__a"))).height
    return {k: v for k, v in out.items() if v}


CENTS = "cast(round({x} * 100) as bigint)"


def cents(x: str) -> str:
    """SQL: a money column as integer cents (exact comparison)."""
    return CENTS.format(x=x) + f" as {x.split('.')[-1]}"
