"""Reading a run's vectors: the one reader every analysis uses (global vectors of one layer,
streamed part by part, restricted to a Subset) and the per-residue-type statistics.

Vectors are read from the run's Parquet parts directly: the small columns (layer, accession)
with pyarrow, the vector column from its data pages (`pages.float_pages`, without the per-value
level decoding that makes pyarrow's list reader cost more than the analyses; pyarrow where a
chunk is not plain). Row groups of other layers are skipped by their statistics; a Subset is
its accessions (one DuckDB query) matched per block. Memory: one block of `batch_rows` vectors
plus one row group's small columns."""
from __future__ import annotations

import contextlib
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protiso.errors import InputError, NotFoundError, QueryError
from protiso.isotropy.stats import SufficientStats, load_stats_map
from protiso.query import ALL, Subset, as_subset
from protiso.runs.catalog import Q, Run, resolve, resolve_run
from protiso.runs.pages import ArrayPage, Unsupported, float_pages
from protiso.store import Store, parquet_source

VECTOR_COLUMN = "embedding"


def matrix(column, dim: int) -> np.ndarray:
    """A (fixed-size) list<float> Arrow column -> float32 (n, dim), zero-copy where possible;
    NULL vectors or a wrong dimension are errors, never silently reshaped."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, dim), np.float32)
    if arr.null_count:
        raise InputError(f"{arr.null_count} NULL embeddings where vectors of dimension {dim} were expected")
    values = arr.flatten()
    if len(values) != len(arr) * dim:
        raise InputError(f"embeddings are not all of dimension {dim}")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(arr), dim)


def layer_query(store: Store, run: Run, subset: Subset = ALL) -> str:
    """SQL streaming (embedding, accession) of one layer ($layer) of a run's parts, restricted to
    `subset` by a semi-join (for counting and for SQL users; the vectors are read by `layer_blocks`)."""
    parts = store.parts(run.dataset)
    if not parts:
        raise NotFoundError(f"run {run.run_id} has no stored embeddings (dataset {run.dataset} is empty)")
    query = Q.layer_vectors.replace("$source", parquet_source(parts))
    if not subset.is_all:
        query += f" AND e.accession IN ({subset.accessions_sql()})"
    return query


@contextlib.contextmanager
def reading(run_id: str, layer: int):
    """Errors while reading a run (a group expression failing at run time, a damaged part)
    become QueryErrors naming the run and layer."""
    try:
        yield
    except duckdb.Error as exc:
        raise QueryError(f"reading embeddings of run {run_id}, layer {layer}: {str(exc).splitlines()[0]}") from exc
    except (pa.ArrowException, OSError) as exc:
        raise QueryError(f"reading embeddings of run {run_id}, layer {layer}: {exc}") from exc


def _row_group_vectors(fh, pf: pq.ParquetFile, rg: int, col: int, dim: int) -> Iterator:
    """The vector values of a row group, page by page (pyarrow for what pages cannot read;
    values the pages already gave are skipped)."""
    done = 0
    try:
        for page in float_pages(fh, pf.metadata.row_group(rg).column(col), pf.schema.column(col)):
            done += page.n
            yield page
        return
    except Unsupported:
        pass
    column = pf.read_row_group(rg, columns=[VECTOR_COLUMN]).column(0)
    yield ArrayPage(matrix(column, dim).reshape(-1)[done:])


def _open_part(store: Store, part):
    """A seekable binary file of a part: a local path, or a URL on the store's data location."""
    data = getattr(store, "data", None)
    if isinstance(part, str) and "://" in part and data is not None:
        return data.fs.open_input_file(data._path(part))
    return open(part, "rb")


def _part_blocks(fh, layer: int, dim: int, wanted: pa.Array | None, with_accessions: bool,
                 rows: int) -> Iterator[tuple[pa.Array | None, np.ndarray]]:
    pf = pq.ParquetFile(fh)
    names = [pf.schema.column(i).path for i in range(len(pf.schema))]
    col = next(i for i, p in enumerate(names) if p.split(".")[0] == VECTOR_COLUMN)
    layer_col = names.index("layer")
    need_acc = with_accessions or wanted is not None
    for rg in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(rg).column(layer_col).statistics
        if stats is not None and stats.has_min_max and not stats.min <= layer <= stats.max:
            continue
        small = pf.read_row_group(rg, columns=["layer"] + (["accession"] if need_acc else []))
        keep = pc.equal(small.column("layer"), layer).to_numpy(zero_copy_only=False)
        acc = small.column("accession").combine_chunks() if need_acc else None
        if wanted is not None:
            keep = keep & pc.is_in(acc, value_set=wanted).to_numpy(zero_copy_only=False)
        if not keep.any():
            continue
        yield from _select(_blocks_of(_row_group_vectors(fh, pf, rg, col, dim), dim, rows, len(keep)),
                           keep, acc if with_accessions else None)


def _blocks_of(pages: Iterator, dim: int, rows: int, total: int) -> Iterator[np.ndarray]:
    """(rows, dim) float32 blocks (a fresh array each) of `total` vectors, filled from pages."""
    block, filled = None, 0
    for page in pages:
        left = page.n
        while left:
            if block is None:
                if total == 0:
                    raise InputError(f"a part holds more vector values than rows x {dim}")
                block = np.empty(min(rows, total) * dim, np.float32)
                total -= min(rows, total)
            take = min(len(block) - filled, left)
            page.take(block[filled:filled + take])
            filled, left = filled + take, left - take
            if filled == len(block):
                yield block.reshape(-1, dim)
                block, filled = None, 0
    if block is not None or total:
        raise InputError(f"a part holds fewer vector values than rows x {dim}")


def _select(blocks: Iterator[np.ndarray], keep: np.ndarray, acc: pa.Array | None):
    start = 0
    for X in blocks:
        k = keep[start:start + len(X)]
        a = acc.slice(start, len(X)) if acc is not None else None
        start += len(X)
        if not k.all():
            if not k.any():
                continue
            X = X[k]
            a = a.filter(pa.array(k)) if a is not None else None
        yield a, X


def layer_blocks(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None,
                 batch_rows: int = 16384, accessions: bool = False
                 ) -> Iterator[tuple[pa.Array | None, np.ndarray]]:
    """The one reader of stored global vectors: (accessions or None, float32 (m, dim)) blocks of at
    most `batch_rows` vectors of one layer, restricted to `where`, in part order."""
    run, layer = resolve(store, run_id, layer)
    subset = as_subset(store, where)
    parts = store.parts(run.dataset)
    if not parts:
        raise NotFoundError(f"run {run.run_id} has no stored embeddings (dataset {run.dataset} is empty)")
    wanted = None
    with reading(run.run_id, layer):
        if not subset.is_all:
            wanted = store.sql(subset.accessions_sql()).column(0).combine_chunks()
        for part in parts:
            with _open_part(store, part) as fh:
                yield from _part_blocks(fh, layer, int(run.dim), wanted, accessions, batch_rows)


def stream_layer(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None,
                 batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """Arrow batches (embedding, accession) of one layer, restricted to `subset` (layer_blocks)."""
    for acc, X in layer_blocks(store, run_id, layer, where, batch_rows, accessions=True):
        emb = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), X.shape[1])
        yield pa.RecordBatch.from_arrays([emb, acc], names=["embedding", "accession"])


def count_layer(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None) -> int:
    """Vectors a pass over this layer (and subset) will read; for progress bars."""
    run, layer = resolve(store, run_id, layer)
    subset = as_subset(store, where)
    with reading(run.run_id, layer):
        return int(store.scalar(f"SELECT count(*) FROM ({layer_query(store, run, subset)})", {"layer": layer}))


def iter_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None,
                    batch_rows: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream a run's global embeddings of one layer (default: the last embedded; negative
    counts from the end) as (accessions, float32 (n, dim)) batches of at most `batch_rows`."""
    for acc, X in layer_blocks(store, run_id, layer, where, batch_rows, accessions=True):
        yield acc.to_pylist(), X


def load_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | Subset | None = None
                    ) -> tuple[list[str], np.ndarray]:
    """All embeddings of one layer as (accessions sorted, float32 (n, dim)) in memory."""
    run = resolve_run(store, run_id)
    accs: list[str] = []
    blocks = []
    for a, X in iter_embeddings(store, run.run_id, layer, where):
        accs.extend(a)
        blocks.append(X)
    if not blocks:
        return [], np.zeros((0, run.dim), np.float32)
    X = np.concatenate(blocks)
    order = np.argsort(np.asarray(accs, dtype=object), kind="stable")
    return [accs[i] for i in order], X[order]


def load_vectors(store: Store, run_id: str, layer: int, accessions: list[str]) -> np.ndarray:
    """Embeddings of `accessions` (in that order) as float32 (n, dim), streamed part by part so
    memory holds only the proteins asked for; fails naming proteins without a vector."""
    run = resolve_run(store, run_id)
    pos = {a: i for i, a in enumerate(accessions)}
    X = np.zeros((len(accessions), run.dim), dtype=np.float32)
    seen = np.zeros(len(accessions), dtype=bool)
    for accs, block in iter_embeddings(store, run.run_id, layer):
        idx = np.array([pos.get(a, -1) for a in accs], dtype=np.int64)
        keep = idx >= 0
        X[idx[keep]] = block[keep]
        seen[idx[keep]] = True
    if not seen.all():
        missing = [a for a, ok in zip(accessions, seen) if not ok]
        raise NotFoundError(f"run {run.run_id!r} layer {layer} lacks embeddings for {len(missing)} "
                            f"protein(s), e.g. {', '.join(missing[:5])}")
    return X


def load_local_stats(store: Store, run_id: str, layer: int | None = None) -> dict[str, SufficientStats]:
    """Per-residue-type statistics (one-letter code -> SufficientStats) of a run's layer,
    accumulated by `embed --local-stats`; {} when the run has none."""
    run, layer = resolve(store, run_id, layer)
    rel = store.scalar(Q.stats_path, {"run_id": run.run_id, "layer": layer})
    if rel is None:
        return {}
    return load_stats_map(store.root / rel)
