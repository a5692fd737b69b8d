"""Interchange commands: import (embedding files -> a run) and export (a run -> a file)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from protiso.cli.core import choice, console, emit, open_from_ctx, progress_bar, warn
from protiso.cli.output import is_inside
from protiso.errors import InputError
from protiso.interchange.exporter import EXPORT_FORMATS, export_run
from protiso.interchange.formats import FORMATS, LEVELS
from protiso.interchange.importer import UNKNOWN_POLICIES, import_embeddings
from protiso.runs.catalog import run_short_ids


def _layers(text: Optional[str], option: str, allow_all: bool) -> int | list[int] | str | None:
    """'3', '-1', '0,5,6' (a list) or 'all'."""
    if text is None:
        return None
    text = text.strip()
    if text == "all" and allow_all:
        return "all"
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise typer.BadParameter(f"{text!r} is not a layer number, a comma-separated list"
                                 + (" or 'all'" if allow_all else ""), param_hint=option)
    return values[0] if len(values) == 1 else values


def import_(
    ctx: typer.Context,
    paths: List[Path] = typer.Argument(..., help="Embedding files: HDF5 (UniProt per-protein.h5, "
                                       "ProtTrans/bio_embeddings), ESM extract.py .pt files or their "
                                       "directory, .npz/.npy, Parquet. Several are read as one input."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the new run (its id is derived from it)."),
    fmt: str = typer.Option("auto", "--format", help=f"Input format: auto|{'|'.join(FORMATS)}."),
    model_id: Optional[str] = typer.Option(None, "--model-id", help="What produced the embeddings, "
                                           "e.g. Rostlab/prot_t5_xl_uniref50 (recorded)."),
    layer: Optional[str] = typer.Option(None, "--layer", help="ESM .pt / Parquet: the layer(s) to import "
                                        "(N or N,M; negative from the highest; default all). Other formats: "
                                        "the layer number to record (default: the file's, else -1 = last)."),
    level: str = typer.Option("auto", "--level", help="global (one vector per protein) | local (an L x d "
                              "matrix per protein) | auto (from the data)."),
    key: Optional[str] = typer.Option(None, "--key", help="HDF5 group of the datasets; npz matrix array; "
                                      "Parquet embedding column; ESM representation."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="npz id array or Parquet id column."),
    ids: Optional[Path] = typer.Option(None, "--ids", help="Id file (one per line) for an .npy matrix."),
    unknown: str = typer.Option("error", "--unknown", help="Accessions not in the store: error (default; "
                                "nothing is imported) | skip (counted and reported)."),
    store_local: bool = typer.Option(False, "--store-local", help="Per-residue input: also store the "
                                     "residue vectors (view local_embeddings; large)."),
    pooling: Optional[str] = typer.Option(None, "--pooling", help="How per-protein vectors were pooled "
                                          "(recorded; default mean for per-residue input, else imported)."),
    as_json: bool = typer.Option(False, "--json", help="Print the new run as JSON."),
) -> None:
    """Import embeddings computed elsewhere as a run (family 'imported') that works wherever a run
    does: isotropy, pairs, index and neighbors, transforms, report.

    Accessions must be in the store (`protiso ingest` first). One transaction: any bad input (NaN
    or Inf, a dimension that changes, a duplicate, a truncated or foreign file, a per-residue
    length that differs from the stored sequence) is an error naming the file and the protein,
    and nothing is imported. Provenance (paths, sizes, SHA-256, model id, dtype, layers) is in
    runs.details."""
    choice(fmt, ("auto",) + FORMATS, "--format")
    choice(level, LEVELS, "--level")
    choice(unknown, UNKNOWN_POLICIES, "--unknown")
    layers = _layers(layer, "--layer", allow_all=False)
    with open_from_ctx(ctx, create=True, job=True) as store:
        with progress_bar("import") as bar:
            task = bar.add_task("import", total=None)
            run = import_embeddings(store, paths, name, fmt, model_id, layers, level, key, id_column, ids,
                                    unknown, store_local, pooling,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        short = run_short_ids(store).get(run.run_id, run.run_id)
    skipped = run.details.get("skipped_unknown", 0)
    if skipped:
        warn(f"{skipped:,} proteins not in the store were skipped, e.g. "
             f"{', '.join(run.details.get('skipped_examples', [])[:5])}")
    row = {"id": short, **{k: getattr(run, k) for k in (
        "run_id", "model", "model_id", "family", "dim", "layers", "pooling", "dtype", "n_done", "n_residues",
        "local_stats", "status")}, "skipped_unknown": skipped, "sources": run.details.get("sources")}
    if as_json:
        emit([row], "json")
        return
    sources = run.details.get("sources") or []
    console.print(f"run [bold]{short}[/] = {run.run_id} ({run.model}, imported from {len(sources)} "
                  f"input{'s' if len(sources) != 1 else ''}, {run.dtype}, dim {run.dim}, layers {run.layers}): "
                  f"{run.n_done:,} proteins" + (", per-residue statistics" if run.local_stats else "")
                  + f". Use it as --model {short}.", highlight=False)


def export(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="Run id, short run id or model of the run."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (.h5, .npz or .parquet)."),
    fmt: Optional[str] = typer.Option(None, "--format", help=f"{'|'.join(EXPORT_FORMATS)} (default: from "
                                      "the --output suffix)."),
    layer: Optional[str] = typer.Option(None, "--layer", "-l", help="Layer to export (default: the run's "
                                        "last; negative from the end); 'all' for parquet."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL filter over protein_meta, e.g. "
                                        "\"organism LIKE 'Homo%'\"."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Export a run's vectors as UniProt-style HDF5, .npz or Parquet, readable with h5py, NumPy
    or pyarrow alone; `protiso import` of the file gives the same rows back."""
    if fmt is not None:
        choice(fmt, EXPORT_FORMATS, "--format")
    lay = _layers(layer, "--layer", allow_all=True)
    if isinstance(lay, list):
        raise typer.BadParameter("give one layer, or 'all' (parquet)", param_hint="--layer")
    with open_from_ctx(ctx, read_only=True) as store:
        if is_inside(output, store.root):
            raise InputError(f"{output} is inside the store {store.root}; export elsewhere", param="output")
        with progress_bar("export") as bar:
            task = bar.add_task("export", total=None)
            info = export_run(store, model, output, fmt, lay, where,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        emit([info], "json")
        return
    console.print(f"{info['n_vectors']:,} vectors of run {info['run_id']} (layer"
                      f"{'s' if len(info['layers']) > 1 else ''} {', '.join(map(str, info['layers']))}, "
                      f"dim {info['dim']}) written to {info['path']} ({info['format']}, "
                      f"{info['bytes'] / 2**20:,.1f} MiB)", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command()(export)
