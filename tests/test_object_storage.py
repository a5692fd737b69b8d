"""Parts on object storage (protiso.store.fs): a store whose data location is an S3 URL keeps
its catalog beside it and its parts in the bucket, written atomically (no half-written or
temporary object is ever listed), read back by DuckDB and pyarrow, checked on open and by
verify, and cleaned of orphans; nearest-neighbour indexes and pair jobs run there too. Against
moto's S3 server, started here on 127.0.0.1."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

import tiny_models
from protiso import open_store
from protiso.embedding import embed
from protiso.errors import DamagedStoreError, ProtisoError
from protiso.neighbors import index as nn_index
from protiso.pairs.jobs import align_pair_set
from protiso.pairs.sample import sample_pairs
from protiso.runs import load_embeddings
from protiso.store.integrity import repair, verify
from support import fake_run, write_vectors

WHERE = "length BETWEEN 20 AND 60"
KW = dict(where=WHERE, layers="all", dtype="float32", device="cpu", max_tokens=300, flush_rows=8)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free local port: (endpoint host:port, process)."""
    pytest.importorskip("moto")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:      # a loaded machine: do not let teardown fail the tests
        proc.kill()
        proc.wait()


@pytest.fixture
def s3_location(s3_server):
    """A fresh bucket; the data location URL (credentials and endpoint in it) and its filesystem."""
    bucket = f"protiso-{uuid.uuid4().hex[:12]}"
    url = (f"s3://test:test@{bucket}/stores/a?endpoint_override={s3_server}&scheme=http&region=us-east-1"
           "&allow_bucket_creation=true")
    fs, _ = pafs.FileSystem.from_uri(url)
    fs.create_dir(bucket)
    return url, fs, f"{bucket}/stores/a"


def _objects(fs, base):
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File)


def test_embedding_run_on_object_storage(_sample_store_template, tmp_path, s3_location):
    url, fs, base = s3_location
    model = tiny_models.build("bert", tmp_path / "bert", max_pos=130)
    local = tmp_path / "local"
    shutil.copytree(_sample_store_template, local)
    with open_store(local) as s:
        ref_run = embed(s, model=str(model), **KW)
        ref = {la: dict(zip(*load_embeddings(s, ref_run.run_id, la))) for la in ref_run.layers}
    root = tmp_path / "remote"
    shutil.copytree(_sample_store_template, root)
    with open_store(root, data=url) as s:
        run = embed(s, model=str(model), **KW)
        rels = s.sql("SELECT path FROM parts WHERE dataset = ?", [run.dataset]).column("path").to_pylist()
        assert len(rels) >= 3 and all(r.startswith(f"data/{run.dataset}/part-") for r in rels)
        n_views = s.scalar(f"SELECT count(*) FROM embeddings_{run.run_id.replace('-', '_')}")
    assert not (root / "data" / "embeddings").exists()                     # nothing written locally
    everything = _objects(fs, base)
    objects = [o for o in everything if o.startswith(run.dataset + "/")]
    assert sorted(f"{run.dataset}/{r.rsplit('/', 1)[1]}" for r in rels) == objects   # no temporary objects
    with open_store(root) as s:                    # per-protein statuses: status parts in the bucket too
        status = sorted(f"status/{run.run_id}/{r.rsplit('/', 1)[1]}" for r in s.sql(
            "SELECT path FROM parts WHERE dataset = ?", [f"status/{run.run_id}"]).column("path").to_pylist())
        assert status and set(everything) == set(objects) | set(status)
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ? AND status = 'done'",
                        [run.run_id]) == run.n_done
    with open_store(root) as s:                    # the location is the store's: reopened without it
        assert n_views == run.n_done * len(run.layers)
        for la in run.layers:                      # the same rows, the same bits as on a local disk
            got = dict(zip(*load_embeddings(s, run.run_id, la)))
            assert sorted(got) == sorted(ref[la])
            assert all(np.array_equal(v, ref[la][k]) for k, v in got.items())
        assert verify(s).problems == []
        # a part written by a killed job (never registered) and a temporary object: removed
        fs.copy_file(f"{base}/{objects[0]}", f"{base}/{run.dataset}/part-{uuid.uuid4().hex}.parquet")
        with fs.open_output_stream(f"{base}/{run.dataset}/.part-{uuid.uuid4().hex}.parquet.tmp") as out:
            out.write(b"half")
        assert s.clean_orphan_parts(run.dataset) == 2 and _objects(fs, base) == everything
    with pytest.raises(ProtisoError, match="cannot move to"):      # parts cannot move under a store
        open_store(root, data=url.replace("stores/a", "stores/b")).close()
    # a lost object is a damaged store, named, on open and in verify
    fs.delete_file(f"{base}/{objects[1]}")
    with pytest.raises(DamagedStoreError, match=objects[1].rsplit("/", 1)[1]):
        open_store(root).close()
    with open_store(root, check=False) as s:
        assert [p.path.rsplit("/", 1)[1] for p in verify(s).problems] == [objects[1].rsplit("/", 1)[1]]


def test_bad_data_locations_are_clear_errors(tmp_path, s3_location, invoke):
    url, _, _ = s3_location
    fasta = tmp_path / "two.fasta"
    fasta.write_text(">P1\nMKTAYIAKQR\n>P2\nMVLSPADKTN\n")
    res = invoke("--store", tmp_path / "c", "--data", url, "ingest", fasta)      # the CLI records it
    assert res.exit_code == 0, res.output
    with open_store(tmp_path / "c") as s:
        assert s.data is not None and s.data.location == url
    with pytest.raises(ProtisoError, match="is not a URL"):
        open_store(tmp_path / "a", create=True, data="/some/local/dir").close()
    s = open_store(tmp_path / "b", create=True, data=url)
    try:
        s.write_part("x/y", pa.table({"a": [1, 2]}))
        assert s.sql("SELECT * FROM read_parquet(?)", [[str(p) for p in s.parts("x/y")]]).num_rows == 2
    finally:
        s.close()


def test_import_and_repair_on_object_storage(_sample_store_template, tmp_path, s3_location):
    """An import writes its vector and status parts to the bucket; a lost status part there is
    repaired from the vectors that remain (nothing is imported or embedded twice)."""
    h5py = pytest.importorskip("h5py")
    from protiso.interchange.importer import import_embeddings
    from protiso.store.integrity import repair

    url, fs, base = s3_location
    root = tmp_path / "remote"
    shutil.copytree(_sample_store_template, root)
    with open_store(root, data=url) as s:
        accs = [a for (a,) in s.execute("SELECT accession FROM proteins ORDER BY accession LIMIT 300").fetchall()]
    X = np.random.default_rng(0).standard_normal((len(accs), 8)).astype(np.float32)
    path = tmp_path / "per-protein.h5"
    with h5py.File(path, "w") as f:
        for a, x in zip(accs, X):
            f.create_dataset(a, data=x)
    with open_store(root) as s:
        run = import_embeddings(s, [path], name="bucket import")
        got = dict(zip(*load_embeddings(s, run.run_id, run.layers[0])))
        assert run.n_done == len(accs) and all(np.array_equal(got[a], x) for a, x in zip(accs, X))
        status = s.sql("SELECT path FROM parts WHERE dataset = ?", [f"status/{run.run_id}"]).column("path").to_pylist()
        assert status and s.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ? AND status = 'done'",
                                   [run.run_id]) == len(accs)
    assert not (root / "data" / "embeddings").exists() and not (root / "data" / "status").exists()
    objects = _objects(fs, base)
    assert {f"status/{run.run_id}/{p.rsplit('/', 1)[1]}" for p in status} <= set(objects)
    fs.delete_file(f"{base}/status/{run.run_id}/{status[0].rsplit('/', 1)[1]}")
    with open_store(root, check=False) as s:
        _, actions = repair(s)
        assert any("with vectors restored" in a for a in actions), actions
    with open_store(root) as s:
        assert verify(s).problems == []
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ? AND status = 'done'",
                        [run.run_id]) == len(accs)
        assert s.scalar("SELECT n_done FROM runs WHERE run_id = ?", [run.run_id]) == len(accs)


def test_index_on_object_storage(_sample_store_template, tmp_path, s3_location):
    """An index of a run whose parts are in the bucket is written there (no temporary object
    left), used through a local copy named by its checksum, extended, verified and repaired."""
    url, fs, base = s3_location
    root = tmp_path / "remote"
    shutil.copytree(_sample_store_template, root)
    with open_store(root, data=url) as s:
        accs = [a for (a,) in s.execute("SELECT accession FROM proteins ORDER BY accession LIMIT 300").fetchall()]
        X = np.random.default_rng(0).normal(size=(len(accs), 8)).astype(np.float32)
        fake_run(s, "fake-run", {3: (accs[:200], X[:200])}, n_parts=2)
        info, done = nn_index.build_index(s, "fake-run", 3, kind="flat")
        assert done == "built" and info.n_vectors == 200 and str(info.path).startswith("s3://")
        objects = [o for o in _objects(fs, base) if o.startswith("indexes/")]
        assert objects == [f"indexes/fake-run/{str(info.path).rsplit('/', 1)[1]}"]
        assert not (root / "indexes").exists()
        assert [p.name for p in (root / "cache" / "indexes").iterdir()] == [f"{info.sha256}.faiss"]
        shutil.rmtree(root / "cache")                    # another machine: fetched and checked again
        nn_index._CACHE.clear()
        _, ids = nn_index.load_faiss(nn_index.get_index_info(s, "fake-run", 3)).search(
            nn_index.prepare(X[:5], "cosine"), 1)
        by_id = dict(s.execute("SELECT id, accession FROM nn_index_ids").fetchall())
        assert [by_id[i] for i in ids[:, 0]] == accs[:5]            # each vector finds itself
        write_vectors(s, "fake-run", accs[200:], 3, X[200:])           # the run grows: extended
        s.refresh_views()
        old = info.path
        info, done = nn_index.build_index(s, "fake-run", 3, kind="flat")
        assert done == "extended" and info.n_vectors == 300 and info.path != old
        assert [o for o in _objects(fs, base) if o.startswith("indexes/")] == \
            [f"indexes/fake-run/{str(info.path).rsplit('/', 1)[1]}"]       # the old file is gone
        assert nn_index.index_state(s, nn_index.get_index_info(s, "fake-run", 3)).status == "fresh"
        assert verify(s).problems == []
    key = f"{base}/indexes/fake-run/{str(info.path).rsplit('/', 1)[1]}"
    with fs.open_input_stream(key) as fh:
        data = fh.read()
    with fs.open_output_stream(key) as out:                                # changed in the bucket
        out.write(data[:-8] + bytes(8))
    shutil.rmtree(root / "cache")
    nn_index._CACHE.clear()
    with open_store(root) as s:
        with pytest.raises(DamagedStoreError, match="checksum differs"):
            nn_index.load_faiss(nn_index.get_index_info(s, "fake-run", 3))
        assert [p.kind for p in verify(s).problems] == ["index"]
        _, actions = repair(s)
        assert any("index fake-run/L3/flat-cosine dropped" in a for a in actions), actions
        assert nn_index.get_index_info(s, "fake-run", 3) is None and verify(s).problems == []
        assert nn_index.build_index(s, "fake-run", 3, kind="flat")[1] == "built"


def test_pair_jobs_on_object_storage(_sample_store_template, tmp_path, s3_location):
    """Sampling and an alignment job write their parts to the bucket; the pairs view reads them;
    a chunk whose part is lost is computed again after repair, and only that one."""
    url, fs, base = s3_location
    root = tmp_path / "remote"
    shutil.copytree(_sample_store_template, root)
    with open_store(root, data=url) as s:
        ps = sample_pairs(s, "p", proteins=8, seed=1)
        res = align_pair_set(s, "p", chunk_size=10)
        assert res.n_chunks == 3 and res.chunks_computed == 3
        ref = s.sql("SELECT pair_id, score, identity FROM pairs ORDER BY pair_id")
        assert ref.num_rows == ps.n_pairs == 28
        chunks = s.sql("SELECT path FROM pair_job_chunks ORDER BY chunk").column("path").to_pylist()
    assert not (root / "data").exists()
    objects = _objects(fs, base)
    assert all(c[len("data/"):] in objects for c in chunks) and not any(".tmp" in o for o in objects)
    fs.delete_file(f"{base}/{chunks[1][len('data/'):]}")
    with open_store(root, check=False) as s:
        repair(s)
    with open_store(root) as s:
        again = align_pair_set(s, "p", chunk_size=10)
        assert again.chunks_computed == 1
        assert s.sql("SELECT pair_id, score, identity FROM pairs ORDER BY pair_id").equals(ref)
        assert verify(s).problems == []
