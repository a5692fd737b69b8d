"""The store: path resolution, migrations, views, locking, atomic parts."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from protiso import open_store
from protiso.errors import DamagedStoreError, NotFoundError, ProtisoError, StoreBusyError
from protiso.store import resolve_store_path
from protiso.store.migrations import migrations


def test_store_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROTISO_STORE", raising=False)
    assert resolve_store_path() == tmp_path / "store"
    monkeypatch.setenv("PROTISO_STORE", str(tmp_path / "env"))
    assert resolve_store_path() == tmp_path / "env"
    assert resolve_store_path(tmp_path / "arg") == tmp_path / "arg"


def test_created_on_request_and_migrations_idempotent(tmp_path):
    root = tmp_path / "s"
    with pytest.raises(NotFoundError, match="no store at"):
        open_store(root)              # only writers that ask for it create a store
    assert not root.exists()
    with open_store(root, create=True) as s:
        versions = [v for (v,) in s.con.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]
        assert versions == [v for v, _ in migrations()]
        s.con.execute("INSERT INTO proteins (accession, length, sequence) VALUES ('A1', 3, 'MKV')")
    with open_store(root) as s:  # second open: nothing re-applied, data kept
        assert s.scalar("SELECT count(*) FROM schema_migrations") == len(versions)
        assert s.scalar("SELECT count(*) FROM proteins") == 1
        assert s.scalar("SELECT count(*) FROM protein_meta") == 1  # views re-created


def test_read_only_open_of_missing_store_fails(tmp_path):
    with pytest.raises(NotFoundError, match="no store at"):
        open_store(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_read_only_store_rejects_writes(tmp_path):
    open_store(tmp_path / "s", create=True).close()
    with open_store(tmp_path / "s", read_only=True) as s:
        assert s.scalar("SELECT count(*) FROM organism_summary") == 0
        with pytest.raises(ProtisoError, match="read-only"):
            s.write_part("x", pa.table({"a": [1]}))


def test_second_writer_gets_clear_busy_error(tmp_path):
    root = tmp_path / "s"
    open_store(root, create=True).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from protiso import open_store
            s = open_store({str(root)!r})
            print("ready", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusyError, match=r"in use by another process \(process \d+ holds its catalog\)"):
            open_store(root, wait=0.2)
        with pytest.raises(StoreBusyError, match="gave up after waiting"):
            open_store(root, read_only=True, wait=0.2)
    finally:
        holder.communicate("done\n", timeout=30)


def test_write_part_is_registered_and_rolled_back(store):
    table = pa.table({"accession": ["A", "B"], "x": [1.0, 2.0]})
    path = store.write_part("demo/one", table)
    assert path.exists() and store.parts("demo/one") == [path]
    assert not list(path.parent.glob(".*.tmp"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            failed = store.write_part("demo/one", table)
            raise RuntimeError("boom")
    assert not failed.exists()
    assert store.parts("demo/one") == [path]
    assert store.scalar("SELECT count(*) FROM parts") == 1
    store.delete_dataset("demo/one")
    assert store.parts("demo/one") == [] and not path.exists()


def test_dataset_names_are_validated(store):
    for bad in ("../escape", "a/../../b", "with space", ""):
        with pytest.raises(ValueError):
            store.dataset_dir(bad)


def test_parts_fail_on_a_lost_part(store):
    path = store.write_part("demo/two", pa.table({"a": [1]}))
    path.unlink()
    with pytest.raises(DamagedStoreError, match=r"part-[0-9a-f]+\.parquet \(demo/two\) is missing.*protiso repair"):
        store.parts("demo/two")


def test_clean_orphan_parts_keeps_registered_files(store):
    from protiso.store import write_part_file

    table = pa.table({"a": [1, 2]})
    kept = store.write_part("demo/three", table)
    orphan = write_part_file(store.dataset_dir("demo/three"), table)  # a killed worker's file
    leftover = store.dataset_dir("demo/three") / ".part-0123456789abcdef0123456789abcdef.parquet.tmp"
    leftover.write_bytes(b"partial")
    assert orphan.exists() and orphan not in store.parts("demo/three")
    assert store.clean_orphan_parts("demo/three") == 2
    assert kept.exists() and not orphan.exists() and not leftover.exists()
    assert store.parts("demo/three") == [kept]
    store.register_part("demo/three", write_part_file(store.dataset_dir("demo/three"), table), 2)
    with pytest.raises(ProtisoError, match="already registered"):
        store.register_part("demo/three", kept, 2)
