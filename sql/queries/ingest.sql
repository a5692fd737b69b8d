-- Ingest (protiso.ingest.loader): one parsed batch at a time, registered as `ingest_batch`
-- (proteins) or `ingest_annotations` (annotation rows), inside the ingest's one transaction.

-- name: batch_matches
-- How many proteins of the batch are already in the store (earlier batches included).
SELECT count(*) FROM ingest_batch JOIN proteins USING (accession)

-- name: first_conflict
-- The first protein of the batch (by line) stored with another sequence, and where the stored one came from.
SELECT b.accession, b.line, p.source
FROM ingest_batch b JOIN proteins p USING (accession)
WHERE b.sequence <> p.sequence
ORDER BY b.line
LIMIT 1

-- name: fill_metadata
-- Known proteins with the same sequence: fill in metadata the stored row lacks.
UPDATE proteins p SET
    entry_name = coalesce(p.entry_name, s.entry_name),
    description = coalesce(p.description, s.description),
    organism = coalesce(p.organism, s.organism),
    taxon_id = coalesce(p.taxon_id, s.taxon_id),
    gene = coalesce(p.gene, s.gene),
    keywords = coalesce(p.keywords, s.keywords)
FROM ingest_batch s
WHERE p.accession = s.accession
  AND ((p.entry_name IS NULL AND s.entry_name IS NOT NULL)
    OR (p.description IS NULL AND s.description IS NOT NULL)
    OR (p.organism IS NULL AND s.organism IS NOT NULL)
    OR (p.taxon_id IS NULL AND s.taxon_id IS NOT NULL)
    OR (p.gene IS NULL AND s.gene IS NOT NULL)
    OR (p.keywords IS NULL AND s.keywords IS NOT NULL))

-- name: insert_proteins
-- Every protein of a batch none of whose accessions is in the store yet.
INSERT INTO proteins (accession, entry_name, description, organism, taxon_id, gene, keywords,
                      length, sequence, source)
SELECT accession, entry_name, description, organism, taxon_id, gene, keywords, length, sequence, $source
FROM ingest_batch

-- name: insert_new_proteins
-- The proteins of a batch not yet in the store.
INSERT INTO proteins (accession, entry_name, description, organism, taxon_id, gene, keywords,
                      length, sequence, source)
SELECT accession, entry_name, description, organism, taxon_id, gene, keywords, length, sequence, $source
FROM ingest_batch b
WHERE NOT EXISTS (SELECT 1 FROM proteins p WHERE p.accession = b.accession)

-- name: unknown_accessions
-- How many of the distinct accessions of an annotation batch (`ingest_accessions`) are not proteins.
SELECT count(*) FROM ingest_accessions a
WHERE NOT EXISTS (SELECT 1 FROM proteins p WHERE p.accession = a.accession)

-- name: unknown_annotations
-- Annotation rows of the batch whose accession is not a protein: how many, and the first (by line).
SELECT count(*), arg_min(accession, line), min(line)
FROM ingest_annotations a
WHERE NOT EXISTS (SELECT 1 FROM proteins p WHERE p.accession = a.accession)

-- name: annotations_empty
-- Whether the store holds no annotation rows yet.
SELECT NOT EXISTS (SELECT 1 FROM annotations)

-- name: insert_sorted_annotations
-- All annotation rows of the batch: the loader has checked that none is stored or repeated (rows
-- in strictly increasing order into an empty table); returns how many.
INSERT INTO annotations (accession, namespace, term)
SELECT accession, namespace, term FROM ingest_annotations

-- name: insert_annotations
-- New annotation rows of the batch, each once (rows already stored are left out); returns how many.
INSERT INTO annotations (accession, namespace, term)
SELECT DISTINCT accession, namespace, term
FROM ingest_annotations a
WHERE NOT EXISTS (SELECT 1 FROM annotations s
                  WHERE s.accession = a.accession AND s.namespace = a.namespace AND s.term = a.term)

-- name: insert_known_annotations
-- As insert_annotations, leaving out rows whose accession is not a protein.
INSERT INTO annotations (accession, namespace, term)
SELECT DISTINCT accession, namespace, term
FROM ingest_annotations a
WHERE NOT EXISTS (SELECT 1 FROM annotations s
                  WHERE s.accession = a.accession AND s.namespace = a.namespace AND s.term = a.term)
  AND EXISTS (SELECT 1 FROM proteins p WHERE p.accession = a.accession)

-- name: log_ingest
-- One row per ingest.
INSERT INTO ingests (files, format, n_records, n_new, n_annotations, n_new_annotations, started_at,
                     finished_at, software_version)
VALUES ($files, $format, $n_records, $n_new, $n_annotations, $n_new_annotations, $started,
        current_timestamp, $version)
