"""`embed`: pooled vectors, resume, length policies, OOM halving, local statistics, views, CLI.

Expected values are computed independently with the adapter's per-sequence output (or the raw
model), never by the code under test."""
from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tiny_models
from protiso import open_store
from protiso.embedding import chunk_windows, embed, embed_sequences
from protiso.runs import delete_run, iter_embeddings, load_embeddings, load_local_stats, resolve_run
from protiso.errors import InputError, NotFoundError
from protiso.isotropy.stats import SufficientStats
from protiso.models import LoadOptions, load_model

WHERE = "length BETWEEN 20 AND 50"     # 33 proteins of the sample


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_models.build("bert", tmp_path_factory.mktemp("m") / "bert", max_pos=130)


@pytest.fixture(scope="module")
def xlnet_dir(tmp_path_factory):
    return tiny_models.build("xlnet", tmp_path_factory.mktemp("m") / "xlnet")


@pytest.fixture(scope="module")
def bert(bert_dir):
    return load_model(str(bert_dir), LoadOptions(device="cpu"))


def _subset(store, where=WHERE):
    rows = store.sql(f"SELECT accession, sequence FROM protein_meta WHERE {where} ORDER BY accession").to_pylist()
    return {r["accession"]: r["sequence"] for r in rows}


def _reference(adapter, seqs: dict, layer, max_length=None):
    """Per-protein mean of the adapter's residue vectors, one sequence per forward pass."""
    adapter.set_dtype("float32")
    out = {}
    for acc, s in seqs.items():
        s = s[:max_length] if max_length else s
        out[acc] = adapter.embed_batch([s], [layer]).residues[0][layer].mean(0)
    return out


def _rows(store, run_id, layer):
    acc, X = load_embeddings(store, run_id, layer)
    return dict(zip(acc, X))


def test_embed_pools_residue_positions_and_records_provenance(sample_store, bert, bert_dir):
    seqs = _subset(sample_store)
    assert 20 <= len(seqs) <= 60
    run = embed(sample_store, model=str(bert_dir), where=WHERE, layers="0,2", dtype="float32", device="cpu",
                max_tokens=300)
    assert run.n_done == len(seqs) and run.status == "done" and run.layers == [0, 2]
    assert run.family == "bert" and run.dim == 32 and run.dtype == "float32" and run.device == "cpu"
    assert run.revision == bert.revision and run.n_residues == sum(map(len, seqs.values()))
    assert run.software_version and run.seconds > 0 and run.details["versions"]["torch"]
    for layer in (0, 2):
        got = _rows(sample_store, run.run_id, layer)
        ref = _reference(bert, seqs, layer)
        assert sorted(got) == sorted(ref)
        for acc in ref:
            np.testing.assert_allclose(got[acc], ref[acc], atol=2e-5)
    # views: per-run and union, embedding is FLOAT[32]
    t = sample_store.sql(f"SELECT typeof(embedding) t, count(*) n FROM embeddings_{run.run_id.replace('-', '_')} "
                         "GROUP BY 1")
    assert t.to_pylist() == [{"t": "FLOAT[32]", "n": 2 * len(seqs)}]
    acc = sorted(seqs)[0]
    cos = sample_store.scalar(
        "SELECT array_cosine_similarity(a.embedding, b.embedding) FROM embeddings a JOIN embeddings b "
        "USING (accession, layer) WHERE accession = ? AND layer = 2", [acc])
    assert cos == pytest.approx(1.0, abs=1e-6)
    assert sample_store.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ? AND status = 'done'",
                               [run.run_id]) == len(seqs)
    # resolve by model name, iterate with a filter
    assert resolve_run(sample_store, str(bert_dir)).run_id == run.run_id
    small = [a for a, s in seqs.items() if len(s) < 40]
    got = [a for accs, _ in iter_embeddings(sample_store, run.run_id, 0, where="length < 40") for a in accs]
    assert sorted(got) == sorted(small)
    with pytest.raises(NotFoundError, match="layer 1"):
        load_embeddings(sample_store, run.run_id, 1)
    # re-running does nothing new
    again = embed(sample_store, model=str(bert_dir), where=WHERE, layers="0,2", dtype="float32", device="cpu")
    assert again.run_id == run.run_id and again.n_done == run.n_done
    assert len(sample_store.parts(run.dataset)) == len(sample_store.parts(again.dataset))


def test_batch_budget_does_not_change_results(sample_store, bert, bert_dir):
    a = embed(sample_store, model=str(bert_dir), where=WHERE, dtype="float32", device="cpu", max_tokens=80)
    X = _rows(sample_store, a.run_id, 2)
    delete_run(sample_store, a.run_id)
    b = embed(sample_store, model=str(bert_dir), where=WHERE, dtype="float32", device="cpu", max_tokens=5000)
    Y = _rows(sample_store, b.run_id, 2)
    assert sorted(X) == sorted(Y)
    for k in X:
        np.testing.assert_allclose(X[k], Y[k], atol=2e-5)


class _Crash(Exception):
    pass


class _CrashingAdapter:
    """Delegates to an adapter and raises after `after` forward passes (a crash mid-run)."""

    def __init__(self, inner, after):
        self._inner, self.after, self.calls = inner, after, 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed_batch(self, seqs, layers):
        self.calls += 1
        if self.calls > self.after:
            raise _Crash("simulated crash")
        return self._inner.embed_batch(seqs, layers)


def test_flush_after_every_batch(sample_store, bert, bert_dir):
    """--flush-seconds 0: every forward pass is committed (a crash loses only the batch in flight)."""
    counting = _CrashingAdapter(bert, after=10**9)
    run = embed(sample_store, model=str(bert_dir), where=WHERE, dtype="float32", device="cpu",
                max_tokens=400, flush_seconds=0, adapter=counting)
    assert counting.calls >= 3
    assert len(sample_store.parts(run.dataset)) == counting.calls
    committed = sample_store.scalar("SELECT sum(n_rows) FROM parts WHERE dataset = ?", [run.dataset])
    assert committed == run.n_done == len(_subset(sample_store))


def test_interrupted_run_resumed_equals_uninterrupted(_sample_store_template, tmp_path, bert, bert_dir):
    shutil.copytree(_sample_store_template, tmp_path / "a")
    shutil.copytree(_sample_store_template, tmp_path / "b")
    kw = dict(model=str(bert_dir), where=WHERE, layers="all", dtype="float32", device="cpu", max_tokens=120,
              local_stats=True, flush_rows=3)
    with open_store(tmp_path / "a") as s:
        full = embed(s, **kw)
        ref = {la: _rows(s, full.run_id, la) for la in full.layers}
        ref_stats = load_local_stats(s, full.run_id, 2)
    with open_store(tmp_path / "b") as s:
        with pytest.raises(_Crash):
            embed(s, adapter=_CrashingAdapter(bert, after=3), **kw)
        partial = resolve_run(s, str(bert_dir))
        assert partial.status == "interrupted" and 0 < partial.n_done < full.n_done
        n_stats = sum(v.n for v in load_local_stats(s, partial.run_id, 2).values())
        assert n_stats == partial.n_residues        # statistics match the registered parts
        with pytest.raises(_Crash):                 # a second crash, later
            embed(s, adapter=_CrashingAdapter(bert, after=1), **kw)
        resumed = embed(s, **kw)
        assert resumed.run_id == partial.run_id and resumed.status == "done"
        assert resumed.n_done == full.n_done and resumed.n_residues == full.n_residues
        assert resumed.run_id == full.run_id        # same configuration, same key
        for la in full.layers:
            table = pq.read_table(s.parts(resumed.dataset), filters=[("layer", "=", la)])
            accs = table.column("accession").to_pylist()
            assert len(accs) == len(set(accs)) == full.n_done      # no duplicates
            got = _rows(s, resumed.run_id, la)
            assert sorted(got) == sorted(ref[la])
            for k in got:
                np.testing.assert_allclose(got[k], ref[la][k], atol=2e-5)
        stats = load_local_stats(s, resumed.run_id, 2)
        assert sorted(stats) == sorted(ref_stats)
        for aa in stats:
            assert stats[aa].n == ref_stats[aa].n
            np.testing.assert_allclose(stats[aa].sum, ref_stats[aa].sum, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(stats[aa].sum_outer, ref_stats[aa].sum_outer, rtol=1e-5, atol=1e-3)


def test_local_stats_equal_manual_per_residue_type(sample_store, bert, bert_dir):
    where = "length BETWEEN 20 AND 35"
    seqs = _subset(sample_store, where)
    run = embed(sample_store, model=str(bert_dir), where=where, layers="1,2", dtype="float32", device="cpu",
                local_stats=True, store_local=True)
    bert.set_dtype("float32")
    for layer in (1, 2):
        manual: dict[str, SufficientStats] = {}
        for s in seqs.values():
            R = bert.embed_batch([s], [layer]).residues[0][layer]
            for aa in set(s):
                idx = [i for i, c in enumerate(s) if c == aa]
                manual.setdefault(aa, SufficientStats.empty(32)).update(R[idx])
        got = load_local_stats(sample_store, run.run_id, layer)
        assert sorted(got) == sorted(manual)
        for aa in manual:
            assert got[aa].n == manual[aa].n
            np.testing.assert_allclose(got[aa].sum, manual[aa].sum, atol=1e-3)
            np.testing.assert_allclose(got[aa].sum_outer, manual[aa].sum_outer, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(got[aa].sum_unit, manual[aa].sum_unit, atol=1e-3)
    # per-residue vectors stored: one row per residue and layer, position order kept
    n = sample_store.scalar("SELECT count(*) FROM local_embeddings WHERE run_id = ?", [run.run_id])
    assert n == 2 * sum(map(len, seqs.values()))
    acc = sorted(seqs)[0]
    rows = sample_store.sql("SELECT position, residue, embedding FROM local_embeddings WHERE accession = ? "
                            "AND layer = 2 ORDER BY position", [acc]).to_pylist()
    assert "".join(r["residue"] for r in rows) == seqs[acc]
    R = bert.embed_batch([seqs[acc]], [2]).residues[0][2]
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), R, atol=2e-5)
    # stats requested later for proteins embedded without them: re-processed, not re-written
    wider = "length BETWEEN 20 AND 40"
    parts_before = len(sample_store.parts(run.dataset))
    plain = embed(sample_store, model=str(bert_dir), where=wider, layers="1,2", dtype="float32", device="cpu")
    again = embed(sample_store, model=str(bert_dir), where=wider, layers="1,2", dtype="float32", device="cpu",
                  local_stats=True)
    assert again.n_done == plain.n_done == len(_subset(sample_store, wider))
    assert len(sample_store.parts(run.dataset)) == parts_before + 1
    total = sum(v.n for v in load_local_stats(sample_store, run.run_id, 2).values())
    assert total == again.n_residues


@pytest.mark.parametrize("policy", ["truncate", "chunk", "skip"])
def test_length_policies_recorded(sample_store, bert, bert_dir, policy):
    where = "length BETWEEN 40 AND 60"
    seqs = _subset(sample_store, where)
    L = 50
    long_ = {a for a, s in seqs.items() if len(s) > L}
    assert long_ and len(long_) < len(seqs)
    run = embed(sample_store, model=str(bert_dir), where=where, dtype="float32", device="cpu", max_length=L,
                long=policy, chunk_overlap=10)
    assert run.length_policy == policy and run.max_length == L
    status = {r["accession"]: r for r in sample_store.sql(
        "SELECT * FROM run_proteins WHERE run_id = ?", [run.run_id]).to_pylist()}
    assert sorted(status) == sorted(seqs)
    got = _rows(sample_store, run.run_id, 2)
    bert.set_dtype("float32")
    for acc, s in seqs.items():
        st = status[acc]
        if acc not in long_:
            assert st["status"] == "done" and st["n_residues"] == len(s)
            continue
        assert st["status"] == {"truncate": "truncated", "chunk": "chunked", "skip": "skipped"}[policy]
        assert str(len(s)) in st["reason"] and st["length"] == len(s)
        if policy == "skip":
            assert acc not in got
        elif policy == "truncate":
            assert st["n_residues"] == L
            ref = bert.embed_batch([s[:L]], [2]).residues[0][2].mean(0)
            np.testing.assert_allclose(got[acc], ref, atol=2e-5)
        else:
            assert st["n_residues"] == len(s)
            starts = chunk_windows(len(s), L, 10)
            acc_v, cnt = np.zeros((len(s), 32)), np.zeros(len(s))
            for a in starts:
                R = bert.embed_batch([s[a:a + L]], [2]).residues[0][2]
                acc_v[a:a + L] += R
                cnt[a:a + L] += 1
            np.testing.assert_allclose(got[acc], (acc_v / cnt[:, None]).mean(0), atol=2e-5)
    counts = {"truncate": run.n_truncated, "chunk": run.n_chunked, "skip": run.n_skipped}
    assert counts[policy] == len(long_)
    # on-the-fly queries (neighbours) go through the same embedder with the run's settings
    queries = sorted(got)
    fresh = embed_sequences(run, [seqs[a] for a in queries], 2)
    np.testing.assert_allclose(fresh, np.stack([got[a] for a in queries]), atol=2e-5)
    if policy == "skip":
        with pytest.raises(InputError, match="skips long proteins"):
            embed_sequences(run, [seqs[sorted(long_)[0]]], 2)
    assert run.n_done == len(seqs) - (len(long_) if policy == "skip" else 0)


def test_chunk_windows():
    assert chunk_windows(10, 20, 5) == [0]
    assert chunk_windows(100, 50, 10) == [0, 40, 50]
    for n, size, ov in [(101, 50, 10), (1000, 64, 16), (65, 64, 0)]:
        w = chunk_windows(n, size, ov)
        covered = np.zeros(n, bool)
        for a in w:
            assert 0 <= a and a + size <= n
            covered[a:a + size] = True
        assert covered.all()


class _OomAdapter:
    """Raises an out-of-memory error when a batch holds more than `cap` residues."""

    def __init__(self, inner, cap):
        self._inner, self.cap, self.sizes = inner, cap, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed_batch(self, seqs, layers):
        if sum(map(len, seqs)) > self.cap:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.sizes.append(len(seqs))
        return self._inner.embed_batch(seqs, layers)


def test_oom_halves_batch_and_records_failures(sample_store, bert, bert_dir):
    seqs = _subset(sample_store)
    cap = 40
    fake = _OomAdapter(bert, cap)
    run = embed(sample_store, model="tiny-oom", adapter=fake, where=WHERE, dtype="float32", max_tokens=4000)
    too_long = {a for a, s in seqs.items() if len(s) > cap}
    assert too_long and 1 in fake.sizes and max(fake.sizes) > 1
    assert run.n_failed == len(too_long) and run.n_done == len(seqs) - len(too_long)
    failed = sample_store.sql("SELECT accession, reason FROM run_proteins WHERE run_id = ? AND status = 'failed'",
                              [run.run_id]).to_pylist()
    assert {r["accession"] for r in failed} == too_long
    assert all("out of memory" in r["reason"] for r in failed)
    got = _rows(sample_store, run.run_id, 2)
    ref = _reference(bert, {a: s for a, s in seqs.items() if a not in too_long}, 2)
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=2e-5)
    # failed proteins are retried: failing again leaves the counts as they were (added per commit,
    # never recounted), succeeding moves them from failed to done
    still = embed(sample_store, model="tiny-oom", adapter=_OomAdapter(bert, cap), where=WHERE, dtype="float32",
                  max_tokens=4000)
    assert still.n_failed == len(too_long) and still.n_done == len(seqs) - len(too_long)
    again = embed(sample_store, model="tiny-oom", adapter=bert, where=WHERE, dtype="float32")
    assert again.run_id == run.run_id and again.n_failed == 0 and again.n_done == len(seqs)


def test_dtype_auto_records_parity(sample_store, bert_dir):
    run = embed(sample_store, model=str(bert_dir), where="length BETWEEN 20 AND 30", dtype="auto", device="cpu")
    assert run.dtype_requested == "auto"
    if run.parity_cosine is not None:
        assert run.dtype == ("bfloat16" if run.parity_cosine >= 0.999 else "float32")
    else:
        assert run.dtype == "float32"


def test_different_dims_union_view_and_xlnet(sample_store, bert_dir, xlnet_dir, tmp_path):
    where = "length BETWEEN 20 AND 30"
    a = embed(sample_store, model=str(bert_dir), where=where, dtype="float32", device="cpu")
    wide = tiny_models.build("bert", tmp_path / "wide", hidden=48, heads=2)
    b = embed(sample_store, model=str(wide), where=where, dtype="float32", device="cpu")
    x = embed(sample_store, model=str(xlnet_dir), where=where, dtype="float32", device="cpu", max_tokens=100)
    n = len(_subset(sample_store, where))
    per = sample_store.sql("SELECT run_id, count(*) n, min(len(embedding)) d FROM embeddings GROUP BY 1 "
                           "ORDER BY 1").to_pylist()
    assert {(r["run_id"], r["n"], r["d"]) for r in per} == {(a.run_id, n, 32), (b.run_id, n, 48), (x.run_id, n, 32)}
    v = f"embeddings_{b.run_id.replace('-', '_')}"
    assert sample_store.scalar(f"SELECT DISTINCT typeof(embedding) FROM {v}") == "FLOAT[48]"
    # XLNet (left padding) through the whole pipeline equals its per-sequence output
    xl = load_model(str(xlnet_dir))
    got = _rows(sample_store, x.run_id, 2)
    ref = _reference(xl, _subset(sample_store, where), 2)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], atol=2e-5)


def test_bad_arguments(sample_store, bert_dir):
    with pytest.raises(InputError, match="length policy .wrap."):
        embed(sample_store, model=str(bert_dir), long="wrap")
    with pytest.raises(InputError, match="max length 10000"):
        embed(sample_store, model=str(bert_dir), max_length=10_000, device="cpu")
    with pytest.raises(InputError, match="layer"):
        embed(sample_store, model=str(bert_dir), layers="5", device="cpu")
    assert sample_store.scalar("SELECT count(*) FROM runs") == 0


def test_cli_models_embed_runs(sample_store, bert_dir, invoke, monkeypatch, tmp_path):
    root = sample_store.root
    sample_store.close()
    r = invoke("models", "--json")
    assert r.exit_code == 0
    aliases = {m["alias"]: m for m in json.loads(r.stdout)}
    assert aliases["prot_bert"]["source"] == "Rostlab/prot_bert" and "protiso-mini" in aliases
    r = invoke("--store", root, "embed", "--model", bert_dir, "--where", "length BETWEEN 20 AND 30",
               "--dtype", "float32", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)[0]
    with open_store(root, read_only=True) as s:
        assert run["n_done"] == len(_subset(s, "length BETWEEN 20 AND 30")) > 0
    r = invoke("--store", root, "runs", "--json")
    assert [x["run_id"] for x in json.loads(r.stdout)] == [run["run_id"]]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    r = invoke("--store", root, "embed", "--model", "no-such-org/missing-model", "--offline")
    assert r.exit_code == 1 and "no-such-org/missing-model" in r.output and "(option --model)" in r.output
    r = invoke("--store", root, "embed", "--model", bert_dir, "--where", "lenght < 3")
    assert r.exit_code == 1 and "lenght" in r.output


_KILL_SCRIPT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from protiso import open_store
from protiso.embedding import embed
seen = [0]
def progress(p):
    if p.n_processed >= int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)   # a hard crash: no cleanup, no flush
with open_store(sys.argv[1]) as s:
    embed(s, model=sys.argv[2], where=%r, layers="all", dtype="float32", device="cpu", max_tokens=120,
          local_stats=True, flush_rows=4, progress=progress)
"""


def test_killed_process_leaves_consistent_store_and_resumes(_sample_store_template, tmp_path, bert_dir):
    import subprocess
    import sys

    shutil.copytree(_sample_store_template, tmp_path / "a")
    shutil.copytree(_sample_store_template, tmp_path / "b")
    kw = dict(model=str(bert_dir), where=WHERE, layers="all", dtype="float32", device="cpu", max_tokens=120,
              local_stats=True)
    with open_store(tmp_path / "a") as s:
        full = embed(s, **kw)
        ref = _rows(s, full.run_id, 1)
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT % WHERE, str(tmp_path / "b"), str(bert_dir), "15"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    with open_store(tmp_path / "b") as s:
        run = resolve_run(s, full.run_id)
        assert run.status == "interrupted" and 0 < run.n_done < full.n_done   # it died mid-run
        # the catalog lists only parts that exist; statuses, parts and statistics agree
        listed = s.sql("SELECT path FROM parts WHERE dataset = ?", [run.dataset]).column("path").to_pylist()
        assert listed and all((s.root / p).exists() for p in listed)
        on_disk = {p.name for p in (s.root / "data" / run.dataset).glob("*.parquet")}
        assert on_disk == {p.split("/")[-1] for p in listed}
        table = pq.read_table([s.root / p for p in listed])
        assert table.num_rows == 3 * run.n_done
        assert s.scalar("SELECT count(*) FROM run_proteins WHERE run_id = ?", [run.run_id]) == run.n_done
        assert sum(v.n for v in load_local_stats(s, run.run_id, 2).values()) == run.n_residues
        resumed = embed(s, **kw)
        assert resumed.n_done == full.n_done
        stats_files = {p.relative_to(s.root).as_posix()
                       for p in (s.root / "data" / "localstats" / run.run_id).glob("*.npz")}
        assert stats_files == set(s.sql("SELECT path FROM local_stats WHERE run_id = ?",
                                         [run.run_id]).column("path").to_pylist())
        got = _rows(s, resumed.run_id, 1)
        accs = pq.read_table(s.parts(resumed.dataset), filters=[("layer", "=", 1)]).column("accession").to_pylist()
        assert len(accs) == len(set(accs)) == full.n_done
        assert sorted(got) == sorted(ref)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], atol=2e-5)


def test_padding_never_exceeds_position_limit():
    """protiso-mini has 514 positions: a 511/512-residue protein must not be padded to 520."""
    adapter = load_model("protiso-mini", LoadOptions(device="cpu", dtype="float32"))
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in (512, 511, 40)]
    together = adapter.embed_batch(seqs, [adapter.num_layers]).residues
    for seq, batched in zip(seqs, together):
        alone = adapter.embed_batch([seq], [adapter.num_layers]).residues[0]
        layer = adapter.num_layers
        assert batched[layer].shape == (len(seq), adapter.dim)
        np.testing.assert_allclose(batched[layer], alone[layer], atol=1e-4)


def test_statuses_from_before_migration_012_are_kept_and_moved_into_status_parts(sample_store, bert_dir):
    """A store whose statuses are catalog rows (schema 011): after the upgrade `run_proteins` shows
    them, resuming embeds nothing twice, and the first write moves them into a status part."""
    run = embed(sample_store, model=str(bert_dir), where=WHERE, dtype="float32", device="cpu", max_tokens=300)
    before = sorted(sample_store.execute("SELECT * FROM run_proteins").fetchall())
    n_parts = len(sample_store.parts(run.dataset))
    root = sample_store.root
    sample_store.close()
    con = duckdb.connect(str(root / "protiso.duckdb"))        # back to schema 011: rows in run_proteins
    con.execute("ALTER TABLE run_proteins_legacy RENAME TO run_proteins")
    con.register("old_rows", pa.Table.from_pylist([dict(zip(
        ("run_id", "accession", "status", "length", "n_residues", "reason", "in_stats", "local_stored"), r))
        for r in before]))
    con.execute("INSERT INTO run_proteins SELECT * FROM old_rows")
    status_files = [p for (p,) in con.execute("SELECT path FROM parts WHERE dataset LIKE 'status/%'").fetchall()]
    con.execute("DELETE FROM parts WHERE dataset LIKE 'status/%'")
    con.execute("ALTER TABLE runs DROP COLUMN status_seq")
    con.execute("DELETE FROM schema_migrations WHERE version = 12")
    con.close()
    for p in status_files:
        (root / p).unlink()
    with open_store(root) as s:                                 # migration 012
        assert s.scalar("SELECT count(*) FROM run_proteins_legacy") == len(before)
        assert sorted(s.execute("SELECT * FROM run_proteins").fetchall()) == before
        again = embed(s, model=str(bert_dir), where=WHERE, dtype="float32", device="cpu", max_tokens=300)
        assert again.run_id == run.run_id and again.n_done == run.n_done
        assert len(s.parts(run.dataset)) == n_parts                       # nothing embedded twice
        assert s.scalar("SELECT count(*) FROM run_proteins_legacy") == 0
        assert len(s.parts(f"status/{run.run_id}")) == 1
        assert sorted(s.execute("SELECT * FROM run_proteins").fetchall()) == before
