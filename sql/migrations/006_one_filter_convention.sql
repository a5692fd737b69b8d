-- One convention for a recorded protein filter everywhere: a column named `filter` holding the
-- --where expression, '' for all proteins (as metrics.filter always did). Runs also remember
-- every invocation's filter in run_invocations, so resuming with another filter loses nothing.

ALTER TABLE runs RENAME COLUMN where_filter TO filter;
UPDATE runs SET filter = '' WHERE filter IS NULL;
ALTER TABLE pair_sets RENAME COLUMN where_sql TO filter;
UPDATE pair_sets SET filter = '' WHERE filter IS NULL;

CREATE TABLE run_invocations (
    run_id      VARCHAR NOT NULL,
    started_at  TIMESTAMP NOT NULL DEFAULT current_timestamp,
    filter      VARCHAR NOT NULL DEFAULT '',
    pid         INTEGER,
    host        VARCHAR
);
