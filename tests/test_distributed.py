"""Scale-out on Ray: embedding and alignment on a local Ray cluster equal the local engine
(bit-identical vectors in float32), resume after an interruption without duplicates, only the
driver writes the catalog; connecting fails fast and says why; Ray's logs stay quiet.

The cluster (2 CPUs) is started once per session; tests that need it skip where Ray is not
installed (CI installs the `ray` extra)."""
from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import tiny_models
from test_object_storage import s3_location, s3_server  # noqa: F401 - fixtures
from protiso import open_store
from protiso.embedding import embed
from protiso.runs import load_embeddings, load_local_stats
from protiso.isotropy.stats import SufficientStats
from protiso.models.base import LoadOptions
from protiso.models.registry import load_model

WHERE = "length BETWEEN 20 AND 50"     # 33 proteins of the sample
KW = dict(where=WHERE, layers="all", dtype="float32", device="cpu", max_length=40, long="chunk",
          max_tokens=200, local_stats=True)


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
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
        accs = s.sql("SELECT accession FROM read_parquet(?) WHERE layer = ?",       # local files or URLs
                     [[str(p) for p in s.parts(run.dataset)], la]).column("accession").to_pylist()
        assert len(accs) == len(set(accs)) == ref_run.n_done            # no duplicates
        got = dict(zip(*load_embeddings(s, run.run_id, la)))
        assert sorted(got) == sorted(ref_rows[la])
        for k, v in got.items():       # same batches as the local engine: the same bits
            np.testing.assert_array_equal(v, ref_rows[la][k])
        stats = load_local_stats(s, run.run_id, la)
        assert sorted(stats) == sorted(ref_stats[la])
        for aa, st in stats.items():    # float64 sums of the same vectors, added in another order
            ref = ref_stats[la][aa]
            assert st.n == ref.n
            for got_, ref_ in ((st.sum, ref.sum), (st.sum_outer, ref.sum_outer), (st.sum_unit, ref.sum_unit)):
                np.testing.assert_allclose(got_, ref_, rtol=0, atol=1e-12 * np.abs(ref_).max())
    # the catalog lists exactly the part files on disk (or in the bucket)
    if s.data is not None:
        on_disk = {f"data/{run.dataset}/{n}" for n in s.data.names(run.dataset)}
    else:
        on_disk = {p.relative_to(s.root).as_posix() for p in s.dataset_dir(run.dataset).iterdir()}
    assert on_disk == set(s.sql("SELECT path FROM parts WHERE dataset = ?", [run.dataset])
                          .column("path").to_pylist())


def test_ray_embedding_with_two_actors_equals_local(ray_cluster, _sample_store_template, tmp_path, bert_dir,
                                                    reference, s3_location):
    """Two actors, parts written straight to object storage (moto's S3), rows equal the local
    engine's on a local disk, bit for bit."""
    url, fs, base = s3_location
    shutil.copytree(_sample_store_template, tmp_path / "s3store")
    sample_store = open_store(tmp_path / "s3store", data=url)
    run = embed(sample_store, model=str(bert_dir), engine="ray",
                ray_options={"workers": 2, "task_rows": 6}, **KW)
    _assert_same(sample_store, run, reference)
    assert len(sample_store.parts(run.dataset)) >= 2       # several actor tasks wrote parts
    assert not (tmp_path / "s3store" / "data" / "embeddings").exists()
    assert len(fs.get_file_info(pafs.FileSelector(f"{base}/{run.dataset}"))) == len(sample_store.parts(run.dataset))
    # merged statistics equal one pass over all residues (independent: the adapter, per protein)
    adapter = load_model(str(bert_dir), LoadOptions(device="cpu"))
    seqs = dict(sample_store.con.execute(f"SELECT accession, sequence FROM protein_meta WHERE {WHERE}").fetchall())
    layer = run.layers[-1]
    vecs = {"A": [], "L": []}
    for acc, seq in seqs.items():
        starts = [0] if len(seq) <= 40 else list(range(0, len(seq) - 40, 30)) + [len(seq) - 40]
        acc_v = np.zeros((len(seq), adapter.dim))
        cnt = np.zeros(len(seq))
        for st in starts:
            R = adapter.embed_batch([seq[st:st + 40]], [layer]).residues[0][layer]
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
              ray_options={"workers": 1, "task_rows": 4}, **KW)
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
    resumed = embed(s, model=str(bert_dir), engine="ray", ray_options={"workers": 1, "task_rows": 4}, **KW)
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
    assert json.loads(res.output)[0]["computed"] == 8      # 10 chunks, 2 were done
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


def test_connecting_fails_fast_and_says_why():
    from protiso.cluster import ClusterError, check_address

    pytest.importorskip("ray")
    t0 = time.monotonic()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ClusterError, match=rf"nothing listens at 127.0.0.1:{port} \(connection refused\)"):
        check_address(f"127.0.0.1:{port}", timeout=5)
    with socket.socket() as silent:          # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ClusterError, match="no Ray cluster answered within 2 s"):
            check_address(f"127.0.0.1:{silent.getsockname()[1]}", timeout=2)
    with pytest.raises(ClusterError, match="not HOST:PORT"):
        check_address("head-without-port", timeout=2)
    assert time.monotonic() - t0 < 15


def test_worker_resources_name_the_values():
    from protiso.cluster import resources
    from protiso.errors import ProtisoError

    class Cluster:
        @staticmethod
        def cluster_resources():
            return {"CPU": 8.0, "GPU": 2.0}

    assert resources(Cluster, None, 1.0, None) == (1.0, 1.0, 2)          # one worker per GPU
    assert resources(Cluster, 0.0, 2.0, None) == (0.0, 2.0, 4)
    with pytest.raises(ProtisoError, match="one worker asks for 4 GPUs and 1 CPUs, but the cluster has 2 GPUs"):
        resources(Cluster, 4.0, 1.0, None)


def _protiso(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "protiso", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=timeout)


def test_wrong_token_and_quiet_logs_on_a_running_cluster(ray_cluster, sample_store, bert_dir):
    """Against this session's cluster: a wrong token is an authentication error (not 'the actor
    never ran'); with the right one, `embed --engine ray --plan-only` prints the plan and no Ray
    log lines (unless --verbose)."""
    from ray._raylet import AuthenticationMode, get_authentication_mode

    if get_authentication_mode() != AuthenticationMode.TOKEN:
        pytest.skip("this Ray cluster runs without token authentication")
    gcs = ray_cluster.get_runtime_context().gcs_address
    sample_store.close()
    args = ["--store", sample_store.root, "embed", "--model", bert_dir, "--dtype", "float32", "--where", WHERE,
            "--engine", "ray", "--address", gcs, "--workers", "1", "--plan-only", "--connect-timeout", "20"]
    bad = _protiso(args, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32})
    assert bad.returncode != 0 and f"the Ray cluster at {gcs} refused this client's authentication" in bad.stderr
    good = _protiso(args, {"RAY_AUTH_MODE": "token"})
    assert good.returncode == 0, good.stderr
    assert "plan: 33 proteins" in good.stdout and "tasks of <=" in good.stdout
    noise = [ln for ln in (good.stdout + good.stderr).splitlines() if "ray" in ln.lower() or ln.startswith("[")]
    assert noise == [], noise


class _Square:
    """A test actor: dies (the whole process) the first time it sees `die_at`; fails to start
    when `bad` (with the protiso error the driver must get)."""

    def __init__(self, marker: str, die_at: int, bad: bool = False):
        from protiso.errors import InputError

        if bad:
            raise InputError("model files differ on this node")
        self.marker, self.die_at = marker, die_at

    def __call__(self, x: int) -> int:
        if x == self.die_at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)                      # the worker process is lost, as on a node failure
        return x * x


def test_actor_pool_replaces_lost_workers_and_reports_start_errors(ray_cluster, tmp_path):
    from ray import cloudpickle

    from protiso.cluster import ActorPool
    from protiso.errors import InputError

    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # workers cannot import tests/
    got = {}
    pool = ActorPool(ray_cluster, _Square, (str(tmp_path / "died"), 3), workers=1, cpus=1)
    pool.run(((i, (i,)) for i in range(6)), got.__setitem__)
    assert got == {i: i * i for i in range(6)} and pool.replaced == 1 and (tmp_path / "died").exists()
    with pytest.raises(InputError, match="model files differ on this node"):
        ActorPool(ray_cluster, _Square, ("", -1, True), workers=1, cpus=1).run([(0, (0,))], got.__setitem__)
