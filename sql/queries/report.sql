-- What the report reads (protiso.report.data): metrics, runs, pair views.

-- name: whole_set_rows
-- Latest ungrouped global metrics per run, layer and filter, with the run's details.
SELECT m.metric_id, m.run_id, m.model, r.model_id, r.family, r.pooling, r.dtype, r.revision,
       r.layers AS run_layers, m.layer, m.filter, m.n, m.d, m.isoscore, m.effective_dims, m.avg_cosine,
       m.isoscore_star, m.effective_rank, m.seed, m.software_version, m.created_at
FROM metrics_latest m LEFT JOIN runs r USING (run_id)
WHERE m.level = 'global' AND m.group_by = ''
ORDER BY m.model, m.run_id, m.filter, m.layer

-- name: group_rows
-- Latest grouped global rows, largest groups first.
SELECT metric_id, run_id, model, layer, filter, group_by, group_key, n, d, isoscore, effective_dims,
       avg_cosine, seed
FROM metrics_latest WHERE level = 'global' AND group_by <> ''
ORDER BY run_id, layer, filter, group_by, n DESC, group_key

-- name: local_rows
-- Per-residue-type local rows (and the pooled row, group_key NULL).
SELECT metric_id, run_id, model, layer, group_by, group_key, n, d, isoscore, effective_dims, avg_cosine
FROM metrics_latest WHERE level = 'local' ORDER BY run_id, layer, group_key

-- name: local_summary
-- Per run and layer: residue types, residues and their effective dimensions.
SELECT run_id, layer, n_residue_types, n_residues, mean_effective_dims, min_effective_dims,
       max_effective_dims
FROM local_isotropy_summary

-- name: correlation_rows
-- Pearson correlation rows per pair set, alignment, run and layer, with the set's sampling.
SELECT c.*, s.seed, s.filter AS pair_filter, s.fraction, s.n_proteins, s.strategy
FROM pair_correlations c LEFT JOIN pair_sets s ON s.name = c.pair_set
ORDER BY c.pair_set, c.run_id, c.layer, c.alignment

-- name: pair_points
-- Per pair (a deterministic subsample when large): distances, alignment and GO overlap.
SELECT cosine, sq_euclidean, score, identity, go_jaccard FROM pair_metrics
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
  AND identity IS NOT NULL AND cosine IS NOT NULL
ORDER BY hash(pair_id) LIMIT $max_points

-- name: go_bins
-- Per GO-Jaccard bin: pairs, and mean and standard deviation of cosine, squared Euclidean distance
-- and identity.
WITH b AS (SELECT least(floor(go_jaccard * $bins), $bins - 1)::INTEGER AS k, * FROM pair_metrics
           WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
             AND go_jaccard IS NOT NULL)
SELECT k / $bins::DOUBLE AS lo, (k + 1) / $bins::DOUBLE AS hi, count(*) AS n_pairs, avg(cosine) AS cosine,
       stddev_samp(cosine) AS cosine_sd, avg(sq_euclidean) AS sq_euclidean,
       stddev_samp(sq_euclidean) AS sq_euclidean_sd, avg(identity) AS identity,
       stddev_samp(identity) AS identity_sd
FROM b GROUP BY k ORDER BY k

-- name: runs
-- The runs table of the report.
SELECT run_id, model, model_id, family, dim, layers, pooling, dtype, device, length_policy, max_length,
       status, n_done, n_truncated, n_skipped, n_failed, n_residues, local_stats, filter, revision,
       software_version
FROM runs ORDER BY created_at, run_id

-- name: run_settings
-- Per run: residue limit, length policy and what it did, dtype, device, layers and filter.
SELECT run_id, model, max_length, length_policy, n_done, n_truncated, n_chunked, n_skipped, n_failed,
       dtype, device, layers, filter
FROM runs ORDER BY created_at, run_id

-- name: run_filter
-- The filter a run was embedded with.
SELECT filter FROM runs WHERE run_id = $run_id

-- name: protein_count
-- Proteins in the store.
SELECT count(*) FROM proteins

-- name: intrinsic_rows
-- Per run, filter and layer the latest whole-set global row that has an intrinsic dimension (a
-- later computation without --intrinsic does not hide it), beside the linear effective
-- dimensions of the same row.
SELECT metric_id, run_id, model, layer, filter, n, d, effective_dims, participation_ratio,
       intrinsic_dim_twonn, intrinsic_dim_mle, intrinsic_k, intrinsic_n_duplicates, seed
FROM metrics
WHERE level = 'global' AND group_by = '' AND intrinsic_dim_twonn IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY run_id, layer, filter ORDER BY created_at DESC, metric_id DESC) = 1
ORDER BY model, run_id, filter, layer

-- name: rogue_rows
-- Latest whole-set global rows at each run's last layer with their rogue dimensions.
SELECT m.metric_id, m.run_id, m.model, m.layer, m.filter, m.n, m.d, m.avg_cosine, m.rogue_dims,
       m.rogue_shares, m.rogue_top_share, m.seed
FROM metrics_latest m JOIN runs r USING (run_id)
WHERE m.level = 'global' AND m.group_by = '' AND m.rogue_dims IS NOT NULL AND m.layer = list_max(r.layers)
ORDER BY m.model, m.run_id, m.filter

-- name: interval_rows
-- Per run, layer, level, filter and group the latest row with bootstrap intervals: estimate,
-- interval, method and bootstrap bias.
SELECT metric_id, run_id, model, layer, filter, group_by, group_key, n, d, bootstrap, ci_level, ci_method,
       jackknife_blocks, seed, isoscore, isoscore_lo, isoscore_hi, isoscore_bias, effective_dims,
       effective_dims_lo, effective_dims_hi, effective_dims_bias, avg_cosine, avg_cosine_lo, avg_cosine_hi,
       avg_cosine_bias
FROM metrics
WHERE bootstrap > 0
QUALIFY row_number() OVER (PARTITION BY run_id, layer, level, filter, group_by, group_key
                           ORDER BY created_at DESC, metric_id DESC) = 1
ORDER BY model, run_id, layer, filter, group_by, n DESC, group_key

-- name: go_semantic_rows
-- GO similarity (Jaccard, Resnik and Lin per namespace) against embedding and sequence similarity,
-- Pearson, per pair set, alignment, run and layer, with the set's sampling.
SELECT c.*, s.seed, s.filter AS pair_filter, s.fraction, s.n_proteins, s.strategy
FROM pair_go_correlations c LEFT JOIN pair_sets s ON s.name = c.pair_set
ORDER BY c.pair_set, c.run_id, c.layer, c.alignment, c.measure_order

-- name: go_measure_bins
-- Per bin of one GO similarity measure in [0, 1] (a Lin similarity or the Jaccard overlap): pairs,
-- and mean and standard deviation of cosine and identity.
WITH b AS (SELECT least(floor(value * $bins), $bins - 1)::INTEGER AS k, * FROM pair_go_long
           WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
             AND measure = $measure)
SELECT k / $bins::DOUBLE AS lo, (k + 1) / $bins::DOUBLE AS hi, count(*) AS n_pairs, avg(cosine) AS cosine,
       stddev_samp(cosine) AS cosine_sd, avg(identity) AS identity, stddev_samp(identity) AS identity_sd
FROM b GROUP BY k ORDER BY k
