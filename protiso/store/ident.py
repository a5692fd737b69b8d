"""Quoting for the few places where a name or a file list must appear in SQL text (view
names, Parquet file lists). Values always travel as parameters instead."""
from __future__ import annotations

from typing import Iterable


def quote_ident(name: str) -> str:
    """A DuckDB identifier, double-quoted with embedded quotes doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def sql_literal(text: str | None) -> str:
    """A string literal (for view bodies, which cannot take parameters)."""
    return "NULL" if text is None else "'" + str(text).replace("'", "''") + "'"


def parquet_source(paths: Iterable) -> str:
    """A read_parquet([...]) fragment over part files (caller ensures the list is non-empty)."""
    return "read_parquet([" + ", ".join(sql_literal(str(p)) for p in paths) + "])"
