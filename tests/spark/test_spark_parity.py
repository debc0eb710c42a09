"""The same dbt project on Apache Spark (issue 15, "Past one box"): the small practice's raw tables go to Parquet,
dbt-spark's session connection builds every model on a local[2] SparkSession, and each mart must equal the DuckDB
build's: row counts exact, money to the cent, other floats within 1e-6 (relative), text and dates exact.

Optional: needs the `spark` extra (pyspark, dbt-spark[session]) and Java 17+ (`make test-spark` installs the extra).
Skipped with the reason when either is missing. Marked `spark` (and `slow`: a Spark build takes minutes).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ptpulse.core.config import DBT_PROJECT_DIR

pytestmark = [pytest.mark.spark, pytest.mark.slow]

# Marts that may differ on Spark, with the reason (empty = every mart must match).
KNOWN_DIFFERENT: dict[str, str] = {}
# build_info carries the build id and the build's wall-clock time: different by construction.
NOT_COMPARED = {"build_info"}
# Nodes not run on Spark, with the reason. funnel_stages_stay_in_order (a dbt unit test) trips a Spark 4.x
# executor bug in local mode (ClassCastException deserialising UnionExec.children) on the fixture's union;
# the model it tests is built and compared like every other mart.
SPARK_EXCLUDED = {"funnel_stages_stay_in_order": "Spark local-mode UnionExec deserialisation bug"}


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def _skip_reason() -> str | None:
    try:
        import dbt.adapters.spark  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        return "needs the `spark` extra (pyspark, dbt-spark[session]): run `make test-spark`"
    if _java() is None:
        return "needs Java 17+ on PATH or JAVA_HOME (Debian: apt-get install -y openjdk-17-jre-headless)"
    return None


# ----------------------------------------------------------------------------------------------- the Spark side


def export_parquet(raw_db: Path, analytics_db: Path, out: Path) -> dict[str, dict[str, Path]]:
    """Every table of raw.duckdb's `raw` schema, and the app state the build copied into the build file
    (`app_state` schema), as one Parquet directory each: what a cluster would read from object storage."""
    found: dict[str, dict[str, Path]] = {"raw": {}, "app_state": {}}
    for db, schema in ((raw_db, "raw"), (analytics_db, "app_state")):
        con = duckdb.connect(str(db), read_only=True)
        try:
            catalog = con.execute("select current_database()").fetchone()[0]
            tables = con.execute(
                "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
                [schema],
            ).fetchall()
            for (name,) in tables:
                target = out / schema / name
                target.mkdir(parents=True, exist_ok=True)
                quoted = '"' + name.replace('"', '""') + '"'
                con.execute(f"copy \"{catalog}\".{schema}.{quoted} to '{target / 'part-0.parquet'}' (format parquet)")
                found[schema][name] = target
        finally:
            con.close()
    return found


def start_spark(work: Path, key_file: Path):
    """A local[2] SparkSession that dbt-spark's `method: session` picks up (it calls getOrCreate()): timestamps
    without time zone like DuckDB's, an in-memory catalog and the warehouse under `work`, and the pseudonym UDF
    with the installation secret (the same HMAC as the DuckDB plugin, ptpulse/build/dbt_plugin.py)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf

    from ptpulse.core.secrets import load_key, pseudonyms

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("ptpulse-parity")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={work}")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    key = load_key(str(key_file))

    @pandas_udf("string")
    def ptpulse_pseudonym(values: pd.Series) -> pd.Series:
        return pseudonyms(key, pa.array(values, type=pa.string(), from_pandas=True)).to_pandas()

    spark.udf.register("ptpulse_pseudonym", ptpulse_pseudonym)
    return spark


def register_tables(spark, parquet: dict[str, dict[str, Path]]) -> None:
    """Each Parquet directory as an external table of its schema (`raw.<table>`, `app_state.<table>`)."""
    for schema, tables in parquet.items():
        spark.sql(f"create database if not exists `{schema}`")
        for name, path in tables.items():
            spark.sql(f"create table if not exists `{schema}`.`{name}` using parquet location '{path}'")


def run_dbt_spark(work: Path, args: list[str]) -> tuple[bool, list[str]]:
    """dbt in-process on the `spark` target of the project's profiles.yml; returns ok and the failed nodes."""
    from dbt.cli.main import dbtRunner

    env = {"PTPULSE_SPARK_SCHEMA": "analytics", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    os.environ.update(env)
    res = dbtRunner().invoke(
        args
        + [
            "--target",
            "spark",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
            "--quiet",
        ]
    )
    failed = []
    for r in getattr(res.result, "results", None) or []:
        status = str(getattr(r.status, "value", r.status))
        if status not in ("success", "pass", "warn", "no-op"):
            failed.append(f"{r.node.resource_type} {r.node.name}: {status}: {(r.message or '').splitlines()[:1]}")
    if not (getattr(res.result, "results", None) or []) and res.exception is not None:
        failed.append(f"dbt: {res.exception}")
    return bool(res.success) and not failed, failed


# ----------------------------------------------------------------------------------------------- the comparison


def _normalise(a: pl.DataFrame, b: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Both frames in comparable types: Spark's date_trunc gives a timestamp where DuckDB's gives a date (-> date),
    decimals to the cent, floats as floats, nested values as their JSON text. Returns the float columns."""
    floats: list[str] = []
    ca, cb = [], []
    for col in a.columns:
        ta, tb = a.schema[col], b.schema[col]
        ea, eb = pl.col(col), pl.col(col)
        if {type(ta), type(tb)} == {pl.Date, pl.Datetime}:
            ea, eb = ea.cast(pl.Date), eb.cast(pl.Date)
        elif ta.is_decimal() or tb.is_decimal():
            ea, eb = ea.cast(pl.Float64).round(2), eb.cast(pl.Float64).round(2)
        elif ta.is_float() or tb.is_float():
            ea, eb = ea.cast(pl.Float64), eb.cast(pl.Float64)
            floats.append(col)
        elif ta.is_numeric() and tb.is_numeric():
            ea, eb = ea.cast(pl.Int64), eb.cast(pl.Int64)
        elif ta.is_nested() or tb.is_nested() or isinstance(ta, pl.Struct) or isinstance(tb, pl.Struct):
            ea = ea.map_elements(lambda v: json.dumps(v, default=str, sort_keys=True), return_dtype=pl.String)
            eb = eb.map_elements(lambda v: json.dumps(v, default=str, sort_keys=True), return_dtype=pl.String)
        if ta.is_temporal() or tb.is_temporal():
            ea, eb = ea.cast(pl.String), eb.cast(pl.String)
        ca.append(ea.alias(col))
        cb.append(eb.alias(col))
    return a.select(ca), b.select(cb), floats


def compare_frames(name: str, duck: pl.DataFrame, spark: pl.DataFrame) -> list[str]:
    """Problems found comparing one mart (empty = equal); messages name the mart and column, never a value."""
    problems: list[str] = []
    if sorted(duck.columns) != sorted(spark.columns):
        only_d = sorted(set(duck.columns) - set(spark.columns))
        only_s = sorted(set(spark.columns) - set(duck.columns))
        return [f"{name}: columns differ (only DuckDB: {only_d}; only Spark: {only_s})"]
    spark = spark.select(duck.columns)
    if duck.height != spark.height:
        return [f"{name}: {duck.height} rows on DuckDB, {spark.height} on Spark"]
    d, s, floats = _normalise(duck, spark)
    # sort on the exact columns first (a mart's key is among them), floats last: a float's last bits never
    # reorder rows whose other columns differ
    keys = [c for c in d.columns if c not in floats] + floats
    d = d.sort(keys, nulls_last=True)
    s = s.sort(keys, nulls_last=True)
    for col in d.columns:
        x, y = d[col], s[col]
        if col in floats:
            both_null = x.is_null() & y.is_null()
            close = ((x - y).abs() <= x.abs().clip(lower_bound=1.0) * 1e-6).fill_null(False)
            nan_both = x.is_nan().fill_null(False) & y.is_nan().fill_null(False)
            bad = int((~(both_null | close | nan_both)).sum())
        else:
            bad = int((~x.eq_missing(y)).sum())
        if bad:
            problems.append(f"{name}.{col}: {bad} of {d.height} rows differ")
    return problems


def compare_marts(analytics_db: Path, spark) -> tuple[list[str], list[str]]:
    """Every table of the DuckDB build's `marts` schema against Spark's `marts.<table>`: (compared, problems)."""
    con = duckdb.connect(str(analytics_db), read_only=True)
    try:
        marts = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts' order by 1"
            ).fetchall()
        ]
        compared, problems = [], []
        spark_tables = {r.tableName for r in spark.sql("show tables in marts").collect()}
        for name in marts:
            if name in NOT_COMPARED or name in KNOWN_DIFFERENT:
                continue
            if name not in spark_tables:
                problems.append(f"{name}: not built on Spark")
                continue
            duck = pl.from_arrow(con.sql(f'select * from marts."{name}"').to_arrow_table())
            sp = pl.from_arrow(spark.table(f"marts.`{name}`").toArrow())
            problems += compare_frames(name, duck, sp)
            compared.append(name)
        return compared, problems
    finally:
        con.close()


# ----------------------------------------------------------------------------------------------- the test


_REASON = _skip_reason()
if _REASON:  # before any fixture: the DuckDB build is not made for nothing
    pytest.skip(_REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def spark_built(built_home, tmp_path_factory):
    work = tmp_path_factory.mktemp("spark")
    parquet = export_parquet(built_home.raw_db, built_home.analytics_db, work / "parquet")
    from ptpulse.core.secrets import ensure_key

    spark = start_spark(work, ensure_key(built_home))
    register_tables(spark, parquet)
    excluded = [arg for name in SPARK_EXCLUDED for arg in ("--exclude", name)]
    ok, failed = run_dbt_spark(work, ["build", "--full-refresh", *excluded])
    yield spark, ok, failed
    spark.stop()


def test_dbt_build_passes_on_spark(spark_built):
    """Every model, seed and data test of the project runs on Spark."""
    _, ok, failed = spark_built
    assert ok, "dbt build on Spark failed: " + "; ".join(failed[:20])


def test_every_mart_equals_the_duckdb_build(spark_built, built_home):
    """Same rows, same money to the cent, same floats within 1e-6: the marts do not depend on the engine."""
    spark, _, _ = spark_built
    compared, problems = compare_marts(built_home.analytics_db, spark)
    assert compared, "no mart was compared"
    assert not problems, "Spark marts differ from DuckDB's:\n" + "\n".join(problems)
