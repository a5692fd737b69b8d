"""The run catalog: what was embedded (or imported, or derived), how to find it, read it and
write it. Everything that reads or writes vectors goes through here."""
from protiso.runs.catalog import (EMBEDDED, RUN_ID_RE, Run, delete_run, embeddings_dataset, get_run, list_runs,
                                  local_dataset, new_run_id, resolve, resolve_layer, resolve_run, run_key,
                                  view_name)
from protiso.runs.reader import iter_embeddings, load_embeddings, load_local_stats, load_vectors, matrix
from protiso.runs.writer import Chunk, RunWriter, STATUS_FIELDS, open_run, write_stats_file

__all__ = ["EMBEDDED", "RUN_ID_RE", "Run", "delete_run", "embeddings_dataset", "get_run", "list_runs",
           "local_dataset", "new_run_id", "resolve", "resolve_layer", "resolve_run", "run_key", "view_name",
           "iter_embeddings", "load_embeddings", "load_local_stats", "load_vectors", "matrix", "Chunk",
           "RunWriter", "STATUS_FIELDS", "open_run", "write_stats_file"]
