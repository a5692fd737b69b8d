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
