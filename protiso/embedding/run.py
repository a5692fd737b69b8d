"""`embed`: protein language model -> pooled (global) vectors in Parquet, with provenance.

A run is one configuration of a model, keyed by (model id, revision, layers, pooling, dtype,
length policy, max length). `embed` resumes the run of its configuration: proteins already
embedded are skipped; finished work is committed in parts by the run writer together with the
per-protein statuses, the run's counters and (with local stats) the per-residue-type statistics.
A crash loses at most the work since the last flush; Ctrl-C flushes what is finished first.
The job holds the store's catalog only while it reads its plan and while it commits
(`Store.job`), so readers can query the store at any moment of the run.

Global embedding = mean of the residue vectors (never special or padding tokens) for each
requested layer; models with a global output (ProteinBERT) are used as they are.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from protiso.embedding.compute import Chunk, EmbedProgress, Embedder, Protein
from protiso.embedding.config import (DTYPE_CHOICES, ENGINES, LENGTH_POLICIES, choice, resolve_config)
from protiso.embedding.plan import plan_windows, probe_sequences, select_todo, walk_plan
from protiso.errors import InputError, ProtisoError, StoreBusyError
from protiso.models import ModelAdapter, load
from protiso.models.registry import DEFAULT_MODEL
from protiso.query import Subset, as_subset
from protiso.runs import Run, RunWriter, get_run, local_dataset, matrix, open_run, run_key
from protiso.runs.catalog import Q
from protiso.runs.status import status_dataset
from protiso.store import Store


def embed(store: Store, model: str | None = None, where: str | Subset | None = None, layers="last",
          device: str = "auto", dtype: str = "auto", max_tokens: int | None = None,
          max_length: int | None = None, long: str = "truncate", local_stats: bool = False,
          store_local: bool = False, chunk_overlap: int | None = None,
          progress: Callable[[EmbedProgress], None] | None = None, flush_seconds: float = 10.0,
          flush_rows: int | None = None, window: int = 4096, adapter: ModelAdapter | None = None,
          offline: bool | None = None, limit: int | None = None, weights: str | None = None,
          engine: str = "local", ray_options: dict | None = None, plan_only: bool = False) -> Run:
    """Embed the proteins matching `where` (all by default) with `model` and return the run.

    Resumes the run with the same configuration. layers: 'last' | 'all' | '0,3,-1' | list.
    long: what to do with proteins longer than max_length (default: the model's limit):
    'truncate' (first max_length residues), 'chunk' (overlapping windows, residue vectors
    averaged back) or 'skip'; recorded per protein in `run_proteins` (a view over the run's
    status parts, protiso.runs.status).
    local_stats: accumulate per-residue-type SufficientStats per layer (`load_local_stats`).
    store_local: also write per-residue vectors (dataset local/<run_id>) of these proteins.
    adapter: an already loaded model (tests, benchmarks); `model` is then its name for the run.
    limit: embed at most this many of the remaining proteins (then stop; resumable).
    weights: a weights file for models that need one (ProteinBERT).
    flush_seconds/flush_rows: write a part at least this often (seconds) or at this many proteins
    (default: ~64 MB of buffered vectors), which bounds both memory and the work a crash loses.
    engine: 'local' (this process) or 'ray' (actors on a Ray cluster, see embedding.engines.ray;
    ray_options: address, workers, gpus_per_worker, cpus_per_worker, task_rows). Both select the
    same proteins and produce the same rows; only this process writes the catalog.
    plan_only: walk the plan (select, read every page, cut windows, batches and Ray tasks)
    without embedding or writing anything, and return its `plan.PlanReport` instead of the run."""
    store._check_writable()
    model = model or DEFAULT_MODEL
    choice(engine, ENGINES, "engine")
    choice(long, LENGTH_POLICIES, "length policy")
    choice(dtype, DTYPE_CHOICES, "dtype")
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"token budget must be positive, got {max_tokens}")
    with store.job():      # the catalog is held only while reading the plan and while committing
        return _embed(store, model, where, layers, device, dtype, max_tokens, max_length, long, local_stats,
                      store_local, chunk_overlap, progress, flush_seconds, flush_rows, window, adapter,
                      offline, limit, weights, engine, ray_options, plan_only)


def _embed(store: Store, model: str, where, layers, device: str, dtype: str, max_tokens, max_length, long: str,
           local_stats: bool, store_local: bool, chunk_overlap, progress, flush_seconds: float, flush_rows,
           window: int, adapter, offline, limit, weights, engine: str, ray_options, plan_only: bool = False) -> Run:
    subset = as_subset(store, where)
    probe = probe_sequences(store, subset) if dtype == "auto" else []
    store.release()        # no catalog connection while the model loads
    settings = dict(layers=layers, dtype=dtype, max_tokens=max_tokens, max_length=max_length, long=long,
                    local_stats=local_stats, store_local=store_local, chunk_overlap=chunk_overlap, probe=probe)
    t_load = time.perf_counter()
    ray_engine = None
    if engine == "ray":
        if adapter is not None:
            raise InputError("engine 'ray' loads the model on its workers: pass a model name, not an adapter")
        from protiso.embedding.engines.ray import RayEmbedEngine   # optional extra: imported on use
        ray_engine = RayEmbedEngine(model, device, weights, offline, **(ray_options or {}))
        cfg = ray_engine.resolve(settings)
    else:
        if adapter is None:
            adapter = load(model, device, weights, offline)
        cfg = resolve_config(adapter, **settings)
    load_seconds = time.perf_counter() - t_load
    if flush_rows is None:   # bound the buffered vectors (~64 MB) whatever the width and layers
        flush_rows = max(16, min(20000, (16 << 20) // (cfg.dim * len(cfg.layers) * (4 if store_local else 1))))

    key = run_key(cfg.model_id, cfg.revision, cfg.layers, cfg.pooling, cfg.dtype, long, cfg.max_length)
    if plan_only:
        return walk_plan(store, store.scalar(Q.run_by_key, {"key": key}) or "", subset, cfg.max_length, cfg.overlap,
                         cfg.max_tokens, long, local_stats, store_local, limit, window,
                         workers=ray_engine.workers if ray_engine else None,
                         task_rows=ray_engine.task_rows if ray_engine else None)
    run = open_run(store, model, cfg, key, long, subset, load_seconds)
    for ds in (run.dataset, local_dataset(run.run_id), status_dataset(run.run_id)):
        store.parts(ds)                       # a lost or changed part: repair first, or it is never redone
        store.clean_orphan_parts(ds)          # files of a killed job that never got registered
    todo = select_todo(store, run, subset, local_stats, store_local, limit)
    committer = RunWriter(store, run, cfg, local_stats, flush_seconds, flush_rows)
    if local_stats:
        committer.load_stats()
    store.release()        # from here on the catalog is opened only to commit
    n_total, res_total = todo.n_total, todo.res_total
    done = {"n": 0, "res": 0, "failed": 0}     # skipped proteins and handed-over chunks
    t0 = time.perf_counter()
    status = "interrupted"
    worker = None
    busy = False
    try:
        windows = plan_windows(todo, cfg.max_length, long, local_stats, store_local, window)
        if ray_engine is not None:
            def on_chunk(chunk: Chunk | None, skipped: list[tuple]) -> None:
                if chunk is not None:
                    committer.add(chunk)
                    done["n"] += chunk.n_proteins
                    done["res"] += chunk.residues
                    done["failed"] += chunk.counts["n_failed"]
                committer.skipped.extend(skipped)
                done["n"] += len(skipped)
                done["res"] += sum(s[2] for s in skipped)
                if progress:
                    progress(EmbedProgress(n_total, done["n"], res_total, done["res"],
                                           time.perf_counter() - t0, done["failed"]))
                if committer.due():
                    committer.flush()
            ray_engine.run(store, run, cfg, long, local_stats, windows, n_total, on_chunk)
        else:
            worker = Embedder(adapter, cfg, run.run_id, long, local_stats)

            def after_batch() -> None:
                if progress:
                    progress(EmbedProgress(n_total, done["n"] + worker.n_processed, res_total,
                                           done["res"] + worker.residues_processed, time.perf_counter() - t0,
                                           done["failed"] + worker.counts["n_failed"]))
                if committer.due(len(worker.pending_status), worker.pending_local_residues * cfg.dim):
                    chunk = worker.take()
                    done["n"] += chunk.n_proteins
                    done["res"] += chunk.residues
                    done["failed"] += chunk.counts["n_failed"]
                    committer.add(chunk)
                    committer.flush()
            worker.after_batch = after_batch
            for _, prots, skipped in windows:
                committer.skipped.extend(skipped)
                done["n"] += len(skipped)
                done["res"] += sum(s[2] for s in skipped)
                worker.process(prots)
        status = "done"
    except StoreBusyError:
        busy = True          # the catalog stayed busy past the lock timeout: nothing more can be committed
        raise
    finally:
        todo.remove()
        if not busy:
            # keep what is finished (also on Ctrl-C), then record how the invocation ended
            seconds = time.perf_counter() - t0
            if worker is not None:
                chunk = worker.take()
                done["res"] += chunk.residues
                committer.add(chunk)
            committer.flush(final_status=status)
            store.execute(Q.set_rate, {"run_id": run.run_id,
                                       "rate": done["res"] / seconds if seconds > 0 and done["res"] else None})
    return get_run(store, run.run_id)




def embed_sequences(run: Run, sequences: list[str], layer: int,
                    adapter: ModelAdapter | None = None) -> np.ndarray:
    """Global vectors (n, dim) of raw sequences with a run's model and settings (dtype, max
    length, --long policy, chunk overlap), through the same embedder as `embed`, so on-the-fly
    queries are comparable with the stored vectors. The model must still have the run's
    revision; `adapter` reuses an already loaded model."""
    if adapter is None:
        adapter = load(run.model, "cpu")
    if run.revision and adapter.revision != run.revision:
        raise InputError(f"model {run.model} now has revision {adapter.revision}; run {run.run_id} was "
                         f"embedded with {run.revision}: on-the-fly vectors would not be comparable")
    cfg = resolve_config(adapter, [layer], run.dtype, None, run.max_length, run.length_policy, False,
                         False, run.details.get("chunk_overlap"), probe=[])
    proteins = []
    for i, seq in enumerate(sequences):
        status = "done"
        if len(seq) > cfg.max_length:
            if run.length_policy == "skip":
                raise InputError(f"query of {len(seq)} residues is longer than run {run.run_id}'s max "
                                 f"length {cfg.max_length}, and the run skips long proteins")
            status = "truncated" if run.length_policy == "truncate" else "chunked"
        proteins.append(Protein(str(i), seq, len(seq), status, write=True, stats=False, local=False))
    worker = Embedder(adapter, cfg, run.run_id, run.length_policy, local_stats=False)
    worker.process(sorted(proteins, key=lambda p: p.length))
    chunk = worker.take()
    failed = [s for s in chunk.statuses if s[1] == "failed"]
    if failed:
        raise ProtisoError(f"query {int(failed[0][0]) + 1} could not be embedded: {failed[0][4]}")
    table = chunk.tables[0][1]
    vectors = matrix(table.column("embedding"), adapter.dim)
    order = np.argsort(np.array(table.column("accession").to_pylist(), dtype=int))
    return vectors[order]


