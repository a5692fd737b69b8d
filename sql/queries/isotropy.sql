-- The isotropy engine (protiso.isotropy.engine).

-- name: group_keys
-- Each matching protein's group as text ($subset: the validated Subset's (accession, grp) subquery).
SELECT accession, CAST(grp AS VARCHAR) AS grp FROM ($subset)

-- name: metrics_columns
-- The columns of table `metrics` (results carry these and nothing else).
SELECT column_name FROM information_schema.columns WHERE table_name = 'metrics'

-- name: insert_metrics
-- Append result rows registered as `isotropy_new_metrics`, matched to the table's columns by name.
INSERT INTO metrics BY NAME SELECT * FROM isotropy_new_metrics
