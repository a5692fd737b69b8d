"""The run catalog: one row of `runs` per embedding configuration (or import, or derived
transform), and the one way a model alias, run id and (negative) layer resolve to stored vectors.

Datasets: `embeddings/<run_id>` (global vectors) and `local/<run_id>` (per-residue vectors)."""
from __future__ import annotations

import hashlib
import json
import re
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


_HEX_RE = re.compile(r"(?:^|-)([0-9a-f]{8}|[0-9a-f]{16})(?=-|$)")
SHORT_MIN = 4      # shortest abbreviation of a run's hash, as git abbreviates commits


def _hash_parts(run_id: str) -> tuple[str, str] | None:
    """(hash, suffix) of a run id `<model slug>-<hash>[<suffix>]` (the last 8 or 16 hex digits
    standing alone, e.g. derived runs `...-1a2b3c4d-l4-center`), or None."""
    found = list(_HEX_RE.finditer(run_id))
    if not found:
        return None
    m = found[-1]
    return m.group(1), run_id[m.end(1):]


def short_ids(run_ids) -> dict[str, str]:
    """run id -> its short id: the shortest prefix (at least 4 digits) of the run's hash that no
    other run shares, plus the id's suffix (`1a2b`, `1a2b-l4-center`). A run id without a hash
    is its own short id. Every short id resolves back to its run (`resolve_run`)."""
    ids = list(dict.fromkeys(run_ids))
    parts = {r: _hash_parts(r) for r in ids}
    out = {}
    for r in ids:
        if parts[r] is None:
            out[r] = r
            continue
        h, suffix = parts[r]
        others = [p[0] for o, p in parts.items() if o != r and p is not None and p[1] == suffix]
        k = SHORT_MIN
        while k < len(h) and any(o.startswith(h[:k]) for o in others):
            k += 1
        short = h[:k] + suffix
        out[r] = short if short not in ids or short == r else r   # never the full id of another run
    return out


def run_short_ids(store: Store) -> dict[str, str]:
    """run id -> short id for every run in the store."""
    return short_ids(r.run_id for r in list_runs(store))


def _prefix_matches(runs: list[Run], text: str) -> list[Run]:
    """Runs that `text` abbreviates: a prefix of the run id, or a prefix (4+ digits) of the run's
    hash followed by the id's exact suffix."""
    m = re.match(r"^([0-9a-f]{%d,})(.*)$" % SHORT_MIN, text)
    found = []
    for run in runs:
        parts = _hash_parts(run.run_id)
        if (len(text) >= SHORT_MIN and run.run_id.startswith(text)) or (
                m and parts and parts[0].startswith(m.group(1)) and parts[1] == m.group(2)):
            found.append(run)
    return found


def _describe(runs: list[Run], store: Store) -> str:
    short = run_short_ids(store)
    return ", ".join(f"{short.get(r.run_id, r.run_id)} ({r.model})" for r in runs)


def default_run(store: Store, layer: int | None = None) -> Run:
    """The run a command uses when no model or run is named: the store's only run with
    embeddings, else the latest run of the default model (`protiso embed`'s default)."""
    from protiso.models.registry import DEFAULT_MODEL

    runs = [r for r in list_runs(store) if r.n_done]
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise NotFoundError("the store has no embedding runs yet; embed proteins first "
                            "(`protiso embed`)", param="model")
    try:
        return resolve_run(store, DEFAULT_MODEL, layer)
    except NotFoundError:
        raise NotFoundError(f"the store has {len(runs)} runs and none of the default model "
                            f"{DEFAULT_MODEL}; name one: {_describe(runs, store)}", param="model") from None


def resolve_run(store: Store, model_or_run_id: str | None, layer: int | None = None) -> Run:
    """The run named by a run id, a short run id (a unique prefix of the id, or of its hash as
    shown by `protiso runs`), or the latest run with embeddings (and `layer`, if given) of a
    model given as alias / Hugging Face id / directory, as it was passed to `embed`. None: the
    default run (`default_run`)."""
    if model_or_run_id is None or str(model_or_run_id).strip() == "":
        return default_run(store, layer)
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
    every = list_runs(store)
    short = short_ids(r.run_id for r in every)
    exact = [r for r in every if short[r.run_id] == model_or_run_id]
    matches = exact or _prefix_matches(every, model_or_run_id)
    if len(matches) == 1:
        if layer is not None:
            resolve_layer(matches[0], layer)
        return matches[0]
    if len(matches) > 1:
        raise NotFoundError(f"{model_or_run_id!r} matches {len(matches)} runs: {_describe(matches, store)}; "
                            "give more of the id", param="model")
    raise NotFoundError(
        f"no embedding run for {model_or_run_id!r}" + (f" with layer {layer}" if layer is not None else "")
        + (f"; runs in this store: {_describe(every, store)}" if every else "; the store has no runs yet"),
        param="model")


def resolve(store: Store, model_or_run_id: str | None, layer: int | None = None) -> tuple[Run, int]:
    """(run, layer) for a model alias, run id or short run id (None: the default run) and an
    optional (possibly negative) layer: the one way every command turns what the user typed
    into stored vectors."""
    run = resolve_run(store, model_or_run_id, layer)
    return run, resolve_layer(run, layer)


def delete_run(store: Store, run_id: str) -> None:
    """Remove a run: its catalog rows, Parquet parts and statistics files."""
    run = get_run(store, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    stats = [store.root / p for (p,) in store.con.execute(Q.stats_paths, {"run_id": run_id}).fetchall()]
    datasets = [embeddings_dataset(run_id), local_dataset(run_id), f"status/{run_id}"]   # see runs.status
    with store.transaction():
        store.execute(Q.delete_run, {"run_id": run_id, "embeddings": datasets[0], "local": datasets[1],
                                     "status": datasets[2]})
    for f in stats:
        f.unlink(missing_ok=True)
    for d in datasets:                   # its files, on local disk or at the data location
        store.delete_dataset(d)
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
