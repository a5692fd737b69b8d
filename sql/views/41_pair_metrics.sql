-- Per pair: alignment columns, embedding distances and the Jaccard overlap of annotation
-- (GO) terms, |A ∩ B| / |A ∪ B| (NULL when neither protein has a term, or not computed yet:
-- `protiso correlate` computes it, protiso/pairs/functional.py).
CREATE OR REPLACE TEMP VIEW pair_metrics AS
SELECT p.pair_set, p.alignment, d.run_id, d.layer, p.pair_id, p.accession_a, p.accession_b,
       d.cosine, d.sq_euclidean, p.score, p.identity, p.matches, p.length, p.gaps,
       g.go_jaccard
FROM pairs p
JOIN pair_distances d USING (pair_set, pair_id)
LEFT JOIN pair_go g USING (pair_set, pair_id);

-- The paper's correlation matrix (Pearson, DuckDB corr) per pair set, alignment, run, layer,
-- plus the functional (GO Jaccard) column, of any relation with those columns (pair_metrics
-- here; its ranks for Spearman in 42_pair_spearman.sql).
CREATE OR REPLACE TEMP MACRO correlation_matrix(relation) AS TABLE
SELECT pair_set, alignment, run_id, layer, count(*) AS n_pairs,
       corr(cosine, sq_euclidean) AS cosine_sq_euclidean,
       corr(cosine, score) AS cosine_score,
       corr(cosine, identity) AS cosine_identity,
       corr(sq_euclidean, score) AS sq_euclidean_score,
       corr(sq_euclidean, identity) AS sq_euclidean_identity,
       corr(score, identity) AS score_identity,
       corr(cosine, go_jaccard) AS cosine_go_jaccard,
       corr(sq_euclidean, go_jaccard) AS sq_euclidean_go_jaccard,
       corr(score, go_jaccard) AS score_go_jaccard,
       corr(identity, go_jaccard) AS identity_go_jaccard
FROM query_table(relation)
GROUP BY ALL;

CREATE OR REPLACE TEMP VIEW pair_correlations AS SELECT * FROM correlation_matrix('pair_metrics');

-- The matrix as a square (what `protiso correlate` prints): per group, one row per variable
-- and one column per variable, 1 on the diagonal. Order rows by `variable_order`.
CREATE OR REPLACE TEMP MACRO correlation_square(relation) AS TABLE
SELECT c.pair_set, c.alignment, c.run_id, c.layer, c.n_pairs, v.variable_order, v.variable,
       CASE v.variable WHEN 'cosine' THEN 1.0::DOUBLE WHEN 'sq_euclidean' THEN c.cosine_sq_euclidean
            WHEN 'score' THEN c.cosine_score WHEN 'identity' THEN c.cosine_identity
            ELSE c.cosine_go_jaccard END AS cosine,
       CASE v.variable WHEN 'cosine' THEN c.cosine_sq_euclidean WHEN 'sq_euclidean' THEN 1.0::DOUBLE
            WHEN 'score' THEN c.sq_euclidean_score WHEN 'identity' THEN c.sq_euclidean_identity
            ELSE c.sq_euclidean_go_jaccard END AS sq_euclidean,
       CASE v.variable WHEN 'cosine' THEN c.cosine_score WHEN 'sq_euclidean' THEN c.sq_euclidean_score
            WHEN 'score' THEN 1.0::DOUBLE WHEN 'identity' THEN c.score_identity
            ELSE c.score_go_jaccard END AS score,
       CASE v.variable WHEN 'cosine' THEN c.cosine_identity WHEN 'sq_euclidean' THEN c.sq_euclidean_identity
            WHEN 'score' THEN c.score_identity WHEN 'identity' THEN 1.0::DOUBLE
            ELSE c.identity_go_jaccard END AS identity,
       CASE v.variable WHEN 'cosine' THEN c.cosine_go_jaccard WHEN 'sq_euclidean' THEN c.sq_euclidean_go_jaccard
            WHEN 'score' THEN c.score_go_jaccard WHEN 'identity' THEN c.identity_go_jaccard
            ELSE 1.0::DOUBLE END AS go_jaccard
FROM correlation_matrix(relation) c,
     (VALUES (1, 'cosine'), (2, 'sq_euclidean'), (3, 'score'), (4, 'identity'), (5, 'go_jaccard'))
       v(variable_order, variable);

CREATE OR REPLACE TEMP VIEW pair_correlation_matrix AS SELECT * FROM correlation_square('pair_metrics');

-- Identity regimes (the paper's scatter plots in numbers): per identity bin
-- [k/bins, (k+1)/bins) the pair count, mean, standard deviation and 10/50/90th percentiles of
-- cosine and squared Euclidean distance, and the mean GO Jaccard. Pairs without an identity
-- (an empty local alignment) are left out.
CREATE OR REPLACE TEMP MACRO pair_identity_regimes(bins := 10) AS TABLE
WITH b AS (
    SELECT least(floor(identity * bins), bins - 1)::INTEGER AS k, *
    FROM pair_metrics WHERE identity IS NOT NULL)
SELECT pair_set, alignment, run_id, layer,
       k / bins::DOUBLE AS identity_from, (k + 1) / bins::DOUBLE AS identity_to, count(*) AS n_pairs,
       avg(cosine) AS cosine_mean, stddev_samp(cosine) AS cosine_std,
       quantile_cont(cosine, 0.1) AS cosine_p10, median(cosine) AS cosine_p50,
       quantile_cont(cosine, 0.9) AS cosine_p90,
       avg(sq_euclidean) AS sq_euclidean_mean, stddev_samp(sq_euclidean) AS sq_euclidean_std,
       quantile_cont(sq_euclidean, 0.1) AS sq_euclidean_p10, median(sq_euclidean) AS sq_euclidean_p50,
       quantile_cont(sq_euclidean, 0.9) AS sq_euclidean_p90,
       avg(go_jaccard) AS go_jaccard_mean
FROM b GROUP BY pair_set, alignment, run_id, layer, k;
