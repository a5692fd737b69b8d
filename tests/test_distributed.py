"""Scale-out on Ray: embedding and alignment on a local Ray cluster equal the local engine,
resume after an interruption without duplicates, and only the driver writes the catalog.

The cluster (2 CPUs) is started once per session; tests that need it skip where Ray is not
installed (CI installs the `ray` extra)."""
from __future__ import annotations

import builtins
import shutil
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tiny_models
from protiso import open_store
from protiso.embedding import embed
from protiso.runs import load_embeddings, load_local_stats
from protiso.isotropy.stats import SufficientStats
from protiso.models.base import LoadOptions
from protiso.models.registry import load_model

WHERE = "length BETWEEN 20 AND 50"     # 33 proteins of the sample
KW = dict(where=WHERE, layers="all", dtype="float32", device="cpu", max_length=30, long="chunk",
          max_tokens=200, local_stats=True)


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_models.build("bert", tmp_path_factory.mktemp("m") / "bert", max_pos=130)


@pytest.fixture(scope="module")
def reference(_sample_store_template, tmp_path_factory, bert_dir):
    """The local engine's run over WHERE: rows per layer, statistics, statuses."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ref") / "store"
    shutil.copytree(_sample_store_template, root)
    with open_store(root) as s:
        run = embed(s, model=str(bert_dir), **KW)
        rows = {la: dict(zip(*load_embeddings(s, run.run_id, la))) for la in run.layers}
        stats = {la: load_local_stats(s, run.run_id, la) for la in run.layers}
        statuses = s.sql("SELECT accession, status, length, n_residues, in_stats FROM run_proteins "
                         "WHERE run_id = ? ORDER BY accession", [run.run_id]).to_pylist()
    return run, rows, stats, statuses


def _assert_same(s, run, reference):
    ref_run, ref_rows, ref_stats, ref_statuses = reference
    assert run.run_id == ref_run.run_id            # same configuration, same run key
    assert (run.status, run.n_done, run.n_chunked, run.n_residues) == \
        (ref_run.status, ref_run.n_done, ref_run.n_chunked, ref_run.n_residues)
    assert s.sql("SELECT accession, status, length, n_residues, in_stats FROM run_proteins WHERE run_id = ? "
                 "ORDER BY accession", [run.run_id]).to_pylist() == ref_statuses
    for la in run.layers:
        accs = pq.read_table(s.parts(run.dataset), filters=[("layer", "=", la)]).column("accession").to_pylist()
        assert len(accs) == len(set(accs)) == ref_run.n_done            # no duplicates
        got = dict(zip(*load_embeddings(s, run.run_id, la)))
        assert sorted(got) == sorted(ref_rows[la])
        for k, v in got.items():
            np.testing.assert_allclose(v, ref_rows[la][k], atol=2e-5)
        stats = load_local_stats(s, run.run_id, la)
        assert sorted(stats) == sorted(ref_stats[la])
        for aa, st in stats.items():
            ref = ref_stats[la][aa]
            assert st.n == ref.n
            np.testing.assert_allclose(st.sum, ref.sum, rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(st.sum_outer, ref.sum_outer, rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(st.sum_unit, ref.sum_unit, rtol=1e-6, atol=1e-4)
    # the catalog lists exactly the part files on disk
    on_disk = {p.relative_to(s.root).as_posix() for p in s.dataset_dir(run.dataset).iterdir()}
    assert on_disk == set(s.sql("SELECT path FROM parts WHERE dataset = ?", [run.dataset])
                          .column("path").to_pylist())


def test_ray_embedding_with_two_actors_equals_local(ray_cluster, sample_store, bert_dir, reference):
    run = embed(sample_store, model=str(bert_dir), engine="ray",
                ray_options={"workers": 2, "task_rows": 6}, **KW)
    _assert_same(sample_store, run, reference)
    assert len(sample_store.parts(run.dataset)) > 2        # several actor tasks wrote parts
    # merged statistics equal one pass over all residues (independent: the adapter, per protein)
    adapter = load_model(str(bert_dir), LoadOptions(device="cpu"))
    seqs = dict(sample_store.con.execute(f"SELECT accession, sequence FROM protein_meta WHERE {WHERE}").fetchall())
    layer = run.layers[-1]
    vecs = {"A": [], "L": []}
    for acc, seq in seqs.items():
        starts = [0] if len(seq) <= 30 else list(range(0, len(seq) - 30, 22)) + [len(seq) - 30]
        acc_v = np.zeros((len(seq), adapter.dim))
        cnt = np.zeros(len(seq))
        for st in starts:
            R = adapter.embed_batch([seq[st:st + 30]], [layer]).residues[0][layer]
            acc_v[st:st + len(R)] += R
            cnt[st:st + len(R)] += 1
        R = acc_v / cnt[:, None]
        for aa in vecs:
            vecs[aa].append(R[[c == aa for c in seq]])
    stats = load_local_stats(sample_store, run.run_id, layer)
    for aa, blocks in vecs.items():
        ref = SufficientStats.from_matrix(np.concatenate(blocks))
        assert stats[aa].n == ref.n
        np.testing.assert_allclose(stats[aa].sum_outer, ref.sum_outer, rtol=1e-4, atol=1e-3)


class _Stop(Exception):
    pass


def test_ray_run_interrupted_resumes_without_duplicates(ray_cluster, sample_store, bert_dir, reference):
    seen = []

    def stop_after_two(p):
        seen.append(p.n_processed)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        embed(sample_store, model=str(bert_dir), engine="ray", progress=stop_after_two, flush_rows=1,
              ray_options={"workers": 2, "task_rows": 4}, **KW)
    s = sample_store
    run = s.sql("SELECT run_id, status, n_done FROM runs").to_pylist()[0]
    assert run["status"] == "interrupted" and 0 < run["n_done"] < reference[0].n_done
    registered = pq.read_table(s.parts(f"embeddings/{run['run_id']}"))
    assert registered.num_rows == 3 * run["n_done"]     # 3 layers per protein, statuses match parts
    assert sum(v.n for v in load_local_stats(s, run["run_id"], 2).values()) == \
        s.scalar("SELECT sum(n_residues) FROM run_proteins WHERE run_id = ?", [run["run_id"]])
    # a part a killed worker wrote but the driver never registered: ignored, then removed
    orphan = s.dataset_dir(f"embeddings/{run['run_id']}") / f"part-{uuid.uuid4().hex}.parquet"
    pq.write_table(registered, orphan)
    resumed = embed(s, model=str(bert_dir), engine="ray", ray_options={"workers": 2, "task_rows": 4}, **KW)
    assert not orphan.exists()
    _assert_same(s, resumed, reference)


def _pair_store(template, root):
    from protiso.pairs.sample import sample_pairs

    shutil.copytree(template, root)
    with open_store(root) as s:
        sample_pairs(s, "p", proteins=14, seed=3, where="length < 300")
    return root


def _alignments(s):
    return s.sql("SELECT pair_id, accession_a, accession_b, score, identity, matches, length, gaps "
                 "FROM pairs WHERE pair_set = 'p' ORDER BY pair_id").to_pylist()


def test_ray_alignment_equals_local_and_resumes(ray_cluster, _sample_store_template, tmp_path, invoke):
    from protiso.pairs.jobs import align_pair_set

    with open_store(_pair_store(_sample_store_template, tmp_path / "a")) as s:
        align_pair_set(s, "p", chunk_size=10)
        ref = _alignments(s)
    assert len(ref) == 91
    with open_store(_pair_store(_sample_store_template, tmp_path / "b")) as s:
        calls = []

        def stop(done, total):
            calls.append(done)
            if len(calls) == 3:          # the initial report, then two chunks
                raise _Stop

        with pytest.raises(_Stop):
            align_pair_set(s, "p", chunk_size=10, engine="ray", ray_options={"workers": 2}, progress=stop)
        assert s.scalar("SELECT count(*) FROM pair_job_chunks") == 2
        d = next(p for p in (s.root / "data" / "pairs" / "p" / "align").iterdir())
        orphan = d / f"part-{uuid.uuid4().hex}.parquet"
        pq.write_table(pa.table({"pair_id": [0]}), orphan)
    res = invoke("--store", tmp_path / "b", "pairs", "align", "p", "--engine", "ray", "--workers", "2",
                 "--chunk-size", "10", "--json")
    assert res.exit_code == 0, res.output
    assert '"computed": 8' in res.output                    # 10 chunks, 2 were done
    with open_store(tmp_path / "b") as s:
        assert not orphan.exists()
        got = _alignments(s)
        assert [r["pair_id"] for r in got] == list(range(91))   # each pair once
        assert got == ref


def test_engine_ray_without_ray_is_a_clear_error(sample_store, bert_dir, monkeypatch, invoke):
    from protiso.cluster import RayUnavailableError

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RayUnavailableError, match=r"protiso\[ray\]"):
        embed(sample_store, model=str(bert_dir), engine="ray", **KW)
    assert sample_store.scalar("SELECT count(*) FROM runs") == 0      # nothing written
    monkeypatch.setattr(builtins, "__import__", real_import)
    res = invoke("--store", sample_store.root, "embed", "--model", str(bert_dir), "--workers", "2")
    assert res.exit_code != 0 and "--engine ray" in res.output
