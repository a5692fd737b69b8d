"""`protiso index`, `protiso neighbors` and `protiso transform`: FAISS nearest neighbours over
embedding runs, and isotropy-correcting transforms as derived runs."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from protiso.cli.core import (RUN_HELP, choice, console, emit, format_option, json_option, open_from_ctx,
                              output_option, progress_bar, resolve_format, warn)
from protiso.neighbors.index import DEFAULT_KIND, KINDS, METRICS, build_index, list_indexes
from protiso.neighbors.search import neighbors as find_neighbors
from protiso.neighbors.search import resolve_run_layer as resolve
from protiso.neighbors.transforms import TRANSFORMS, create_derived_run, transform_report

index_app = typer.Typer(help="Build and list FAISS nearest-neighbour indexes of embedding runs.",
                        no_args_is_help=True)
transform_app = typer.Typer(help="Isotropy-correcting transforms (center, whiten, all-but-the-top, "
                            "PCA) as derived runs, and a report of what they change.",
                            no_args_is_help=True)

_MODEL_HELP = RUN_HELP + " Derived runs too."
_LAYER_HELP = "Hidden-state index (default: the run's last layer)."


def _bar():
    return progress_bar()


def _clean(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]


@index_app.command("build")
def index_build(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help=_LAYER_HELP),
    kind: str = typer.Option(DEFAULT_KIND, "--kind", help="pca-hnsw (HNSW over a PCA projection, exact "
                             "re-ranking; the default), hnsw (graph over the full vectors), flat (exact), "
                             "ivf (inverted lists) or ivfpq (inverted lists, product-quantised codes)."),
    metric: str = typer.Option("cosine", "--metric", help="cosine (similarity) or l2 (squared distance)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild from scratch even if up to date."),
    m: Optional[int] = typer.Option(None, "--M", help="hnsw, pca-hnsw: links per node "
                                    "(default hnsw 32, pca-hnsw 48)."),
    ef_construction: Optional[int] = typer.Option(
        None, "--ef-construction", help="hnsw, pca-hnsw: build beam (default hnsw 80, pca-hnsw 40)."),
    ef_search: Optional[int] = typer.Option(
        None, "--ef-search", help="hnsw, pca-hnsw: default search beam (default hnsw 128, pca-hnsw 192)."),
    pca: Optional[int] = typer.Option(None, "--pca", help="pca-hnsw: dimensions the graph works in "
                                      "(default d/4, at least 64)."),
    k_factor: Optional[int] = typer.Option(None, "--k-factor", help="pca-hnsw: candidates re-ranked "
                                           "exactly per hit wanted (default 10)."),
    nlist: Optional[int] = typer.Option(None, "--nlist", help="ivf, ivfpq: lists "
                                        "(default ivf 4 sqrt(n), ivfpq sqrt(n))."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", help="ivf, ivfpq: default lists probed "
                                         "(default max(16, nlist/16))."),
    pq_m: Optional[int] = typer.Option(None, "--pq-m", help="ivfpq: bytes per vector, a divisor of the "
                                       "dimension (default: the largest up to d/8)."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Build the FAISS index of a run's layer, or extend it with vectors embedded since.

    The index file is kept under STORE/indexes/<run_id>/, its parameters in table nn_indexes
    and its id map in nn_index_ids. Re-running is cheap: an up-to-date index is left alone, a
    grown run is added incrementally, a run whose parts changed is rebuilt. Kinds and their
    defaults: docs/neighbors.md."""
    choice(kind, KINDS, "--kind")
    choice(metric, METRICS, "--metric")
    fmt = resolve_format(fmt, as_json, output)
    given = {"M": m, "efConstruction": ef_construction, "efSearch": ef_search, "pca": pca,
             "k_factor": k_factor, "nlist": nlist, "nprobe": nprobe, "pq_m": pq_m}
    params = {k: v for k, v in given.items() if v is not None} or None
    with open_from_ctx(ctx, job=True) as store:
        run_id, lay = resolve(store, model, layer)
        with _bar() as bar:
            task = bar.add_task(f"index {kind} {run_id} L{lay}", total=None)
            info, what = build_index(store, run_id, lay, kind, metric, params, rebuild,
                                     progress=lambda n: bar.advance(task, n),
                                     total=lambda n: bar.update(task, total=n))
    row = {"index_id": info.index_id, "action": what, "run_id": info.run_id, "layer": info.layer,
           "kind": info.kind, "metric": info.metric, "dim": info.dim, "n_vectors": info.n_vectors,
           "params": info.params, "build_seconds": info.build_seconds}
    if fmt != "table" or output is not None:
        emit([row], fmt, output)
    else:
        console.print(f"{what}: {info.index_id} ({info.n_vectors:,} vectors, {info.dim} dims, "
                      f"{info.params or 'exact'})", highlight=False)


@index_app.command("list")
def index_list(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only this run's indexes "
                                        "(model alias, run id or short run id)."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """The indexes in the store with their build parameters (the table leaves out params and
    updated_at; the other formats have every column)."""
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, read_only=True) as store:
        run_id = resolve(store, model, None)[0] if model else None
        table = list_indexes(store, run_id)
    if fmt == "table":
        table = table.drop_columns(["params", "updated_at"])
    emit(table, fmt, output, title="indexes")


def neighbors(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="An accession in the store, a FASTA file (each record is a "
                                "query) or a raw amino-acid sequence (embedded on the fly with the "
                                "run's model and settings)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help=_LAYER_HELP),
    k: int = typer.Option(10, "-k", "--k", help="Neighbours per query."),
    where: Optional[str] = typer.Option(
        None, "--where", help="SQL filter over protein_meta applied inside the search, e.g. "
        "\"organism LIKE 'Homo%'\" or \"list_contains(terms, 'GO:0005737')\"; k hits come back "
        "whenever k proteins match."),
    kind: Optional[str] = typer.Option(None, "--kind", help="Use this index kind (default: the newest index)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Use the index of this metric."),
    with_alignment: bool = typer.Option(False, "--with-alignment", help="Add global alignment score "
                                        "(PAM250, gaps 10/0.5) and identity of query and hit."),
    ef_search: Optional[int] = typer.Option(None, "--ef-search", help="hnsw, pca-hnsw: search beam for this query."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", help="ivf, ivfpq: lists probed for this query."),
    include_self: bool = typer.Option(False, "--include-self", help="Keep the query protein itself in the hits."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Nearest proteins of QUERY in a run's embedding space, joined with their metadata.

    Needs an index (`protiso index build`); the index is extended first if the run grew."""
    if kind is not None:
        choice(kind, KINDS, "--kind")
    if metric is not None:
        choice(metric, METRICS, "--metric")
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx) as store:
        run_id, lay = resolve(store, model, layer)
        res = find_neighbors(store, run_id, lay, query, k, where, kind, metric, with_alignment,
                             ef_search, nprobe, include_self)
    for note in res.notes:
        warn(note)
    if fmt != "table" or output is not None:
        emit(res.hits, fmt, output)
        return
    hits = res.hits.drop_columns(["index_id"])
    empty = [c for c in ("entry_name", "organism", "description") if hits.column(c).null_count == hits.num_rows]
    emit(hits.drop_columns(empty) if hits.num_rows else hits, title=f"{res.index.index_id}: {res.hits.num_rows} hits"
         + (f" among {res.n_allowed:,} matching --where" if where else ""))


@transform_app.command("apply")
def transform_apply(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help=_LAYER_HELP),
    name: str = typer.Option(..., "--kind", help="center | whiten | abtt (all-but-the-top) | pca | "
                                             "standardize (z-score per dimension)."),
    param: Optional[int] = typer.Option(None, "--param", help="abtt: principal components removed "
                                        "(default d/100); pca: dimensions kept (default: the "
                                        "layer's effective dimensions, rounded up)."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Fit a transform on a run's layer and store the transformed vectors as a derived run.

    The derived run works wherever a run does (--model <derived run id>): isotropy, pairs,
    index, neighbors (queries given as sequences are embedded and transformed the same way)."""
    choice(name, TRANSFORMS, "--kind")
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx) as store:
        run_id, lay = resolve(store, model, layer)
        with _bar() as bar:
            task = bar.add_task(f"{name} {run_id} L{lay}", total=None)
            new_id, tf = create_derived_run(store, run_id, lay, name, param,
                                            progress=lambda n: bar.advance(task, n))
    row = {"run_id": new_id, "parent_run": run_id, "layer": lay, "transform": name,
           "param": tf.param, "dim": tf.out_dim}
    if fmt != "table" or output is not None:
        emit([row], fmt, output)
    else:
        console.print(f"derived run {new_id}: {name}"
                      f"{'' if tf.param is None else f' ({tf.param})'}, {tf.out_dim} dims", highlight=False)


@transform_app.command("report")
def transform_report_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=_MODEL_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", "-l", help=_LAYER_HELP),
    transforms: str = typer.Option("center,whiten,abtt,pca,standardize", "--transforms",
                                   help="Comma-separated; NAME or NAME:PARAM, e.g. 'abtt:5,pca:16,pca:64'."),
    queries: int = typer.Option(50, "--queries", help="Query proteins for neighbour agreement."),
    pool: int = typer.Option(1000, "--pool", help="Proteins searched (seeded sample of the run)."),
    k: int = typer.Option(10, "-k", "--k", help="Neighbours compared."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """How each transform changes IsoScore, agreement of cosine neighbours with alignment-score
    neighbours (agreement@k), and the correlation of cosine with alignment identity.

    Costs queries x pool global alignments (PAM250); transforms are fitted on the whole layer."""
    fmt = resolve_format(fmt, as_json, output)
    specs = []
    for item in [t.strip() for t in transforms.split(",") if t.strip()]:
        name, _, p = item.partition(":")
        choice(name, TRANSFORMS, "--transforms")
        try:
            specs.append((name, int(p) if p else None))
        except ValueError:
            raise typer.BadParameter(f"{item!r}: parameter must be an integer", param_hint="--transforms")
    with open_from_ctx(ctx, read_only=True) as store:
        run_id, lay = resolve(store, model, layer)
        with _bar() as bar:
            bar.add_task(f"aligning {min(queries, pool)} x {pool}", total=None)
            table = transform_report(store, run_id, lay, specs, queries, pool, k, seed)
    if fmt != "table" or output is not None:
        emit(table, fmt, output)
        return
    n = table.num_rows and table.to_pylist()[0]
    emit(_clean(table.drop_columns(["n_queries", "pool", "k", "seed", "run_id", "layer"]).to_pylist()),
         title=f"transforms of {run_id} layer {lay} ({n['n_queries']} queries x {n['pool']} proteins, "
               f"k={k}, seed {seed})")


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command()(neighbors)
    app.add_typer(transform_app, name="transform")
