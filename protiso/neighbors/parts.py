"""One layer of a run's embedding parts, read part by part.

Indexes record which parts they cover so a grown run is added incrementally, hence a reader that
goes part by part (pyarrow, filtered on the layer) rather than the run-wide stream of
`protiso.runs.stream_layer`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from protiso.runs import embeddings_dataset, matrix
from protiso.store import Store


def relative(store: Store, path: Path) -> str:
    return Path(path).relative_to(store.root).as_posix()


def run_parts(store: Store, run_id: str) -> list[str]:
    """The catalog paths of the run's embedding parts (data/embeddings/<run>/<file>), oldest
    first; read through the store (`Store.read_part`), so parts at a data URL work too."""
    return store.part_rels(embeddings_dataset(run_id))


def read_part_layer(store: Store, rel_path: str, layer: int) -> tuple[list[str], np.ndarray]:
    """Accessions and vectors of one layer from one embedding part."""
    table = store.read_part(rel_path, columns=["accession", "layer", "embedding"],
                            filters=[("layer", "=", int(layer))])
    kind = table.schema.field("embedding").type
    dim = kind.list_size if pa.types.is_fixed_size_list(kind) else None
    if dim is None:  # variable-size lists: width from the data
        dim = len(table.column("embedding")[0]) if table.num_rows else 0
    return table.column("accession").to_pylist(), matrix(table.column("embedding"), dim)


def iter_layer(store: Store, parts: list[str], layer: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """(accessions, vectors) of `layer`, one non-empty part at a time."""
    for rel in parts:
        acc, X = read_part_layer(store, rel, layer)
        if acc:
            yield acc, X


def count_layer(store: Store, parts: list[str], layer: int) -> int:
    """Number of vectors of `layer` in the given parts (reads only the layer column)."""
    total = 0
    for rel in parts:
        t = store.read_part(rel, columns=["layer"])
        total += int(np.count_nonzero(t.column("layer").to_numpy() == layer))
    return total


def layer_dim(store: Store, parts: list[str], layer: int) -> int | None:
    """Dimension of the layer's vectors (None: the parts hold none)."""
    for _, X in iter_layer(store, parts, layer):
        return X.shape[1]
    return None


def sample_layer(store: Store, parts: list[str], layer: int, n: int, seed: int = 0
                 ) -> tuple[list[str], np.ndarray]:
    """A uniform sample of n vectors of the layer (all when fewer), in a seeded random order.

    Streams the parts: memory is n x d, not the whole layer."""
    total = count_layer(store, parts, layer)
    pick = np.random.default_rng(seed).permutation(total)[:n]
    slot = np.full(total, -1, np.int64)
    slot[pick] = np.arange(len(pick))
    accs: list[str | None] = [None] * len(pick)
    X = None
    offset = 0
    for acc, Y in iter_layer(store, parts, layer):
        if X is None:
            X = np.zeros((len(pick), Y.shape[1]), np.float32)
        where = slot[offset:offset + len(acc)]
        hit = np.flatnonzero(where >= 0)
        X[where[hit]] = Y[hit]
        for i in hit:
            accs[where[i]] = acc[i]
        offset += len(acc)
    return accs, (X if X is not None else np.zeros((0, 0), np.float32))


def vectors_of(store: Store, parts: list[str], layer: int, accessions: list[str]) -> dict[str, np.ndarray]:
    """Stored vectors of the given accessions (first occurrence), read from the parts."""
    want = set(accessions)
    out: dict[str, np.ndarray] = {}
    for acc, X in iter_layer(store, parts, layer):
        for i, a in enumerate(acc):
            if a in want and a not in out:
                out[a] = X[i].copy()
        if len(out) == len(want):
            break
    return out
