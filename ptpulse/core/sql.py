"""Quoting for SQL text built from our own names (contracts, catalog listings): the one copy. Also the one
spelling of a raw load's identity.

Values from source files never go through here: they are bound as parameters.
"""

from __future__ import annotations

import os


def quote_ident(identifier: str) -> str:
    """A quoted SQL identifier (`"a""b"` for a"b)."""
    return '"' + str(identifier).replace('"', '""') + '"'


def quote_literal(value: str | os.PathLike[str]) -> str:
    """A quoted SQL string literal, for statements that take no parameters (ATTACH of a file path)."""
    return "'" + str(value).replace("'", "''") + "'"


# The columns of raw._loads that identify one load of one raw file (id, file hash, start): a build's state and the
# twin check's identifier cache both record them, and trust what they hold only while raw still has that load.
RAW_LOAD_IDENTITY = "load_id, sha256, cast(started_at as varchar)"
