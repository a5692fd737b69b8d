"""The Gene Ontology: OBO parsing into Arrow tables, the ancestor closure, and semantic
similarity (information content, Resnik, Lin, best-match average) of annotated proteins.

`read_obo(path)` gives `GoTables` (go_terms, go_edges, go_ancestors, go_alt_ids);
`InformationContent.from_tables(...)` and `pair_similarity(...)` compare proteins by their
GO annotations, the functional yardstick that embedding geometry is checked against.
In the store: `protiso.go.store` (ingest of an OBO file), `protiso.go.subsets` (--where /
--group-by over GO terms) and `protiso.go.names` (names wherever a GO id is shown).
"""
from protiso.go.obo import (
    CLOSURE_RELATIONS,
    GoTables,
    ancestor_closure,
    load_obo_document,
    read_obo,
    tables_from_document,
)
from protiso.go.semantic import (
    InformationContent,
    canonical_namespace,
    pair_similarity,
    term_similarity,
)

__all__ = [
    "CLOSURE_RELATIONS", "GoTables", "InformationContent", "ancestor_closure",
    "canonical_namespace", "load_obo_document", "pair_similarity", "read_obo",
    "tables_from_document", "term_similarity",
]
