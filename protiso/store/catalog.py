"""The store: a DuckDB catalog plus Parquet parts under one directory (the bottom floor).

`open_store` resolves the directory (argument, else $PROTISO_STORE, else ./store), opens the
catalog, applies the numbered migrations in sql/migrations once, re-creates the views from
sql/views and those the areas registered (`protiso.store.registry`), and registers the areas'
Python UDFs. It imports nothing from the floors above. Bulky data goes through
`write_part`, which writes a Parquet file atomically and lists it in the catalog table `parts`
(with its rows, size and SHA-256) inside the caller's transaction, so the catalog only ever
lists files that exist.

Concurrency: DuckDB allows one read-write process or many read-only ones. A store opened
normally holds its connection until closed (short commands). Inside `store.job()` it holds the
catalog only while it needs it: reads open it read-only (which never blocks other readers) and
each outermost `transaction()` opens it read-write just for the commit, then closes it, so
readers work at any moment of a long job. Opening waits a bounded time for a conflicting lock
(see protiso.store.lock).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from protiso._version import __version__
from protiso.errors import DamagedStoreError, NotFoundError, ProtisoError
from protiso.store import lock, registry
from protiso.store.ident import sql_literal
from protiso.store.migrations import MigrationsPending, apply_migrations, schema_version
from protiso.store.integrity import (damage_message, file_digest, quick_problem,
                                     Problem, require_intact)
from protiso.store.readonly import check_read_only, lock_down
from protiso.store.sqlfiles import queries, sql_dir
from protiso.store.fs import DATA_PREFIX, DataFS, is_url, write_part_file, write_part_url

CATALOG_NAME = "protiso.duckdb"
DATA_DIR = "data"
_PART_RE = re.compile(r"^part-[0-9a-f]{32}\.parquet$")
_TMP_RE = re.compile(r"^\.part-[0-9a-f]{32}\.parquet\.tmp$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")
Q = queries("store")


def resolve_store_path(path: str | os.PathLike | None = None) -> Path:
    """The store directory: the argument, else $PROTISO_STORE, else ./store."""
    chosen = path if path is not None else os.environ.get("PROTISO_STORE") or "store"
    return Path(chosen).expanduser().resolve()


class Store:
    """An open store: `con` is the catalog connection (opened on use), `root` the directory."""

    def __init__(self, root: Path, con: duckdb.DuckDBPyConnection | None, read_only: bool,
                 hold: bool = True):
        self.root = root
        self.read_only = read_only
        self._con = con
        self._hold = hold              # False inside job(): hold the catalog only while needed
        self._closed = False
        self._tx_depth = 0
        self._tx_files: list[Path] = []
        self._tx_parts_changed = False
        self._lenient = False          # building views: skip damaged parts instead of failing
        self.data: DataFS | None = None   # parts at a URL (protiso.store.fs), else under root/data

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_NAME

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The catalog connection, opened (read-only inside a job) when first needed."""
        if self._con is None:
            if self._closed:
                raise ProtisoError(f"store {self.root} is closed")
            self._connect(read_only=self.read_only or not self._hold, lean=False)
        return self._con

    # -- lifecycle -------------------------------------------------------------------
    def _connect(self, read_only: bool, lean: bool, wait: float | None = None) -> None:
        """Open the catalog (waiting a bounded time for the lock) and set the connection up:
        UDFs, a file search path at the root (the persistent views' relative paths) and, unless
        `lean` (a job's commit), the views; read-only stores are then locked down."""
        con = lock.connect(self.catalog, read_only, wait)
        try:
            apply_migrations(con, read_only, self.root)
            con.execute(f"SET file_search_path = {sql_literal(self.root.as_posix())}")
            con.execute("SET enable_progress_bar = false")   # DuckDB would draw it on stdout
            for u in registry.UDFS:
                con.create_function(u.name, u.func, list(u.params), u.returns)
            con.create_function("protiso_process_alive", lock.process_alive,
                                ["VARCHAR", "BIGINT", "BIGINT"], "BOOLEAN", null_handling="special")
            self._attach_data(con)
            self._con = con
            if not lean:
                self.refresh_views()
                if not read_only:
                    self._catalog_views(con)     # stores from before they existed get them here
            if self.read_only:
                lock_down(con)
        except duckdb.Error as exc:
            self._con = None
            con.close()
            raise lock.catalog_error(self.catalog, exc) from exc
        except BaseException:
            self._con = None
            con.close()
            raise

    def release(self) -> None:
        """Close the catalog connection now (the next use reopens it); not inside a transaction."""
        if self._tx_depth:
            raise ProtisoError("cannot release the store's catalog inside a transaction")
        if self._con is not None:
            con, self._con = self._con, None
            con.close()

    @contextlib.contextmanager
    def job(self) -> Iterator["Store"]:
        """A long job: hold the catalog only while reading (read-only, so readers are never
        blocked) and, read-write, while committing each outermost transaction. Write statements
        run through `execute` outside a transaction get one of their own."""
        before = self._hold
        self.release()
        self._hold = False
        try:
            yield self
        finally:
            if self._tx_depth == 0:
                self.release()
            self._hold = before

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        self._closed = True

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, wait: float | None = None) -> Iterator["Store"]:
        """One catalog transaction; on error it rolls back and deletes parts written in it.

        Nested use joins the outer transaction. Inside `job()` the catalog is opened read-write
        for the transaction only (waiting at most `wait` seconds, default lock_timeout(), for
        readers to let go) and closed after the commit."""
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield self
            finally:
                self._tx_depth -= 1
            return
        self._check_writable()
        opened = False
        if not self._hold:
            self.release()
            self._connect(read_only=False, lean=True, wait=wait)
            opened = True
        con = self.con
        con.begin()
        self._tx_depth = 1
        self._tx_files = []
        self._tx_parts_changed = False
        try:
            yield self
            con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            for f in self._tx_files:
                self.remove_file(f)
            raise
        else:
            if self._tx_parts_changed:
                self._catalog_views(con)
        finally:
            self._tx_depth = 0
            self._tx_files = []
            self._tx_parts_changed = False
            if opened:
                self._con = None
                con.close()

    def _catalog_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring the persistent catalog views up to date after a commit that changed parts, in
        a transaction of their own: best effort, a view that cannot be bound is left as it was."""
        try:
            con.begin()
            for build in registry.CATALOG_VIEW_BUILDERS:
                build(self)
            con.commit()
        except Exception:   # noqa: BLE001 - best effort: protiso's own TEMP views do not depend on them
            with contextlib.suppress(duckdb.Error):
                con.rollback()

    # -- queries -----------------------------------------------------------------------
    def execute(self, query: str, params: list | dict | None = None) -> duckdb.DuckDBPyConnection:
        """Run one statement or a script of several. Named parameters (`$name`) come as a dict;
        each statement receives the ones it uses, so a named query file's scripts need no
        per-statement plumbing. A read-only store runs read statements only; inside a job a
        write outside a transaction gets a transaction of its own."""
        if self.read_only:
            check_read_only(self.con, query)
        elif not self._hold and not self._tx_depth and _writes(self.con, query):
            with self.transaction():
                return self.execute(query, params)
        if not isinstance(params, dict):
            return self.con.execute(query, params or [])
        statements = [s.query for s in self.con.extract_statements(query)] if ";" in query else [query]
        result = self.con
        for statement in statements:
            result = self.con.execute(statement, _used(statement, params))
        return result

    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Run a query and return an Arrow table (a read-only store runs read statements only)."""
        if self.read_only:
            check_read_only(self.con, query)
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
    def dataset_dir(self, dataset: str) -> Path | str:
        """Where `dataset`'s parts go: a directory under data/, or (data at a URL) the dataset's URL
        with the location's options, which write_part_file opens anywhere (Ray workers too)."""
        if not _DATASET_RE.match(dataset) or ".." in dataset.split("/"):
            raise ValueError(f"invalid dataset name {dataset!r}")
        if self.data is not None:
            return self.data.locator(dataset)
        return self.root / DATA_DIR / dataset

    # -- the data location (protiso.store.fs) ---------------------------------------------
    def _attach_data(self, con: duckdb.DuckDBPyConnection) -> None:
        """The data location the catalog records (none: data/ beside it), and DuckDB reading it."""
        row = con.execute(Q.data_location).fetchall()
        if row and (self.data is None or self.data.location != row[0][0]):
            self.data = DataFS(row[0][0])
        if self.data is not None:
            with contextlib.suppress(duckdb.Error):       # already registered with this database
                con.register_filesystem(self.data.fsspec())

    def part_location(self, rel: str) -> Path | str:
        """The file (or URL) of a part the catalog lists as `rel` (data/<dataset>/<file>)."""
        if self.data is not None and rel.startswith(DATA_PREFIX):
            return self.data.uri(rel)
        return self.root / rel

    def part_problem(self, rel: str, size: int | None) -> str | None:
        """What a stat shows is wrong with a listed part: 'missing', 'changed ...', or None."""
        if self.data is None or not rel.startswith(DATA_PREFIX):
            return quick_problem(self.root / rel, size)
        now = self.data.size(rel)
        if now is None:
            return "missing"
        return f"changed (size {now:,} bytes, registered with {size:,})" if size is not None and now != size else None

    def part_digest(self, path: Path | str) -> tuple[int, str]:
        """(size, SHA-256) of a part file, local or at the data location."""
        return self.data.digest(str(path)) if is_url(path) and self.data is not None else file_digest(Path(path))

    def write_unregistered(self, dataset: str, table: pa.Table, metadata: dict | None = None
                           ) -> tuple[Path | str, int, str]:
        """Write a part of `dataset` (carrying `part_metadata`) without registering it: (path or
        URL, size, SHA-256). The caller registers it (`register_part`) or deletes it."""
        meta = self.part_metadata(dataset, metadata)
        if self.data is not None:
            return write_part_url(self.dataset_dir(dataset), table, meta)
        final = write_part_file(self.dataset_dir(dataset), table, meta)
        return (final, *file_digest(final))

    def remove_file(self, path: Path | str) -> None:
        """Delete an (unregistered) part file, local or at the data location."""
        if is_url(path) and self.data is not None:
            self.data.delete(str(path))
        else:
            Path(path).unlink(missing_ok=True)

    def part_metadata(self, dataset: str, metadata: dict | None = None) -> dict[str, str]:
        """Key-value metadata every part carries: store schema version, dataset, software
        version, plus what the caller adds (run id, model, layers, dimension, dtype)."""
        meta = {"protiso.schema_version": str(schema_version()), "protiso.dataset": dataset,
                "protiso.software_version": __version__}
        meta.update({(k if k.startswith("protiso.") else f"protiso.{k}"): str(v)
                     for k, v in (metadata or {}).items() if v is not None})
        return meta

    def write_part(self, dataset: str, table: pa.Table, metadata: dict | None = None) -> Path:
        """Write `table` as a new Parquet part of `dataset` and list it in the catalog.

        The file is written atomically (`write_part_file`, carrying `part_metadata`), then
        registered in `parts` in the current transaction (opened here if none is)."""
        self._check_writable()
        final, size, sha = self.write_unregistered(dataset, table, metadata)
        try:
            with self.transaction():
                self.register_part(dataset, final, table.num_rows, size, sha)
        except BaseException:
            self.remove_file(final)
            raise
        return final

    def register_part(self, dataset: str, path: Path, n_rows: int, size_bytes: int | None = None,
                      sha256: str | None = None) -> str:
        """List an existing Parquet file of `dataset` (written elsewhere, e.g. by a Ray worker,
        under the same `part-<uuid>.parquet` naming) in `parts` with its rows, size and SHA-256
        (computed here unless given), in the current transaction (opened here if none is); a
        rollback deletes the file. Registering a path twice fails. Returns its catalog path."""
        self._check_writable()
        if self.data is not None:
            rel = self.data.rel(str(path))
            if rel is None or rel.rsplit("/", 1)[0] != f"{DATA_PREFIX}{dataset}" or self.data.size(rel) is None:
                raise ProtisoError(f"part {path} is not a file of dataset {dataset} ({self.data.uri(dataset)})")
            path = self.data.uri(rel)
        else:
            path = Path(path)
            if path.parent.resolve() != self.dataset_dir(dataset).resolve() or not path.is_file():
                raise ProtisoError(f"part {path} is not a file of dataset {dataset} ({self.dataset_dir(dataset)})")
            rel = self.part_rel(path)
        if size_bytes is None or sha256 is None:
            size_bytes, sha256 = self.part_digest(path)
        with self.transaction():
            if self.scalar(Q.part_registered, {"path": rel}):
                raise ProtisoError(f"part {rel} is already registered")
            self._tx_files.append(path)
            self.execute(Q.register_part, {"dataset": dataset, "path": rel, "n_rows": int(n_rows),
                                           "size_bytes": int(size_bytes), "sha256": sha256})
            self._tx_parts_changed = True
        return rel

    def parts(self, dataset: str, lenient: bool = False) -> list[Path | str]:
        """Registered parts of `dataset` (files, or URLs at the data location), oldest first. A
        part that is missing or has changed size since it was registered is a DamagedStoreError
        naming it and `protiso repair`; `lenient` leaves damaged parts out instead (repair reads
        what remains; views are built that way for a store opened unchecked)."""
        return [self.part_location(rel) for rel in self.part_rels(dataset, lenient)]

    def part_rels(self, dataset: str, lenient: bool = False) -> list[str]:
        """As `parts`, but the catalog's paths (`data/<dataset>/<file>`), whatever the location."""
        rows = self.con.execute(Q.dataset_parts, {"dataset": dataset}).fetchall()
        ok, bad = [], []
        for rel, size in rows:
            problem = self.part_problem(rel, size)
            if problem is None:
                ok.append(rel)
            else:
                bad.append(Problem("part", rel, problem, dataset))
        if bad and not (lenient or self._lenient):
            raise DamagedStoreError(damage_message(self.root, bad))
        return ok

    def part_rel(self, path: Path | str) -> str:
        """The catalog path (`data/<dataset>/<file>`) of a part file or URL of this store."""
        if is_url(path):
            rel = self.data.rel(str(path)) if self.data is not None else None
            if rel is None:
                raise ProtisoError(f"{path} is not under the store's data location")
            return rel
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def read_part(self, rel: str, columns: list[str] | None = None, filters=None) -> pa.Table:
        """Read a listed part by its catalog path (pyarrow's read_table: `columns`, `filters`),
        from data/ or the data location alike."""
        if self.data is not None and rel.startswith(DATA_PREFIX):
            return self.data.read_table(rel, columns=columns, filters=filters)
        return pq.read_table(self.root / rel, columns=columns, filters=filters)

    def check_intact(self) -> None:
        """DamagedStoreError if any listed part is missing or changed size (a stat per part)."""
        require_intact(self)

    def delete_dataset(self, dataset: str) -> None:
        """Remove a dataset's parts from the catalog and disk."""
        self._check_writable()
        with self.transaction():
            self.execute(Q.delete_dataset, {"dataset": dataset})
            self._tx_parts_changed = True
        if self.data is not None:
            self.data.delete_dir(dataset)
        else:
            shutil.rmtree(self.dataset_dir(dataset), ignore_errors=True)

    def clean_orphan_parts(self, dataset: str) -> int:
        """Delete part files of `dataset` that the catalog does not list (written by a job killed
        before they were registered, e.g. by Ray workers) and leftover temporary files; returns
        how many. Callers run it when starting the one job that writes the dataset."""
        directory = self.dataset_dir(dataset)
        listed = {p for (p,) in self.con.execute(Q.listed_paths, {"dataset": dataset}).fetchall()}
        if self.data is not None:
            stale = [n for n in self.data.names(dataset) if (_PART_RE.match(n) and f"{DATA_PREFIX}{dataset}/{n}"
                                                             not in listed) or _TMP_RE.match(n)]
            for n in stale:
                self.data.delete(f"{DATA_PREFIX}{dataset}/{n}")
            return len(stale)
        if not directory.is_dir():
            return 0
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

        Views are TEMP so that read-only connections get them too (DuckDB users outside
        protiso get persistent ones, see registry.catalog_views). Inside a job with no open
        connection this is left to the next connect, which builds them."""
        if self._con is None and not self._hold:
            return
        con = self.con
        con.execute("SET VARIABLE protiso_root = ?", [self.root.as_posix()])
        for path in sorted((sql_dir() / "views").glob("*.sql")):
            _run_script(con, path)
        self._lenient = True
        try:
            for build in registry.VIEW_BUILDERS:
                build(self)
        finally:
            self._lenient = False

    # DuckDB's memory limit is a setting of the connection, not data: set on it directly (a
    # locked-down read-only connection refuses with duckdb.Error).
    def memory_limit(self) -> str:
        """DuckDB's memory limit on this connection, as DuckDB prints it (e.g. '18.8 GiB')."""
        return self.con.execute(Q.memory_limit).fetchone()[0]

    def set_memory_limit(self, limit: str) -> None:
        self.con.execute(Q.set_memory_limit, {"limit": limit})

    def restore_memory_limit(self, before: str) -> None:
        """Put the memory limit read by `memory_limit()` back: RESET first, and set it only where it
        differs, because DuckDB prints the limit rounded (setting the printed value back would
        lower it a little each time)."""
        self.con.execute(Q.reset_memory_limit)
        if self.memory_limit() != before:
            self.set_memory_limit(before)

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def _check_writable(self) -> None:
        if self.read_only:
            raise ProtisoError(f"store {self.root} is open read-only")


_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_READS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA}


def _used(statement: str, params: dict) -> dict:
    """The named parameters a statement refers to (DuckDB refuses unused ones)."""
    names = set(_PARAM_RE.findall(statement))
    return {k: v for k, v in params.items() if k in names}


def _writes(con: duckdb.DuckDBPyConnection, query: str) -> bool:
    """Whether any statement of `query` is not a plain read (by DuckDB's parser)."""
    try:
        return any(s.type not in _READS for s in con.extract_statements(query))
    except (duckdb.Error, ValueError):
        return True


def _run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        con.execute(path.read_text())
    except duckdb.Error as exc:
        raise ProtisoError(f"{path.name}: {exc}") from exc


def _catalog_exists(catalog: Path) -> bool:
    return catalog.is_file()


def open_store(path: str | os.PathLike | None = None, read_only: bool = False, create: bool = False,
               wait: float | None = None, check: bool = True, data: str | None = None) -> Store:
    """Open the store at `path`; `create=True` makes it when there is none (only commands that
    write create a store), otherwise a missing store is NotFoundError('no store at PATH').

    Waits at most `wait` seconds (default: lock_timeout()) while another process holds a
    conflicting lock on the catalog, then StoreBusyError. With `check` (the default) a store
    whose listed parts are missing or changed is a DamagedStoreError naming them and
    `protiso repair`; `check=False` opens it anyway (verify, repair, info). `data`: keep the
    parts of a new store at this URL (s3://bucket/prefix, ..., see protiso.store.fs) instead of
    data/ beside the catalog; an existing store must be opened with its own location or none."""
    root = resolve_store_path(path)
    catalog = root / CATALOG_NAME
    if root.exists() and not root.is_dir():
        raise ProtisoError(f"store path {root} exists and is not a directory")
    if not _catalog_exists(catalog):
        if read_only or not create:
            raise NotFoundError(f"no store at {root} (no {CATALOG_NAME}); create one with "
                                "`protiso ingest` (or check the store path)")
        root.mkdir(parents=True, exist_ok=True)
    store = Store(root, None, read_only)
    try:
        try:
            store._connect(read_only=read_only, lean=False, wait=wait)
        except MigrationsPending:        # an older store opened read-only: upgrade it once, then read
            upgrade = lock.connect(catalog, False, wait)
            try:
                apply_migrations(upgrade, False, root)
            finally:
                upgrade.close()
            store._connect(read_only=read_only, lean=False, wait=wait)
        if data is not None:
            _set_data_location(store, data)
        if check:
            store.check_intact()
    except BaseException:
        store.close()
        raise
    return store


def _set_data_location(store: Store, location: str) -> None:
    """Record a new store's data location (a URL), or check an existing store's."""
    if not is_url(location):
        raise ProtisoError(f"data location {location!r} is not a URL like s3://bucket/prefix")
    DataFS(location)                      # opens, or says why not
    current = store.data.location if store.data is not None else None
    if current == location:
        return
    if current is not None or store.scalar(Q.any_part):
        raise ProtisoError(f"store {store.root} keeps its data at {current or store.root / DATA_DIR}; "
                           f"it cannot move to {location}")
    with store.transaction():
        store.execute(Q.set_data_location, {"location": location})
    store.release()                       # reconnect: DuckDB reads the new location
    store.refresh_views()


def discard_new_store(root: Path, root_existed: bool) -> None:
    """Remove a store this process created whose first command failed, leaving nothing: the
    whole directory if it did not exist before, else only the catalog and data/."""
    root = Path(root)
    if not root_existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in (CATALOG_NAME, CATALOG_NAME + ".wal"):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / DATA_DIR, ignore_errors=True)
