-- Latest isotropy result per run / layer / level / filter / group.
CREATE OR REPLACE TEMP VIEW metrics_latest AS
SELECT * FROM metrics
QUALIFY row_number() OVER (
    PARTITION BY run_id, layer, level, filter, group_by, group_key
    ORDER BY created_at DESC, metric_id DESC) = 1;

-- Whole-set (ungrouped) results, the paper's table: one row per run, layer, level and filter.
CREATE OR REPLACE TEMP VIEW isotropy_summary AS
SELECT run_id, model, layer, level, filter, n, d, isoscore, effective_dims, avg_cosine,
       isoscore_star, effective_rank, var_top1, mean_share,
       isoscore_lo, isoscore_hi, bootstrap, created_at
FROM metrics_latest
WHERE group_by = ''
ORDER BY model, run_id, layer, level, filter;

-- Per-residue-type results summarised per run and layer: the mean effective dimensions across
-- amino-acid types (the paper's "about 14 effective dimensions" for ProtBERT).
CREATE OR REPLACE TEMP VIEW local_isotropy_summary AS
SELECT run_id, any_value(model) AS model, layer, count(*) AS n_residue_types,
       sum(n) AS n_residues, avg(effective_dims) AS mean_effective_dims,
       min(effective_dims) AS min_effective_dims, max(effective_dims) AS max_effective_dims,
       avg(isoscore) AS mean_isoscore, avg(avg_cosine) AS mean_avg_cosine
FROM metrics_latest
WHERE level = 'local' AND group_by = 'residue'
GROUP BY run_id, layer
ORDER BY model, run_id, layer;
