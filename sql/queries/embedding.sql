-- Planning an embedding job (protiso.embedding.plan): the resume rule as keys, then pages of
-- sequences fetched by row id ranges, so that planning reads the catalog once plus one scan.

-- name: todo_keys
-- The resume rule: row id, length and previous state of each selected protein ($selected:
-- `true`, or `p.accession IN (<validated subset subquery>)`) that is not yet embedded, or failed,
-- or is missing from the statistics / stored local vectors that are asked for. $source: the
-- run's current statuses (protiso.runs.status.latest_sql over its status parts). No order
-- (sorted in Python).
SELECT p.rowid AS row, p.length,
       coalesce(r.status IN ('done', 'truncated', 'chunked'), false) AS embedded,
       coalesce(r.in_stats, false) AS in_stats, coalesce(r.local_stored, false) AS local_stored,
       coalesce(r.status = 'failed', false) AS failed
FROM proteins p LEFT JOIN $source r ON r.accession = p.accession
WHERE $selected
  AND (r.status IS NULL OR r.status = 'failed'
       OR ($local_stats AND r.status IN ('done', 'truncated', 'chunked') AND NOT r.in_stats)
       OR ($store_local AND r.status IN ('done', 'truncated', 'chunked') AND NOT r.local_stored))

-- name: todo_keys_fresh
-- todo_keys for a run without statuses: every selected protein ($selected as in todo_keys), no join.
SELECT p.rowid AS row, p.length, false AS embedded, false AS in_stats, false AS local_stored, false AS failed
FROM proteins p WHERE $selected

-- name: page_range
-- Accessions and sequences of the proteins with row ids in [lo, hi] (a dense page), shortest
-- first (ties by accession).
SELECT rowid AS row, accession, sequence, length FROM proteins WHERE rowid BETWEEN $lo AND $hi
ORDER BY length, accession

-- name: page_rows
-- Accessions and sequences of the row ids listed in the registered table _protiso_page_rows,
-- all within [lo, hi] (the range lets the scan skip other row groups), shortest first.
SELECT p.rowid AS row, p.accession, p.sequence, p.length FROM proteins p
WHERE p.rowid BETWEEN $lo AND $hi AND p.rowid IN (SELECT row FROM _protiso_page_rows)
ORDER BY p.length, p.accession
