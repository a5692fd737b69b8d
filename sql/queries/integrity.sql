-- What lost files mean for each area's catalog rows (protiso.integrity, used by `protiso repair`).

-- name: statistics_files
-- Per-residue-type statistics checkpoints of the runs.
SELECT path, NULL::BIGINT AS size_bytes, NULL::VARCHAR AS sha256 FROM local_stats

-- name: index_files
-- FAISS index files with the size and checksum recorded when they were written.
SELECT path, size_bytes, sha256 FROM nn_indexes

-- name: transform_files
-- Parameters of isotropy-correcting transforms (derived runs).
SELECT path, NULL::BIGINT AS size_bytes, NULL::VARCHAR AS sha256 FROM nn_transforms

-- name: mark_lost_vectors
-- Proteins of a run whose vectors are in none of its remaining parts ($present: registered
-- table _protiso_present of accessions) become 'failed' with a reason, so embed redoes them.
UPDATE run_proteins SET status = 'failed', n_residues = 0,
    reason = 'vectors lost with a damaged part (protiso repair); re-run embed'
WHERE run_id = $run_id AND status IN ('done', 'truncated', 'chunked')
  AND accession NOT IN (SELECT accession FROM _protiso_present)

-- name: mark_lost_local
-- Proteins of a run whose per-residue vectors are in none of its remaining local parts.
UPDATE run_proteins SET local_stored = false
WHERE run_id = $run_id AND local_stored AND accession NOT IN (SELECT accession FROM _protiso_present)

-- name: recount_run
-- A run's counters recounted from its per-protein statuses (after repair).
UPDATE runs SET
    n_done = (SELECT count(*) FROM run_proteins WHERE run_id = $run_id AND status IN ('done', 'truncated', 'chunked')),
    n_truncated = (SELECT count(*) FROM run_proteins WHERE run_id = $run_id AND status = 'truncated'),
    n_chunked = (SELECT count(*) FROM run_proteins WHERE run_id = $run_id AND status = 'chunked'),
    n_failed = (SELECT count(*) FROM run_proteins WHERE run_id = $run_id AND status = 'failed'),
    n_residues = (SELECT coalesce(sum(n_residues), 0) FROM run_proteins
                  WHERE run_id = $run_id AND status IN ('done', 'truncated', 'chunked')),
    status = CASE WHEN status = 'done' THEN 'interrupted' ELSE status END,
    updated_at = current_timestamp
WHERE run_id = $run_id

-- name: runs_of_stats_files
-- The runs whose statistics checkpoints include lost files ($paths).
SELECT DISTINCT run_id FROM local_stats WHERE list_contains($paths, path)

-- name: stats_files_of_run
-- Every statistics checkpoint of a run.
SELECT path FROM local_stats WHERE run_id = $run_id

-- name: reset_run_stats
-- Forget a run's statistics so that `embed --local-stats` accumulates them again from scratch.
DELETE FROM local_stats WHERE run_id = $run_id;
UPDATE run_proteins SET in_stats = false WHERE run_id = $run_id

-- name: drop_indexes_of_files
-- Index rows (and id maps) whose files are lost ($paths).
DELETE FROM nn_index_ids WHERE index_id IN (SELECT index_id FROM nn_indexes WHERE list_contains($paths, path));
DELETE FROM nn_indexes WHERE list_contains($paths, path)

-- name: indexes_of_files
-- The index ids of lost index files ($paths).
SELECT index_id FROM nn_indexes WHERE list_contains($paths, path) ORDER BY index_id

-- name: transforms_of_files
-- The derived runs whose transform parameter files are lost ($paths).
SELECT run_id FROM nn_transforms WHERE list_contains($paths, path) ORDER BY run_id

-- name: chunks_of_parts
-- The pair-job chunks held by lost parts ($paths).
SELECT DISTINCT pair_set, kind, key FROM pair_job_chunks WHERE list_contains($paths, path)

-- name: forget_chunks
-- Chunks held by lost parts are not done; their jobs are no longer finished.
UPDATE pair_jobs SET status = 'running', finished_at = NULL
WHERE EXISTS (SELECT 1 FROM pair_job_chunks c WHERE c.pair_set = pair_jobs.pair_set AND c.kind = pair_jobs.kind
              AND c.key = pair_jobs.key AND list_contains($paths, c.path));
DELETE FROM pair_job_chunks WHERE list_contains($paths, path)
