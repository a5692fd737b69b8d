"""A small analysed store shared by tests/test_reproduce.py and tests/test_report.py: the demo
sample with protiso-mini (all layers, per-residue statistics) and its step-0 checkpoint run
through `reproduce` on 170 proteins (the 100 flat-file entries, which carry organisms, and the
71 proteins of at most 60 residues, which carry GO terms), 64 residues per protein."""
from __future__ import annotations

import shutil
from pathlib import Path

from protiso import open_store
from protiso.ingest import ingest
from protiso.pipeline.reproduce import reproduce

WHERE = "organism IS NOT NULL OR length <= 60"
MODELS = ["protiso-mini", "protiso-mini@step0", "prot_bert", "proteinbert"]
MISSING = ("prot_bert", "proteinbert")
KWARGS = dict(fraction=None, pair_proteins=30, seed=7, where=WHERE, max_length=64,
              layers={"protiso-mini": "all"}, local_stats={"protiso-mini": True},
              device="cpu", dtype="float32", offline=True)


def build(root: Path, sample_files) -> tuple[Path, object]:
    """Ingest the sample into `root`, run reproduce once; returns (root, result)."""
    fasta, go, flat = sample_files
    with open_store(root, create=True) as s:
        ingest(s, [fasta, flat], annotations=[go])
        result = reproduce(s, MODELS, **KWARGS)
    return root, result


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
