"""The store: a DuckDB catalog plus Parquet parts under one directory (the bottom floor).

`open_store` resolves the directory (argument, else $PROTISO_STORE, else ./store), opens the
catalog, applies the numbered migrations in sql/migrations once, re-creates the views from
sql/views and those the areas registered (`protiso.store.registry`), and registers the areas'
Python UDFs. It imports nothing from the floors above. Bulky data goes through
`write_part`, which writes a Parquet file atomically and lists it in the catalog table `parts`
inside the caller's transaction, so the catalog only ever lists files that exist.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from protiso._version import __version__
from protiso.errors import NotFoundError, ProtisoError, StoreBusyError
from protiso.store import registry
from protiso.store.sqlfiles import sql_dir

CATALOG_NAME = "protiso.duckdb"
DATA_DIR = "data"
_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_PART_RE = re.compile(r"^part-[0-9a-f]{32}\.parquet$")
_TMP_RE = re.compile(r"^\.part-[0-9a-f]{32}\.parquet\.tmp$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")


def resolve_store_path(path: str | os.PathLike | None = None) -> Path:
    """The store directory: the argument, else $PROTISO_STORE, else ./store."""
    chosen = path if path is not None else os.environ.get("PROTISO_STORE") or "store"
    return Path(chosen).expanduser().resolve()


class Store:
    """An open store: `con` is the catalog connection, `root` the directory."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.root = root
        self.con = con
        self.read_only = read_only
        self._tx_depth = 0
        self._tx_files: list[Path] = []

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Store"]:
        """One catalog transaction; on error it rolls back and deletes parts written in it.

        Nested use joins the outer transaction."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self
            finally:
                self._tx_depth -= 1
            return
        self.con.begin()
        self._tx_depth = 1
        self._tx_files = []
        try:
            yield self
        except BaseException:
            self.con.rollback()
            for f in self._tx_files:
                f.unlink(missing_ok=True)
            raise
        else:
            self.con.commit()
        finally:
            self._tx_depth = 0
            self._tx_files = []

    # -- queries -----------------------------------------------------------------------
    def execute(self, query: str, params: list | dict | None = None) -> duckdb.DuckDBPyConnection:
        """Run one statement or a script of several. Named parameters (`$name`) come as a dict;
        each statement receives the ones it uses, so a named query file's scripts need no
        per-statement plumbing."""
        if not isinstance(params, dict):
            return self.con.execute(query, params or [])
        statements = [s.query for s in self.con.extract_statements(query)] if ";" in query else [query]
        result = self.con
        for statement in statements:
            result = self.con.execute(statement, _used(statement, params))
        return result

    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Run a query and return an Arrow table."""
        if isinstance(params, dict):
            params = _used(query, params)
        return self.con.sql(query, params=params).to_arrow_table()

    def one(self, query: str, params: list | dict | None = None) -> tuple | None:
        """The first row of a query, or None. (DuckDB 2 keeps a connection busy until a result
        is fully fetched, so this fetches all rows rather than using fetchone.)"""
        rows = self.execute(query, params).fetchall()
        return rows[0] if rows else None

    def scalar(self, query: str, params: list | dict | None = None):
        """The first column of the first row, or None."""
        row = self.one(query, params)
        return None if row is None else row[0]

    # -- Parquet parts ---------------------------------------------------------------------
    def dataset_dir(self, dataset: str) -> Path:
        if not _DATASET_RE.match(dataset) or ".." in dataset.split("/"):
            raise ValueError(f"invalid dataset name {dataset!r}")
        return self.root / DATA_DIR / dataset

    def write_part(self, dataset: str, table: pa.Table) -> Path:
        """Write `table` as a new Parquet part of `dataset` and list it in the catalog.

        The file is written atomically (`write_part_file`), then registered in `parts` in the
        current transaction (opened here if none is)."""
        self._check_writable()
        with self.transaction():
            final = write_part_file(self.dataset_dir(dataset), table)
            self.register_part(dataset, final, table.num_rows)
        return final

    def register_part(self, dataset: str, path: Path, n_rows: int) -> None:
        """List an existing Parquet file of `dataset` (written elsewhere, e.g. by a Ray worker,
        under the same `part-<uuid>.parquet` naming) in `parts`, in the current transaction
        (opened here if none is); a rollback deletes the file. Registering a path twice fails."""
        self._check_writable()
        path = Path(path)
        if path.parent.resolve() != self.dataset_dir(dataset).resolve() or not path.is_file():
            raise ProtisoError(f"part {path} is not a file of dataset {dataset} ({self.dataset_dir(dataset)})")
        rel = path.resolve().relative_to(self.root.resolve()).as_posix()
        with self.transaction():
            if self.scalar("SELECT count(*) FROM parts WHERE path = ?", [rel]):
                raise ProtisoError(f"part {rel} is already registered")
            self._tx_files.append(path)
            self.con.execute("INSERT INTO parts (dataset, path, n_rows) VALUES (?, ?, ?)",
                             [dataset, rel, int(n_rows)])

    def parts(self, dataset: str) -> list[Path]:
        """Registered parts of `dataset` that exist on disk, oldest first."""
        rows = self.con.execute(
            "SELECT path FROM parts WHERE dataset = ? ORDER BY created_at, path", [dataset]).fetchall()
        paths = [self.root / p for (p,) in rows]
        return [p for p in paths if p.exists()]

    def delete_dataset(self, dataset: str) -> None:
        """Remove a dataset's parts from the catalog and disk."""
        self._check_writable()
        with self.transaction():
            self.con.execute("DELETE FROM parts WHERE dataset = ?", [dataset])
        shutil.rmtree(self.dataset_dir(dataset), ignore_errors=True)

    def clean_orphan_parts(self, dataset: str) -> int:
        """Delete part files of `dataset` that the catalog does not list (written by a job killed
        before they were registered, e.g. by Ray workers) and leftover temporary files; returns
        how many. Safe because only the one process holding the catalog registers parts."""
        directory = self.dataset_dir(dataset)
        if not directory.is_dir():
            return 0
        listed = {p for (p,) in self.con.execute(
            "SELECT path FROM parts WHERE dataset = ?", [dataset]).fetchall()}
        removed = 0
        for f in directory.iterdir():
            rel = f.relative_to(self.root).as_posix()
            if (_PART_RE.match(f.name) and rel not in listed) or _TMP_RE.match(f.name):
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- schema -------------------------------------------------------------------------
    def refresh_views(self) -> None:
        """(Re)create the SQL views from sql/views and the dynamic views over Parquet parts.

        Views are TEMP so that read-only connections get them too."""
        self.con.execute("SET VARIABLE protiso_root = ?", [self.root.as_posix()])
        for path in sorted((sql_dir() / "views").glob("*.sql")):
            _run_script(self.con, path)
        for build in registry.VIEW_BUILDERS:
            build(self)

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def _check_writable(self) -> None:
        if self.read_only:
            raise ProtisoError(f"store {self.root} is open read-only")


_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _used(statement: str, params: dict) -> dict:
    """The named parameters a statement refers to (DuckDB refuses unused ones)."""
    names = set(_PARAM_RE.findall(statement))
    return {k: v for k, v in params.items() if k in names}


def write_part_file(directory: str | os.PathLike, table: pa.Table) -> Path:
    """Write `table` as a new `part-<uuid>.parquet` in `directory`: under a hidden temporary
    name, fsynced, then renamed, so a reader never sees a half-written part. Not registered:
    `Store.write_part` (or a driver collecting workers' files) lists it in the catalog."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    final, tmp = directory / name, directory / f".{name}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        con.execute(path.read_text())
    except duckdb.Error as exc:
        raise ProtisoError(f"{path.name}: {exc}") from exc


def _migrations() -> list[tuple[int, Path]]:
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return found


def _apply_migrations(con: duckdb.DuckDBPyConnection, read_only: bool, root: Path) -> None:
    if not read_only:
        con.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
            applied_at TIMESTAMP DEFAULT current_timestamp, software_version VARCHAR)""")
    try:
        done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    except duckdb.CatalogException:
        done = set()
    pending = [(v, p) for v, p in _migrations() if v not in done]
    if pending and read_only:
        raise ProtisoError(f"store {root} needs schema migrations {[v for v, _ in pending]}; "
                           "open it once without read-only mode (e.g. `protiso info`)")
    for version, path in pending:
        con.begin()
        try:
            con.execute(path.read_text())
            con.execute("INSERT INTO schema_migrations (version, name, software_version) VALUES (?, ?, ?)",
                        [version, path.name, __version__])
        except BaseException:
            con.rollback()
            raise
        con.commit()


def open_store(path: str | os.PathLike | None = None, read_only: bool = False) -> Store:
    """Open (creating on first use unless read-only) the store at `path`.

    Raises StoreBusyError when another process holds the catalog."""
    root = resolve_store_path(path)
    catalog = root / CATALOG_NAME
    if read_only and not catalog.exists():
        raise NotFoundError(f"no store at {root} (no {CATALOG_NAME}); ingest data first")
    if root.exists() and not root.is_dir():
        raise ProtisoError(f"store path {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(catalog), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreBusyError(
                f"store {root} is in use by another process; wait for it to finish "
                f"(DuckDB: {str(exc).splitlines()[0]})") from exc
        raise ProtisoError(f"cannot open store catalog {catalog}: {exc}") from exc
    try:
        _apply_migrations(con, read_only, root)
        store = Store(root, con, read_only)
        for u in registry.UDFS:
            con.create_function(u.name, u.func, list(u.params), u.returns)
        store.refresh_views()
    except BaseException:
        con.close()
        raise
    return store
