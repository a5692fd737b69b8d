"""A store you can trust (issue 13): read-only SQL, recorded and checked parts, verify/repair,
interrupted runs, self-describing parts and catalog views, no silent stores, and messages
instead of tracebacks for damaged files and interrupts."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protiso import open_store
from protiso.errors import DamagedStoreError, NotFoundError, QueryError
from protiso.store.integrity import verify
from protiso.runs import status as run_status
from support import fake_run

PROTISO = str(Path(sys.executable).with_name("protiso"))
SMALL = "length < 80"          # 130 proteins of the demo sample


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under the roots with its SHA-256: 'nothing on disk changed' is equality."""
    out = {}
    for root in roots:
        for f in sorted(Path(root).rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture
def vec_store(_sample_store_template, tmp_path):
    """A closed copy of the sample store with a fake run of 2,000 vectors in 4 parts."""
    root = tmp_path / "store"
    shutil.copytree(_sample_store_template, root)
    with open_store(root) as s:
        accs = [a for (a,) in s.execute("SELECT accession FROM proteins ORDER BY accession LIMIT 2000").fetchall()]
        X = np.random.default_rng(0).normal(size=(len(accs), 16)).astype(np.float32)
        fake_run(s, "fake-run", {3: (accs, X)}, n_parts=4)
    return root


# -- 1. read-only means read-only ---------------------------------------------------------------

REFUSED = [
    ("COPY (SELECT 1 AS x) TO '{part}'", "COPY"),
    ("COPY proteins TO '{out}/p.csv'", "COPY"),
    ("ATTACH '{other}/protiso.duckdb' AS other (READ_WRITE)", "ATTACH"),
    ("EXPORT DATABASE '{out}/export'", "EXPORT"),
    ("SET threads = 1", "SET"),
    ("SET VARIABLE x = 1", "SET"),
    ("RESET threads", "SET"),
    ("PRAGMA threads = 1", "SET"),
    ("PRAGMA enable_profiling", "PRAGMA"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD json", "LOAD"),
    ("CALL checkpoint()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("SELECT * FROM checkpoint()", "checkpoint"),
    ("SELECT * FROM query('SELECT 1')", "query"),
    ("EXPLAIN ANALYZE COPY proteins TO '{out}/q.csv'", "EXPLAIN"),
    ("SELECT 1; DELETE FROM annotations", "DELETE"),
    ("SELECT count(*) FROM proteins; SELECT 1", "one statement"),
    ("DELETE FROM annotations", "DELETE"),
    ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
    ("IMPORT DATABASE '{out}/export'", "PRAGMA"),
    ("DETACH other", "DETACH"),
    ("USE memory", "SET"),
    ("BEGIN TRANSACTION", "TRANSACTION"),
    ("VACUUM", "VACUUM"),
]


def test_sql_refuses_every_writing_statement_and_nothing_changes(vec_store, tmp_path, invoke):
    other = tmp_path / "other"
    shutil.copytree(vec_store, other)
    out = tmp_path / "out"
    out.mkdir()
    with open_store(vec_store, read_only=True) as s:
        part = s.parts("embeddings/fake-run")[0]
    before = snapshot(vec_store, other, out)
    for template, kind in REFUSED:
        query = template.format(part=part, out=out, other=other)
        r = invoke("--store", vec_store, "sql", query)
        assert r.exit_code == 1, (query, r.output)
        assert kind in r.stderr and "Traceback" not in r.output, (query, r.stderr)
        assert snapshot(vec_store, other, out) == before, query
    # the library's read-only store refuses the same, and writes outside it too
    with open_store(vec_store, read_only=True) as s:
        for template, kind in REFUSED:
            if kind == "one statement":      # two reads: fine for the library
                continue
            with pytest.raises(QueryError):
                s.sql(template.format(part=part, out=out, other=other))
        with pytest.raises(duckdb.Error, match="lock_configuration|configuration"):
            s.con.execute("SET autoload_known_extensions = true")
    assert snapshot(vec_store, other, out) == before
    # and the results file may not land inside the store
    r = invoke("--store", vec_store, "sql", "SELECT 1 AS x", "--format", "parquet", "--output", part)
    assert r.exit_code == 1 and "inside the store" in r.stderr
    assert snapshot(vec_store, other, out) == before


def test_sql_runs_every_read_statement_with_views_and_udfs(vec_store, tmp_path, invoke):
    csv = tmp_path / "wanted.csv"
    csv.write_text("accession\nQ6GZX4\n")
    reads = [
        "SELECT count(*) AS n FROM proteins",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "FROM protein_meta LIMIT 2",
        "DESCRIBE embeddings",
        "SHOW TABLES",
        "SUMMARIZE SELECT length FROM proteins",
        "EXPLAIN SELECT * FROM proteins",
        "EXPLAIN ANALYZE SELECT count(*) FROM embeddings",
        "PRAGMA table_info('proteins')",
        "PRAGMA database_size",
        f"SELECT count(*) AS n FROM read_csv('{csv}') JOIN proteins USING (accession)",
        "SELECT round(isoscore(list(embedding::DOUBLE[])), 6) AS iso FROM embeddings_fake_run",
        "SELECT array_cosine_similarity(a.embedding, a.embedding) AS c FROM embeddings a LIMIT 1",
    ]
    before = snapshot(vec_store)
    for query in reads:
        r = invoke("--store", vec_store, "sql", query, "--format", "json")
        assert r.exit_code == 0, (query, r.output)
        assert json.loads(r.stdout), query
    assert snapshot(vec_store) == before


# -- 3. integrity: recorded, checked, verified, repaired ----------------------------------------

def test_parts_record_rows_size_checksum_and_describe_themselves(store):
    table = pa.table({"accession": ["A", "B", "C"], "x": [1.0, 2.0, 3.0]})
    path = store.write_part("demo/x", table, {"run_id": "r1", "layers": "[3]", "dim": 16})
    rows, size, sha = store.one("SELECT n_rows, size_bytes, sha256 FROM parts")
    assert (rows, size) == (3, path.stat().st_size)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    meta = pq.read_metadata(path).metadata
    assert meta[b"protiso.dataset"] == b"demo/x" and meta[b"protiso.run_id"] == b"r1"
    assert meta[b"protiso.dim"] == b"16" and int(meta[b"protiso.schema_version"]) >= 7


def test_lost_part_fails_reads_verify_lists_it_repair_marks_work_not_done(vec_store, invoke):
    with open_store(vec_store) as s:
        lost = s.parts("embeddings/fake-run")[1]
        n_lost = pq.read_metadata(lost).num_rows
        run_status.append(s, "fake-run", s.sql(
            "SELECT accession, 'done' AS status, 10 AS length, 10 AS n_residues, NULL AS reason, "
            "NULL AS in_stats, NULL AS local_stored FROM embeddings_fake_run"))
    lost.unlink()
    for args in (["isotropy", "-m", "fake-run"], ["index", "list"], ["runs"],
                 ["sql", "SELECT count(*) FROM embeddings"], ["index", "build", "-m", "fake-run", "--kind", "flat"]):
        r = invoke("--store", vec_store, *args)
        assert r.exit_code == 1, (args, r.output)
        assert lost.name in r.stderr and "is missing" in r.stderr and "protiso repair" in r.stderr, (args, r.stderr)
    with pytest.raises(DamagedStoreError, match=lost.name):
        open_store(vec_store)
    r = invoke("--store", vec_store, "verify")
    assert r.exit_code == 1 and lost.name in r.stdout and "missing" in r.stdout
    r = invoke("--store", vec_store, "info")
    assert r.exit_code == 0 and lost.name in r.stderr
    r = invoke("--store", vec_store, "repair")
    assert r.exit_code == 0, r.output
    assert f"{n_lost:,} protein(s) whose vectors were lost marked as not done" in r.stdout
    assert invoke("--store", vec_store, "verify").exit_code == 0
    with open_store(vec_store, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE status = 'failed'") == n_lost
        assert s.scalar("SELECT n_done FROM runs WHERE run_id = 'fake-run'") == 2000 - n_lost
        assert s.scalar("SELECT count(*) FROM embeddings") == 2000 - n_lost


def test_lost_part_of_a_real_run_is_re_embedded_after_repair(_sample_store_template, tmp_path, invoke):
    root = tmp_path / "store"
    shutil.copytree(_sample_store_template, root)
    r = invoke("--store", root, "embed", "--where", SMALL, "--flush-seconds", "0", "--dtype", "float32",
               "--max-tokens", "2000", "--json")
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)[0]
    with open_store(root, read_only=True) as s:
        parts = s.parts(f"embeddings/{run['run_id']}")
        before = {a: v for a, v in s.execute(f"SELECT accession, embedding FROM embeddings").fetchall()}
    assert len(parts) > 2
    meta = pq.read_metadata(parts[0]).metadata
    assert meta[b"protiso.run_id"].decode() == run["run_id"] and meta[b"protiso.model"] == b"protiso-mini"
    assert json.loads(meta[b"protiso.layers"]) == run["layers"] and int(meta[b"protiso.dim"]) == run["dim"]
    lost = parts[1]
    n_lost = pq.read_metadata(lost).num_rows
    lost.unlink()
    r = invoke("--store", root, "embed", "--where", SMALL, "--dtype", "float32")
    assert r.exit_code == 1 and lost.name in r.stderr and "protiso repair" in r.stderr
    assert invoke("--store", root, "repair").exit_code == 0
    r = invoke("--store", root, "embed", "--where", SMALL, "--dtype", "float32", "--max-tokens", "2000", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["n_done"] == run["n_done"]
    with open_store(root, read_only=True) as s:
        after = {a: v for a, v in s.execute("SELECT accession, embedding FROM embeddings").fetchall()}
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE status = 'failed'") == 0
    assert after.keys() == before.keys() and len(after) == run["n_done"]
    assert n_lost > 0
    # a lost status part: repair restores the statuses of the proteins whose vectors exist, so
    # embedding again embeds nothing twice
    with open_store(root, read_only=True) as s:
        status_parts = s.parts(f"status/{run['run_id']}")
        n_rows = pq.read_metadata(status_parts[0]).num_rows
    assert len(status_parts) > 2 and n_rows > 0
    status_parts[0].unlink()
    r = invoke("--store", root, "repair")
    assert r.exit_code == 0 and f"the status of {n_rows:,} protein(s) with vectors restored" in " ".join(
        r.stdout.split()), r.output
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT n_done FROM runs WHERE run_id = ?", [run["run_id"]]) == run["n_done"]
    r = invoke("--store", root, "embed", "--where", SMALL, "--dtype", "float32", "--max-tokens", "2000", "--json")
    assert r.exit_code == 0, r.output
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM embeddings") == run["n_done"]
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ? AND status <> 'failed'",
                        [run["run_id"]]) == run["n_done"]


def test_changed_part_and_truncated_index_are_messages(vec_store, invoke):
    r = invoke("--store", vec_store, "index", "build", "-m", "fake-run", "--kind", "flat")
    assert r.exit_code == 0, r.output
    with open_store(vec_store, read_only=True) as s:
        index_file = s.root / s.scalar("SELECT path FROM nn_indexes")
        part = s.parts("embeddings/fake-run")[2]
        query = s.scalar("SELECT min(accession) FROM embeddings")
    data = index_file.read_bytes()
    index_file.write_bytes(data[: len(data) // 2])
    r = invoke("--store", vec_store, "neighbors", query, "-m", "fake-run")
    assert r.exit_code == 1 and "damaged" in r.stderr and index_file.name in r.stderr, r.output
    assert "Traceback" not in r.output
    part.write_bytes(part.read_bytes()[:100])           # a truncated part
    r = invoke("--store", vec_store, "index", "build", "-m", "fake-run", "--kind", "flat", "--rebuild")
    assert r.exit_code == 1 and part.name in r.stderr and "changed" in r.stderr and "protiso repair" in r.stderr
    r = invoke("--store", vec_store, "verify", "--json")
    problems = {Path(p["path"]).name: p["problem"] for p in json.loads(r.stdout)}
    assert r.exit_code == 1 and "changed" in problems[part.name] and "truncated" in problems[index_file.name]
    r = invoke("--store", vec_store, "repair")
    assert r.exit_code == 0 and "index fake-run/L3/flat-cosine dropped" in r.stdout
    assert not part.exists() and (vec_store / "damaged" / part.relative_to(vec_store)).exists()
    assert invoke("--store", vec_store, "verify").exit_code == 0
    r = invoke("--store", vec_store, "index", "build", "-m", "fake-run", "--kind", "flat")
    assert r.exit_code == 0 and "built" in r.stdout


def test_damaged_catalog_is_a_message(vec_store, invoke):
    catalog = vec_store / "protiso.duckdb"
    size = catalog.stat().st_size
    with open(catalog, "r+b") as fh:                       # scribble over data blocks
        for offset in range(13_000, size, 65_536):
            fh.seek(offset)
            fh.write(b"\xde\xad\xbe\xef" * 64)
    results = [invoke("--store", vec_store, *args) for args in
               (["info"], ["sql", "SELECT sum(length(sequence)) FROM proteins"], ["verify"],
                ["isotropy", "-m", "fake-run"])]
    assert any("damaged" in r.stderr for r in results), [r.output for r in results]
    for r in results:
        assert "Traceback" not in r.output
        assert r.exit_code in (0, 1)
    assert results[2].exit_code == 1        # verify reads every table in full


# -- 4. a run whose process died shows interrupted ---------------------------------------------

def test_killed_embed_shows_interrupted(_sample_store_template, tmp_path, invoke):
    root = tmp_path / "store"
    shutil.copytree(_sample_store_template, root)
    proc = subprocess.Popen([PROTISO, "--store", str(root), "embed", "--where", "length < 400",
                             "--flush-seconds", "0", "--dtype", "float32"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = invoke("--store", root, "runs", "--json")
            rows = json.loads(r.stdout) if r.exit_code == 0 and r.stdout.strip() else []
            if rows and rows[0]["n_done"]:
                break
            time.sleep(0.5)
        assert rows and rows[0]["status"] == "running", r.output
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    r = invoke("--store", root, "runs", "--json")
    assert json.loads(r.stdout)[0]["status"] == "interrupted"
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT status FROM runs") == "running"       # as the process left it
        assert s.scalar("SELECT status FROM run_summary") == "interrupted"


# -- 5. a store that describes itself outside protiso -------------------------------------------

def test_plain_duckdb_gets_embeddings_with_fixed_size_vectors(vec_store):
    cwd = os.getcwd()
    try:
        os.chdir(vec_store)               # relative paths in the catalog's views resolve from here
        con = duckdb.connect("protiso.duckdb", read_only=True)
        assert con.execute("SELECT typeof(embedding), count(*) FROM embeddings GROUP BY 1").fetchall() == \
            [("FLOAT[16]", 2000)]
        assert con.execute("SELECT count(*) FROM embeddings_fake_run WHERE "
                           "array_cosine_similarity(embedding, embedding) > 0.99").fetchone()[0] == 2000
        con.close()
    finally:
        os.chdir(cwd)
    con = duckdb.connect(str(vec_store / "protiso.duckdb"), read_only=True)    # from anywhere
    con.execute(f"SET file_search_path = '{vec_store}'")
    assert con.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 2000
    meta = dict(con.execute("SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata("
                            f"'{vec_store}/data/embeddings/fake-run/*.parquet') WHERE key::VARCHAR LIKE 'protiso.%'").fetchall())
    assert meta["protiso.dataset"] == "embeddings/fake-run"
    con.close()


# -- 7. no silent stores ---------------------------------------------------------------------------

def test_read_commands_on_a_missing_store_fail_and_create_nothing(tmp_path, invoke):
    missing = tmp_path / "nowhere"
    for args in (["info"], ["runs"], ["sql", "SELECT 1"], ["isotropy", "-m", "x"], ["index", "list"],
                 ["verify"], ["repair"], ["embed", "--where", "length < 10"], ["report"]):
        r = invoke("--store", missing, *args)
        assert r.exit_code == 1, (args, r.output)
        assert f"no store at {missing}" in r.stderr, (args, r.stderr)
        assert not missing.exists(), args
    with pytest.raises(NotFoundError, match="no store at"):
        open_store(missing)
    assert not missing.exists()


def test_failed_first_ingest_leaves_nothing(tmp_path, invoke):
    bad = tmp_path / "bad.fa"
    bad.write_text(">X1\nMKV$\n")
    root = tmp_path / "new"
    r = invoke("--store", root, "ingest", bad)
    assert r.exit_code == 1 and not root.exists()
    existing = tmp_path / "empty-dir"
    existing.mkdir()
    r = invoke("--store", existing, "ingest", bad)
    assert r.exit_code == 1 and existing.is_dir() and not any(existing.iterdir())
    good = tmp_path / "good.fa"
    good.write_text(">X1\nMKV\n")
    assert invoke("--store", root, "ingest", good).exit_code == 0
    assert invoke("--store", root, "ingest", bad).exit_code == 1       # an existing store stays
    assert (root / "protiso.duckdb").exists()


# -- 6. interrupts are messages ---------------------------------------------------------------------

def test_ctrl_c_during_a_long_sql_query_is_a_message(vec_store):
    proc = subprocess.Popen(
        [PROTISO, "--store", str(vec_store), "sql",
         "SELECT count(*) FROM range(100000000000) a, range(10) b WHERE a.range * b.range = -1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err


def test_repair_of_a_run_that_lost_a_vector_part_and_a_status_part_at_once(vec_store, invoke):
    """Every lost part is unlisted before any repairer reads what remains: the run's statuses
    (one status part per vector part here) are rebuilt from both losses, no 'damaged store'."""
    with open_store(vec_store) as s:
        vectors = s.parts("embeddings/fake-run")
        for part in vectors:
            run_status.append(s, "fake-run", s.sql(
                "SELECT accession, 'done' AS status, 10 AS length, 10 AS n_residues, NULL AS reason, "
                "NULL AS in_stats, NULL AS local_stored FROM read_parquet($p)", {"p": str(part)}))
        statuses = s.parts("status/fake-run")
        n_lost = pq.read_metadata(vectors[1]).num_rows
    assert len(statuses) == len(vectors) == 4
    vectors[1].unlink()          # the vectors of the second quarter
    statuses[0].unlink()         # the statuses of the first quarter
    r = invoke("--store", vec_store, "repair")
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert invoke("--store", vec_store, "verify").exit_code == 0
    with open_store(vec_store, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE status = 'failed'") == n_lost
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE status = 'done'") == 2000 - n_lost
        assert s.scalar("SELECT n_done FROM runs WHERE run_id = 'fake-run'") == 2000 - n_lost
