-- Parts on object storage (issue 18): a store may keep its Parquet parts at a URL (s3://bucket/prefix,
-- gs://..., anything pyarrow's filesystems open) instead of data/ beside the catalog. The catalog
-- still names parts data/<dataset>/<file>; the location they resolve against is recorded here.

CREATE TABLE store_settings (
    key   VARCHAR PRIMARY KEY,     -- 'data': the data location URL
    value VARCHAR NOT NULL
);
