"""Isotropy-correcting transforms (issue 6 §3): fitted maps checked against NumPy, derived runs
written all-or-nothing and usable by the index, and the report checked against an independent
computation. Vectors: dipeptide composition of the demo sample (real data, anisotropic)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_data import LAYER, RUN, add_run_row, composition, write_run
from protiso.errors import InputError
from protiso.isotropy.stats import SufficientStats
from protiso.neighbors import transforms as T
from protiso.neighbors.index import build_index
from protiso.neighbors.parts import read_part_layer, run_parts
from protiso.neighbors.search import neighbors
from protiso.pairs.align import align_many

DIMS = slice(20, 100)  # 80 dipeptide frequencies: full rank on 2,000 proteins


@pytest.fixture
def run(sample_store):
    rows = sample_store.con.execute("SELECT accession, sequence FROM proteins ORDER BY accession").fetchall()
    acc = [a for a, _ in rows]
    X = np.stack([composition(s) for _, s in rows])[:, DIMS].astype(np.float32)
    write_run(sample_store, RUN, acc, X, n_parts=2)
    add_run_row(sample_store, RUN, X.shape[1])
    return sample_store, acc, X


def np_pca(X):
    C = np.cov(X.astype(np.float64), rowvar=False)
    lam, V = np.linalg.eigh(C)
    return lam[::-1], V[:, ::-1]


def test_fitted_maps_match_numpy():
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((3000, 12)) * np.geomspace(5, 0.1, 12)) @ np.linalg.qr(
        rng.standard_normal((12, 12)))[0] + 3.0
    stats = SufficientStats.from_matrix(X)
    lam, V = np_pca(X)
    Xc = X - X.mean(0)
    # center: zero mean, same covariance
    Y = T.fit(stats, "center").apply(X)
    np.testing.assert_allclose(Y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.cov(Y, rowvar=False), np.cov(X, rowvar=False), rtol=1e-4, atol=1e-5)
    # whiten: identity covariance
    Y = T.fit(stats, "whiten").apply(X)
    np.testing.assert_allclose(np.cov(Y.astype(np.float64), rowvar=False), np.eye(12), atol=2e-4)
    # abtt: the top-3 directions removed, the rest untouched
    Y = T.fit(stats, "abtt", 3).apply(X).astype(np.float64)
    np.testing.assert_allclose(Y @ V[:, :3], 0, atol=1e-4)
    np.testing.assert_allclose(Y @ V[:, 3:], Xc @ V[:, 3:], rtol=1e-4, atol=1e-4)
    # pca: variances are the top-k eigenvalues, and sign-free equal to the projections
    Y = T.fit(stats, "pca", 4).apply(X).astype(np.float64)
    np.testing.assert_allclose(Y.var(0, ddof=1), lam[:4], rtol=1e-4)
    np.testing.assert_allclose(np.abs(Y), np.abs(Xc @ V[:, :4]), rtol=1e-3, atol=1e-4)
    # standardize: scipy's z-score (ddof 1) per dimension
    from scipy.stats import zscore

    Y = T.fit(stats, "standardize").apply(X).astype(np.float64)
    np.testing.assert_allclose(Y, zscore(X, axis=0, ddof=1), rtol=1e-4, atol=1e-4)
    const = np.c_[X[:, :2], np.full(len(X), 7.0)]            # a constant dimension is only centred
    Y = T.fit(SufficientStats.from_matrix(const), "standardize").apply(const).astype(np.float64)
    np.testing.assert_allclose(Y[:, 2], 0, atol=1e-5)
    # output covariance formula used by the report equals the measured one
    tf = T.fit(stats, "abtt", 2)
    np.testing.assert_allclose(tf.covariance_of_output(np.cov(X, rowvar=False)),
                               np.cov(tf.apply(X).astype(np.float64), rowvar=False), rtol=1e-3, atol=1e-4)


def test_defaults_follow_effective_dims_and_dimension():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 250)) * np.geomspace(10, 0.01, 250)
    stats = SufficientStats.from_matrix(X)
    # IsoScore by the paper's steps, on NumPy's covariance (not the project's code)
    d = 250
    lam = np.linalg.eigvalsh(np.cov(X, rowvar=False))
    s_hat = math.sqrt(d) * lam / np.linalg.norm(lam)
    delta = np.linalg.norm(s_hat - 1) / math.sqrt(2 * (d - math.sqrt(d)))
    ref = ((d - delta ** 2 * (d - math.sqrt(d))) ** 2 - d) / (d * (d - 1))
    assert T.default_param("pca", stats) == math.ceil(ref * 249 + 1)
    assert T.default_param("abtt", stats) == 2  # round(250 / 100)
    with pytest.raises(InputError, match="between 1 and 250"):
        T.fit(stats, "pca", 0)
    with pytest.raises(InputError, match="unknown transform"):
        T.fit(stats, "rotate")


def test_derived_run_is_a_run(run):
    store, acc, X = run
    new_id, tf = T.create_derived_run(store, RUN, LAYER, "pca", 16)
    assert new_id == f"{RUN}-l{LAYER}-pca16" and tf.out_dim == 16
    row = store.con.execute("SELECT family, dim, layers, parent_run, transform, status FROM runs "
                            "WHERE run_id = ?", [new_id]).fetchall()[0]
    assert row == ("derived", 16, [LAYER], RUN, f"L{LAYER}:pca16", "done")
    got = {}
    for part in run_parts(store, new_id):
        a, Y = read_part_layer(store, part, LAYER)
        got.update(zip(a, Y))
    assert len(got) == len(acc)
    Y_ref = (X.astype(np.float64) - X.mean(0)) @ np_pca(X)[1][:, :16]
    Y = np.stack([got[a] for a in acc]).astype(np.float64)
    np.testing.assert_allclose(np.abs(Y), np.abs(Y_ref), rtol=1e-3, atol=1e-5)
    # usable by the index and the search like any run
    build_index(store, new_id, LAYER, "flat", "cosine")
    hits = neighbors(store, new_id, LAYER, acc[3], k=5, include_self=True).hits
    assert hits.column("accession")[0].as_py() == acc[3] and hits.num_rows == 5
    # the parameters round-trip: a reloaded transform maps like the fitted one
    parent, layer, tf2 = T.transform_of(store, new_id)
    assert (parent, layer) == (RUN, LAYER)
    np.testing.assert_array_equal(tf2.apply(X[:5]), tf.apply(X[:5]))
    assert store.sql("SELECT parent_run, transform, out_dim FROM transform_runs").to_pylist() == [
        {"parent_run": RUN, "transform": "pca", "out_dim": 16}]
    with pytest.raises(InputError, match="exists already"):
        T.create_derived_run(store, RUN, LAYER, "pca", 16)


def test_derived_run_all_or_nothing(run, monkeypatch):
    store, _, _ = run
    calls = {"n": 0}
    real = store.write_part

    def failing(dataset, table):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real(dataset, table)

    monkeypatch.setattr(store, "write_part", failing)
    with pytest.raises(OSError, match="simulated"):
        T.create_derived_run(store, RUN, LAYER, "whiten")
    assert store.scalar("SELECT count(*) FROM runs WHERE parent_run = ?", [RUN]) == 0
    assert store.scalar("SELECT count(*) FROM nn_transforms") == 0
    assert store.scalar("SELECT count(*) FROM parts WHERE dataset LIKE 'embeddings/%whiten%'") == 0
    assert not list((store.root / "data" / "embeddings").glob("*whiten*/*.parquet"))
    assert not list((store.root / T.TRANSFORM_DIR).glob("*.npz"))


def test_report_matches_independent_computation(run):
    store, acc, X = run
    nq, pool, k = 6, 40, 5
    table = T.transform_report(store, RUN, LAYER, [("whiten", None), ("pca", 8), ("standardize", None)],
                               nq, pool, k, seed=3)
    rows = {r["transform"]: r for r in table.to_pylist()}
    assert list(rows) == ["none", "whiten", "pca", "standardize"]
    # IsoScore of the whole layer: untransformed from its own statistics, whitened ~ 1
    from protiso.isotropy.metrics import compute_metrics

    assert rows["none"]["isoscore"] == pytest.approx(compute_metrics(SufficientStats.from_matrix(X)).isoscore,
                                                     rel=1e-6)
    assert rows["whiten"]["isoscore"] == pytest.approx(1.0, abs=1e-3)
    assert rows["pca"]["dim"] == 8 and rows["none"]["dim"] == X.shape[1]
    # agreement and correlation recomputed here from scratch, for the untransformed vectors and
    # for scipy's z-score of the whole layer (what `standardize` fits)
    from scipy.stats import zscore

    pick = np.random.default_rng(3).permutation(len(acc))[:pool]
    seqs = dict(store.con.execute("SELECT accession, sequence FROM proteins").fetchall())
    aligned = []
    for i in range(nq):
        others = [j for j in range(pool) if j != i]
        aligned.append((others, align_many([seqs[acc[pick[i]]]] * len(others),
                                           [seqs[acc[pick[j]]] for j in others])))
    for name, Z in (("none", X.astype(np.float64)), ("standardize", zscore(X.astype(np.float64), ddof=1))):
        Xs = Z[pick]
        U = Xs / np.linalg.norm(Xs, axis=1, keepdims=True)
        agree, cos_all, id_all = [], [], []
        for i, (others, res) in enumerate(aligned):
            cos = np.array([U[i] @ U[j] for j in others])
            top_align = {others[j] for j in np.argsort(-res["score"], kind="stable")[:k]}
            top_cos = {others[j] for j in np.argsort(-cos, kind="stable")[:k]}
            agree.append(len(top_align & top_cos) / k)
            cos_all.extend(cos)
            id_all.extend(res["identity"])
        assert rows[name]["agreement_at_5"] == pytest.approx(np.mean(agree)), name
        assert rows[name]["pearson_identity"] == pytest.approx(np.corrcoef(cos_all, id_all)[0, 1], abs=1e-5), name
    assert rows["none"]["n_queries"] == nq and rows["none"]["pool"] == pool
