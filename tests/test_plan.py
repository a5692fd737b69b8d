"""Planning an embedding job (protiso.embedding.plan): the resume rule, pages read by row id,
windows sorted by length, Ray tasks cut where the embedder starts a batch, plan-only mode, and
planning cost that grows linearly (10 M proteins: set PROTISO_TEST_10M=1)."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

import tiny_models
from protiso import open_store
from protiso.embedding import plan
from protiso.embedding.compute import chunk_windows, pack, piece_widths
from protiso.query import as_subset
from protiso.runs import status as run_status


def _status_rows(rows) -> pa.Table:
    """A status part's columns for (accession, status, in_stats) rows (in_stats False: unchanged)."""
    n = len(rows)
    return pa.table({"accession": [r[0] for r in rows], "status": pa.array([r[1] for r in rows], pa.string()),
                     "length": pa.nulls(n, pa.int32()), "n_residues": pa.nulls(n, pa.int32()),
                     "reason": pa.nulls(n, pa.string()), "in_stats": [r[2] or None for r in rows],
                     "local_stored": pa.nulls(n, pa.bool_())})


def _walk(store, run_id, where=None, local_stats=False, max_length=10_000, long="truncate", limit=None,
          window=7):
    with store.job():
        todo = plan.select_todo(store, run_id, as_subset(store, where), local_stats, False, limit)
        windows = list(plan.plan_windows(todo, max_length, long, local_stats, False, window))
    return todo, windows


def test_plan_follows_the_resume_rule_in_sorted_pages(sample_store, monkeypatch):
    s = sample_store
    accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins ORDER BY rowid LIMIT 40").fetchall()]
    s.con.execute("INSERT INTO runs (run_id, run_key, model, dim, layers, pooling, dtype, length_policy, status) "
                  "VALUES ('r', 'k', 'm', 4, [1], 'mean', 'float32', 'truncate', 'done')")
    # statuses in two status parts and one row kept from before migration 012: the latest row of
    # each protein counts, a NULL status (a statistics-only pass) keeps the status before it
    first = [(accs[i], "done", False) for i in range(10)] + [(accs[i], "failed", False) for i in range(10, 16)] + \
        [(accs[i], "truncated", False) for i in range(16, 20)] + [(accs[i], "skipped", False) for i in range(20, 25)]
    second = [(accs[i], None, True) for i in range(10)] + [(accs[15], "truncated", False)]
    s.con.execute("INSERT INTO run_proteins_legacy (run_id, accession, status, in_stats) VALUES ('r', ?, 'done', true)",
                  [accs[30]])
    with s.transaction():
        for part in (first, second):
            run_status.append(s, "r", _status_rows(part))
    rows = [(accs[i], "done", True) for i in range(10)] + [(accs[i], "failed", False) for i in range(10, 15)] + \
        [(accs[i], "truncated", False) for i in range(15, 20)] + [(accs[i], "skipped", False) for i in range(20, 25)] + \
        [(accs[30], "done", True)]
    s.refresh_views()
    assert sorted(s.execute("SELECT accession, status, in_stats FROM run_proteins WHERE run_id = 'r'").fetchall()) == \
        sorted(rows)
    monkeypatch.setattr(plan, "PAGE_ROWS", 300)               # several pages
    monkeypatch.setattr(plan, "FIRST_PAGE", 1)
    every = {a: (n, q) for a, n, q in s.con.execute("SELECT accession, length, sequence FROM proteins").fetchall()}
    st = {a: (status, in_stats) for a, status, in_stats in rows}
    for local_stats in (False, True):
        todo, windows = _walk(s, "r", local_stats=local_stats)
        want = {a for a in every if a not in st or st[a][0] == "failed"
                or (local_stats and st[a][0] in ("done", "truncated") and not st[a][1])}
        got = [p for w in windows for p in w.proteins()]
        assert {p.accession for p in got} == want and len(got) == len(want) == todo.n_total
        assert todo.res_total == sum(every[a][0] for a in want)
        assert len(todo.pages) == -(-len(want) // 300) > 3
        assert all(p.sequence == every[p.accession][1] and p.length == every[p.accession][0] for p in got)
        assert all(p.write == (st.get(p.accession, ("", 0))[0] not in ("done", "truncated")) for p in got)
        assert all(p.stats == (local_stats and not st.get(p.accession, ("", False))[1]) for p in got)
        assert all(p.retry == (st.get(p.accession, ("",))[0] == "failed") for p in got)
        for w in windows:         # each window is in (length, accession) order
            keys = [(p.length, p.accession) for p in w.proteins()]
            assert keys == sorted(keys) and len(keys) <= 7
    # limit: the shortest of the whole selection; a filter reads scattered rows by row list
    todo, windows = _walk(s, "r", limit=25)
    lengths = sorted(every[a][0] for a in every if a not in st or st[a][0] == "failed")
    assert sorted(p.length for w in windows for p in w.proteins()) == lengths[:25]
    todo, windows = _walk(s, "r", where="length % 7 = 3 AND organism LIKE '%a%'")
    want = {a for (a,) in s.con.execute("SELECT accession FROM protein_meta WHERE length % 7 = 3 AND organism "
                                        "LIKE '%a%'").fetchall()} - {a for a, (x, _) in st.items() if x != "failed"}
    assert {p.accession for w in windows for p in w.proteins()} == want
    # the length policy: skip records new long proteins as skipped, chunk marks them
    todo, windows = _walk(s, "r", max_length=300, long="skip")
    skipped = [x for w in windows for x in w.skipped]
    assert skipped and all(x[1] == "skipped" and x[2] > 300 for x in skipped)
    assert all(p.length <= 300 for w in windows for p in w.proteins())
    todo, windows = _walk(s, "r", max_length=300, long="chunk")
    assert {p.status for w in windows for p in w.proteins() if p.length > 300} == {"chunked"}


def _batches(widths, budget):
    return [(a, b) for a, b in pack(widths, lambda: budget)]


def test_tasks_start_where_the_embedder_starts_a_batch():
    rng = np.random.default_rng(0)
    max_length, overlap, budget = 64, 16, 700
    lengths = np.sort(rng.integers(5, 200, 400))
    status = np.where(lengths > max_length, "chunked", "done")
    widths, owner = piece_widths(lengths, status == "chunked", max_length, overlap, 2)
    assert len(widths) == sum(len(chunk_windows(int(n), max_length, overlap)) if n > max_length else 1
                              for n in lengths)
    whole = _batches(widths, budget)
    cuts, n_batches = plan.cut_tasks(lengths, status, 20, max_length, overlap, budget)
    assert n_batches == len(whole) and cuts[0][0] == 0 and cuts[-1][1] == len(lengths) and len(cuts) > 5
    first_piece = np.searchsorted(owner, np.arange(len(lengths) + 1))
    per_task = []
    for a, b in cuts:             # an actor embedding proteins [a, b) alone forms the same batches
        assert b - a >= 20 or b == len(lengths)
        p0 = first_piece[a]
        per_task += [(p0 + x, p0 + y) for x, y in _batches(widths[first_piece[a]:first_piece[b]], budget)]
    assert per_task == whole
    # pages: at most so many proteins and residues, the first one smaller (the first task starts sooner)
    pages = plan.cut_pages(np.array([10] * 95 + [500] + [10] * 904), 100, 400, first=4)
    assert pages[:5] == [(0, 10), (10, 50), (50, 90), (90, 95), (95, 96)] and pages[-1][1] == 1000
    assert all(b - a <= 100 for a, b in pages) and sum(b - a for a, b in pages) == 1000
    # automatic task size: every actor gets work
    for n, workers in ((33, 2), (5000, 8), (10_000_000, 32)):
        assert -(-n // plan.task_size(n, workers)) >= min(n, workers)


def test_plan_only_mode_walks_without_writing(sample_store, invoke, tmp_path):
    model = tiny_models.build("bert", tmp_path / "bert", max_pos=130)
    n = sample_store.scalar("SELECT count(*) FROM protein_meta WHERE length < 200")
    sample_store.close()
    res = invoke("--store", sample_store.root, "embed", "--model", model, "--dtype", "float32", "--device", "cpu",
                 "--where", "length < 200", "--plan-only", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)[0]
    assert report["proteins"] == report["to_embed"] == n and report["windows"] >= 1 and report["batches"] >= 1
    with open_store(sample_store.root) as s:
        assert s.scalar("SELECT count(*) FROM runs") == 0          # nothing written
