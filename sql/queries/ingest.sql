-- Ingest (protiso.ingest.loader): one parsed batch at a time, seen as `ingest_batch` (proteins),
-- `ingest_annotations` (annotation rows) or `ingest_accessions` (their distinct accessions),
-- inside the ingest's one transaction. annotations has no index (migration 013): these queries
-- keep its rows unique.

-- name: set_source
-- The input file the next protein batches come from (proteins.source).
SET VARIABLE protiso_ingest_source = $source

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
SELECT accession, entry_name, description, organism, taxon_id, gene, keywords, length, sequence,
       getvariable('protiso_ingest_source')
FROM ingest_batch

-- name: insert_new_proteins
-- The proteins of a batch not yet in the store.
INSERT INTO proteins (accession, entry_name, description, organism, taxon_id, gene, keywords,
                      length, sequence, source)
SELECT accession, entry_name, description, organism, taxon_id, gene, keywords, length, sequence,
       getvariable('protiso_ingest_source')
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
-- New annotation rows of the batch, each once (EXCEPT is a set difference); returns how many. The
-- stored side is cut to the batch's accessions first (re-ingesting Swiss-Prot's 4.5 M rows over
-- themselves: 1.4 s, where an anti-join against every stored row took 9.5 s).
INSERT INTO annotations (accession, namespace, term)
SELECT accession, namespace, term FROM ingest_annotations
EXCEPT
SELECT accession, namespace, term FROM annotations
WHERE accession IN (SELECT accession FROM ingest_annotations)

-- name: insert_known_annotations
-- As insert_annotations, leaving out rows whose accession is not a protein.
INSERT INTO annotations (accession, namespace, term)
SELECT accession, namespace, term FROM ingest_annotations
WHERE accession IN (SELECT accession FROM proteins)
EXCEPT
SELECT accession, namespace, term FROM annotations
WHERE accession IN (SELECT accession FROM ingest_annotations)

-- name: protein_count
-- Proteins in the store.
SELECT count(*) FROM proteins

-- name: clear_source
-- The ingest is over: its variable goes.
RESET VARIABLE protiso_ingest_source

-- name: log_ingest
-- One row per ingest.
INSERT INTO ingests (files, format, n_records, n_new, n_annotations, n_new_annotations, started_at,
                     finished_at, software_version)
VALUES ($files, $format, $n_records, $n_new, $n_annotations, $n_new_annotations, $started,
        current_timestamp, $version)
