-- The Gene Ontology (protiso ingest go.obo): one ontology per store, replaced as a whole by the
-- next OBO ingest. Filled by protiso.go.store from protiso.go.obo's tables.

-- One row per [Term] frame. depth: length of the shortest is_a/part_of path to the root of its
-- namespace (root = 0); NULL for obsolete terms.
CREATE TABLE go_terms (
    term      VARCHAR NOT NULL,
    name      VARCHAR,
    namespace VARCHAR,
    obsolete  BOOLEAN NOT NULL,
    depth     INTEGER
);

-- Every is_a and relationship clause: relation 'is_a', 'part_of', 'regulates', ...
CREATE TABLE go_edges (
    child    VARCHAR NOT NULL,
    parent   VARCHAR NOT NULL,
    relation VARCHAR NOT NULL
);

-- The closure over is_a and part_of (the true-path rule), with a self row (t, t, 0) per term;
-- distance = shortest path length.
CREATE TABLE go_ancestors (
    term     VARCHAR NOT NULL,
    ancestor VARCHAR NOT NULL,
    distance INTEGER NOT NULL
);

-- Secondary ids (alt_id clauses), so annotations made against them resolve.
CREATE TABLE go_alt_ids (
    alt_id VARCHAR NOT NULL,
    term   VARCHAR NOT NULL
);

-- Every id a term is known by, mapped to the primary id: (t, t) per term plus (alt_id, t).
CREATE TABLE go_ids (
    id   VARCHAR NOT NULL,
    term VARCHAR NOT NULL
);

-- Where the ontology came from (at most one row).
CREATE TABLE go_ontology (
    source           VARCHAR NOT NULL,
    data_version     VARCHAR,
    sha256           VARCHAR,
    n_terms          BIGINT,
    n_edges          BIGINT,
    n_ancestors      BIGINT,
    n_alt_ids        BIGINT,
    ingested_at      TIMESTAMP DEFAULT current_timestamp,
    software_version VARCHAR
);
