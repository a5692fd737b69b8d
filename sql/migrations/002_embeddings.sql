-- Embedding runs (issue 3). A run is one configuration of a model, keyed by run_key = hash of
-- (model id, revision, layers, pooling, dtype, length policy, max length); re-running `embed`
-- with the same configuration resumes it. Global embeddings live in Parquet under the dataset
-- embeddings/<run_id>; per-residue vectors (--store-local) under local/<run_id>.

CREATE TABLE runs (
    run_id           VARCHAR PRIMARY KEY,
    run_key          VARCHAR NOT NULL UNIQUE,
    model            VARCHAR NOT NULL,      -- the name given: alias, Hugging Face id or directory
    model_id         VARCHAR,               -- resolved Hugging Face id or local directory
    revision         VARCHAR,               -- snapshot commit hash or local weights fingerprint
    family           VARCHAR,               -- bert | xlnet | esm | t5 | proteinbert | derived
    dim              INTEGER NOT NULL,
    num_layers       INTEGER,               -- model depth (hidden-state indices 0..num_layers)
    layers           INTEGER[] NOT NULL,    -- hidden-state indices embedded (0 = embedding layer)
    pooling          VARCHAR NOT NULL,      -- 'mean' over residue positions, or 'model' (global output)
    dtype            VARCHAR NOT NULL,      -- compute precision actually used
    dtype_requested  VARCHAR,               -- as asked ('auto' is resolved by a parity probe)
    parity_cosine    DOUBLE,                -- min cosine of bf16/fp16 vs fp32 on the probe (auto)
    device           VARCHAR,
    length_policy    VARCHAR NOT NULL,      -- truncate | chunk | skip
    max_length       INTEGER,               -- residues per forward pass
    max_tokens       INTEGER,               -- token budget per batch (last invocation)
    status           VARCHAR NOT NULL,      -- running | done | interrupted | failed
    n_done           BIGINT DEFAULT 0,      -- proteins embedded (incl. truncated and chunked)
    n_truncated      BIGINT DEFAULT 0,
    n_chunked        BIGINT DEFAULT 0,
    n_skipped        BIGINT DEFAULT 0,
    n_failed         BIGINT DEFAULT 0,
    n_residues       BIGINT DEFAULT 0,      -- residues embedded (after truncation)
    local_stats      BOOLEAN DEFAULT false, -- per-residue-type statistics accumulated
    seconds          DOUBLE DEFAULT 0,      -- cumulative embedding time over invocations
    load_seconds     DOUBLE,                -- model load time (last invocation)
    residues_per_s   DOUBLE,                -- throughput of the last invocation
    where_filter     VARCHAR,               -- --where of the last invocation
    software_version VARCHAR,
    details          JSON,                  -- adapter provenance (library versions, tokenisation)
    parent_run       VARCHAR,               -- derived runs (e.g. a transform of another run)
    transform        VARCHAR,
    created_at       TIMESTAMP DEFAULT current_timestamp,
    updated_at       TIMESTAMP DEFAULT current_timestamp
);

-- What happened to each protein of a run. status: done | truncated | chunked (embedded),
-- skipped (too long under --long skip), failed (e.g. out of memory at batch size 1).
CREATE TABLE run_proteins (
    run_id      VARCHAR NOT NULL,
    accession   VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    length      INTEGER,               -- residues of the protein
    n_residues  INTEGER,               -- residues embedded
    reason      VARCHAR,
    in_stats    BOOLEAN DEFAULT false, -- counted in the run's per-residue statistics
    local_stored BOOLEAN DEFAULT false,-- per-residue vectors written (--store-local)
    PRIMARY KEY (run_id, accession)
);

-- Current per-residue-type statistics file of each (run, layer); replaced in the same
-- transaction that registers the parts it covers, so it always matches them.
CREATE TABLE local_stats (
    run_id VARCHAR NOT NULL,
    layer  INTEGER NOT NULL,
    path   VARCHAR NOT NULL,           -- relative to the store root
    n_proteins BIGINT,
    n_residues BIGINT,
    PRIMARY KEY (run_id, layer)
);
