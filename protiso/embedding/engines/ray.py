"""The Ray engine of `embed`. The driver walks the same plan as the local engine
(protiso.embedding.plan: pages of the to-do set, windows sorted by length) and cuts each window
into tasks where the embedder starts a batch (`plan.cut_tasks`), so an actor forms exactly the
batches the local engine forms and writes bit-identical vectors (unless a batch runs out of
memory and is halved). Tasks stream to a pool of `EmbedActor`s (protiso.cluster.ActorPool: one
model load each, at most two tasks queued per actor, so the driver's memory stays bounded and the
first task starts once the first page is read). Each actor runs the same `Embedder`, writes its
Parquet parts atomically into the run's dataset directories and returns the part list (with
each part's size and SHA-256, so the driver does not re-read parts), the per-protein statuses
and the statistics of its proteins; the driver feeds these to the same
`RunWriter` as the local engine, which registers them in the catalog."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from protiso.cluster import DEFAULT_TIMEOUT, ActorPool, connect, resources, unwrap
from protiso.embedding.compute import Embedder
from protiso.embedding.config import resolve_config
from protiso.embedding.plan import Window, cut_tasks, task_size
from protiso.errors import ProtisoError
from protiso.models import load
from protiso.runs import Chunk, embeddings_dataset, local_dataset
from protiso.runs.writer import part_metadata
from protiso.store import write_part_file
from protiso.store.fs import is_url, write_part_url
from protiso.store.integrity import file_digest

def _write_part(directory: str, table: pa.Table, metadata: dict | None) -> tuple[str, int, int, str]:
    """Write a part on the worker (atomically, see store.write_part_file) and return (path or URL,
    rows, size, SHA-256): the worker checksums what it wrote, so the driver registers the part
    without reading it back (at a URL the bytes are hashed as they are uploaded)."""
    if is_url(directory):
        url, size, sha = write_part_url(directory, table, metadata)
        return url, table.num_rows, size, sha
    path = write_part_file(directory, table, metadata)
    return str(path), table.num_rows, *file_digest(path)


def _resolve_remote(model: str, device: str, weights: str | None, offline: bool | None, settings: dict):
    """On a worker (so with the workers' device): load the model and resolve the run settings."""
    return resolve_config(load(model, device, weights, offline), **settings)


class EmbedActor:
    """Loads the model once, then embeds tasks (Arrow tables in WINDOW_SCHEMA, length-sorted),
    writes their parts and returns what the driver registers."""

    def __init__(self, model: str, device: str, weights: str | None, offline: bool | None, cfg, run_id: str,
                 policy: str, local_stats: bool, dirs: dict[str, str], metadata: dict[str, dict]):
        adapter = load(model, device, weights, offline)
        if adapter.revision != cfg.revision or adapter.dim != cfg.dim:
            raise ProtisoError(f"a Ray worker loaded {model} at revision {adapter.revision} (dim {adapter.dim}), "
                               f"but the run uses revision {cfg.revision} (dim {cfg.dim}): give every node "
                               "the same model files")
        adapter.set_dtype(cfg.dtype)
        self.embedder = Embedder(adapter, cfg, run_id, policy, local_stats)
        self.dirs, self.metadata = dirs, metadata

    def __call__(self, table: pa.Table) -> dict:
        self.embedder.process(Window(0, table, []).proteins())
        chunk = self.embedder.take()
        parts = [(dataset, *_write_part(self.dirs[dataset], t, self.metadata.get(dataset)))
                 for dataset, t in chunk.tables]
        return {"parts": parts, "statuses": chunk.statuses, "counts": chunk.counts, "stats": chunk.stats,
                "n": chunk.n_proteins, "residues": chunk.residues}


class RayEmbedEngine:
    """Runs the embedding of one `embed` call on a Ray cluster (see the module docstring).
    task_rows None: chosen from the number of proteins and workers (`task_size`)."""

    def __init__(self, model: str, device: str, weights: str | None, offline: bool | None,
                 address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: float = 1.0, task_rows: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                 verbose: bool = False):
        if task_rows is not None and task_rows < 1:
            raise ProtisoError(f"proteins per task must be >= 1, got {task_rows}")
        self.ray = connect(address, timeout, verbose)
        self.model, self.device, self.weights, self.offline = model, device, weights, offline
        self.gpus, self.cpus, self.workers = resources(self.ray, gpus_per_worker, cpus_per_worker, workers)
        self.task_rows = task_rows
        self.overhead: dict = {}

    def resolve(self, settings: dict):
        """The run's ModelConfig, resolved on a worker with the workers' resources."""
        task = self.ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_resolve_remote)
        try:
            return self.ray.get(task.remote(self.model, self.device, self.weights, self.offline, settings))
        except Exception as exc:   # noqa: BLE001 - Ray wraps the worker's exception
            raise unwrap(exc) from None

    def tasks(self, windows: Iterator[Window], cfg, task_rows: int,
              on_skipped: Callable[[list[tuple]], None]) -> Iterator[tuple[int, tuple]]:
        """(task number, (Arrow table,)) per task, cut at batch boundaries; skipped statuses are
        handed to `on_skipped` as their windows pass."""
        n = 0
        for w in windows:
            if w.skipped:
                on_skipped(w.skipped)
            t = w.table
            if not t.num_rows:
                continue
            cuts, _ = cut_tasks(t.column("length").to_numpy(), t.column("status").to_numpy(zero_copy_only=False),
                                task_rows, cfg.max_length, cfg.overlap, cfg.max_tokens)
            for a, b in cuts:        # take() copies: a pickled slice would ship the whole page
                yield n, (t.take(pa.array(np.arange(a, b))),)
                n += 1

    def run(self, store, run, cfg, policy: str, local_stats: bool, windows: Iterator[Window], n_total: int,
            on_chunk: Callable[[object, list[tuple]], None]) -> None:
        """Plan windows -> tasks -> actors -> `on_chunk(Chunk, skipped)` per finished task."""
        task_rows = self.task_rows or task_size(n_total, self.workers)
        datasets = (embeddings_dataset(run.run_id), local_dataset(run.run_id))
        dirs = {d: str(store.dataset_dir(d)) for d in datasets}
        metadata = {d: store.part_metadata(d, part_metadata(run, d)) for d in datasets}
        pool = ActorPool(self.ray, EmbedActor, (self.model, self.device, self.weights, self.offline, cfg,
                                                run.run_id, policy, local_stats, dirs, metadata),
                         self.workers, self.cpus, self.gpus)
        stats = {"results": 0, "driver_s": 0.0, "first_result_s": None}
        t0 = time.perf_counter()

        def done(_key, res: dict) -> None:
            t_in = time.perf_counter()
            if stats["first_result_s"] is None:
                stats["first_result_s"] = t_in - t0
            on_chunk(Chunk([], [tuple(s) for s in res["statuses"]], res["counts"], res["stats"], res["n"],
                           res["residues"], parts=[tuple(p) for p in res["parts"]]), [])
            stats["results"] += 1
            stats["driver_s"] += time.perf_counter() - t_in

        pool.run(self.tasks(windows, cfg, task_rows, lambda skipped: on_chunk(None, skipped)), done)
        self.overhead = {"results": stats["results"], "driver_seconds": stats["driver_s"],
                         "wall_seconds": time.perf_counter() - t0, "first_result_s": stats["first_result_s"],
                         "first_actor_ready_s": pool.first_ready, "task_rows": task_rows,
                         "actors_replaced": pool.replaced}
