-- Subsets of proteins (protiso.query). `$where` and `$group_by` are the user's expressions,
-- validated by DuckDB's parser as one expression each before they are substituted.

-- name: all_accessions
-- Every protein in the store.
SELECT accession FROM proteins

-- name: matching_accessions
-- Proteins whose protein_meta row satisfies the filter.
SELECT accession FROM protein_meta WHERE ($where)

-- name: group_keys
-- Each protein's group key under a group-by expression.
SELECT accession, ($group_by) AS grp FROM protein_meta
