"""The isotropy engine: one streaming pass over a run's embeddings, per group, with bootstrap.

Global level: the run's one reader (`runs.reader.layer_blocks`) streams float32 blocks of one
layer straight from the Parquet pages (a --where filter is the subset's accessions); each block
updates the running sums of its groups (`stats.Accumulator`: centred float32 products summed in
float64). The --group-by key is evaluated over protein_meta once, before the pass, into an
accession -> key map. Rows of small groups are buffered into larger products. Memory: one block
(16,384 rows), the row buffer (at most 65,536 rows) and d x d floats per group and bootstrap
replicate, plus the key map's short strings; never an n x d matrix.

What bounds a pass (516,371 x 1024 float32, 2 GB, one group, measured on the shared 2-core
machine): the float32 rank-k products, 139 ms of CPU per 16,384-row block (4.4 s), then centring
and the sums (1.3 s) and reading the pages (about 1 s). Metrics per group: one eigenvalue-only
decomposition of the d x d covariance (0.10 s of CPU at d = 1024) serves every spectrum metric;
groups run in a thread pool.

Local level: the per-residue-type SufficientStats written by `embed --local-stats`
(`protiso.runs.load_local_stats`), one row per amino acid plus the pooled residues.

Bootstrap (--bootstrap B): a Poisson bootstrap over proteins in the same pass. Every protein
gets, for each replicate b, an integer count w ~ Poisson(1) drawn from a hash of (seed,
accession, b); replicate b adds the protein w times. For large n this is the classical
resample-proteins-with-replacement bootstrap (multinomial counts are asymptotically independent
Poisson(1)), but needs no second pass and no list of proteins in memory, and a protein's
counts do not depend on batch order, filters or grouping, so results are reproducible. Cost:
memory (B + 1) d^2 floats per group and about B + 1 times the arithmetic of a plain pass.
Intervals are percentile intervals of the replicate metrics.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, Iterable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protiso._version import __version__
from protiso.errors import InputError, NotFoundError, ProtisoError, QueryError
from protiso.isotropy.metrics import DEFAULT_ZETA, IsotropyMetrics, compute_metrics, covariance, quick_metrics
from protiso.isotropy.stats import Accumulator, SufficientStats
from protiso.query import Subset, as_subset
from protiso.runs import load_local_stats, resolve_layer, resolve_run
from protiso.runs.reader import count_layer, layer_blocks
from protiso.store import Store, queries

DEFAULT_BATCH_ROWS = 16384
PASS_BLAS_THREADS = None   # BLAS threads during a pass (None: the idle cores, see _idle_cores)
Q = queries("isotropy")
MAX_STATS_BYTES = 4 << 30  # refuse group-by x bootstrap combinations needing more than this
CI_METRICS = ("isoscore", "effective_dims", "avg_cosine", "isoscore_star")
LOCAL_POOLED = None  # group_key of the pooled (all residue types) local row


class TooManyGroupsError(QueryError):
    """The statistics for the requested groups and replicates would not fit the memory bound."""


def _blas_threads(n: int):
    """Limit BLAS to n threads inside the block (no-op without threadpoolctl)."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        except ImportError:
            _BLAS = False
    return _BLAS.limit(limits=n, user_api="blas") if _BLAS else contextlib.nullcontext()


def _idle_cores() -> int:
    """BLAS threads for a pass: the cores other processes leave idle (at least one).

    Measured on the shared 2-core machine (load average about 12): a 16,384 x 1024 float32
    product took 139 ms of CPU on one thread and 209 ms on two (no faster by the clock), so a
    busy machine gets one thread; an idle one gets them all."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return cores
    return max(1, min(cores, round(cores - busy + 1)))


_BLAS = None


# ---------------------------------------------------------------------------------------------
# Poisson bootstrap counts
# ---------------------------------------------------------------------------------------------
_POISSON1_CDF = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(20)])


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scramble of uint64 values."""
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def poisson_counts(accessions: Iterable[str], seed: int, replicates: int) -> np.ndarray:
    """(n, replicates) Poisson(1) counts, a pure function of (seed, accession, replicate)."""
    key = int(seed).to_bytes(8, "little", signed=True)
    h = np.fromiter((int.from_bytes(hashlib.blake2b(a.encode(), digest_size=8, key=key).digest(), "little")
                     for a in accessions), dtype=np.uint64)
    b = np.arange(1, replicates + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        u = (_mix64(h[:, None] ^ _mix64(b)[None, :]) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(_POISSON1_CDF, u, side="right").astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Accumulation
# ---------------------------------------------------------------------------------------------
@dataclass
class GroupAccumulator:
    """Per-group running sums (plus bootstrap replicates) updated block by block.

    Rows of a group are buffered until `flush_rows` of them (or `buffer_rows` over all groups)
    are pending, so that many small groups still get large, efficient matrix products. Each
    group's sums are an `Accumulator` (float32 blocks: centred single-precision products added
    in float64); `groups` gives their SufficientStats."""

    dim: int
    bootstrap: int = 0
    seed: int = 0
    max_bytes: int = MAX_STATS_BYTES
    flush_rows: int = 2048
    buffer_rows: int = 65536
    sums: dict = field(default_factory=dict)        # key -> Accumulator
    rep_sums: dict = field(default_factory=dict)    # key -> list[Accumulator]
    _pending: dict = field(default_factory=dict)    # key -> list of (block, row indices, counts)
    _pending_rows: dict = field(default_factory=dict)

    def _bytes_per_group(self) -> int:
        # float64 d x d sums, a float32 partial d x d sum, a few d-vectors, per replicate
        return (self.bootstrap + 1) * (12 * self.dim * self.dim + 8 * (4 * self.dim + 1))

    def check_groups(self, n_groups: int) -> None:
        need = n_groups * self._bytes_per_group()
        if need > self.max_bytes:
            raise TooManyGroupsError(
                f"{n_groups} groups x {self.bootstrap + 1} statistics of dimension {self.dim} need "
                f"{need / 2**30:.1f} GiB (limit {self.max_bytes / 2**30:.1f} GiB); use a coarser "
                "grouping, a narrower filter, or fewer bootstrap replicates")

    def _group(self, key) -> Accumulator:
        acc = self.sums.get(key)
        if acc is None:
            self.check_groups(len(self.sums) + 1)
            acc = self.sums[key] = Accumulator(self.dim)
            self.rep_sums[key] = [Accumulator(self.dim) for _ in range(self.bootstrap)]
        return acc

    @property
    def groups(self) -> dict:
        """key -> SufficientStats of the rows added so far (after `finish`); each group's float32
        sums are folded into its statistics in place, so this costs no second d x d per group."""
        return {key: acc.stats() for key, acc in self.sums.items()}

    @property
    def replicates(self) -> dict:
        """key -> SufficientStats of each bootstrap replicate."""
        return {key: [r.stats() for r in reps] for key, reps in self.rep_sums.items()}

    def add(self, X: np.ndarray, keys: list | None = None, accessions: list[str] | None = None,
            consume: bool = False) -> None:
        """Add rows X (n, d); keys[i] is row i's group (None: one group); accessions for bootstrap.
        `consume`: X is the caller's to discard (it may be overwritten)."""
        if X.shape[0] == 0:
            return
        counts = None
        if self.bootstrap:
            if accessions is None:
                raise ValueError("bootstrap needs the accession of every row")
            counts = poisson_counts(accessions, self.seed, self.bootstrap)
        if keys is None:
            self._update(None, X, counts, consume)
            return
        codes: dict = {}
        idx = np.fromiter((codes.setdefault(k, len(codes)) for k in keys), dtype=np.int64, count=len(keys))
        self._add_coded(X, idx, list(codes), counts, consume)

    def add_coded(self, X: np.ndarray, codes: np.ndarray, keys: list, accessions: list[str] | None = None,
                  consume: bool = False) -> None:
        """As `add`, with row i's group given as keys[codes[i]] (no per-row Python)."""
        if X.shape[0] == 0:
            return
        if self.bootstrap and accessions is None:
            raise ValueError("bootstrap needs the accession of every row")
        counts = poisson_counts(accessions, self.seed, self.bootstrap) if self.bootstrap else None
        self._add_coded(X, codes, keys, counts, consume)

    def _add_coded(self, X, idx: np.ndarray, keys: list, counts, consume: bool) -> None:
        if idx.min() == idx.max():
            self._update(keys[idx[0]], X, counts, consume)
            return
        if not consume:
            X = X.copy()   # pending rows refer to X until their group is flushed
        order = np.argsort(idx, kind="stable")
        sorted_idx = idx[order]
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(sorted_idx)) + 1, [len(order)]))
        for start, stop in zip(bounds[:-1], bounds[1:]):
            # pending rows are (block, row indices): copied once, when the group is flushed
            key, rows = keys[sorted_idx[start]], order[start:stop]
            self._group(key)
            self._pending.setdefault(key, []).append((X, rows, None if counts is None else counts[rows]))
            self._pending_rows[key] = self._pending_rows.get(key, 0) + len(rows)
            if self._pending_rows[key] >= self.flush_rows:
                self._flush(key)
        if sum(self._pending_rows.values()) > self.buffer_rows:
            self.finish()

    def _flush(self, key) -> None:
        chunks = self._pending.pop(key, [])
        n = self._pending_rows.pop(key, 0)
        if chunks:
            X = np.empty((n, self.dim), chunks[0][0].dtype)
            at = 0
            for block, rows, _ in chunks:
                np.take(block, rows, axis=0, out=X[at:at + len(rows)])
                at += len(rows)
            counts = None if chunks[0][2] is None else np.concatenate([c[2] for c in chunks])
            self._update(key, X, counts, consume=True)   # a copy made here

    def finish(self) -> None:
        """Apply all buffered rows (called before reading the statistics)."""
        for key in list(self._pending):
            self._flush(key)

    def _update(self, key, X: np.ndarray, counts: np.ndarray | None, consume: bool = False) -> None:
        self._group(key).update(X, consume=consume and not self.bootstrap)
        for b, rep in enumerate(self.rep_sums[key]):
            rep.update(X, counts[:, b])

    def pooled(self) -> SufficientStats:
        """Statistics of all rows seen (the union of the groups)."""
        self.finish()
        total = SufficientStats.empty(self.dim)
        for stats in self.groups.values():
            total = total + stats
        return total


def _percentile_ci(values: list[float], level: float) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(arr, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarize(acc: GroupAccumulator, zeta: float = DEFAULT_ZETA, ci_level: float = 0.95,
              grouped: bool = False, workers: int | None = None) -> list[tuple[object, IsotropyMetrics, dict]]:
    """Metrics (and bootstrap intervals) per group: [(key, metrics, {metric: (lo, hi)})].

    IsoScore* shrinks toward the pooled covariance of all groups when grouped, else toward
    the scaled identity. Groups are computed in a thread pool (`workers`, default the idle
    cores; LAPACK releases the GIL), each with one single-threaded eigendecomposition (eigenvalues
    only) serving all of its spectrum metrics; IsoScore* and the bootstrap replicates need none."""
    acc.finish()
    groups = acc.groups
    replicates = acc.replicates if acc.bootstrap else {}
    pooled, pooled_cov = None, None
    if grouped:
        pooled = SufficientStats.empty(acc.dim)
        for stats in groups.values():
            pooled = pooled + stats
        pooled_cov = covariance(pooled) if pooled.n >= 2 else None   # once, not per group
    rep_pooled = None
    if grouped and acc.bootstrap:
        rep_pooled = [SufficientStats.empty(acc.dim) for _ in range(acc.bootstrap)]
        for reps in replicates.values():
            rep_pooled = [p + r for p, r in zip(rep_pooled, reps)]

    def one(key):
        m = compute_metrics(groups[key], pooled, zeta, single=True, reference_cov=pooled_cov)
        ci = {}
        if acc.bootstrap:
            reps = [quick_metrics(r, None if rep_pooled is None else rep_pooled[b], zeta)
                    for b, r in enumerate(replicates[key])]
            ci = {name: _percentile_ci([r[name] for r in reps], ci_level) for name in CI_METRICS}
        return key, m, ci

    keys = sorted(groups, key=lambda k: (k is None, str(k)))
    workers = min(len(keys), workers or _idle_cores())
    # LAPACK's threads hardly help at d ~ 1000 (measured: a 1024 x 1024 eigendecomposition took
    # 0.10 s of CPU on one thread, 0.28 s on two, and was no faster), so each group gets one
    # thread and the groups share the cores.
    with _blas_threads(1):
        if workers <= 1:
            return [one(k) for k in keys]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, keys))


# ---------------------------------------------------------------------------------------------
# The streaming pass over a run
# ---------------------------------------------------------------------------------------------
def group_keys(store: Store, subset: Subset) -> tuple[dict[str, int], list]:
    """({accession: group code}, [group value as text (NULL -> None) per code]) for the proteins
    of the subset, codes in the order of the sorted values.

    Memory O(proteins) in short strings: small next to the d x d statistics per group."""
    try:
        table = store.sql(Q.group_keys.replace("$subset", subset.groups_sql()))
    except duckdb.Error as exc:
        raise QueryError(f"evaluating group-by {subset.group_by!r}: {str(exc).splitlines()[0]}") from exc
    encoded = pc.dictionary_encode(table.column("grp").combine_chunks(), null_encoding="encode")
    values = encoded.dictionary.to_pylist()
    keys = sorted(values, key=lambda k: (k is None, str(k)))
    position = {k: i for i, k in enumerate(keys)}
    recode = np.array([position[v] for v in values], np.int64)
    codes = recode[encoded.indices.to_numpy(zero_copy_only=False)] if len(values) else np.zeros(0, np.int64)
    return dict(zip(table.column("accession").to_pylist(), codes.tolist())), keys


def scan_layer(store: Store, run_id: str, layer: int, dim: int, where: str | Subset | None = None,
               group_by: str | None = None, bootstrap: int = 0, seed: int = 0,
               batch_rows: int = DEFAULT_BATCH_ROWS, max_bytes: int = MAX_STATS_BYTES,
               progress: Callable[[int], None] | None = None) -> GroupAccumulator:
    """One streaming pass over a run's layer (restricted and grouped by a Subset, or by filter and
    group-by text): per-group sufficient statistics."""
    subset = as_subset(store, where, group_by)
    acc = GroupAccumulator(dim, bootstrap, seed, max_bytes)
    code_of, keys = None, None
    if subset.group_by:  # fail before the pass, not after hours of it
        code_of, keys = group_keys(store, subset)
        acc.check_groups(len(keys))
    need_accessions = bool(bootstrap) or code_of is not None
    with _blas_threads(PASS_BLAS_THREADS or _idle_cores()):
        for accessions, X in layer_blocks(store, run_id, layer, subset, batch_rows, need_accessions):
            n_read = len(X)
            accs = accessions.to_pylist() if need_accessions else None
            if code_of is None:
                acc.add(X, None, accs, consume=True)   # blocks are fresh arrays
            else:   # groups as integer codes: one C-level dict lookup per row
                codes = np.fromiter(map(code_of.get, accs, repeat(-1)), np.int64, len(accs))
                keep = codes >= 0
                if not keep.all():  # embeddings of proteins no longer in the catalog
                    X, codes = X[keep], codes[keep]
                    accs = [a for a, ok in zip(accs, keep) if ok]
                acc.add_coded(X, codes, keys, accs if bootstrap else None, consume=True)
            if progress:
                progress(n_read)
    acc.finish()
    return acc


# ---------------------------------------------------------------------------------------------
# Results, storage and the entry point
# ---------------------------------------------------------------------------------------------
@dataclass
class IsotropyResult:
    """One metrics row: a run's layer, level, filter and group with its metrics and CIs."""

    run_id: str
    model: str | None
    layer: int
    level: str
    filter: str
    group_by: str
    group_key: str | None
    metrics: IsotropyMetrics
    ci: dict = field(default_factory=dict)
    bootstrap: int = 0
    ci_level: float | None = None
    seed: int | None = None
    provenance: dict = field(default_factory=dict)

    def row(self) -> dict:
        row = {"run_id": self.run_id, "model": self.model, **self.provenance, "layer": self.layer,
               "level": self.level, "filter": self.filter, "group_by": self.group_by,
               "group_key": self.group_key, **self.metrics.to_dict(), "bootstrap": self.bootstrap,
               "ci_level": self.ci_level, "seed": self.seed}
        for name in CI_METRICS:
            lo, hi = self.ci.get(name, (None, None))
            row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def save_results(store: Store, results: list[IsotropyResult]) -> str:
    """Append the results to table `metrics` in one transaction; returns their batch_id."""
    batch_id = uuid.uuid4().hex
    if not results:
        return batch_id
    rows = [dict(r.row(), batch_id=batch_id, software_version=__version__) for r in results]
    columns = [c for (c,) in store.execute(Q.metrics_columns).fetchall() if c in rows[0]]
    table = pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows])
    with store.transaction():
        store.con.register("isotropy_new_metrics", table)
        try:
            store.execute(Q.insert_metrics)
        finally:
            store.con.unregister("isotropy_new_metrics")
    return batch_id


def results_table(results: list[IsotropyResult]) -> pa.Table:
    return pa.Table.from_pylist([r.row() for r in results])


def _provenance(run) -> dict:
    return {k: (None if getattr(run, k, None) is None else str(getattr(run, k)))
            for k in ("model_id", "revision", "pooling", "dtype")}


def _layers(run, layer) -> list[int]:
    """'last'/None -> the last embedded layer; 'all' -> every embedded layer; else one layer
    (negative counts from the end)."""
    if layer is None or layer == "last":
        return [resolve_layer(run, None)]
    if layer == "all":
        return sorted(int(x) for x in run.layers)
    try:
        layer = int(layer)
    except (TypeError, ValueError):
        raise InputError(f"layer must be an index, 'all' or 'last', got {layer!r}") from None
    return [resolve_layer(run, layer)]


def _layer_progress(progress: Callable[[str, int, int], None], label: str, total: int) -> Callable[[int], None]:
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        progress(label, done[0], total)
    return advance


def isotropy(store: Store, model: str, layer: int | str | None = None, level: str = "global",
             where: str | None = None, group_by: str | None = None, bootstrap: int = 0,
             seed: int = 0, zeta: float = DEFAULT_ZETA, ci_level: float = 0.95, save: bool = True,
             batch_rows: int = DEFAULT_BATCH_ROWS, max_bytes: int = MAX_STATS_BYTES,
             progress: Callable[[str, int, int], None] | None = None) -> list[IsotropyResult]:
    """Isotropy metrics of a run (model alias or run id), per layer and group; stored in `metrics`.

    layer: an index, 'all', or None for the last layer. progress(label, done, total)."""
    if level not in ("global", "local"):
        raise InputError(f"level must be 'global' or 'local', got {level!r}")
    if bootstrap < 0:
        raise InputError(f"bootstrap replicates must be >= 0, got {bootstrap}")
    if not 0.0 <= zeta <= 1.0:
        raise InputError(f"shrinkage zeta must be in [0, 1], got {zeta}")
    if not 0.0 < ci_level < 1.0:
        raise InputError(f"confidence level must be in (0, 1), got {ci_level}")
    subset = as_subset(store, where, group_by)
    where, group_by = subset.where, subset.group_by
    run = resolve_run(store, model)
    results: list[IsotropyResult] = []
    common = dict(run_id=run.run_id, model=getattr(run, "model", None), provenance=_provenance(run))
    for lay in _layers(run, layer):
        if level == "local":
            if where or group_by or bootstrap:
                raise InputError("level 'local' works on the stored per-residue-type statistics of the "
                                 "whole run: a filter, grouping or bootstrap needs level 'global'")
            per_type = load_local_stats(store, run.run_id, lay)
            if not per_type:
                raise NotFoundError(f"run {run.run_id} has no per-residue statistics for layer {lay}; "
                                    "embed it with per-residue statistics (local_stats)")
            pooled = SufficientStats.empty(next(iter(per_type.values())).dim)
            for stats in per_type.values():
                pooled = pooled + stats
            for aa in sorted(per_type):
                results.append(IsotropyResult(**common, layer=lay, level="local", filter="",
                                              group_by="residue", group_key=aa,
                                              metrics=compute_metrics(per_type[aa], pooled, zeta)))
            results.append(IsotropyResult(**common, layer=lay, level="local", filter="", group_by="",
                                          group_key=LOCAL_POOLED, metrics=compute_metrics(pooled, None, zeta)))
            continue
        callback = _layer_progress(progress, f"layer {lay}",
                                   count_layer(store, run.run_id, lay, subset)) if progress else None
        acc = scan_layer(store, run.run_id, lay, int(run.dim), subset, None, bootstrap, seed, batch_rows,
                         max_bytes, callback)
        if not acc.sums:
            raise NotFoundError(f"no embeddings of run {run.run_id}, layer {lay} match"
                                + (f" the filter {where!r}" if where else ""))
        for key, metrics, ci in summarize(acc, zeta, ci_level, grouped=bool(group_by)):
            results.append(IsotropyResult(**common, layer=lay, level="global", filter=where,
                                          group_by=group_by, group_key=key, metrics=metrics, ci=ci,
                                          bootstrap=bootstrap, ci_level=ci_level if bootstrap else None,
                                          seed=seed if bootstrap else None))
    if save:
        if store.read_only:
            raise ProtisoError(f"store {store.root} is open read-only; cannot save results")
        save_results(store, results)
    return results
