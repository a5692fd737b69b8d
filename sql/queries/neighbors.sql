-- Nearest-neighbour indexes, lookups and derived (transformed) runs (protiso.neighbors).
-- `$subset` is a validated Subset subquery (protiso.query); every other value is a parameter.
-- Registered Arrow tables are named _protiso_nn_*.

-- name: index_info
-- The newest index of a run's layer, optionally of one kind and metric (NULL: any).
SELECT index_id, run_id, layer, kind, metric, dim, n_vectors, params, path, source_parts,
       build_seconds, created_at, size_bytes, sha256
FROM nn_indexes
WHERE run_id = $run_id AND layer = $layer
  AND ($kind::VARCHAR IS NULL OR kind = $kind)
  AND ($metric::VARCHAR IS NULL OR metric = $metric)
ORDER BY updated_at DESC
LIMIT 1

-- name: index_list
-- The indexes, of one run or all ($run_id NULL), with their freshness (view nn_index_summary).
SELECT index_id, model, kind, metric, dim, n_vectors, status, round(build_seconds, 2) AS build_seconds,
       params, updated_at
FROM nn_index_summary
WHERE $run_id::VARCHAR IS NULL OR run_id = $run_id
ORDER BY index_id

-- name: run_has_index
-- Whether any index of the run exists (then its id is a run id, not a model alias).
SELECT count(*) FROM nn_indexes WHERE run_id = $run_id

-- name: upsert_index
-- Replace the catalog row of an index (build parameters, file, parts covered). The file's size
-- and SHA-256 are recorded for files at a data URL (NULL for files under the store root).
DELETE FROM nn_indexes WHERE index_id = $index_id;
INSERT INTO nn_indexes (index_id, run_id, layer, kind, metric, dim, n_vectors, params, path,
                        source_parts, build_seconds, faiss_version, software_version, created_at,
                        updated_at, size_bytes, sha256)
VALUES ($index_id, $run_id, $layer, $kind, $metric, $dim, $n_vectors, $params, $path, $source_parts,
        $build_seconds, $faiss_version, $software_version,
        coalesce($created_at::TIMESTAMP, current_timestamp), current_timestamp,
        $size_bytes::BIGINT, $sha256::VARCHAR)

-- name: delete_ids
-- Forget an index's id map.
DELETE FROM nn_index_ids WHERE index_id = $index_id

-- name: append_ids
-- Append id -> accession rows from the registered table _protiso_nn_ids.
INSERT INTO nn_index_ids SELECT index_id, id, accession FROM _protiso_nn_ids

-- name: drop_index
-- Remove an index's catalog row and id map.
DELETE FROM nn_index_ids WHERE index_id = $index_id;
DELETE FROM nn_indexes WHERE index_id = $index_id

-- name: indexed_accessions
-- Accessions already in an index.
SELECT accession FROM nn_index_ids WHERE index_id = $index_id

-- name: allowed_ids
-- FAISS ids of an index whose proteins are in the subset ($subset), ascending.
SELECT id FROM nn_index_ids WHERE index_id = $index_id AND accession IN ($subset) ORDER BY id

-- name: ids_of_accessions
-- FAISS ids and sequences of the given accessions that an index holds.
SELECT i.accession, i.id, p.sequence
FROM nn_index_ids i LEFT JOIN proteins p USING (accession)
WHERE i.index_id = $index_id AND i.accession IN (SELECT unnest($accessions::VARCHAR[]))

-- name: known_accessions
-- Which of the given accessions are proteins of the store.
SELECT accession FROM proteins WHERE accession IN (SELECT unnest($accessions::VARCHAR[]))

-- name: protein_exists
-- Whether an accession is a protein of the store.
SELECT count(*) FROM proteins WHERE accession = $accession

-- name: sequences
-- Sequences of the given accessions.
SELECT accession, sequence FROM proteins WHERE accession IN (SELECT unnest($accessions::VARCHAR[]))

-- name: hits_with_metadata
-- Search hits (registered table _protiso_nn_hits: query_no, query, rank, id, score) joined with
-- the id map and protein metadata, in query and rank order.
SELECT h.query_no, h.query, h.rank, i.accession, h.score, p.entry_name, p.organism, p.length,
       p.description, i.index_id
FROM _protiso_nn_hits h
JOIN nn_index_ids i ON i.index_id = $index_id AND i.id = h.id
LEFT JOIN proteins p ON p.accession = i.accession
ORDER BY h.query_no, h.rank

-- name: transform_of
-- Parent run, parent layer and parameter file of a derived run.
SELECT parent_run, parent_layer, path FROM nn_transforms WHERE run_id = $run_id

-- name: transform_exists
-- Whether a derived run of that id exists.
SELECT count(*) FROM nn_transforms WHERE run_id = $run_id

-- name: run_exists
-- Whether a run of that id exists.
SELECT count(*) FROM runs WHERE run_id = $run_id

-- name: insert_derived_run
-- The derived run's row in `runs`: the parent's provenance with its own id, dimension and layer.
INSERT INTO runs SELECT * REPLACE (
    $run_id::VARCHAR AS run_id, $run_key::VARCHAR AS run_key, $run_id::VARCHAR AS model,
    'derived' AS family, $dim::INTEGER AS dim, [$layer::INTEGER] AS layers, 'done' AS status,
    $n::BIGINT AS n_done, $parent::VARCHAR AS parent_run, $transform::VARCHAR AS transform,
    current_timestamp AS created_at, current_timestamp AS updated_at)
FROM runs WHERE run_id = $parent

-- name: insert_transform
-- The parameters of a derived run (file under store/transforms/).
INSERT INTO nn_transforms (run_id, parent_run, parent_layer, transform, param, in_dim, out_dim, n_fit, path)
VALUES ($run_id, $parent, $layer, $transform, $param, $in_dim, $out_dim, $n_fit, $path)

-- name: id_map
-- FAISS id -> accession of an index, by id.
SELECT id, accession FROM nn_index_ids WHERE index_id = $index_id ORDER BY id
