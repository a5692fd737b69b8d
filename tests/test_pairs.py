"""Pair sets in a store: sampling, resumable alignment, distances, correlation views, CLI."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from support import add_run_row, write_vectors
import pytest
from scipy import stats

from protiso.errors import InputError, NotFoundError
from protiso.pairs import correlate as corr
from protiso.pairs.align import Scoring, align_many
from protiso.pairs.distances import distance_pair_set, pair_distances
from protiso.pairs.functional import go_pair_set, pair_jaccard
from protiso.pairs.jobs import align_pair_set
from protiso.pairs.sample import _random_pairs, read_pairs, sample_pairs, sequences

DIM = 8


def _write_embeddings(store, run_id="run1", layers=(0, 2), seed=0):
    """Synthetic embeddings in the embeddings/<run_id> layout (accession, layer, embedding)."""
    acc = [a for (a,) in store.con.execute("SELECT accession FROM proteins ORDER BY accession").fetchall()]
    rng = np.random.default_rng(seed)
    out = {}
    with store.transaction():
        add_run_row(store, run_id, DIM, layers, model="synthetic", n_done=len(acc))
        for layer in layers:
            X = (rng.normal(size=(len(acc), DIM)) + rng.normal(size=DIM)).astype(np.float32)
            write_vectors(store, run_id, acc, layer, X)
            out[layer] = dict(zip(acc, X))
    return out


def test_sampling_is_reproducible_and_recorded(sample_store):
    a = sample_pairs(sample_store, "a", fraction=0.02, seed=5)
    sample_pairs(sample_store, "b", fraction=0.02, seed=5)
    sample_pairs(sample_store, "c", fraction=0.02, seed=6)
    n_pop = sample_store.scalar("SELECT count(*) FROM proteins")
    k = round(0.02 * n_pop)
    assert a.n_proteins == k and a.n_pairs == k * (k - 1) // 2
    ta, tb, tc = (read_pairs(sample_store, x) for x in "abc")
    assert ta.equals(tb) and not ta.equals(tc)
    pairs = list(zip(ta["accession_a"].to_pylist(), ta["accession_b"].to_pylist()))
    assert all(x < y for x, y in pairs) and len(set(pairs)) == len(pairs)
    assert ta["pair_id"].to_pylist() == list(range(len(pairs)))
    row = sample_store.con.execute("SELECT strategy, seed, definition FROM pair_sets WHERE name = 'a'").fetchone()
    assert row[:2] == ("all-pairs", 5) and json.loads(row[2])["fraction"] == 0.02
    with pytest.raises(InputError, match="exists"):
        sample_pairs(sample_store, "a", fraction=0.02)
    with pytest.raises(InputError, match="exactly one"):
        sample_pairs(sample_store, "z", fraction=0.1, proteins=3)
    with pytest.raises(InputError, match="name"):
        sample_pairs(sample_store, "bad/name", proteins=3)


def test_sampling_filters_and_strategies(sample_store):
    where = "length < 200 AND len(terms) > 0"
    allowed = {a for (a,) in sample_store.con.execute(
        f"SELECT accession FROM protein_meta WHERE {where}").fetchall()}
    ps = sample_pairs(sample_store, "rp", strategy="random-pairs", pairs=300, seed=1, where=where)
    t = read_pairs(sample_store, "rp")
    pairs = set(zip(t["accession_a"].to_pylist(), t["accession_b"].to_pylist()))
    assert ps.n_pairs == len(pairs) == 300
    assert {x for p in pairs for x in p} <= allowed
    ps2 = sample_pairs(sample_store, "np", pairs=100, seed=1)
    assert ps2.n_pairs == 105        # all pairs of the 15 proteins that give >= 100 pairs
    strat = sample_pairs(sample_store, "st", strategy="identity-stratified", pairs=60,
                         proteins=80, seed=2)
    assert 0 < strat.n_pairs <= 60
    with pytest.raises(Exception, match="invalid filter .no_such_column"):
        sample_pairs(sample_store, "w", proteins=3, where="no_such_column > 1")


@pytest.mark.parametrize("n,k", [(7, 21), (7, 15), (50, 30), (400, 1000)])
def test_random_pairs_distinct_and_in_range(n, k):
    i, j = _random_pairs(np.random.default_rng(0), n, k)
    assert len(set(zip(i.tolist(), j.tolist()))) == k
    assert (i < j).all() and i.min() >= 0 and j.max() < n
    if k == n * (n - 1) // 2:
        assert set(zip(i.tolist(), j.tolist())) == {(a, b) for a in range(n) for b in range(a + 1, n)}


def test_align_pair_set_resumes_and_matches_direct(sample_store):
    sample_pairs(sample_store, "s", proteins=20, seed=3)
    res = align_pair_set(sample_store, "s", chunk_size=50)
    assert (res.n_pairs, res.n_chunks, res.chunks_computed) == (190, 4, 4)
    got = sample_store.sql("SELECT * FROM pairs WHERE pair_set = 's' ORDER BY pair_id")
    # simulate an interruption: forget chunk 2 (catalog row and file)
    path = sample_store.scalar("SELECT path FROM pair_job_chunks WHERE pair_set = 's' AND chunk = 2")
    (sample_store.root / path).unlink()
    res2 = align_pair_set(sample_store, "s", chunk_size=50, threads=2)
    assert res2.chunks_computed == 1
    again = sample_store.sql("SELECT * FROM pairs WHERE pair_set = 's' ORDER BY pair_id")
    assert again.equals(got)
    # equal to aligning the sequences directly
    seq = sequences(sample_store, got["accession_a"].to_pylist() + got["accession_b"].to_pylist())
    direct = align_many([seq[a] for a in got["accession_a"].to_pylist()],
                        [seq[b] for b in got["accession_b"].to_pylist()], Scoring(), backend="biopython")
    np.testing.assert_array_equal(got["score"].to_numpy(), direct["score"])
    np.testing.assert_array_equal(got["identity"].to_numpy(), direct["identity"])
    assert sample_store.scalar("SELECT status FROM pair_jobs WHERE pair_set = 's'") == "done"
    with pytest.raises(NotFoundError, match="no pair set"):
        align_pair_set(sample_store, "nope")
    # replacing the set drops its alignments
    sample_pairs(sample_store, "s", proteins=5, seed=3, replace=True)
    assert sample_store.scalar("SELECT count(*) FROM pair_list WHERE pair_set = 's'") == 10
    assert sample_store.scalar("SELECT count(*) FROM pairs WHERE pair_set = 's'") == 0
    assert sample_store.scalar("SELECT count(*) FROM pair_jobs WHERE pair_set = 's'") == 0


def test_pair_distances_blockwise_equal_numpy():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 5)).astype(np.float32)
    ia, ib = np.triu_indices(30, 1)                   # dense: Gram path
    si, sj = _random_pairs(rng, 30, 20)               # sparse: row-wise path
    for a, b in ((ia, ib), (si, sj)):
        cos, sq = pair_distances(X, a, b, block=97)
        A, B = X[a].astype(np.float64), X[b].astype(np.float64)
        np.testing.assert_allclose(cos, (A * B).sum(1) / np.linalg.norm(A, axis=1) / np.linalg.norm(B, axis=1),
                                   rtol=1e-10)
        np.testing.assert_allclose(sq, ((A - B) ** 2).sum(1), rtol=1e-9, atol=1e-9)


def test_pair_jaccard_blockwise_equal_sets():
    from scipy import sparse

    rng = np.random.default_rng(2)
    M = (rng.random((25, 12)) < 0.25).astype(float)
    M[3] = 0
    M[7] = 0                                          # two proteins without terms
    ia, ib = np.triu_indices(25, 1)
    for a, b in ((ia, ib), (ia[::37], ib[::37])):     # dense and sparse paths
        got = pair_jaccard(sparse.csr_matrix(M), a, b, block=50)
        for k, (i, j) in enumerate(zip(a, b)):
            A, B = set(np.flatnonzero(M[i])), set(np.flatnonzero(M[j]))
            want = len(A & B) / len(A | B) if A | B else np.nan
            np.testing.assert_equal(got[k], want)


def test_distances_correlations_and_regimes_equal_numpy_scipy(sample_store):
    emb = _write_embeddings(sample_store)
    sample_pairs(sample_store, "s", proteins=40, seed=4, where="len(terms) > 0")
    align_pair_set(sample_store, "s")
    res = distance_pair_set(sample_store, "s", "run1")          # default: last layer (2)
    assert res.key == "run1/L2"
    assert go_pair_set(sample_store, "s").chunks_computed == 1
    assert go_pair_set(sample_store, "s").chunks_computed == 0   # current: nothing to do
    with pytest.raises(NotFoundError, match="no layer 7"):
        distance_pair_set(sample_store, "s", "run1", 7)
    t = sample_store.sql("SELECT * FROM pair_metrics WHERE pair_set = 's' ORDER BY pair_id")
    assert t.num_rows == 780
    X = emb[2]
    A = np.array([X[a] for a in t["accession_a"].to_pylist()], dtype=np.float64)
    B = np.array([X[b] for b in t["accession_b"].to_pylist()], dtype=np.float64)
    cos = (A * B).sum(1) / np.linalg.norm(A, axis=1) / np.linalg.norm(B, axis=1)
    np.testing.assert_allclose(t["cosine"].to_numpy(), cos, rtol=1e-9)
    np.testing.assert_allclose(t["sq_euclidean"].to_numpy(), ((A - B) ** 2).sum(1), rtol=1e-9)
    # GO Jaccard by hand from the annotations
    terms = {}
    for acc, term in sample_store.con.execute("SELECT accession, term FROM annotations").fetchall():
        terms.setdefault(acc, set()).add(term)
    jac = [len(terms[a] & terms[b]) / len(terms[a] | terms[b])
           for a, b in zip(t["accession_a"].to_pylist(), t["accession_b"].to_pylist())]
    np.testing.assert_allclose(t["go_jaccard"].to_numpy(), jac)

    cols = {c: t[c].to_numpy() for c in corr.VARIABLES}
    sel = corr.select(sample_store, "s", "run1", 2)
    for method, ref in (("pearson", lambda x, y: np.corrcoef(x, y)[0, 1]),
                        ("spearman", lambda x, y: stats.spearmanr(x, y).statistic)):
        m = corr.correlation_matrix(sample_store, sel, method).to_pylist()
        for row in m:
            for v in corr.VARIABLES:
                assert row[v] == pytest.approx(ref(cols[row["variable"]], cols[v]), abs=1e-9)
    # identity bins
    reg = corr.identity_regimes(sample_store, sel, bins=4).to_pylist()
    k = np.minimum(np.floor(cols["identity"] * 4), 3)
    for row in reg:
        mask = k == round(row["identity_from"] * 4)
        assert row["n_pairs"] == mask.sum()
        assert row["cosine_mean"] == pytest.approx(cols["cosine"][mask].mean())
        if mask.sum() > 1:
            assert row["sq_euclidean_std"] == pytest.approx(cols["sq_euclidean"][mask].std(ddof=1))
        assert row["cosine_p90"] == pytest.approx(np.quantile(cols["cosine"][mask], 0.9))
    assert sum(r["n_pairs"] for r in reg) == 780


def test_cli_sample_align_correlate(sample_store, invoke, tmp_path):
    _write_embeddings(sample_store)
    root = sample_store.root
    sample_store.close()
    r = invoke("--store", root, "pairs", "sample", "--name", "cli", "--proteins", "25", "--seed", "9",
               "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["pairs"] == 300
    r = invoke("--store", root, "pairs", "align", "cli", "--threads", "2", "--chunk-size", "100")
    assert r.exit_code == 0, r.output
    png = tmp_path / "plot.png"
    r = invoke("--store", root, "correlate", "cli", "--model", "run1", "--method", "spearman",
               "--bins", "5", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["n_pairs"] == 300 and doc["layer"] == 2 and doc["method"] == "spearman"
    m = {row["variable"]: row for row in doc["matrix"]}
    assert m["score"]["identity"] == m["identity"]["score"] and m["cosine"]["cosine"] == 1.0
    assert sum(b["n_pairs"] for b in doc["regimes"]) == 300
    assert png.stat().st_size > 10_000
    r = invoke("--store", root, "pairs", "list", "--json")
    assert r.exit_code == 0 and "align:PAM250-global-o10-e0.5" in r.stdout
    r = invoke("--store", root, "correlate", "missing", "--model", "run1")
    assert r.exit_code == 1 and "no pair set" in r.output
    r = invoke("--store", root, "pairs", "align", "cli", "--matrix", "NOPE")
    assert r.exit_code == 1 and "NOPE" in r.output
    r = invoke("--store", root, "pairs", "drop", "cli")
    assert r.exit_code == 0
