-- Nearest-neighbour indexes (issue 6): one FAISS index file per (run, layer, kind, metric)
-- under store/indexes/<run_id>/, its build parameters, the embedding parts it covers
-- (for staleness checks), and its id map (FAISS id -> accession).
CREATE TABLE IF NOT EXISTS nn_indexes (
    index_id         VARCHAR PRIMARY KEY,      -- '<run_id>/L<layer>/<kind>-<metric>'
    run_id           VARCHAR NOT NULL,
    layer            SMALLINT NOT NULL,
    kind             VARCHAR NOT NULL,         -- flat | hnsw | ivf
    metric           VARCHAR NOT NULL,         -- cosine | l2
    dim              INTEGER NOT NULL,
    n_vectors        BIGINT NOT NULL,
    params           JSON NOT NULL,            -- build and default search parameters
    path             VARCHAR NOT NULL,         -- index file, relative to the store root
    source_parts     VARCHAR[] NOT NULL,       -- embedding parts covered (relative paths)
    build_seconds    DOUBLE,
    faiss_version    VARCHAR,
    software_version VARCHAR,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    updated_at       TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS nn_index_ids (
    index_id  VARCHAR NOT NULL,
    id        BIGINT NOT NULL,                 -- FAISS id (position in the index)
    accession VARCHAR NOT NULL
);

-- Isotropy-correcting transforms: a derived run = parent run's layer mapped by
-- y = (x - mean) @ A; the parameters (mean, A) live in store/transforms/<run_id>.npz.
CREATE TABLE IF NOT EXISTS nn_transforms (
    run_id        VARCHAR PRIMARY KEY,         -- the derived run
    parent_run    VARCHAR NOT NULL,
    parent_layer  SMALLINT NOT NULL,
    transform     VARCHAR NOT NULL,            -- center | whiten | abtt | pca
    param         INTEGER,                     -- abtt: PCs removed; pca: dims kept
    in_dim        INTEGER NOT NULL,
    out_dim       INTEGER NOT NULL,
    n_fit         BIGINT NOT NULL,             -- vectors the transform was fitted on
    path          VARCHAR NOT NULL,            -- parameters file, relative to the store root
    created_at    TIMESTAMP DEFAULT current_timestamp
);
