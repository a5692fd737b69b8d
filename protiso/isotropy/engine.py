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
Intervals (--ci-method): 'bca' (default) is the BCa interval, its bias correction z0 from the
replicates and its acceleration from a grouped jackknife: proteins fall into
`jackknife_blocks` blocks by a hash of the accession, each block's statistics are summed
alongside (one more accumulation per row), and the leave-one-block-out values give a; 'bc'
is the bias-corrected percentile interval (a = 0, no blocks); 'percentile' the plain one.
Every interval comes with the bootstrap bias mean(replicates) - estimate
(protiso/isotropy/intervals.py says why the percentile interval undercovers at small n).

Also per group, on request: intrinsic dimension (TwoNN and Levina-Bickel, `intrinsic.py`),
which needs the vectors themselves, so the pass keeps a copy of the subset's rows (bounded by
MAX_VECTOR_BYTES), and always the rogue-dimension summary (`rogue.py`, from the statistics).

Beside it: `resampling.py` (the hashed Poisson counts and jackknife blocks), `intervals.py`
(intervals from replicate values), `results.py` (the `metrics` rows and their storage).
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, Iterable, Iterator

import duckdb
import numpy as np
import pyarrow.compute as pc

from protiso.errors import InputError, NotFoundError, ProtisoError, QueryError
from protiso.isotropy import intrinsic as idim
from protiso.isotropy.intervals import bootstrap_interval
from protiso.isotropy.metrics import DEFAULT_ZETA, IsotropyMetrics, compute_metrics, covariance, quick_metrics
from protiso.isotropy.resampling import jackknife_blocks, poisson_counts
from protiso.isotropy.results import CI_METRICS, IsotropyResult, save_results
from protiso.isotropy.rogue import rogue_dimensions
from protiso.isotropy.shrinkage import TARGET_CHOICES, resolve_target
from protiso.isotropy.stats import Accumulator, SufficientStats
from protiso.query import Subset, as_subset
from protiso.runs import load_local_stats, resolve_layer, resolve_run
from protiso.runs.reader import count_layer, layer_blocks
from protiso.store import Store, queries

DEFAULT_BATCH_ROWS = 16384
PASS_BLAS_THREADS = None   # BLAS threads during a pass (None: every core, see _cores)
Q = queries("isotropy")
MAX_STATS_BYTES = 4 << 30  # refuse group-by x bootstrap combinations needing more than this
CI_METHODS = ("bca", "bc", "percentile")
DEFAULT_JACKKNIFE_BLOCKS = 20   # BCa's acceleration from 20 leave-one-block-out values
MAX_VECTOR_BYTES = 4 << 30      # --intrinsic keeps the subset's vectors; refuse more than this
ROGUE_TOP = 5                   # rogue dimensions stored per result
LOCAL_POOLED = None  # group_key of the pooled (all residue types) local row


class TooManyGroupsError(QueryError):
    """The statistics for the requested groups and replicates would not fit the memory bound."""


_BLAS = None   # threadpoolctl's controller, made on first use (False without threadpoolctl)


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


def _cores() -> int:
    """Threads for a pass's BLAS products and for the per-group metrics: every core this process
    may run on. (An earlier rule took the load average's idle cores, but the load average lags a
    minute behind: a pass that followed any other work ran on one thread of an idle machine.
    On a busy machine extra threads cost some CPU but no wall-clock time: a 16,384 x 1024
    float32 product took 139 ms of CPU on one thread and 209 ms on two, equally fast.)"""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1



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
    blocks: int = 0             # jackknife blocks (BCa); 0: none
    keep_vectors: bool = False  # keep a copy of every group's rows (intrinsic dimension)
    sums: dict = field(default_factory=dict)        # key -> Accumulator
    rep_sums: dict = field(default_factory=dict)    # key -> list[Accumulator]
    block_sums: dict = field(default_factory=dict)  # key -> list[Accumulator], one per block
    vectors: dict = field(default_factory=dict)     # key -> list of row blocks (keep_vectors)
    _pending: dict = field(default_factory=dict)    # key -> list of (block, row indices, counts)
    _pending_rows: dict = field(default_factory=dict)

    def _bytes_per_group(self) -> int:
        # float64 d x d sums, a float32 partial d x d sum, a few d-vectors, per replicate
        return (self.bootstrap + 1 + self.blocks) * (12 * self.dim * self.dim + 8 * (4 * self.dim + 1))

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
            self.block_sums[key] = [Accumulator(self.dim) for _ in range(self.blocks)]
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

    @property
    def block_stats(self) -> dict:
        """key -> SufficientStats of each jackknife block (empty lists without blocks)."""
        return {key: [b.stats() for b in blocks] for key, blocks in self.block_sums.items()}

    def group_vectors(self, key) -> np.ndarray:
        """The rows of a group (keep_vectors), as one float32 matrix."""
        parts = self.vectors.get(key, [])
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)

    def _row_counts(self, accessions) -> np.ndarray | None:
        """Per row: the bootstrap counts, then (with blocks) the jackknife block as a last column."""
        if not (self.bootstrap or self.blocks):
            return None
        if accessions is None:
            raise ValueError("bootstrap and jackknife blocks need the accession of every row")
        cols = [poisson_counts(accessions, self.seed, self.bootstrap)] if self.bootstrap else []
        if self.blocks:
            cols.append(jackknife_blocks(accessions, self.blocks)[:, None])
        return np.hstack(cols) if len(cols) > 1 else cols[0]

    def add(self, X: np.ndarray, keys: list | None = None, accessions: list[str] | None = None,
            consume: bool = False) -> None:
        """Add rows X (n, d); keys[i] is row i's group (None: one group); accessions for bootstrap.
        `consume`: X is the caller's to discard (it may be overwritten)."""
        if X.shape[0] == 0:
            return
        counts = self._row_counts(accessions)
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
        self._add_coded(X, codes, keys, self._row_counts(accessions), consume)

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
        block = None
        if self.blocks:
            block, counts = counts[:, -1], counts[:, :-1]
        if self.keep_vectors:
            self.vectors.setdefault(key, []).append(np.array(X, dtype=np.float32, copy=True))
        self._group(key).update(X, consume=consume and not (self.bootstrap or self.blocks))
        for b, rep in enumerate(self.rep_sums[key]):
            rep.update(X, counts[:, b])
        if block is not None:
            for g in np.unique(block):
                self.block_sums[key][g].update(X[block == g], consume=True)   # a fresh copy

    def pooled(self) -> SufficientStats:
        """Statistics of all rows seen (the union of the groups)."""
        self.finish()
        total = SufficientStats.empty(self.dim)
        for stats in self.groups.values():
            total = total + stats
        return total


def _minus(total: SufficientStats, part: SufficientStats) -> SufficientStats:
    """The statistics of a set without one of its parts (leave-one-block-out)."""
    return SufficientStats(total.n - part.n, total.sum - part.sum, total.sum_outer - part.sum_outer,
                           total.sum_unit - part.sum_unit)


@dataclass
class GroupSummary:
    """One group's metrics and what came with them (see `summarize`)."""

    key: object
    metrics: IsotropyMetrics
    ci: dict = field(default_factory=dict)      # metric -> (low, high)
    bias: dict = field(default_factory=dict)    # metric -> bootstrap bias
    ci_method: str | None = None
    rogue: object = None                         # RogueDimensions, None with fewer than 2 vectors
    intrinsic: object = None                     # intrinsic.IntrinsicSummary, with keep_vectors

    def __iter__(self):   # (key, metrics, ci), as summarize returned before
        return iter((self.key, self.metrics, self.ci))

    def __getitem__(self, i):
        return (self.key, self.metrics, self.ci)[i]


def summarize(acc: GroupAccumulator, zeta: float = DEFAULT_ZETA, ci_level: float = 0.95,
              grouped: bool = False, workers: int | None = None, star_target: str = "auto",
              ci_method: str = "bca", intrinsic_k: int = idim.DEFAULT_K) -> list[GroupSummary]:
    """Metrics (and bootstrap intervals with their bias) per group, in natural key order.

    IsoScore* shrinks toward `star_target` ('auto': the pooled covariance of all groups when
    grouped, else the scaled identity; see shrinkage.py). Intervals by `ci_method` (see the module
    docstring); with jackknife blocks, BCa's acceleration comes from the leave-one-block-out
    values. Groups are computed in a thread pool (`workers`, default every core; LAPACK and
    FAISS release the GIL), each with one single-threaded eigendecomposition (eigenvalues only)
    serving all of its spectrum metrics; IsoScore* and the bootstrap replicates need none."""
    if ci_method not in CI_METHODS:
        raise InputError(f"interval method {ci_method!r}: choose one of {', '.join(CI_METHODS)}",
                         param="ci_method")
    target = resolve_target(star_target, grouped)
    acc.finish()
    groups = acc.groups
    replicates = acc.replicates if acc.bootstrap else {}
    blocks = acc.block_stats if acc.blocks else {}
    pooled, pooled_cov = None, None
    if grouped:
        pooled = SufficientStats.empty(acc.dim)
        for stats in groups.values():
            pooled = pooled + stats
        pooled_cov = covariance(pooled) if pooled.n >= 2 else None   # once, not per group
    ref = pooled if target == "reference" else None
    rep_pooled, block_pooled = None, None
    if target == "reference" and acc.bootstrap:
        rep_pooled = [SufficientStats.empty(acc.dim) for _ in range(acc.bootstrap)]
        for reps in replicates.values():
            rep_pooled = [p + r for p, r in zip(rep_pooled, reps)]
    if target == "reference" and acc.blocks:
        block_pooled = [SufficientStats.empty(acc.dim) for _ in range(acc.blocks)]
        for bl in blocks.values():
            block_pooled = [p + b for p, b in zip(block_pooled, bl)]

    def one(key):
        stats = groups[key]
        m = compute_metrics(stats, ref, zeta, single=True,
                            reference_cov=pooled_cov if target == "reference" else None, target=target)
        out = GroupSummary(key, m)
        if stats.n >= 2:
            out.rogue = rogue_dimensions(stats, ROGUE_TOP)
        if acc.keep_vectors:
            out.intrinsic = idim.estimate(acc.group_vectors(key), intrinsic_k)
        if acc.bootstrap:
            reps = [quick_metrics(r, None if rep_pooled is None else rep_pooled[b], zeta, target)
                    for b, r in enumerate(replicates[key])]
            jack = None
            if ci_method == "bca" and acc.blocks:
                jack = [quick_metrics(_minus(stats, blk), None if block_pooled is None
                                      else _minus(pooled, block_pooled[g]), zeta, target)
                        for g, blk in enumerate(blocks[key]) if blk.n > 0]
            for name in CI_METRICS:
                lo, hi, bias, used = bootstrap_interval(
                    [r[name] for r in reps], getattr(m, name), ci_method, ci_level,
                    None if jack is None else [j[name] for j in jack])
                out.ci[name], out.bias[name] = (lo, hi), bias
                out.ci_method = used if out.ci_method in (None, used) else out.ci_method
        return out

    keys = sorted(groups, key=lambda k: (k is None, str(k)))
    workers = min(len(keys), workers or _cores())
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


def _read_ahead(blocks: Iterable) -> Iterator:
    """The blocks of `blocks`, the next one read on a thread while the caller computes on this
    one: reading pages (file reads, decoding) releases the GIL, so it overlaps the products.
    Measured at 516,371 x 1024: reading took 1.3 s of a 7.1 s pass, the products 2.4 s."""
    it = iter(blocks)
    with ThreadPoolExecutor(1, thread_name_prefix="protiso-read") as pool:
        pending = pool.submit(next, it, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, it, None)
            yield item


def scan_layer(store: Store, run_id: str, layer: int, dim: int, where: str | Subset | None = None,
               group_by: str | None = None, bootstrap: int = 0, seed: int = 0,
               batch_rows: int = DEFAULT_BATCH_ROWS, max_bytes: int = MAX_STATS_BYTES,
               progress: Callable[[int], None] | None = None, blocks: int = 0,
               keep_vectors: bool = False) -> GroupAccumulator:
    """One streaming pass over a run's layer (restricted and grouped by a Subset, or by filter and
    group-by text): per-group sufficient statistics (with `blocks` jackknife blocks, and the
    rows themselves with `keep_vectors`)."""
    subset = as_subset(store, where, group_by)
    acc = GroupAccumulator(dim, bootstrap, seed, max_bytes, blocks=blocks, keep_vectors=keep_vectors)
    code_of, keys = None, None
    if subset.group_by:  # fail before the pass, not after hours of it
        code_of, keys = group_keys(store, subset)
        acc.check_groups(len(keys))
    need_accessions = bool(bootstrap) or bool(blocks) or code_of is not None
    # BLAS gets every core but one; the read-ahead thread has that one (measured at 516,371 x 1024
    # on 2 cores: 5.7 s with one BLAS thread, 6.1 s with two, which also took 1.7x the CPU)
    with _blas_threads(PASS_BLAS_THREADS or max(1, _cores() - 1)):
        for accessions, X in _read_ahead(layer_blocks(store, run_id, layer, subset, batch_rows, need_accessions)):
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
                acc.add_coded(X, codes, keys, accs if bootstrap or blocks else None, consume=True)
            if progress:
                progress(n_read)
    acc.finish()
    return acc


# ---------------------------------------------------------------------------------------------
# The entry point (results and their storage: results.py)
# ---------------------------------------------------------------------------------------------
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
             progress: Callable[[str, int, int], None] | None = None, star_target: str = "auto",
             intrinsic: bool = False, ci_method: str = "bca",
             jackknife: int = DEFAULT_JACKKNIFE_BLOCKS, intrinsic_k: int = idim.DEFAULT_K,
             max_vector_bytes: int = MAX_VECTOR_BYTES) -> list[IsotropyResult]:
    """Isotropy metrics of a run (model alias or run id), per layer and group; stored in `metrics`.

    layer: an index, 'all', or None for the last layer. progress(label, done, total).
    star_target: IsoScore*'s shrinkage target (shrinkage.TARGET_CHOICES). intrinsic: also the
    intrinsic dimension per group (keeps the subset's vectors; exact kNN). With bootstrap:
    intervals by ci_method ('bca' with `jackknife` blocks, 'bc', 'percentile') and the bias."""
    if level not in ("global", "local"):
        raise InputError(f"level must be 'global' or 'local', got {level!r}")
    if bootstrap < 0:
        raise InputError(f"bootstrap replicates must be >= 0, got {bootstrap}")
    if not 0.0 <= zeta <= 1.0:
        raise InputError(f"shrinkage zeta must be in [0, 1], got {zeta}")
    if not 0.0 < ci_level < 1.0:
        raise InputError(f"confidence level must be in (0, 1), got {ci_level}")
    if star_target not in TARGET_CHOICES:
        raise InputError(f"IsoScore* target {star_target!r}: choose one of {', '.join(TARGET_CHOICES)}",
                         param="star_target")
    if ci_method not in CI_METHODS:
        raise InputError(f"interval method {ci_method!r}: choose one of {', '.join(CI_METHODS)}",
                         param="ci_method")
    if ci_method == "bca" and bootstrap and jackknife < 2:
        raise InputError(f"BCa needs at least 2 jackknife blocks, got {jackknife}", param="jackknife")
    if intrinsic_k < 2:
        raise InputError(f"intrinsic dimension needs k >= 2 neighbours, got {intrinsic_k}", param="intrinsic_k")
    subset = as_subset(store, where, group_by)
    where, group_by = subset.where, subset.group_by
    if level == "global":
        resolve_target(star_target, bool(group_by))   # 'reference' without groups: fail before the pass
    run = resolve_run(store, model)
    results: list[IsotropyResult] = []
    common = dict(run_id=run.run_id, model=getattr(run, "model", None), provenance=_provenance(run))
    blocks = jackknife if bootstrap and ci_method == "bca" else 0
    for lay in _layers(run, layer):
        if level == "local":
            if where or group_by or bootstrap or intrinsic:
                raise InputError("level 'local' works on the stored per-residue-type statistics of the "
                                 "whole run: a filter, grouping, bootstrap or intrinsic dimension needs "
                                 "level 'global'")
            per_type = load_local_stats(store, run.run_id, lay)
            if not per_type:
                raise NotFoundError(f"run {run.run_id} has no per-residue statistics for layer {lay}; "
                                    "embed it with per-residue statistics (local_stats)")
            pooled = SufficientStats.empty(next(iter(per_type.values())).dim)
            for stats in per_type.values():
                pooled = pooled + stats
            per_target = resolve_target(star_target, True)    # residue types: the pooled residues
            for aa in sorted(per_type):
                stats = per_type[aa]
                results.append(IsotropyResult(
                    **common, layer=lay, level="local", filter="", group_by="residue", group_key=aa,
                    metrics=compute_metrics(stats, pooled, zeta, target=per_target),
                    rogue=rogue_dimensions(stats, ROGUE_TOP) if stats.n >= 2 else None))
            # the pooled row is its own reference population
            results.append(IsotropyResult(
                **common, layer=lay, level="local", filter="", group_by="", group_key=LOCAL_POOLED,
                metrics=compute_metrics(pooled, pooled if star_target == "reference" else None, zeta,
                                        target=resolve_target(star_target, star_target == "reference")),
                rogue=rogue_dimensions(pooled, ROGUE_TOP) if pooled.n >= 2 else None))
            continue
        total = count_layer(store, run.run_id, lay, subset) if progress or intrinsic else None
        if intrinsic and total * int(run.dim) * 4 > max_vector_bytes:
            raise TooManyGroupsError(
                f"intrinsic dimension keeps the vectors: {total:,} x {run.dim} float32 need "
                f"{total * int(run.dim) * 4 / 2**30:.1f} GiB (limit {max_vector_bytes / 2**30:.1f} GiB); "
                "narrow the proteins with --where")
        callback = _layer_progress(progress, f"layer {lay}", total) if progress else None
        acc = scan_layer(store, run.run_id, lay, int(run.dim), subset, None, bootstrap, seed, batch_rows,
                         max_bytes, callback, blocks=blocks, keep_vectors=intrinsic)
        if not acc.sums:
            raise NotFoundError(f"no embeddings of run {run.run_id}, layer {lay} match"
                                + (f" the filter {where!r}" if where else ""))
        for g in summarize(acc, zeta, ci_level, grouped=bool(group_by), star_target=star_target,
                           ci_method=ci_method, intrinsic_k=intrinsic_k):
            results.append(IsotropyResult(**common, layer=lay, level="global", filter=where,
                                          group_by=group_by, group_key=g.key, metrics=g.metrics, ci=g.ci,
                                          bootstrap=bootstrap, ci_level=ci_level if bootstrap else None,
                                          seed=seed if bootstrap else None, bias=g.bias,
                                          ci_method=g.ci_method if bootstrap else None,
                                          jackknife_blocks=blocks or None, rogue=g.rogue,
                                          intrinsic=g.intrinsic))
    if save:
        if store.read_only:
            raise ProtisoError(f"store {store.root} is open read-only; cannot save results")
        save_results(store, results)
    return results
