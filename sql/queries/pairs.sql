-- Pair sets, pair jobs and pair views (protiso.pairs). `$source` is a Parquet file list
-- (store.parquet_source), `$subset` a validated Subset subquery; every other value is a
-- parameter. Registered Arrow tables are named
-- _protiso_*; the sampling and correlation macros are in sql/views/4*_pair*.sql.

-- name: pair_parts
-- Parts of every pair dataset, oldest first (for the pair views).
SELECT dataset, path FROM parts WHERE dataset LIKE 'pairs/%' ORDER BY created_at, path

-- name: view_pair_list
-- The pair lists of all pair sets, over their parts ($source).
CREATE OR REPLACE TEMP VIEW pair_list AS
SELECT pair_set, pair_id, accession_a, accession_b FROM $source

-- name: view_pairs
-- Alignment results of all pair sets, over their parts ($source).
CREATE OR REPLACE TEMP VIEW pairs AS
SELECT pair_set, alignment, pair_id, accession_a, accession_b, score, identity, matches, length, gaps
FROM $source

-- name: view_pair_distances
-- Embedding distances of all pair sets, over their parts ($source).
CREATE OR REPLACE TEMP VIEW pair_distances AS
SELECT pair_set, run_id, layer, pair_id, cosine, sq_euclidean FROM $source

-- name: view_pair_go
-- GO-term Jaccard overlaps of all pair sets, over their parts ($source).
CREATE OR REPLACE TEMP VIEW pair_go AS
SELECT pair_set, pair_id, go_jaccard FROM $source

-- name: pair_set_by_name
-- One pair set's summary and definition.
SELECT name, strategy, seed, n_population, n_proteins, n_pairs, definition
FROM pair_sets WHERE name = $name

-- name: pair_set_names
-- Names of all pair sets.
SELECT name FROM pair_sets ORDER BY name

-- name: pair_set_exists
-- Whether a pair set of that name exists.
SELECT count(*) FROM pair_sets WHERE name = $name

-- name: pair_set_list
-- Every pair set with its definition and finished computations.
SELECT * FROM pair_set_summary ORDER BY name

-- name: sample_plan
-- Population (the proteins of $subset, a validated subquery) and how many proteins the sample draws.
WITH population AS ($subset)
SELECT count(*) AS population,
       sample_size(count(*), fraction := $fraction, proteins := $proteins, all_pairs := $all_pairs) AS k
FROM sample_population(population := 'population')

-- name: sample_all_pairs
-- All pairs among the proteins drawn from $subset (sql/views/43_pair_sampling.sql).
WITH population AS ($subset)
SELECT pair_id, accession_a, accession_b
FROM sample_pairs_all(fraction := $fraction, proteins := $proteins, pairs := $pairs, seed := $seed,
                      population := 'population')

-- name: sample_random_pairs
-- $pairs random pairs among the proteins drawn from $subset (sql/views/43_pair_sampling.sql).
WITH population AS ($subset)
SELECT pair_id, accession_a, accession_b
FROM sample_pairs_random($pairs, fraction := $fraction, proteins := $proteins, seed := $seed,
                         population := 'population')

-- name: sample_pool
-- The identity-stratified pool: $pairs random pairs among the proteins drawn from $subset, with
-- both sequences.
WITH population AS ($subset)
SELECT r.accession_a, r.accession_b, a.sequence AS sequence_a, b.sequence AS sequence_b
FROM sample_pairs_random($pairs, fraction := $fraction, proteins := $proteins, seed := $seed,
                         population := 'population') r
JOIN proteins a ON a.accession = r.accession_a
JOIN proteins b ON b.accession = r.accession_b
ORDER BY r.pair_id

-- name: stratify_pool
-- Identity strata of the aligned pool registered as _protiso_pool (accession_a, accession_b, identity).
SELECT pair_id, accession_a, accession_b FROM stratify_pairs('_protiso_pool', $pairs, $bins, $seed)

-- name: insert_pair_set
-- Record a pair set's definition.
INSERT INTO pair_sets (name, strategy, seed, filter, fraction, proteins_requested, pairs_requested,
    n_population, n_proteins, n_pairs, definition, software_version)
VALUES ($name, $strategy, $seed, $filter, $fraction, $proteins, $pairs, $population, $n_proteins,
    $n_pairs, $definition, $version)

-- name: pair_set_datasets
-- The datasets of a pair set (pair list, alignments, distances, GO overlaps).
SELECT DISTINCT dataset FROM parts WHERE starts_with(dataset, 'pairs/' || $name || '/') ORDER BY dataset

-- name: delete_pair_set
-- Catalog rows of a pair set: finished chunks, jobs, the set.
DELETE FROM pair_job_chunks WHERE pair_set = $name;
DELETE FROM pair_jobs WHERE pair_set = $name;
DELETE FROM pair_sets WHERE name = $name

-- name: sequences_of
-- Sequences of the accessions registered as _protiso_accessions (accession).
SELECT p.accession, p.sequence FROM proteins p JOIN _protiso_accessions w USING (accession)

-- name: read_pairs
-- A pair set's pairs with pair_id in [$lo, $hi).
SELECT pair_id, accession_a, accession_b FROM pair_list
WHERE pair_set = $name AND pair_id >= $lo AND pair_id < $hi ORDER BY pair_id

-- name: pair_set_proteins
-- The distinct proteins of a pair set, by accession.
SELECT accession_a AS accession FROM pair_list WHERE pair_set = $name
UNION
SELECT accession_b FROM pair_list WHERE pair_set = $name
ORDER BY accession

-- name: pair_index_list
-- Every pair as indices into the set's proteins sorted by accession, in pair_id order.
WITH prot AS (
    SELECT accession, (row_number() OVER (ORDER BY accession) - 1)::INTEGER AS idx
    FROM (SELECT accession_a AS accession FROM pair_list WHERE pair_set = $name
          UNION SELECT accession_b FROM pair_list WHERE pair_set = $name))
SELECT l.pair_id, pa.idx AS ia, pb.idx AS ib FROM pair_list l
JOIN prot pa ON pa.accession = l.accession_a
JOIN prot pb ON pb.accession = l.accession_b
WHERE l.pair_set = $name ORDER BY l.pair_id

-- name: job_definition
-- A pair job's parameters and chunk size, if it exists.
SELECT params, chunk_size FROM pair_jobs WHERE pair_set = $pair_set AND kind = $kind AND key = $key

-- name: delete_job
-- A pair job and its finished chunks (its parts are deleted with its dataset).
DELETE FROM pair_job_chunks WHERE pair_set = $pair_set AND kind = $kind AND key = $key;
DELETE FROM pair_jobs WHERE pair_set = $pair_set AND kind = $kind AND key = $key

-- name: insert_job
-- Register a pair job.
INSERT INTO pair_jobs (pair_set, kind, key, params, chunk_size, n_chunks, status, seconds, software_version)
VALUES ($pair_set, $kind, $key, $params, $chunk_size, $n_chunks, 'running', 0, $version)

-- name: job_chunks
-- Finished chunks of a pair job with their part files.
SELECT chunk, path FROM pair_job_chunks WHERE pair_set = $pair_set AND kind = $kind AND key = $key

-- name: save_job_chunk
-- Record a finished chunk and add its compute time to the job.
INSERT OR REPLACE INTO pair_job_chunks (pair_set, kind, key, chunk, path, seconds)
VALUES ($pair_set, $kind, $key, $chunk, $path, $seconds);
UPDATE pair_jobs SET seconds = seconds + $seconds WHERE pair_set = $pair_set AND kind = $kind AND key = $key

-- name: finish_job
-- Mark a pair job done.
UPDATE pair_jobs SET status = 'done', finished_at = current_timestamp
WHERE pair_set = $pair_set AND kind = $kind AND key = $key

-- name: done_job_keys
-- Keys of a pair set's finished jobs of one kind.
SELECT key FROM pair_jobs WHERE pair_set = $pair_set AND kind = $kind AND status = 'done' ORDER BY key

-- name: job_is_done
-- Whether a pair job finished.
SELECT count(*) FROM pair_jobs WHERE pair_set = $pair_set AND kind = $kind AND key = $key AND status = 'done'

-- name: protein_terms
-- Distinct annotation terms of the proteins registered as _protiso_term_proteins (accession, idx).
SELECT DISTINCT w.idx, a.term FROM annotations a JOIN _protiso_term_proteins w USING (accession)

-- name: correlation_square_pearson
-- The Pearson matrix of one pair set, alignment, run and layer, one row per variable.
SELECT n_pairs, variable, cosine, sq_euclidean, score, identity, go_jaccard
FROM pair_correlation_matrix
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
ORDER BY variable_order

-- name: correlation_square_spearman
-- The Spearman matrix of one pair set, alignment, run and layer, one row per variable.
SELECT n_pairs, variable, cosine, sq_euclidean, score, identity, go_jaccard
FROM pair_correlation_matrix_spearman
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
ORDER BY variable_order

-- name: identity_regimes
-- Embedding metrics per identity bin for one pair set, alignment, run and layer.
SELECT * EXCLUDE (pair_set, alignment, run_id, layer) FROM pair_identity_regimes(bins := $bins)
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
ORDER BY identity_from

-- name: plot_points
-- Up to $max_points pairs (a hash-ordered sample) with both metrics and an identity, for the plot.
SELECT cosine, sq_euclidean, score, identity FROM pair_metrics
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
  AND identity IS NOT NULL AND cosine IS NOT NULL
ORDER BY hash(pair_id) LIMIT $max_points
