"""Pair sets in a store: sampling, resumable alignment, distances, correlation views, CLI."""
from __future__ import annotations

import hashlib
import json
import math

import duckdb
import numpy as np
from support import add_run_row, write_vectors
import pytest
from scipy import stats

from protiso import open_store
from protiso.cli.core import to_json
from protiso.errors import InputError, NotFoundError
from protiso.pairs import correlate as corr
from protiso.pairs.align import Scoring, align_many
from protiso.pairs.distances import distance_pair_set, pair_distances
from protiso.pairs.functional import go_pair_set, pair_jaccard
from protiso.pairs.jobs import align_pair_set
from protiso.pairs.sample import (_random_pairs, delete_pair_set, list_pair_sets, read_pairs, sample_pairs,
                                  sequences)

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


def _md5(text: str) -> int:
    """DuckDB's md5_number: the MD5 digest as a little-endian 128-bit integer."""
    return int.from_bytes(hashlib.md5(text.encode()).digest(), "little")


def _reference_pairs(store, strategy="all-pairs", seed=0, where="", fraction=None, proteins=None,
                     pairs=None, bins=10, pool_factor=10):
    """The documented sampling rule, written out by brute force in Python (hashlib, sorting)."""
    query = "SELECT accession FROM protein_meta" + (f" WHERE {where}" if where else "")
    population = [a for (a,) in store.con.execute(query).fetchall()]
    n = len(population)
    if proteins is not None:
        k = proteins
    elif fraction is not None:
        k = max(2, math.floor(fraction * n + 0.5))            # round half away from zero
    elif strategy == "all-pairs":
        k = next(k for k in range(2, n + 1) if k * (k - 1) // 2 >= pairs)
    else:
        k = n
    chosen = sorted(sorted(population, key=lambda a: (_md5(f"{a}:{seed}"), a))[:k])
    every = [(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1:]]
    if strategy == "all-pairs":
        return every
    rank = {p: _md5(f"{p[0]}:{p[1]}:{seed}") for p in every}
    ranked = sorted(every, key=lambda p: (rank[p], p))
    if strategy == "random-pairs":
        return sorted(ranked[:pairs])
    pool = ranked[:pairs * pool_factor]
    seq = sequences(store, chosen)
    ident = align_many([seq[a] for a, _ in pool], [seq[b] for _, b in pool], Scoring(),
                       backend="biopython")["identity"]
    per_bin = -(-pairs // bins)
    kept = []
    for q in range(bins):
        members = [p for p, x in zip(pool, ident) if min(int(x * bins), bins - 1) == q]
        kept += sorted(members, key=lambda p: (rank[p], p))[:per_bin]
    return sorted(sorted(kept, key=lambda p: (rank[p], p))[:pairs])


def _pairs_of(table) -> list[tuple[str, str]]:
    assert table["pair_id"].to_pylist() == list(range(table.num_rows))
    return list(zip(table["accession_a"].to_pylist(), table["accession_b"].to_pylist()))


@pytest.mark.parametrize("request_", [
    dict(fraction=0.02, seed=5),
    dict(pairs=100, seed=1),                                       # all pairs of 15 proteins
    dict(proteins=12, seed=3, where="organism LIKE 'Homo sapiens%'"),
    dict(strategy="random-pairs", pairs=300, seed=1, where="length < 200 AND len(terms) > 0"),
    dict(strategy="random-pairs", pairs=40, proteins=20, seed=7),
])
def test_sampling_follows_the_documented_rule_in_python_and_sql(sample_store, request_):
    ps = sample_pairs(sample_store, "s", **request_)
    want = _reference_pairs(sample_store, **request_)
    got = _pairs_of(read_pairs(sample_store, "s"))
    assert got == want and all(a < b for a, b in got)
    assert ps.n_pairs == len(want) and ps.n_proteins == len({x for p in want for x in p})
    # the recorded statement, run as a user would in `protiso sql`, lists the same pairs
    sql = ps.definition["sql"]
    assert sql.startswith("WITH population AS (" if "where" in request_ else "SELECT * FROM sample_pairs_")
    assert _pairs_of(sample_store.sql(sql)) == want


def test_identity_stratified_python_job_equals_sql_macro_and_rule(sample_store):
    request_ = dict(strategy="identity-stratified", pairs=40, proteins=30, pool_factor=5, bins=4,
                    seed=2, where="length < 150")
    ps = sample_pairs(sample_store, "st", threads=2, **request_)
    got = _pairs_of(read_pairs(sample_store, "st"))
    assert got == _reference_pairs(sample_store, **request_)
    assert 0 < ps.n_pairs <= 40
    assert ps.definition["sql"] == ("WITH population AS (SELECT accession FROM protein_meta WHERE (length < 150)) "
                                    "SELECT * FROM sample_pairs_stratified(40, bins := 4, pool_factor := 5, "
                                    "proteins := 30, seed := 2, population := 'population')")
    assert _pairs_of(sample_store.sql(ps.definition["sql"])) == got      # aligned by the UDF


def test_sampling_is_reproducible_and_recorded(sample_store):
    a = sample_pairs(sample_store, "a", fraction=0.02, seed=5)
    sample_pairs(sample_store, "b", fraction=0.02, seed=5)
    sample_pairs(sample_store, "c", fraction=0.02, seed=6)
    ta, tb, tc = (read_pairs(sample_store, x) for x in "abc")
    assert ta.equals(tb) and not ta.equals(tc)
    row = sample_store.con.execute("SELECT strategy, seed, definition FROM pair_sets WHERE name = 'a'").fetchone()
    definition = json.loads(row[2])
    assert row[:2] == ("all-pairs", 5) and definition["fraction"] == 0.02
    assert "md5_number" in definition["rule"] and definition["sql"] == a.definition["sql"]
    with pytest.raises(InputError, match="exists") as exc:
        sample_pairs(sample_store, "a", fraction=0.02)
    assert exc.value.param == "replace"
    with pytest.raises(InputError, match="name"):
        sample_pairs(sample_store, "bad/name", proteins=3)
    summary = list_pair_sets(sample_store).to_pylist()
    assert [r["name"] for r in summary] == ["a", "b", "c"] and summary[0]["computed"] == []
    assert summary == sample_store.sql("SELECT * FROM pair_set_summary ORDER BY name").to_pylist()


def test_proteins_for_pairs_is_the_smallest_count(store):
    got = dict(store.con.execute("SELECT p, proteins_for_pairs(p) FROM range(1, 3001) t(p)").fetchall())
    for p, k in got.items():
        assert k == next(n for n in range(2, 100) if n * (n - 1) // 2 >= p), p
    for p in (10 ** 12, 10 ** 12 + 1, 6_406_410, 6_406_411, 2 ** 52):
        k = store.scalar("SELECT proteins_for_pairs($p)", {"p": p})
        assert k * (k - 1) // 2 >= p > (k - 1) * (k - 2) // 2


@pytest.mark.parametrize("request_,message,param", [
    (dict(fraction=1.5), r"pair fraction 1.5 must be in \(0, 1\]", "fraction"),
    (dict(fraction=0.1, proteins=3), "exactly one of a fraction, a protein count or a pair count", "fraction"),
    (dict(proteins=5000), "5,000 proteins requested but 2,099 are in the store", "proteins"),
    (dict(proteins=3, where="length > 4000"), "3 proteins requested but 2 match the filter .length > 4000.",
     "proteins"),
    (dict(strategy="random-pairs", pairs=50, proteins=5), "50 pairs requested but only 10 exist", "pairs"),
    (dict(strategy="random-pairs", fraction=0.1), "needs a pair count", "pairs"),
    (dict(strategy="identity-stratified", pairs=5, bins=0), "identity bins 0 must be >= 1", "bins"),
    (dict(strategy="shuffled", pairs=5), "strategy 'shuffled' must be one of", "strategy"),
])
def test_sampling_errors_name_values_not_options(sample_store, request_, message, param):
    with pytest.raises(InputError, match=message) as exc:
        sample_pairs(sample_store, "e", **request_)
    assert exc.value.param == param and "--" not in str(exc.value)
    assert sample_store.scalar("SELECT count(*) FROM pair_sets") == 0


def test_sampling_macro_refuses_more_proteins_than_the_population(sample_store):
    with pytest.raises(duckdb.Error, match="5000 proteins requested but the population has 2099"):
        sample_store.sql("SELECT * FROM sample_pairs_all(proteins := 5000)")
    empty = "WITH nothing AS (SELECT accession FROM proteins WHERE false) "
    with pytest.raises(duckdb.Error, match="3 proteins requested but the population has 0"):
        sample_store.sql(empty + "SELECT * FROM sample_pairs_random(2, proteins := 3, population := 'nothing')")
    assert sample_store.sql(empty + "SELECT * FROM sample_proteins(population := 'nothing')").num_rows == 0


def test_dropping_a_set_keeps_sets_whose_names_match_it_as_a_pattern(sample_store):
    sample_pairs(sample_store, "a_b", proteins=4)
    sample_pairs(sample_store, "aXb", proteins=5)
    delete_pair_set(sample_store, "a_b")
    assert sample_store.scalar("SELECT count(*) FROM pair_list WHERE pair_set = 'aXb'") == 10
    assert sample_store.scalar("SELECT count(*) FROM parts WHERE dataset = 'pairs/aXb/list'") == 1


def test_sampling_strategies_run_on_filters(sample_store):
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
    doc = json.loads(r.stdout)[0]
    assert doc["pairs"] == 300 and doc["sql"] == "SELECT * FROM sample_pairs_all(proteins := 25, seed := 9)"
    r = invoke("--store", root, "pairs", "sample", "--name", "bad", "--fraction", "1.5")
    assert r.exit_code == 1 and "pair fraction 1.5 must be in (0, 1] (option --fraction)" in r.output
    r = invoke("--store", root, "pairs", "sample", "--name", "cli", "--proteins", "3")
    assert r.exit_code == 1 and "(option --replace)" in r.output
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
    with open_store(root) as s:                             # the CLI printed what the SQL gives
        view = s.sql("SELECT * EXCLUDE (pair_set, alignment, run_id, layer, n_pairs, variable_order) "
                     "FROM pair_correlation_matrix_spearman WHERE pair_set = 'cli' ORDER BY variable_order")
        regimes = s.sql("SELECT * EXCLUDE (pair_set, alignment, run_id, layer) FROM "
                        "pair_identity_regimes(bins := 5) WHERE pair_set = 'cli' ORDER BY identity_from")
        listed = json.loads(to_json(s.sql("SELECT * FROM pair_set_summary").to_pylist()))
    for got, want in ((doc["matrix"], view), (doc["regimes"], regimes)):   # corr sums in parallel
        assert len(got) == want.num_rows
        for g, w in zip(got, want.to_pylist()):
            assert g.keys() == w.keys()
            assert all(g[k] == w[k] if not isinstance(w[k], float) else g[k] == pytest.approx(w[k], rel=1e-12)
                       for k in w)
    r = invoke("--store", root, "correlate", "cli", "--model", "run1", "--method", "kendall")
    assert r.exit_code == 2 and "--method" in r.output
    r = invoke("--store", root, "pairs", "list", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == listed
    assert listed[0]["computed"] == ["align:PAM250-global-o10-e0.5", "distance:run1/L2", "go:annotations"]
    r = invoke("--store", root, "correlate", "missing", "--model", "run1")
    assert r.exit_code == 1 and "no pair set" in r.output
    r = invoke("--store", root, "pairs", "align", "cli", "--matrix", "NOPE")
    assert r.exit_code == 1 and "NOPE" in r.output
    r = invoke("--store", root, "pairs", "drop", "cli")
    assert r.exit_code == 0


def test_sql_command_runs_the_pair_macros_read_only(sample_store, invoke):
    """`protiso sql` (a read-only store) runs the sampling macros: the same pairs as the set."""
    ps = sample_pairs(sample_store, "q", strategy="random-pairs", pairs=30, proteins=12, seed=4,
                      where="length < 400")
    want = read_pairs(sample_store, "q").to_pylist()
    root = sample_store.root
    sample_store.close()
    r = invoke("--store", root, "sql", ps.definition["sql"], "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == want
    r = invoke("--store", root, "sql", "SELECT count(*) AS n FROM sample_proteins(proteins := 12, seed := 4)",
               "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"n": 12}], r.output
