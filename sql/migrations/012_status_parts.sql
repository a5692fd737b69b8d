-- Per-protein statuses as Parquet parts (issue 18): one row per protein in the catalog would be
-- 60 M rows for UniRef50 (61 bytes each, and every commit and resume joins against them). Each
-- flush of a run now appends one small part to the dataset status/<run_id> (accession, status,
-- length, n_residues, reason, in_stats, local_stored, seq), registered like every other part
-- (checksums, atomic writes, object storage), and `run_proteins` is a view: the latest row (by
-- seq) per run and protein (protiso.runs.status). runs.status_seq is the last seq a run used.
--
-- The rows of stores made before this migration are kept in run_proteins_legacy (read by the
-- view as seq 0); the first embed or import after the upgrade moves them into status parts
-- (SQL alone cannot write part files with their checksums) and empties this table.

ALTER TABLE run_proteins RENAME TO run_proteins_legacy;
ALTER TABLE runs ADD COLUMN status_seq BIGINT DEFAULT 0;
