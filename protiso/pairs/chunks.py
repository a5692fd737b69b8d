"""Aligning one chunk of a pair set: the compute shared by the local process pool and the Ray
actors (`pairs.ray_engine`), below both so neither imports the other."""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from protiso.pairs.align import RESULT_FIELDS, Scoring, align_many
from protiso.pairs.sample import _take, constant_column

ALIGN_SCHEMA = pa.schema([
    ("pair_set", pa.string()), ("alignment", pa.string()), ("pair_id", pa.int64()),
    ("accession_a", pa.string()), ("accession_b", pa.string()), ("score", pa.float64()),
    ("identity", pa.float64()), ("matches", pa.int32()), ("length", pa.int32()), ("gaps", pa.int32())])



def align_chunk(data: tuple, scoring: Scoring, engine, chunk: int):
    """Align chunk `chunk` of the pairs in `data` = (sequences, ia, ib, chunk_size, n_pairs)
    -> (chunk, per-pair results, seconds). Shared by the local pool and the Ray actors."""
    seq, ia, ib, chunk_size, n_pairs = data
    lo, hi = chunk * chunk_size, min(n_pairs, (chunk + 1) * chunk_size)
    t0 = time.perf_counter()
    out = align_many([seq[i] for i in ia[lo:hi]], [seq[j] for j in ib[lo:hi]], scoring, _engine=engine)
    return chunk, out, time.perf_counter() - t0


def align_table(name: str, key: str, proteins: list[str], ia, ib, chunk: int, chunk_size: int, n_pairs: int,
                out: dict) -> pa.Table:
    """A chunk's alignment results as a Parquet-ready table (ALIGN_SCHEMA)."""
    lo, hi = chunk * chunk_size, min(n_pairs, (chunk + 1) * chunk_size)
    table = pa.table({
        "pair_set": constant_column(name, hi - lo),
        "alignment": constant_column(key, hi - lo),
        "pair_id": pa.array(np.arange(lo, hi, dtype=np.int64)),
        "accession_a": _take(proteins, ia[lo:hi]),
        "accession_b": _take(proteins, ib[lo:hi]),
        **{f: pa.array(out[f]) for f, _ in RESULT_FIELDS}}, schema=ALIGN_SCHEMA)
    # NaN identity (empty local alignment) is stored as NULL
    ident = pa.array(out["identity"], pa.float64(), mask=np.isnan(out["identity"]))
    return table.set_column(table.schema.get_field_index("identity"), "identity", ident)
