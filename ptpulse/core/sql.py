"""Quoting for SQL text built from our own names (contracts, catalog listings): the one copy.

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
