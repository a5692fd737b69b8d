-- Importing and exporting embedding files (protiso.interchange.importer / exporter).

-- name: protein_lengths
-- Every protein of the store with its length (an import checks its accessions against them).
SELECT accession, length FROM proteins

-- name: protein_sequences
-- Every protein with its sequence (per-residue imports: lengths and residue types).
SELECT accession, length, sequence FROM proteins

-- name: import_taken
-- The run that already holds an import's run id or key, if any.
SELECT run_id FROM runs WHERE run_id = $run_id OR run_key = $key LIMIT 1

-- name: insert_imported_run
-- The run of an import (family 'imported'), committed with its parts: counters start at zero
-- and are added by the run writer's flush in the same transaction; details hold the provenance.
INSERT INTO runs (run_id, run_key, model, model_id, revision, family, dim, num_layers, layers, pooling,
    dtype, device, length_policy, max_length, status, filter, software_version, details)
VALUES ($run_id, $key, $model, $model_id, NULL, 'imported', $dim, NULL, $layers, $pooling,
    $dtype, NULL, 'imported', NULL, 'done', '', $version, $details)
