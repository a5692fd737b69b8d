-- Pair views (issue 5). pair_list, pairs, pair_distances, pair_go and pair_go_semantic are replaced by views over their
-- Parquet parts at connect (protiso/pairs/views.py); these empty typed versions keep the
-- views below valid in a store without pairs.
CREATE OR REPLACE TEMP VIEW pair_list AS
SELECT NULL::VARCHAR AS pair_set, NULL::BIGINT AS pair_id,
       NULL::VARCHAR AS accession_a, NULL::VARCHAR AS accession_b
WHERE false;

-- One row per pair and alignment setting (alignment = '<MATRIX>-<mode>-o<open>-e<extend>').
CREATE OR REPLACE TEMP VIEW pairs AS
SELECT NULL::VARCHAR AS pair_set, NULL::VARCHAR AS alignment, NULL::BIGINT AS pair_id,
       NULL::VARCHAR AS accession_a, NULL::VARCHAR AS accession_b,
       NULL::DOUBLE AS score, NULL::DOUBLE AS identity, NULL::INTEGER AS matches,
       NULL::INTEGER AS length, NULL::INTEGER AS gaps
WHERE false;

-- One row per pair, embedding run and layer.
CREATE OR REPLACE TEMP VIEW pair_distances AS
SELECT NULL::VARCHAR AS pair_set, NULL::VARCHAR AS run_id, NULL::SMALLINT AS layer,
       NULL::BIGINT AS pair_id, NULL::DOUBLE AS cosine, NULL::DOUBLE AS sq_euclidean
WHERE false;

-- One row per pair: Jaccard overlap of the two proteins' annotation terms.
CREATE OR REPLACE TEMP VIEW pair_go AS
SELECT NULL::VARCHAR AS pair_set, NULL::BIGINT AS pair_id, NULL::DOUBLE AS go_jaccard
WHERE false;

-- One row per pair: Resnik and Lin similarity (best-match average) per GO namespace
-- (bp: biological process, mf: molecular function, cc: cellular component).
CREATE OR REPLACE TEMP VIEW pair_go_semantic AS
SELECT NULL::VARCHAR AS pair_set, NULL::BIGINT AS pair_id,
       NULL::DOUBLE AS resnik_bp, NULL::DOUBLE AS lin_bp, NULL::DOUBLE AS resnik_mf,
       NULL::DOUBLE AS lin_mf, NULL::DOUBLE AS resnik_cc, NULL::DOUBLE AS lin_cc
WHERE false;

-- One row per pair set: its definition and the finished computations over it (`pairs list`).
CREATE OR REPLACE TEMP VIEW pair_set_summary AS
SELECT s.name, s.strategy, s.seed, s.filter, s.n_population, s.n_proteins, s.n_pairs,
       coalesce(list(j.kind || ':' || j.key ORDER BY j.kind, j.key) FILTER (WHERE j.status = 'done'),
                []::VARCHAR[]) AS computed,
       s.created_at
FROM pair_sets s LEFT JOIN pair_jobs j ON j.pair_set = s.name
GROUP BY ALL;
