-- Annotations without a PRIMARY KEY (issue 15): DuckDB's ART index over (accession, namespace,
-- term) cost more than the rest of a full ingest (4.5 M Swiss-Prot GO rows: about 10 s and 1 GB
-- to build, 500 MB on disk beside 20 MB of data) and no query uses it (joins and filters scan).
-- Rows stay unique: protiso.ingest.loader inserts only rows not yet stored, each once
-- (sql/queries/ingest.sql), and tests/test_ingest.py checks it.

CREATE TABLE annotations_013 (
    accession VARCHAR NOT NULL,
    namespace VARCHAR NOT NULL,
    term      VARCHAR NOT NULL
);
INSERT INTO annotations_013 SELECT accession, namespace, term FROM annotations ORDER BY ALL;
DROP TABLE annotations;
ALTER TABLE annotations_013 RENAME TO annotations;
