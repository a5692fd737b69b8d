"""Views over the pair Parquet parts: pair_list, pairs (alignments), pair_distances,
pair_go (GO-term Jaccard), pair_go_semantic (Resnik and Lin per namespace).

Datasets: pairs/<set>/list, pairs/<set>/align/<alignment>, pairs/<set>/dist/<run_id>/L<layer>,
pairs/<set>/go/annotations, pairs/<set>/go/semantic.
Every part carries its pair set (and alignment key, or run and layer) as columns, so each
view is one read_parquet over all parts of its kind. Without parts the empty typed views
from sql/views/40_pairs.sql stay in place."""
from __future__ import annotations

import re

from protiso.store import parquet_source, queries, registry

Q = queries("pairs")
QGO = queries("go")

# (SQL creating the view, datasets it reads)
_KINDS = (
    (Q.view_pair_list, re.compile(r"^pairs/[^/]+/list$")),
    (Q.view_pairs, re.compile(r"^pairs/[^/]+/align/[^/]+$")),
    (Q.view_pair_distances, re.compile(r"^pairs/[^/]+/dist/.+$")),
    (Q.view_pair_go, re.compile(r"^pairs/[^/]+/go/annotations$")),
    (QGO.view_pair_go_semantic, re.compile(r"^pairs/[^/]+/go/semantic$")),
)


@registry.views
def create_pair_views(store) -> None:
    """One view per kind of pair part, over all its parts."""
    rows = store.execute(Q.pair_parts).fetchall()
    for sql, pattern in _KINDS:
        paths = [store.part_location(p) for ds, p in rows           # data/ or the data location
                 if pattern.match(ds) and store.part_problem(p, None) is None]
        if paths:
            store.con.execute(sql.replace("$source", parquet_source(paths)))
