-- Isotropy results: one row per (run, layer, level, filter, group) per computation, with
-- provenance. Rows are appended; the views in sql/views/30_metrics.sql pick the latest.

CREATE SEQUENCE metric_id_seq;

CREATE TABLE metrics (
    metric_id           BIGINT PRIMARY KEY DEFAULT nextval('metric_id_seq'),
    batch_id            VARCHAR NOT NULL,     -- rows computed by one `protiso isotropy` call
    run_id              VARCHAR NOT NULL,
    model               VARCHAR,              -- model alias, id, revision, pooling, dtype copied
    model_id            VARCHAR,              -- from the run so a row stands on its own
    revision            VARCHAR,
    pooling             VARCHAR,
    dtype               VARCHAR,
    layer               INTEGER NOT NULL,
    level               VARCHAR NOT NULL CHECK (level IN ('global', 'local')),
    filter              VARCHAR NOT NULL DEFAULT '',  -- the --where expression, '' = all proteins
    group_by            VARCHAR NOT NULL DEFAULT '',  -- the --group-by expression ('residue' at local), '' = none
    group_key           VARCHAR,                      -- the group's value as text; NULL without grouping
    n                   BIGINT NOT NULL,              -- vectors (proteins, or residues at local)
    d                   INTEGER NOT NULL,
    isoscore            DOUBLE,
    effective_dims      DOUBLE,
    avg_cosine          DOUBLE,
    isoscore_star       DOUBLE,
    star_zeta           DOUBLE,
    star_target         VARCHAR,                      -- 'reference' (pooled population) or 'identity'
    participation_ratio DOUBLE,
    effective_rank      DOUBLE,
    var_top1            DOUBLE,
    var_top10           DOUBLE,
    mean_share          DOUBLE,
    bootstrap           INTEGER NOT NULL DEFAULT 0,   -- replicates (Poisson bootstrap over proteins)
    ci_level            DOUBLE,
    seed                BIGINT,
    isoscore_lo         DOUBLE,
    isoscore_hi         DOUBLE,
    effective_dims_lo   DOUBLE,
    effective_dims_hi   DOUBLE,
    avg_cosine_lo       DOUBLE,
    avg_cosine_hi       DOUBLE,
    isoscore_star_lo    DOUBLE,
    isoscore_star_hi    DOUBLE,
    software_version    VARCHAR NOT NULL,
    created_at          TIMESTAMP NOT NULL DEFAULT current_timestamp
);
