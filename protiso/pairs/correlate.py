"""Correlations between embedding geometry and sequence similarity over a pair set.

Everything here reads SQL views and macros (sql/views/41_pair_metrics.sql, 42_pair_spearman.sql):
the paper's matrix (cosine, squared Euclidean, alignment score, identity) plus the GO-term
Jaccard overlap, as the square views pair_correlation_matrix (Pearson, DuckDB corr) and
pair_correlation_matrix_spearman (Pearson on average ranks); GO semantic similarity (Resnik and
Lin per namespace) set beside Jaccard against the same four variables, views
pair_go_correlations[_spearman] (one row per measure, over the pairs where it is defined); and
the regime analysis, the
macro pair_identity_regimes(bins): the embedding metrics per identity bin (the paper: wide
spread at low identity, convergence at high identity). This module checks that the inputs
exist, computes the missing ones, and selects one pair set, alignment, run and layer."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.pairs.align import Scoring
from protiso.pairs.distances import distance_pair_set
from protiso.pairs.functional import go_pair_set, go_semantic_pair_set
from protiso.pairs.jobs import alignment_key, done_job_keys, job_is_done
from protiso.pairs.sample import get_pair_set
from protiso.runs import resolve
from protiso.store import Store, queries

Q = queries("pairs")
QGO = queries("go")
GO_METHODS = {"pearson": QGO.pair_go_correlations_pearson, "spearman": QGO.pair_go_correlations_spearman}
VARIABLES = ("cosine", "sq_euclidean", "score", "identity", "go_jaccard")
METHODS = {"pearson": Q.correlation_square_pearson, "spearman": Q.correlation_square_spearman}
EMBEDDING_METRICS = ("cosine", "sq_euclidean")


@dataclass
class Selection:
    pair_set: str
    alignment: str
    run_id: str
    layer: int

    def params(self) -> dict:
        return {"pair_set": self.pair_set, "alignment": self.alignment, "run_id": self.run_id,
                "layer": self.layer}


def select(store: Store, name: str, run_id: str, layer: int, alignment: str | None = None) -> Selection:
    """Check that pair set `name` has the alignment and the distances for run_id/layer."""
    get_pair_set(store, name)
    done = done_job_keys(store, name, "align")
    if alignment is None:
        default = alignment_key(Scoring())
        alignment = default if default in done or len(done) != 1 else done[0]
    if alignment not in done:
        raise NotFoundError(f"pair set {name!r} has no finished alignment {alignment!r}"
                            + (f"; available: {', '.join(done)}" if done
                               else "; align it first (protiso pairs align)"), param="alignment")
    key = f"{run_id}/L{layer}"
    if not job_is_done(store, name, "distance", key):
        raise NotFoundError(f"pair set {name!r} has no embedding distances for {key}; compute "
                            "them first (protiso pairs distances)")
    return Selection(name, alignment, run_id, layer)


def prepare(store: Store, name: str, model: str, layer: int | None = None,
            alignment: str | None = None, progress=None) -> Selection:
    """Make sure the inputs exist: embedding distances for the run/layer (computed if missing),
    current GO Jaccard overlaps and, when the store holds an ontology, current Resnik and Lin
    similarities; returns the selection to correlate."""
    get_pair_set(store, name)
    run, layer = resolve(store, model, layer)
    if not job_is_done(store, name, "distance", f"{run.run_id}/L{layer}"):
        distance_pair_set(store, name, run.run_id, layer, progress=progress)
    go_pair_set(store, name)
    go_semantic_pair_set(store, name)
    return select(store, name, run.run_id, layer, alignment)


def correlation_matrix(store: Store, sel: Selection, method: str = "pearson") -> pa.Table:
    """The square matrix over VARIABLES (views pair_correlation_matrix[_spearman]): columns
    n_pairs, variable, then one per variable; one row per variable."""
    if method not in METHODS:
        raise InputError(f"correlation method {method!r} must be one of {', '.join(METHODS)}",
                         param="method")
    table = store.sql(METHODS[method], sel.params())
    if not table.num_rows:
        raise NotFoundError(f"no pairs with both alignment and distances in {sel.pair_set!r}")
    return table


def go_correlations(store: Store, sel: Selection, method: str = "pearson") -> pa.Table:
    """GO similarity against embedding and sequence similarity: one row per measure (go_jaccard,
    resnik_bp, lin_bp, resnik_mf, lin_mf, resnik_cc, lin_cc) with the pairs where it is defined
    (n_pairs) and its correlation with cosine, sq_euclidean, score and identity. Measures no pair
    has (no ontology in the store, or no annotation in a namespace) have no row."""
    if method not in GO_METHODS:
        raise InputError(f"correlation method {method!r} must be one of {', '.join(GO_METHODS)}",
                         param="method")
    return store.sql(GO_METHODS[method], sel.params())


def identity_regimes(store: Store, sel: Selection, bins: int = 10) -> pa.Table:
    """Per identity bin [k/bins, (k+1)/bins): pair count, mean, std and 10/50/90th percentiles
    of cosine and squared Euclidean distance, and mean GO Jaccard (macro pair_identity_regimes)."""
    if bins < 1:
        raise InputError(f"identity bins {bins} must be >= 1", param="bins")
    return store.sql(Q.identity_regimes, {**sel.params(), "bins": bins})


def plot(store: Store, sel: Selection, path, max_points: int = 2_000_000) -> None:
    """Hexbin grid: each embedding metric against identity and alignment score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tab = store.sql(Q.plot_points, {**sel.params(), "max_points": max_points})
    cols = {c: tab[c].to_numpy() for c in tab.column_names}
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), constrained_layout=True)
    for i, y in enumerate(EMBEDDING_METRICS):
        for j, x in enumerate(("identity", "score")):
            ax = axes[i][j]
            hb = ax.hexbin(cols[x], cols[y], gridsize=60, bins="log", mincnt=1, cmap="viridis")
            ax.set_xlabel(x)
            ax.set_ylabel(y.replace("_", " "))
            fig.colorbar(hb, ax=ax, label="pairs (log)")
    fig.suptitle(f"{sel.pair_set}: {sel.run_id} layer {sel.layer} vs {sel.alignment} "
                 f"({len(tab):,} pairs)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
