-- The reproduce/demo pipeline (protiso.pipeline): what is already done, what to group by.

-- name: missing_from_run
-- Proteins of the subset ($subset) a run has not embedded (or, when statistics are needed, not
-- counted in its per-residue statistics).
SELECT count(*) FROM ($subset) s
LEFT JOIN run_proteins r ON r.run_id = $run_id AND r.accession = s.accession
WHERE r.status IS NULL OR r.status = 'failed'
   OR ($need_stats AND r.status IN ('done', 'truncated', 'chunked') AND NOT r.in_stats)

-- name: has_metrics
-- Whether isotropy rows exist for a run, layer, level, filter and grouping.
SELECT count(*) FROM metrics
WHERE run_id = $run_id AND layer = $layer AND level = $level AND filter = $filter AND group_by = $group_by

-- name: job_done
-- Whether a pair job finished.
SELECT count(*) FROM pair_jobs WHERE pair_set = $pair_set AND kind = $kind AND key = $key AND status = 'done'

-- name: top_terms
-- The most frequent annotation terms of a namespace among the subset's proteins.
SELECT term FROM annotations WHERE namespace = $namespace AND accession IN ($subset)
GROUP BY term ORDER BY count(*) DESC, term LIMIT $top

-- name: organisms_with_min
-- Organisms with at least $min_group proteins in the subset.
SELECT count(*) FROM (SELECT organism FROM proteins WHERE organism IS NOT NULL AND accession IN ($subset)
                      GROUP BY organism HAVING count(*) >= $min_group)

-- name: pair_set_exists
-- Whether a pair set exists.
SELECT count(*) FROM pair_sets WHERE name = $name

-- name: protein_count
-- Proteins in the store.
SELECT count(*) FROM proteins

-- name: demo_isotropy
-- The demo's summary: whole-set global isotropy at each run's last layer.
SELECT model, layer, n, d, isoscore, effective_dims, avg_cosine FROM isotropy_summary
WHERE level = 'global' AND filter = $filter
  AND layer = (SELECT list_max(layers) FROM runs r WHERE r.run_id = isotropy_summary.run_id)

-- name: top_organisms
-- The ten organisms with the most proteins.
SELECT * FROM organism_summary LIMIT 10

-- name: annotation_summary
-- Annotation rows and proteins per namespace.
SELECT * FROM annotation_summary
