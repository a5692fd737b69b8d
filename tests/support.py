"""Shared test support: fake runs (a `runs` row plus vector parts in the one layout the run
writer uses) for tests that need stored vectors without a model."""
from __future__ import annotations

import numpy as np

from protiso.runs import embeddings_dataset
from protiso.runs.writer import vectors_table


def add_run_row(store, run_id: str, dim: int, layers, model: str | None = None, model_id: str | None = None,
                revision: str | None = None, family: str | None = None, n_done: int = 0,
                num_layers: int | None = None) -> None:
    """A minimal `runs` row (replacing one of the same id) for vectors written by `write_vectors`."""
    store.con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
    store.con.execute(
        "INSERT INTO runs (run_id, run_key, model, model_id, revision, family, dim, num_layers, layers,"
        " pooling, dtype, length_policy, status, n_done) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'mean', 'float32', 'truncate', 'done', ?)",
        [run_id, "key-" + run_id, model or run_id, model_id, revision, family, dim, num_layers,
         sorted(int(x) for x in layers), n_done])
    store.refresh_views()


def write_vectors(store, run_id: str, accessions, layers, X: np.ndarray) -> None:
    """One part of a run's global vectors: `layers` is one layer or one per row."""
    store.write_part(embeddings_dataset(run_id), vectors_table(accessions, layers, X))


def fake_run(store, run_id: str, per_layer: dict, n_parts: int = 1, **row) -> None:
    """A run with vectors {layer: (accessions, X)} split into `n_parts` parts, rows in the catalog."""
    layers = sorted(per_layer)
    dim = next(iter(per_layer.values()))[1].shape[1]
    n = len(next(iter(per_layer.values()))[0])
    with store.transaction():
        add_run_row(store, run_id, dim, layers, n_done=row.pop("n_done", n), **row)
        for chunk in np.array_split(np.arange(n), n_parts):
            accs, lays, vecs = [], [], []
            for layer in layers:
                acc, X = per_layer[layer]
                accs += [acc[i] for i in chunk]
                lays += [layer] * len(chunk)
                vecs.append(np.asarray(X)[chunk])
            write_vectors(store, run_id, accs, lays, np.concatenate(vecs))
    store.refresh_views()
