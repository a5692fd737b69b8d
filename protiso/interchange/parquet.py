"""Parquet input: one row per protein (and layer), an id column and an embedding column.

Columns: id = `id_column`, else `accession`, else `id` (strings, through `accession()`);
embedding = `key`, else `embedding`/`embeddings`, else the only list-of-float column; it may be
list, large_list or fixed_size_list of float16/32/64 (protiso's own export is
fixed_size_list<float32>). An optional integer `layer` column labels rows with a layer; `layer=`
selects among them. Read row group by row group with pyarrow, so memory follows batch_rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protiso.interchange._common import (Batch, Source, accession, check_float_dtype, fail,
                                         file_size, short, widen)

ID_COLUMNS = ("accession", "id")
EMBEDDING_COLUMNS = ("embedding", "embeddings")
_NULL = -(2 ** 62)  # stands for a null layer in the int64 codes
_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def _is_list(t: pa.DataType) -> bool:
    return any(f(t) for f in _LISTS)


def _float_list(t: pa.DataType) -> bool:
    return _is_list(t) and pa.types.is_floating(t.value_type)


class ParquetReader:
    """Streams one Parquet file (see module docstring)."""

    def __init__(self, path: Path, key: str | None = None, id_column: str | None = None,
                 level: str = "auto", layer=None, **_):
        self.path = path
        try:
            self._pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            fail(path, f"not a readable Parquet file ({short(exc)})",
                 "the file is truncated or not Parquet: write it again")
        if self._pf.metadata.num_rows == 0:
            fail(path, "no rows in the file", "the file holds no embeddings to import")
        schema = self._pf.schema_arrow
        cols = schema.names
        self.id_col = id_column or next((c for c in ID_COLUMNS if c in cols), None)
        if self.id_col not in cols:
            fail(path, f"no id column {self.id_col or ' or '.join(ID_COLUMNS)!r} (columns: "
                 f"{', '.join(cols)})", "name it with --id-column")
        if not (pa.types.is_string(schema.field(self.id_col).type)
                or pa.types.is_large_string(schema.field(self.id_col).type)):
            fail(path, f"id column {self.id_col!r} is {schema.field(self.id_col).type}, not "
                 "string", "store ids as strings")
        floats = [c for c in cols if _float_list(schema.field(c).type)]
        self.emb_col = key or next((c for c in EMBEDDING_COLUMNS if c in cols), None)
        if self.emb_col is None and len(floats) == 1:
            self.emb_col = floats[0]
        if self.emb_col not in cols:
            fail(path, f"no embedding column (columns: {', '.join(cols)}; list-of-float: "
                 f"{', '.join(floats) or 'none'})", "name it with --key")
        etype = schema.field(self.emb_col).type
        if _is_list(etype) and _is_list(etype.value_type):
            fail(path, f"column {self.emb_col!r} holds per-residue matrices ({etype}) where "
                 "per-protein vectors were expected", "import per-residue embeddings from "
                 "HDF5 or ESM .pt files, or pool them to one vector per protein")
        if not _float_list(etype):
            fail(path, f"column {self.emb_col!r} is {etype}, not a list of floats",
                 "store embeddings as list<float> or fixed_size_list<float>")
        if level == "local":
            fail(path, "Parquet input is read as per-protein vectors",
                 "import per-residue embeddings from HDF5 or ESM .pt files")
        self._dtype = check_float_dtype(path, etype.value_type.to_pandas_dtype().__name__)
        self.layer_col = "layer" if "layer" in cols else None
        self._select_layers(layer)
        self.dim = self._first_dim(etype)
        self.source = Source(path=path, format="parquet", size_bytes=file_size(path),
                             sha256=None, level="global", dim=self.dim, dtype=self._dtype,
                             layers=self.layers, n_items=self._n_items,
                             ids_from=f"column {self.id_col!r}")

    def _select_layers(self, layer) -> None:
        nrows = self._pf.metadata.num_rows
        if self.layer_col is None:
            if layer is not None:
                fail(self.path, "no 'layer' column to select from",
                     "drop the layer option for files without layers")
            self.layers, self._wanted, self._n_items = [None], None, nrows
            return
        col = self._pf.read(columns=[self.layer_col]).column(0)
        if not pa.types.is_integer(col.type):
            fail(self.path, f"layer column is {col.type}, not integer", "store layers as int")
        counts = {r["values"]: r["counts"] for r in pc.value_counts(col).to_pylist()}
        avail = sorted(k for k in counts if k is not None)
        if layer is None:
            self._wanted = None
            self.layers = avail + ([None] if None in counts else [])
        else:
            wanted = [int(layer)] if np.ndim(layer) == 0 else [int(x) for x in layer]
            top = avail[-1] if avail else 0
            self._wanted = [w if w >= 0 else top + 1 + w for w in wanted]
            missing = [w for w, r in zip(wanted, self._wanted) if r not in counts]
            if missing:
                fail(self.path, f"layer {missing[0]} not in the file (layers {avail})",
                     "pick one of those layers")
            self.layers = list(self._wanted)
        self._n_items = sum(counts.get(l, 0) for l in self.layers)

    def _first_dim(self, etype) -> int:
        if pa.types.is_fixed_size_list(etype):
            return etype.list_size
        for batch in self._pf.iter_batches(batch_size=64, columns=[self.emb_col]):
            lengths = pc.list_value_length(batch.column(0)).drop_null()
            if len(lengths):
                return int(lengths[0].as_py())
        fail(self.path, "no embeddings in the file", "the file holds no rows to import")

    def _matrix(self, arr, ids: list[str]) -> np.ndarray:
        n, d = len(arr), self.dim
        if arr.null_count:
            i = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            fail(self.path, "missing (null) embedding", "drop the row or fill it", protein=ids[i])
        if not pa.types.is_fixed_size_list(arr.type):
            lengths = pc.list_value_length(arr).to_numpy()
            bad = np.flatnonzero(lengths != d)
            if bad.size:
                i = int(bad[0])
                fail(self.path, f"embedding dimension {lengths[i]} differs from {d} of the "
                     "first row", "all proteins must come from the same model", protein=ids[i])
        flat = arr.flatten()
        if flat.null_count:
            i = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]) // d
            fail(self.path, "null value inside the embedding", "fill or drop it", protein=ids[i])
        return widen(flat.to_numpy(zero_copy_only=False).reshape(n, d))

    def chunks(self, batch_rows: int) -> Iterator[Batch]:
        cols = [self.id_col, self.emb_col] + ([self.layer_col] if self.layer_col else [])
        try:
            for rb in self._pf.iter_batches(batch_size=batch_rows, columns=cols):
                yield from self._split(rb)
        except (pa.ArrowException, OSError) as exc:
            fail(self.path, f"cannot read ({short(exc)})",
                 "the file is truncated or corrupt: write it again")

    def _split(self, rb: pa.RecordBatch) -> Iterator[Batch]:
        idcol = rb.column(0)
        if idcol.null_count:
            i = int(np.flatnonzero(idcol.is_null().to_numpy(zero_copy_only=False))[0])
            fail(self.path, f"null id in row {i} of a row group", "every row needs an id")
        keys = idcol.to_pylist()
        ids = [accession(k) for k in keys]
        if self.layer_col is None:
            yield Batch(ids=ids, layer=None, vectors=self._matrix(rb.column(1), ids), keys=keys)
            return
        lay = rb.column(2)
        codes = lay.cast(pa.int64()).fill_null(_NULL).to_numpy(zero_copy_only=False)
        values = self._wanted if self._wanted is not None else [
            None if v == _NULL else int(v) for v in np.unique(codes)]
        for v in values:
            idx = np.flatnonzero(codes == (_NULL if v is None else v))
            if not idx.size:
                continue
            if idx.size == len(codes):
                sub_ids, sub_keys, arr = ids, keys, rb.column(1)
            else:
                sub_ids = [ids[i] for i in idx]
                sub_keys = [keys[i] for i in idx]
                arr = rb.column(1).take(pa.array(idx))
            yield Batch(ids=sub_ids, layer=v, vectors=self._matrix(arr, sub_ids), keys=sub_keys)

    def close(self) -> None:
        pf, self._pf = getattr(self, "_pf", None), None
        if pf is not None:
            pf.close()
