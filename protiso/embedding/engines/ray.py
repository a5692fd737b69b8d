"""The Ray engine of `embed`: the driver plans the work (same selection and resume rule as the
local engine, see protiso.embedding.plan) and hands it to Ray Data as Arrow blocks in the object store (not
through read_parquet, whose listing task would wait for a CPU that the actors hold on CPU-only
clusters); a pool of `EmbedActor`s (one model load each) runs the same `Embedder` code. Each
actor task writes its Parquet parts atomically into the run's directories and returns the part list, the per-protein statuses and the statistics of its proteins; the driver
feeds these to the same `RunWriter` as the local engine, which registers them in the catalog."""
from __future__ import annotations

import json
import time
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from protiso.cluster import connect, resources, results, unwrap
from protiso.embedding.compute import Embedder, Protein
from protiso.embedding.config import resolve_config
from protiso.errors import ProtisoError
from protiso.isotropy.stats import SufficientStats, stats_from_bytes, stats_to_bytes
from protiso.models import load
from protiso.runs import Chunk, embeddings_dataset, local_dataset
from protiso.store import write_part_file

TODO_SCHEMA = pa.schema([("idx", pa.int64()), ("accession", pa.string()), ("sequence", pa.string()),
                         ("length", pa.int32()), ("status", pa.string()), ("write", pa.bool_()),
                         ("stats", pa.bool_()), ("local", pa.bool_())])


def layered_to_bytes(stats: dict[int, dict[str, SufficientStats]] | None) -> bytes:
    """layer -> residue type -> statistics, as bytes in the one statistics format."""
    if not stats:
        return b""
    return stats_to_bytes({f"{la}:{ord(aa)}": s for la, per in stats.items() for aa, s in per.items()})


def layered_from_bytes(data: bytes, layers: list[int]) -> dict[int, dict[str, SufficientStats]] | None:
    if not data:
        return None
    out: dict[int, dict[str, SufficientStats]] = {la: {} for la in layers}
    for key, s in stats_from_bytes(data).items():
        la, code = (int(x) for x in key.split(":"))
        out.setdefault(la, {})[chr(code)] = s
    return out


def _resolve_remote(model: str, device: str, weights: str | None, offline: bool | None, settings: dict):
    """On a worker (so with the workers' device): load the model and resolve the run settings."""
    return resolve_config(load(model, device, weights, offline), **settings)


class EmbedActor:
    """A Ray Data map_batches actor: loads the model once, then embeds Arrow batches of the todo
    list, writes their parts and returns one row describing them."""

    def __init__(self, model: str, device: str, weights: str | None, offline: bool | None, cfg, run_id: str,
                 policy: str, local_stats: bool, dirs: dict[str, str]):
        adapter = load(model, device, weights, offline)
        if adapter.revision != cfg.revision or adapter.dim != cfg.dim:
            raise ProtisoError(f"a Ray worker loaded {model} at revision {adapter.revision} (dim {adapter.dim}), "
                               f"but the run uses revision {cfg.revision} (dim {cfg.dim}): give every node "
                               "the same model files")
        adapter.set_dtype(cfg.dtype)
        self.embedder = Embedder(adapter, cfg, run_id, policy, local_stats)
        self.dirs = dirs

    def __call__(self, batch: pa.Table) -> dict:
        cols = {name: batch.column(name).to_pylist() for name in batch.column_names}
        order = np.argsort(np.asarray(cols["length"]), kind="stable")   # batches stay length-sorted
        prots = [Protein(cols["accession"][i], cols["sequence"][i], cols["length"][i], cols["status"][i],
                          write=cols["write"][i], stats=cols["stats"][i], local=cols["local"][i]) for i in order]
        self.embedder.process(prots)
        chunk = self.embedder.take()
        parts = []
        for dataset, table in chunk.tables:
            path = write_part_file(self.dirs[dataset], table)
            parts.append((dataset, str(path), table.num_rows))
        return {"idx": [np.asarray(cols["idx"], np.int64).tobytes()], "parts": [json.dumps(parts)],
                "statuses": [json.dumps(chunk.statuses)], "counts": [json.dumps(chunk.counts)],
                "stats": [layered_to_bytes(chunk.stats)], "n": [chunk.n_proteins], "residues": [chunk.residues]}


class RayEmbedEngine:
    """Runs the embedding of one `embed` call on a Ray cluster (see the module docstring)."""

    def __init__(self, model: str, device: str, weights: str | None, offline: bool | None,
                 address: str | None = None, workers: int | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: float = 1.0, task_rows: int = 512):
        self.ray = connect(address)
        self.model, self.device, self.weights, self.offline = model, device, weights, offline
        self.gpus, self.cpus, self.workers = resources(self.ray, gpus_per_worker, cpus_per_worker, workers)
        if task_rows < 1:
            raise ProtisoError("task_rows must be >= 1")
        self.task_rows = task_rows
        self.overhead: dict = {}

    def resolve(self, settings: dict):
        """The run's ModelConfig, resolved on a worker with the workers' resources."""
        task = self.ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(_resolve_remote)
        try:
            return self.ray.get(task.remote(self.model, self.device, self.weights, self.offline, settings))
        except Exception as exc:   # noqa: BLE001 - Ray wraps the worker's exception
            raise unwrap(exc) from None

    def run(self, store, run, cfg, policy: str, local_stats: bool,
            windows: Iterator[tuple[int, list, list[tuple]]], n_total: int,
            on_chunk: Callable[[object, list[tuple]], None]) -> None:
        """Plan -> Arrow blocks -> actors -> `on_chunk(Chunk, skipped)` per finished task."""
        ray = self.ray
        refs, n = [], 0
        for _, prots, skipped in windows:     # the driver's plan, as Arrow blocks in the object store
            if skipped:
                on_chunk(None, skipped)
            for lo in range(0, len(prots), self.task_rows):   # one block per actor task
                block = prots[lo:lo + self.task_rows]
                refs.append(ray.put(pa.table({
                    "idx": np.arange(n, n + len(block), dtype=np.int64),
                    "accession": [p.accession for p in block], "sequence": [p.sequence for p in block],
                    "length": [p.length for p in block], "status": [p.status for p in block],
                    "write": [p.write for p in block], "stats": [p.stats for p in block],
                    "local": [p.local for p in block]}, schema=TODO_SCHEMA)))
                n += len(block)
        if n == 0:
            return
        dirs = {d: str(store.dataset_dir(d)) for d in (embeddings_dataset(run.run_id), local_dataset(run.run_id))}
        ds = ray.data.from_arrow_refs(refs).map_batches(
            EmbedActor, fn_constructor_args=(self.model, self.device, self.weights, self.offline, cfg,
                                             run.run_id, policy, local_stats, dirs),
            batch_size=self.task_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=self.cpus, num_gpus=self.gpus)
        del refs
        seen = np.zeros(n, bool)     # a task retried by Ray must not be registered twice
        stats, t_wait = {"results": 0, "driver_s": 0.0}, time.perf_counter()
        it = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        try:
            self._consume(store, it, seen, cfg, on_chunk, stats)
        finally:
            close = getattr(it, "close", None)
            if close:
                close()          # stops the pipeline (and its actors) if we leave early
        self.overhead = {"results": stats["results"], "driver_seconds": stats["driver_s"],
                         "wall_seconds": time.perf_counter() - t_wait}

    @staticmethod
    def _consume(store, it, seen, cfg, on_chunk, stats) -> None:
        for batch in results(it):
            t_in = time.perf_counter()
            for row in batch.to_pylist():
                idx = np.frombuffer(row["idx"], np.int64)
                parts = [tuple(p) for p in json.loads(row["parts"])]
                if seen[idx].any():
                    for _, path, _ in parts:
                        store.root.joinpath(path).unlink(missing_ok=True)
                    continue
                seen[idx] = True
                chunk = Chunk([], [tuple(s) for s in json.loads(row["statuses"])], json.loads(row["counts"]),
                              layered_from_bytes(row["stats"], cfg.layers), row["n"], row["residues"],
                              parts=parts, indices=idx)
                on_chunk(chunk, [])
                stats["results"] += 1
            stats["driver_s"] += time.perf_counter() - t_in
