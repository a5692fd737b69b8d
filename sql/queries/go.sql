-- The Gene Ontology (protiso.go.store, protiso.go.names). The staging relations go_terms_in,
-- go_edges_in, go_ancestors_in and go_alt_ids_in are Arrow tables registered on the connection
-- for the duration of one ingest.

-- name: ontology
-- The ingested ontology's provenance (at most one row).
SELECT source, data_version, sha256, n_terms, n_edges, n_ancestors, n_alt_ids, ingested_at
FROM go_ontology

-- name: clear_ontology
-- Drop the ontology the store holds (an OBO ingest replaces it as a whole).
DELETE FROM go_terms;
DELETE FROM go_edges;
DELETE FROM go_ancestors;
DELETE FROM go_alt_ids;
DELETE FROM go_ids;
DELETE FROM go_ontology

-- name: insert_staged
-- Copy the staged tables in. depth = shortest is_a/part_of path to a root (a live term with no
-- is_a/part_of parent, i.e. only its self row in the closure); NULL for obsolete terms. The
-- closure is stored ordered by ancestor, so `ancestor = t` lookups (go_under) read few row groups.
INSERT INTO go_terms (term, name, namespace, obsolete, depth)
SELECT t.term, t.name, t.namespace, t.obsolete, CASE WHEN t.obsolete THEN NULL ELSE d.depth END
FROM go_terms_in t
LEFT JOIN (
    SELECT a.term, min(a.distance) AS depth
    FROM go_ancestors_in a
    JOIN (SELECT term FROM go_ancestors_in GROUP BY term HAVING count(*) = 1) r ON r.term = a.ancestor
    JOIN go_terms_in live ON live.term = a.ancestor AND NOT live.obsolete
    GROUP BY a.term
) d USING (term)
ORDER BY t.term;
INSERT INTO go_edges SELECT child, parent, relation FROM go_edges_in ORDER BY child, relation, parent;
INSERT INTO go_ancestors SELECT term, ancestor, distance FROM go_ancestors_in ORDER BY ancestor, distance, term;
INSERT INTO go_alt_ids SELECT alt_id, term FROM go_alt_ids_in ORDER BY alt_id;
INSERT INTO go_ids SELECT id, term FROM (SELECT term AS id, term FROM go_terms_in UNION ALL SELECT alt_id, term FROM go_alt_ids_in) ORDER BY id

-- name: record_ontology
-- Provenance of the ontology just ingested.
INSERT INTO go_ontology (source, data_version, sha256, n_terms, n_edges, n_ancestors, n_alt_ids, software_version)
VALUES ($source, $data_version, $sha256, $n_terms, $n_edges, $n_ancestors, $n_alt_ids, $software_version)

-- name: record_ingest
-- The ingest log row of an OBO ingest (format 'obo', n_records = terms).
INSERT INTO ingests (files, format, n_records, n_new, n_annotations, n_new_annotations, started_at,
                     finished_at, software_version)
VALUES ([$source], 'obo', $n_terms, NULL, 0, 0, $started_at, current_timestamp, $software_version)

-- name: annotation_coverage
-- Annotated GO-style terms (GO:...) the ontology does not know, and those it marks obsolete:
-- counts of distinct terms and a few examples.
SELECT count(*) FILTER (WHERE n.id IS NULL) AS n_unknown,
       list(a.term ORDER BY a.term) FILTER (WHERE n.id IS NULL)[1:3] AS unknown_examples,
       count(*) FILTER (WHERE n.obsolete) AS n_obsolete,
       list(a.term ORDER BY a.term) FILTER (WHERE n.obsolete)[1:3] AS obsolete_examples
FROM (SELECT DISTINCT term FROM annotations WHERE term LIKE 'GO:%') a
LEFT JOIN go_term_names n ON n.id = a.term

-- name: names_of
-- Primary term, name and namespace of each id in a list (primary or alt ids).
SELECT id, term, name, namespace FROM go_term_names WHERE list_contains($ids, id)

-- name: top_terms
-- The n live terms of a namespace at a depth with the most proteins under them (true-path rule).
SELECT term, name, namespace, depth, n_proteins FROM go_term_proteins
WHERE namespace = go_namespace($namespace) AND depth = $depth
ORDER BY n_proteins DESC, term LIMIT $n

-- name: ic_terms
-- The ontology's terms for information content (protiso.go.semantic.InformationContent).
SELECT term, namespace, obsolete FROM go_terms

-- name: ic_ancestors
-- The is_a/part_of closure for information content.
SELECT term, ancestor FROM go_ancestors

-- name: ic_alt_ids
-- Secondary ids, so annotations made against them count for their primary term.
SELECT alt_id, term FROM go_alt_ids

-- name: ic_annotations
-- The annotation corpus the information content is counted over: every annotation of the store.
SELECT accession, term FROM annotations

-- name: view_pair_go_semantic
-- Resnik and Lin similarity (best-match average per namespace) of all pair sets, over their
-- parts ($source, dataset pairs/<set>/go/semantic).
CREATE OR REPLACE TEMP VIEW pair_go_semantic AS
SELECT pair_set, pair_id, resnik_bp, lin_bp, resnik_mf, lin_mf, resnik_cc, lin_cc FROM $source

-- name: pair_go_correlations_pearson
-- Pearson correlation of each GO similarity (Jaccard, Resnik and Lin per namespace) with cosine,
-- squared Euclidean distance, alignment score and identity, over the pairs where it is defined.
SELECT measure, n_pairs, cosine, sq_euclidean, score, identity FROM pair_go_correlations
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
ORDER BY measure_order

-- name: pair_go_correlations_spearman
-- As pair_go_correlations_pearson, Spearman (average ranks within the pairs where the measure is defined).
SELECT measure, n_pairs, cosine, sq_euclidean, score, identity FROM pair_go_correlations_spearman
WHERE pair_set = $pair_set AND alignment = $alignment AND run_id = $run_id AND layer = $layer
ORDER BY measure_order
