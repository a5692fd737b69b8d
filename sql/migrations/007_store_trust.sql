-- A store you can trust (issue 13): each part's size and SHA-256 are recorded when it is
-- registered (with n_rows, already there), so reads notice a part that went missing or changed
-- and `protiso verify` checks contents; index files get the same. A run's invocation records
-- the process's start time beside its pid and host, so a reused pid is not mistaken for it.

ALTER TABLE parts ADD COLUMN size_bytes BIGINT;
ALTER TABLE parts ADD COLUMN sha256 VARCHAR;
ALTER TABLE nn_indexes ADD COLUMN size_bytes BIGINT;
ALTER TABLE nn_indexes ADD COLUMN sha256 VARCHAR;
ALTER TABLE run_invocations ADD COLUMN pid_start BIGINT;
