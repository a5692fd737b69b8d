"""Pair commands: `pairs sample|align|distances|list|drop` and the top-level `correlate`."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

import typer

from protiso.cli.core import (RUN_HELP, choice, console, emit, err_console, format_option, json_option, open_from_ctx,
                              output_option, prepare_output, progress_bar, resolve_format, warn)

pairs_app = typer.Typer(help="Protein pairs: sample a pair set, align it, embedding distances.",
                        no_args_is_help=True)


@contextlib.contextmanager
def _bar(label: str):
    with progress_bar(label, eta=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@pairs_app.command("sample")
def sample(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Name of the new pair set."),
    fraction: Optional[float] = typer.Option(None, "--fraction", help="Fraction of the (filtered) "
                                             "proteins to sample, e.g. 0.01 as in the paper."),
    proteins: Optional[int] = typer.Option(None, "--proteins", help="Number of proteins to sample."),
    pairs: Optional[int] = typer.Option(None, "--pairs", help="Number of pairs (all-pairs: enough "
                                        "proteins for about this many pairs)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hash-based draw; same store + filter + seed = "
                      "same set."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL filter over protein_meta, e.g. "
                                        "\"organism LIKE 'Homo%'\"."),
    strategy: str = typer.Option("all-pairs", "--strategy",
                                 help="all-pairs | random-pairs | identity-stratified."),
    bins: int = typer.Option(10, "--bins", help="identity-stratified: identity bins."),
    pool_factor: int = typer.Option(10, "--pool-factor", help="identity-stratified: random pairs "
                                    "aligned per pair kept."),
    threads: int = typer.Option(1, "--threads", help="identity-stratified: alignment threads."),
    replace: bool = typer.Option(False, "--replace", help="Replace an existing set of that name."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Sample a reproducible pair set and record its definition (table pair_sets).

    The paper's design: `--fraction 0.01` (all pairs among 1% of the proteins). The pairs are
    those of the seeded SQL macros, e.g. in `protiso sql`:
    SELECT * FROM sample_pairs_all(fraction := 0.01, seed := 0)
    (also sample_pairs_random, sample_pairs_stratified; the set's definition records the
    statement)."""
    from protiso.pairs.sample import sample_pairs

    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx) as store:
        ps = sample_pairs(store, name, strategy=strategy, fraction=fraction, proteins=proteins,
                          pairs=pairs, seed=seed, where=where, bins=bins, pool_factor=pool_factor,
                          threads=threads, replace=replace)
    row = {"pair_set": ps.name, "strategy": ps.strategy, "seed": ps.seed, "population": ps.n_population,
           "proteins": ps.n_proteins, "pairs": ps.n_pairs, "sql": ps.definition["sql"]}
    for note in ps.notes:
        warn(note)
    if fmt != "table" or output is not None:
        emit([row], fmt, output)
        return
    emit([{k: v for k, v in row.items() if k != "sql"}], title="pair set")
    console.print(f"the same pairs in SQL: {row['sql']}", highlight=False, soft_wrap=True)


@pairs_app.command("align")
def align(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Pair set."),
    matrix: str = typer.Option("PAM250", "--matrix", help="Substitution matrix (Biopython names: "
                               "PAM250, BLOSUM62, ...)."),
    gap_open: float = typer.Option(10.0, "--gap-open", help="Cost of a gap's first residue."),
    gap_extend: float = typer.Option(0.5, "--gap-extend", help="Cost of each further gap residue."),
    mode: str = typer.Option("global", "--mode", help="global | local."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Worker processes "
                                          "(default: all CPUs)."),
    chunk_size: int = typer.Option(20_000, "--chunk-size", help="Pairs per resumable chunk."),
    backend: str = typer.Option("parasail", "--backend", help="parasail (SIMD) | biopython."),
    engine: str = typer.Option("local", "--engine", help="local (--threads processes here) | ray "
                               "(chunks on a Ray cluster; needs protiso[ray])."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto | ray://HOST:PORT "
                                          "(default: $RAY_ADDRESS, else a local cluster)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray actors, one CPU each "
                                          "(default: the cluster's CPUs)."),
    connect_timeout: float = typer.Option(60.0, "--connect-timeout", help="Ray: seconds the cluster has to "
                                          "answer before the command fails."),
    verbose: bool = typer.Option(False, "--verbose", help="Ray: show Ray's own log lines."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Align every pair: score, identity, identical pairs, length, gaps (view `pairs`).

    Scores equal Biopython's PairwiseAligner (a gap of length L costs open + (L-1) * extend).
    identity = identical pairs / alignment columns, on the optimal alignment with the most
    identical pairs, then the fewest columns. Interrupted runs resume where they stopped."""
    from protiso.pairs.align import Scoring
    from protiso.pairs.jobs import ENGINES, align_pair_set

    choice(engine, ENGINES, "--engine")
    fmt = resolve_format(fmt, as_json, output)
    if engine == "local" and (address is not None or workers is not None):
        raise typer.BadParameter("--address/--workers need --engine ray", param_hint="--engine")
    with open_from_ctx(ctx, job=True) as store:
        sc = Scoring(matrix, gap_open, gap_extend, mode)
        with _bar(f"align {name}") as progress:
            res = align_pair_set(store, name, sc, threads=threads or os.cpu_count() or 1,
                                 chunk_size=chunk_size, backend=backend, progress=progress, engine=engine,
                                 ray_options={"address": address, "workers": workers, "timeout": connect_timeout,
                                              "verbose": verbose} if engine == "ray" else None)
    _job_summary(res, fmt, output)


@pairs_app.command("distances")
def distances(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Pair set."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=RUN_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", help="Hidden-state layer (default: last)."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Cosine similarity and squared Euclidean distance of every pair's embeddings."""
    from protiso.pairs.distances import distance_pair_set

    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, job=True) as store:
        with _bar(f"distances {name}") as progress:
            res = distance_pair_set(store, name, model, layer, progress=progress)
    _job_summary(res, fmt, output)


def _job_summary(res, fmt: str, output: Optional[Path]) -> None:
    emit([{"pair_set": res.pair_set, "job": res.kind, "key": res.key, "pairs": res.n_pairs,
           "chunks": res.n_chunks, "computed": res.chunks_computed,
           "seconds": round(res.seconds, 3),
           "pairs_per_s": round(res.n_pairs * res.chunks_computed / max(res.n_chunks, 1)
                                / res.seconds, 1) if res.seconds else None}],
         fmt, output, title="pairs")


@pairs_app.command("list")
def list_sets(ctx: typer.Context, fmt: Optional[str] = format_option(), output: Optional[Path] = output_option(),
              as_json: bool = json_option()) -> None:
    """Pair sets with their definitions and finished alignments and distances
    (SQL: SELECT * FROM pair_set_summary)."""
    from protiso.pairs.sample import list_pair_sets

    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, read_only=True) as store:
        tab = list_pair_sets(store)
    emit(tab, fmt, output, title="pair sets")


@pairs_app.command("drop")
def drop(ctx: typer.Context, name: str = typer.Argument(..., help="Pair set.")) -> None:
    """Delete a pair set with its alignments and distances."""
    from protiso.pairs.sample import delete_pair_set, get_pair_set

    with open_from_ctx(ctx) as store:
        get_pair_set(store, name)
        delete_pair_set(store, name)
    console.print(f"dropped pair set {name}")


def correlate(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Pair set."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=RUN_HELP),
    layer: Optional[int] = typer.Option(None, "--layer", help="Hidden-state layer (default: last)."),
    alignment: Optional[str] = typer.Option(None, "--alignment", help="Alignment key, e.g. "
                                            "PAM250-global-o10-e0.5 (default: that one or the only one)."),
    method: str = typer.Option("pearson", "--method", help="pearson | spearman."),
    bins: Optional[int] = typer.Option(None, "--bins", help="Also summarise the embedding metrics "
                                       "per identity bin (this many bins over [0, 1])."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE", help="Write a hexbin figure (PNG); "
                                        "parent directories are created."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Correlate embedding geometry with sequence and functional similarity over a pair set.

    Prints the paper's matrix (cosine, squared Euclidean, alignment score, identity) plus the
    GO-term Jaccard overlap. Embedding distances are computed first if missing. The numbers come
    from SQL: views pair_correlation_matrix, pair_correlation_matrix_spearman (one row per
    variable; pair_correlations in one row) and macro pair_identity_regimes(bins := 10).

    --format json gives one document (matrix, and regimes with --bins); csv, tsv, ndjson and
    parquet give the matrix, or with --bins the per-bin table, one row each."""
    from protiso.pairs import correlate as corr

    choice(method, tuple(corr.METHODS), "--method")
    fmt = resolve_format(fmt, as_json, output)
    if plot is not None:
        plot = prepare_output(plot, "plot")

    with open_from_ctx(ctx) as store:
        with _bar(f"distances {name}") as progress:
            sel = corr.prepare(store, name, model, layer, alignment, progress=progress)
        matrix = corr.correlation_matrix(store, sel, method)
        regimes = corr.identity_regimes(store, sel, bins) if bins else None
        shown = fmt == "json" or (fmt == "table" and output is None)   # csv & co. give the matrix only
        go_sim = corr.go_correlations(store, sel, method) if shown and method in corr.GO_METHODS else None
        if plot:
            corr.plot(store, sel, plot)
    if fmt == "json":
        doc = {"pair_set": sel.pair_set, "alignment": sel.alignment, "run_id": sel.run_id,
               "layer": sel.layer, "method": method, "n_pairs": matrix["n_pairs"][0].as_py(),
               "matrix": matrix.drop_columns(["n_pairs"]).to_pylist()}
        if regimes is not None:
            doc["regimes"] = regimes.to_pylist()
        if go_sim is not None and go_sim.num_rows:
            doc["go_semantic"] = go_sim.to_pylist()
        emit(doc, fmt, output)
        return
    if fmt != "table" or output is not None:
        context = {"pair_set": sel.pair_set, "alignment": sel.alignment, "run_id": sel.run_id,
                   "layer": sel.layer, "method": method}
        rows = (regimes if regimes is not None else matrix).to_pylist()
        emit([{**context, **r} for r in rows], fmt, output)
        if plot:
            err_console.print(f"plot written to {plot}", highlight=False)
        return
    emit(matrix.drop_columns(["n_pairs"]), title=f"{method} correlation, {sel.pair_set}: "
         f"{sel.run_id} L{sel.layer} vs {sel.alignment} ({matrix['n_pairs'][0].as_py():,} pairs)")
    if regimes is not None:
        brief = ["identity_from", "identity_to", "n_pairs", "cosine_mean", "cosine_std",
                 "sq_euclidean_mean", "sq_euclidean_std", "go_jaccard_mean"]
        emit(regimes.select(brief), title="embedding metrics per identity bin "
             "(percentiles with --json)")
    if go_sim is not None and go_sim.num_rows:
        emit(go_sim, title=f"GO similarity against embedding and sequence similarity ({method}; "
             "each measure over the pairs where it is defined)")
    if plot:
        console.print(f"plot written to {plot}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(pairs_app, name="pairs")
    app.command()(correlate)
