"""`protiso train-mini`: train the small demonstration protein masked LM (protiso-mini)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import MofNCompleteColumn, TextColumn

from protiso.cli.core import console, emit, handle_errors, progress_bar
from protiso.errors import InputError
from protiso.models.mini import PROTBERT_VOCAB
from protiso.training import mini
from protiso.training.mini import MiniConfig

_D = MiniConfig()  # defaults shown by --help come from the library's config


def _parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    except ValueError:
        raise InputError(f"--save-steps: expected comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in steps):
        raise InputError(f"--save-steps: steps must be >= 0, got {text!r}")
    return steps


def train_mini(
    out: Path = typer.Option(Path("protiso-mini"), "--out", metavar="DIR",
                             help="Directory for the checkpoints (step<N>/) and training.json."),
    steps: int = typer.Option(_D.steps, "--steps", min=1, help="Optimiser steps."),
    seed: int = typer.Option(_D.seed, "--seed", help="Seed: initialisation, held-out split, batches, masks."),
    threads: int = typer.Option(_D.threads, "--threads", min=1, help="torch CPU threads (the machine may be shared)."),
    max_minutes: Optional[float] = typer.Option(
        _D.max_minutes, "--max-minutes", help="Stop early and save the last step when this wall time is spent "
        "(0 = no limit)."),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", min=1, help="Proteins per step."),
    max_length: int = typer.Option(_D.max_length, "--max-length", min=8,
                                   help="Tokens per protein incl. [CLS]/[SEP]; longer ones are randomly cropped."),
    save_steps: str = typer.Option(",".join(map(str, _D.save_steps)), "--save-steps",
                                   help="Comma-separated steps to keep a checkpoint at (the final step always)."),
    heldout: int = typer.Option(_D.n_heldout, "--heldout", min=1,
                                help="Proteins kept out of training to measure held-out loss."),
    fasta: Optional[Path] = typer.Option(None, "--fasta", help="Training proteins (FASTA, plain or .gz); "
                                         "default: the bundled 2,000-protein Swiss-Prot sample."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore the state of an interrupted run in --out."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train protiso-mini, protiso's small DEMONSTRATION protein masked LM (not a stand-in for
    published pLMs): a BERT with ProtBERT's tokenizer conventions, trained on CPU with the
    MLM objective (15% masking, 80/10/10), AdamW with warmup, reproducible from --seed.

    Checkpoints are written as save_pretrained directories under --out/step<N>/ and load with
    transformers' BertForMaskedLM/BertTokenizer (or `protiso embed --model DIR/step<N>`).
    An interrupted run re-started with the same options resumes from its last checkpoint."""
    with handle_errors():

        cfg = MiniConfig(seed=seed, steps=steps, batch_size=batch_size, max_length=max_length,
                              threads=threads, n_heldout=heldout, save_steps=_parse_steps(save_steps),
                              max_minutes=(max_minutes or None))
        with progress_bar("train-mini", MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                          eta=True) as bar:
            task = bar.add_task("train", total=steps, loss="-")

            def progress(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, loss=f"{loss:.3f}")

            result = mini.train(out, cfg, fasta=fasta or mini.SAMPLE_FASTA, progress=progress,
                                resume=not fresh)
    rows = [{"step": s, "heldout_loss": round(result.heldout_loss[s], 4),
             "train_loss": (round(result.losses[s - 1], 4) if s else None),
             "path": str(result.out_dir / f"step{s}")} for s in result.steps_saved]
    if as_json:
        sys.stdout.write(json.dumps({"out": str(result.out_dir), "final_step": result.final_step,
                                     "wall_seconds": round(result.wall_seconds, 1), "threads": threads,
                                     "uniform_loss": math.log(len(PROTBERT_VOCAB)),
                                     "checkpoints": rows}, indent=2) + "\n")
        return
    emit(rows, title=f"protiso-mini checkpoints (demonstration model; uniform-guess loss "
                     f"{math.log(len(PROTBERT_VOCAB)):.3f})")
    console.print(f"{result.final_step} steps in {result.wall_seconds:.0f} s on {threads} thread(s); "
                  f"use with `protiso embed --model {result.out_dir / f'step{result.final_step}'}`",
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train-mini")(train_mini)
