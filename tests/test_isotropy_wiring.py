"""What `protiso isotropy` gained beyond the paper, wired through the streaming engine and the
CLI: intrinsic dimension (against scikit-dimension on the stored vectors), rogue dimensions
(against a brute-force pair average), IsoScore*'s named targets (against the reference IsoScore
package), GO term names in group output, and migration 014's relabelling of old rows."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pytest
from support import fake_run

from protiso import open_store
from protiso.isotropy import engine as E

RUN = "manifold"
D = 16


@pytest.fixture
def manifold_store(sample_store):
    """A run of 600 proteins whose 16-d vectors lie on a 2-d swiss roll (with 10 proteins sharing
    another protein's vector), plus a common offset along dimension 3 (a rogue dimension)."""
    accs = [a for (a,) in sample_store.con.execute(
        "SELECT accession FROM proteins ORDER BY accession LIMIT 600").fetchall()]
    rng = np.random.default_rng(5)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=len(accs)))
    roll = np.c_[t * np.cos(t), 21 * rng.uniform(size=len(accs)), t * np.sin(t)]
    Q, _ = np.linalg.qr(rng.normal(size=(D, 3)))
    X = roll @ Q.T
    X[:, 3] += 60.0
    X[590:] = X[:10]                                  # duplicates
    X = X.astype(np.float32)
    fake_run(sample_store, RUN, {0: (accs, X)}, n_parts=2)
    return sample_store, accs, X


def test_intrinsic_dimension_per_group_equals_scikit_dimension(manifold_store):
    skdim = pytest.importorskip("skdim")
    store, accs, X = manifold_store
    (whole,) = E.isotropy(store, RUN, intrinsic=True)
    U = np.unique(X, axis=0).astype(np.float64)
    assert whole.intrinsic.n_duplicates == 10 == len(X) - len(U)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_twonn = skdim.id.TwoNN(discard_fraction=0.1).fit(U).dimension_
        ref_mle = skdim.id.MLE().fit(U, n_neighbors=20, comb="mle").dimension_
    assert whole.intrinsic.twonn == pytest.approx(ref_twonn, rel=1e-4)
    assert whole.intrinsic.mle == pytest.approx(ref_mle, rel=1e-4)
    assert abs(whole.intrinsic.twonn - 2) < 0.4 and abs(whole.intrinsic.mle - 2) < 0.4   # a 2-d roll
    row = store.con.execute("SELECT intrinsic_dim_twonn, intrinsic_dim_mle, intrinsic_k, intrinsic_n_duplicates "
                            "FROM metrics_latest WHERE run_id = ? AND group_by = ''", [RUN]).fetchone()
    assert row == pytest.approx((whole.intrinsic.twonn, whole.intrinsic.mle, 20, 10))
    # per group, on exactly the group's vectors
    groups = E.isotropy(store, RUN, group_by="length < 200", intrinsic=True)
    where = {r[0]: r[1] for r in store.con.execute(
        "SELECT accession, CAST(length < 200 AS VARCHAR) FROM protein_meta").fetchall()}
    for g in groups:
        mask = np.array([where[a] == g.group_key for a in accs])
        Ug = np.unique(X[mask], axis=0).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skdim.id.TwoNN(discard_fraction=0.1).fit(Ug).dimension_
        assert g.intrinsic.twonn == pytest.approx(ref, rel=1e-4), g.group_key
    # without --intrinsic nothing is estimated (and nothing is kept)
    (plain,) = E.isotropy(store, RUN, save=False)
    assert plain.intrinsic is None and plain.row()["intrinsic_dim_twonn"] is None


def test_intrinsic_refuses_more_vectors_than_the_bound(manifold_store):
    store, _, _ = manifold_store
    before = store.scalar("SELECT count(*) FROM metrics")
    with pytest.raises(E.TooManyGroupsError, match="narrow the proteins with --where"):
        E.isotropy(store, RUN, intrinsic=True, max_vector_bytes=1000)
    assert store.scalar("SELECT count(*) FROM metrics") == before


def test_rogue_dimensions_equal_brute_force_pair_average(manifold_store):
    store, _, X = manifold_store
    (r,) = E.isotropy(store, RUN)
    U = X.astype(np.float64) / np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    # each dimension's mean of u_i[k] u_j[k] over all ordered pairs (i, j), by an explicit pair grid
    contrib = np.array([np.outer(U[:, k], U[:, k]).mean() for k in range(D)])
    assert contrib.sum() == pytest.approx((U @ U.T).mean(), rel=1e-9)
    order = np.argsort(-contrib)[:E.ROGUE_TOP]
    row = store.con.execute("SELECT rogue_dims, rogue_shares, rogue_top_share FROM metrics_latest "
                            "WHERE run_id = ?", [RUN]).fetchone()
    assert row[0] == order.tolist() and row[0][0] == 3              # the offset dimension leads
    np.testing.assert_allclose(row[1], contrib[order] / contrib.sum(), rtol=1e-5)
    assert row[2] == pytest.approx(contrib[order].sum() / contrib.sum(), rel=1e-5)


def test_star_targets_equal_the_reference_package(manifold_store):
    torch = pytest.importorskip("torch")
    from IsoScore import IsoScore as IsoScoreRef

    store, _, X = manifold_store
    X64 = X.astype(np.float64)
    C = np.cov(X64.T)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        want = {"identity": float(IsoScoreRef.IsoScore_star(X64, np.eye(D), 0.3)),
                "scaled-identity": float(IsoScoreRef.IsoScore_star(X64, np.eye(D) * np.trace(C) / D, 0.3))}
    finally:
        torch.set_default_dtype(before)
    for target, ref in want.items():
        (r,) = E.isotropy(store, RUN, zeta=0.3, star_target=target)
        assert r.metrics.star_target == target
        assert r.metrics.isoscore_star == pytest.approx(ref, rel=1e-5)
    assert want["identity"] != pytest.approx(want["scaled-identity"], rel=1e-3)   # the choice matters
    (auto,) = E.isotropy(store, RUN, star_target="auto")
    assert auto.metrics.star_target == "scaled-identity"
    grouped = E.isotropy(store, RUN, group_by="length < 200")
    assert {g.metrics.star_target for g in grouped} == {"reference"}
    from protiso.errors import InputError
    with pytest.raises(InputError, match="needs --group-by"):
        E.isotropy(store, RUN, star_target="reference")


def test_migration_014_relabels_old_identity_rows():
    sql = Path(__file__).parents[1] / "sql" / "migrations"
    con = duckdb.connect()
    con.execute((sql / "003_metrics.sql").read_text())
    con.execute("INSERT INTO metrics (batch_id, run_id, layer, level, n, d, star_target, software_version) "
                "VALUES ('b', 'r', 0, 'global', 5, 3, 'identity', 'x'), ('b', 'r', 1, 'global', 5, 3, 'reference', 'x')")
    con.execute((sql / "014_isotropy_beyond.sql").read_text())
    assert [t for (t,) in con.execute("SELECT star_target FROM metrics ORDER BY layer").fetchall()] == \
        ["scaled-identity", "reference"]
    assert "intrinsic_dim_twonn" in [c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'metrics'").fetchall()]


def test_cli_json_fields_and_go_names(manifold_store, invoke):
    from protiso.go.store import bundled_obo, ingest_obo

    store, _, _ = manifold_store
    ingest_obo(store, bundled_obo())
    root = store.root
    store.close()
    r = invoke("--store", root, "isotropy", "--model", RUN, "--intrinsic", "--rogue", "--bootstrap", "8",
               "--star-target", "identity", "--format", "json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["intrinsic_dim_twonn"] > 1 and row["intrinsic_dim_mle"] > 1
    assert row["star_target"] == "identity" and row["ci_method"] == "bca" and row["jackknife_blocks"] == 20
    assert row["isoscore_lo"] <= row["isoscore_hi"] and row["isoscore_bias"] is not None
    assert len(row["rogue_dimensions"]) == E.ROGUE_TOP and row["rogue_dimensions"][0]["dim"] == 3
    r = invoke("--store", root, "isotropy", "--model", RUN, "--star-target", "reference")
    assert r.exit_code == 1 and "needs --group-by" in r.output and "Traceback" not in r.output
    r = invoke("--store", root, "isotropy", "--model", RUN, "--star-target", "unit")
    assert r.exit_code == 2 and "--star-target" in r.output
    # GO ids in group keys are shown with their names (table and JSON)
    expr = "go_first(accession, ['GO:0005737', 'GO:0005634'])"
    r = invoke("--store", root, "isotropy", "--model", RUN, "--group-by", expr, "--format", "json")
    assert r.exit_code == 0, r.output
    labels = {g["group_key"]: g.get("group_label") for g in json.loads(r.stdout)}
    assert labels["GO:0005737"] == "GO:0005737 (cytoplasm)" and labels["GO:0005634"] == "GO:0005634 (nucleus)"
    r = invoke("--store", root, "isotropy", "--model", RUN, "--group-by", expr, "--rogue", "--intrinsic")
    assert r.exit_code == 0, r.output
    assert "cytoplasm" in r.stdout and "nucleus" in r.stdout and "ID TwoNN" in r.stdout
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM metrics WHERE star_target = 'identity'") == 1
