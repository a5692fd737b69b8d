"""The bottom floor: the catalog, its transactions and Parquet parts, the shipped SQL, and the
registry through which the areas above add views and UDFs. Imports no domain module."""
from protiso.store.catalog import CATALOG_NAME, DATA_DIR, Store, open_store, resolve_store_path
from protiso.store.fs import write_part_file
from protiso.store.ident import parquet_source, quote_ident, sql_literal
from protiso.store.sqlfiles import queries, sql_dir

__all__ = ["CATALOG_NAME", "DATA_DIR", "Store", "open_store", "resolve_store_path", "write_part_file",
           "parquet_source", "quote_ident", "sql_literal", "queries", "sql_dir"]
