"""dbt-duckdb plugin (profiles.yml `plugins:`): registers the UDF `ptpulse_pseudonym(varchar) -> varchar`,
HMAC-SHA256 with the installation secret (ptpulse/core/secrets.py), first 16 hex characters.

Only the key file's path is configured (`key_file`, from env PTPULSE_PSEUDONYM_KEY_FILE that the build sets);
the secret is read here, in the dbt process, so it never appears in SQL, target/ or logs. The UDF is arrow-
vectorised and hashes each distinct value of a batch once; models call it only on the distinct patient ids
(intermediate.int_patient_keys), and the `patient_key` macro looks keys up there.
"""

from __future__ import annotations

from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin

from ptpulse.core.secrets import load_key, pseudonyms

UDF_NAME = "ptpulse_pseudonym"


def register_pseudonym(conn: duckdb.DuckDBPyConnection, key_file: str) -> None:
    """Register `ptpulse_pseudonym` on a connection; the key is read on first use (parse-only dbt commands,
    docs and ls, never need it). Used by the dbt plugin and by the build benchmark's SQL floor."""
    state: dict[str, bytes] = {}

    def udf(values):
        if "key" not in state:
            if not key_file:
                raise RuntimeError(
                    "ptpulse_pseudonym: no key file configured (PTPULSE_PSEUDONYM_KEY_FILE "
                    "is empty): run dbt through `ptpulse build`."
                )
            state["key"] = load_key(key_file)
        return pseudonyms(state["key"], values)

    # dbt-duckdb may configure the same connection again (e.g. after a failed open): replace, never fail on
    # "already created", which would hide the real error.
    try:
        conn.remove_function(UDF_NAME)
    except duckdb.InvalidInputException:
        pass  # not registered yet: the usual case
    conn.create_function(
        UDF_NAME,
        udf,
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("VARCHAR"),
        type="arrow",
        null_handling="default",
        side_effects=False,
    )


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.key_file = str(plugin_config.get("key_file") or "")

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        register_pseudonym(conn, self.key_file)
