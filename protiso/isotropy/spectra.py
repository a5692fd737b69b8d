"""Covariance eigenvalue spectra of a run's layers, computed in one streaming pass and cached as
Parquet parts (dataset spectra/<run_id>) for the report."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from protiso.isotropy.engine import scan_layer
from protiso.isotropy.metrics import covariance, eigenvalues
from protiso.query import Subset, as_subset
from protiso.runs import resolve_run
from protiso.store import Store

SPECTRA_SCHEMA = pa.schema([("run_id", pa.string()), ("layer", pa.int32()), ("filter", pa.string()),
                            ("n", pa.int64()), ("rank", pa.int32()), ("eigenvalue", pa.float64())])


def spectra_dataset(run_id: str) -> str:
    return f"spectra/{run_id}"


def stored_spectra(store: Store, run_id: str) -> pa.Table | None:
    """Cached eigenvalue spectra of a run (run_id, layer, filter, n, rank, eigenvalue) or None."""
    parts = store.parts(spectra_dataset(run_id))
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p, schema=SPECTRA_SCHEMA) for p in parts])


def compute_spectrum(store: Store, run_id: str, layer: int, where: str | Subset | None = None
                     ) -> tuple[int, np.ndarray]:
    """(n, covariance eigenvalues descending) of a run's layer, in one streaming pass."""
    run = resolve_run(store, run_id)
    stats = scan_layer(store, run.run_id, int(layer), int(run.dim), as_subset(store, where)).pooled()
    return stats.n, eigenvalues(covariance(stats))
