"""Index kinds added for issue 15 (pca-hnsw, ivfpq) checked against brute force, and the one-line
errors of issue 16 (IVF list counts, report query count, damaged index files), in the library and
through the CLI. Vectors: amino-acid and dipeptide composition of the demo sample (nn_data)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from nn_data import LAYER, RUN, add_run_row, composition, write_run
from protiso.errors import DamagedStoreError, InputError
from protiso.neighbors import index as nn_index
from protiso.neighbors import search as nn_search
from protiso.neighbors.index import build_index, get_index_info
from protiso.neighbors.inputs import queries_from_accessions
from protiso.neighbors.kinds import DEFAULT_KIND, default_pca, default_pq_m, resolve_params
from protiso.neighbors.search import neighbors, search_vectors
from protiso.neighbors.transforms import transform_report


@pytest.fixture
def run(sample_store):
    rows = sample_store.con.execute("SELECT accession, sequence FROM proteins ORDER BY accession").fetchall()
    acc = [a for a, _ in rows]
    X = np.stack([composition(s) for _, s in rows])
    write_run(sample_store, RUN, acc, X, n_parts=2)
    add_run_row(sample_store, RUN, X.shape[1])
    return sample_store, acc, X


def brute(X, Q, k, metric):
    """NumPy top-k (ids, scores) per query: cosine descending or squared L2 ascending."""
    if metric == "cosine":
        S = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (X / np.linalg.norm(X, axis=1, keepdims=True)).T
        order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    else:
        S = ((Q[:, None, :].astype(np.float64) - X[None, :, :]) ** 2).sum(-1)
        order = np.argsort(S, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(S, order, 1)


def recall(approx, exact):
    return np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_pca_hnsw_reranks_exactly(run, metric):
    store, acc, X = run
    info, what = build_index(store, RUN, LAYER, "pca-hnsw", metric)
    assert what == "built" and info.kind == DEFAULT_KIND
    assert info.params["pca"] == default_pca(420) == 105 and info.params["k_factor"] == 10
    index = nn_index.load_faiss(info)
    rng = np.random.default_rng(3)
    Q = X[rng.choice(len(X), 40, replace=False)] + rng.normal(0, 0.002, (40, 420)).astype(np.float32)
    D, I, n_exact = search_vectors(index, info, Q, 10)
    assert n_exact == 0
    ref_ids, ref_s = brute(X, Q, 10, metric)
    assert recall(I, ref_ids) >= 0.98
    # the scores are exact (re-ranked on the full vectors), whatever the candidates were
    for q, d, i in zip(Q, D, I):
        exact = (X[i] / np.linalg.norm(X[i], axis=1, keepdims=True)) @ (q / np.linalg.norm(q)) \
            if metric == "cosine" else ((X[i] - q) ** 2).sum(1)
        np.testing.assert_allclose(d, exact, rtol=1e-4, atol=1e-5)
    # a starved search (one candidate per hit, tiny beam) finds less: the measurement can fail
    info.params = dict(info.params, k_factor=1, efSearch=1)
    _, I_bad, _ = search_vectors(index, info, Q, 10)
    assert recall(I_bad, ref_ids) < recall(I, ref_ids)


def test_pca_hnsw_filter_and_self(run, monkeypatch):
    store, acc, X = run
    build_index(store, RUN, LAYER, "pca-hnsw", "cosine")
    monkeypatch.setattr(nn_search, "EXACT_SUBSET_LIMIT", 0)  # the selector path, not the exact scan
    where = "length BETWEEN 100 AND 300"
    allowed = {a for (a,) in store.con.execute(f"SELECT accession FROM protein_meta WHERE {where}").fetchall()}
    pos = {a: i for i, a in enumerate(acc)}
    ids = np.array(sorted(pos[a] for a in allowed))
    for query in acc[:5]:
        hits = neighbors(store, RUN, LAYER, query, k=10, where=where).hits
        got = hits.column("accession").to_pylist()
        assert len(got) == 10 and set(got) <= allowed and query not in got
        ref, _ = brute(X[ids], X[pos[query]][None], 11, "cosine")
        ref = [acc[ids[j]] for j in ref[0] if acc[ids[j]] != query][:10]
        assert len(set(got) & set(ref)) >= 9
    res = neighbors(store, RUN, LAYER, acc[1500], k=1, include_self=True)
    assert res.hits.column("accession").to_pylist() == [acc[1500]]
    assert res.hits.column("cosine")[0].as_py() == pytest.approx(1.0, abs=1e-5)


def test_pca_hnsw_extends_with_new_parts(sample_store):
    rows = sample_store.con.execute("SELECT accession, sequence FROM proteins ORDER BY accession").fetchall()
    acc = [a for a, _ in rows]
    X = np.stack([composition(s) for _, s in rows])
    write_run(sample_store, RUN, acc[:1500], X[:1500])
    info, _ = build_index(sample_store, RUN, LAYER, "pca-hnsw", "l2")
    write_run(sample_store, RUN, acc[1500:], X[1500:])
    info2, what = build_index(sample_store, RUN, LAYER, "pca-hnsw", "l2")
    assert what == "extended" and info2.n_vectors == len(acc) and info2.params == info.params
    D, I, _ = search_vectors(nn_index.load_faiss(info2), info2, X[1500:1520], 1)
    assert I[:, 0].tolist() == list(range(1500, 1520))     # new vectors find themselves
    np.testing.assert_allclose(D[:, 0], 0, atol=1e-5)


def test_ivfpq_codes_and_stored_query_vectors(run):
    store, acc, X = run
    info, _ = build_index(store, RUN, LAYER, "ivfpq", "cosine")
    assert info.params["pq_m"] == default_pq_m(420) == 42 and 420 % info.params["pq_m"] == 0
    flat, _ = build_index(store, RUN, LAYER, "flat", "cosine")
    Q = X[::20]
    _, I_flat, _ = search_vectors(nn_index.load_faiss(flat), flat, Q, 10)
    _, I, _ = search_vectors(nn_index.load_faiss(info), info, Q, 10)
    assert recall(I, I_flat) >= 0.25  # compressed codes (2,099 vectors to train on): 50x chance
    # an accession query uses the protein's stored vector, not its lossy code
    (query,) = queries_from_accessions(store, info, [acc[11]])
    np.testing.assert_array_equal(query.vector, X[11])
    assert not np.allclose(nn_index.reconstruct(nn_index.load_faiss(info), np.array([11])),
                           nn_index.prepare(X[11:12], "cosine"), atol=1e-4)
    hits = neighbors(store, RUN, LAYER, acc[11], k=3, kind="ivfpq", include_self=True).hits
    assert acc[11] in hits.column("accession").to_pylist()


def test_ivf_list_counts_are_checked(run, invoke):
    store, acc, X = run
    n = len(acc)
    with pytest.raises(InputError, match=rf"nlist 100000 is more than the {n:,} vectors to index") as e:
        build_index(store, RUN, LAYER, "ivf", "cosine", params={"nlist": 100_000})
    assert e.value.param == "nlist"
    with pytest.raises(InputError, match="nlist must be at least 1, got 0"):
        build_index(store, RUN, LAYER, "ivf", "cosine", params={"nlist": 0})
    with pytest.raises(InputError, match="nprobe must be at least 1, got 0"):
        build_index(store, RUN, LAYER, "ivfpq", "cosine", params={"nprobe": 0})
    with pytest.raises(InputError, match="pq_m 11 must divide the dimension 420"):
        build_index(store, RUN, LAYER, "ivfpq", "cosine", params={"pq_m": 11})
    with pytest.raises(InputError, match="pca 500 is more than the 420 dimensions"):
        build_index(store, RUN, LAYER, "pca-hnsw", "cosine", params={"pca": 500})
    with pytest.raises(InputError, match="unknown parameter 'nlist' for a hnsw index"):
        build_index(store, RUN, LAYER, "hnsw", "cosine", params={"nlist": 8})
    assert get_index_info(store, RUN, LAYER) is None  # nothing was recorded
    assert resolve_params("ivf", 5, 4, {"nlist": 5})["nlist"] == 5  # as many lists as vectors is fine
    root = store.root
    store.close()
    for value, text in (("100000", f"nlist 100000 is more than the {n:,} vectors"),
                        ("0", "nlist must be at least 1, got 0")):
        r = invoke("--store", root, "index", "build", "--model", RUN, "--kind", "ivf", "--nlist", value)
        assert r.exit_code == 1, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and text in lines[0] and "(option --nlist)" in lines[0], r.output
    r = invoke("--store", root, "index", "list", "--json")
    assert r.exit_code == 0 and r.stdout.strip() == "[]"   # no broken index left for `neighbors`


def test_report_query_count_is_checked(run, invoke):
    store, acc, X = run
    with pytest.raises(InputError, match="query count 0 must be at least 1") as e:
        transform_report(store, RUN, LAYER, [("center", None)], n_queries=0, pool=20, k=3)
    assert e.value.param == "queries"
    with pytest.raises(InputError, match="pool 3 must hold at least k \\+ 1 = 4 proteins"):
        transform_report(store, RUN, LAYER, [], n_queries=2, pool=3, k=3)
    root = store.root
    store.close()
    r = invoke("--store", root, "transform", "report", "--model", RUN, "--queries", "0", "--pool", "20")
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "query count 0 must be at least 1 (option --queries)" in lines[0], r.output


def test_truncated_index_file_names_file_and_rebuild(run, invoke):
    store, acc, X = run
    info, _ = build_index(store, RUN, LAYER, "hnsw", "cosine", params={"M": 8, "efConstruction": 20})
    data = info.path.read_bytes()
    info.path.write_bytes(data[:len(data) // 2])
    nn_index._CACHE.clear()
    with pytest.raises(DamagedStoreError, match=re.escape(str(info.path)) + ".*--rebuild"):
        neighbors(store, RUN, LAYER, acc[0], k=3)
    root = store.root
    store.close()
    r = invoke("--store", root, "neighbors", acc[0], "--model", RUN, "-k", "3")
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and info.path.name in lines[0] and "index build" in lines[0] \
        and "--rebuild" in lines[0], r.output
    r = invoke("--store", root, "index", "build", "--model", RUN, "--kind", "hnsw", "--rebuild", "--json")
    assert r.exit_code == 0, r.output
    r = invoke("--store", root, "neighbors", acc[0], "--model", RUN, "-k", "3", "--json")
    assert r.exit_code == 0, r.output


def test_no_inline_sql_in_neighbors_modules():
    """Issue 12: the area's SQL lives in sql/queries/neighbors.sql (named, parameterised)."""
    folder = Path(nn_index.__file__).parent
    sql = re.compile(r"^\s*(SELECT|INSERT|DELETE|UPDATE|CREATE|WITH)\b", re.IGNORECASE)
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.match(node.value):
                pytest.fail(f"{path.name}:{node.lineno}: inline SQL {node.value[:40]!r}")


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_pca_hnsw_on_a_handful_of_vectors(store, metric):
    """Fewer vectors than the default PCA dimensions: the projection keeps n of them, and every
    vector is found in exact order."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5, 16)).astype(np.float32) + 2.0
    write_run(store, "tiny", [f"T{i}" for i in range(5)], X, other_layer=False)
    info, _ = build_index(store, "tiny", LAYER, "pca-hnsw", metric)
    assert info.params["pca"] == 5
    D, I, _ = search_vectors(nn_index.load_faiss(info), info, X, 5)
    ref_ids, ref_s = brute(X, X, 5, metric)
    np.testing.assert_array_equal(I, ref_ids)
    np.testing.assert_allclose(D, ref_s, rtol=1e-4, atol=1e-5)
