"""Neighbours over a real embedding run (tiny random BERT from tests/tiny_models.py on the demo
sample): raw-sequence and FASTA queries embedded on the fly with the run's settings, alignment
columns, derived runs, and the CLI commands."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tiny_models
from protiso import open_store
from protiso.embedding import embed
from protiso.runs import load_embeddings
from protiso.neighbors.index import build_index
from protiso.neighbors.search import neighbors
from protiso.neighbors.transforms import create_derived_run
from protiso.pairs.align import align_pair

WHERE = "length BETWEEN 20 AND 70"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_models.build("bert", tmp_path_factory.mktemp("m") / "bert", max_pos=130)


@pytest.fixture(scope="module")
def _embedded_template(_sample_store_template, bert_dir, tmp_path_factory):
    """The sample store with one run embedded (once per module)."""
    root = tmp_path_factory.mktemp("nn_embedded") / "store"
    shutil.copytree(_sample_store_template, root)
    with open_store(root) as s:
        run = embed(s, str(bert_dir), where=WHERE, layers="all", device="cpu", dtype="float32")
        seqs = dict(s.con.execute(
            f"SELECT accession, sequence FROM protein_meta WHERE {WHERE} ORDER BY accession").fetchall())
    return root, run, seqs


@pytest.fixture
def embedded(_embedded_template, tmp_path):
    """A private copy of the embedded store per test."""
    template, run, seqs = _embedded_template
    root = tmp_path / "store"
    shutil.copytree(template, root)
    with open_store(root) as s:
        yield s, run, seqs


def test_sequence_and_fasta_queries_embed_like_the_run(embedded, tmp_path):
    store, run, seqs = embedded
    layer = max(run.layers)
    build_index(store, run.run_id, layer, "flat", "cosine")
    acc = sorted(seqs)[5]
    # a raw sequence (lower case, with whitespace, as pasted) finds its own stored vector
    pasted = seqs[acc][:30].lower() + "\n " + seqs[acc][30:]
    res = neighbors(store, run.run_id, layer, pasted, k=3)
    assert res.hits.column("query")[0].as_py() == "sequence"
    assert res.hits.column("accession")[0].as_py() == acc
    assert res.hits.column("cosine")[0].as_py() == pytest.approx(1.0, abs=1e-4)
    # a FASTA file: one query per record, in order
    picks = sorted(seqs)[10:13]
    fasta = tmp_path / "q.fasta"
    fasta.write_text("".join(f">q{i} test\n{seqs[a]}\n" for i, a in enumerate(picks)))
    hits = neighbors(store, run.run_id, layer, str(fasta), k=2).hits.to_pylist()
    top = {h["query"]: h["accession"] for h in hits if h["rank"] == 1}
    assert top == {f"q{i}": a for i, a in enumerate(picks)}
    # an invalid residue in a FASTA record names file, line and residue
    bad = tmp_path / "bad.fasta"
    bad.write_text(">ok\nMKVLA\n>broken\nMKV\nLL#A\n")
    from protiso.errors import InputError

    with pytest.raises(InputError, match=r"bad.fasta:5: record broken: character '#' at residue 6"):
        neighbors(store, run.run_id, layer, str(bad))


def test_with_alignment_matches_pairwise_aligner(embedded):
    store, run, seqs = embedded
    layer = max(run.layers)
    build_index(store, run.run_id, layer, "hnsw", "cosine")
    acc = sorted(seqs)[0]
    hits = neighbors(store, run.run_id, layer, acc, k=4, with_alignment=True).hits.to_pylist()
    assert len(hits) == 4
    for h in hits:
        ref = align_pair(seqs[acc], seqs[h["accession"]])
        assert h["align_score"] == pytest.approx(ref.score)
        assert h["identity"] == pytest.approx(ref.identity)


def test_derived_run_queries_are_transformed(embedded):
    store, run, seqs = embedded
    layer = max(run.layers)
    new_id, tf = create_derived_run(store, run.run_id, layer, "abtt", 2)
    build_index(store, new_id, layer, "flat", "l2")
    acc = sorted(seqs)[7]
    res = neighbors(store, new_id, layer, seqs[acc], k=1)
    assert res.hits.column("accession")[0].as_py() == acc
    assert res.hits.column("sq_l2")[0].as_py() == pytest.approx(0.0, abs=1e-6)
    a, Y = load_embeddings(store, new_id, layer)   # the embed area reads derived runs too
    _, X = load_embeddings(store, run.run_id, layer)
    np.testing.assert_allclose(Y, tf.apply(X), atol=1e-6)


def test_cli_index_neighbors_transform(embedded, invoke, tmp_path):
    store, run, seqs = embedded
    root = store.root
    store.close()  # the CLI opens the store itself (the fixture's close is then a no-op)
    r = invoke("--store", root, "index", "build", "--model", run.run_id, "--kind", "ivf", "--json")
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)[0]
    assert built["action"] == "built" and built["n_vectors"] == len(seqs) and built["kind"] == "ivf"
    r = invoke("--store", root, "index", "build", "--model", run.run_id, "--kind", "ivf")
    assert r.exit_code == 0 and "fresh" in r.stdout
    acc = sorted(seqs)[3]
    r = invoke("--store", root, "neighbors", acc, "--model", run.run_id, "-k", "5",
               "--where", "length < 50", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    lengths = {a: len(s) for a, s in seqs.items()}
    n_match = sum(1 for a, n in lengths.items() if n < 50 and a != acc)
    assert len(hits) == min(5, n_match) and all(lengths[h["accession"]] < 50 for h in hits)
    r = invoke("--store", root, "neighbors", acc, "--model", run.run_id, "-k", "3")
    assert r.exit_code == 0 and acc not in r.stdout.split("hits")[1].split("\n", 1)[0]
    r = invoke("--store", root, "neighbors", "Q9ZZZ9", "--model", run.run_id)
    assert r.exit_code == 1 and "unknown accession Q9ZZZ9" in r.output
    r = invoke("--store", root, "neighbors", "MKV*LL", "--model", run.run_id)
    assert r.exit_code == 1 and "character '*' at residue 4" in r.output
    r = invoke("--store", root, "transform", "apply", "--model", run.run_id, "--kind", "pca",
               "--param", "4", "--json")
    assert r.exit_code == 0, r.output
    derived = json.loads(r.stdout)[0]
    assert derived["dim"] == 4 and derived["parent_run"] == run.run_id
    r = invoke("--store", root, "index", "list", "--json")
    assert r.exit_code == 0 and [x["kind"] for x in json.loads(r.stdout)] == ["ivf"]
    r = invoke("--store", root, "transform", "report", "--model", run.run_id, "--transforms",
               "center,pca:4", "--queries", "3", "--pool", "20", "-k", "3", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["transform"] for x in rows] == ["none", "center", "pca"]
    assert rows[0]["isoscore"] == pytest.approx(rows[1]["isoscore"], rel=1e-6)  # centering keeps the spectrum
