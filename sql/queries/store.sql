-- The store's own catalog tables (protiso.store): Parquet parts and their integrity records.

-- name: dataset_parts
-- Registered parts of a dataset with their recorded size, oldest first.
SELECT path, size_bytes FROM parts WHERE dataset = $dataset ORDER BY created_at, path

-- name: all_parts
-- Every registered part with what was recorded when it was registered.
SELECT dataset, path, n_rows, size_bytes, sha256 FROM parts ORDER BY dataset, created_at, path

-- name: part_registered
-- Whether a path is registered as a part.
SELECT count(*) FROM parts WHERE path = $path

-- name: register_part
-- List a part with its row count, size and checksum.
INSERT INTO parts (dataset, path, n_rows, size_bytes, sha256) VALUES ($dataset, $path, $n_rows, $size_bytes, $sha256)

-- name: listed_paths
-- The relative paths registered for a dataset.
SELECT path FROM parts WHERE dataset = $dataset

-- name: delete_dataset
-- Unlist every part of a dataset.
DELETE FROM parts WHERE dataset = $dataset

-- name: unregister_part
-- Unlist one part (repair of a lost or changed file).
DELETE FROM parts WHERE path = $path

-- name: parts_without_checksum
-- Parts registered before sizes and checksums were recorded (filled in once on upgrade).
SELECT path FROM parts WHERE sha256 IS NULL

-- name: record_checksum
-- Record a part's size and checksum.
UPDATE parts SET size_bytes = $size_bytes, sha256 = $sha256 WHERE path = $path

-- name: tables
-- The catalog's own (persistent) tables.
SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary
ORDER BY table_name

-- name: catalog_views
-- The persistent views in the catalog (not protiso's per-connection TEMP views).
SELECT view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT temporary
  AND NOT internal

-- name: data_location
-- Where the store's parts live when not in data/ beside the catalog (a URL; see protiso.store.fs).
SELECT value FROM store_settings WHERE key = 'data'

-- name: set_data_location
-- Record the data location of a new store.
INSERT OR REPLACE INTO store_settings (key, value) VALUES ('data', $location)

-- name: any_part
-- Whether the store lists any part at all.
SELECT count(*) > 0 FROM (SELECT 1 FROM parts LIMIT 1)

-- name: memory_limit
-- DuckDB's memory limit on this connection, as it prints it ('18.8 GiB').
SELECT current_setting('memory_limit')

-- name: set_memory_limit
-- DuckDB's memory limit ('536870912B', '18.8 GiB').
SET memory_limit = $limit

-- name: reset_memory_limit
-- DuckDB's memory limit back to its default.
RESET memory_limit
