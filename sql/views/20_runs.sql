-- One line per embedding run with its counts and throughput (see `protiso runs`).
CREATE OR REPLACE TEMP VIEW run_summary AS
SELECT run_id, model, family, dim, layers, dtype, device, length_policy, max_length, status,
       n_done, n_truncated, n_chunked, n_skipped, n_failed, n_residues,
       round(seconds, 1) AS seconds, round(residues_per_s, 1) AS residues_per_s,
       local_stats, revision, created_at, updated_at
FROM runs ORDER BY created_at, run_id;

-- Proteins of each run that were not embedded as a whole, with the reason.
CREATE OR REPLACE TEMP VIEW run_problems AS
SELECT run_id, accession, status, length, n_residues, reason
FROM run_proteins WHERE status <> 'done' ORDER BY run_id, status, accession;
