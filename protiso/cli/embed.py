"""Embedding commands: models (the registry), embed (a run), runs (what the store holds)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import ProgressColumn, TaskProgressColumn, TextColumn
from rich.text import Text

from protiso.cli.core import (choice, console, emit, format_option, json_option, open_from_ctx, output_option,
                              progress_bar, resolve_format)
from protiso.models.registry import model_rows
from protiso.runs.catalog import run_short_ids, run_table
from protiso.embedding import DTYPE_CHOICES, LENGTH_POLICIES, EmbedProgress, embed as embed_run


class _ResiduesPerSecond(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- res/s" if speed is None else f"{speed:,.0f} res/s")


def models(fmt: Optional[str] = format_option(), output: Optional[Path] = output_option(),
           as_json: bool = json_option()) -> None:
    """List the model registry: aliases usable with `embed --model`.

    Any Hugging Face id or local save_pretrained directory works too (family detected from its
    config). Without network, a hub model must be in the Hugging Face cache or given as a
    directory. `protiso-mini@step<N>` selects an intermediate checkpoint of the demo model."""
    fmt = resolve_format(fmt, as_json, output)
    emit(model_rows(), fmt, output, title="models", optional=("description", "source"))


def embed(
    ctx: typer.Context,
    model: str = typer.Option("protiso-mini", "--model", "-m",
                              help="Alias (see `protiso models`), Hugging Face id or local directory."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL filter over protein_meta, e.g. "
                                        "\"organism LIKE 'Homo%' AND length < 500\"."),
    layers: str = typer.Option("last", "--layers", help="last | all | comma-separated hidden-state "
                               "indices (0 = embedding layer, negative from the end)."),
    local_stats: bool = typer.Option(False, "--local-stats", help="Also accumulate per-residue-type "
                                     "statistics (for `isotropy --level local`) in the same pass."),
    store_local: bool = typer.Option(False, "--store-local", help="Also store per-residue vectors of "
                                     "these proteins (large: use --where to pick a subset)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16. auto uses "
                              "bfloat16 only where it matches float32 (cosine >= 0.999 on a probe)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Padded tokens per batch "
                                             "(default 16384 on CPU, 65536 on GPUs)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Residues per forward pass "
                                             "(default: the model's limit, at most 4096)."),
    long: str = typer.Option("truncate", "--long", help="Proteins longer than --max-length: truncate | "
                             "chunk (overlapping windows averaged) | skip. Recorded per protein."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Stop after this many proteins (resumable)."),
    flush_seconds: float = typer.Option(10.0, "--flush-seconds", help="Commit finished proteins at "
                                        "least this often. 0: after every batch, so a hard crash loses "
                                        "at most the batch in flight (more, smaller Parquet parts)."),
    offline: bool = typer.Option(False, "--offline", help="Never use the network (also HF_HUB_OFFLINE=1)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights file, for models that need "
                                          "one (ProteinBERT's .pkl dump)."),
    engine: str = typer.Option("local", "--engine", help="local (this process) | ray (actors on a Ray "
                               "cluster; needs protiso[ray] and a store on a filesystem all nodes see)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster: auto (a running one) | "
                                          "ray://HOST:PORT. Default: $RAY_ADDRESS, else a local cluster."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray actors (one model load each; "
                                          "default: as many as the cluster's GPUs, else CPUs)."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="GPUs per Ray actor "
                                                    "(default: 1 if the cluster has GPUs, else 0)."),
    task_rows: Optional[int] = typer.Option(None, "--task-rows", help="Ray: proteins per actor task (one "
                                            "Parquet part each; default: about 4 tasks per worker, at most a "
                                            "window of 4096)."),
    connect_timeout: float = typer.Option(60.0, "--connect-timeout", help="Ray: seconds the cluster has to "
                                          "answer before the command fails."),
    verbose: bool = typer.Option(False, "--verbose", help="Ray: show Ray's own log lines."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Walk the plan (what is left to do, pages, "
                                   "windows, batches, Ray tasks) and print its size, timing and memory; "
                                   "embed and write nothing."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Embed proteins with a protein language model: mean of the residue vectors per layer.

    Re-running the same configuration resumes: embedded proteins are skipped. Ctrl-C keeps
    finished work; a hard crash loses at most the work since the last commit (`--flush-seconds`).
    Results: view `embeddings` (and `embeddings_<run_id>`), table `runs`, `run_proteins`."""
    fmt = resolve_format(fmt, as_json, output)
    choice(long, LENGTH_POLICIES, "--long")
    choice(dtype, DTYPE_CHOICES, "--dtype")
    choice(engine, ("local", "ray"), "--engine")
    ray_options = {"address": address, "workers": workers, "gpus_per_worker": gpus_per_worker}
    if engine == "local" and (any(v is not None for v in ray_options.values()) or task_rows is not None):
        raise typer.BadParameter("--address/--workers/--gpus-per-worker/--task-rows need --engine ray",
                                 param_hint="--engine")
    ray_options.update(task_rows=task_rows, timeout=connect_timeout, verbose=verbose)
    if plan_only:
        with open_from_ctx(ctx) as store:
            plan = embed_run(store, model=model, where=where, layers=layers, device=device, dtype=dtype,
                             max_tokens=max_tokens, max_length=max_length, long=long, local_stats=local_stats,
                             store_local=store_local, offline=offline or None, limit=limit, weights=weights,
                             engine=engine, ray_options=ray_options if engine == "ray" else None, plan_only=True)
        if fmt != "table" or output is not None:
            emit([dict(plan.__dict__)], fmt, output)
        else:
            console.print(plan.line(), highlight=False)
        return
    with open_from_ctx(ctx) as store:
        with progress_bar("embed", TaskProgressColumn(), TextColumn("{task.fields[proteins]}"),
                          _ResiduesPerSecond(), eta=True) as bar:
            task = bar.add_task("embed", total=None, proteins="")

            def report(p: EmbedProgress) -> None:
                bar.update(task, total=p.residues_total, completed=p.residues_processed,
                           proteins=f"{p.n_processed:,}/{p.n_total:,} proteins"
                           + (f" ({p.n_failed} failed)" if p.n_failed else ""))

            run = embed_run(store, model=model, where=where, layers=layers, device=device, dtype=dtype,
                            max_tokens=max_tokens, max_length=max_length, long=long,
                            local_stats=local_stats, store_local=store_local, progress=report,
                            offline=offline or None, limit=limit, weights=weights, engine=engine,
                            flush_seconds=flush_seconds,
                            ray_options=ray_options if engine == "ray" else None)
        short = run_short_ids(store).get(run.run_id, run.run_id)
    row = {k: getattr(run, k) for k in (
        "run_id", "model", "model_id", "revision", "family", "dim", "layers", "dtype", "parity_cosine",
        "device", "length_policy", "max_length", "status", "n_done", "n_truncated", "n_chunked",
        "n_skipped", "n_failed", "n_residues", "seconds", "residues_per_s")}
    if fmt != "table" or output is not None:
        emit([{"id": short, **row}], fmt, output)
        return
    rate = f", {run.residues_per_s:,.0f} residues/s" if run.residues_per_s else ""
    console.print(f"run [bold]{short}[/] = {run.run_id} ({run.model}, {run.family}, dim {run.dim}, layers "
                  f"{run.layers}, {run.dtype} on {run.device}): {run.n_done:,} proteins embedded"
                  f" ({run.n_truncated} truncated, {run.n_chunked} chunked), {run.n_skipped} skipped, "
                  f"{run.n_failed} failed{rate}. Query the view embeddings_{run.run_id.replace('-', '_')}.",
                  highlight=False)


def compact_layers(layers) -> str:
    """Layer indices as a reader scans them: 0-4, or 0,3,4."""
    layers = sorted(int(x) for x in (layers or []))
    if len(layers) >= 3 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


RUN_OPTIONAL = ("res/s", "failed", "long", "run_id")   # left out first when the terminal is narrow


def run_rows(store, full: bool = False) -> list[dict]:
    """The store's runs as rows led by the short id: every column of view run_summary (`full`),
    or the columns a terminal table shows (for `runs` and `info`)."""
    short = run_short_ids(store)
    rows = run_table(store).to_pylist()
    if full:
        return [{"id": short.get(r["run_id"], r["run_id"]), **r} for r in rows]
    return [{"id": short.get(r["run_id"], r["run_id"]), "model": r["model"], "layers": compact_layers(r["layers"]),
             "dim": r["dim"], "dtype": r["dtype"], "proteins": r["n_done"], "status": r["status"],
             "long": r["length_policy"] + (f" {r['max_length']}" if r["max_length"] else ""),
             "failed": r["n_failed"], "res/s": r["residues_per_s"], "run_id": r["run_id"]} for r in rows]


def runs(ctx: typer.Context, fmt: Optional[str] = format_option(), output: Optional[Path] = output_option(),
         as_json: bool = json_option()) -> None:
    """List the store's embedding runs with their counts and provenance.

    `id` is a short run id (like git's abbreviated hashes): every command takes it wherever it
    takes a run (`--model 1a2b`)."""
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, read_only=True) as store:
        rows = run_rows(store, full=fmt != "table" or output is not None)
    emit(rows, fmt, output, title="runs (id: short run id, usable wherever a run is)", optional=RUN_OPTIONAL)


def register(app: typer.Typer) -> None:
    app.command()(models)
    app.command()(embed)
    app.command()(runs)
