"""GO semantic similarity of proteins: information content, Resnik, Lin, best-match average.

- Annotations propagate up is_a/part_of (the true-path rule): a protein annotated to t counts
  once for t and for every ancestor of t in the same namespace (go_ancestors, self rows
  included). count(t) = number of distinct proteins reaching t.
- p(t) = count(t) / N, N = number of proteins with at least one annotation in the namespace,
  which is the count of the namespace's root (every term reaches it); IC(t) = -ln p(t), so the
  root has IC 0. Terms no protein reaches are left out (their IC would be infinite).
- Resnik(a, b) = IC of the most informative common ancestor (MICA); 0 when the only common
  ancestor is the root, or when there is none. Lin(a, b) = 2 IC(MICA) / (IC(a) + IC(b));
  where IC(a) + IC(b) = 0 (terms every protein reaches) it is 1 for a = b and 0 otherwise,
  as in goatools.
- Best-match average of two proteins with term sets A, B (their direct annotations in that
  namespace, duplicates removed; the GOSemSim 'BMA'):
  (sum_a max_b s(a, b) + sum_b max_a s(a, b)) / (|A| + |B|). NaN when either set is empty.

Annotations to obsolete terms and to terms not in the ontology are dropped and counted;
the namespace comes from the ontology (annotation files label aspects BPO/P/... variously).
Vectorised: MICA of a batch of term pairs is a row-wise max of the elementwise product of
two gathered rows of the sparse ancestor matrix (IC-weighted x boolean), and BMA uses
segment max/sum reductions over the flattened term-pair grid of each protein pair.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from protiso.errors import InputError, NotFoundError

NAMESPACE_ALIASES = {
    "bpo": "biological_process", "bp": "biological_process", "p": "biological_process",
    "mfo": "molecular_function", "mf": "molecular_function", "f": "molecular_function",
    "cco": "cellular_component", "cc": "cellular_component", "c": "cellular_component",
}
METHODS = ("resnik", "lin")
BATCH_ENTRIES = 1 << 21  # term pairs expanded at once in pair_similarity (bounds memory)


def canonical_namespace(namespace: str) -> str:
    """GO's namespace name for an aspect alias (BPO, BP, P -> biological_process, ...)."""
    return NAMESPACE_ALIASES.get(namespace.strip().lower(), namespace.strip())


@dataclass
class NamespaceIC:
    """Information content and annotations of one namespace (terms reached by >= 1 protein)."""

    namespace: str
    terms: np.ndarray  # term ids, sorted
    count: np.ndarray  # proteins reaching each term (true-path rule)
    ic: np.ndarray  # -ln(count / n_proteins)
    n_proteins: int  # proteins annotated in the namespace (= the root's count)
    ancestors: sp.csr_matrix  # terms x terms, 1 where column is an ancestor of row (or itself)
    proteins: np.ndarray  # accessions, sorted
    protein_terms: sp.csr_matrix  # proteins x terms, the direct annotations
    weighted: sp.csr_matrix = None  # ancestors with each entry = the ancestor's IC

    def __post_init__(self):
        if self.weighted is None:
            self.weighted = self.ancestors.multiply(self.ic[None, :]).tocsr()

    def term_index(self, terms) -> np.ndarray:
        """Row of each term in `terms`, -1 where the namespace has no count for it."""
        return _lookup(self.terms, terms)


@dataclass
class InformationContent:
    """Per-namespace IC from an annotation corpus; counts of what was dropped."""

    namespaces: dict[str, NamespaceIC]
    n_annotations: int  # (protein, term) pairs used
    n_unknown: int  # annotation rows whose term is not in the ontology (or null)
    n_obsolete: int  # annotation rows to obsolete terms
    dropped_examples: list[str] = field(default_factory=list)

    @classmethod
    def from_tables(cls, ancestors: pa.Table, annotations: pa.Table, terms: pa.Table,
                    alt_ids: pa.Table | None = None) -> "InformationContent":
        """Build from go_ancestors(term, ancestor, ...), annotations(accession, term, ...)
        and go_terms(term, namespace, obsolete, ...); `alt_ids`(alt_id, term) maps
        secondary ids in the annotations to primary ones."""
        for table, cols, what in ((ancestors, ("term", "ancestor"), "ancestors"),
                                  (annotations, ("accession", "term"), "annotations"),
                                  (terms, ("term", "namespace", "obsolete"), "terms")):
            missing = [c for c in cols if c not in table.column_names]
            if missing:
                raise InputError(f"{what} table lacks column(s) {', '.join(missing)}; "
                                 f"it needs {', '.join(cols)}")
        ids_arrow = pc.unique(terms.column("term").combine_chunks().cast(pa.string()))
        ids_arrow = ids_arrow.take(pc.sort_indices(ids_arrow))
        ids = np.asarray(ids_arrow.to_pylist(), dtype=object)
        row = _index_in(ids_arrow, terms.column("term"))
        ns_of = np.empty(len(ids), dtype=object)
        ns_of[row] = [n or "" for n in terms.column("namespace").to_pylist()]
        obsolete = np.zeros(len(ids), bool)
        obsolete[row] = terms.column("obsolete").fill_null(False).to_numpy(zero_copy_only=False)
        ann = annotations.column("term").cast(pa.string()).combine_chunks()
        acc = annotations.column("accession").cast(pa.string()).combine_chunks()
        if alt_ids is not None and alt_ids.num_rows:
            k = _index_in(alt_ids.column("alt_id").combine_chunks().cast(pa.string()), ann)
            primary = alt_ids.column("term").combine_chunks().cast(pa.string())
            ann = pc.if_else(pa.array(k >= 0), primary.take(pa.array(np.maximum(k, 0))), ann)
        t = _index_in(ids_arrow, ann)
        unknown = (t < 0) | acc.is_null().to_numpy(zero_copy_only=False)
        obs = ~unknown & obsolete[np.maximum(t, 0)]
        examples = []
        for mask, why in ((unknown, "not in the ontology"), (obs, "obsolete")):
            rows = np.flatnonzero(mask)[:3]
            examples += [f"{acc[int(r)]}:{ann[int(r)]} ({why})" for r in rows]
        keep = ~unknown & ~obs
        t = t[keep]
        acc_kept = acc.filter(pa.array(keep))
        prots_arrow = pc.unique(acc_kept)
        prots_arrow = prots_arrow.take(pc.sort_indices(prots_arrow))
        prots = np.asarray(prots_arrow.to_pylist(), dtype=object)
        p = _index_in(prots_arrow, acc_kept)
        nt = len(ids)
        direct = sp.csr_matrix((np.ones(len(t)), (p, t)), shape=(len(prots), nt))
        direct.sum_duplicates()
        direct.data[:] = 1.0
        at = _index_in(ids_arrow, ancestors.column("term"))
        aa = _index_in(ids_arrow, ancestors.column("ancestor"))
        ok = (at >= 0) & (aa >= 0)
        at, aa = at[ok], aa[ok]
        ok = ~obsolete[aa] & (ns_of[at] == ns_of[aa])
        anc = sp.csr_matrix((np.ones(int(ok.sum())), (at[ok], aa[ok])), shape=(nt, nt))
        anc = anc + sp.identity(nt, format="csr")  # self rows, even if the table lacks them
        anc.data[:] = 1.0
        namespaces = {}
        for ns in sorted(set(ns_of[np.unique(t)].tolist())):
            namespaces[ns] = _namespace_ic(ns, ids, ns_of == ns, direct, anc, prots)
        return cls(namespaces, int(direct.nnz), int(unknown.sum()), int(obs.sum()), examples)

    def get(self, namespace: str) -> NamespaceIC:
        """The namespace's IC (aliases such as BPO accepted)."""
        ns = canonical_namespace(namespace)
        if ns not in self.namespaces:
            named = namespace if ns == namespace else f"{namespace} ({ns})"
            raise NotFoundError(f"no annotations in namespace {named}; namespaces with "
                                f"annotations: {', '.join(self.namespaces) or 'none'}")
        return self.namespaces[ns]

    def ic_table(self) -> pa.Table:
        """(namespace, term, count, ic) for every term with a count."""
        parts = [(ns, x) for ns, x in self.namespaces.items()]
        return pa.table({
            "namespace": pa.array([ns for ns, x in parts for _ in range(len(x.terms))], pa.string()),
            "term": pa.array([s for _, x in parts for s in x.terms.tolist()], pa.string()),
            "count": pa.array(np.concatenate([x.count for _, x in parts] or [np.zeros(0, np.int64)]), pa.int64()),
            "ic": pa.array(np.concatenate([x.ic for _, x in parts] or [np.zeros(0)]), pa.float64()),
        })


def _index_in(value_set: pa.Array, values) -> np.ndarray:
    """Position of each value in value_set (Arrow, C++ hash lookup), -1 where absent."""
    values = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
    k = pc.index_in(values.cast(pa.string()), value_set=value_set)
    return k.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _lookup(ids: np.ndarray, values) -> np.ndarray:
    """Index of each value in an id array, -1 where absent."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array([str(v) for v in values], pa.string())
    return _index_in(pa.array(ids, pa.string()), values)


def _namespace_ic(ns, ids, in_ns, direct, anc, prots) -> NamespaceIC:
    cols = np.flatnonzero(in_ns)
    d = direct[:, cols]  # proteins x namespace terms
    has = np.diff(d.indptr) > 0
    d = d[has]
    a = anc[cols][:, cols]
    reach = (d @ a).tocsr()  # proteins x terms: > 0 where the protein reaches the term
    count = np.bincount(reach.indices, minlength=len(cols))
    used = np.flatnonzero(count > 0)
    n = int(has.sum())
    return NamespaceIC(
        namespace=ns, terms=ids[cols[used]], count=count[used].astype(np.int64),
        ic=-np.log(count[used] / n), n_proteins=n,
        ancestors=a[used][:, used].tocsr(), proteins=prots[has],
        protein_terms=d[:, used].tocsr())


def _term_pair_sims(nsic: NamespaceIC, ti: np.ndarray, tj: np.ndarray, method: str) -> np.ndarray:
    """Resnik or Lin similarity of term index pairs (ti[k], tj[k])."""
    if method not in METHODS:
        raise InputError(f"unknown similarity method {method!r}; choose one of {', '.join(METHODS)}")
    if len(ti) == 0:
        return np.zeros(0)
    out = np.empty(len(ti))
    step = 1 << 18
    for s in range(0, len(ti), step):
        x = nsic.weighted[ti[s:s + step]]
        y = nsic.ancestors[tj[s:s + step]]
        out[s:s + step] = x.multiply(y).max(axis=1).toarray().ravel()
    if method == "lin":
        denom = nsic.ic[ti] + nsic.ic[tj]
        out = np.where(denom > 0, 2.0 * out / np.where(denom > 0, denom, 1.0),
                       (ti == tj).astype(np.float64))
    return out


def term_similarity(ic: InformationContent, terms_a, terms_b, namespace: str,
                    method: str = "resnik") -> np.ndarray:
    """Resnik or Lin similarity of each term pair (terms_a[k], terms_b[k]) in a namespace;
    NaN where a term has no count there."""
    nsic = ic.get(namespace)
    ia, ib = nsic.term_index(terms_a), nsic.term_index(terms_b)
    if len(ia) != len(ib):
        raise InputError(f"terms_a has {len(ia)} terms but terms_b has {len(ib)}; give equal lengths")
    out = np.full(len(ia), math.nan)
    ok = (ia >= 0) & (ib >= 0)
    out[ok] = _term_pair_sims(nsic, ia[ok], ib[ok], method)
    return out


def pair_similarity(ic: InformationContent, prots_a, prots_b, namespace: str,
                    method: str = "resnik", batch_entries: int = BATCH_ENTRIES) -> np.ndarray:
    """Best-match-average similarity of each protein pair (prots_a[k], prots_b[k]) in one
    namespace; NaN where either protein has no annotation there."""
    nsic = ic.get(namespace)
    if method not in METHODS:
        raise InputError(f"unknown similarity method {method!r}; choose one of {', '.join(METHODS)}")
    pa_, pb_ = _lookup(nsic.proteins, prots_a), _lookup(nsic.proteins, prots_b)
    if len(pa_) != len(pb_):
        raise InputError(f"prots_a has {len(pa_)} accessions but prots_b has {len(pb_)}; "
                         "give equal lengths")
    out = np.full(len(pa_), math.nan)
    valid = np.flatnonzero((pa_ >= 0) & (pb_ >= 0))
    if len(valid) == 0:
        return out
    indptr, indices = nsic.protein_terms.indptr, nsic.protein_terms.indices
    m_all = (indptr[pa_[valid] + 1] - indptr[pa_[valid]]).astype(np.int64)
    n_all = (indptr[pb_[valid] + 1] - indptr[pb_[valid]]).astype(np.int64)
    cum = np.cumsum(m_all * n_all)
    lo = 0
    while lo < len(valid):  # chunks of about batch_entries term pairs (at least one pair)
        base = cum[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(cum, base + batch_entries, side="right")))
        k = valid[lo:hi]
        out[k] = _bma(nsic, indptr, indices, pa_[k], pb_[k], m_all[lo:hi], n_all[lo:hi], method)
        lo = hi
    return out


def _bma(nsic, indptr, indices, a, b, m, n, method) -> np.ndarray:
    """BMA of protein pairs with m, n (>= 1) terms, over the flattened (pair, i, j) grid."""
    size = m * n
    off = np.concatenate([[0], np.cumsum(size)[:-1]])
    pair = np.repeat(np.arange(len(a)), size)
    r = np.arange(int(size.sum())) - off[pair]
    i, j = r // n[pair], r % n[pair]  # order (pair, i, j)
    ti = indices[indptr[a][pair] + i]
    tj = indices[indptr[b][pair] + j]
    lo_t, hi_t = np.minimum(ti, tj), np.maximum(ti, tj)  # similarity is symmetric
    keys, inverse = np.unique(lo_t.astype(np.int64) * len(nsic.terms) + hi_t, return_inverse=True)
    s = _term_pair_sims(nsic, keys // len(nsic.terms), keys % len(nsic.terms), method)[inverse]
    row_max = np.maximum.reduceat(s, np.flatnonzero(j == 0))  # per (pair, i), in that order
    row_sum = np.add.reduceat(row_max, np.concatenate([[0], np.cumsum(m)[:-1]]))
    jj, ii = r // m[pair], r % m[pair]  # order (pair, j, i)
    col_max = np.maximum.reduceat(s[off[pair] + ii * n[pair] + jj], np.flatnonzero(ii == 0))
    col_sum = np.add.reduceat(col_max, np.concatenate([[0], np.cumsum(n)[:-1]]))
    return (row_sum + col_sum) / (m + n)
