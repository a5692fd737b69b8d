-- Foundation catalog: proteins, annotations, ingest log, Parquet part registry.

CREATE TABLE proteins (
    accession   VARCHAR PRIMARY KEY,
    entry_name  VARCHAR,
    description VARCHAR,
    organism    VARCHAR,
    taxon_id    INTEGER,
    gene        VARCHAR,
    keywords    VARCHAR[],
    length      INTEGER NOT NULL,
    sequence    VARCHAR NOT NULL,
    source      VARCHAR,
    ingested_at TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE annotations (
    accession VARCHAR NOT NULL,
    namespace VARCHAR NOT NULL,
    term      VARCHAR NOT NULL,
    PRIMARY KEY (accession, namespace, term)
);

CREATE SEQUENCE ingest_id_seq;

CREATE TABLE ingests (
    ingest_id        INTEGER PRIMARY KEY DEFAULT nextval('ingest_id_seq'),
    files            VARCHAR[],
    format           VARCHAR,
    n_records        BIGINT,
    n_new            BIGINT,
    n_annotations    BIGINT,
    n_new_annotations BIGINT,
    started_at       TIMESTAMP,
    finished_at      TIMESTAMP,
    software_version VARCHAR
);

-- Every Parquet file the store holds, by dataset ("embeddings/<run_id>", "pairs/<name>", ...).
-- Paths are relative to the store root, so a store directory can be moved.
CREATE TABLE parts (
    dataset    VARCHAR NOT NULL,
    path       VARCHAR PRIMARY KEY,
    n_rows     BIGINT NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
