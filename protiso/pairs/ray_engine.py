"""The Ray engine of `pairs align`: the pair set's missing chunks (same resume rule as the local
engine) stream to a pool of `AlignActor`s (protiso.cluster.ActorPool; one aligner each, the pair
data put in the object store once and shared), which run the same `align_chunk`/`align_table`
code, write each chunk's Parquet part atomically and return its path; the driver registers it
with its chunk row."""
from __future__ import annotations

from typing import Callable

from protiso.cluster import DEFAULT_TIMEOUT, ActorPool, connect, resources
from protiso.pairs.align import make_backend
from protiso.pairs.chunks import align_chunk, align_table
from protiso.store import write_part_file


class AlignActor:
    """One aligner; aligns chunk numbers, writes each chunk's part, returns its path."""

    def __init__(self, scoring, backend: str, data: tuple, proteins: list[str], name: str, key: str,
                 directory: str):
        self.scoring, self.engine = scoring, make_backend(scoring, backend)
        self.data, self.proteins, self.name, self.key, self.directory = data, proteins, name, key, directory

    def __call__(self, chunk: int) -> dict:
        seq, ia, ib, chunk_size, n_pairs = self.data
        chunk, res, seconds = align_chunk(self.data, self.scoring, self.engine, chunk)
        table = align_table(self.name, self.key, self.proteins, ia, ib, chunk, chunk_size, n_pairs, res)
        return {"chunk": chunk, "path": str(write_part_file(self.directory, table)), "n_rows": table.num_rows,
                "seconds": seconds}


def ray_align(store, name: str, key: str, scoring, backend: str, data: tuple, proteins: list[str],
              todo: list[int], directory: str, save: Callable, address: str | None = None,
              workers: int | None = None, cpus_per_worker: float = 1.0, timeout: float = DEFAULT_TIMEOUT,
              verbose: bool = False) -> float:
    """Align the chunks `todo` on Ray; `save(chunk, None, seconds, (path, n_rows))` records each
    (in the driver). Returns the summed compute seconds."""
    if not todo:
        return 0.0
    ray = connect(address, timeout, verbose)
    _, cpus, workers = resources(ray, 0.0, cpus_per_worker, workers)
    shared = ray.put(data)          # shipped to the object store once, not once per actor
    pool = ActorPool(ray, AlignActor, (scoring, backend, shared, proteins, name, key, directory),
                     min(workers, len(todo)), cpus)
    total = 0.0

    def done(_chunk: int, row: dict) -> None:
        nonlocal total
        save(row["chunk"], None, row["seconds"], (row["path"], row["n_rows"]))
        total += row["seconds"]

    pool.run(((c, (c,)) for c in todo), done)
    return total
