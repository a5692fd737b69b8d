-- Protein pairs (issue 5). A pair set is a reproducible sample of protein pairs; its pair list,
-- alignments and embedding distances are Parquet datasets under store/data/pairs/<name>/...
-- listed in `parts`; the tables here hold their definitions and the progress of long jobs.
CREATE TABLE IF NOT EXISTS pair_sets (
    name             VARCHAR PRIMARY KEY,
    strategy         VARCHAR NOT NULL,     -- all-pairs | random-pairs | identity-stratified
    seed             BIGINT NOT NULL,
    where_sql        VARCHAR,              -- --where filter over protein_meta (NULL: all)
    fraction         DOUBLE,               -- requested fraction of the filtered proteins
    proteins_requested BIGINT,
    pairs_requested  BIGINT,
    n_population     BIGINT NOT NULL,      -- proteins matching the filter
    n_proteins       BIGINT NOT NULL,      -- distinct proteins in the pairs
    n_pairs          BIGINT NOT NULL,
    definition       JSON NOT NULL,        -- everything needed to rebuild the set
    software_version VARCHAR,
    created_at       TIMESTAMP DEFAULT current_timestamp
);

-- One row per computation over a pair set: an alignment (kind 'align', key = scoring) or the
-- embedding distances of one run and layer (kind 'distance', key = '<run_id>/L<layer>').
CREATE TABLE IF NOT EXISTS pair_jobs (
    pair_set         VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    key              VARCHAR NOT NULL,
    params           JSON NOT NULL,
    chunk_size       BIGINT NOT NULL,
    n_chunks         BIGINT NOT NULL,
    status           VARCHAR NOT NULL,     -- running | done
    seconds          DOUBLE,               -- compute time summed over the chunks
    software_version VARCHAR,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    finished_at      TIMESTAMP,
    PRIMARY KEY (pair_set, kind, key)
);

-- Finished chunks (pair_id in [chunk * chunk_size, (chunk + 1) * chunk_size)): a job resumes
-- by skipping them. Written in the same transaction as the chunk's Parquet part.
CREATE TABLE IF NOT EXISTS pair_job_chunks (
    pair_set VARCHAR NOT NULL,
    kind     VARCHAR NOT NULL,
    key      VARCHAR NOT NULL,
    chunk    BIGINT NOT NULL,
    path     VARCHAR NOT NULL,
    seconds  DOUBLE,
    PRIMARY KEY (pair_set, kind, key, chunk)
);
