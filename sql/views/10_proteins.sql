-- Proteins with all their annotation terms as a list: the relation that --where and
-- --group-by expressions are evaluated over.
CREATE OR REPLACE TEMP VIEW protein_meta AS
SELECT p.*, coalesce(a.terms, []::VARCHAR[]) AS terms
FROM proteins p
LEFT JOIN (
    SELECT accession, list(term ORDER BY term) AS terms
    FROM annotations GROUP BY accession
) a USING (accession);

CREATE OR REPLACE TEMP VIEW organism_summary AS
SELECT organism, any_value(taxon_id) AS taxon_id, count(*) AS n_proteins,
       round(avg(length), 1) AS mean_length, median(length) AS median_length,
       sum(length) AS n_residues
FROM proteins GROUP BY organism ORDER BY n_proteins DESC, organism;

-- Length histogram in bins of 100 residues (the last bin collects >= 2000).
CREATE OR REPLACE TEMP VIEW length_distribution AS
SELECT least(length // 100, 20) * 100 AS length_from,
       CASE WHEN length >= 2000 THEN NULL ELSE (length // 100 + 1) * 100 END AS length_to,
       count(*) AS n_proteins
FROM proteins GROUP BY 1, 2 ORDER BY 1;

CREATE OR REPLACE TEMP VIEW annotation_summary AS
SELECT namespace, count(*) AS n_annotations, count(DISTINCT term) AS n_terms,
       count(DISTINCT accession) AS n_proteins
FROM annotations GROUP BY namespace ORDER BY namespace;

CREATE OR REPLACE TEMP VIEW term_counts AS
SELECT namespace, term, count(*) AS n_proteins
FROM annotations GROUP BY namespace, term ORDER BY n_proteins DESC, term;

CREATE OR REPLACE TEMP VIEW residue_composition AS
SELECT residue, count(*) AS n, count(*) / sum(count(*)) OVER () AS fraction
FROM (SELECT unnest(string_split(sequence, '')) AS residue FROM proteins)
GROUP BY residue ORDER BY n DESC;
