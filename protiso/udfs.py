"""The Python UDFs every catalog connection gets, listed in one place: plain Python functions
(usable without DuckDB too), registered with their SQL signatures in the store's registry. With
them every isotropy metric the CLI computes is available over any query:
`SELECT organism, isotropy(list(embedding)).* FROM embeddings JOIN proteins USING (accession) GROUP BY organism`."""
from __future__ import annotations

import math

import numpy as np

from protiso.isotropy.metrics import avg_cosine_of, compute_metrics, isoscore_of
from protiso.isotropy.stats import SufficientStats
from protiso.pairs.align import align_identity, align_score
from protiso.store import registry

ISOTROPY_FIELDS = ("n", "d", "isoscore", "effective_dims", "avg_cosine", "isoscore_star", "participation_ratio",
                   "effective_rank", "var_top1", "var_top10", "mean_share")
_STRUCT = "STRUCT(" + ", ".join(f"{f} {'BIGINT' if f in ('n', 'd') else 'DOUBLE'}" for f in ISOTROPY_FIELDS) + ")"


def isotropy_of(vectors) -> dict:
    """Every metric of `protiso isotropy` (IsoScore* shrinks toward the scaled identity, as the
    CLI does without grouping) for a list of vectors; NaN where undefined."""
    X = np.asarray(vectors if vectors is not None else [], dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        return {f: (len(X) if f == "n" else (X.shape[1] if f == "d" and X.ndim == 2 else (0 if f == "d" else math.nan)))
                for f in ISOTROPY_FIELDS}
    m = compute_metrics(SufficientStats.from_matrix(X)).to_dict()
    return {f: m[f] for f in ISOTROPY_FIELDS}


# isoscore(list(embedding)), avg_cosine(list(embedding)): FLOAT[d][] casts to DOUBLE[][]
registry.udf("isoscore", isoscore_of, ["DOUBLE[][]"], "DOUBLE")
registry.udf("avg_cosine", avg_cosine_of, ["DOUBLE[][]"], "DOUBLE")
registry.udf("isotropy", isotropy_of, ["DOUBLE[][]"], _STRUCT)
# align_score(seq_a, seq_b), align_identity(seq_a, seq_b): PAM250 global, gaps 10/0.5
registry.udf("align_score", align_score, ["VARCHAR", "VARCHAR"], "DOUBLE")
registry.udf("align_identity", align_identity, ["VARCHAR", "VARCHAR"], "DOUBLE")
