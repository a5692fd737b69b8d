"""Shared test data for the neighbours tests: real-sample-derived vectors in the embedding layout."""
from __future__ import annotations

import itertools

import numpy as np

import support
from support import write_vectors

AA = "ACDEFGHIKLMNPQRSTVWY"
DIPEPTIDES = {a + b: i for i, (a, b) in enumerate(itertools.product(AA, AA))}
RUN = "testrun"
LAYER = 2


def composition(seq: str) -> np.ndarray:
    """20 residue + 400 dipeptide frequencies of a sequence."""
    v = np.zeros(420, np.float32)
    for c in seq:
        j = AA.find(c)
        if j >= 0:
            v[j] += 1
    for i in range(len(seq) - 1):
        j = DIPEPTIDES.get(seq[i:i + 2])
        if j is not None:
            v[20 + j] += 1
    return v / max(len(seq), 1)


def write_run(store, run_id, accessions, X, layer=LAYER, n_parts=1, other_layer=True):
    """Write vectors as embedding parts (plus a decoy layer that must be ignored)."""
    chunks = np.array_split(np.arange(len(accessions)), n_parts)
    for idx in chunks:
        acc = [accessions[i] for i in idx]
        layers = [layer] * len(acc)
        vecs = X[idx]
        if other_layer:
            acc, layers = acc + acc, layers + [layer - 1] * len(acc)
            vecs = np.concatenate([vecs, -vecs[::-1]])
        write_vectors(store, run_id, acc, layers, vecs)


def add_run_row(store, run_id, dim, layers=(LAYER,)):
    """A minimal `runs` row (the embed area's table) for a run written by write_run."""
    support.add_run_row(store, run_id, dim, layers, model_id="test", family="bert")
