"""Views over the pair Parquet parts: pair_list, pairs (alignments), pair_distances,
pair_go (GO-term Jaccard).

Datasets: pairs/<set>/list, pairs/<set>/align/<alignment>, pairs/<set>/dist/<run_id>/L<layer>,
pairs/<set>/go/annotations.
Every part carries its pair set (and alignment key, or run and layer) as columns, so each
view is one read_parquet over all parts of its kind. Without parts the empty typed views
from sql/views/40_pairs.sql stay in place."""
from __future__ import annotations

import re

from protiso.store import parquet_source, queries, registry

Q = queries("pairs")

# (named query creating the view, datasets it reads)
_KINDS = (
    ("view_pair_list", re.compile(r"^pairs/[^/]+/list$")),
    ("view_pairs", re.compile(r"^pairs/[^/]+/align/[^/]+$")),
    ("view_pair_distances", re.compile(r"^pairs/[^/]+/dist/.+$")),
    ("view_pair_go", re.compile(r"^pairs/[^/]+/go/[^/]+$")),
)


@registry.views
def create_pair_views(store) -> None:
    """One view per kind of pair part, over all its parts."""
    rows = store.execute(Q.pair_parts).fetchall()
    for query, pattern in _KINDS:
        paths = [store.root / p for ds, p in rows if pattern.match(ds) and (store.root / p).exists()]
        if paths:
            store.con.execute(Q[query].replace("$source", parquet_source(paths)))
