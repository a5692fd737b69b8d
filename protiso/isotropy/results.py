"""Isotropy results: one `metrics` row per run, layer, level, filter and group (metrics,
intervals, bias, rogue dimensions, intrinsic dimension, provenance), and their storage."""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import pyarrow as pa

from protiso._version import __version__
from protiso.isotropy.metrics import IsotropyMetrics
from protiso.store import Store, queries

Q = queries("isotropy")
CI_METRICS = ("isoscore", "effective_dims", "avg_cosine", "isoscore_star")   # metrics given intervals


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
    bias: dict = field(default_factory=dict)     # metric -> bootstrap bias
    ci_method: str | None = None
    jackknife_blocks: int | None = None
    rogue: object = None                         # rogue.RogueDimensions
    intrinsic: object = None                     # intrinsic.IntrinsicSummary (--intrinsic)

    def row(self) -> dict:
        """The result as one `metrics` row (NaN as None), plus 'rogue_dimensions' (the top
        dimensions with contribution, share and variance share), which is not stored."""
        row = {"run_id": self.run_id, "model": self.model, **self.provenance, "layer": self.layer,
               "level": self.level, "filter": self.filter, "group_by": self.group_by,
               "group_key": self.group_key, **self.metrics.to_dict(), "bootstrap": self.bootstrap,
               "ci_level": self.ci_level, "seed": self.seed, "ci_method": self.ci_method,
               "jackknife_blocks": self.jackknife_blocks}
        for name in CI_METRICS:
            lo, hi = self.ci.get(name, (None, None))
            row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
            row[f"{name}_bias"] = self.bias.get(name)
        i = self.intrinsic
        row.update({"intrinsic_dim_twonn": i.twonn if i else None, "intrinsic_dim_mle": i.mle if i else None,
                    "intrinsic_k": i.k if i else None, "intrinsic_n_duplicates": i.n_duplicates if i else None})
        r = self.rogue
        top = r.top_rows() if r is not None else []
        row.update({"rogue_dims": [t["dim"] for t in top] if r is not None else None,
                    "rogue_shares": [t["share"] for t in top] if r is not None else None,
                    "rogue_top_share": r.top_share if r is not None else None,
                    "rogue_dimensions": top if r is not None else None})
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
