"""Chunked, resumable computations over a pair set: alignments and embedding distances.

A job (pair_set, kind, key) splits the pair ids into chunks of `chunk_size`; each finished
chunk is one Parquet part plus one row in pair_job_chunks, written in one transaction, so an
interrupted job resumes by computing only the missing chunks, and a crash never leaves a
chunk half-recorded. Alignment chunks run in worker processes (`threads` of them) or on Ray."""
from __future__ import annotations

import json
import multiprocessing as mp
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from protiso._version import __version__
from protiso.errors import InputError
from protiso.pairs.align import Scoring, make_backend
from protiso.pairs.chunks import ALIGN_SCHEMA, align_chunk, align_table  # noqa: F401 - ALIGN_SCHEMA is API
from protiso.pairs.sample import get_pair_set, pair_indices, sequences
from protiso.store import Store, queries

Q = queries("pairs")
ENGINES = ("local", "ray")


@dataclass
class JobResult:
    pair_set: str
    kind: str
    key: str
    n_pairs: int
    n_chunks: int
    chunks_computed: int
    seconds: float            # compute seconds of the chunks computed in this call
    params: dict


def alignment_key(sc: Scoring) -> str:
    return f"{sc.matrix.upper()}-{sc.mode}-o{sc.gap_open:g}-e{sc.gap_extend:g}"


def _job(pair_set: str, kind: str, key: str) -> dict:
    return {"pair_set": pair_set, "kind": kind, "key": key}


def _start_job(store: Store, pair_set: str, kind: str, key: str, params: dict,
               chunk_size: int, n_chunks: int) -> set[int]:
    """Register (or find) the job; returns the chunks already done (their parts present)."""
    job = _job(pair_set, kind, key)
    row = store.one(Q.job_definition, job)
    if row is not None and (json.loads(row[0]) != params or row[1] != chunk_size):
        with store.transaction():          # different definition under the same key: restart
            store.execute(Q.delete_job, job)
            store.delete_dataset(_dataset(pair_set, kind, key))
        row = None
    if row is None:
        with store.transaction():
            store.execute(Q.insert_job, {**job, "params": json.dumps(params), "chunk_size": chunk_size,
                                         "n_chunks": n_chunks, "version": __version__})
        return set()
    done = store.execute(Q.job_chunks, job).fetchall()
    return {c for c, p in done if store.part_problem(p, None) is None}


def pending_chunks(n_pairs: int, chunk_size: int, done: set[int]) -> Iterator[tuple[int, int, int]]:
    """(chunk, first pair_id, end pair_id) of each chunk not yet done, in order."""
    for c in range(-(-n_pairs // chunk_size)):
        if c not in done:
            yield c, c * chunk_size, min(n_pairs, (c + 1) * chunk_size)


def _dataset(pair_set: str, kind: str, key: str) -> str:
    folder = {"align": "align", "distance": "dist", "go": "go"}[kind]
    return f"pairs/{pair_set}/{folder}/{key}"


def _save_chunk(store: Store, pair_set: str, kind: str, key: str, chunk: int, table: pa.Table | None,
                seconds: float, written: tuple[Path | str, int] | None = None) -> None:
    """Record a finished chunk: write its table as a part, or register a part a Ray worker
    already wrote (`written` = (path, n_rows)), in the same transaction as its chunk row."""
    with store.transaction():
        if written is None:
            rel = store.part_rel(store.write_part(_dataset(pair_set, kind, key), table))
        else:                  # a path, or a URL at the store's data location
            rel = store.register_part(_dataset(pair_set, kind, key), written[0], written[1])
        store.execute(Q.save_job_chunk, {**_job(pair_set, kind, key), "chunk": chunk, "seconds": seconds,
                                         "path": rel})


def _finish_job(store: Store, pair_set: str, kind: str, key: str) -> None:
    with store.transaction():
        store.execute(Q.finish_job, _job(pair_set, kind, key))
    store.refresh_views()


def job_is_done(store: Store, pair_set: str, kind: str, key: str) -> bool:
    return bool(store.scalar(Q.job_is_done, _job(pair_set, kind, key)))


def done_job_keys(store: Store, pair_set: str, kind: str) -> list[str]:
    """Keys of the finished jobs of one kind over a pair set, sorted."""
    return [k for (k,) in store.execute(Q.done_job_keys, {"pair_set": pair_set, "kind": kind}).fetchall()]


# --- alignment ----------------------------------------------------------------------------
_WORKER: dict = {}


def _worker_init(scoring: Scoring, backend: str) -> None:
    _WORKER["engine"] = make_backend(scoring, backend)
    _WORKER["scoring"] = scoring


def _pool_worker_init(scoring: Scoring, backend: str) -> None:
    """A worker process of the local pool: Ctrl-C is the parent's to handle (it stops the pool and
    says what was kept), so the workers ignore SIGINT instead of each printing a traceback line."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_init(scoring, backend)


def _worker_align(chunk: int):
    """Align one chunk; the pair data is in _WORKER (set before the fork)."""
    return align_chunk(_WORKER["data"], _WORKER["scoring"], _WORKER["engine"], chunk)


def align_pair_set(store: Store, name: str, scoring: Scoring | None = None, threads: int = 1,
                   chunk_size: int = 20_000, backend: str = "parasail",
                   progress: Callable[[int, int], None] | None = None, engine: str = "local",
                   ray_options: dict | None = None) -> JobResult:
    """Align every pair of pair set `name` (resumable); results in dataset
    pairs/<name>/align/<alignment key>, view `pairs`. `progress(pairs_done, pairs_total)`.

    engine 'local': `threads` processes here; 'ray': chunks distributed over a Ray cluster
    (ray_options: address, workers, cpus_per_worker; see protiso.pairs.ray_engine), same
    outputs and resume rule."""
    if engine not in ENGINES:
        raise InputError(f"alignment engine {engine!r} must be one of {', '.join(ENGINES)}", param="engine")
    sc = scoring or Scoring()
    ps = get_pair_set(store, name)
    for param, value in (("chunk_size", chunk_size), ("threads", threads)):
        if value < 1:
            raise InputError(f"{param.replace('_', ' ')} {value} must be >= 1", param=param)
    key = alignment_key(sc)
    params = {**sc.describe(), "backend": backend}
    n_chunks = -(-ps.n_pairs // chunk_size)
    done = _start_job(store, name, "align", key, params, chunk_size, n_chunks)
    store.clean_orphan_parts(_dataset(name, "align", key))   # written by a killed job, never registered
    todo = [c for c in range(n_chunks) if c not in done]
    proteins, ia, ib = pair_indices(store, name)
    by_acc = sequences(store, proteins)
    seq = [by_acc[a] for a in proteins]
    done_pairs = sum(min(chunk_size, ps.n_pairs - c * chunk_size) for c in done)
    if progress:
        progress(done_pairs, ps.n_pairs)

    data = (seq, ia, ib, chunk_size, ps.n_pairs)

    def save(chunk, out, seconds, written=None):
        nonlocal done_pairs
        table = None if written else align_table(name, key, proteins, ia, ib, chunk, chunk_size, ps.n_pairs, out)
        _save_chunk(store, name, "align", key, chunk, table, seconds, written)
        done_pairs += min(ps.n_pairs, (chunk + 1) * chunk_size) - chunk * chunk_size
        if progress:
            progress(done_pairs, ps.n_pairs)

    total = 0.0
    if engine == "ray":
        from protiso.pairs.ray_engine import ray_align   # optional extra: imported on use
        total = ray_align(store, name, key, sc, backend, data, proteins, todo,
                          str(store.dataset_dir(_dataset(name, "align", key))), save, **(ray_options or {}))
        _finish_job(store, name, "align", key)
        return JobResult(name, "align", key, ps.n_pairs, n_chunks, len(todo), total, params)
    _WORKER["data"] = data
    if threads == 1 or len(todo) <= 1:
        _worker_init(sc, backend)
        for chunk in todo:
            c, out, s = _worker_align(chunk)
            save(c, out, s)
            total += s
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(threads, initializer=_pool_worker_init, initargs=(sc, backend)) as pool:
            for c, out, s in pool.imap_unordered(_worker_align, todo):
                save(c, out, s)
                total += s
    _WORKER.pop("data", None)
    _finish_job(store, name, "align", key)
    return JobResult(name, "align", key, ps.n_pairs, n_chunks, len(todo), total, params)
