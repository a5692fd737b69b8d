"""Pair sets: reproducible samples of protein pairs, recorded with their definition.

Which pairs a seed gives is defined once, in SQL: the seeded table macros of
sql/views/43_pair_sampling.sql (hash ranks, md5 of accession and seed, no RNG library). This
module validates a request, runs the macro and records the result, so

    SELECT * FROM sample_pairs_all(fraction := 0.01, seed := 0)

in `protiso sql` lists exactly the pairs of `sample_pairs(store, name, fraction=0.01, seed=0)`;
a filter is a relation of accessions the macros sample from (`population := 'name'` of a CTE).
The recorded definition holds the statement (`definition.sql`).

Strategies
- all-pairs: draw proteins (a fraction, a count, or enough for about N pairs), then take every
  unordered pair among them (the paper: 1% of proteins, all pairs). Macro sample_pairs_all.
- random-pairs: N distinct unordered pairs drawn uniformly among the (optionally drawn)
  proteins. Macro sample_pairs_random; it ranks every pair among the proteins.
- identity-stratified: a random-pairs pool is aligned (PAM250 global 10/0.5) and pairs are
  taken evenly from identity bins, so high-identity pairs (rare among random pairs) are
  represented. The alignments run here in parallel; the pool and the choice per bin are the
  macros' (sample_pairs_random, stratify_pairs), so the single-threaded SQL version
  sample_pairs_stratified, which aligns with the align_identity UDF, gives the same pairs.

Within a pair accession_a < accession_b; pair_id numbers the pairs 0..n-1 in (accession_a,
accession_b) order.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protiso._version import __version__
from protiso.errors import InputError, NotFoundError
from protiso.query import Subset, as_subset
from protiso.store import Store, queries

Q = queries("pairs")
STRATEGIES = ("all-pairs", "random-pairs", "identity-stratified")
MACROS = {"all-pairs": "sample_pairs_all", "random-pairs": "sample_pairs_random",
          "identity-stratified": "sample_pairs_stratified"}
SAMPLING_RULE = ("proteins: the k with the smallest md5_number('<accession>:<seed>'); random pairs: "
                 "the smallest md5_number('<accession_a>:<accession_b>:<seed>') among all pairs of "
                 "those proteins (sql/views/43_pair_sampling.sql)")
STRATIFIED_ALIGNMENT = "PAM250-global-o10-e0.5"
# random pairs rank every pair among the drawn proteins (about 1 s per million on 2 cores)
MAX_RANKED_PAIRS = 1_000_000_000
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LIST_SCHEMA = pa.schema([("pair_set", pa.string()), ("pair_id", pa.int64()),
                         ("accession_a", pa.string()), ("accession_b", pa.string())])


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"pair set name {name!r}: use letters, digits, '_', '.', '-' "
                         "(up to 64, starting with a letter or digit)", param="name")
    return name


def list_dataset(name: str) -> str:
    return f"pairs/{name}/list"


@dataclass
class PairSet:
    name: str
    strategy: str
    seed: int
    n_population: int
    n_proteins: int
    n_pairs: int
    definition: dict
    notes: list[str] = field(default_factory=list)   # what the user should know (not recorded)


def get_pair_set(store: Store, name: str) -> PairSet:
    row = store.one(Q.pair_set_by_name, {"name": name})
    if row is None:
        known = [r[0] for r in store.execute(Q.pair_set_names).fetchall()]
        raise NotFoundError(f"no pair set {name!r}" + (f"; known: {', '.join(known)}" if known
                                                       else "; create one with `protiso pairs sample`"))
    return PairSet(*row[:6], json.loads(row[6]))


def pair_set_exists(store: Store, name: str) -> bool:
    return bool(store.scalar(Q.pair_set_exists, {"name": name}))


def list_pair_sets(store: Store) -> pa.Table:
    """Every pair set with its definition and finished computations (view pair_set_summary)."""
    return store.sql(Q.pair_set_list)


@contextlib.contextmanager
def registered(store: Store, name: str, table: pa.Table):
    """`table` visible to the catalog connection's SQL as `name` for the duration."""
    store.con.register(name, table)
    try:
        yield
    finally:
        store.con.unregister(name)


def constant_column(value: str, n: int) -> pa.Array:
    """A string column holding one value n times (built without n Python objects)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)),
                                          pa.array([value], pa.string())).cast(pa.string())


def _take(values, idx: np.ndarray) -> pa.Array:
    """values[idx] as an Arrow string column (values: a short list of strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(idx, dtype=np.int32)),
                                          pa.array(list(values), pa.string())).cast(pa.string())


def _random_pairs(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k distinct unordered index pairs (i < j) among n items, uniformly, from a NumPy generator
    (for benchmarks and tests; pair sets are drawn by the SQL macros)."""
    total = n * (n - 1) // 2
    if k > total:
        raise InputError(f"{k:,} pairs requested but only {total:,} exist among {n:,} items")
    if k > total // 2:            # dense: pick linear indices without replacement
        lin = np.sort(rng.choice(total, size=k, replace=False))
    else:                         # sparse: draw, dedupe, top up
        got = np.empty(0, dtype=np.int64)
        while got.size < k:
            i = rng.integers(0, n, size=2 * (k - got.size) + 16)
            j = rng.integers(0, n, size=i.size)
            keep = i != j
            got = np.unique(np.concatenate([got, np.minimum(i, j)[keep] * n + np.maximum(i, j)[keep]]))
            if got.size > k:
                got = np.sort(rng.choice(got, size=k, replace=False))
        return got // n, got % n
    # linear index over the upper triangle -> (i, j)
    i = (n - 2 - np.floor(np.sqrt(-8 * lin + 4 * n * (n - 1) - 7) / 2 - 0.5)).astype(np.int64)
    j = lin + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2
    return i, j.astype(np.int64)


def _check_request(strategy: str, fraction, proteins, pairs, bins: int, pool_factor: int) -> None:
    if strategy not in STRATEGIES:
        raise InputError(f"pair sampling strategy {strategy!r} must be one of {', '.join(STRATEGIES)}",
                         param="strategy")
    given = sum(x is not None for x in (fraction, proteins, pairs))
    if strategy == "all-pairs" and given != 1:
        raise InputError(f"all-pairs sampling needs exactly one of a fraction, a protein count or a "
                         f"pair count (got fraction {fraction}, proteins {proteins}, pairs {pairs})",
                         param="fraction" if fraction is not None else "pairs")
    if strategy != "all-pairs" and (pairs is None or fraction is not None and proteins is not None):
        raise InputError(f"{strategy} sampling needs a pair count, and at most one of a fraction or "
                         f"a protein count (got fraction {fraction}, proteins {proteins}, pairs {pairs})",
                         param="pairs" if pairs is None else "proteins")
    if fraction is not None and not 0 < fraction <= 1:
        raise InputError(f"pair fraction {fraction} must be in (0, 1]", param="fraction")
    if proteins is not None and proteins < 2:
        raise InputError(f"protein count {proteins} must be >= 2", param="proteins")
    for param, label, v in (("pairs", "pair count", pairs), ("bins", "identity bins", bins),
                            ("pool_factor", "pool factor", pool_factor)):
        if v is not None and v < 1:
            raise InputError(f"{label} {v} must be >= 1", param=param)


def sampling_sql(strategy: str, seed: int, where: str = "", fraction: float | None = None,
                 proteins: int | None = None, pairs: int | None = None, bins: int = 10,
                 pool_factor: int = 10) -> str:
    """The statement a user runs in `protiso sql` for the same pairs (recorded in the definition)."""
    args = [] if strategy == "all-pairs" else [str(int(pairs))]
    if strategy == "identity-stratified":
        args += [f"bins := {int(bins)}", f"pool_factor := {int(pool_factor)}"]
    for key, v in (("fraction", fraction), ("proteins", proteins),
                   ("pairs", pairs if strategy == "all-pairs" else None)):
        if v is not None:
            args.append(f"{key} := {float(v)!r}" if key == "fraction" else f"{key} := {int(v)}")
    args.append(f"seed := {int(seed)}")
    if not where:
        return f"SELECT * FROM {MACROS[strategy]}({', '.join(args)})"
    return (f"WITH population AS ({Subset(where).accessions_sql()}) "
            f"SELECT * FROM {MACROS[strategy]}({', '.join(args)}, population := 'population')")


def sample_pairs(store: Store, name: str, *, strategy: str = "all-pairs", fraction: float | None = None,
                 proteins: int | None = None, pairs: int | None = None, seed: int = 0,
                 where: str | Subset | None = None, bins: int = 10, pool_factor: int = 10,
                 threads: int = 1, replace: bool = False) -> PairSet:
    """Create pair set `name` with the seeded SQL macros (see the module docstring)."""
    check_name(name)
    _check_request(strategy, fraction, proteins, pairs, bins, pool_factor)
    subset = as_subset(store, where)
    where = subset.where
    exists = pair_set_exists(store, name)
    if exists and not replace:
        raise InputError(f"pair set {name!r} exists; choose another name or replace it", param="replace")
    args = {"fraction": fraction, "proteins": proteins, "seed": seed}
    population = subset.accessions_sql()
    all_pairs = pairs if strategy == "all-pairs" else None
    n_pop, k = store.one(Q.sample_plan.replace("$subset", population), {**args, "all_pairs": all_pairs})
    if k > n_pop or n_pop < 2:
        size = [p for p, v in (("proteins", proteins), ("fraction", fraction), ("pairs", all_pairs)) if v]
        raise InputError(f"{k:,} proteins requested but {n_pop:,} "
                         + (f"match the filter {where!r}" if where else "are in the store"),
                         param=size[0] if size else "where")
    total = k * (k - 1) // 2
    if strategy != "all-pairs" and total > MAX_RANKED_PAIRS:
        raise InputError(f"{strategy} sampling ranks every pair among the {k:,} proteins ({total:,} "
                         f"pairs, more than {MAX_RANKED_PAIRS:,}); draw fewer proteins first "
                         "(a fraction or a protein count)", param="proteins")
    notes: list[str] = []
    if strategy == "all-pairs":
        got = store.sql(Q.sample_all_pairs.replace("$subset", population), {**args, "pairs": pairs})
    elif strategy == "random-pairs":
        if pairs > total:
            raise InputError(f"{pairs:,} pairs requested but only {total:,} exist among {k:,} proteins",
                             param="pairs")
        got = store.sql(Q.sample_random_pairs.replace("$subset", population), {**args, "pairs": pairs})
    else:
        got, note = _stratified(store, population, args, pairs, bins, pool_factor, threads)
        notes = [note] if note else []
    table = pa.table({"pair_set": constant_column(name, got.num_rows), "pair_id": got["pair_id"],
                      "accession_a": got["accession_a"], "accession_b": got["accession_b"]}).cast(LIST_SCHEMA)
    ends = pa.chunked_array(table["accession_a"].chunks + table["accession_b"].chunks, pa.string())
    n_proteins = pc.count_distinct(ends).as_py() if table.num_rows else 0
    definition = {"strategy": strategy, "seed": seed, "filter": where, "fraction": fraction,
                  "proteins": proteins, "pairs": pairs, "population": n_pop, "rule": SAMPLING_RULE,
                  "sql": sampling_sql(strategy, seed, where, fraction, proteins, pairs, bins, pool_factor)}
    if strategy == "identity-stratified":
        definition.update({"bins": bins, "pool_factor": pool_factor, "alignment": STRATIFIED_ALIGNMENT})
    if exists:              # everything above validated: now replace
        delete_pair_set(store, name)
    with store.transaction():
        store.execute(Q.insert_pair_set, {
            "name": name, "strategy": strategy, "seed": seed, "filter": where, "fraction": fraction,
            "proteins": proteins, "pairs": pairs, "population": n_pop, "n_proteins": n_proteins,
            "n_pairs": table.num_rows, "definition": json.dumps(definition), "version": __version__})
        for lo in range(0, max(1, table.num_rows), 2_000_000):
            store.write_part(list_dataset(name), table.slice(lo, 2_000_000))
    store.refresh_views()
    return PairSet(name, strategy, seed, n_pop, n_proteins, table.num_rows, definition, notes)


def _stratified(store: Store, population: str, args: dict, pairs: int, bins: int, pool_factor: int,
                threads: int) -> tuple[pa.Table, str | None]:
    """The macros' pool (sample_pairs_random), aligned here in parallel, stratified by the macro
    stratify_pairs: the pairs of sample_pairs_stratified; and, when they are fewer than `pairs`,
    a note saying how many and why (bins whose pool holds fewer pairs than their share)."""
    from protiso.pairs.align import Scoring, align_many

    pool = store.sql(Q.sample_pool.replace("$subset", population), {**args, "pairs": pairs * pool_factor})
    res = align_many(pool["sequence_a"].to_pylist(), pool["sequence_b"].to_pylist(), Scoring(),
                     threads=threads)
    aligned = pa.table({"accession_a": pool["accession_a"], "accession_b": pool["accession_b"],
                        "identity": pa.array(res["identity"], mask=np.isnan(res["identity"]))})
    with registered(store, "_protiso_pool", aligned):
        got = store.sql(Q.stratify_pool, {"pairs": pairs, "bins": bins, "seed": args["seed"]})
    return got, stratified_shortfall(res["identity"], pairs, bins, got.num_rows)


def stratified_shortfall(identity: np.ndarray, pairs: int, bins: int, n_got: int) -> str | None:
    """Why identity-stratified sampling gave fewer than `pairs` pairs: each of the `bins` bins
    keeps at most ceil(pairs / bins) of the aligned pool's pairs (as macro stratify_pairs does),
    and random pairs rarely have high identity. None when nothing is missing."""
    if n_got >= pairs:
        return None
    identity = np.asarray(identity, dtype=np.float64)
    identity = identity[~np.isnan(identity)]
    share = math.ceil(pairs / bins)
    counts = np.bincount(np.minimum(np.floor(identity * bins), bins - 1).astype(np.int64), minlength=bins)
    short = [(b, int(c)) for b, c in enumerate(counts[:bins]) if c < share]
    shown = ", ".join(f"{b / bins:.2g}-{(b + 1) / bins:.2g}: {c:,}" for b, c in short[:6])
    more = f" and {len(short) - 6} more" if len(short) > 6 else ""
    return (f"identity-stratified sampling gave {n_got:,} of the {pairs:,} pairs asked for: each of the "
            f"{bins} identity bins keeps at most {share:,} pairs of an aligned pool of {identity.size:,} random "
            f"pairs, and {len(short)} bin{'s' if len(short) != 1 else ''} held fewer ({shown}{more}); "
            "a larger --pool-factor or fewer --bins gets closer")


def sequences(store: Store, accessions: list[str]) -> dict[str, str]:
    """accession -> sequence for the given accessions."""
    want = pa.table({"accession": pa.array(accessions, pa.string())})
    with registered(store, "_protiso_accessions", want):
        return dict(store.execute(Q.sequences_of).fetchall())


def delete_pair_set(store: Store, name: str) -> None:
    """Remove a pair set with its alignments and distances."""
    with store.transaction():
        store.execute(Q.delete_pair_set, {"name": name})
        for (dataset,) in store.execute(Q.pair_set_datasets, {"name": name}).fetchall():
            store.delete_dataset(dataset)
    store.refresh_views()


def read_pairs(store: Store, name: str, lo: int = 0, hi: int | None = None) -> pa.Table:
    """(pair_id, accession_a, accession_b) of a pair set, pair_id in [lo, hi)."""
    get_pair_set(store, name)
    return store.sql(Q.read_pairs, {"name": name, "lo": lo, "hi": hi if hi is not None else 2 ** 62})


def pair_indices(store: Store, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(proteins sorted by accession, index_a, index_b) for all pairs in pair_id order.

    Integer indices keep multi-million pair sets small in memory (no string per pair)."""
    ps = get_pair_set(store, name)
    proteins = [r[0] for r in store.execute(Q.pair_set_proteins, {"name": name}).fetchall()]
    tab = store.execute(Q.pair_index_list, {"name": name}).fetchnumpy()
    if len(tab["pair_id"]) != ps.n_pairs or (ps.n_pairs and tab["pair_id"][-1] != ps.n_pairs - 1):
        raise InputError(f"pair set {name!r}: pair list has {len(tab['pair_id'])} of "
                         f"{ps.n_pairs} pairs; sample it again, replacing it")
    return proteins, np.asarray(tab["ia"], dtype=np.int32), np.asarray(tab["ib"], dtype=np.int32)
