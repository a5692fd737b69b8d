"""Embedding runs: protein language model -> pooled (global) vectors in Parquet, with provenance.

A run is one configuration of a model, keyed by (model id, revision, layers, pooling, dtype,
length policy, max length). `embed` resumes the run of its configuration: proteins already
embedded are skipped, results are written in parts, each part registered in one catalog
transaction together with the per-protein statuses, the run's counters and (with local stats)
the per-residue-type statistics file it covers. A crash loses at most the work since the last
flush; Ctrl-C flushes what is finished before stopping.

Global embedding = mean of the residue vectors (never special or padding tokens) for each
requested layer; models with a global output (ProteinBERT) are used as they are.

Reading: `resolve_run`, `iter_embeddings`, `load_embeddings`, `load_local_stats`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from protiso import __version__
from protiso.errors import InputError, NotFoundError, ProtisoError
from protiso.isotropy.stats import SufficientStats
from protiso.models.base import BatchOutput, LoadOptions, ModelAdapter, parse_layers
from protiso.store import Store

LENGTH_POLICIES = ("truncate", "chunk", "skip")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
PARITY_MIN = 0.999          # --dtype auto uses reduced precision only at this cosine to fp32
EMBEDDED = ("done", "truncated", "chunked")
DEFAULT_MAX_TOKENS = 16384  # padded tokens per batch on CPU (GPUs: see default_max_tokens)
_RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


# ---------------------------------------------------------------------------- runs

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
    where_filter: str | None = None
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
    return f"embeddings/{run_id}"


def local_dataset(run_id: str) -> str:
    return f"local/{run_id}"


def _run_from_row(row: dict) -> Run:
    row = dict(row)
    row["layers"] = [int(x) for x in (row.get("layers") or [])]
    details = row.get("details")
    row["details"] = json.loads(details) if isinstance(details, str) else (details or {})
    return Run(**{k: row.get(k) for k in _RUN_FIELDS if k in row})


def list_runs(store: Store) -> list[Run]:
    rows = store.sql("SELECT * FROM runs ORDER BY created_at, run_id").to_pylist()
    return [_run_from_row(r) for r in rows]


def get_run(store: Store, run_id: str) -> Run | None:
    rows = store.sql("SELECT * FROM runs WHERE run_id = ?", [run_id]).to_pylist()
    return _run_from_row(rows[0]) if rows else None


def resolve_run(store: Store, model_or_run_id: str, layer: int | None = None) -> Run:
    """The run named by a run id, or the latest run (with embeddings, and `layer` if given)
    of a model given as alias / Hugging Face id / directory as passed to `embed`."""
    run = get_run(store, model_or_run_id)
    if run is not None:
        if layer is not None and int(layer) not in run.layers:
            raise NotFoundError(f"run {run.run_id} has no layer {layer}; it has {run.layers}")
        return run
    candidates = store.sql(
        "SELECT * FROM runs WHERE (model = ? OR model_id = ?) AND n_done > 0 "
        "ORDER BY updated_at DESC, created_at DESC", [model_or_run_id, model_or_run_id]).to_pylist()
    runs = [_run_from_row(r) for r in candidates]
    if layer is not None:
        runs = [r for r in runs if int(layer) in r.layers]
    if runs:
        return runs[0]
    known = [f"{r.run_id} ({r.model})" for r in list_runs(store)]
    raise NotFoundError(
        f"no embedding run for {model_or_run_id!r}" + (f" with layer {layer}" if layer is not None else "")
        + (f"; runs in this store: {', '.join(known)}" if known else "; the store has no runs yet")
        + f". Create one with `protiso embed --model {model_or_run_id}`")


def delete_run(store: Store, run_id: str) -> None:
    """Remove a run: its catalog rows, Parquet parts and statistics files."""
    run = get_run(store, run_id)
    if run is None:
        raise NotFoundError(f"no run {run_id!r}")
    stats = [store.root / p for (p,) in store.con.execute(
        "SELECT path FROM local_stats WHERE run_id = ?", [run_id]).fetchall()]
    datasets = [embeddings_dataset(run_id), local_dataset(run_id)]
    with store.transaction():
        for table in ("local_stats", "run_proteins", "runs"):
            store.con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        store.con.execute("DELETE FROM parts WHERE dataset IN (?, ?)", datasets)
    for f in stats:
        f.unlink(missing_ok=True)
    for d in datasets:
        shutil.rmtree(store.dataset_dir(d), ignore_errors=True)
    store.refresh_views()


# ---------------------------------------------------------------------------- reading

def _layer_of(run: Run, layer: int | None) -> int:
    if layer is None:
        return max(run.layers)
    layer = int(layer)
    if layer not in run.layers:
        raise NotFoundError(f"run {run.run_id} has no layer {layer}; it has {run.layers}")
    return layer


def matrix(column, dim: int) -> np.ndarray:
    """A (fixed-size) list<float32> Arrow column -> float32 (n, dim)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return np.zeros((0, dim), np.float32)
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(arr), dim)


def iter_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | None = None,
                    batch_rows: int = 65536) -> Iterator[tuple[list[str], np.ndarray]]:
    """Stream a run's global embeddings of one layer (default: the last embedded) as
    (accessions, float32 (n, dim)) batches of at most `batch_rows`, part by part.

    `where` filters proteins (SQL over protein_meta). Memory is bounded by one part."""
    from protiso.subset import accessions_sql

    run = resolve_run(store, run_id)
    layer = _layer_of(run, layer)
    keep = None
    if where and where.strip():
        keep = store.sql(accessions_sql(store, where)).column("accession").combine_chunks()
    for path in store.parts(run.dataset):
        table = pq.read_table(path, columns=["accession", "layer", "embedding"],
                              filters=[("layer", "=", layer)])
        if keep is not None:
            table = table.filter(pc.is_in(table.column("accession"), value_set=keep))
        for start in range(0, table.num_rows, batch_rows):
            chunk = table.slice(start, batch_rows)
            yield chunk.column("accession").to_pylist(), matrix(chunk.column("embedding"), run.dim)


def load_embeddings(store: Store, run_id: str, layer: int | None = None, where: str | None = None
                    ) -> tuple[list[str], np.ndarray]:
    """All embeddings of one layer as (accessions sorted, float32 (n, dim)) in memory."""
    run = resolve_run(store, run_id)
    accs: list[str] = []
    blocks = []
    for a, X in iter_embeddings(store, run.run_id, layer, where):
        accs.extend(a)
        blocks.append(X)
    if not blocks:
        return [], np.zeros((0, run.dim), np.float32)
    X = np.concatenate(blocks)
    order = np.argsort(np.asarray(accs, dtype=object), kind="stable")
    return [accs[i] for i in order], X[order]


def load_local_stats(store: Store, run_id: str, layer: int | None = None) -> dict[str, SufficientStats]:
    """Per-residue-type statistics (one-letter code -> SufficientStats) of a run's layer,
    accumulated by `embed --local-stats`; {} when the run has none."""
    run = resolve_run(store, run_id)
    layer = _layer_of(run, layer)
    rel = store.scalar("SELECT path FROM local_stats WHERE run_id = ? AND layer = ?", [run.run_id, layer])
    if rel is None:
        return {}
    return _read_stats_file(store.root / rel)


def _read_stats_file(path: Path) -> dict[str, SufficientStats]:
    out = {}
    with np.load(path) as z:
        for aa in [k[:-3] for k in z.files if k.endswith("__n")]:
            out[aa] = SufficientStats(int(z[f"{aa}__n"]), z[f"{aa}__sum"], z[f"{aa}__sum_outer"],
                                      z[f"{aa}__sum_unit"])
    return out


def _write_stats_file(path: Path, stats: dict[str, SufficientStats]) -> None:
    arrays = {}
    for aa, s in stats.items():
        arrays.update({f"{aa}__n": np.int64(s.n), f"{aa}__sum": s.sum, f"{aa}__sum_outer": s.sum_outer,
                       f"{aa}__sum_unit": s.sum_unit})
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


# ---------------------------------------------------------------------------- embedding

@dataclass
class EmbedProgress:
    """Reported after each batch: proteins and residues processed of the totals to do."""

    n_total: int
    n_processed: int
    residues_total: int
    residues_processed: int
    elapsed: float
    n_failed: int = 0


@dataclass
class _Piece:
    """A forward-pass item: a whole (possibly truncated) protein or one window of a chunked one."""

    index: int        # protein's slot in the window
    start: int        # residue offset in the protein
    seq: str


@dataclass
class _Protein:
    accession: str
    sequence: str
    length: int
    status: str                  # done | truncated | chunked
    write: bool                  # global embeddings to write (False: only stats/local missing)
    stats: bool
    local: bool
    n_pieces: int = 0                              # pieces still to come back from the model
    results: list = field(default_factory=list)   # (start, {layer: residues}) or (0, pooled)
    failed: str | None = None


def chunk_windows(n: int, size: int, overlap: int) -> list[int]:
    """Start offsets of overlapping windows of `size` covering n residues (last one flush right)."""
    if n <= size:
        return [0]
    step = max(1, size - overlap)
    starts = list(range(0, n - size, step))
    starts.append(n - size)
    return starts


def run_key(model_id: str, revision: str, layers: list[int], pooling: str, dtype: str,
            length_policy: str, max_length: int) -> str:
    payload = json.dumps([model_id, revision, sorted(layers), pooling, dtype, length_policy, int(max_length)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _new_run_id(model: str, key: str) -> str:
    base = Path(model.rstrip("/")).name if "/" in model and Path(model).exists() else model
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40] or "model"
    return f"{slug}-{key[:8]}"


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:   # noqa: BLE001
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def _empty_cache(device: str) -> None:
    try:
        import torch
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        elif device.startswith("mps"):
            torch.mps.empty_cache()
    except Exception:   # noqa: BLE001
        pass


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: Apple MPS is not available on this machine")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise InputError(f"--device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
    return device


def default_max_tokens(device: str) -> int:
    return DEFAULT_MAX_TOKENS if device == "cpu" else 65536


def _low_precision_candidate(device: str) -> str | None:
    """The reduced precision worth trying on this device, if any."""
    import torch

    if device == "cpu":
        try:
            return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except Exception:   # noqa: BLE001
            return None
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return None


def pooled_vectors(out: BatchOutput, layers: list[int]) -> list[dict[int, np.ndarray]]:
    """Per sequence, layer -> mean over residue rows (float32; sums in float64)."""
    if out.pooled is not None:
        return [{la: np.asarray(p[la], np.float32) for la in layers} for p in out.pooled]
    return [{la: r[la].mean(axis=0, dtype=np.float64).astype(np.float32) for la in layers}
            for r in out.residues]


def parity(adapter: ModelAdapter, sequences: list[str], layers: list[int], low: str) -> float:
    """Minimum cosine similarity between `low`-precision and fp32 pooled embeddings."""
    adapter.set_dtype("float32")
    ref = pooled_vectors(adapter.embed_batch(sequences, layers), layers)
    adapter.set_dtype(low)
    test = pooled_vectors(adapter.embed_batch(sequences, layers), layers)
    worst = 1.0
    for a, b in zip(ref, test):
        for la in layers:
            x, y = a[la].astype(np.float64), b[la].astype(np.float64)
            worst = min(worst, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)))
    return worst


@dataclass
class ModelConfig:
    """A run's model facts and the settings derived from them (layers, lengths, budget, dtype).

    Resolved once from a loaded adapter (`resolve_config`); picklable, so the Ray engine resolves
    it on a worker and ships it to the driver and the actors."""

    model_id: str
    revision: str
    family: str
    dim: int
    num_layers: int
    max_residues: int
    outputs_residues: bool
    device: str
    details: dict
    layers: list[int]
    max_length: int
    overlap: int
    max_tokens: int
    dtype: str
    dtype_requested: str
    parity_cos: float | None
    pooling: str


def resolve_config(adapter: ModelAdapter, layers, dtype: str, max_tokens: int | None, max_length: int | None,
                   long: str, local_stats: bool, store_local: bool, chunk_overlap: int | None,
                   probe: list[str]) -> ModelConfig:
    """Validate the settings against the loaded model, pick the dtype (--dtype auto: reduced
    precision only where it matches fp32 on the `probe` sequences) and set it on the adapter."""
    if not adapter.outputs_residues and layers in (None, "last", "all"):
        layer_list = [adapter.num_layers]          # a global output has a single "layer"
    else:
        layer_list = adapter.validate_layers(parse_layers(layers, adapter.num_layers))
    limit_len = adapter.max_residues
    if max_length is None:
        max_length = limit_len
    elif not 1 <= max_length <= limit_len:
        raise InputError(f"--max-length {max_length}: must be between 1 and the model's limit {limit_len}")
    if not adapter.outputs_residues:
        if long == "chunk":
            raise InputError(f"--long chunk needs per-residue outputs; {adapter.model_id} outputs "
                             "only a global vector: use truncate or skip")
        if local_stats or store_local:
            raise InputError(f"--local-stats/--store-local need per-residue outputs; {adapter.model_id} "
                             "outputs only a global vector")
    overlap = chunk_overlap if chunk_overlap is not None else max_length // 4
    if long == "chunk" and not 0 <= overlap < max_length:
        raise InputError(f"chunk overlap {overlap} must be in [0, max length {max_length})")
    dev = adapter.device
    parity_cos = None
    if dtype == "auto":
        low = _low_precision_candidate(dev)
        chosen = "float32"
        probe = [s[:min(max_length, 256)] for s in probe]
        if low is not None and probe:
            try:
                parity_cos = parity(adapter, probe, layer_list, low)
            except ValueError:        # adapter without reduced precision
                parity_cos = None
            if parity_cos is not None and parity_cos >= PARITY_MIN:
                chosen = low
        adapter.set_dtype(chosen)
    else:
        try:
            adapter.set_dtype(dtype)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        chosen = dtype
    return ModelConfig(adapter.model_id, adapter.revision, adapter.family, adapter.dim, adapter.num_layers,
                       limit_len, adapter.outputs_residues, dev, adapter.describe(), layer_list, max_length,
                       overlap, max_tokens or default_max_tokens(dev), chosen, dtype, parity_cos,
                       "mean" if adapter.outputs_residues else "model")


@dataclass
class Chunk:
    """Finished work of an embedder since its last `take`: Arrow tables per dataset (or, once
    written by a Ray worker, `parts` = [(dataset, path, n_rows)]), per-protein statuses, counters
    and the per-residue-type statistics of just these proteins (layer -> aa -> stats)."""

    tables: list[tuple[str, pa.Table]]
    statuses: list[tuple]
    counts: dict
    stats: dict[int, dict[str, SufficientStats]] | None
    n_proteins: int
    residues: int
    parts: list[tuple[str, str, int]] = field(default_factory=list)
    indices: np.ndarray | None = None     # the proteins' slots in the todo list (Ray: duplicate guard)


STATUS_FIELDS = ["accession", "status", "length", "n_residues", "reason", "in_stats", "local_stored"]


class _Embedder:
    """The compute side of `embed` (local loop or a Ray actor): batching under a token budget,
    OOM halving, pooling, statistics; `take()` hands over what is finished. Never touches the
    catalog."""

    def __init__(self, adapter: ModelAdapter, cfg: ModelConfig, run_id: str, policy: str, local_stats: bool):
        self.adapter, self.cfg, self.run_id, self.policy = adapter, cfg, run_id, policy
        self.layers, self.max_length, self.overlap = cfg.layers, cfg.max_length, cfg.overlap
        self.max_tokens = cfg.max_tokens
        self.n_special = 2   # budget slack for special tokens (all supported families add <= 2)
        self.local_stats = local_stats
        self.stats: dict[int, dict[str, SufficientStats]] | None = None
        self.after_batch: Callable[[], None] | None = None
        self.n_oom = 0
        self._reset()

    def _reset(self) -> None:
        self.pending_rows: list[tuple[str, int, np.ndarray]] = []
        self.pending_local: list[tuple[str, int, str, np.ndarray]] = []   # accession, layer, seq, R
        self.pending_local_residues = 0
        self.pending_status: list[tuple] = []
        self.counts = dict(n_done=0, n_truncated=0, n_chunked=0, n_skipped=0, n_failed=0, n_residues=0)
        self.stats = {la: {} for la in self.layers} if self.local_stats else None
        self.n_processed = 0
        self.residues_processed = 0

    # -- statistics --------------------------------------------------------------------------
    def _update_stats(self, seq: str, residues: dict[int, np.ndarray]) -> None:
        codes = np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
        groups = np.split(order, bounds)
        for la, R in residues.items():
            per = self.stats[la]
            for g in groups:
                aa = chr(codes[g[0]])
                if aa not in per:
                    per[aa] = SufficientStats.empty(R.shape[1])
                per[aa].update(R[g])

    # -- forward with OOM halving -------------------------------------------------------------
    def _forward(self, pieces: list[_Piece]) -> list[object]:
        """Per piece: residues dict / pooled dict, or an error string (failed at batch size 1)."""
        try:
            out = self.adapter.embed_batch([p.seq for p in pieces], self.layers)
            return out.residues if out.residues is not None else out.pooled
        except Exception as exc:   # noqa: BLE001 - only out-of-memory is handled here
            if not _is_oom(exc):
                raise
            message = str(exc).splitlines()[0][:200]
        # retried outside the except block: its traceback would keep the failed batch's
        # activations alive and every smaller batch would run out of memory too
        self.n_oom += 1
        _empty_cache(self.adapter.device)
        if len(pieces) == 1:
            return [f"out of memory at batch size 1 ({len(pieces[0].seq)} residues): {message}"]
        # later batches start from the budget that may fit instead of running out again
        width = max(len(p.seq) for p in pieces) + self.n_special
        self.max_tokens = max(width, min(self.max_tokens, width * len(pieces) // 2))
        half = len(pieces) // 2
        return self._forward(pieces[:half]) + self._forward(pieces[half:])

    # -- per protein ----------------------------------------------------------------------------
    def _finish(self, prot: _Protein) -> None:
        if prot.failed:
            self.counts["n_failed"] += 1
            self.pending_status.append((prot.accession, "failed", prot.length, 0, prot.failed, False, False))
            return
        if self.adapter.outputs_residues:
            n = min(prot.length, self.max_length) if prot.status == "truncated" else prot.length
            seq = prot.sequence[:n]
            residues = {}
            for la in self.layers:
                if len(prot.results) == 1:
                    residues[la] = prot.results[0][1][la]
                else:   # chunked: average the windows' vectors of each residue
                    acc = np.zeros((n, self.adapter.dim), np.float64)
                    cnt = np.zeros(n)
                    for start, res in prot.results:
                        acc[start:start + len(res[la])] += res[la]
                        cnt[start:start + len(res[la])] += 1
                    residues[la] = (acc / cnt[:, None]).astype(np.float32)
            pooled = {la: residues[la].mean(axis=0, dtype=np.float64).astype(np.float32) for la in self.layers}
            if prot.stats:
                self._update_stats(seq, residues)
            if prot.local:
                for la in self.layers:
                    self.pending_local.append((prot.accession, la, seq, residues[la]))
                self.pending_local_residues += n * len(self.layers)
        else:
            n = prot.length
            pooled = prot.results[0][1]
        if prot.write:
            for la in self.layers:
                self.pending_rows.append((prot.accession, la, pooled[la]))
            self.counts["n_done"] += 1
            if prot.status in ("truncated", "chunked"):
                self.counts[f"n_{prot.status}"] += 1
            self.counts["n_residues"] += n
        reason = None
        if prot.status == "truncated":
            reason = f"{prot.length} residues > max length {self.max_length}; first {self.max_length} embedded"
        elif prot.status == "chunked":
            reason = (f"{prot.length} residues > max length {self.max_length}; {len(prot.results)} "
                      f"overlapping windows averaged")
        self.pending_status.append((prot.accession, prot.status, prot.length, n, reason, prot.stats, prot.local))

    # -- handing over ---------------------------------------------------------------------------
    def take(self) -> Chunk:
        """The finished proteins as Arrow tables + statuses + statistics; starts afresh."""
        tables = []
        dim = self.adapter.dim
        if self.pending_rows:
            flat = np.stack([r[2] for r in self.pending_rows]).astype(np.float32).ravel()
            tables.append((embeddings_dataset(self.run_id), pa.table({
                "accession": pa.array([r[0] for r in self.pending_rows], pa.string()),
                "layer": pa.array([r[1] for r in self.pending_rows], pa.int16()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)})))
        if self.pending_local:
            lens = np.array([len(r[2]) for r in self.pending_local])
            flat = np.concatenate([r[3] for r in self.pending_local]).astype(np.float32).ravel()
            tables.append((local_dataset(self.run_id), pa.table({
                "accession": pa.array(np.repeat([r[0] for r in self.pending_local], lens), pa.string()),
                "layer": pa.array(np.repeat([r[1] for r in self.pending_local], lens), pa.int16()),
                "position": pa.array(np.concatenate([np.arange(k) for k in lens]), pa.int32()),
                "residue": pa.array([c for r in self.pending_local for c in r[2]], pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)})))
        chunk = Chunk(tables, self.pending_status, dict(self.counts), self.stats, self.n_processed,
                      self.residues_processed)
        self._reset()
        return chunk

    # -- main loop ----------------------------------------------------------------------------------
    def process(self, proteins: list[_Protein]) -> None:
        """Embed proteins sorted by length (pieces batched under the token budget); calls
        `after_batch` after each forward pass."""
        pieces: list[_Piece] = []
        for i, prot in enumerate(proteins):
            seq = prot.sequence
            if prot.status == "chunked":
                starts = chunk_windows(len(seq), self.max_length, self.overlap)
                for s in starts:
                    pieces.append(_Piece(i, s, seq[s:s + self.max_length]))
                prot.n_pieces = len(starts)
            else:
                pieces.append(_Piece(i, 0, seq[:self.max_length]))
                prot.n_pieces = 1
        batch: list[_Piece] = []
        width = 0
        for piece in pieces + [None]:
            if piece is not None:
                w = max(width, len(piece.seq) + self.n_special)
                if not batch or w * (len(batch) + 1) <= self.max_tokens:
                    batch.append(piece)
                    width = w
                    continue
            if not batch:
                break
            results = self._forward(batch)
            for p, res in zip(batch, results):
                prot = proteins[p.index]
                if isinstance(res, str):
                    prot.failed = prot.failed or res
                else:
                    prot.results.append((p.start, res))
                prot.n_pieces -= 1
                if prot.n_pieces == 0:
                    prot.results.sort(key=lambda r: r[0])
                    self._finish(prot)
                    prot.results = []
                    self.residues_processed += prot.length
                    self.n_processed += 1
            if self.after_batch:
                self.after_batch()
            batch, width = ([piece], len(piece.seq) + self.n_special) if piece is not None else ([], 0)


class _Committer:
    """The catalog side of `embed` (always in the driver process): takes Chunks, and at each
    flush writes (local) or registers (Ray) their parts, the per-protein statuses, the run's
    counters and the merged statistics checkpoint, all in one transaction."""

    def __init__(self, store: Store, run: Run, cfg: ModelConfig, local_stats: bool, flush_seconds: float,
                 flush_rows: int):
        self.store, self.run, self.cfg = store, run, cfg
        self.flush_seconds, self.flush_rows = flush_seconds, flush_rows
        self.local_stats = local_stats
        self.stats: dict[int, dict[str, SufficientStats]] | None = None
        self.chunks: list[Chunk] = []
        self.skipped: list[tuple] = []
        self.last_flush = time.perf_counter()
        self.stats_write_seconds = 0.0

    def load_stats(self) -> None:
        """Current statistics of the run's layers; files a crashed flush left behind are removed."""
        store, run = self.store, self.run
        live = {store.root / p for (p,) in store.con.execute(
            "SELECT path FROM local_stats WHERE run_id = ?", [run.run_id]).fetchall()}
        for f in (store.root / "data" / "localstats" / run.run_id).glob("*.npz"):
            if f not in live:
                f.unlink(missing_ok=True)
        self.stats = {}
        for la in self.cfg.layers:
            rel = store.scalar("SELECT path FROM local_stats WHERE run_id = ? AND layer = ?", [run.run_id, la])
            self.stats[la] = _read_stats_file(store.root / rel) if rel else {}

    def add(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    def pending(self) -> int:
        return len(self.skipped) + sum(len(c.statuses) for c in self.chunks)

    def due(self, extra_rows: int = 0, extra_local_values: int = 0) -> bool:
        """Time to flush: enough rows, enough per-residue vectors, or enough time; writing the
        statistics checkpoint (d x d per residue type and layer) stays a small fraction of the
        time: at most every 10x the last checkpoint's write time."""
        rows = self.pending() + extra_rows
        interval = max(self.flush_seconds, 10 * self.stats_write_seconds)
        return bool(rows) and (rows >= self.flush_rows or extra_local_values >= 16 << 20
                               or time.perf_counter() - self.last_flush >= interval)

    def flush(self, final_status: str | None = None) -> None:
        store, run = self.store, self.run
        statuses = self.skipped + [s for c in self.chunks for s in c.statuses]
        counts = dict(n_done=0, n_truncated=0, n_chunked=0, n_skipped=0, n_failed=0, n_residues=0)
        counts["n_skipped"] = len(self.skipped)
        for c in self.chunks:
            for k in counts:
                counts[k] += c.counts.get(k, 0) if k != "n_skipped" else 0
        new_files: list[Path] = []
        old_files: list[Path] = []
        merged = None
        elapsed = time.perf_counter() - self.last_flush
        try:
            with store.transaction():
                for c in self.chunks:
                    for dataset, table in c.tables:
                        store.write_part(dataset, table)
                    for dataset, path, n_rows in c.parts:
                        store.register_part(dataset, Path(path), n_rows)
                if statuses:
                    st = pa.table(list(zip(*statuses)), names=STATUS_FIELDS)
                    store.con.register("_protiso_status", st)
                    try:
                        store.con.execute(
                            "INSERT OR REPLACE INTO run_proteins (run_id, accession, status, length, n_residues,"
                            " reason, in_stats, local_stored) SELECT ?, s.accession, "
                            "CASE WHEN r.status IN ('done','truncated','chunked') THEN r.status ELSE s.status END, "
                            "s.length, CASE WHEN r.status IN ('done','truncated','chunked') THEN r.n_residues "
                            "ELSE s.n_residues END, CASE WHEN r.status IN ('done','truncated','chunked') "
                            "THEN r.reason ELSE s.reason END, "
                            "s.in_stats OR coalesce(r.in_stats, false), s.local_stored OR coalesce(r.local_stored, false) "
                            "FROM _protiso_status s LEFT JOIN run_proteins r "
                            "ON r.run_id = ? AND r.accession = s.accession",
                            [run.run_id, run.run_id])
                    finally:
                        store.con.unregister("_protiso_status")
                if self.stats is not None and any(s[5] for s in statuses):
                    merged = {la: dict(per) for la, per in self.stats.items()}
                    for c in self.chunks:
                        for la, per in (c.stats or {}).items():
                            for aa, s in per.items():
                                merged[la][aa] = merged[la][aa] + s if aa in merged[la] else s
                    stats_dir = store.root / "data" / "localstats" / run.run_id
                    stats_dir.mkdir(parents=True, exist_ok=True)
                    n_prot = sum(1 for s in statuses if s[5])
                    t_stats = time.perf_counter()
                    for la, per in merged.items():
                        path = stats_dir / f"layer{la}-{uuid.uuid4().hex[:12]}.npz"
                        _write_stats_file(path, per)
                        new_files.append(path)
                        old = store.scalar("SELECT path FROM local_stats WHERE run_id = ? AND layer = ?",
                                           [run.run_id, la])
                        if old:
                            old_files.append(store.root / old)
                        store.con.execute(
                            "INSERT OR REPLACE INTO local_stats (run_id, layer, path, n_proteins, n_residues) "
                            "VALUES (?, ?, ?, coalesce((SELECT n_proteins FROM local_stats WHERE run_id = ? "
                            "AND layer = ?), 0) + ?, ?)",
                            [run.run_id, la, path.relative_to(store.root).as_posix(), run.run_id, la, n_prot,
                             sum(s.n for s in per.values())])
                    self.stats_write_seconds = time.perf_counter() - t_stats
                c = counts
                store.con.execute(
                    "UPDATE runs SET n_done = n_done + ?, n_truncated = n_truncated + ?, n_chunked = n_chunked + ?,"
                    " n_skipped = n_skipped + ?, n_failed = (SELECT count(*) FROM run_proteins WHERE run_id = ? "
                    "AND status = 'failed'), n_residues = n_residues + ?, seconds = seconds + ?, "
                    "status = coalesce(?, status), local_stats = local_stats OR ?, updated_at = current_timestamp "
                    "WHERE run_id = ?",
                    [c["n_done"], c["n_truncated"], c["n_chunked"], c["n_skipped"], run.run_id, c["n_residues"],
                     elapsed, final_status, self.stats is not None, run.run_id])
        except BaseException:
            for f in new_files:
                f.unlink(missing_ok=True)
            raise
        for f in old_files:
            f.unlink(missing_ok=True)
        if merged is not None:
            self.stats = merged
        self.chunks, self.skipped = [], []
        self.last_flush = time.perf_counter()


def _probe_sequences(store: Store, subset: str) -> list[str]:
    """A few proteins of the selection for the --dtype auto parity probe."""
    return [s for (s,) in store.con.execute(
        f"SELECT sequence FROM proteins WHERE accession IN ({subset}) ORDER BY accession LIMIT 8").fetchall()]


def select_todo(store: Store, run: Run, subset: str, local_stats: bool, store_local: bool,
                limit: int | None) -> tuple[int, int]:
    """The resume rule: fill temp table _protiso_todo (idx, accession, length, prev, in_stats,
    local_stored) with the selected proteins not yet embedded (or failed, or missing from the
    statistics / stored local vectors that are asked for), shortest first. -> (proteins, residues)."""
    todo_sql = (
        "SELECT p.accession, p.length, r.status AS prev, coalesce(r.in_stats, false) AS in_stats, "
        "coalesce(r.local_stored, false) AS local_stored FROM proteins p "
        "LEFT JOIN run_proteins r ON r.run_id = ? AND r.accession = p.accession "
        f"WHERE p.accession IN ({subset}) AND (r.status IS NULL OR r.status = 'failed' "
        "OR (? AND r.status IN ('done','truncated','chunked') AND NOT r.in_stats) "
        "OR (? AND r.status IN ('done','truncated','chunked') AND NOT r.local_stored)) "
        "ORDER BY p.length, p.accession" + (" LIMIT ?" if limit is not None else ""))
    params = [run.run_id, bool(local_stats), bool(store_local)] + ([int(limit)] if limit is not None else [])
    store.con.execute("CREATE OR REPLACE TEMP TABLE _protiso_todo AS SELECT row_number() OVER "
                      f"(ORDER BY length, accession) - 1 AS idx, * FROM ({todo_sql})", params)
    n_total, res_total = store.one("SELECT count(*), coalesce(sum(length), 0) FROM _protiso_todo")
    return int(n_total), int(res_total)


def plan_windows(store: Store, max_length: int, long: str, local_stats: bool, store_local: bool,
                 window: int) -> Iterator[tuple[int, list[_Protein], list[tuple]]]:
    """Walk _protiso_todo in windows: (first idx, proteins to embed, statuses of skipped ones)."""
    n_total = store.scalar("SELECT count(*) FROM _protiso_todo")
    for lo in range(0, n_total, window):
        rows = store.con.execute(
            "SELECT t.accession, t.length, t.prev, t.in_stats, t.local_stored, p.sequence "
            "FROM _protiso_todo t JOIN proteins p USING (accession) WHERE t.idx >= ? AND t.idx < ? "
            "ORDER BY t.idx", [lo, lo + window]).fetchall()
        prots: list[_Protein] = []
        skipped: list[tuple] = []
        for acc, length, prev, in_stats, local_stored, seq in rows:
            embedded_before = prev in EMBEDDED
            st = "done"
            if length > max_length:
                if long == "skip":
                    if not embedded_before:
                        skipped.append((acc, "skipped", length, 0,
                                        f"{length} residues > max length {max_length} (--long skip)", False, False))
                    continue
                st = "truncated" if long == "truncate" else "chunked"
            prots.append(_Protein(acc, seq, length, st, write=not embedded_before,
                                  stats=bool(local_stats) and not in_stats,
                                  local=bool(store_local) and not local_stored))
        yield lo, prots, skipped


def embed(store: Store, model: str | None = None, where: str | None = None, layers="last",
          device: str = "auto", dtype: str = "auto", max_tokens: int | None = None,
          max_length: int | None = None, long: str = "truncate", local_stats: bool = False,
          store_local: bool = False, chunk_overlap: int | None = None,
          progress: Callable[[EmbedProgress], None] | None = None, flush_seconds: float = 10.0,
          flush_rows: int | None = None, window: int = 4096, adapter: ModelAdapter | None = None,
          offline: bool | None = None, limit: int | None = None, weights: str | None = None,
          engine: str = "local", ray_options: dict | None = None) -> Run:
    """Embed the proteins matching `where` (all by default) with `model` and return the run.

    Resumes the run with the same configuration. layers: 'last' | 'all' | '0,3,-1' | list.
    long: what to do with proteins longer than max_length (default: the model's limit):
    'truncate' (first max_length residues), 'chunk' (overlapping windows, residue vectors
    averaged back) or 'skip'; recorded per protein in `run_proteins`.
    local_stats: accumulate per-residue-type SufficientStats per layer (`load_local_stats`).
    store_local: also write per-residue vectors (dataset local/<run_id>) of these proteins.
    adapter: an already loaded model (tests, benchmarks); `model` is then its name for the run.
    limit: embed at most this many of the remaining proteins (then stop; resumable).
    weights: a weights file for models that need one (ProteinBERT).
    flush_seconds/flush_rows: write a part at least this often (seconds) or at this many proteins
    (default: ~64 MB of buffered vectors), which bounds both memory and the work a crash loses.
    engine: 'local' (this process) or 'ray' (actors on a Ray cluster, see protiso.distributed;
    ray_options: address, workers, gpus_per_worker, cpus_per_worker, task_rows). Both select the
    same proteins and produce the same rows; only this process writes the catalog."""
    from protiso.models.registry import DEFAULT_MODEL, load_model
    from protiso.subset import accessions_sql

    store._check_writable()
    model = model or DEFAULT_MODEL
    if engine not in ("local", "ray"):
        raise InputError(f"--engine {engine!r}: choose local or ray")
    if long not in LENGTH_POLICIES:
        raise InputError(f"--long {long!r}: choose one of {', '.join(LENGTH_POLICIES)}")
    if dtype not in DTYPE_CHOICES:
        raise InputError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"--max-tokens must be positive, got {max_tokens}")
    subset = accessions_sql(store, where)
    probe = _probe_sequences(store, subset) if dtype == "auto" else []
    settings = dict(layers=layers, dtype=dtype, max_tokens=max_tokens, max_length=max_length, long=long,
                    local_stats=local_stats, store_local=store_local, chunk_overlap=chunk_overlap, probe=probe)
    t_load = time.perf_counter()
    ray_engine = None
    if engine == "ray":
        if adapter is not None:
            raise InputError("engine 'ray' loads the model on its workers: pass a model name, not an adapter")
        from protiso.distributed.embed import RayEmbedEngine
        ray_engine = RayEmbedEngine(model, device, weights, offline, **(ray_options or {}))
        cfg = ray_engine.resolve(settings)
    else:
        if adapter is None:
            dev = resolve_device(device)
            adapter = load_model(model, LoadOptions(device=dev, dtype="float32", weights=weights,
                                                    offline=bool(offline) if offline is not None else False))
        cfg = resolve_config(adapter, **settings)
    load_seconds = time.perf_counter() - t_load
    if flush_rows is None:   # bound the buffered vectors (~64 MB) whatever the width and layers
        flush_rows = max(16, min(20000, (16 << 20) // (cfg.dim * len(cfg.layers) * (4 if store_local else 1))))

    key = run_key(cfg.model_id, cfg.revision, cfg.layers, cfg.pooling, cfg.dtype, long, cfg.max_length)
    run = _open_run(store, model, cfg, key, long, where, load_seconds)
    for ds in (run.dataset, local_dataset(run.run_id)):
        store.clean_orphan_parts(ds)          # files of a killed job that never got registered
    n_total, res_total = select_todo(store, run, subset, local_stats, store_local, limit)
    committer = _Committer(store, run, cfg, local_stats, flush_seconds, flush_rows)
    if local_stats:
        committer.load_stats()
    done = {"n": 0, "res": 0, "failed": 0}     # skipped proteins and handed-over chunks
    t0 = time.perf_counter()
    status = "interrupted"
    worker = None
    try:
        windows = plan_windows(store, cfg.max_length, long, local_stats, store_local, window)
        if ray_engine is not None:
            def on_chunk(chunk: Chunk | None, skipped: list[tuple]) -> None:
                if chunk is not None:
                    committer.add(chunk)
                    done["n"] += chunk.n_proteins
                    done["res"] += chunk.residues
                    done["failed"] += chunk.counts["n_failed"]
                committer.skipped.extend(skipped)
                done["n"] += len(skipped)
                done["res"] += sum(s[2] for s in skipped)
                if progress:
                    progress(EmbedProgress(n_total, done["n"], res_total, done["res"],
                                           time.perf_counter() - t0, done["failed"]))
                if committer.due():
                    committer.flush()
            ray_engine.run(store, run, cfg, long, local_stats, windows, n_total, on_chunk)
        else:
            worker = _Embedder(adapter, cfg, run.run_id, long, local_stats)

            def after_batch() -> None:
                if progress:
                    progress(EmbedProgress(n_total, done["n"] + worker.n_processed, res_total,
                                           done["res"] + worker.residues_processed, time.perf_counter() - t0,
                                           done["failed"] + worker.counts["n_failed"]))
                if committer.due(len(worker.pending_status), worker.pending_local_residues * cfg.dim):
                    chunk = worker.take()
                    done["n"] += chunk.n_proteins
                    done["res"] += chunk.residues
                    done["failed"] += chunk.counts["n_failed"]
                    committer.add(chunk)
                    committer.flush()
            worker.after_batch = after_batch
            for _, prots, skipped in windows:
                committer.skipped.extend(skipped)
                done["n"] += len(skipped)
                done["res"] += sum(s[2] for s in skipped)
                worker.process(prots)
        status = "done"
    finally:
        # keep what is finished (also on Ctrl-C), then record how the invocation ended
        seconds = time.perf_counter() - t0
        if worker is not None:
            chunk = worker.take()
            done["res"] += chunk.residues
            committer.add(chunk)
        committer.flush(final_status=status)
        store.con.execute("DROP TABLE IF EXISTS _protiso_todo")
        store.con.execute("UPDATE runs SET residues_per_s = ?, updated_at = current_timestamp WHERE run_id = ?",
                          [done["res"] / seconds if seconds > 0 and done["res"] else None, run.run_id])
        store.refresh_views()
    return get_run(store, run.run_id)


def embed_sequences(run: Run, sequences: list[str], layer: int,
                    adapter: ModelAdapter | None = None) -> np.ndarray:
    """Global vectors (n, dim) of raw sequences with a run's model and settings (dtype, max
    length, --long policy, chunk overlap), through the same embedder as `embed`, so on-the-fly
    queries are comparable with the stored vectors. The model must still have the run's
    revision; `adapter` reuses an already loaded model."""
    from protiso.models.registry import load_model

    if adapter is None:
        adapter = load_model(run.model, LoadOptions(device="cpu", dtype="float32"))
    if run.revision and adapter.revision != run.revision:
        raise InputError(f"model {run.model} now has revision {adapter.revision}; run {run.run_id} was "
                         f"embedded with {run.revision}: on-the-fly vectors would not be comparable")
    cfg = resolve_config(adapter, [layer], run.dtype, None, run.max_length, run.length_policy, False,
                         False, run.details.get("chunk_overlap"), probe=[])
    proteins = []
    for i, seq in enumerate(sequences):
        status = "done"
        if len(seq) > cfg.max_length:
            if run.length_policy == "skip":
                raise InputError(f"query of {len(seq)} residues is longer than run {run.run_id}'s max "
                                 f"length {cfg.max_length}, and the run skips long proteins")
            status = "truncated" if run.length_policy == "truncate" else "chunked"
        proteins.append(_Protein(str(i), seq, len(seq), status, write=True, stats=False, local=False))
    worker = _Embedder(adapter, cfg, run.run_id, run.length_policy, local_stats=False)
    worker.process(sorted(proteins, key=lambda p: p.length))
    chunk = worker.take()
    failed = [s for s in chunk.statuses if s[1] == "failed"]
    if failed:
        raise ProtisoError(f"query {int(failed[0][0]) + 1} could not be embedded: {failed[0][4]}")
    table = chunk.tables[0][1]
    vectors = matrix(table.column("embedding"), adapter.dim)
    order = np.argsort(np.array(table.column("accession").to_pylist(), dtype=int))
    return vectors[order]


def _open_run(store: Store, model: str, cfg: ModelConfig, key: str, policy: str, where: str | None,
              load_seconds: float) -> Run:
    """The run of this configuration: existing (resumed) or new."""
    import importlib.metadata as md

    existing = store.scalar("SELECT run_id FROM runs WHERE run_key = ?", [key])
    versions = {}
    for pkg in ("torch", "transformers"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    details = json.dumps({**cfg.details, "versions": versions, "chunk_overlap": cfg.overlap})
    if existing:
        store.con.execute(
            "UPDATE runs SET status = 'running', device = ?, max_tokens = ?, where_filter = ?, load_seconds = ?,"
            " software_version = ?, details = ?, parity_cosine = coalesce(?, parity_cosine), "
            "updated_at = current_timestamp WHERE run_id = ?",
            [cfg.device, cfg.max_tokens, where, load_seconds, __version__, details, cfg.parity_cos, existing])
        return get_run(store, existing)
    run_id = _new_run_id(model, key)
    if not _RUN_ID_RE.match(run_id) or store.scalar("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]):
        run_id = f"run-{key}"
    store.con.execute(
        "INSERT INTO runs (run_id, run_key, model, model_id, revision, family, dim, num_layers, layers, pooling,"
        " dtype, dtype_requested, parity_cosine, device, length_policy, max_length, max_tokens, status,"
        " where_filter, software_version, details, load_seconds) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
        [run_id, key, model, cfg.model_id, cfg.revision, cfg.family, cfg.dim, cfg.num_layers, cfg.layers,
         cfg.pooling, cfg.dtype, cfg.dtype_requested, cfg.parity_cos, cfg.device, policy, cfg.max_length, cfg.max_tokens, where, __version__, details, load_seconds])
    return get_run(store, run_id)


def view_name(run_id: str) -> str:
    """Name of a run's own view: embeddings_<run_id> with '-' as '_'."""
    if not _RUN_ID_RE.match(run_id):
        raise ProtisoError(f"invalid run id {run_id!r}")
    return "embeddings_" + run_id.replace("-", "_")


def _literal(text: str | None) -> str:
    return "NULL" if text is None else "'" + str(text).replace("'", "''") + "'"


def create_embedding_views(store: Store) -> None:
    """TEMP views over the runs' Parquet parts: `embeddings_<run_id>` per run (embedding as
    FLOAT[dim]), `embeddings` (all runs; FLOAT[dim] when every run has the same dim, else FLOAT[]),
    and `local_embeddings` over per-residue vectors written with --store-local.

    Run ids are validated against a whitelist; the model name is quoted as an SQL literal."""
    from protiso.views import parquet_source

    try:
        runs = store.con.execute("SELECT run_id, model, dim FROM runs ORDER BY created_at, run_id").fetchall()
    except Exception:   # noqa: BLE001 - catalog without the runs table (older store opened read-only)
        return
    per_run, dims = [], set()
    local = []
    for run_id, model, dim in runs:
        if not _RUN_ID_RE.match(run_id):
            continue
        parts = store.parts(embeddings_dataset(run_id))
        if parts:
            name = view_name(run_id)
            store.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT accession, {_literal(run_id)} AS run_id, "
                f"{_literal(model)} AS model, layer, embedding::FLOAT[{int(dim)}] AS embedding "
                f"FROM {parquet_source(parts)}")
            per_run.append(name)
            dims.add(int(dim))
        lparts = store.parts(local_dataset(run_id))
        if lparts:
            local.append(f"SELECT accession, {_literal(run_id)} AS run_id, {_literal(model)} AS model, layer, "
                         f"position, residue, embedding::FLOAT[] AS embedding FROM {parquet_source(lparts)}")
    if per_run:
        cast = f"FLOAT[{dims.pop()}]" if len(dims) == 1 else "FLOAT[]"
        body = " UNION ALL ".join(f"SELECT accession, run_id, model, layer, embedding::{cast} AS embedding "
                                  f"FROM {v}" for v in per_run)
    else:
        body = ("SELECT NULL::VARCHAR AS accession, NULL::VARCHAR AS run_id, NULL::VARCHAR AS model, "
                "NULL::SMALLINT AS layer, NULL::FLOAT[] AS embedding WHERE false")
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW embeddings AS {body}")
    lbody = " UNION ALL ".join(local) if local else (
        "SELECT NULL::VARCHAR AS accession, NULL::VARCHAR AS run_id, NULL::VARCHAR AS model, "
        "NULL::SMALLINT AS layer, NULL::INTEGER AS position, NULL::VARCHAR AS residue, "
        "NULL::FLOAT[] AS embedding WHERE false")
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW local_embeddings AS {lbody}")
