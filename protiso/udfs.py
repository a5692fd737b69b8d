"""The Python UDFs every catalog connection gets, listed in one place: plain Python functions
(usable without DuckDB too), registered with their SQL signatures in the store's registry."""
from __future__ import annotations

from protiso.isotropy.metrics import avg_cosine_of, isoscore_of
from protiso.pairs.align import align_identity, align_score
from protiso.store import registry

# isoscore(list(embedding)), avg_cosine(list(embedding)): FLOAT[d][] casts to DOUBLE[][]
registry.udf("isoscore", isoscore_of, ["DOUBLE[][]"], "DOUBLE")
registry.udf("avg_cosine", avg_cosine_of, ["DOUBLE[][]"], "DOUBLE")
# align_score(seq_a, seq_b), align_identity(seq_a, seq_b): PAM250 global, gaps 10/0.5
registry.udf("align_score", align_score, ["VARCHAR", "VARCHAR"], "DOUBLE")
registry.udf("align_identity", align_identity, ["VARCHAR", "VARCHAR"], "DOUBLE")
