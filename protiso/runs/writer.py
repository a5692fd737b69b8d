"""Writing a run: opening (or resuming) its catalog row, and `RunWriter`, which commits parts,
per-protein statuses, counters and statistics checkpoints together in one transaction."""
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
from protiso.runs.catalog import Q, RUN_ID_RE, Run, get_run, new_run_id
from protiso.store import Store

STATUS_FIELDS = ["accession", "status", "length", "n_residues", "reason", "in_stats", "local_stored"]
COUNTERS = ("n_done", "n_truncated", "n_chunked", "n_skipped", "n_failed", "n_residues")


@dataclass
class Chunk:
    """Finished work of an embedder since its last `take`: Arrow tables per dataset (or, once
    written by a Ray worker, `parts` = [(dataset, path, n_rows)]), per-protein statuses, counters
    and the per-residue-type statistics of just these proteins (layer -> aa -> stats)."""

    tables: list[tuple[str, pa.Table]]
    statuses: list[tuple]
    counts: dict
    stats: dict[int, dict[str, SufficientStats]] | None
    n_proteins: int
    residues: int
    parts: list[tuple[str, str, int]] = field(default_factory=list)
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
    (resumed) or new."""
    import importlib.metadata as md

    existing = store.scalar(Q.run_by_key, {"key": key})
    versions = {}
    for pkg in ("torch", "transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    details = json.dumps({**cfg.details, "versions": versions, "chunk_overlap": cfg.overlap})
    params = {"device": cfg.device, "max_tokens": cfg.max_tokens, "filter": subset.where,
              "load_seconds": load_seconds, "version": __version__, "details": details, "parity": cfg.parity_cos}
    if existing:
        store.execute(Q.resume_run, {**params, "run_id": existing})
        return get_run(store, existing)
    run_id = new_run_id(model, key)
    if not RUN_ID_RE.match(run_id) or store.scalar(Q.run_id_taken, {"run_id": run_id}):
        run_id = f"run-{key}"
    store.execute(Q.insert_run, {
        **params, "run_id": run_id, "key": key, "model": model, "model_id": cfg.model_id,
        "revision": cfg.revision, "family": cfg.family, "dim": cfg.dim, "num_layers": cfg.num_layers,
        "layers": cfg.layers, "pooling": cfg.pooling, "dtype": cfg.dtype, "dtype_requested": cfg.dtype_requested,
        "policy": policy, "max_length": cfg.max_length})
    return get_run(store, run_id)


class RunWriter:
    """The one writer of a run's data (always in the driver process): takes Chunks, and at each
    flush writes (local) or registers (Ray) their parts, the per-protein statuses, the run's
    counters and the merged statistics checkpoint, all in one transaction. Used by `embed`,
    derived runs (transforms) and imports."""

    def __init__(self, store: Store, run: Run, cfg, local_stats: bool, flush_seconds: float,
                 flush_rows: int):
        self.store, self.run, self.cfg = store, run, cfg
        self.flush_seconds, self.flush_rows = flush_seconds, flush_rows
        self.local_stats = local_stats
        self.stats: dict[int, dict[str, SufficientStats]] | None = None
        self.chunks: list[Chunk] = []
        self.skipped: list[tuple] = []
        self.last_flush = time.perf_counter()
        self.stats_write_seconds = 0.0

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
        time: at most every 10x the last checkpoint's write time."""
        rows = self.pending() + extra_rows
        interval = max(self.flush_seconds, 10 * self.stats_write_seconds)
        return bool(rows) and (rows >= self.flush_rows or extra_local_values >= 16 << 20
                               or time.perf_counter() - self.last_flush >= interval)

    def flush(self, final_status: str | None = None) -> None:
        store, run = self.store, self.run
        statuses = self.skipped + [s for c in self.chunks for s in c.statuses]
        counts = dict.fromkeys(COUNTERS, 0)
        counts["n_skipped"] = len(self.skipped)
        for c in self.chunks:
            for k in counts:
                counts[k] += c.counts.get(k, 0) if k != "n_skipped" else 0
        new_files: list[Path] = []
        old_files: list[Path] = []
        merged = None
        elapsed = time.perf_counter() - self.last_flush
        try:
            with store.transaction():
                for c in self.chunks:
                    for dataset, table in c.tables:
                        store.write_part(dataset, table)
                    for dataset, path, n_rows in c.parts:
                        store.register_part(dataset, Path(path), n_rows)
                if statuses:
                    st = pa.table(list(zip(*statuses)), names=STATUS_FIELDS)
                    store.con.register("_protiso_status", st)
                    try:
                        store.execute(Q.merge_statuses, {"run_id": run.run_id})
                    finally:
                        store.con.unregister("_protiso_status")
                if self.stats is not None and any(s[5] for s in statuses):
                    merged = {la: dict(per) for la, per in self.stats.items()}
                    for c in self.chunks:
                        for la, per in (c.stats or {}).items():
                            for aa, s in per.items():
                                merged[la][aa] = merged[la][aa] + s if aa in merged[la] else s
                    stats_dir = store.root / "data" / "localstats" / run.run_id
                    stats_dir.mkdir(parents=True, exist_ok=True)
                    n_prot = sum(1 for s in statuses if s[5])
                    t_stats = time.perf_counter()
                    for la, per in merged.items():
                        path = stats_dir / f"layer{la}-{uuid.uuid4().hex[:12]}.npz"
                        write_stats_file(path, per)
                        new_files.append(path)
                        old = store.scalar(Q.stats_path, {"run_id": run.run_id, "layer": la})
                        if old:
                            old_files.append(store.root / old)
                        store.execute(Q.upsert_stats, {
                            "run_id": run.run_id, "layer": la, "path": path.relative_to(store.root).as_posix(),
                            "added": n_prot, "n_residues": sum(s.n for s in per.values())})
                    self.stats_write_seconds = time.perf_counter() - t_stats
                store.execute(Q.add_counts, {**counts, "run_id": run.run_id, "seconds": elapsed,
                                             "status": final_status, "local_stats": self.stats is not None})
        except BaseException:
            for f in new_files:
                f.unlink(missing_ok=True)
            raise
        for f in old_files:
            f.unlink(missing_ok=True)
        if merged is not None:
            self.stats = merged
        self.chunks, self.skipped = [], []
        self.last_flush = time.perf_counter()


