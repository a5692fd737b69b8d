"""The streaming engine: one pass over Parquet parts with filters, groups and bootstrap,
checked against in-memory computations on the same vectors."""
import math

import numpy as np
import pyarrow as pa
import pytest

from protiso.errors import QueryError
from protiso.isotropy import engine as E
from protiso.isotropy import intervals as iv
from protiso.isotropy.metrics import compute_metrics
from protiso.isotropy.stats import SufficientStats
from support import add_run_row, fake_run

DIM = 8
RUN = "testrun"


def write_embeddings(store, run_id, accessions, layers, dim=DIM, seed=0, parts=3):
    """Write synthetic anisotropic float32 embeddings as several Parquet parts; returns
    {layer: (accessions, X)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in layers:
        mix = rng.standard_normal((dim, dim)) * rng.uniform(0.2, 3.0, dim)
        X = (rng.standard_normal((len(accessions), dim)) @ mix + rng.normal(0, 2, dim)).astype(np.float32)
        out[layer] = (list(accessions), X)
    fake_run(store, run_id, out, n_parts=parts, model="tinymodel", model_id="local/tinymodel", revision="rev1",
             n_done=600)
    return out


@pytest.fixture
def run_store(sample_store):
    accs = [a for (a,) in sample_store.con.execute(
        "SELECT accession FROM proteins ORDER BY accession LIMIT 600").fetchall()]
    data = write_embeddings(sample_store, RUN, accs, layers=[0, 2])
    return sample_store, data


# Stored vectors are float32 and the engine multiplies them in float32 (centred, summed in float64):
# against float64 arithmetic on the same vectors its statistics agree to about 1e-7 relative,
# bounded here by F32. Float64 input takes the exact path (1e-9).
F32 = 2e-6


def _close(a: SufficientStats, b: SufficientStats, rtol: float = F32):
    assert a.n == b.n
    scale = lambda v: rtol * max(1.0, float(np.abs(v).max()))  # noqa: E731
    np.testing.assert_allclose(a.sum, b.sum, rtol=rtol, atol=scale(b.sum))
    np.testing.assert_allclose(a.sum_outer, b.sum_outer, rtol=rtol, atol=scale(b.sum_outer))
    np.testing.assert_allclose(a.sum_unit, b.sum_unit, rtol=rtol, atol=scale(b.sum_unit))


def _matching(store, where):
    return {a for (a,) in store.con.execute(f"SELECT accession FROM protein_meta WHERE {where}").fetchall()}


def test_scan_equals_in_memory(run_store):
    store, data = run_store
    accs, X = data[2]
    acc = E.scan_layer(store, RUN, 2, DIM, batch_rows=64)
    _close(acc.groups[None], SufficientStats.from_matrix(X))
    m = compute_metrics(acc.groups[None])
    assert m.isoscore == pytest.approx(compute_metrics(SufficientStats.from_matrix(X)).isoscore, rel=F32)


def test_where_filter_equals_subset(run_store):
    store, data = run_store
    accs, X = data[0]
    where = "length < 300 AND len(terms) > 3"
    keep = _matching(store, where)
    mask = np.array([a in keep for a in accs])
    assert 0 < mask.sum() < len(accs)
    acc = E.scan_layer(store, RUN, 0, DIM, where=where, batch_rows=50)
    _close(acc.groups[None], SufficientStats.from_matrix(X[mask]))


def test_group_by_equals_separate_filtered_runs(run_store):
    store, _ = run_store
    grouped = E.scan_layer(store, RUN, 2, DIM, group_by="length // 250", batch_rows=97)
    assert len(grouped.groups) >= 3
    for key, stats in grouped.groups.items():
        alone = E.scan_layer(store, RUN, 2, DIM, where=f"length // 250 = {int(key)}")
        _close(stats, alone.groups[None])
    _close(grouped.pooled(), E.scan_layer(store, RUN, 2, DIM).groups[None])


def test_group_by_keeps_null_group(run_store):
    store, data = run_store
    acc = E.scan_layer(store, RUN, 0, DIM, group_by="CASE WHEN length > 400 THEN 'long' END")
    assert set(acc.groups) == {"long", None}
    assert sum(s.n for s in acc.groups.values()) == len(data[0][0])


def test_bootstrap_replicates_are_poisson_resamples(run_store):
    store, data = run_store
    accs, X = data[2]
    B = 5
    acc = E.scan_layer(store, RUN, 2, DIM, bootstrap=B, seed=7, batch_rows=64)
    counts = E.poisson_counts(accs, 7, B)
    for b in range(B):
        expected = SufficientStats.empty(DIM)
        expected.update(X, counts[:, b])
        _close(acc.replicates[None][b], expected)
    (key, m, ci), = E.summarize(acc, ci_method="percentile")
    reps = sorted(compute_metrics(r).isoscore for r in acc.replicates[None])
    assert ci["isoscore"][0] == pytest.approx(np.quantile(reps, 0.025))
    assert ci["isoscore"][1] == pytest.approx(np.quantile(reps, 0.975))
    # without jackknife blocks, 'bca' is the bias-corrected percentile interval (a = 0)
    g, = E.summarize(acc, ci_method="bca")
    bc = iv.bca_interval(reps, m.isoscore)
    assert g.ci_method == "bc" and g.ci["isoscore"] == pytest.approx((bc.low, bc.high))
    assert g.bias["isoscore"] == pytest.approx(np.mean(reps) - m.isoscore)


def test_bca_acceleration_from_jackknife_blocks_by_brute_force(run_store):
    """BCa in the pass: replicate values and leave-one-block-out values recomputed from the raw
    vectors (float64, numpy) give the same interval through intervals.bca_interval."""
    store, data = run_store
    accs, X = data[2]
    B, G = 40, 7
    acc = E.scan_layer(store, RUN, 2, DIM, bootstrap=B, seed=3, batch_rows=64, blocks=G)
    g, = E.summarize(acc, ci_method="bca", ci_level=0.9)
    X64 = X.astype(np.float64)

    def iso(M, w=None):   # IsoScore = (PR - 1) / (d - 1) of the (weighted) sample covariance
        C = np.cov(M.T, fweights=w)
        return (np.trace(C) ** 2 / np.sum(C * C) - 1) / (DIM - 1)

    counts = E.poisson_counts(accs, 3, B)
    reps = [iso(X64, counts[:, b]) for b in range(B)]
    block = E.jackknife_blocks(accs, G)
    assert set(block) == set(range(G))
    jack = [iso(X64[block != k]) for k in range(G)]
    want = iv.bca_interval(reps, iso(X64), jack, 0.9)
    assert g.ci_method == "bca" and want.acceleration != 0
    assert g.ci["isoscore"] == pytest.approx((want.low, want.high), rel=1e-5)
    assert g.bias["isoscore"] == pytest.approx(np.mean(reps) - iso(X64), rel=1e-3, abs=1e-7)
    # blocks hold every row exactly once
    assert sum(b.n for b in acc.block_stats[None]) == len(accs)


def test_poisson_counts_deterministic_and_poisson():
    accs = [f"P{i:05d}" for i in range(20000)]
    c = E.poisson_counts(accs, 1, 4)
    assert c.shape == (20000, 4)
    assert c.mean() == pytest.approx(1.0, abs=0.02) and c.var() == pytest.approx(1.0, abs=0.04)
    assert np.mean(c == 0) == pytest.approx(math.exp(-1), abs=0.01)
    np.testing.assert_array_equal(E.poisson_counts(accs[::-1], 1, 4), c[::-1])  # order-free
    assert not np.array_equal(E.poisson_counts(accs, 2, 4), c)


def test_bootstrap_interval_matches_sampling_spread():
    """The bootstrap spread of IsoScore and average cosine over one sample should match their
    spread over independent samples of the same distribution."""
    rng = np.random.default_rng(11)
    d, n = 6, 400
    mix = rng.standard_normal((d, d)) * np.array([3, 2, 1, 0.5, 0.3, 0.2])
    draw = lambda: rng.standard_normal((n, d)) @ mix + 0.8  # noqa: E731
    truth = [compute_metrics(SufficientStats.from_matrix(draw())) for _ in range(300)]
    acc = E.GroupAccumulator(d, bootstrap=300, seed=3)
    acc.add(draw(), accessions=[f"A{i}" for i in range(n)])
    reps = [compute_metrics(r) for r in acc.replicates[None]]
    for name in ("isoscore", "avg_cosine"):
        sd_true = np.std([getattr(t, name) for t in truth])
        sd_boot = np.std([getattr(r, name) for r in reps])
        assert 0.65 < sd_boot / sd_true < 1.5, name


def test_too_many_groups_refused_before_the_pass(run_store):
    store, _ = run_store
    with pytest.raises(E.TooManyGroupsError, match="groups"):
        E.scan_layer(store, RUN, 0, DIM, group_by="accession", max_bytes=100_000)


def test_bad_filter_is_a_query_error(run_store):
    store, _ = run_store
    with pytest.raises(QueryError, match="no_such_column"):
        E.scan_layer(store, RUN, 0, DIM, where="no_such_column > 3")
    with pytest.raises(QueryError):
        E.scan_layer(store, RUN, 0, DIM, group_by="length; DROP TABLE proteins")
    assert store.scalar("SELECT count(*) FROM proteins") > 0


def test_group_buffering_flushes_equal_direct_updates():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((500, 5)) + 1
    keys = [f"g{k}" for k in rng.integers(0, 6, 500)]
    acc = E.GroupAccumulator(5, flush_rows=7, buffer_rows=40)
    for start in range(0, 500, 33):
        acc.add(X[start:start + 33], keys[start:start + 33])
    acc.finish()
    for key, stats in acc.groups.items():
        _close(stats, SufficientStats.from_matrix(X[[k == key for k in keys]]), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# Through a catalogued run: isotropy(), table `metrics` and its views, CLI, local level, UDFs
# ---------------------------------------------------------------------------------------------
def add_run(store, run_id=RUN, model="tinymodel", layers=(0, 2), dim=DIM):
    add_run_row(store, run_id, dim, layers, model=model, model_id="local/" + model, revision="rev1", n_done=600)


@pytest.fixture
def catalogued(run_store):
    store, data = run_store
    add_run(store)
    return store, data


def test_isotropy_all_layers_stored_with_provenance(catalogued):
    store, data = catalogued
    results = E.isotropy(store, "tinymodel", layer="all")
    assert [r.layer for r in results] == [0, 2]
    for r in results:
        expected = compute_metrics(SufficientStats.from_matrix(data[r.layer][1]))
        assert r.metrics.isoscore == pytest.approx(expected.isoscore, rel=F32)
        assert r.metrics.avg_cosine == pytest.approx(expected.avg_cosine, rel=F32)
    rows = store.sql("SELECT * FROM metrics_latest ORDER BY layer").to_pylist()
    assert [(r["layer"], r["level"], r["n"], r["d"]) for r in rows] == [(0, "global", 600, DIM), (2, "global", 600, DIM)]
    assert rows[1]["model_id"] == "local/tinymodel" and rows[1]["revision"] == "rev1"
    assert rows[1]["software_version"] and rows[1]["created_at"] is not None
    assert rows[1]["isoscore"] == pytest.approx(results[1].metrics.isoscore)
    # a second computation supersedes the first in the 'latest' views
    E.isotropy(store, RUN, layer=2)
    assert store.scalar("SELECT count(*) FROM metrics") == 3
    assert store.scalar("SELECT count(*) FROM isotropy_summary") == 2


def test_isotropy_bad_layer_and_unknown_model(catalogued):
    store, _ = catalogued
    from protiso.errors import InputError, NotFoundError
    with pytest.raises(NotFoundError, match="layer 5"):
        E.isotropy(store, "tinymodel", layer=5)
    with pytest.raises(InputError, match="layer must be"):
        E.isotropy(store, "tinymodel", layer="top")
    with pytest.raises(NotFoundError):
        E.isotropy(store, "nosuchmodel")
    assert store.scalar("SELECT count(*) FROM metrics") == 0


def test_sql_udfs_equal_engine_groups(catalogued):
    store, _ = catalogued
    rows = store.sql(
        "SELECT CAST(length // 250 AS VARCHAR) AS bin, isoscore(list(embedding)) AS iso, "
        "avg_cosine(list(embedding)) AS cos, count(*) AS n "
        "FROM embeddings JOIN proteins USING (accession) WHERE run_id = ? AND layer = 2 GROUP BY bin",
        [RUN]).to_pylist()
    engine = {k: compute_metrics(s) for k, s in
              E.scan_layer(store, RUN, 2, DIM, group_by="length // 250").groups.items()}
    assert {r["bin"] for r in rows} == set(engine)
    for r in rows:
        m = engine[r["bin"]]
        assert r["n"] == m.n
        if m.n >= 2:   # the UDFs compute in float64: agreement to float32 precision
            assert r["iso"] == pytest.approx(m.isoscore, rel=F32, abs=1e-7)
            assert r["cos"] == pytest.approx(m.avg_cosine, rel=F32, abs=1e-7)


def test_cli_group_by_json_and_small_group_warning(catalogued, invoke):
    import json

    store, data = catalogued
    root = store.root
    store.close()
    small = data[2][0][:5]
    where = "accession IN (" + ", ".join(f"'{a}'" for a in small) + ")"
    res = invoke("--store", root, "isotropy", "--model", "tinymodel", "--where", where, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 1 and rows[0]["n"] == 5 and rows[0]["filter"] == where
    assert "n <= d" in res.stderr
    assert rows[0]["isoscore_star"] > rows[0]["isoscore"]
    res = invoke("--store", root, "isotropy", "--model", "tinymodel", "--layer", "0",
                 "--group-by", "length // 250", "--bootstrap", "20", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) >= 3 and all(r["group_by"] == "length // 250" and r["bootstrap"] == 20 for r in rows)
    for r in rows:
        if r["n"] > 50:
            assert r["isoscore_lo"] <= r["isoscore"] <= r["isoscore_hi"]
    res = invoke("--store", root, "isotropy", "--model", "tinymodel", "--group-by", "length // 250")
    assert res.exit_code == 0 and "by length // 250" in res.stdout
    res = invoke("--store", root, "isotropy", "--model", "tinymodel", "--where", "nonsense_col = 1")
    assert res.exit_code == 1 and "nonsense_col" in res.stderr


def test_local_level_per_residue_type(catalogued):
    from protiso.runs import write_stats_file as _write_stats_file

    store, _ = catalogued
    rng = np.random.default_rng(9)
    per_type = {aa: rng.standard_normal((40 + 10 * i, DIM)) @ rng.standard_normal((DIM, DIM))
                for i, aa in enumerate("ACDE")}
    stats = {aa: SufficientStats.from_matrix(X) for aa, X in per_type.items()}
    path = store.root / "local_stats_test.npz"
    _write_stats_file(path, stats)
    store.con.execute("INSERT INTO local_stats (run_id, layer, path, n_proteins, n_residues) "
                      "VALUES (?, 2, ?, 10, ?)", [RUN, path.name, sum(len(x) for x in per_type.values())])
    results = E.isotropy(store, "tinymodel", level="local")
    by_key = {r.group_key: r for r in results}
    assert set(by_key) == {"A", "C", "D", "E", None}
    for aa, X in per_type.items():
        assert by_key[aa].metrics.effective_dims == pytest.approx(
            compute_metrics(SufficientStats.from_matrix(X)).effective_dims, rel=1e-9)
    pooled = compute_metrics(SufficientStats.from_matrix(np.vstack(list(per_type.values()))))
    assert by_key[None].metrics.isoscore == pytest.approx(pooled.isoscore, rel=1e-9)
    mean_dims = np.mean([by_key[aa].metrics.effective_dims for aa in "ACDE"])
    row = store.sql("SELECT * FROM local_isotropy_summary").to_pylist()[0]
    assert row["n_residue_types"] == 4 and row["mean_effective_dims"] == pytest.approx(mean_dims)
    from protiso.errors import InputError
    with pytest.raises(InputError, match="local"):
        E.isotropy(store, "tinymodel", level="local", bootstrap=10)


# ---------------------------------------------------------------------------------------------
# The reader's page path, and the float32 accumulation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    dict(compression="none", use_dictionary=["accession"]),
    dict(compression="zstd", use_dictionary=["accession"], data_page_size=4096),
    dict(compression="snappy", use_dictionary=False, data_page_version="2.0", row_group_size=70),
    dict(compression="zstd"),                                   # dictionary pages: pyarrow reads them
    dict(compression="gzip", use_dictionary=["accession"], data_page_version="2.0", data_page_size=1000),
])
def test_page_reader_equals_pyarrow(tmp_path, options):
    import pyarrow.parquet as pq

    from protiso.runs.pages import Unsupported, float_pages
    from protiso.runs.reader import _blocks_of, _row_group_vectors
    rng = np.random.default_rng(5)
    X = rng.standard_normal((257, 12)).astype(np.float32)
    table = pa.table({"accession": [f"A{i}" for i in range(257)], "layer": pa.array([1] * 257, pa.int16()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 12)})
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, **options)
    pf = pq.ParquetFile(path)
    got, direct = [], True
    with open(path, "rb") as fh:
        for rg in range(pf.metadata.num_row_groups):
            try:
                for page in float_pages(fh, pf.metadata.row_group(rg).column(2), pf.schema.column(2)):
                    page.take(np.empty(page.n, np.float32))
            except Unsupported:
                direct = False
            rows = pf.metadata.row_group(rg).num_rows
            got += list(_blocks_of(_row_group_vectors(fh, pf, rg, 2, 12), 12, 50, rows))
    np.testing.assert_array_equal(np.concatenate(got), X)
    assert direct == (options.get("use_dictionary", True) is not True)


def test_float32_accumulation_of_offset_data_is_accurate():
    """pLM-like vectors: a common offset 30x the spread. Centred float32 products stay within
    the F32 bound of float64 arithmetic on the same float32 numbers; uncentred ones would not."""
    from protiso.isotropy.metrics import compute_metrics
    from protiso.isotropy.stats import Accumulator
    rng = np.random.default_rng(6)
    d = 96
    X = (rng.standard_normal((20000, d)) * (1 + np.arange(d)) ** -0.8 + 30).astype(np.float32)
    acc = Accumulator(d)
    for start in range(0, len(X), 4096):
        acc.update(X[start:start + 4096].copy(), consume=True)
    ours, exact = compute_metrics(acc.stats()), compute_metrics(SufficientStats.from_matrix(X))
    for name in ("isoscore", "effective_rank", "avg_cosine", "var_top1", "isoscore_star"):
        assert getattr(ours, name) == pytest.approx(getattr(exact, name), rel=F32), name
    from protiso.isotropy.metrics import covariance
    cov_exact = np.cov(X.astype(np.float64).T)
    ours_error = np.abs(covariance(acc.stats()) - cov_exact).max()
    n, mean = len(X), X.astype(np.float64).mean(0)
    naive = (X.T @ X - n * np.outer(mean, mean)) / (n - 1)   # uncentred float32 products, for contrast
    assert ours_error < 1e-5 * np.abs(cov_exact).max()
    assert np.abs(naive - cov_exact).max() > 10 * ours_error


def test_summarize_thread_pool_equals_one_thread(run_store):
    store, _ = run_store
    acc = E.scan_layer(store, RUN, 2, DIM, group_by="length // 250", bootstrap=3)
    one = E.summarize(acc, grouped=True, workers=1)
    pool = E.summarize(acc, grouped=True, workers=3)
    assert [(k, m, ci) for k, m, ci in one] == [(k, m, ci) for k, m, ci in pool]
