"""`reproduce`: the paper's pipeline, resumable, with unavailable models reported, not fatal."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import sample_files
from report_data import KWARGS, MISSING, MODELS, WHERE, build, copy

from protiso import open_store
from protiso.runs import load_embeddings, load_local_stats
from protiso.errors import InputError, QueryError
from protiso.isotropy.spectra import stored_spectra
from protiso.pipeline.reproduce import reproduce

IsoScoreRef = pytest.importorskip("IsoScore.IsoScore")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """(store root, first ReproduceResult) of the shared small analysed store."""
    return build(tmp_path_factory.mktemp("reproduce") / "store", sample_files())


def _catalog_snapshot(s) -> dict:
    return {t: s.scalar(f"SELECT count(*) FROM {t}") for t in
            ("runs", "metrics", "pair_sets", "pair_jobs", "pair_job_chunks", "parts", "run_proteins")}


def test_first_run_does_every_step_and_reports_missing_models(analysed):
    root, result = analysed
    assert set(result.unavailable) == set(MISSING)
    assert "Rostlab/prot_bert" in result.unavailable["prot_bert"]
    assert "weights" in result.unavailable["proteinbert"].lower()
    assert set(result.runs) == {"protiso-mini", "protiso-mini@step0"}
    by = {(s.model, s.step): s.status for s in result.steps}
    for model in ("protiso-mini", "protiso-mini@step0"):
        for step in ("embed", "isotropy", "spectrum", "distances", "groups-go", "groups-organism"):
            assert by[(model, step)] == "ran", (model, step)
    assert by[("protiso-mini", "local")] == "ran"
    assert ("protiso-mini@step0", "local") not in by          # not asked for the checkpoint
    for step in ("pairs-sample", "align", "go-overlap"):
        assert by[(None, step)] == "ran"
    for m in MISSING:
        assert by[(m, "embed")] == "unavailable"
        assert not any(s.model == m and s.step != "embed" for s in result.steps)


def test_second_run_skips_every_finished_step(analysed, tmp_path):
    root = copy(analysed[0], tmp_path / "again")
    with open_store(root) as s:
        before = _catalog_snapshot(s)
        again = reproduce(s, MODELS, **KWARGS)
        after = _catalog_snapshot(s)
    assert before == after                                    # nothing recomputed or added
    statuses = {(x.model, x.step): x.status for x in again.steps}
    assert statuses and all(v in ("skipped", "unavailable") for v in statuses.values()), statuses
    assert {k for k, v in statuses.items() if v == "unavailable"} == {(m, "embed") for m in MISSING}
    assert again.runs == analysed[1].runs and again.pair_set == analysed[1].pair_set


def test_resumes_only_what_is_missing(analysed, tmp_path):
    """Drop the step-0 checkpoint's isotropy and its distances: only those steps run again."""
    root = copy(analysed[0], tmp_path / "resume")
    run0 = analysed[1].runs["protiso-mini@step0"]
    with open_store(root) as s:
        n_metrics = s.scalar("SELECT count(*) FROM metrics WHERE run_id = ? AND group_by = ''", [run0])
        s.con.execute("DELETE FROM metrics WHERE run_id = ? AND group_by = ''", [run0])
        s.con.execute("DELETE FROM pair_jobs WHERE kind = 'distance' AND key LIKE ?", [run0 + "/%"])
        again = reproduce(s, MODELS, **KWARGS)
        assert s.scalar("SELECT count(*) FROM metrics WHERE run_id = ? AND group_by = ''", [run0]) == n_metrics
    ran = {(x.model, x.step) for x in again.steps if x.status == "ran"}
    assert ran == {("protiso-mini@step0", "isotropy"), ("protiso-mini@step0", "distances")}


def test_metrics_match_independent_computations(analysed):
    root, result = analysed
    with open_store(root, read_only=True) as s:
        rid = result.runs["protiso-mini"]
        for layer in (0, 4):
            accs, X = load_embeddings(s, rid, layer)
            assert len(accs) == s.scalar(f"SELECT count(*) FROM protein_meta WHERE {WHERE}") == 170
            iso, n, avg_cos = s.one("SELECT isoscore, n, avg_cosine FROM metrics_latest WHERE run_id = ? "
                                    "AND layer = ? AND level = 'global' AND group_by = '' AND filter = ?",
                                    [rid, layer, WHERE])
            X64 = X.astype(np.float64)
            assert n == 170
            assert iso == pytest.approx(float(IsoScoreRef.IsoScore(X64)), rel=1e-6)
            U = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
            C = U @ U.T
            assert avg_cos == pytest.approx((C.sum() - 170) / (170 * 169), rel=2e-6)  # stored vectors are float32: the pass multiplies centred float32 blocks (stated bound 2e-6 relative)
            # stored spectrum = eigenvalues of the sample covariance (brute force)
            spec = [r for r in stored_spectra(s, rid).to_pylist() if r["layer"] == layer]
            lam = np.sort(np.linalg.eigvalsh(np.cov(X64.T)))[::-1]
            got = np.array([r["eigenvalue"] for r in sorted(spec, key=lambda r: r["rank"])])
            np.testing.assert_allclose(got, np.clip(lam, 0, None), rtol=2e-6, atol=2e-6 * lam[0])  # float32 pass: error scales with the top eigenvalue
        # per-organism group: recompute the Takifugu group from its embeddings
        accs, X = load_embeddings(s, rid, 4, where="organism LIKE 'Takifugu%'")
        iso, n = s.one("SELECT isoscore, n FROM metrics_latest WHERE run_id = ? AND layer = 4 AND "
                       "group_by = 'organism' AND group_key LIKE 'Takifugu%'", [rid])
        assert n == len(accs) == 27
        assert iso == pytest.approx(float(IsoScoreRef.IsoScore(X.astype(np.float64))), rel=1e-6)
        # local: one row per residue type, from the per-residue statistics
        stats = load_local_stats(s, rid, 4)
        rows = s.sql("SELECT group_key, n FROM metrics_latest WHERE run_id = ? AND layer = 4 AND "
                     "level = 'local' AND group_by = 'residue'", [rid]).to_pylist()
        assert {r["group_key"]: r["n"] for r in rows} == {aa: st.n for aa, st in stats.items()}
        # pairs: all pairs among 30 proteins, the correlation view equals NumPy's
        ps = result.pair_set
        assert s.scalar("SELECT n_pairs FROM pair_sets WHERE name = ?", [ps]) == 30 * 29 // 2
        tab = s.sql("SELECT cosine, sq_euclidean, score, identity FROM pair_metrics WHERE pair_set = ? "
                    "AND run_id = ?", [ps, rid])
        assert tab.num_rows == 435
        cols = {c: tab.column(c).to_numpy() for c in tab.column_names}
        r = s.one("SELECT cosine_sq_euclidean, score_identity FROM pair_correlations WHERE pair_set = ? "
                  "AND run_id = ?", [ps, rid])
        assert r[0] == pytest.approx(np.corrcoef(cols["cosine"], cols["sq_euclidean"])[0, 1], rel=1e-9)
        assert r[1] == pytest.approx(np.corrcoef(cols["score"], cols["identity"])[0, 1], rel=1e-9)


def test_bad_input_is_refused_and_nothing_written(sample_store, store):
    before = sample_store.scalar("SELECT count(*) FROM runs")
    with pytest.raises(InputError, match="fraction"):
        reproduce(sample_store, ["protiso-mini"], fraction=0.0)
    with pytest.raises(InputError, match="no models"):
        reproduce(sample_store, [])
    with pytest.raises(InputError, match="exactly one"):
        reproduce(sample_store, ["protiso-mini"], fraction=0.1, pair_proteins=10)
    with pytest.raises(QueryError, match="no_such_column"):
        reproduce(sample_store, ["protiso-mini"], where="no_such_column > 1")
    with pytest.raises(InputError, match="holds no proteins"):
        reproduce(store, ["protiso-mini"])
    assert sample_store.scalar("SELECT count(*) FROM runs") == before == 0


def test_cli_reproduce_json_reports_missing_model(analysed, tmp_path, invoke):
    root = copy(analysed[0], tmp_path / "cli")
    res = invoke("--store", root, "reproduce", "--models", "protiso-mini@step0,prot_xlnet",
                 "--where", WHERE, "--max-length", "64", "--no-local", "--pair-proteins", "30",
                 "--seed", "7", "--device", "cpu", "--dtype", "float32", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)[0]
    assert set(out["unavailable"]) == {"prot_xlnet"}
    steps = {(x["model"], x["step"]): x["status"] for x in out["steps"]}
    assert steps[("protiso-mini@step0", "embed")] == "skipped"       # the run from the fixture
    assert steps[("prot_xlnet", "embed")] == "unavailable"
    assert out["pair_set"] == analysed[1].pair_set


def test_cli_reproduce_with_no_available_model_fails(sample_store, invoke):
    root = sample_store.root
    sample_store.close()
    res = invoke("--store", root, "reproduce", "--models", "proteinbert", "--no-pairs")
    assert res.exit_code == 1
    assert "proteinbert skipped" in res.stderr and "none of the models could be loaded" in res.stderr
