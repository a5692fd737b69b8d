"""The compute side of embedding (the local loop and each Ray actor run the same code): batching
under a token budget, out-of-memory halving, chunking of long proteins, pooling and per-residue
statistics. It never touches the catalog: `Embedder.take()` hands finished work over as a Chunk
for the run writer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from protiso.embedding.config import ModelConfig
from protiso.isotropy.stats import SufficientStats
from protiso.models.base import ModelAdapter
from protiso.runs import Chunk, embeddings_dataset, local_dataset
from protiso.runs.writer import vectors_table


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
class Piece:
    """A forward-pass item: a whole (possibly truncated) protein or one window of a chunked one."""

    index: int        # protein's slot in the window
    start: int        # residue offset in the protein
    seq: str


@dataclass
class Protein:
    accession: str
    sequence: str
    length: int
    status: str                  # done | truncated | chunked
    write: bool                  # global embeddings to write (False: only stats/local missing)
    stats: bool
    local: bool
    retry: bool = False          # had failed before (the run's n_failed drops when it gets a new status)
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


N_SPECIAL = 2   # budget slack for special tokens (all supported families add <= 2)


def pack(widths, budget: Callable[[], int]):
    """Greedy batching under a token budget: yield (start, end) ranges of `widths` (padded tokens
    per piece, special tokens included): a batch takes pieces while max width x pieces <= budget()
    (at least one piece). `budget` is read at each batch, so it may shrink on the way (OOM). The
    embedder and the Ray driver (which cuts tasks at these boundaries) share this one rule."""
    widths = np.asarray(widths, np.int64)
    n, start = len(widths), 0
    while start < n:
        limit = budget()
        span = widths[start:start + max(1, limit // max(1, int(widths[start]))) + 1]
        cost = np.maximum.accumulate(span) * np.arange(1, len(span) + 1)
        over = np.flatnonzero(cost > limit)
        end = start + (max(1, int(over[0])) if len(over) else len(span))
        yield start, end
        start = end


def piece_widths(lengths: np.ndarray, chunked: np.ndarray, max_length: int, overlap: int,
                 n_special: int) -> tuple[np.ndarray, np.ndarray]:
    """Padded widths of the pieces proteins are embedded in (see `Embedder.process`) and each
    piece's protein: a chunked protein is len(chunk_windows(...)) pieces of max_length."""
    lengths = np.asarray(lengths, np.int64)
    step = max(1, max_length - overlap)
    k = np.where(chunked & (lengths > max_length), -(-(lengths - max_length) // step) + 1, 1)
    owner = np.repeat(np.arange(len(lengths)), k)
    return np.minimum(lengths, max_length)[owner] + n_special, owner


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


class Embedder:
    """The compute side of `embed` (local loop or a Ray actor): batching under a token budget,
    OOM halving, pooling, statistics; `take()` hands over what is finished. Never touches the
    catalog."""

    def __init__(self, adapter: ModelAdapter, cfg: ModelConfig, run_id: str, policy: str, local_stats: bool):
        self.adapter, self.cfg, self.run_id, self.policy = adapter, cfg, run_id, policy
        self.layers, self.max_length, self.overlap = cfg.layers, cfg.max_length, cfg.overlap
        self.max_tokens = cfg.max_tokens
        self.n_special = N_SPECIAL
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
        self.counts = dict(n_done=0, n_truncated=0, n_chunked=0, n_skipped=0, n_failed=0, n_retried=0,
                           n_residues=0)
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
    def _forward(self, pieces: list[Piece]) -> list[object]:
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
    def _finish(self, prot: Protein) -> None:
        """Pool a finished protein and record its status (None: unchanged, for a protein that
        already had a vector and only gets statistics or per-residue vectors now)."""
        self.counts["n_retried"] += prot.retry
        if prot.failed:
            if prot.write:       # a protein with a vector keeps it (and its status)
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
        self.pending_status.append((prot.accession, prot.status if prot.write else None, prot.length, n, reason,
                                    prot.stats, prot.local))

    # -- handing over ---------------------------------------------------------------------------
    def take(self) -> Chunk:
        """The finished proteins as Arrow tables + statuses + statistics; starts afresh."""
        tables = []
        dim = self.adapter.dim
        if self.pending_rows:
            tables.append((embeddings_dataset(self.run_id), vectors_table(
                [r[0] for r in self.pending_rows], [r[1] for r in self.pending_rows],
                np.stack([r[2] for r in self.pending_rows]))))
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
    def process(self, proteins: list[Protein]) -> None:
        """Embed proteins sorted by length (pieces batched under the token budget); calls
        `after_batch` after each forward pass."""
        pieces: list[Piece] = []
        for i, prot in enumerate(proteins):
            seq = prot.sequence
            if prot.status == "chunked":
                starts = chunk_windows(len(seq), self.max_length, self.overlap)
                for s in starts:
                    pieces.append(Piece(i, s, seq[s:s + self.max_length]))
                prot.n_pieces = len(starts)
            else:
                pieces.append(Piece(i, 0, seq[:self.max_length]))
                prot.n_pieces = 1
        widths = [len(p.seq) + self.n_special for p in pieces]
        for lo, hi in pack(widths, lambda: self.max_tokens):
            batch = pieces[lo:hi]
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


