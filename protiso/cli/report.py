"""`protiso reproduce` (the paper's pipeline, resumable) and `protiso report` (static HTML)."""
from __future__ import annotations

import contextlib

from pathlib import Path
from typing import Optional

import typer

from protiso.cli.core import (console, emit, err_console, error, format_option, json_option, open_from_ctx,
                              output_option, prepare_directory, progress_bar, resolve_format, to_json, warn)
from protiso.pipeline.reproduce import PAPER_MODELS, reproduce


def step_line(s) -> str:
    who = f"{s.model}: " if s.model else ""
    took = f" ({s.seconds:.1f} s)" if s.status == "ran" else ""
    return f"{who}{s.step} {s.status}{took} - {s.detail}"


@contextlib.contextmanager
def pipeline_callbacks(quiet: bool = False):
    """reproduce()'s callbacks: a progress bar for embedding and one line per finished step."""
    with progress_bar("embed") as bar:
        task = bar.add_task("embed", total=None)

        def embed_progress(p):
            bar.update(task, completed=p.n_processed, total=p.n_total)

        def on_step(s):
            if not quiet and s.status != "unavailable":   # the reason is told once, at the end
                err_console.print(step_line(s), highlight=False, markup=False, soft_wrap=True)
            bar.update(task, completed=0, total=None)

        yield {"on_step": on_step, "embed_progress": embed_progress}


def reproduce_cmd(
    ctx: typer.Context,
    models: str = typer.Option(",".join(PAPER_MODELS), "--models", help="Comma-separated model aliases, "
                               "Hugging Face ids or directories (protiso-mini and protiso-mini@stepN "
                               "work offline)."),
    fraction: float = typer.Option(0.01, "--fraction", help="Pair sample: all pairs among this share of "
                                   "the proteins (the paper: 0.01)."),
    pair_proteins: Optional[int] = typer.Option(None, "--pair-proteins", help="Pair sample: all pairs "
                                                "among this many proteins (instead of --fraction)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pair sample."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL filter over protein_meta: the proteins "
                                        "to embed and analyse (default: all)."),
    layers: str = typer.Option("last", "--layers", help="'last' (the paper), 'all' (isotropy per layer) "
                               "or indices '0,3,-1'."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Residues per protein "
                                             "(longer ones truncated; default: the model's limit)."),
    no_local: bool = typer.Option(False, "--no-local", help="Skip per-residue (local) statistics."),
    no_pairs: bool = typer.Option(False, "--no-pairs", help="Skip the pair analyses."),
    threads: int = typer.Option(1, "--threads", help="Alignment worker processes."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights file for ProteinBERT."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML report at the end "
                                "(STORE/report/report.html)."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """The paper's whole pipeline per model: embed, global + local isotropy (every embedded layer),
    per-group isotropy (organism, GO), spectra, a pair sample with alignments, embedding
    distances, GO overlaps and correlations; then the HTML report (`protiso report` rewrites it
    any time). Resumable: finished steps are skipped. Models that cannot be loaded here are
    reported once, with the reason, and skipped; the command fails only when none loads.

    Output: one row per step (--format json: one object with runs, unavailable models, the
    pair set, the steps and the report's path)."""
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx, job=True) as store, pipeline_callbacks(quiet=fmt != "table") as callbacks:
        result = reproduce(store, models, **callbacks, seed=seed, where=where,
                           fraction=None if pair_proteins is not None else fraction,
                           pair_proteins=pair_proteins,
                           layers=layers, max_length=max_length, local_stats=not no_local,
                           pairs=not no_pairs, threads=threads, device=device, dtype=dtype, weights=weights)
        path = None
        if report and result.runs:
            from protiso.report import build_report

            path = build_report(store)
    doc = {**result.to_dict(), "report": str(path) if path else None}
    steps = [{"model": s.model or "(pairs)", "step": s.step, "status": s.status, "seconds": round(s.seconds, 1),
              "detail": s.detail} for s in result.steps if s.status != "unavailable"]
    if fmt == "json":
        emit([doc], fmt, output)
    elif steps:
        emit(steps, fmt, output, title="reproduce: steps", optional=("detail",))
    for model, reason in result.unavailable.items():
        warn(f"{model} skipped: {reason}")
    if not result.runs:
        error("none of the models could be loaded here, so nothing was computed; give a local copy "
              "(the reasons are above) or try `--models protiso-mini`")
        raise typer.Exit(1)
    if path is not None:
        err_console.print(f"report: {path}", highlight=False, markup=False, soft_wrap=True)


def report_cmd(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Directory for report.html "
                                       "(default: STORE/report); created if missing."),
    as_json: bool = typer.Option(False, "--json", help="Print {\"report\": path} as JSON."),
) -> None:
    """Write a self-contained HTML report (opens from disk): the paper's table beside the published
    figures, spectra, isotropy per layer / checkpoint / group, local isotropy, correlation matrix,
    distance vs identity, GO similarity, with provenance under every figure."""
    from protiso.report import build_report

    with open_from_ctx(ctx, read_only=True) as store:
        path = build_report(store, prepare_directory(out, "out") if out is not None else None)
    if as_json:
        console.file.write(to_json([{"report": str(path)}]))
    else:
        console.print(f"report: {path}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_cmd)
    app.command("report")(report_cmd)
