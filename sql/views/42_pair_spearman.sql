-- Spearman's rank correlation: Pearson on average ranks (ties share the mean of their ranks),
-- ranked within each (pair_set, alignment, run_id, layer). Ranks are over all pairs of the
-- group, so go_jaccard columns equal scipy's only when no go_jaccard is NULL.
CREATE OR REPLACE TEMP VIEW pair_ranks AS
SELECT pair_set, alignment, run_id, layer, pair_id,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer ORDER BY cosine)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, cosine) - 1) / 2.0 AS cosine,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer ORDER BY sq_euclidean)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, sq_euclidean) - 1) / 2.0 AS sq_euclidean,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer ORDER BY score)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, score) - 1) / 2.0 AS score,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer ORDER BY identity)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, identity) - 1) / 2.0 AS identity,
       CASE WHEN go_jaccard IS NOT NULL THEN
         rank() OVER (PARTITION BY pair_set, alignment, run_id, layer ORDER BY go_jaccard)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, go_jaccard) - 1) / 2.0
       END AS go_jaccard
FROM pair_metrics;

CREATE OR REPLACE TEMP VIEW pair_correlations_spearman AS SELECT * FROM correlation_matrix('pair_ranks');

CREATE OR REPLACE TEMP VIEW pair_correlation_matrix_spearman AS SELECT * FROM correlation_square('pair_ranks');

-- Spearman for the GO similarity measures: average ranks within each measure's own pairs (those
-- where it is defined), so each equals scipy's spearmanr over exactly those pairs (identity ranks
-- over the pairs that have one).
CREATE OR REPLACE TEMP VIEW pair_go_ranks AS
SELECT pair_set, alignment, run_id, layer, pair_id, measure,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer, measure ORDER BY value)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, measure, value) - 1) / 2.0 AS value,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer, measure ORDER BY cosine)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, measure, cosine) - 1) / 2.0 AS cosine,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer, measure ORDER BY sq_euclidean)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, measure, sq_euclidean) - 1) / 2.0
         AS sq_euclidean,
       rank() OVER (PARTITION BY pair_set, alignment, run_id, layer, measure ORDER BY score)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, measure, score) - 1) / 2.0 AS score,
       CASE WHEN identity IS NOT NULL THEN
         rank() OVER (PARTITION BY pair_set, alignment, run_id, layer, measure ORDER BY identity)
         + (count(*) OVER (PARTITION BY pair_set, alignment, run_id, layer, measure, identity) - 1) / 2.0
       END AS identity
FROM pair_go_long;

CREATE OR REPLACE TEMP VIEW pair_go_correlations_spearman AS SELECT * FROM go_correlations('pair_go_ranks');
