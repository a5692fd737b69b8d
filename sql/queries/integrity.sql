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

-- name: lost_vectors
-- Status rows (protiso.runs.status) that mark the proteins of a run whose vectors are in none of
-- its remaining parts (registered table _protiso_present of accessions) as 'failed' with a
-- reason, so embed redoes them. $source: the run's current statuses (runs.status.latest_sql).
SELECT accession, 'failed' AS status, length, 0 AS n_residues,
       'vectors lost with a damaged part (protiso repair); re-run embed' AS reason,
       NULL::BOOLEAN AS in_stats, NULL::BOOLEAN AS local_stored
FROM $source WHERE status IN ('done', 'truncated', 'chunked')
  AND accession NOT IN (SELECT accession FROM _protiso_present)

-- name: lost_local
-- Status rows for the proteins of a run whose per-residue vectors are in none of its remaining
-- local parts (_protiso_present): local_stored becomes false, the rest is unchanged ($source as above).
SELECT accession, NULL::VARCHAR AS status, NULL::INTEGER AS length, NULL::INTEGER AS n_residues,
       NULL::VARCHAR AS reason, NULL::BOOLEAN AS in_stats, false AS local_stored
FROM $source WHERE local_stored AND accession NOT IN (SELECT accession FROM _protiso_present)

-- name: run_policy
-- A run's residue limit and length policy (to restore statuses of proteins whose vectors exist).
SELECT max_length, length_policy FROM runs WHERE run_id = $run_id

-- name: unstated_vectors
-- After a status part was lost: status rows for the proteins whose vectors are in the run's
-- parts (_protiso_present) but that have no embedded status ($source as above), as the run's
-- length policy embedded them ($max_length, $policy), so embed does not embed them twice.
SELECT x.accession,
       CASE WHEN $max_length IS NOT NULL AND p.length > $max_length
            THEN CASE WHEN $policy = 'chunk' THEN 'chunked' ELSE 'truncated' END ELSE 'done' END AS status,
       p.length,
       CASE WHEN $max_length IS NOT NULL AND p.length > $max_length AND $policy <> 'chunk' THEN $max_length
            ELSE p.length END AS n_residues,
       'status restored by protiso repair (its status part was lost)' AS reason,
       NULL::BOOLEAN AS in_stats, NULL::BOOLEAN AS local_stored
FROM _protiso_present x JOIN proteins p USING (accession) LEFT JOIN $source r USING (accession)
WHERE r.status IS NULL OR r.status NOT IN ('done', 'truncated', 'chunked')

-- name: unstated_local
-- After a status part was lost: proteins whose per-residue vectors are in the run's local parts
-- (_protiso_present) get local_stored back ($source as above).
SELECT x.accession, NULL::VARCHAR AS status, NULL::INTEGER AS length, NULL::INTEGER AS n_residues,
       NULL::VARCHAR AS reason, NULL::BOOLEAN AS in_stats, true AS local_stored
FROM _protiso_present x LEFT JOIN $source r USING (accession) WHERE NOT coalesce(r.local_stored, false)

-- name: run_has_stats
-- Whether a run has per-residue-type statistics checkpoints.
SELECT count(*) > 0 FROM local_stats WHERE run_id = $run_id

-- name: recount_run
-- A run's counters recounted from its current statuses ($source as above; after repair only:
-- commits add to the counters).
UPDATE runs SET n_done = s.embedded, n_truncated = s.truncated, n_chunked = s.chunked, n_failed = s.failed,
    n_residues = s.residues,
    status = CASE WHEN runs.status = 'done' THEN 'interrupted' ELSE runs.status END,
    updated_at = current_timestamp
FROM (SELECT count(*) FILTER (WHERE status IN ('done', 'truncated', 'chunked')) AS embedded,
             count(*) FILTER (WHERE status = 'truncated') AS truncated,
             count(*) FILTER (WHERE status = 'chunked') AS chunked,
             count(*) FILTER (WHERE status = 'failed') AS failed,
             coalesce(sum(n_residues) FILTER (WHERE status IN ('done', 'truncated', 'chunked')), 0) AS residues
      FROM $source) s
WHERE runs.run_id = $run_id

-- name: runs_of_stats_files
-- The runs whose statistics checkpoints include lost files ($paths).
SELECT DISTINCT run_id FROM local_stats WHERE list_contains($paths, path)

-- name: stats_files_of_run
-- Every statistics checkpoint of a run.
SELECT path FROM local_stats WHERE run_id = $run_id

-- name: forget_run_stats
-- Forget a run's statistics checkpoints so that `embed --local-stats` accumulates them again
-- from scratch (stats_reset_rows un-counts its proteins).
DELETE FROM local_stats WHERE run_id = $run_id

-- name: stats_reset_rows
-- Status rows that mark every protein of a run counted in its statistics as not counted
-- ($source: the run's current statuses).
SELECT accession, NULL::VARCHAR AS status, NULL::INTEGER AS length, NULL::INTEGER AS n_residues,
       NULL::VARCHAR AS reason, false AS in_stats, NULL::BOOLEAN AS local_stored
FROM $source WHERE in_stats

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
