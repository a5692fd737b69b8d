-- Seeded pair sampling as table macros: the one definition `protiso pairs sample` runs, so
--   SELECT * FROM sample_pairs_all(fraction := 0.01, seed := 0)
-- gives exactly the pairs of `protiso pairs sample --name x --fraction 0.01 --seed 0`. A filter
-- (--where) is a relation with an `accession` column, named by `population` (a table, a view or
-- a CTE of the calling query; default: proteins):
--   WITH humans AS (SELECT accession FROM protein_meta WHERE organism LIKE 'Homo sapiens%')
--   SELECT * FROM sample_pairs_all(fraction := 0.01, seed := 0, population := 'humans')
-- (CTE names starting with `_sp_` are the macros' own.)
--
-- The rule (reproducible from the seed; no RNG library involved; md5 is the same everywhere):
--   population    the distinct accessions of the relation `population`;
--   proteins      the k proteins with the smallest md5_number('<accession>:<seed>') (the MD5
--                 digest read as a little-endian 128-bit integer), where k is `proteins`, else
--                 max(2, round(fraction * population)) (in double precision, half away from
--                 zero), else for all-pairs with `pairs` the smallest k with k(k-1)/2 >= pairs,
--                 else the whole population;
--   all-pairs     every unordered pair among them;
--   random-pairs  the `pairs` pairs among them with the smallest
--                 md5_number('<accession_a>:<accession_b>:<seed>') (every pair is ranked, so draw
--                 the proteins first on large populations);
--   stratified    a random-pairs pool of pairs * pool_factor, aligned (PAM250 global 10/0.5); per
--                 identity bin [b/bins, (b+1)/bins) the ceil(pairs / bins) pool pairs with the
--                 smallest pair hash, then the `pairs` smallest of those;
--   every pair    accession_a < accession_b; pair_id numbers the pairs 0.. in (accession_a,
--                 accession_b) order.

-- The distinct accessions of a relation (table, view or CTE name).
CREATE OR REPLACE TEMP MACRO sample_population(population := 'proteins') AS TABLE
SELECT DISTINCT accession FROM query_table(population);

CREATE OR REPLACE TEMP MACRO _proteins_for_pairs(n, pairs) AS
    greatest(2, CASE WHEN (n - 1) * (n - 2) // 2 >= pairs THEN n - 1
                     WHEN n * (n - 1) // 2 < pairs THEN n + 1
                     ELSE n END);

-- The smallest k with k(k-1)/2 >= pairs (at least 2).
CREATE OR REPLACE TEMP MACRO proteins_for_pairs(pairs) AS
    _proteins_for_pairs(ceil((1 + sqrt(1 + 8 * pairs::DOUBLE)) / 2)::BIGINT, pairs);

-- How many proteins a sample draws from a population of that size.
CREATE OR REPLACE TEMP MACRO sample_size(population, fraction := NULL, proteins := NULL,
                                         all_pairs := NULL) AS
    CASE WHEN proteins IS NOT NULL THEN proteins::BIGINT
         WHEN fraction IS NOT NULL THEN greatest(2, round(fraction::DOUBLE * population))::BIGINT
         WHEN all_pairs IS NOT NULL THEN proteins_for_pairs(all_pairs)
         ELSE population::BIGINT END;

-- The drawn proteins (accession), in accession order.
CREATE OR REPLACE TEMP MACRO sample_proteins(fraction := NULL, proteins := NULL, all_pairs := NULL,
                                             seed := 0, population := 'proteins') AS TABLE
WITH _sp_pop AS (
    SELECT accession, md5_number(accession || ':' || seed) AS h
    FROM sample_population(population := population)),
_sp_size AS (
    SELECT count(*) AS n,
           sample_size(count(*), fraction := fraction, proteins := proteins,
                       all_pairs := all_pairs) AS k
    FROM _sp_pop),
_sp_drawn AS (
    SELECT accession FROM _sp_pop, _sp_size
    WHERE CASE WHEN _sp_size.k > _sp_size.n
               THEN error(_sp_size.k || ' proteins requested but the population has '
                          || _sp_size.n)
               ELSE true END
    QUALIFY row_number() OVER (ORDER BY h, accession) <= _sp_size.k)
SELECT accession FROM _sp_drawn ORDER BY accession;

-- All pairs among the drawn proteins (the paper: fraction := 0.01).
CREATE OR REPLACE TEMP MACRO sample_pairs_all(fraction := NULL, proteins := NULL, pairs := NULL,
                                              seed := 0, population := 'proteins') AS TABLE
WITH _sp_s AS (
    SELECT accession, row_number() OVER (ORDER BY accession) - 1 AS idx, count(*) OVER () AS k
    FROM sample_proteins(fraction := fraction, proteins := proteins, all_pairs := pairs,
                         seed := seed, population := population))
SELECT a.idx * a.k - a.idx * (a.idx + 1) // 2 + b.idx - a.idx - 1 AS pair_id,
       a.accession AS accession_a, b.accession AS accession_b
FROM _sp_s a JOIN _sp_s b ON a.idx < b.idx
ORDER BY pair_id;

-- `pairs` distinct pairs drawn uniformly among the drawn proteins (all proteins by default).
CREATE OR REPLACE TEMP MACRO sample_pairs_random(pairs, fraction := NULL, proteins := NULL,
                                                 seed := 0, population := 'proteins') AS TABLE
WITH _sp_s AS (
    SELECT accession FROM sample_proteins(fraction := fraction, proteins := proteins,
                                          seed := seed, population := population)),
_sp_picked AS (
    SELECT a.accession AS accession_a, b.accession AS accession_b
    FROM _sp_s a JOIN _sp_s b ON a.accession < b.accession
    ORDER BY md5_number(a.accession || ':' || b.accession || ':' || seed), accession_a, accession_b
    LIMIT pairs)
SELECT row_number() OVER (ORDER BY accession_a, accession_b) - 1 AS pair_id, accession_a, accession_b
FROM _sp_picked ORDER BY pair_id;

-- Identity strata of an aligned pool: `pool` names a relation (accession_a, accession_b,
-- identity); per bin the ceil(pairs / bins) pairs with the smallest pair hash, then the `pairs`
-- smallest of those.
CREATE OR REPLACE TEMP MACRO stratify_pairs(pool, pairs, bins, seed) AS TABLE
WITH _sp_binned AS (
    SELECT accession_a, accession_b,
           md5_number(accession_a || ':' || accession_b || ':' || seed) AS h,
           least(floor(identity * bins), bins - 1)::INTEGER AS bin
    FROM query_table(pool) WHERE identity IS NOT NULL),
_sp_kept AS (
    SELECT * FROM _sp_binned
    QUALIFY row_number() OVER (PARTITION BY bin ORDER BY h, accession_a, accession_b)
            <= ceil(pairs / bins)),
_sp_picked AS (
    SELECT accession_a, accession_b FROM _sp_kept ORDER BY h, accession_a, accession_b LIMIT pairs)
SELECT row_number() OVER (ORDER BY accession_a, accession_b) - 1 AS pair_id, accession_a, accession_b
FROM _sp_picked ORDER BY pair_id;

-- Identity-stratified pairs, aligned here with the align_identity UDF (one thread; `pairs
-- sample` aligns the same pool in parallel and applies stratify_pairs to it).
CREATE OR REPLACE TEMP MACRO sample_pairs_stratified(pairs, bins := 10, pool_factor := 10,
                                                     fraction := NULL, proteins := NULL,
                                                     seed := 0, population := 'proteins') AS TABLE
WITH _sp_pool AS (
    SELECT r.accession_a, r.accession_b, align_identity(a.sequence, b.sequence) AS identity
    FROM sample_pairs_random(pairs * pool_factor, fraction := fraction, proteins := proteins,
                             seed := seed, population := population) r
    JOIN proteins a ON a.accession = r.accession_a
    JOIN proteins b ON b.accession = r.accession_b)
SELECT * FROM stratify_pairs('_sp_pool', pairs, bins, seed);
