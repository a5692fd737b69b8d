"""Pair sets: reproducible samples of protein pairs, recorded with their definition.

Strategies
- all-pairs: sample proteins (a fraction, a count, or enough for about N pairs), then take
  every unordered pair among them (the paper: 1% of proteins, all pairs).
- random-pairs: N distinct unordered pairs drawn uniformly from the (optionally sampled)
  proteins.
- identity-stratified: a pool of random pairs is aligned and pairs are drawn evenly from
  identity bins, so high-identity pairs (rare among random pairs) are represented.

Everything is drawn with numpy's PCG64 from `seed` over proteins sorted by accession, so the
same store, filter and seed give the same set. Within a pair accession_a < accession_b; pair_id
numbers the pairs 0..n-1 in (accession_a, accession_b) order.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from protiso._version import __version__
from protiso.errors import InputError, NotFoundError
from protiso.store import Store
from protiso.query import Subset, as_subset

STRATEGIES = ("all-pairs", "random-pairs", "identity-stratified")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LIST_SCHEMA = pa.schema([("pair_set", pa.string()), ("pair_id", pa.int64()),
                         ("accession_a", pa.string()), ("accession_b", pa.string())])


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"pair set name {name!r}: use letters, digits, '_', '.', '-' "
                         "(up to 64, starting with a letter or digit)")
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


def get_pair_set(store: Store, name: str) -> PairSet:
    row = store.one(
        "SELECT name, strategy, seed, n_population, n_proteins, n_pairs, definition "
        "FROM pair_sets WHERE name = ?", [name])
    if row is None:
        known = [r[0] for r in store.con.execute("SELECT name FROM pair_sets ORDER BY name").fetchall()]
        raise NotFoundError(f"no pair set {name!r}" + (f"; known: {', '.join(known)}" if known
                                                       else "; create one with `protiso pairs sample`"))
    return PairSet(*row[:6], json.loads(row[6]))


def constant_column(value: str, n: int) -> pa.Array:
    """A string column holding one value n times (built without n Python objects)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)),
                                          pa.array([value], pa.string())).cast(pa.string())


def _take(values, idx: np.ndarray) -> pa.Array:
    """values[idx] as an Arrow string column (values: a short list of strings)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(idx, dtype=np.int32)),
                                          pa.array(list(values), pa.string())).cast(pa.string())


def _n_for_pairs(n_pairs: int) -> int:
    """Smallest n with n (n - 1) / 2 >= n_pairs."""
    n = int(math.ceil((1 + math.sqrt(1 + 8 * n_pairs)) / 2))
    while n > 2 and (n - 1) * (n - 2) // 2 >= n_pairs:
        n -= 1
    return n


def _random_pairs(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k distinct unordered index pairs (i < j) among n items, uniformly."""
    total = n * (n - 1) // 2
    if k > total:
        raise InputError(f"{k:,} pairs requested but only {total:,} exist among {n:,} proteins")
    if k > total // 2:            # dense: pick linear indices without replacement
        lin = np.sort(rng.choice(total, size=k, replace=False))
    else:                         # sparse: draw, dedupe, top up
        got = np.empty(0, dtype=np.int64)
        while got.size < k:
            i = rng.integers(0, n, size=2 * (k - got.size) + 16)
            j = rng.integers(0, n, size=i.size)
            keep = i != j
            a, b = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
            lin = a * n + b
            got = np.unique(np.concatenate([got, lin]))
            if got.size > k:
                got = np.sort(rng.choice(got, size=k, replace=False))
        return got // n, got % n
    # linear index over the upper triangle -> (i, j)
    i = (n - 2 - np.floor(np.sqrt(-8 * lin + 4 * n * (n - 1) - 7) / 2 - 0.5)).astype(np.int64)
    j = lin + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2
    return i, j.astype(np.int64)


def sample_pairs(store: Store, name: str, *, strategy: str = "all-pairs", fraction: float | None = None,
                 proteins: int | None = None, pairs: int | None = None, seed: int = 0,
                 where: str | Subset | None = None, bins: int = 10, pool_factor: int = 10,
                 threads: int = 1, replace: bool = False) -> PairSet:
    """Create pair set `name` (see the module docstring); returns its summary."""
    check_name(name)
    subset = as_subset(store, where)
    where = subset.where
    if strategy not in STRATEGIES:
        raise InputError(f"strategy {strategy!r} must be one of {', '.join(STRATEGIES)}")
    given = [x is not None for x in (fraction, proteins, pairs)]
    if strategy == "all-pairs" and sum(given) != 1:
        raise InputError("all-pairs needs exactly one of --fraction, --proteins, --pairs")
    if strategy != "all-pairs" and (pairs is None or fraction is not None and proteins is not None):
        raise InputError(f"{strategy} needs --pairs N (and optionally --fraction or --proteins "
                         "to sample the proteins first)")
    if fraction is not None and not 0 < fraction <= 1:
        raise InputError(f"--fraction {fraction} must be in (0, 1]")
    for label, v in (("--proteins", proteins), ("--pairs", pairs)):
        if v is not None and v < 1:
            raise InputError(f"{label} {v} must be >= 1")
    exists = store.scalar("SELECT count(*) FROM pair_sets WHERE name = ?", [name])
    if exists and not replace:
        raise InputError(f"pair set {name!r} exists; choose another name or pass --replace")

    population = [r[0] for r in store.con.execute(
        f"SELECT accession FROM ({subset.accessions_sql()}) ORDER BY accession").fetchall()]
    n_pop = len(population)
    rng = np.random.Generator(np.random.PCG64(seed))

    # proteins first
    if fraction is not None:
        k = max(2, int(round(fraction * n_pop)))
    elif proteins is not None:
        k = proteins
    elif strategy == "all-pairs":
        k = _n_for_pairs(pairs)
    else:
        k = n_pop
    if k > n_pop or n_pop < 2:
        raise InputError(f"{k:,} proteins requested but {n_pop:,} match the filter"
                         + (f" {where!r}" if where else ""))
    idx = np.sort(rng.choice(n_pop, size=k, replace=False)) if k < n_pop else np.arange(n_pop)
    chosen = np.array(population, dtype=object)[idx]      # sorted by accession

    if strategy == "all-pairs":
        ia, ib = np.triu_indices(k, 1)
        if pairs is not None and fraction is None and proteins is None:
            pass                                          # all pairs of the n proteins
    elif strategy == "random-pairs":
        ia, ib = _random_pairs(rng, k, pairs)
    else:
        ia, ib = _stratified(store, rng, chosen, pairs, bins, pool_factor, threads)
    order = np.lexsort((ib, ia))
    ia, ib = ia[order], ib[order]
    table = pa.table({
        "pair_set": constant_column(name, len(ia)),
        "pair_id": pa.array(np.arange(len(ia), dtype=np.int64)),
        "accession_a": _take(chosen, ia),
        "accession_b": _take(chosen, ib),
    }, schema=LIST_SCHEMA)
    n_proteins = len(np.union1d(ia, ib))
    definition = {"strategy": strategy, "seed": seed, "filter": where, "fraction": fraction,
                  "proteins": proteins, "pairs": pairs, "population": n_pop,
                  "rng": "numpy PCG64, proteins sorted by accession"}
    if strategy == "identity-stratified":
        definition.update({"bins": bins, "pool_factor": pool_factor,
                           "alignment": "PAM250-global-o10-e0.5"})
    if exists:              # everything above validated: now replace
        delete_pair_set(store, name)
    with store.transaction():
        store.con.execute(
            "INSERT INTO pair_sets (name, strategy, seed, filter, fraction, proteins_requested, "
            "pairs_requested, n_population, n_proteins, n_pairs, definition, software_version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, strategy, seed, where, fraction, proteins, pairs, n_pop, n_proteins,
             len(ia), json.dumps(definition), __version__])
        for lo in range(0, max(1, table.num_rows), 2_000_000):
            store.write_part(list_dataset(name), table.slice(lo, 2_000_000))
    store.refresh_views()
    return PairSet(name, strategy, seed, n_pop, n_proteins, len(ia), definition)


def _stratified(store, rng, chosen, pairs, bins, pool_factor, threads):
    """Draw a random pool, align it (PAM250 global 10/0.5), take pairs evenly per identity bin."""
    from protiso.pairs.align import Scoring, align_many

    k = len(chosen)
    pool = min(k * (k - 1) // 2, pairs * pool_factor)
    ia, ib = _random_pairs(rng, k, pool)
    seqs = sequences(store, chosen.tolist())
    res = align_many([seqs[chosen[i]] for i in ia], [seqs[chosen[j]] for j in ib], Scoring(),
                     threads=threads)
    b = np.minimum((res["identity"] * bins).astype(np.int64), bins - 1)
    per_bin = -(-pairs // bins)
    keep = []
    for q in range(bins):
        members = np.flatnonzero(b == q)
        if members.size > per_bin:
            members = np.sort(rng.choice(members, size=per_bin, replace=False))
        keep.append(members)
    keep = np.sort(np.concatenate(keep))
    if keep.size > pairs:
        keep = np.sort(rng.choice(keep, size=pairs, replace=False))
    return ia[keep], ib[keep]


def sequences(store: Store, accessions: list[str]) -> dict[str, str]:
    """accession -> sequence for the given accessions."""
    tab = pa.table({"accession": pa.array(accessions, pa.string())})
    store.con.register("_want_seq", tab)
    try:
        rows = store.con.execute("SELECT p.accession, p.sequence FROM proteins p "
                                 "JOIN _want_seq w USING (accession)").fetchall()
    finally:
        store.con.unregister("_want_seq")
    return dict(rows)


def delete_pair_set(store: Store, name: str) -> None:
    """Remove a pair set with its alignments and distances."""
    with store.transaction():
        for table in ("pair_job_chunks", "pair_jobs"):
            store.con.execute(f"DELETE FROM {table} WHERE pair_set = ?", [name])
        store.con.execute("DELETE FROM pair_sets WHERE name = ?", [name])
        datasets = [r[0] for r in store.con.execute(
            "SELECT DISTINCT dataset FROM parts WHERE dataset LIKE ?", [f"pairs/{name}/%"]).fetchall()]
        for ds in datasets:
            store.delete_dataset(ds)
    store.refresh_views()


def read_pairs(store: Store, name: str, lo: int = 0, hi: int | None = None) -> pa.Table:
    """(pair_id, accession_a, accession_b) of a pair set, pair_id in [lo, hi)."""
    get_pair_set(store, name)
    hi = hi if hi is not None else 2 ** 62
    return store.sql("SELECT pair_id, accession_a, accession_b FROM pair_list "
                     "WHERE pair_set = ? AND pair_id >= ? AND pair_id < ? ORDER BY pair_id",
                     [name, lo, hi])


def pair_indices(store: Store, name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(proteins sorted by accession, index_a, index_b) for all pairs in pair_id order.

    Integer indices keep multi-million pair sets small in memory (no string per pair)."""
    ps = get_pair_set(store, name)
    proteins = [r[0] for r in store.con.execute(
        "SELECT accession_a AS accession FROM pair_list WHERE pair_set = $n UNION "
        "SELECT accession_b FROM pair_list WHERE pair_set = $n ORDER BY accession",
        {"n": name}).fetchall()]
    tab = store.con.execute(
        "WITH prot AS (SELECT accession, (row_number() OVER (ORDER BY accession) - 1)::INTEGER AS idx "
        "  FROM (SELECT accession_a AS accession FROM pair_list WHERE pair_set = $n UNION "
        "        SELECT accession_b FROM pair_list WHERE pair_set = $n)) "
        "SELECT l.pair_id, pa.idx AS ia, pb.idx AS ib FROM pair_list l "
        "JOIN prot pa ON pa.accession = l.accession_a JOIN prot pb ON pb.accession = l.accession_b "
        "WHERE l.pair_set = $n ORDER BY l.pair_id", {"n": name}).fetchnumpy()
    if len(tab["pair_id"]) != ps.n_pairs or (ps.n_pairs and tab["pair_id"][-1] != ps.n_pairs - 1):
        raise InputError(f"pair set {name!r}: pair list has {len(tab['pair_id'])} of "
                         f"{ps.n_pairs} pairs; re-create it with `protiso pairs sample --replace`")
    return proteins, np.asarray(tab["ia"], dtype=np.int32), np.asarray(tab["ib"], dtype=np.int32)
