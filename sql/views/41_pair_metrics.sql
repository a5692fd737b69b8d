-- Per pair: alignment columns, embedding distances, the Jaccard overlap of annotation (GO)
-- terms, |A ∩ B| / |A ∪ B| (NULL when neither protein has a term), and the GO semantic
-- similarity per namespace, Resnik and Lin (best-match average; NULL where either protein has
-- no annotation in the namespace, or the store no ontology). NULL too until computed:
-- `protiso correlate` computes both (protiso/pairs/functional.py).
CREATE OR REPLACE TEMP VIEW pair_metrics AS
SELECT p.pair_set, p.alignment, d.run_id, d.layer, p.pair_id, p.accession_a, p.accession_b,
       d.cosine, d.sq_euclidean, p.score, p.identity, p.matches, p.length, p.gaps,
       g.go_jaccard, s.resnik_bp, s.lin_bp, s.resnik_mf, s.lin_mf, s.resnik_cc, s.lin_cc
FROM pairs p
JOIN pair_distances d USING (pair_set, pair_id)
LEFT JOIN pair_go g USING (pair_set, pair_id)
LEFT JOIN pair_go_semantic s USING (pair_set, pair_id);

-- The GO similarity measures in display order, with what each one is.
CREATE OR REPLACE TEMP VIEW go_similarity_measures AS
SELECT * FROM (VALUES
    (1, 'go_jaccard', 'jaccard', 'all', 'Jaccard overlap of the annotation terms'),
    (2, 'resnik_bp', 'resnik', 'biological_process', 'Resnik, best-match average, biological process'),
    (3, 'lin_bp', 'lin', 'biological_process', 'Lin, best-match average, biological process'),
    (4, 'resnik_mf', 'resnik', 'molecular_function', 'Resnik, best-match average, molecular function'),
    (5, 'lin_mf', 'lin', 'molecular_function', 'Lin, best-match average, molecular function'),
    (6, 'resnik_cc', 'resnik', 'cellular_component', 'Resnik, best-match average, cellular component'),
    (7, 'lin_cc', 'lin', 'cellular_component', 'Lin, best-match average, cellular component'))
  m(measure_order, measure, method, namespace, description);

-- One row per pair and GO similarity measure where the measure is defined (NULLs dropped), with
-- the pair's embedding and alignment columns: the long form the GO correlations are taken over.
CREATE OR REPLACE TEMP VIEW pair_go_long AS
SELECT pair_set, alignment, run_id, layer, pair_id, cosine, sq_euclidean, score, identity, measure, value
FROM (UNPIVOT (SELECT pair_set, alignment, run_id, layer, pair_id, cosine, sq_euclidean, score, identity,
                      go_jaccard, resnik_bp, lin_bp, resnik_mf, lin_mf, resnik_cc, lin_cc FROM pair_metrics)
      ON go_jaccard, resnik_bp, lin_bp, resnik_mf, lin_mf, resnik_cc, lin_cc
      INTO NAME measure VALUE value);

-- Correlation of each GO similarity measure with cosine, squared Euclidean distance, alignment
-- score and identity (Pearson, DuckDB corr), per pair set, alignment, run and layer, over the
-- pairs where the measure is defined (n_pairs; identity pairwise-complete), of any relation with
-- the columns of pair_go_long (its ranks for Spearman in 42_pair_spearman.sql).
CREATE OR REPLACE TEMP MACRO go_correlations(relation) AS TABLE
SELECT g.pair_set, g.alignment, g.run_id, g.layer, m.measure_order, g.measure, m.method, m.namespace,
       count(*) AS n_pairs, corr(g.value, g.cosine) AS cosine, corr(g.value, g.sq_euclidean) AS sq_euclidean,
       corr(g.value, g.score) AS score, corr(g.value, g.identity) AS identity
FROM query_table(relation) g JOIN go_similarity_measures m USING (measure)
GROUP BY ALL;

CREATE OR REPLACE TEMP VIEW pair_go_correlations AS SELECT * FROM go_correlations('pair_go_long');

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
