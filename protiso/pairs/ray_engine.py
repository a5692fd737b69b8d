"""The Ray engine of `pairs align`: the pair set's missing chunks (same resume rule as the local
engine) go to Ray Data as an Arrow batch of chunk numbers; `AlignActor`s (one aligner each, the
pair data shipped once per actor) run the same `align_chunk`/`align_table` code, write each
chunk's Parquet part atomically and return its path; the driver registers it with its chunk row."""
from __future__ import annotations

from typing import Callable

import pyarrow as pa

from protiso.cluster import connect, resources, results
from protiso.pairs.align import make_backend
from protiso.pairs.chunks import align_chunk, align_table
from protiso.store import write_part_file


class AlignActor:
    def __init__(self, scoring, backend: str, data: tuple, proteins: list[str], name: str, key: str,
                 directory: str):
        self.scoring, self.engine = scoring, make_backend(scoring, backend)
        self.data, self.proteins, self.name, self.key, self.directory = data, proteins, name, key, directory

    def __call__(self, batch: pa.Table) -> dict:
        seq, ia, ib, chunk_size, n_pairs = self.data
        out = {"chunk": [], "path": [], "n_rows": [], "seconds": []}
        for c in batch.column("chunk").to_pylist():
            chunk, res, seconds = align_chunk(self.data, self.scoring, self.engine, c)
            table = align_table(self.name, self.key, self.proteins, ia, ib, chunk, chunk_size, n_pairs, res)
            out["chunk"].append(chunk)
            out["path"].append(str(write_part_file(self.directory, table)))
            out["n_rows"].append(table.num_rows)
            out["seconds"].append(seconds)
        return out


def ray_align(store, name: str, key: str, scoring, backend: str, data: tuple, proteins: list[str],
              todo: list[int], directory: str, save: Callable, address: str | None = None,
              workers: int | None = None, cpus_per_worker: float = 1.0) -> float:
    """Align the chunks `todo` on Ray; `save(chunk, None, seconds, (path, n_rows))` records each
    (in the driver). Returns the summed compute seconds."""
    if not todo:
        return 0.0
    ray = connect(address)
    _, cpus, workers = resources(ray, 0.0, cpus_per_worker, workers)
    # one block per chunk, made here: a repartition task would wait for a CPU the actors hold
    ds = ray.data.from_arrow([pa.table({"chunk": pa.array([c], pa.int64())}) for c in todo])
    ds = ds.map_batches(AlignActor, fn_constructor_args=(scoring, backend, data, proteins, name, key, directory),
                        batch_size=1, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=min(workers, len(todo))), num_cpus=cpus)
    done: set[int] = set()
    total = 0.0
    it = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for batch in results(it):
            for row in batch.to_pylist():
                if row["chunk"] in done:           # a task Ray retried: keep the first copy only
                    store.root.joinpath(row["path"]).unlink(missing_ok=True)
                    continue
                done.add(row["chunk"])
                save(row["chunk"], None, row["seconds"], (row["path"], row["n_rows"]))
                total += row["seconds"]
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    return total
