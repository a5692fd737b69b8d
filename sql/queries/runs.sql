-- The run catalog (protiso.runs).

-- name: all_runs
-- Every run, oldest first (status as it is now: see view run_state).
SELECT r.* REPLACE (s.status AS status) FROM runs r JOIN run_state s USING (run_id)
ORDER BY r.created_at, r.run_id

-- name: run_by_id
-- One run by its id (status as it is now: see view run_state).
SELECT r.* REPLACE (s.status AS status) FROM runs r JOIN run_state s USING (run_id) WHERE r.run_id = $run_id

-- name: runs_of_model
-- Runs with embeddings of a model named as passed to embed (alias, hub id, directory), newest first.
SELECT r.* REPLACE (s.status AS status) FROM runs r JOIN run_state s USING (run_id)
WHERE (r.model = $model OR r.model_id = $model) AND r.n_done > 0
ORDER BY r.updated_at DESC, r.created_at DESC

-- name: stats_paths
-- The per-residue-type statistics files of a run.
SELECT path FROM local_stats WHERE run_id = $run_id

-- name: stats_path
-- The statistics file of one layer of a run.
SELECT path FROM local_stats WHERE run_id = $run_id AND layer = $layer

-- name: delete_run
-- Every catalog row of a run: statistics, statuses kept from before migration 012, the run, its
-- parts (vectors, per-residue vectors, status parts).
DELETE FROM local_stats WHERE run_id = $run_id;
DELETE FROM run_proteins_legacy WHERE run_id = $run_id;
DELETE FROM parts WHERE dataset IN ($embeddings, $local, $status);
DELETE FROM runs WHERE run_id = $run_id

-- name: view_sources
-- Runs for the embedding views.
SELECT run_id, model, dim FROM runs ORDER BY created_at, run_id

-- name: run_by_key
-- The run of a configuration key, if it exists.
SELECT run_id FROM runs WHERE run_key = $key

-- name: run_id_taken
-- Whether a run id is in use.
SELECT count(*) FROM runs WHERE run_id = $run_id

-- name: resume_run
-- Mark an existing run as running again for a new invocation.
UPDATE runs SET status = 'running', device = $device, max_tokens = $max_tokens, filter = $filter,
    load_seconds = $load_seconds, software_version = $version, details = $details,
    parity_cosine = coalesce($parity, parity_cosine), updated_at = current_timestamp
WHERE run_id = $run_id

-- name: latest_invocation
-- A run's stored status with its latest invocation's process (pid, host, start), if any.
SELECT r.status, i.pid, i.host, i.pid_start, i.started_at
FROM runs r JOIN run_invocations i USING (run_id)
WHERE r.run_id = $run_id ORDER BY i.started_at DESC LIMIT 1

-- name: run_has_parts
-- Whether a dataset has registered parts.
SELECT count(*) > 0 FROM parts WHERE dataset = $dataset

-- name: record_invocation
-- An invocation of a run: its filter and the process running it (so a dead one shows 'interrupted').
INSERT INTO run_invocations (run_id, filter, pid, host, pid_start) VALUES ($run_id, $filter, $pid, $host, $pid_start)

-- name: insert_run
-- A new embedding run.
INSERT INTO runs (run_id, run_key, model, model_id, revision, family, dim, num_layers, layers, pooling,
    dtype, dtype_requested, parity_cosine, device, length_policy, max_length, max_tokens, status,
    filter, software_version, details, load_seconds)
VALUES ($run_id, $key, $model, $model_id, $revision, $family, $dim, $num_layers, $layers, $pooling,
    $dtype, $dtype_requested, $parity, $device, $policy, $max_length, $max_tokens, 'running',
    $filter, $version, $details, $load_seconds)

-- name: status_latest
-- The current status of each protein of run $run_id: per accession, the latest row (highest seq)
-- of its status parts ($source: read_parquet over them) and of the rows kept from before
-- migration 012 (seq 0). A NULL status leaves status, length, n_residues and reason as they were
-- (a pass that only adds statistics or per-residue vectors to embedded proteins); a NULL
-- in_stats / local_stored leaves that flag as it was. One hash aggregation: linear in the rows.
SELECT accession,
       arg_max_null(status, seq) FILTER (WHERE status IS NOT NULL) AS status,
       arg_max_null(length, seq) FILTER (WHERE status IS NOT NULL) AS length,
       arg_max_null(n_residues, seq) FILTER (WHERE status IS NOT NULL) AS n_residues,
       arg_max_null(reason, seq) FILTER (WHERE status IS NOT NULL) AS reason,
       coalesce(arg_max_null(in_stats, seq) FILTER (WHERE in_stats IS NOT NULL), false) AS in_stats,
       coalesce(arg_max_null(local_stored, seq) FILTER (WHERE local_stored IS NOT NULL), false) AS local_stored
FROM (SELECT seq, accession, status, length, n_residues, reason, in_stats, local_stored FROM $source
      UNION ALL
      SELECT 0::BIGINT, accession, status, length, n_residues, reason, in_stats, local_stored
      FROM run_proteins_legacy WHERE run_id = $run_id)
GROUP BY accession
HAVING count(status) > 0

-- name: status_seq
-- The last sequence number a run's status parts used.
SELECT coalesce(status_seq, 0) FROM runs WHERE run_id = $run_id

-- name: bump_status_seq
-- Record that a run's status parts used sequence number $seq.
UPDATE runs SET status_seq = greatest(coalesce(status_seq, 0), $seq) WHERE run_id = $run_id

-- name: has_legacy_statuses
-- Whether a run has statuses kept from before migration 012.
SELECT count(*) > 0 FROM (SELECT 1 FROM run_proteins_legacy WHERE run_id = $run_id LIMIT 1)

-- name: legacy_status_runs
-- Runs with per-protein statuses kept from before migration 012 (moved into status parts on
-- the next write).
SELECT DISTINCT run_id FROM run_proteins_legacy ORDER BY run_id

-- name: legacy_statuses
-- One run's statuses kept from before migration 012, in the status part layout (seq 0).
SELECT 0::BIGINT AS seq, accession, status, length, n_residues, reason, in_stats, local_stored
FROM run_proteins_legacy WHERE run_id = $run_id ORDER BY accession

-- name: drop_legacy_statuses
-- Forget a run's pre-012 statuses once they are in a status part.
DELETE FROM run_proteins_legacy WHERE run_id = $run_id

-- name: upsert_stats
-- Point a layer's statistics at a new checkpoint file, counting the proteins it adds.
INSERT OR REPLACE INTO local_stats (run_id, layer, path, n_proteins, n_residues)
VALUES ($run_id, $layer, $path,
    coalesce((SELECT n_proteins FROM local_stats WHERE run_id = $run_id AND layer = $layer), 0) + $added,
    $n_residues)

-- name: add_counts
-- Add a flush's counters to its run, incrementally (never recounted from the statuses):
-- n_failed gains the new failures and loses the earlier failures that got a new status
-- ($n_retried); status_seq records the flush's status part.
UPDATE runs SET n_done = n_done + $n_done, n_truncated = n_truncated + $n_truncated,
    n_chunked = n_chunked + $n_chunked, n_skipped = n_skipped + $n_skipped,
    n_failed = greatest(0, n_failed + $n_failed - $n_retried), status_seq = greatest(status_seq, $seq),
    n_residues = n_residues + $n_residues, seconds = seconds + $seconds,
    status = coalesce($status, status), local_stats = local_stats OR $local_stats,
    updated_at = current_timestamp
WHERE run_id = $run_id

-- name: set_rate
-- Throughput of the latest invocation.
UPDATE runs SET residues_per_s = $rate, updated_at = current_timestamp WHERE run_id = $run_id

-- name: probe_sequences
-- A few proteins of the selection for the --dtype auto parity probe ($subset: validated subquery).
SELECT sequence FROM proteins WHERE accession IN ($subset) ORDER BY accession LIMIT 8

-- name: layer_vectors
-- One layer of a run's global vectors ($source: read_parquet over the run's parts).
SELECT e.embedding, e.accession FROM $source e WHERE e.layer = $layer

-- name: run_summary
-- Every run with its counts and provenance.
SELECT * FROM run_summary

-- name: run_summary_brief
-- The columns of run_summary a terminal table shows.
SELECT run_id, model, dim, layers, dtype, length_policy AS long, status, n_done AS done,
       n_failed AS failed, n_skipped AS skipped, round(residues_per_s) AS "res/s"
FROM run_summary
