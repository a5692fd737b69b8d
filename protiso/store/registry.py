"""What the floors above add to every catalog connection, without the store importing them.

Areas register Python UDFs (`udf`) and builders of views over their Parquet parts (`views`);
`protiso.wiring` imports the areas so their registrations exist before any store is opened.
The store only iterates these lists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Udf:
    """A Python function exposed to SQL: name, function, DuckDB parameter types, return type."""

    name: str
    func: Callable
    params: tuple[str, ...]
    returns: str


UDFS: list[Udf] = []
VIEW_BUILDERS: list[Callable] = []   # each (store) -> None creates TEMP views


def udf(name: str, func: Callable, params: list[str], returns: str) -> None:
    """Register `func` as SQL function `name` on every connection (idempotent by name)."""
    UDFS[:] = [u for u in UDFS if u.name != name]
    UDFS.append(Udf(name, func, tuple(params), returns))


def views(builder: Callable) -> Callable:
    """Register a view builder (usable as a decorator); run at every connect and after writes."""
    if builder not in VIEW_BUILDERS:
        VIEW_BUILDERS.append(builder)
    return builder


# -- integrity: what the areas' catalog rows mean for lost files, and the persistent views --------

@dataclass(frozen=True)
class FileSet:
    """Files (not Parquet parts) that catalog rows point at, e.g. index or statistics files.

    `query` returns (path relative to the store, recorded size or NULL, recorded sha256 or NULL);
    `check(path) -> problem or None` looks inside a file with no recorded checksum;
    `repair(store, lost_paths) -> [messages]` updates the catalog so re-running the job that
    made them restores them (or says what to do)."""

    name: str
    query: str
    repair: Callable | None = None
    check: Callable | None = None


FILESETS: list[FileSet] = []
REPAIRERS: list[tuple[str, Callable]] = []     # (dataset prefix, fn(store, dataset, lost) -> [messages])
CATALOG_VIEW_BUILDERS: list[Callable] = []     # each (store) -> None, inside a write transaction


def files(name: str, query: str, repair: Callable | None = None, check: Callable | None = None) -> None:
    """Declare files that `protiso verify` checks and `protiso repair` mends (idempotent by name)."""
    FILESETS[:] = [f for f in FILESETS if f.name != name]
    FILESETS.append(FileSet(name, query, repair, check))


def repairs(prefix: str) -> Callable:
    """Decorator: `fn(store, dataset, lost_paths) -> [messages]` marks the work held by lost parts
    of datasets starting with `prefix` as not done (called in the repair's transaction)."""
    def register(fn: Callable) -> Callable:
        REPAIRERS[:] = [(p, f) for p, f in REPAIRERS if p != prefix]
        REPAIRERS.append((prefix, fn))
        return fn
    return register


def catalog_views(builder: Callable) -> Callable:
    """Register a builder of persistent catalog views (for DuckDB users outside protiso); run in
    each write transaction that registers or removes parts."""
    if builder not in CATALOG_VIEW_BUILDERS:
        CATALOG_VIEW_BUILDERS.append(builder)
    return builder
