"""Readers never wait for a job, writers take turns, waits are bounded (issue 13), with real
processes: `protiso embed` holds the catalog only while it commits, so `sql`, `runs`, `info`,
`isotropy` and `report` work at any moment of it and see the last committed state."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from protiso import open_store
from protiso.errors import StoreBusyError
from protiso.store.integrity import verify

PROTISO = str(Path(sys.executable).with_name("protiso"))
JOB = "length < 300"            # ~1,100 proteins: a job of tens of seconds with protiso-mini


def protiso(root, *args, env=None, timeout=120):
    return subprocess.run([PROTISO, "--store", str(root), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def start(root, *args, env=None):
    return subprocess.Popen([PROTISO, "--store", str(root), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


@pytest.fixture
def root(_sample_store_template, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(_sample_store_template, path)
    return path


def _embedded(root) -> int:
    with open_store(root, read_only=True, wait=30) as s:
        return s.scalar("SELECT count(*) FROM run_proteins")


def test_readers_work_throughout_an_embed_and_see_committed_state(root):
    job = start(root, "embed", "--where", JOB, "--flush-seconds", "1", "--dtype", "float32")
    try:
        seen, waits, commands = [], [], 0
        while job.poll() is None:
            t0 = time.perf_counter()
            seen.append(_embedded(root))                 # the library's read-only open
            waits.append(time.perf_counter() - t0)
            for args in (["sql", "SELECT count(*) AS n FROM run_proteins", "--format", "json"], ["runs", "--json"],
                         ["info", "--json"]):
                if job.poll() is not None:
                    break
                r = protiso(root, *args, env={"PROTISO_LOCK_TIMEOUT": "20"})
                assert r.returncode == 0, (args, r.stderr)
                assert "in use by another process" not in r.stderr
                commands += 1
        out, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 0, err
    assert commands >= 3 and len(seen) >= 3
    assert seen == sorted(seen) and seen[-1] > 0          # committed state only grows
    assert max(waits) < 10, waits
    final = _embedded(root)
    assert final >= seen[-1]
    with open_store(root, read_only=True) as s:
        assert not verify(s).problems
        n = s.scalar("SELECT n_done FROM runs")
        assert s.scalar("SELECT count(*) FROM embeddings") == n * s.scalar("SELECT len(layers) FROM runs")


def test_isotropy_and_report_run_during_an_embed(root):
    first = protiso(root, "embed", "--where", "length < 100", "--dtype", "float32")
    assert first.returncode == 0, first.stderr
    job = start(root, "embed", "--model", "protiso-mini@step300", "--where", JOB, "--flush-seconds", "1",
                "--dtype", "float32")
    try:
        time.sleep(3)
        assert job.poll() is None
        iso = protiso(root, "isotropy", "-m", "protiso-mini", "--json", env={"PROTISO_LOCK_TIMEOUT": "30"})
        assert iso.returncode == 0, iso.stderr
        assert json.loads(iso.stdout)[0]["n"] > 0
        assert job.poll() is None, "the embed should still be running"
        out, err = job.communicate(timeout=300)
    finally:
        job.kill()
    assert job.returncode == 0, err
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM metrics") >= 1
        assert not verify(s).problems


_HOLD = """
import sys, time
from protiso import open_store
s = open_store(sys.argv[1], read_only=sys.argv[2] == "ro")
print("holding", flush=True)
time.sleep(float(sys.argv[3]))
s.close()
"""


def _hold(root, mode, seconds):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(root), mode, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_waits_are_bounded_with_a_message_then_a_clear_error(root, tmp_path):
    fasta = tmp_path / "x.fa"
    fasta.write_text(">NEW1\nMKVL\n")
    holder = _hold(root, "rw", 60)                    # a writer that keeps the catalog (e.g. an old protiso)
    try:
        t0 = time.perf_counter()
        r = protiso(root, "sql", "SELECT 1", env={"PROTISO_LOCK_TIMEOUT": "2"})
        waited = time.perf_counter() - t0
        assert r.returncode == 1 and "waiting for store" in r.stderr
        assert f"process {holder.pid} holds its catalog" in r.stderr and "gave up after waiting 2 s" in r.stderr
        assert 2 <= waited < 30 and "Traceback" not in r.stderr
    finally:
        holder.kill()
        holder.wait()
    holder = _hold(root, "ro", 3)                     # a reader that lets go within the wait
    try:
        r = protiso(root, "ingest", fasta, env={"PROTISO_LOCK_TIMEOUT": "30"})
        assert r.returncode == 0, r.stderr
        assert "1 new proteins" in r.stdout
    finally:
        holder.wait(30)
    holder = _hold(root, "ro", 60)                    # one that does not: the writer gives up, store unchanged
    try:
        fasta.write_text(">NEW2\nMKVL\n")
        r = protiso(root, "ingest", fasta, env={"PROTISO_LOCK_TIMEOUT": "1"})
        assert r.returncode == 1 and "gave up after waiting" in r.stderr
    finally:
        holder.kill()
        holder.wait()
    with open_store(root, read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM proteins WHERE accession LIKE 'NEW%'") == 1
    with pytest.raises(StoreBusyError):
        h = _hold(root, "rw", 30)
        try:
            open_store(root, read_only=True, wait=0.5)
        finally:
            h.kill()
            h.wait()


def test_two_writers_take_turns_and_corrupt_nothing(root):
    a = start(root, "embed", "--where", "length < 200", "--flush-seconds", "0.5", "--dtype", "float32")
    b = start(root, "embed", "--model", "protiso-mini@step300", "--where", "length < 200", "--flush-seconds", "0.5",
              "--dtype", "float32")
    time.sleep(2)
    same = protiso(root, "embed", "--where", "length < 200", "--flush-seconds", "0.5", "--dtype", "float32")
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert b.returncode == 0, outs[1][1][-3000:]
    # the same run is never embedded twice at once: whichever of a and `same` comes second
    # refuses (unless the first had already finished), the other completes the run
    results = [(a.returncode, outs[0][1]), (same.returncode, same.stderr)]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or "is being embedded by process" in err, err[-3000:]
    with open_store(root, read_only=True) as s:
        runs = s.sql("SELECT run_id, n_done, status FROM runs ORDER BY run_id").to_pylist()
        n = s.scalar("SELECT count(*) FROM proteins WHERE length < 200")
        assert len(runs) == 2 and all(r["n_done"] == n and r["status"] == "done" for r in runs), runs
        assert s.scalar("SELECT count(*) FROM run_proteins") == 2 * n
        dup = s.scalar("SELECT count(*) FROM (SELECT run_id, accession, layer FROM embeddings "
                       "GROUP BY ALL HAVING count(*) > 1)")
        assert dup == 0
        assert not verify(s).problems
