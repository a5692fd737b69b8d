"""The run catalog: one row of `runs` per embedding configuration (or import, or derived
transform), and the one way a model alias, run id and (negative) layer resolve to stored vectors.

Datasets: `embeddings/<run_id>` (global vectors) and `local/<run_id>` (per-residue vectors)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

from protiso.errors import NotFoundError, ProtisoError
from protiso.store import Store, queries

Q = queries("runs")
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
EMBEDDED = ("done", "truncated", "chunked")   # per-protein statuses that have a vector


@dataclass
class Run:
    """A row of the `runs` table."""

    run_id: str
    model: str
    model_id: str | None
    revision: str | None
    family: str | None
    dim: int
    num_layers: int | None
    layers: list[int]
    pooling: str
    dtype: str
    device: str | None
    length_policy: str
    max_length: int | None
    status: str
    n_done: int = 0
    n_truncated: int = 0
    n_chunked: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    n_residues: int = 0
    local_stats: bool = False
    seconds: float = 0.0
    residues_per_s: float | None = None
    dtype_requested: str | None = None
    parity_cosine: float | None = None
    load_seconds: float | None = None
    max_tokens: int | None = None
    filter: str = ""                  # the --where of the latest invocation ("" = all proteins)
    software_version: str | None = None
    run_key: str | None = None
    details: dict = field(default_factory=dict)
    parent_run: str | None = None
    transform: str | None = None
    created_at: object = None
    updated_at: object = None

    @property
    def dataset(self) -> str:
        return embeddings_dataset(self.run_id)


_RUN_FIELDS = [f.name for f in fields(Run)]


def embeddings_dataset(run_id: str) -> str:
    """The dataset (directory under data/) of a run's global vectors."""
    return f"embeddings/{run_id}"


def local_dataset(run_id: str) -> str:
    """The dataset of a run's per-residue vectors (--store-local)."""
    return f"local/{run_id}"


def _run_from_row(row: dict) -> Run:
    row = dict(row)
    row["layers"] = [int(x) for x in (row.get("layers") or [])]
    details = row.get("details")
    row["details"] = json.loads(details) if isinstance(details, str) else (details or {})
    return Run(**{k: row.get(k) for k in _RUN_FIELDS if k in row})


def list_runs(store: Store) -> list[Run]:
    return [_run_from_row(r) for r in store.sql(Q.all_runs).to_pylist()]


def get_run(store: Store, run_id: str) -> Run | None:
    rows = store.sql(Q.run_by_id, {"run_id": run_id}).to_pylist()
    return _run_from_row(rows[0]) if rows else None


def run_table(store: Store, brief: bool = False):
    """The runs with counts and provenance (view run_summary); `brief`: the columns a terminal
    table needs."""
    return store.sql(Q.run_summary_brief if brief else Q.run_summary)


def resolve_layer(run: Run, layer: int | None) -> int:
    """A layer of the run: None = its last embedded layer; negative counts from the model's last
    layer (-1 = last), as in `embed --layers`. Fails naming the layers the run has."""
    layers = sorted(int(x) for x in run.layers)
    if not layers:
        raise NotFoundError(f"run {run.run_id} has no embedded layers")
    if layer is None:
        return layers[-1]
    layer = int(layer)
    if layer < 0:
        layer = (run.num_layers if run.num_layers is not None else layers[-1]) + 1 + layer
    if layer not in layers:
        raise NotFoundError(f"run {run.run_id} has no layer {layer}; it has {layers}")
    return layer


def resolve_run(store: Store, model_or_run_id: str, layer: int | None = None) -> Run:
    """The run named by a run id, or the latest run with embeddings (and `layer`, if given) of a
    model given as alias / Hugging Face id / directory, as it was passed to `embed`."""
    run = get_run(store, model_or_run_id)
    if run is not None:
        if layer is not None:
            resolve_layer(run, layer)
        return run
    runs = [_run_from_row(r) for r in store.sql(Q.runs_of_model, {"model": model_or_run_id}).to_pylist()]
    for candidate in runs:
        try:
            if layer is not None:
                resolve_layer(candidate, layer)
            return candidate
        except NotFoundError:
            continue
    known = [f"{r.run_id} ({r.model})" for r in list_runs(store)]
    raise NotFoundError(
        f"no embedding run for {model_or_run_id!r}" + (f" with layer {layer}" if layer is not None else "")
        + (f"; runs in this store: {', '.join(known)}" if known else "; the store has no runs yet"))


def resolve(store: Store, model_or_run_id: str, layer: int | None = None) -> tuple[Run, int]:
    """(run, layer) for a model alias or run id and an optional (possibly negative) layer: the
    one way every command turns what the user typed into stored vectors."""
    run = resolve_run(store, model_or_run_id, layer)
    return run, resolve_layer(run, layer)


def delete_run(store: Store, run_id: str) -> None:
    """Remove a run: its catalog rows, Parquet parts and statistics files."""
    run = get_run(store, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    stats = [store.root / p for (p,) in store.con.execute(Q.stats_paths, {"run_id": run_id}).fetchall()]
    datasets = [embeddings_dataset(run_id), local_dataset(run_id)]
    with store.transaction():
        store.con.execute(Q.delete_run, {"run_id": run_id, "embeddings": datasets[0], "local": datasets[1]})
    for f in stats:
        f.unlink(missing_ok=True)
    for d in datasets:
        shutil.rmtree(store.dataset_dir(d), ignore_errors=True)
    store.refresh_views()




def run_key(model_id: str, revision: str, layers: list[int], pooling: str, dtype: str,
            length_policy: str, max_length: int) -> str:
    payload = json.dumps([model_id, revision, sorted(layers), pooling, dtype, length_policy, int(max_length)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def new_run_id(model: str, key: str) -> str:
    base = Path(model.rstrip("/")).name if "/" in model and Path(model).exists() else model
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40] or "model"
    return f"{slug}-{key[:8]}"




def view_name(run_id: str) -> str:
    """Name of a run's own view: embeddings_<run_id> with '-' as '_'."""
    if not RUN_ID_RE.match(run_id):
        raise ProtisoError(f"invalid run id {run_id!r}")
    return "embeddings_" + run_id.replace("-", "_")
