"""The demo: the whole pipeline on the bundled Swiss-Prot sample (2,000 proteins with GO terms and
100 flat-file entries) with the bundled demonstration model protiso-mini and its training
checkpoints, then the report. Each step is skipped when already done, so an interrupted demo
resumes. protiso-mini is a demonstration model, not a stand-in for published pLMs."""
from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc

from protiso.errors import InputError
from protiso.go.store import bundled_obo
from protiso.ingest import ingest as ingest_files
from protiso.ingest.loader import IngestResult
from protiso.models import mini
from protiso.pipeline.reproduce import ReproduceResult, reproduce
from protiso.report import build_report
from protiso.store import Store, queries

Q = queries("pipeline")
DEMO_MAX_LENGTH = 128      # residues per protein in the demo (keeps it to about a minute on 2 cores)
DEMO_PAIR_PROTEINS = 250   # all pairs among 250 sampled proteins (31,125 pairs)
SAMPLE_FILES = ("swissprot2014_go_2k.fasta.gz", "swissprot_sample_100.dat")
SAMPLE_ANNOTATIONS = "swissprot2014_go_2k.tsv.gz"


@dataclass
class DemoResult:
    ingest: IngestResult
    pipeline: ReproduceResult
    isotropy: pa.Table        # whole-set global isotropy at each run's last layer
    report: Path
    settings: dict


def demo_models() -> list[str]:
    """protiso-mini and its earlier training checkpoints."""
    steps = mini.available_steps()
    return ["protiso-mini"] + [f"protiso-mini@step{s}" for s in steps[:-1]]


def subset_filter(proteins: int | None) -> str | None:
    """The filter of `--proteins N`: a fixed pseudo-random N of the sample (by accession hash)."""
    if proteins is None:
        return None
    return f"accession IN (SELECT accession FROM proteins ORDER BY hash(accession), accession LIMIT {int(proteins)})"


def demo_settings(proteins: int | None = None) -> dict:
    """What the demo runs with (printed and recorded in the report)."""
    return dict(models=demo_models(), where=subset_filter(proteins), fraction=None, pair_proteins=DEMO_PAIR_PROTEINS, seed=0,
                layers={"protiso-mini": "all"}, local_stats={"protiso-mini": True},
                max_length=DEMO_MAX_LENGTH, threads=max(1, min(4, os.cpu_count() or 1)),
                device="cpu", dtype="float32")


def settings_text(settings: dict, n_proteins: int | None = None) -> str:
    """The demo's settings in one paragraph, printed before it runs (the report records them)."""
    first, *steps = settings["models"]
    checkpoints = ", ".join(m.split("@", 1)[1] for m in steps if "@" in m)
    proteins = (f"a fixed subset of {n_proteins:,} proteins (--proteins)" if settings["where"] and n_proteins
                else "every protein of the sample" if not settings["where"] else "a fixed subset (--proteins)")
    return (f"demo settings: model {first} (all layers, per-residue statistics)"
            + (f" and its training checkpoints {checkpoints} (last layer)" if checkpoints else "")
            + f"; {proteins}, each truncated to its first {settings['max_length']} residues (the demo's "
            f"limit, to keep it short on a CPU; `protiso embed` uses the model's own limit); pairs: all "
            f"pairs among {settings['pair_proteins']} proteins, seed {settings['seed']}; "
            f"{settings['device']}, {settings['dtype']}, {settings['threads']} thread(s). "
            "The report records these settings.")


def sample_overview(store: Store) -> dict[str, pa.Table]:
    """What the ingested sample holds: the top organisms (FASTA entries without an organism are
    one group, labelled) and the annotations per namespace."""
    organisms = store.sql(Q.top_organisms)
    if "organism" in organisms.column_names:
        i = organisms.column_names.index("organism")
        organisms = organisms.set_column(i, "organism", pc.fill_null(organisms.column(i), "(not given)"))
    return {"top organisms": organisms, "annotations": store.sql(Q.annotation_summary)}


def run_demo(store: Store, proteins: int | None = None, on_ingest: Callable[[IngestResult], None] | None = None,
             **callbacks) -> DemoResult:
    """Ingest the sample, run the pipeline (on a fixed subset of `proteins` if given), write the
    report. `callbacks` go to reproduce (on_step, embed_progress)."""
    if proteins is not None and proteins < DEMO_PAIR_PROTEINS + 50:
        raise InputError(f"the demo needs at least {DEMO_PAIR_PROTEINS + 50} proteins, got {proteins}",
                         param="proteins")
    settings = demo_settings(proteins)
    sample = resources.files("protiso") / "data" / "sample"
    with ExitStack() as stack:
        folder = stack.enter_context(resources.as_file(sample))
        result = ingest_files(store, [folder / f for f in SAMPLE_FILES] + [bundled_obo()], "auto", [folder / SAMPLE_ANNOTATIONS])
    if on_ingest:
        on_ingest(result)
    args = {k: v for k, v in settings.items() if k != "models"}
    pipeline = reproduce(store, settings["models"], **args, **callbacks)
    table = store.sql(Q.demo_isotropy, {"filter": settings["where"] or ""})
    return DemoResult(result, pipeline, table, build_report(store, settings=settings), settings)
