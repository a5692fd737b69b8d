"""Correlations between embedding geometry and sequence similarity over a pair set.

The paper's matrix (cosine, squared Euclidean, alignment score, identity) comes from the SQL
views pair_correlations (Pearson, DuckDB corr) and pair_correlations_spearman (Pearson on
average ranks), extended with the GO-term Jaccard overlap of each pair. The regime analysis
summarises the embedding metrics per identity bin (the paper: wide spread at low identity,
convergence at high identity)."""
from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from protiso.errors import InputError, NotFoundError
from protiso.pairs.align import Scoring
from protiso.pairs.jobs import alignment_key
from protiso.pairs.sample import get_pair_set
from protiso.pairs.distances import distance_pair_set
from protiso.pairs.functional import go_pair_set
from protiso.runs import resolve
from protiso.store import Store

VARIABLES = ("cosine", "sq_euclidean", "score", "identity", "go_jaccard")
METHODS = {"pearson": "pair_correlations", "spearman": "pair_correlations_spearman"}
EMBEDDING_METRICS = ("cosine", "sq_euclidean")


@dataclass
class Selection:
    pair_set: str
    alignment: str
    run_id: str
    layer: int


def select(store: Store, name: str, run_id: str, layer: int, alignment: str | None = None) -> Selection:
    """Check that pair set `name` has the alignment and the distances for run_id/layer."""
    get_pair_set(store, name)
    done = {k for (k,) in store.con.execute(
        "SELECT key FROM pair_jobs WHERE pair_set = ? AND kind = 'align' AND status = 'done'",
        [name]).fetchall()}
    if alignment is None:
        default = alignment_key(Scoring())
        alignment = default if default in done or len(done) != 1 else next(iter(done))
    if alignment not in done:
        raise NotFoundError(f"pair set {name!r} has no finished alignment {alignment!r}"
                            + (f"; available: {', '.join(sorted(done))}" if done
                               else f"; run `protiso pairs align {name}` first"))
    key = f"{run_id}/L{layer}"
    if not store.scalar("SELECT count(*) FROM pair_jobs WHERE pair_set = ? AND kind = 'distance' "
                        "AND key = ? AND status = 'done'", [name, key]):
        raise NotFoundError(f"pair set {name!r} has no embedding distances for {key}; "
                            f"run `protiso pairs distances {name} --model {run_id}`")
    return Selection(name, alignment, run_id, layer)


def prepare(store: Store, name: str, model: str, layer: int | None = None,
            alignment: str | None = None, progress=None) -> Selection:
    """Make sure the inputs exist: embedding distances for the run/layer (computed if missing)
    and current GO Jaccard overlaps; returns the selection to correlate."""
    get_pair_set(store, name)
    run, layer = resolve(store, model, layer)
    run_id = run.run_id
    if not store.scalar("SELECT count(*) FROM pair_jobs WHERE pair_set = ? AND kind = 'distance' "
                        "AND key = ? AND status = 'done'", [name, f"{run_id}/L{layer}"]):
        distance_pair_set(store, name, run_id, layer, progress=progress)
    go_pair_set(store, name)
    return select(store, name, run_id, layer, alignment)


def correlation_matrix(store: Store, sel: Selection, method: str = "pearson") -> pa.Table:
    """Symmetric matrix over VARIABLES: columns variable, n_pairs, then one per variable."""
    if method not in METHODS:
        raise InputError(f"method {method!r} must be one of {', '.join(METHODS)}")
    row = store.sql(f"SELECT * FROM {METHODS[method]} WHERE pair_set = ? AND alignment = ? "
                    "AND run_id = ? AND layer = ?",
                    [sel.pair_set, sel.alignment, sel.run_id, sel.layer]).to_pylist()
    if not row:
        raise NotFoundError(f"no pairs with both alignment and distances in {sel.pair_set!r}")
    r = row[0]
    out = {"variable": list(VARIABLES)}
    for v in VARIABLES:
        col = []
        for u in VARIABLES:
            if u == v:
                col.append(1.0)
            else:
                col.append(r.get(f"{u}_{v}", r.get(f"{v}_{u}")))
        out[v] = col
    out["n_pairs"] = [r["n_pairs"]] * len(VARIABLES)
    return pa.table(out)


def identity_regimes(store: Store, sel: Selection, bins: int = 10) -> pa.Table:
    """Per identity bin [k/bins, (k+1)/bins): pair count, mean, std and 10/50/90th percentiles
    of cosine and squared Euclidean distance, and mean GO Jaccard."""
    if bins < 1:
        raise InputError(f"--bins {bins} must be >= 1")
    stats = []
    for m in EMBEDDING_METRICS:
        stats += [f"avg({m}) AS {m}_mean", f"stddev_samp({m}) AS {m}_std",
                  f"quantile_cont({m}, 0.1) AS {m}_p10", f"median({m}) AS {m}_p50",
                  f"quantile_cont({m}, 0.9) AS {m}_p90"]
    return store.sql(
        "WITH b AS (SELECT least(floor(identity * $bins), $bins - 1)::INTEGER AS k, * "
        "FROM pair_metrics WHERE pair_set = $ps AND alignment = $al AND run_id = $run "
        "AND layer = $layer AND identity IS NOT NULL) "
        "SELECT k / $bins::DOUBLE AS identity_from, (k + 1) / $bins::DOUBLE AS identity_to, "
        f"count(*) AS n_pairs, {', '.join(stats)}, avg(go_jaccard) AS go_jaccard_mean "
        "FROM b GROUP BY k ORDER BY k",
        {"bins": bins, "ps": sel.pair_set, "al": sel.alignment, "run": sel.run_id,
         "layer": sel.layer})


def plot(store: Store, sel: Selection, path, max_points: int = 2_000_000) -> None:
    """Hexbin grid: each embedding metric against identity and alignment score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tab = store.sql("SELECT cosine, sq_euclidean, score, identity FROM pair_metrics "
                    "WHERE pair_set = ? AND alignment = ? AND run_id = ? AND layer = ? "
                    "AND identity IS NOT NULL AND cosine IS NOT NULL "
                    "ORDER BY hash(pair_id) LIMIT ?",
                    [sel.pair_set, sel.alignment, sel.run_id, sel.layer, max_points])
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
