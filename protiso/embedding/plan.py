"""Planning an embedding job: which proteins of the selection still need work (the resume rule)
and the windows of them, with sequences, that the engines consume.

Planning streams. One query reads the keys of the to-do set (row id, length, previous state:
15 bytes a protein, no sequences); then pages of at most PAGE_ROWS proteins or PAGE_RESIDUES
residues are read by row-id range (the scan skips the other row groups), each sorted by length
and cut into windows. So planning costs one join plus one scan of the sequences, linear in the
number of proteins; the driver holds the keys and one page (DuckDB capped at PLAN_MEMORY while
it reads them); the first window is ready after the keys and one small first page; and the
catalog is held only while a page is read (`store.release()` after each). Proteins are
embedded in store order, page by page, shortest first within a page; `limit` takes the shortest
proteins of the whole selection.
"""
from __future__ import annotations

import contextlib
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import duckdb
import numpy as np
import pyarrow as pa

from protiso.embedding.compute import N_SPECIAL, Protein, pack, piece_widths
from protiso.errors import ProtisoError
from protiso.query import Subset
from protiso.runs.status import has_statuses, latest_sql
from protiso.runs.catalog import Q
from protiso.store import Store, queries

EQ = queries("embedding")
PAGE_ROWS = 1 << 19           # proteins per page read from the catalog
PAGE_RESIDUES = 1 << 27       # residues (bytes of sequence) per page
FIRST_PAGE = 16               # the first page is this many times smaller: the first task starts sooner
PLAN_MEMORY = "1GB"           # DuckDB's memory while planning (it spills beyond)
TASKS_PER_WORKER = 4          # Ray: automatic task size gives each actor about this many tasks
WINDOW_SCHEMA = pa.schema([("accession", pa.string()), ("sequence", pa.string()), ("length", pa.int32()),
                           ("status", pa.string()), ("write", pa.bool_()), ("stats", pa.bool_()),
                           ("local", pa.bool_()), ("retry", pa.bool_())])


def probe_sequences(store: Store, subset: Subset) -> list[str]:
    """A few proteins of the selection for the dtype auto parity probe."""
    return [s for (s,) in store.execute(Q.probe_sequences.replace("$subset", subset.accessions_sql())).fetchall()]


@dataclass
class TodoList:
    """The keys of the proteins a job still has to do, in store (row id) order."""

    store: Store
    rows: np.ndarray              # int64 row ids, ascending
    lengths: np.ndarray           # int32
    embedded: np.ndarray          # bool: has a vector already (only statistics / local vectors missing)
    in_stats: np.ndarray
    local_stored: np.ndarray
    failed: np.ndarray            # bool: failed before (retried now)
    seconds: float = 0.0
    pages: list[tuple[int, int]] = field(default_factory=list)   # index ranges into the arrays

    @property
    def n_total(self) -> int:
        return int(len(self.rows))

    @property
    def res_total(self) -> int:
        return int(self.lengths.sum(dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rows, self.lengths, self.embedded, self.in_stats, self.local_stored,
                                      self.failed))

    def remove(self) -> None:
        """Drop the keys (the plan holds no files)."""
        empty = np.zeros(0, bool)
        self.rows, self.lengths = np.zeros(0, np.int64), np.zeros(0, np.int32)
        self.embedded = self.in_stats = self.local_stored = self.failed = empty
        self.pages = []


def select_todo(store: Store, run, subset: Subset, local_stats: bool, store_local: bool,
                limit: int | None) -> TodoList:
    """The resume rule: the selected proteins not yet embedded (or failed, or missing from the
    statistics / stored local vectors that are asked for), as keys in store order. `run`: a Run
    or a run id (one with no statuses selects everything). `limit`: the shortest `limit`."""
    t0 = time.perf_counter()
    selected = "true" if subset.is_all else f"p.accession IN ({subset.accessions_sql()})"
    run_id = getattr(run, "run_id", run)
    with _bounded(store):
        if run_id and has_statuses(store, run_id):
            query = EQ.todo_keys.replace("$source", latest_sql(store, run_id))
        else:
            query = EQ.todo_keys_fresh
        keys = store.sql(query.replace("$selected", selected),
                         {"local_stats": bool(local_stats), "store_local": bool(store_local)})
    cols = {name: keys.column(name).to_numpy(zero_copy_only=False) for name in keys.column_names}
    del keys
    order = np.argsort(cols["row"], kind="stable")
    if limit is not None and limit < len(order):
        shortest = np.lexsort((cols["row"][order], cols["length"][order]))[:max(0, int(limit))]
        order = order[np.sort(shortest)]
    todo = TodoList(store, cols["row"][order].astype(np.int64), cols["length"][order].astype(np.int32),
                    cols["embedded"][order], cols["in_stats"][order], cols["local_stored"][order],
                    cols["failed"][order])
    todo.pages = cut_pages(todo.lengths, PAGE_ROWS, PAGE_RESIDUES, FIRST_PAGE)
    todo.seconds = time.perf_counter() - t0
    return todo


def cut_pages(lengths: np.ndarray, max_rows: int, max_residues: int, first: int = 1) -> list[tuple[int, int]]:
    """Consecutive index ranges of at most `max_rows` proteins and `max_residues` residues (a
    longer protein is a page of its own); the first page `first` times smaller."""
    n = len(lengths)
    cum = np.cumsum(lengths, dtype=np.int64)
    pages, start = [], 0
    while start < n:
        before = int(cum[start - 1]) if start else 0
        k = max(1, first) if not pages else 1
        end = min(n, start + max(1, max_rows // k),
                  int(np.searchsorted(cum, before + max(1, max_residues // k), side="right")))
        end = max(end, start + 1)
        pages.append((start, end))
        start = end
    return pages


class Window:
    """One window of the plan: `table` holds the proteins to embed (WINDOW_SCHEMA, sorted by
    length, then accession), `skipped` the statuses of proteins the length policy skips, `first`
    the window's offset in the plan. Iterates as (first, proteins, skipped)."""

    __slots__ = ("first", "table", "skipped")

    def __init__(self, first: int, table: pa.Table, skipped: list[tuple]):
        self.first, self.table, self.skipped = first, table, skipped

    def proteins(self, lo: int = 0, hi: int | None = None) -> list[Protein]:
        t = self.table.slice(lo, (hi if hi is not None else self.table.num_rows) - lo)
        cols = [t.column(c).to_pylist() for c in WINDOW_SCHEMA.names]
        return [Protein(a, s, n, st, write=w, stats=x, local=lo_, retry=r) for a, s, n, st, w, x, lo_, r in zip(*cols)]

    def __iter__(self):
        return iter((self.first, self.proteins(), self.skipped))


@contextlib.contextmanager
def _bounded(store: Store):
    """Planning reads run with DuckDB's memory capped at PLAN_MEMORY (a large resume join spills
    to disk instead of growing the driver); the limit is restored after."""
    con = store.con
    try:
        before = store.memory_limit()
        store.set_memory_limit(PLAN_MEMORY)
    except duckdb.Error:       # a locked-down (read-only) connection keeps its settings
        before = None
    try:
        yield con
    finally:
        if before is not None and store.con is con:
            store.restore_memory_limit(before)


def _read_page(store: Store, rows: np.ndarray) -> pa.Table:
    """row, accession, sequence, length of the given row ids (ascending), shortest first."""
    lo, hi = int(rows[0]), int(rows[-1])
    with _bounded(store) as con:
        if hi - lo + 1 == len(rows):
            table = store.sql(EQ.page_range, {"lo": lo, "hi": hi})
        else:
            con.register("_protiso_page_rows", pa.table({"row": pa.array(rows, pa.int64())}))
            try:
                table = store.sql(EQ.page_rows, {"lo": lo, "hi": hi})
            finally:
                con.unregister("_protiso_page_rows")
    store.release()            # hold the catalog only while reading
    if table.num_rows != len(rows):
        raise ProtisoError(f"the proteins table changed while planning ({table.num_rows:,} of {len(rows):,} "
                           "proteins of a page found); run the job again")
    return table


def plan_windows(todo: TodoList, max_length: int, long: str, local_stats: bool, store_local: bool,
                 window: int) -> Iterator[Window]:
    """Walk the to-do list page by page in windows of `window` proteins (see `Window`)."""
    for p0, p1 in todo.pages:
        page = _read_page(todo.store, todo.rows[p0:p1])
        at = p0 + np.searchsorted(todo.rows[p0:p1], page.column("row").to_numpy())
        length = page.column("length").to_numpy()
        if not np.array_equal(length, todo.lengths[at]):
            raise ProtisoError("the proteins table changed while planning (row ids moved); run the job again")
        too_long = length > max_length
        embedded = todo.embedded[at]
        status = np.where(too_long, "truncated" if long == "truncate" else "chunked", "done")
        columns = {"accession": page.column("accession"), "sequence": page.column("sequence"),
                   "length": pa.array(length, pa.int32()), "status": pa.array(status, pa.string()),
                   "write": pa.array(~embedded), "stats": pa.array(bool(local_stats) & ~todo.in_stats[at]),
                   "local": pa.array(bool(store_local) & ~todo.local_stored[at]), "retry": pa.array(todo.failed[at])}
        full = pa.table(columns, schema=WINDOW_SCHEMA)
        drop = too_long if long == "skip" else None
        del page, columns
        for lo in range(0, full.num_rows, window):
            w = full.slice(lo, window)
            skipped = []
            if drop is not None and drop[lo:lo + window].any():
                d = drop[lo:lo + window]
                dropped = w.filter(pa.array(d & ~embedded[lo:lo + window]))   # embedded ones keep theirs
                for acc, n in zip(dropped.column("accession").to_pylist(), dropped.column("length").to_pylist()):
                    skipped.append((acc, "skipped", n, 0,
                                    f"{n} residues > max length {max_length} (length policy skip)", False, False))
                w = w.filter(pa.array(~d))
            yield Window(p0 + lo, w, skipped)


def cut_tasks(lengths: np.ndarray, statuses, task_rows: int, max_length: int, overlap: int,
              max_tokens: int, n_special: int = N_SPECIAL) -> tuple[list[tuple[int, int]], int]:
    """Cut a window's proteins (length-sorted) into tasks of about `task_rows` proteins that start
    where the embedder starts a batch, so that an actor embedding a task forms exactly the
    batches the local engine forms: ([(start, end)], number of batches)."""
    lengths = np.asarray(lengths, np.int64)
    chunked = np.asarray(statuses) == "chunked" if len(lengths) else np.zeros(0, bool)
    widths, owner = piece_widths(lengths, chunked, max_length, overlap, n_special)
    starts = [lo for lo, _ in pack(widths, lambda: max_tokens)]
    clean = [int(owner[lo]) for lo in starts if lo == 0 or owner[lo] != owner[lo - 1]]
    cuts, start = [], 0
    for b in clean[1:]:
        if b - start >= task_rows:
            cuts.append((start, b))
            start = b
    if len(lengths):
        cuts.append((start, len(lengths)))
    return cuts, len(starts)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it does not count the parent
    a subprocess was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class PlanReport:
    """What `embed(..., plan_only=True)` walked: sizes, timings and the driver's peak memory."""

    proteins: int
    residues: int
    to_embed: int
    skipped: int
    truncated: int
    chunked: int
    pages: int
    windows: int
    batches: int
    tasks: int | None
    task_rows: int | None
    keys_mb: float
    select_seconds: float
    first_window_seconds: float | None
    seconds: float
    peak_rss_mb: float

    def line(self) -> str:
        tasks = f", {self.tasks:,} tasks of <= {self.task_rows} proteins" if self.tasks is not None else ""
        first = "-" if self.first_window_seconds is None else f"{self.first_window_seconds:.2f} s"
        return (f"plan: {self.proteins:,} proteins ({self.residues:,} residues) to do: {self.to_embed:,} to embed "
                f"({self.truncated:,} truncated, {self.chunked:,} chunked), {self.skipped:,} skipped; "
                f"{self.pages:,} pages, {self.windows:,} windows, {self.batches:,} batches{tasks}. "
                f"Keys {self.select_seconds:.2f} s ({self.keys_mb:.0f} MB), first window {first}, "
                f"all {self.seconds:.2f} s; peak memory {self.peak_rss_mb:,.0f} MB")


def task_size(n_total: int, workers: int) -> int:
    """Proteins per Ray task when none is given: every actor gets work (about TASKS_PER_WORKER
    tasks each; a task never spans two windows, so large jobs get window-sized tasks)."""
    return max(1, math.ceil(n_total / (max(1, workers) * TASKS_PER_WORKER)))


def walk_plan(store: Store, run, subset: Subset, max_length: int, overlap: int, max_tokens: int, long: str,
              local_stats: bool, store_local: bool, limit: int | None, window: int,
              workers: int | None = None, task_rows: int | None = None) -> PlanReport:
    """Plan without embedding: select, read every page, cut windows, batches and (for `workers`
    Ray actors, or `task_rows` given) tasks as the Ray engine does; report sizes, timings and
    peak memory. `run`: a run id ('' for a new run)."""
    t0 = time.perf_counter()
    todo = select_todo(store, run, subset, local_stats, store_local, limit)
    store.release()
    if task_rows is None and workers:
        task_rows = min(window, task_size(todo.n_total, workers))
    n, res, keys_mb, pages = todo.n_total, todo.res_total, todo.nbytes / 2**20, len(todo.pages)
    counts = dict(to_embed=0, skipped=0, truncated=0, chunked=0, windows=0, batches=0, tasks=0)
    first = None
    for w in plan_windows(todo, max_length, long, local_stats, store_local, window):
        if first is None:
            first = time.perf_counter() - t0
        counts["windows"] += 1
        counts["skipped"] += len(w.skipped)
        statuses = w.table.column("status").to_numpy(zero_copy_only=False)
        counts["to_embed"] += len(statuses)
        counts["truncated"] += int((statuses == "truncated").sum())
        counts["chunked"] += int((statuses == "chunked").sum())
        cuts, batches = cut_tasks(w.table.column("length").to_numpy(), statuses, task_rows or window,
                                  max_length, overlap, max_tokens)
        counts["batches"] += batches
        counts["tasks"] += len(cuts)
    todo.remove()
    return PlanReport(n, res, counts["to_embed"], counts["skipped"], counts["truncated"], counts["chunked"],
                      pages, counts["windows"], counts["batches"], counts["tasks"] if task_rows else None,
                      task_rows, keys_mb, todo.seconds, first, time.perf_counter() - t0,
                      peak_rss_mb())
