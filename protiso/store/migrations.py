"""Schema migrations of the catalog: the numbered scripts in sql/migrations, applied in order,
each in its own transaction and recorded in `schema_migrations`."""
from __future__ import annotations

import re
from pathlib import Path

import duckdb

from protiso._version import __version__
from protiso.errors import ProtisoError
from protiso.store.integrity import backfill_checksums
from protiso.store.sqlfiles import sql_dir

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationsPending(ProtisoError):
    """A read-only open of a catalog that lacks migrations this protiso has."""


def migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return found


def apply_migrations(con: duckdb.DuckDBPyConnection, read_only: bool, root: Path) -> None:
    try:
        done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    except duckdb.CatalogException:
        done = set()
    pending = [(v, p) for v, p in migrations() if v not in done]
    if not pending:
        return
    if read_only:
        raise MigrationsPending(f"store {root} needs schema migrations {[v for v, _ in pending]}")
    con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
        applied_at TIMESTAMP DEFAULT current_timestamp, software_version VARCHAR)""")
    for version, path in pending:
        con.begin()
        try:
            con.execute(path.read_text())
            con.execute("INSERT INTO schema_migrations (version, name, software_version) VALUES (?, ?, ?)",
                        [version, path.name, __version__])
            if version == 7:
                backfill_checksums(con, root)
        except BaseException:
            con.rollback()
            raise
        con.commit()


def schema_version() -> int:
    """The newest migration this protiso knows: the store schema version written into parts."""
    found = migrations()
    return found[-1][0] if found else 0
