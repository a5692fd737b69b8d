-- Each run's status as it is now: a run whose latest invocation's process has died (killed,
-- crashed, kill -9) shows 'interrupted' instead of the 'running' it left in `runs`.
CREATE OR REPLACE TEMP VIEW run_state AS
SELECT r.run_id,
       CASE WHEN r.status = 'running' AND i.pid IS NOT NULL
                 AND NOT protiso_process_alive(i.host, i.pid, i.pid_start) THEN 'interrupted'
            ELSE r.status END AS status
FROM runs r LEFT JOIN (
    SELECT run_id, pid, host, pid_start FROM run_invocations
    QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY started_at DESC) = 1
) i USING (run_id);

-- One line per embedding run with its counts and throughput (see `protiso runs`).
CREATE OR REPLACE TEMP VIEW run_summary AS
SELECT run_id, model, family, dim, layers, dtype, device, length_policy, max_length, s.status,
       n_done, n_truncated, n_chunked, n_skipped, n_failed, n_residues,
       round(seconds, 1) AS seconds, round(residues_per_s, 1) AS residues_per_s,
       local_stats, revision, created_at, updated_at
FROM runs JOIN run_state s USING (run_id) ORDER BY created_at, run_id;

-- The current status of each protein of each run. protiso.runs.status replaces this view with
-- one over the runs' status parts (status/<run_id>); this first version (the rows kept from
-- before migration 012) lets the views below bind before it does.
CREATE OR REPLACE TEMP VIEW run_proteins AS
SELECT run_id, accession, status, length, n_residues, reason, in_stats, local_stored FROM run_proteins_legacy;

-- Proteins of each run that were not embedded as a whole, with the reason.
CREATE OR REPLACE TEMP VIEW run_problems AS
SELECT run_id, accession, status, length, n_residues, reason
FROM run_proteins WHERE status <> 'done' ORDER BY run_id, status, accession;
