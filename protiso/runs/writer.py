"""Writing a run: opening (or resuming) its catalog row, and `RunWriter`, which commits parts,
per-protein statuses (one status part per commit, protiso.runs.status), counters (added, never
recounted) and statistics checkpoints together in one short transaction; and the persistent
catalog views over runs' parts for DuckDB users outside protiso."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from protiso._version import __version__
from protiso.isotropy.stats import SufficientStats, load_stats_map, save_stats_map
from protiso.query import Subset
from protiso.errors import StoreBusyError
from protiso.runs.status import move_legacy, next_seq, status_dataset, status_table
from protiso.runs.catalog import Q, RUN_ID_RE, Run, embeddings_dataset, get_run, new_run_id, view_name
from protiso.store import DATA_DIR, Store, quote_ident, queries, registry, sql_literal
from protiso.store.lock import lock_timeout, process_alive, this_process

SQ = queries("store")

STATUS_FIELDS = ["accession", "status", "length", "n_residues", "reason", "in_stats", "local_stored"]
# n_failed: new failures; n_retried: proteins that had failed before and got a new status (the
# run's n_failed changes by n_failed - n_retried)
COUNTERS = ("n_done", "n_truncated", "n_chunked", "n_skipped", "n_failed", "n_retried", "n_residues")


@dataclass
class Chunk:
    """Finished work of an embedder since its last `take`: Arrow tables per dataset (or, once
    written by a Ray worker, `parts` = [(dataset, path, n_rows, size_bytes, sha256)]: the worker
    reports each part's size and checksum, so the driver does not read the part back),
    per-protein statuses (STATUS_FIELDS; status None = unchanged, for proteins that already
    have a vector), counters (COUNTERS) and the per-residue-type statistics of just these
    proteins (layer -> aa -> stats)."""

    tables: list[tuple[str, pa.Table]]
    statuses: list[tuple]
    counts: dict
    stats: dict[int, dict[str, SufficientStats]] | None
    n_proteins: int
    residues: int
    parts: list[tuple] = field(default_factory=list)
    indices: np.ndarray | None = None     # the proteins' slots in the todo list (Ray: duplicate guard)




def vectors_table(accessions, layers, vectors: np.ndarray) -> pa.Table:
    """The one layout of a part of global vectors: accession, layer (int16), embedding
    (FLOAT[d]). `layers` is one layer for all rows or one per row."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    layer_col = np.full(n, layers, np.int16) if np.isscalar(layers) else np.asarray(layers, np.int16)
    return pa.table({
        "accession": pa.array(list(accessions), pa.string()),
        "layer": pa.array(layer_col, pa.int16()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)})


def residues_table(accessions, layers, sequences, matrices) -> pa.Table:
    """The layout of a part of per-residue vectors (`local/<run_id>`, as `embed --store-local`
    writes it): accession, layer (int16), position (int32), residue (one letter), embedding
    (FLOAT[d]); one row per residue of each (accession, layer, sequence, (L, d) matrix)."""
    lens = np.array([len(s) for s in sequences], dtype=np.int64)
    dim = matrices[0].shape[1]
    flat = np.concatenate([np.asarray(m, dtype=np.float32) for m in matrices]).ravel()
    layer_col = np.repeat(np.asarray(layers, np.int16) if not np.isscalar(layers)
                          else np.full(len(lens), layers, np.int16), lens)
    return pa.table({
        "accession": pa.array(np.repeat(np.asarray(list(accessions), dtype=object), lens), pa.string()),
        "layer": pa.array(layer_col, pa.int16()),
        "position": pa.array(np.concatenate([np.arange(k) for k in lens]), pa.int32()),
        "residue": pa.array([c for s in sequences for c in s], pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)})


def write_stats_file(path: Path, stats: dict[str, SufficientStats]) -> None:
    """Write a layer's per-residue-type statistics atomically (temporary name, fsync, rename)."""
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as fh:
        save_stats_map(stats, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def open_run(store: Store, model: str, cfg, key: str, policy: str, subset: Subset,
              load_seconds: float) -> Run:
    """The run of this configuration (`cfg`: an embedding.ModelConfig or the like): existing
    (resumed) or new, with this invocation (filter, pid, host) recorded in one transaction.
    A run another live process is embedding right now is a StoreBusyError."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    details = json.dumps({**cfg.details, "versions": versions, "chunk_overlap": cfg.overlap})
    params = {"device": cfg.device, "max_tokens": cfg.max_tokens, "filter": subset.where,
              "load_seconds": load_seconds, "version": __version__, "details": details, "parity": cfg.parity_cos}
    me = this_process()
    with store.transaction():
        existing = store.scalar(Q.run_by_key, {"key": key})
        if existing:
            live = _live_invocation(store, existing)
            if live is not None:
                raise StoreBusyError(f"run {existing} is being embedded by process {live[0]} on {live[1]} "
                                     f"(since {live[2]:%Y-%m-%d %H:%M:%S}); wait for it to finish or stop it")
            store.execute(Q.resume_run, {**params, "run_id": existing})
            run_id = existing
        else:
            run_id = new_run_id(model, key)
            if not RUN_ID_RE.match(run_id) or store.scalar(Q.run_id_taken, {"run_id": run_id}):
                run_id = f"run-{key}"
            store.execute(Q.insert_run, {
                **params, "run_id": run_id, "key": key, "model": model, "model_id": cfg.model_id,
                "revision": cfg.revision, "family": cfg.family, "dim": cfg.dim, "num_layers": cfg.num_layers,
                "layers": cfg.layers, "pooling": cfg.pooling, "dtype": cfg.dtype, "dtype_requested": cfg.dtype_requested,
                "policy": policy, "max_length": cfg.max_length})
        store.execute(Q.record_invocation, {"run_id": run_id, "filter": subset.where, **me})
        move_legacy(store, lambda r: {"run_id": r})    # stores from before migration 012
    return get_run(store, run_id)


def _live_invocation(store: Store, run_id: str) -> tuple | None:
    """(pid, host, started_at) of another live process embedding the run, else None (the
    transaction's connection may lack views, so liveness is checked here, not in SQL)."""
    rows = store.execute(Q.latest_invocation, {"run_id": run_id}).fetchall()
    if not rows:
        return None
    status, pid, host, pid_start, started = rows[0]
    if status != "running" or pid is None or not process_alive(host, pid, pid_start):
        return None
    me = this_process()
    if pid == me["pid"] and host == me["host"]:
        return None
    return pid, host, started


def part_metadata(run: Run, dataset: str) -> dict:
    """What each of a run's parts says about itself (beside the store's own keys)."""
    return {"run_id": run.run_id, "model": run.model, "model_id": run.model_id, "revision": run.revision,
            "layers": json.dumps([int(x) for x in run.layers]), "dim": run.dim, "dtype": run.dtype,
            "pooling": run.pooling, "level": "local" if dataset.startswith("local/") else "global"}


class RunWriter:
    """The one writer of a run's data (always in the driver process): takes Chunks, and at each
    flush writes (local) or checks (Ray) their parts, the per-protein statuses, the run's
    counters and the merged statistics checkpoint. Files are written before the catalog is
    opened; the commit (registration, statuses, counters, checkpoint) is one short transaction.
    When the catalog is busy (readers, another job's commit) a flush is deferred and retried
    while the buffered work stays small. Used by `embed`, derived runs (transforms) and imports."""

    def __init__(self, store: Store, run: Run, cfg, local_stats: bool, flush_seconds: float,
                 flush_rows: int):
        self.store, self.run, self.cfg = store, run, cfg
        self.flush_seconds, self.flush_rows = flush_seconds, flush_rows
        self.local_stats = local_stats
        self.stats: dict[int, dict[str, SufficientStats]] | None = None
        self.chunks: list[Chunk] = []
        self.skipped: list[tuple] = []
        self.written: list[tuple[str, Path, int, int, str]] = []   # (dataset, path, rows, size, sha256)
        self.pending_stats: dict | None = None     # statistics of deferred chunks, folded together
        self.last_flush = time.perf_counter()
        self.next_try = 0.0
        self.deferred = 0
        self.stats_write_seconds = 0.0
        self.seq = next_seq(store, run.run_id) - 1     # last status part committed

    def load_stats(self) -> None:
        """Current statistics of the run's layers; files a crashed flush left behind are removed."""
        store, run = self.store, self.run
        live = {store.root / p for (p,) in store.execute(Q.stats_paths, {"run_id": run.run_id}).fetchall()}
        for f in (store.root / "data" / "localstats" / run.run_id).glob("*.npz"):
            if f not in live:
                f.unlink(missing_ok=True)
        self.stats = {}
        for la in self.cfg.layers:
            rel = store.scalar(Q.stats_path, {"run_id": run.run_id, "layer": la})
            self.stats[la] = load_stats_map(store.root / rel) if rel else {}

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    def pending(self) -> int:
        return len(self.skipped) + sum(len(c.statuses) for c in self.chunks)

    def due(self, extra_rows: int = 0, extra_local_values: int = 0) -> bool:
        """Time to flush: enough rows, enough per-residue vectors, or enough time; writing the
        statistics checkpoint (d x d per residue type and layer) stays a small fraction of the
        time: at most every 10x the last checkpoint's write time. After a deferred flush the
        next try waits a little (unless the buffer has grown large)."""
        rows = self.pending() + extra_rows
        now = time.perf_counter()
        if now < self.next_try and rows < self.defer_limit():
            return False
        interval = max(self.flush_seconds, 10 * self.stats_write_seconds)
        return bool(rows) and (rows >= self.flush_rows or extra_local_values >= 16 << 20
                               or now - self.last_flush >= interval)

    def _write_files(self) -> None:
        """Write the chunks' tables as part files (outside the catalog lock) and checksum them."""
        store = self.store
        for c in self.chunks:
            for dataset, table in c.tables:
                path, size, sha = store.write_unregistered(dataset, table, part_metadata(self.run, dataset))
                self.written.append((dataset, path, table.num_rows, size, sha))
            for dataset, path, n_rows, *digest in c.parts:     # written by Ray workers (local path or URL)
                self.written.append((dataset, path, n_rows, *(digest if len(digest) == 2 else store.part_digest(path))))
            c.tables, c.parts = [], []

    def defer_limit(self) -> int:
        """Statuses a flush may keep buffered while the catalog is busy (their vectors are
        already in part files, so this bounds only the statuses and statistics held)."""
        return max(4 * self.flush_rows, DEFER_ROWS)

    @staticmethod
    def _add_stats(into: dict, more: dict | None) -> dict:
        for la, per in (more or {}).items():
            layer = into.setdefault(la, {})
            for aa, s in per.items():
                layer[aa] = layer[aa] + s if aa in layer else s
        return into

    def _merged_stats(self) -> dict | None:
        if self.stats is None:
            return None
        merged = self._add_stats({la: dict(per) for la, per in self.stats.items()}, self.pending_stats)
        for c in self.chunks:
            self._add_stats(merged, c.stats)
        return merged

    def flush(self, final_status: str | None = None) -> bool:
        """Commit what is buffered; returns False when the catalog was busy and the flush was
        deferred (only for non-final flushes while the buffer is below `defer_limit()`)."""
        store, run = self.store, self.run
        statuses = [s for s in self.skipped + [s for c in self.chunks for s in c.statuses]
                    if s[1] is not None or s[5] or s[6]]          # rows that change nothing are dropped
        counts = dict.fromkeys(COUNTERS, 0)
        counts["n_skipped"] = len(self.skipped)
        for c in self.chunks:
            for k in counts:
                counts[k] += c.counts.get(k, 0) if k != "n_skipped" else 0
        deferrable = final_status is None and len(statuses) < self.defer_limit()
        elapsed = time.perf_counter() - self.last_flush
        new_files: list[Path] = []
        old_files: list[Path] = []
        merged = None
        status_part = None
        seq = self.seq + 1 if statuses else self.seq
        try:
            self._write_files()
            if statuses:       # one small status part per commit (protiso.runs.status)
                dataset = status_dataset(run.run_id)
                table = status_table(statuses, seq)
                status_part = (dataset, *store.write_unregistered(dataset, table, {"run_id": run.run_id}),
                               table.num_rows)
            n_prot = sum(1 for s in statuses if s[5])
            if self.stats is not None and n_prot:
                merged = self._merged_stats()
                stats_dir = store.root / "data" / "localstats" / run.run_id
                stats_dir.mkdir(parents=True, exist_ok=True)
                t_stats = time.perf_counter()
                for la, per in merged.items():
                    path = stats_dir / f"layer{la}-{uuid.uuid4().hex[:12]}.npz"
                    write_stats_file(path, per)
                    new_files.append(path)
                self.stats_write_seconds = time.perf_counter() - t_stats
            with store.transaction(wait=DEFER_WAIT if deferrable else max(lock_timeout(), FINAL_WAIT)):
                for dataset, path, n_rows, size, sha in self.written:
                    store.register_part(dataset, path, n_rows, size, sha)
                if status_part is not None:
                    dataset, path, size, sha, n_rows = status_part
                    store.register_part(dataset, path, n_rows, size, sha)
                for la, path in zip(merged or {}, new_files):
                    old = store.scalar(Q.stats_path, {"run_id": run.run_id, "layer": la})
                    if old:
                        old_files.append(store.root / old)
                    store.execute(Q.upsert_stats, {
                        "run_id": run.run_id, "layer": la, "path": path.relative_to(store.root).as_posix(),
                        "added": n_prot, "n_residues": sum(s.n for s in merged[la].values())})
                store.execute(Q.add_counts, {**counts, "run_id": run.run_id, "seconds": elapsed, "seq": seq,
                                             "status": final_status, "local_stats": self.stats is not None})
        except StoreBusyError:
            for f in new_files:
                f.unlink(missing_ok=True)
            if status_part is not None:       # written again, with what is buffered then, at the next try
                store.remove_file(status_part[1])
            if deferrable:       # keep the written parts and the statuses; try again a bit later
                pending = self.pending_stats or {}
                for c in self.chunks:
                    pending = self._add_stats(pending, c.stats)
                    c.stats = None
                self.pending_stats = pending if self.stats is not None else None
                self.deferred += 1
                self.next_try = time.perf_counter() + min(2.0, 0.1 * 2 ** min(self.deferred, 5))
                return False
            self._drop()
            raise
        except BaseException:
            for f in new_files:
                f.unlink(missing_ok=True)
            if status_part is not None:
                store.remove_file(status_part[1])
            self._drop()
            raise
        for f in old_files:
            f.unlink(missing_ok=True)
        if merged is not None:
            self.stats = merged
        self.seq = seq
        self.chunks, self.skipped, self.written = [], [], []
        self.pending_stats = None
        self.deferred, self.next_try = 0, 0.0
        self.last_flush = time.perf_counter()
        return True

    def write_ahead(self) -> None:
        """Write the buffered tables as part files now, before the commit (a job that commits
        once, such as an import, keeps memory bounded so); the next flush registers them,
        `discard` deletes them."""
        self._write_files()

    def discard(self) -> None:
        """Forget the buffered work and delete part files written but not committed."""
        self._drop()

    def _drop(self) -> None:
        """Forget buffered work after a failed commit (its proteins are redone next time)."""
        for _, path, *_ in self.written:
            self.store.remove_file(path)
        self.chunks, self.skipped, self.written = [], [], []
        self.pending_stats = None


DEFER_WAIT = 0.0         # a non-final flush tries the catalog once and defers if it is held
DEFER_ROWS = 100_000     # statuses a job keeps buffered at most while readers hold the catalog
FINAL_WAIT = 600.0       # the last commit of a job waits longer (its work is lost otherwise)


@registry.catalog_views
def portable_views(store: Store) -> None:
    """Persistent views in the catalog for DuckDB users outside protiso (protiso's own TEMP
    views of the same names shadow them): `embeddings_<run_id>` and `embeddings` with
    FLOAT[dim] vectors, over each run's parts by a glob relative to the store root (open the
    catalog with the store directory as working directory, or SET file_search_path to it).
    Re-created only when the set of runs with parts changes."""
    want = {}
    for run_id, model, dim in store.execute(Q.view_sources).fetchall():
        dataset = embeddings_dataset(run_id)
        if (RUN_ID_RE.match(run_id) and store.data is None and store.scalar(Q.run_has_parts, {"dataset": dataset})
                and any(store.dataset_dir(dataset).glob("part-*.parquet"))):
            want[view_name(run_id)] = (run_id, model, int(dim))
    have = {v for (v,) in store.execute(SQ.catalog_views).fetchall()}
    wanted = set(want) | ({"embeddings"} if want else set())
    stale = {v for v in have if v == "embeddings" or v.startswith("embeddings_")}
    if wanted == stale:
        return
    for v in stale - wanted:
        store.con.execute(f"DROP VIEW IF EXISTS main.{quote_ident(v)}")
    bodies = []
    dims = {d for _, _, d in want.values()}
    cast = f"FLOAT[{next(iter(dims))}]" if len(dims) == 1 else "FLOAT[]"
    for name, (run_id, model, dim) in want.items():
        glob = sql_literal(f"{DATA_DIR}/{embeddings_dataset(run_id)}/part-*.parquet")
        select = (f"SELECT accession, {sql_literal(run_id)} AS run_id, {sql_literal(model)} AS model, layer, "
                  f"embedding::FLOAT[{dim}] AS embedding FROM read_parquet({glob})")
        store.con.execute(f"CREATE OR REPLACE VIEW main.{quote_ident(name)} AS {select}")
        bodies.append(f"SELECT accession, run_id, model, layer, embedding::{cast} AS embedding FROM ({select})")
    if bodies:
        store.con.execute(f"CREATE OR REPLACE VIEW main.embeddings AS {' UNION ALL '.join(bodies)}")
