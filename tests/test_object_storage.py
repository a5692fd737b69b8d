"""Parts on object storage (protiso.store.fs): a store whose data location is an S3 URL keeps
its catalog beside it and its parts in the bucket, written atomically (no half-written or
temporary object is ever listed), read back by DuckDB and pyarrow, checked on open and by
verify, and cleaned of orphans. Against moto's S3 server, started here on 127.0.0.1."""
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
from protiso.pairs.sample import sample_pairs
from protiso.runs import load_embeddings
from protiso.store.integrity import verify

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
    proc.wait(10)


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
    objects = _objects(fs, base)
    assert sorted(f"{run.dataset}/{r.rsplit('/', 1)[1]}" for r in rels) == objects   # no temporary objects
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
        assert s.clean_orphan_parts(run.dataset) == 2 and _objects(fs, base) == objects
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
        with pytest.raises(ProtisoError, match="pair sampling needs the store's parts on a local filesystem"):
            sample_pairs(s, "p", proteins=2)
    with pytest.raises(ProtisoError, match="is not a URL"):
        open_store(tmp_path / "a", create=True, data="/some/local/dir").close()
    s = open_store(tmp_path / "b", create=True, data=url)
    try:
        s.write_part("x/y", pa.table({"a": [1, 2]}))
        assert s.sql("SELECT * FROM read_parquet(?)", [[str(p) for p in s.parts("x/y")]]).num_rows == 2
    finally:
        s.close()
