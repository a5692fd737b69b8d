-- Pair sets, pair jobs and pair views (protiso.pairs).

-- name: pair_parts
-- Parts of every pair dataset, oldest first (for the pair views).
SELECT dataset, path FROM parts WHERE dataset LIKE 'pairs/%' ORDER BY created_at, path
