"""Nearest-neighbour indexes and lookup (issue 6), on vectors written in the embedding layout.

Vectors are real-sample-derived: amino-acid and dipeptide composition of the demo sample's
proteins (420 dims, strongly anisotropic like pLM embeddings), written as an embedding run
`embeddings/<run_id>` (accession, layer, embedding FixedSizeList<float32>)."""
from __future__ import annotations

import numpy as np
import pytest

from protiso.errors import InputError, NotFoundError, QueryError
from protiso.neighbors import index as nn_index
from protiso.neighbors import search as nn_search
from protiso.neighbors.index import build_index, get_index_info, index_state
from protiso.neighbors.search import neighbors, search_vectors

from nn_data import LAYER, RUN, add_run_row, composition, write_run


@pytest.fixture
def sample_vectors(sample_store):
    rows = sample_store.con.execute("SELECT accession, sequence FROM proteins ORDER BY accession").fetchall()
    acc = [a for a, _ in rows]
    X = np.stack([composition(s) for _, s in rows])
    return sample_store, acc, X


def brute(X, q, k, metric, allowed=None):
    """Independent reference: NumPy top-k by cosine (desc) or squared L2 (asc)."""
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        s = Xn @ (q / np.linalg.norm(q))
        key = -s
    else:
        s = ((X - q) ** 2).sum(1)
        key = s
    ids = np.arange(len(X)) if allowed is None else np.asarray(sorted(allowed))
    order = ids[np.argsort(key[ids], kind="stable")][:k]
    return order, s[order]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_equals_bruteforce(sample_vectors, metric):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc, X, n_parts=3)
    info, what = build_index(store, RUN, LAYER, "flat", metric)
    assert what == "built" and info.n_vectors == len(acc) and info.dim == 420
    index = nn_index.load_faiss(info)
    rng = np.random.default_rng(1)
    ids_map = dict(store.con.execute("SELECT id, accession FROM nn_index_ids WHERE index_id = ?",
                                     [info.index_id]).fetchall())
    pos = {a: i for i, a in enumerate(acc)}
    Q = X[rng.choice(len(X), 20, replace=False)] + rng.normal(0, 0.002, (20, 420)).astype(np.float32)
    D, I, _ = search_vectors(index, info, Q, 10)
    for q, d, i in zip(Q, D, I):
        ref_s = brute(X, q, 10, metric)[1]
        np.testing.assert_allclose(d, ref_s, rtol=1e-4, atol=1e-5)
        ref_ids, ref_s = brute(X, q, 11, metric)
        assert_same_ranking([pos[ids_map[j]] for j in i], ref_ids, ref_s)


def assert_same_ranking(got, ref_ids, ref_s, tol=1e-5):
    """Same ids in the same order, except where reference scores tie within float32 noise.

    The reference holds one more entry than `got`, so a tie at the boundary is seen too."""
    gaps = np.abs(np.diff(ref_s))
    k = len(got)
    for r in range(k):
        near_tie = (r > 0 and gaps[r - 1] < tol) or (r < len(gaps) and gaps[r] < tol)
        assert got[r] == ref_ids[r] or near_tie, (r, got, list(ref_ids))


def recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)])


def test_hnsw_and_ivf_recall_against_flat(sample_vectors):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc, X, n_parts=2)
    flat, _ = build_index(store, RUN, LAYER, "flat", "cosine")
    Q = X[::10]
    _, I_flat, _ = search_vectors(nn_index.load_faiss(flat), flat, Q, 10)
    for kind in ("hnsw", "ivf"):
        info, _ = build_index(store, RUN, LAYER, kind, "cosine")
        assert info.kind == kind and info.n_vectors == len(acc)
        _, I, n_exact = search_vectors(nn_index.load_faiss(info), info, Q, 10)
        assert n_exact == 0  # answered by the approximate index itself
        r = recall(I, I_flat)
        assert r >= 0.95, (kind, r)
    ivf = get_index_info(store, RUN, LAYER, "ivf", "cosine")
    assert ivf.params["nlist"] >= 2 and 1 <= ivf.params["nprobe"] <= ivf.params["nlist"]
    # a deliberately starved IVF search (1 probe of many lists) must show lower recall:
    # the recall measurement can fail
    _, I_bad, _ = search_vectors(nn_index.load_faiss(ivf), ivf, Q, 10, nprobe=1)
    assert recall(I_bad, I_flat) < recall(search_vectors(nn_index.load_faiss(ivf), ivf, Q, 10)[1], I_flat)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_filter_returns_k_allowed_hits(sample_vectors, kind, monkeypatch):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc, X)
    build_index(store, RUN, LAYER, kind, "cosine")
    where = "length BETWEEN 100 AND 300"
    allowed = {a for (a,) in store.con.execute(
        f"SELECT accession FROM protein_meta WHERE {where}").fetchall()}
    assert 100 < len(allowed) < len(acc)
    # force the selector path of approximate indexes (no exact subset scan)
    monkeypatch.setattr(nn_search, "EXACT_SUBSET_LIMIT", 0)
    pos = {a: i for i, a in enumerate(acc)}
    for query in acc[:5]:
        res = neighbors(store, RUN, LAYER, query, k=10, where=where, kind=kind)
        hits = res.hits.column("accession").to_pylist()
        assert len(hits) == 10 and set(hits) <= allowed and query not in hits
        assert res.hits.column("rank").to_pylist() == list(range(1, 11))
        if kind == "flat":
            ref, ref_s = brute(X, X[pos[query]], 11, "cosine", {pos[a] for a in allowed} - {pos[query]})
            assert_same_ranking([pos[a] for a in hits], ref, ref_s)
            np.testing.assert_allclose(res.hits.column("cosine").to_numpy(), ref_s[:10], atol=1e-5)
    # a very selective filter: exactly 3 proteins match -> exactly those 3 come back
    few = sorted(allowed)[:3]
    where3 = "accession IN ('" + "', '".join(few) + "')"
    res = neighbors(store, RUN, LAYER, acc[0], k=10, where=where3, kind=kind, include_self=True)
    assert sorted(res.hits.column("accession").to_pylist()) == few
    # nothing matches -> no hits, no error
    res = neighbors(store, RUN, LAYER, acc[0], k=5, where="length < 0", kind=kind)
    assert res.hits.num_rows == 0 and res.n_allowed == 0


def test_selective_filter_on_hnsw_uses_exact_fallback(sample_vectors, monkeypatch):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc, X)
    info, _ = build_index(store, RUN, LAYER, "hnsw", "cosine", params={"M": 4, "efSearch": 10})
    monkeypatch.setattr(nn_search, "EXACT_SUBSET_LIMIT", 0)
    monkeypatch.setattr(nn_search, "MAX_EF_SEARCH", 10)  # keep the graph search starved
    allowed = np.arange(0, len(acc), 97, dtype=np.int64)  # ~22 scattered ids
    D, I, n_exact = search_vectors(nn_index.load_faiss(info), info, X[:8], 15, allowed)
    assert (I >= 0).all() and set(I.ravel()) <= set(allowed.tolist())
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    for q, row in zip(Xn[:8], I):  # whatever path answered, the result is the exact top-15
        S = Xn[allowed] @ q
        assert set(row.tolist()) == set(allowed[np.argsort(-S)[:15]].tolist())


def test_metadata_join_and_self_exclusion(sample_vectors):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc, X)
    build_index(store, RUN, LAYER, "flat", "cosine")
    res = neighbors(store, RUN, LAYER, acc[7], k=5)
    t = res.hits
    assert t.column_names[:4] == ["query", "rank", "accession", "cosine"]
    assert acc[7] not in t.column("accession").to_pylist()
    lengths = dict(store.con.execute("SELECT accession, length FROM proteins").fetchall())
    assert t.column("length").to_pylist() == [lengths[a] for a in t.column("accession").to_pylist()]
    cos = t.column("cosine").to_pylist()
    assert cos == sorted(cos, reverse=True) and all(-1.0001 <= c <= 1.0001 for c in cos)
    with_self = neighbors(store, RUN, LAYER, acc[7], k=5, include_self=True).hits
    assert with_self.column("accession")[0].as_py() == acc[7]
    assert with_self.column("cosine")[0].as_py() == pytest.approx(1.0, abs=1e-5)


def test_extend_when_run_grows_and_rebuild_when_stale(sample_vectors):
    store, acc, X = sample_vectors
    n0 = 1500
    write_run(store, RUN, acc[:n0], X[:n0], n_parts=2)
    info, what = build_index(store, RUN, LAYER, "hnsw", "l2")
    assert what == "built" and info.n_vectors == n0
    old_file = info.path
    assert build_index(store, RUN, LAYER, "hnsw", "l2")[1] == "fresh"
    assert store.scalar("SELECT status FROM nn_index_summary") == "fresh"
    write_run(store, RUN, acc[n0:], X[n0:], n_parts=1)
    assert index_state(store, get_index_info(store, RUN, LAYER)).status == "behind"
    assert store.scalar("SELECT status FROM nn_index_summary") == "behind"  # the SQL view agrees
    info2, what = build_index(store, RUN, LAYER, "hnsw", "l2")
    assert what == "extended" and info2.n_vectors == len(acc)
    assert not old_file.exists() and info2.path.exists()
    ids = store.con.execute("SELECT accession FROM nn_index_ids WHERE index_id = ? ORDER BY id",
                            [info2.index_id]).fetchall()
    assert [a for (a,) in ids] == acc  # ids continue where the first build stopped
    # a newly added protein is found as its own nearest neighbour
    res = neighbors(store, RUN, LAYER, acc[-1], k=1, include_self=True)
    assert res.hits.column("accession").to_pylist() == [acc[-1]]
    # a part the index was built from disappears -> stale -> rebuilt from scratch
    first = nn_index.run_parts(store, RUN)[0]
    with store.transaction():
        store.con.execute("DELETE FROM parts WHERE path = ?", [first])
    assert index_state(store, get_index_info(store, RUN, LAYER)).status == "stale"
    assert store.scalar("SELECT status FROM nn_index_summary") == "stale"
    info3, what = build_index(store, RUN, LAYER, "hnsw", "l2")
    assert what == "built" and info3.n_vectors == len(acc) - 750


def test_search_extends_index_automatically(sample_vectors):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc[:1000], X[:1000])
    build_index(store, RUN, LAYER, "flat", "cosine")
    write_run(store, RUN, acc[1000:], X[1000:])
    res = neighbors(store, RUN, LAYER, acc[1500], k=3, include_self=True)
    assert acc[1500] in res.hits.column("accession").to_pylist()
    assert res.hits.column("cosine")[0].as_py() == pytest.approx(1.0, abs=1e-5)
    assert get_index_info(store, RUN, LAYER).n_vectors == len(acc)


def test_clear_errors(sample_vectors):
    store, acc, X = sample_vectors
    write_run(store, RUN, acc[:100], X[:100])
    with pytest.raises(NotFoundError, match="no embedding run for 'testrun'"):
        neighbors(store, RUN, None, acc[0])
    add_run_row(store, RUN, X.shape[1])
    with pytest.raises(NotFoundError, match="no index for run testrun layer 2"):
        neighbors(store, RUN, None, acc[0])  # the run's last layer by default
    with pytest.raises(NotFoundError, match="run testrun has no layer 5"):
        neighbors(store, RUN, 5, acc[0])
    build_index(store, RUN, LAYER, "flat", "cosine")
    with pytest.raises(NotFoundError, match="unknown accession Q9ZZZ9"):
        neighbors(store, RUN, LAYER, "Q9ZZZ9")
    with pytest.raises(NotFoundError, match=f"accession {acc[500]} is in the store but has no embedding"):
        neighbors(store, RUN, LAYER, acc[500])
    with pytest.raises(InputError, match=r"character '\*' at residue 4"):
        neighbors(store, RUN, LAYER, "MKV*LLAG")
    with pytest.raises(InputError, match=r"character '1' at residue 3"):
        neighbors(store, RUN, LAYER, "MK1VLLAG")
    with pytest.raises(QueryError, match="no_such_column"):
        neighbors(store, RUN, LAYER, acc[0], where="no_such_column > 3")
    with pytest.raises(InputError, match="unknown index kind"):
        build_index(store, RUN, LAYER, "annoy", "cosine")
    with pytest.raises(InputError, match="unknown parameter 'Mx'"):
        build_index(store, RUN, LAYER, "hnsw", "cosine", params={"Mx": 3})
    with pytest.raises(NotFoundError, match="no embeddings"):
        build_index(store, "norun", LAYER, "flat", "cosine")
    with pytest.raises(NotFoundError, match="no embeddings for layer 7"):
        build_index(store, RUN, 7, "flat", "cosine")
    with pytest.raises(InputError, match="k must be at least 1, got 0"):
        neighbors(store, RUN, LAYER, acc[0], k=0)
