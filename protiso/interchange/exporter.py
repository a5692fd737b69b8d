"""`protiso export`: a run's global vectors as a file other tools read with one library.

    export_run(store, "uniprot-prott5", "out.h5")              # format from the suffix

- h5: UniProt's per-protein layout (one float32 (d,) dataset per accession at the root) with the
  layer as the root's integer attribute `layer` (h5py alone reads it);
- npz: `embeddings` (float32, n x d), `ids` (str, n) and `layer` (int64 scalar) (NumPy alone);
- parquet: accession, layer, embedding (fixed_size_list<float32>[d]) (pyarrow alone); the only
  format that may hold several layers (`layer='all'`).
Vectors stream from the run's parts (memory bounded by a batch, plus the ids for .npz) into a
temporary file renamed when complete. `protiso import` of the file gives the same rows
(accession, layer, vector) back, bit for bit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from protiso.errors import InputError
from protiso.interchange.export import write_h5_batches, write_npz_batches, write_parquet
from protiso.query import as_subset
from protiso.runs import iter_embeddings, resolve_layer, resolve_run
from protiso.runs.reader import count_layer
from protiso.store import Store

EXPORT_FORMATS = ("h5", "npz", "parquet")
SUFFIXES = {".h5": "h5", ".hdf5": "h5", ".hdf": "h5", ".npz": "npz", ".parquet": "parquet", ".pq": "parquet"}


def export_format(output: str | Path, fmt: str | None = None) -> str:
    """The export format: `fmt`, else from the output's suffix."""
    if fmt is None:
        fmt = SUFFIXES.get(Path(output).suffix.lower())
        if fmt is None:
            raise InputError(f"{output}: cannot tell the format from the suffix; name it .h5, .npz or "
                             ".parquet, or give the format", param="format")
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}", param="format")
    return fmt


def export_run(store: Store, model: str | None, output: str | Path, fmt: str | None = None,
               layer: int | str | None = None, where=None,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Write a run's vectors of one layer (default: the last; 'all' for Parquet) for the proteins
    matching `where` to `output`; returns what was written (run, format, layers, vectors, dim,
    bytes). Nothing to export (no vector matches) is an InputError; no partial file is left."""
    output = Path(output)
    fmt = export_format(output, fmt)
    run = resolve_run(store, model)
    if isinstance(layer, str) and layer == "all":
        if fmt != "parquet":
            raise InputError(f"{fmt} holds one layer per file: export one layer at a time, or all layers "
                             "as parquet", param="layer")
        layers = sorted(int(x) for x in run.layers)
    else:
        layers = [resolve_layer(run, None if layer is None else int(layer))]
    subset = as_subset(store, where)
    counts = {la: count_layer(store, run.run_id, la, subset) for la in layers}
    total = sum(counts.values())
    if not total:
        raise InputError(f"run {run.run_id} has no vectors of layer {layers[0]}"
                         + ("" if subset.is_all else f" matching {subset.where!r}") + "; nothing to export",
                         param=None if subset.is_all else "where")
    done = 0

    def batches(la: int):
        nonlocal done
        for accs, X in iter_embeddings(store, run.run_id, la, subset):
            done += len(accs)
            if progress:
                progress(done, total)
            yield accs, X

    if fmt == "h5":
        n = write_h5_batches(output, batches(layers[0]), layer=layers[0])
    elif fmt == "npz":
        n = write_npz_batches(output, batches(layers[0]), total, dim=run.dim, layer=layers[0])
    else:
        n = write_parquet(output, ((accs, la, X) for la in layers for accs, X in batches(la)), dim=run.dim)
    return {"run_id": run.run_id, "path": str(output), "format": fmt, "layers": layers, "n_vectors": n,
            "dim": run.dim, "bytes": output.stat().st_size, "where": subset.where}
