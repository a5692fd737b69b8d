-- Nearest-neighbour indexes with their run's model and freshness against the run's parts:
-- 'fresh', 'behind' (new parts: `protiso index build` extends it) or 'stale' (parts it was
-- built from are gone: rebuild with --rebuild).
CREATE OR REPLACE TEMP VIEW nn_index_summary AS
WITH s AS (
    SELECT i.*,
           (SELECT count(*) FROM parts p
             WHERE p.dataset = 'embeddings/' || i.run_id
               AND NOT list_contains(i.source_parts, p.path)) AS new_parts,
           (SELECT count(*) FROM (SELECT unnest(i.source_parts) AS path) u
             WHERE u.path NOT IN (SELECT path FROM parts)) AS missing_parts
    FROM nn_indexes i
)
SELECT s.index_id, s.run_id, r.model, s.layer, s.kind, s.metric, s.dim, s.n_vectors,
       CASE WHEN s.missing_parts > 0 THEN 'stale' WHEN s.new_parts > 0 THEN 'behind' ELSE 'fresh' END
           AS status,
       s.new_parts, s.missing_parts, s.params, s.build_seconds, s.updated_at
FROM s LEFT JOIN runs r USING (run_id)
ORDER BY s.index_id;

-- Derived runs (isotropy-correcting transforms) with their parent run's model.
CREATE OR REPLACE TEMP VIEW transform_runs AS
SELECT t.run_id, t.parent_run, p.model AS parent_model, t.parent_layer, t.transform, t.param,
       t.in_dim, t.out_dim, t.n_fit, t.created_at
FROM nn_transforms t LEFT JOIN runs p ON p.run_id = t.parent_run
ORDER BY t.created_at, t.run_id;
