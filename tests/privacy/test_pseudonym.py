"""patient_key is a keyed pseudonym (issue 9): HMAC-SHA256 with a per-installation secret kept outside the
analytics files and the source tree. It cannot be recomputed from what a reader or the repository holds; task
ids carry it instead of patient ids; rotation re-keys app actions; the twin's verification scans values."""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # app.lib (work-queue actions) is imported from the repo root
    sys.path.insert(0, str(ROOT))

from app.lib import actions  # noqa: E402
from ingestion.loader import ingest  # noqa: E402
from ptpulse.build.orchestrate import build  # noqa: E402
from ptpulse.core.config import get_settings  # noqa: E402
from ptpulse.core.deid import verify_deidentified  # noqa: E402
from ptpulse.core.secrets import key_path, load_key, pseudonym_one, rotate_key  # noqa: E402
from tests.built import open_built  # noqa: E402

TINY = ROOT / "tests" / "dbt" / "tiny_practice"
# The tiny practice built with a KX threshold of $1, so the per-patient Medicare KX rule (the one task id
# that named a patient) has tasks.
KX_VARS = {"kx_threshold_usd": 1}
SOURCE_DIRS = ("dbt_project", "ptpulse", "app", "ingestion", "ml", "seed_data", "docs")


@pytest.fixture(scope="module")
def kx_home(tmp_path_factory):
    """Read-only: copy the home (copytree) to change it."""
    settings = get_settings(tmp_path_factory.mktemp("privacy") / "home").ensure()
    ingest([TINY], settings)
    result = build(settings, dbt_vars=KX_VARS)
    assert result.ok, result.message
    return settings


def _patients(home) -> list[tuple[str, str]]:
    with open_built(home.analytics_db) as con:
        return con.execute("select patient_id, patient_key from marts.dim_patients order by 1").fetchall()


def _kx_tasks(home) -> list[tuple[str, str, str]]:
    with open_built(home.analytics_db) as con:
        return con.execute(
            "select task_id, patient_id, patient_key from marts.work_queue_candidates "
            "where rule = 'medicare_kx_threshold' order by 1"
        ).fetchall()


def test_key_is_private_and_patient_key_is_its_hmac(kx_home):
    path = key_path(kx_home)
    assert path.parent == kx_home.home / "secrets" and not path.is_relative_to(ROOT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = load_key(path)
    rows = _patients(kx_home)
    assert len(rows) >= 10
    assert all(k == pseudonym_one(key, pid) and re.fullmatch("[0-9a-f]{16}", k) for pid, k in rows)
    assert len({k for _, k in rows}) == len(rows)


def _source_literals() -> set[str]:
    """Every short string literal in the repository's code, SQL, YAML and docs: candidate salts/prefixes."""
    found = {""}
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sql", ".yml", ".yaml", ".md", ".csv") and path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                found |= set(re.findall(r"'([^'\n]{1,40})'", text)) | set(re.findall(r'"([^"\n]{1,40})"', text))
    return found


def test_pseudonym_cannot_be_recomputed_from_the_source(kx_home):
    """No unkeyed hash of the id, with any literal of the repository as prefix or suffix, gives the key."""
    rows = _patients(kx_home)
    keys = {k for _, k in rows}
    literals = _source_literals()
    assert "ptpulse:" in literals and len(literals) > 1000  # the old salt is among the candidates
    for salt in literals:
        for pid, _ in rows[:4]:
            for msg in (salt + pid, pid + salt):
                for algo in (hashlib.md5, hashlib.sha1, hashlib.sha256):
                    digest = algo(msg.encode()).hexdigest()
                    assert digest[:16] not in keys and digest[-16:] not in keys, (salt, algo.__name__)


def test_secret_is_in_no_file_but_its_own(kx_home):
    """Not in the analytics files, dbt's target/ and logs, the build folders, nor the source tree."""
    key = load_key(key_path(kx_home))
    needles = (key.hex().encode(), key.hex().upper().encode(), key)
    scanned = 0
    for base in (kx_home.home, ROOT / "dbt_project"):
        for path in base.rglob("*"):
            if not path.is_file() or path.is_symlink() or path.parent == key_path(kx_home).parent:
                continue
            data = path.read_bytes()
            scanned += 1
            assert not any(n in data for n in needles), path
    assert scanned > 20
    assert (kx_home.build_dir / "dbt" / "target" / "manifest.json").exists()  # dbt's artifacts were scanned


def test_task_ids_carry_the_pseudonym_not_the_patient_id(kx_home):
    kx = _kx_tasks(kx_home)
    assert kx, "no KX task: the fixture's threshold did not produce the per-patient rule"
    for task_id, _pid, pkey in kx:
        rule, entity, year = task_id.split(":")
        assert (rule, entity) == ("medicare_kx_threshold", pkey) and year.isdigit()
    pids = {pid for pid, _ in _patients(kx_home)}
    with duckdb.connect(str(kx_home.analytics_deid_db), read_only=True) as con:
        task_ids = [r[0] for r in con.execute("select task_id from marts.work_queue_candidates").fetchall()]
    assert task_ids
    for task_id in task_ids:
        assert not set(re.split(r"[^A-Za-z0-9]+", task_id)) & pids


def test_rotation_changes_every_key_and_keeps_actions_matching(kx_home, tmp_path):
    home = get_settings(tmp_path / "home")
    shutil.copytree(kx_home.home, home.home, ignore=shutil.ignore_patterns("*.lock", "*.holder", "build"))
    task_id, _, old_key = _kx_tasks(kx_home)[0]
    actions.record(home.app_db, task_id, "claim", "frontdesk@example.com")
    first = build(home, dbt_vars=KX_VARS)
    assert first.ok, first.message
    before = dict(_patients(home))
    with open_built(home.analytics_db) as con:
        assert con.execute(
            "select claimed_by from marts.work_queue_candidates where task_id = ?", [task_id]
        ).fetchone() == ("frontdesk@example.com",)

    old_secret = load_key(key_path(home))
    rot = rotate_key(home)
    assert rot.actions_rekeyed == 1 and rot.patients >= len(before)
    assert load_key(key_path(home)) != old_secret
    assert stat.S_IMODE(key_path(home).stat().st_mode) == 0o600
    second = build(home, dbt_vars=KX_VARS)
    assert second.ok, second.message
    # the incremental marts keep their rows between builds: a rotated secret must rebuild them all, or their
    # patient_keys stay the old ones (found at medium: every charge line and visit kept its old key)
    assert second.full_refresh and "pseudonym secret" in second.mode_reason
    after = dict(_patients(home))
    assert after.keys() == before.keys() and not set(after.values()) & set(before.values())
    with open_built(home.analytics_db) as con:
        for mart in ("appointments", "charge_lines", "claims", "visits"):
            stale = con.execute(
                f"select count(*) from marts.{mart} where patient_key is not null "
                "and patient_key not in (select patient_key from intermediate.int_patient_keys)"
            ).fetchone()[0]
            assert stale == 0, mart

    new_task = task_id.replace(old_key, pseudonym_one(load_key(key_path(home)), _kx_tasks(kx_home)[0][1]))
    with open_built(home.analytics_db) as con:
        assert con.execute(
            "select claimed_by from marts.work_queue_candidates where task_id = ?", [new_task]
        ).fetchone() == ("frontdesk@example.com",)
    assert [s.task_id for s in actions.task_states(home.app_db).values()] == [new_task]


def _raw_identity(home) -> dict[str, tuple[str, str]]:
    """kind -> (a value with the identifier inside other text, the identifier)."""
    with duckdb.connect(str(home.raw_db), read_only=True) as con:
        pid, first, last, phone, email, member, addr = con.execute(
            "select patient_id, first_name, last_name, phone, email, member_id, address_line from raw.raw.patients "
            "order by patient_id limit 1"
        ).fetchone()  # catalog raw, schema raw
    return {
        "patient id": (f"medicare_kx_threshold:{pid}:2026", pid),
        "phone": (f"call back on {phone} today", phone),
        "name": (f"Spoke to {first} {last}.", last),
        "email": (f"sent to <{email}>", email),
        "member id": (f"member {member}", member),
        "address": (f"lives at {addr}, near the clinic", addr),
    }


@pytest.mark.parametrize("kind", ["patient id", "phone", "name", "email", "member id", "address"])
def test_verification_refuses_a_twin_with_an_identifier_inside_a_value(kx_home, tmp_path, kind):
    verify_deidentified(kx_home.analytics_deid_db, kx_home.raw_db)  # the served twin is clean
    twin = tmp_path / "twin.duckdb"
    shutil.copy2(kx_home.analytics_deid_db, twin)
    value, ident = _raw_identity(kx_home)[kind]
    with duckdb.connect(str(twin)) as con:
        con.execute(
            "update marts.work_queue_candidates set reason = ? "
            "where task_id = (select min(task_id) from marts.work_queue_candidates)",
            [value],
        )
    with pytest.raises(RuntimeError) as err:
        verify_deidentified(twin, kx_home.raw_db)
    message = str(err.value)
    assert f"marts.work_queue_candidates.reason: 1 value(s) contain a patient {kind}" in message, message
    assert ident not in message  # names the table, column and kind, never the value


def test_a_pseudonym_whose_digits_spell_a_phone_is_not_a_phone(kx_home, tmp_path):
    """A 16-hex keyed pseudonym holds a 10-digit run now and then; at chain scale one equalled a patient's phone
    and refused a 200-clinic build. Runs of 16+ letters and digits are not phones (E.164 has at most 15 digits)."""
    value, phone = _raw_identity(kx_home)["phone"]
    digits = "".join(ch for ch in phone if ch.isdigit())[-10:]
    twin = tmp_path / "twin.duckdb"
    shutil.copy2(kx_home.analytics_deid_db, twin)
    with duckdb.connect(str(twin)) as con:
        con.execute(
            "update marts.work_queue_candidates set reason = ? "
            "where task_id = (select min(task_id) from marts.work_queue_candidates)",
            [f"key {('a' + digits + 'c0ffee').ljust(16, 'f')}"],  # a 16+ run, as a pseudonym is
        )
    verify_deidentified(twin, kx_home.raw_db)  # no false alarm
    with duckdb.connect(str(twin)) as con:
        con.execute(
            "update marts.work_queue_candidates set reason = ? "
            "where task_id = (select min(task_id) from marts.work_queue_candidates)",
            [value],
        )
    with pytest.raises(RuntimeError, match="contain a patient phone"):
        verify_deidentified(twin, kx_home.raw_db)


def test_registering_the_udf_twice_on_one_connection_replaces_it(tmp_path):
    """dbt-duckdb can configure a connection again after a failed open; a second registration must not raise
    "already created" (which hid the real error of a corrupt raw.duckdb) and must hash with the same key."""
    from ptpulse.build.dbt_plugin import UDF_NAME, register_pseudonym
    from ptpulse.core.secrets import ensure_key

    settings = get_settings(tmp_path / "home").ensure()
    ensure_key(settings)
    con = duckdb.connect()
    register_pseudonym(con, str(key_path(settings)))
    first = con.execute(f"select {UDF_NAME}('PT-1')").fetchall()
    register_pseudonym(con, str(key_path(settings)))
    again = con.execute(f"select {UDF_NAME}('PT-1')").fetchall()
    assert first == again == [(pseudonym_one(load_key(key_path(settings)), "PT-1"),)]


def test_a_provider_id_that_equals_a_patient_phone_is_not_a_phone(kx_home, tmp_path):
    """Referring physicians' ids are NPIs, 10 digits like a phone. With 4 M patients five NPIs equalled a patient's
    phone by chance and refused a 900-clinic build, whose twin shows provider ids on purpose. A phone that equals a
    provider id is not checked; every other patient phone still is."""
    value, phone = _raw_identity(kx_home)["phone"]
    digits = "".join(ch for ch in phone if ch.isdigit())[-10:]
    raw, twin = tmp_path / "raw.duckdb", tmp_path / "twin.duckdb"
    shutil.copy2(kx_home.raw_db, raw)
    shutil.copy2(kx_home.analytics_deid_db, twin)
    with duckdb.connect(str(raw)) as con:
        physician = con.execute("select min(physician_id) from raw.raw.referring_physicians").fetchone()[0]
        con.execute(
            "update raw.raw.referring_physicians set physician_id = ? where physician_id = ?", [digits, physician]
        )
    with duckdb.connect(str(twin)) as con:
        shown = con.execute(
            "update marts.dim_referring_physicians set physician_id = ? where physician_id = ?", [digits, physician]
        ).fetchone()[0]
    assert shown == 1
    verify_deidentified(twin, raw)  # the NPI is shown on purpose: no false alarm
    with duckdb.connect(str(raw)) as con:  # another patient's phone in a free-text value is still refused
        other = con.execute(
            "select phone from raw.raw.patients where phone is not null order by patient_id desc"
        ).fetchone()[0]
    with duckdb.connect(str(twin)) as con:
        con.execute(
            "update marts.work_queue_candidates set reason = ? "
            "where task_id = (select min(task_id) from marts.work_queue_candidates)",
            [f"call back on {other} today"],
        )
    with pytest.raises(RuntimeError, match="work_queue_candidates.reason: 1 value.s. contain a patient phone"):
        verify_deidentified(twin, raw)


def test_the_value_check_keeps_to_the_memory_budget_it_is_given(kx_home, tmp_path):
    """The check scans every text value of the twin; with no budget DuckDB takes 80% of the machine (20 GB in a
    900-clinic build). The build passes its own: a budget the scan cannot meet fails it, so the budget is applied."""
    spill = tmp_path / "spill"
    verify_deidentified(kx_home.analytics_deid_db, kx_home.raw_db, config={"memory_limit": "256MB"})
    with pytest.raises(duckdb.OutOfMemoryException):
        verify_deidentified(
            kx_home.analytics_deid_db,
            kx_home.raw_db,
            config={"memory_limit": "2MB", "temp_directory": str(spill), "max_temp_directory_size": "2MB"},
        )
