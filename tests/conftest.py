"""Shared fixtures: fresh stores, the bundled demo sample ingested, and a CLI runner."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from protiso import open_store
from protiso.cli import app
from protiso.ingest import ingest

DATA = Path(__file__).parent / "data"


def sample_files() -> tuple[Path, Path, Path]:
    """(FASTA, GO TSV, flat file) of the demo sample shipped in the package."""
    folder = Path(str(resources.files("protiso") / "data" / "sample"))
    return (folder / "swissprot2014_go_2k.fasta.gz", folder / "swissprot2014_go_2k.tsv.gz",
            folder / "swissprot_sample_100.dat")


@pytest.fixture
def store(tmp_path):
    """A fresh, empty store."""
    with open_store(tmp_path / "store", create=True) as s:
        yield s


@pytest.fixture(scope="session")
def _sample_store_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample") / "store"
    fasta, go, flat = sample_files()
    with open_store(root, create=True) as s:
        ingest(s, [fasta, flat], annotations=[go])
    return root


@pytest.fixture
def sample_store(_sample_store_template, tmp_path):
    """A store holding the demo sample (2,000 Swiss-Prot proteins with GO terms plus the
    100-entry flat file); a private copy per test."""
    root = tmp_path / "sample_store"
    shutil.copytree(_sample_store_template, root)
    with open_store(root) as s:
        yield s


@pytest.fixture
def invoke():
    """Run the CLI in-process: invoke("--store", dir, "info") -> click Result."""
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def torch64():
    """The reference isoscore package computes sqrt(d) from an integer tensor, i.e. in torch's
    default dtype; float64 end to end needs the default set to float64."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models are latency-bound: one torch thread avoids oversubscription on small CPUs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
