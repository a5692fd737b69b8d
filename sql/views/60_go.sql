-- The Gene Ontology in SQL (tables of migration 010, filled by `protiso ingest go.obo`).
--
-- DuckDB binds a macro's body when it is created (since 1.4), so a macro cannot read a column
-- of the query that calls it: the macros evaluated per protein take the protein's accession as
-- their first argument, e.g. --where "go_under(accession, 'GO:0005737')" (a semi-join on the
-- annotations: ~5x faster than unnesting the `terms` list in a correlated subquery).

-- Every id a term is known by (primary and alt ids) with the primary term's name and place.
CREATE OR REPLACE TEMP VIEW go_term_names AS
SELECT i.id, t.term, t.name, t.namespace, t.obsolete, t.depth
FROM go_ids i JOIN go_terms t USING (term);

-- GO's namespace name for an aspect alias: BP/BPO/P -> biological_process, CC/CCO/C, MF/MFO/F.
CREATE OR REPLACE TEMP MACRO go_namespace(ns) AS
CASE lower(trim(ns))
    WHEN 'bp' THEN 'biological_process' WHEN 'bpo' THEN 'biological_process' WHEN 'p' THEN 'biological_process'
    WHEN 'cc' THEN 'cellular_component' WHEN 'cco' THEN 'cellular_component' WHEN 'c' THEN 'cellular_component'
    WHEN 'mf' THEN 'molecular_function' WHEN 'mfo' THEN 'molecular_function' WHEN 'f' THEN 'molecular_function'
    ELSE trim(ns) END;

-- The primary id of a GO id (itself, or the term whose alt_id it is). An error naming the id when
-- no ontology is ingested or the id is not in it.
CREATE OR REPLACE TEMP MACRO go_term(t) AS
coalesce((SELECT any_value(i.term) FROM go_ids i WHERE i.id = t),
         CASE WHEN NOT EXISTS (SELECT 1 FROM go_terms)
              THEN error('GO term ' || t || ': no Gene Ontology in the store; ingest one first, '
                         || 'e.g. `protiso ingest go.obo`')
              ELSE error('GO term ' || t || ' is not in the ingested Gene Ontology ('
                         || coalesce((SELECT any_value(source || coalesce(', ' || data_version, ''))
                                      FROM go_ontology), '?') || '); check the id') END);

-- A term's name (NULL for anything that is not a GO id of the ontology).
CREATE OR REPLACE TEMP MACRO go_name(t) AS (SELECT any_value(n.name) FROM go_term_names n WHERE n.id = t);

-- 'GO:0005737 (cytoplasm)' for a GO id of the ontology; anything else unchanged.
CREATE OR REPLACE TEMP MACRO go_label(t) AS coalesce(t || ' (' || go_name(t) || ')', t);

-- Shortest is_a/part_of path from t to its namespace root (root = 0); NULL for obsolete terms.
CREATE OR REPLACE TEMP MACRO go_depth(t) AS (SELECT any_value(n.depth) FROM go_terms n WHERE n.term = go_term(t));

-- True-path rule: a protein annotated to a term is under that term and all its ancestors over
-- is_a/part_of. go_under(accession, t): whether the protein has an annotation (primary or alt
-- id) to t or to a descendant of t. t may be an alt id; an unknown t is an error.
CREATE OR REPLACE TEMP MACRO go_under(acc, t) AS
CASE WHEN go_term(t) IS NULL THEN NULL ELSE acc IN (
    SELECT an.accession
    FROM annotations an
    JOIN go_ids i ON i.id = an.term
    JOIN go_ancestors a ON a.term = i.term
    JOIN go_ids r ON r.term = a.ancestor
    WHERE r.id = t) END;

-- The first of `candidates` (a list of GO ids, in priority order) that the protein is under;
-- NULL if none. For a --group-by over chosen terms, e.g.
-- go_first(accession, ['GO:0005634', 'GO:0005737']) or go_first(accession, go_top('CC', 2, 8)).
CREATE OR REPLACE TEMP MACRO go_first(acc, candidates) AS
CASE WHEN NOT (SELECT coalesce(bool_and(go_term(c) IS NOT NULL), true)
               FROM (SELECT unnest(candidates) AS c)) THEN NULL ELSE (
    SELECT arg_min(k.c, k.i)
    FROM annotations an
    JOIN go_ids i ON i.id = an.term
    JOIN go_ancestors a ON a.term = i.term
    JOIN go_ids r ON r.term = a.ancestor
    JOIN (SELECT unnest(candidates) AS c, generate_subscripts(candidates, 1) AS i) k ON k.c = r.id
    WHERE an.accession = acc) END;

-- Annotations to GO terms of the ontology, alt ids mapped to primary terms.
CREATE OR REPLACE TEMP VIEW go_annotations AS
SELECT a.accession, i.term, t.namespace
FROM annotations a JOIN go_ids i ON i.id = a.term JOIN go_terms t ON t.term = i.term;

-- Per live term: how many proteins are under it (annotated to it or to a descendant).
-- Filter on namespace and depth first, e.g.
-- SELECT * FROM go_term_proteins WHERE namespace = 'cellular_component' AND depth = 2
-- ORDER BY n_proteins DESC LIMIT 8.
CREATE OR REPLACE TEMP VIEW go_term_proteins AS
SELECT t.term, t.name, t.namespace, t.depth, count(DISTINCT g.accession) AS n_proteins
FROM go_terms t
JOIN go_ancestors a ON a.ancestor = t.term
JOIN go_annotations g ON g.term = a.term
WHERE NOT t.obsolete
GROUP BY t.term, t.name, t.namespace, t.depth;

-- The top_n terms of a namespace (aliases accepted) at a depth with the most proteins under
-- them, most first (ties by id): the candidates of a group-by, go_first(accession, go_top('CC', 2, 8)).
CREATE OR REPLACE TEMP MACRO go_top(ns, at_depth, top_n) AS (
    SELECT coalesce(list(term ORDER BY n_proteins DESC, term), []::VARCHAR[])
    FROM (SELECT term, n_proteins FROM go_term_proteins
          WHERE namespace = go_namespace(ns) AND depth = at_depth
          ORDER BY n_proteins DESC, term LIMIT top_n));

-- term_counts with names: proteins annotated directly to each term (not through descendants).
CREATE OR REPLACE TEMP VIEW go_term_counts AS
SELECT c.namespace, c.term, n.name, c.n_proteins
FROM term_counts c LEFT JOIN go_term_names n ON n.id = c.term
ORDER BY c.n_proteins DESC, c.term;
