"""PHI sweep (issue 9): no identifier of a generated patient reaches a de-identified reader by any path: every
value of analytics_deid.duckdb, every page marketing and analysts may open, and every CSV export those pages
offer. Identifiers: patient ids, full names (both orders), phones, emails, member ids, birth dates, street
addresses, matched inside other strings too (a task id 'rule:<id>:2026', a sentence quoting a row)."""

from __future__ import annotations

import csv
import re
from datetime import date

import duckdb
import pytest
from app_helpers import open_page, rendered_text

from app.lib import auth, exports


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shape(value: str) -> str:
    """Regex of the value's shape (digits -> \\d, letters -> [A-Za-z]), to find candidates without boundaries."""
    out, prev, n = [], None, 0
    for ch in value + "\0":
        cls = r"\d" if ch.isdigit() else "[A-Za-z]" if ch.isalpha() else re.escape(ch)
        if cls == prev:
            n += 1
            continue
        if prev is not None:
            out.append(prev + (f"{{{n}}}" if n > 1 else ""))
        prev, n = cls, 1
    return "".join(out)


class Identifiers:
    """Every identifier of the patients in patients.csv, with fast matchers over large texts."""

    def __init__(self, rows: list[dict], professionals: set[str]):
        self.codes: dict[str, str] = {}  # value -> kind, for ids / member ids / phones / emails / birth dates
        self.grams: dict[str, str] = {}  # normalised word n-gram -> kind (full names, street addresses)
        for r in rows:
            for kind, col in (
                ("patient id", "patient_id"),
                ("member id", "member_id"),
                ("phone", "phone"),
                ("email", "email"),
            ):
                v = (r.get(col) or "").strip()
                if len(v) >= 3:
                    self.codes[v.lower()] = kind
            bd = (r.get("birth_date") or "").strip()
            if bd:
                try:
                    d = date.fromisoformat(bd)
                    forms = (d.isoformat(), d.strftime("%m/%d/%Y"))
                except ValueError:  # a defective source value (dirty data): look for it as written
                    forms = (bd,)
                for form in forms:
                    self.codes[form.lower()] = "birth date"
            first, last = (r.get("first_name") or "").strip(), (r.get("last_name") or "").strip()
            if first and last and f"{first} {last}" not in professionals:
                self.grams[" ".join(_words(f"{first} {last}"))] = "name"
                self.grams[" ".join(_words(f"{last} {first}"))] = "name"
            addr = " ".join(_words(r.get("address_line") or ""))
            if addr.count(" ") >= 1:
                self.grams[addr] = "address"
        shapes = sorted({_shape(v) for v, kind in self.codes.items() if kind != "email"}, key=len, reverse=True)
        self.code_re = re.compile("|".join(f"(?=({s}))" for s in shapes), re.IGNORECASE)
        self.email_re = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
        self.sizes = sorted({g.count(" ") + 1 for g in self.grams})

    def hits(self, text: str) -> list[str]:
        """'kind' of every identifier found in text (never the value, so failures print no PHI)."""
        found = []
        for m in self.code_re.finditer(text):  # lookaheads: overlapping candidates, inside any string
            cand = next(g for g in m.groups() if g)
            if cand.lower() in self.codes:
                found.append(self.codes[cand.lower()])
        found += [self.codes[e.lower()] for e in self.email_re.findall(text) if e.lower() in self.codes]
        words = _words(text)
        for n in self.sizes:
            for i in range(len(words) - n + 1):
                g = " ".join(words[i : i + n])
                if g in self.grams:
                    found.append(self.grams[g])
        return found


@pytest.fixture(scope="session")
def identifiers(small_practice) -> Identifiers:
    rows = []
    for path in sorted(small_practice.glob("patients*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            rows += list(csv.DictReader(fh))
    professionals = set()  # shown by name on purpose; a patient with a clinician's full name is not a leak
    for pattern in ("referring_physicians*.csv", "therapists*.csv"):
        for path in small_practice.glob(pattern):
            with open(path, newline="", encoding="utf-8") as fh:
                professionals |= {f"{r['first_name']} {r['last_name']}" for r in csv.DictReader(fh)}
    ids = Identifiers(rows, professionals)
    assert len(rows) > 1000 and len(ids.codes) > 5 * len(rows) // 2 and len(ids.grams) > len(rows)
    return ids


def test_the_sweep_finds_identifiers_where_they_are_allowed(app_home, identifiers):
    """The matchers work: the identified analytics file and a sentence with ids inside are caught."""
    with duckdb.connect(str(app_home.analytics_db), read_only=True) as con:
        text = con.execute("select * from marts.dim_patients limit 50").df().to_csv()
        pid, first, last, phone = con.execute(
            "select patient_id, first_name, last_name, phone from marts.dim_patients limit 1"
        ).fetchone()
    kinds = set(identifiers.hits(text))
    assert {"patient id", "phone", "birth date", "address"} <= kinds, kinds
    inside = f"medicare_kx_threshold:{pid}:2026 call x{phone}x about {last}, {first}."
    assert {"patient id", "phone", "name"} <= set(identifiers.hits(inside))


def test_every_value_of_the_deidentified_file_is_clean(app_home, identifiers):
    with duckdb.connect(str(app_home.analytics_deid_db), read_only=True) as con:
        tables = con.execute("select schema_name, table_name from duckdb_tables() where not internal").fetchall()
        assert len(tables) > 10
        for schema, table in tables:
            text = con.execute(f'select * from "{schema}"."{table}"').df().to_csv()
            assert not identifiers.hits(text), (schema, table, sorted(set(identifiers.hits(text))))


@pytest.mark.parametrize("role", ["marketing", "analyst"])
def test_every_page_and_csv_export_of_deidentified_roles_is_clean(app_home, identifiers, role, monkeypatch):
    """Pages render in-process (AppTest); every table and chart download passes through exports.has_identities
    first, so wrapping it records the exact frame each export would write."""
    exported: list[tuple[int, bytes]] = []
    real = exports.has_identities

    def record(df):
        exported.append((len(df), exports.to_csv_bytes(df)))
        return real(df)

    monkeypatch.setattr(exports, "has_identities", record)
    at = None
    pages = auth.pages_for(role)
    assert pages
    for page in pages:
        before = len(exported)
        at = open_page(app_home, role, page, at)
        assert not at.exception, (page, [e.value for e in at.exception])
        text = rendered_text(at)
        assert not identifiers.hits(text), (role, page, sorted(set(identifiers.hits(text))))
        for rows, data in exported[before:]:
            csv_text = data.decode("utf-8")
            assert not identifiers.hits(csv_text), (role, page, rows, sorted(set(identifiers.hits(csv_text))))
    assert exported, "no page offered a CSV export: the export sweep checked nothing"
