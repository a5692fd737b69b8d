"""`protiso import`: embeddings computed elsewhere become a run of the store (family 'imported').

    run = import_embeddings(store, ["per-protein.h5"], name="uniprot-prott5",
                            model_id="Rostlab/prot_t5_xl_uniref50")

The files are streamed through `open_source` (validated float32 batches); every batch becomes
Parquet parts in the one layout of a run (`vectors_table`, and `residues_table` for stored
per-residue vectors) written ahead by the run writer on a background thread (pyarrow releases
the GIL, so writing overlaps reading). Nothing is committed until the whole input has been read
and checked: the run row, its parts, per-protein statuses, counters and statistics are then
committed in one transaction (`RunWriter.flush`), so a bad input leaves the store as it was
(part files already written are deleted). Memory is bounded by a few batches plus, per protein
of the store, an index entry (the accession check) and a few bits.

Layers: ESM `.pt` files and Parquet files with a `layer` column carry layer numbers (`layer`
selects among them). Files without layer information (UniProt/bio_embeddings HDF5, NumPy, Parquet
without a layer column; a null layer in a layer column likewise) are recorded at `layer` if one is
given, else at the file's recorded layer (protiso export writes one), else at -1, protiso's "last
layer" (`--layer -1` and the default layer of every command find it).

Per-residue input (level 'local', an (L, d) matrix per protein): L must equal the stored
sequence's length; the run gets the mean over residues as each protein's global vector, the
per-residue-type statistics of every layer (as `embed --local-stats`), and with `store_local`
the residue vectors themselves (as `embed --store-local`).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np

from protiso._version import __version__
from protiso.errors import InputError
from protiso.interchange._common import Batch, fail
from protiso.interchange.formats import FORMATS, LEVELS, Reader, detect_format, open_source
from protiso.isotropy.stats import SufficientStats
from protiso.runs import (RUN_ID_RE, Chunk, Run, RunWriter, embeddings_dataset, get_run, local_dataset,
                          new_run_id)
from protiso.runs.writer import residues_table, vectors_table
from protiso.store import DATA_DIR, Store, queries

Q = queries("interchange")
UNKNOWN_POLICIES = ("error", "skip")
LAST_LAYER = -1               # the layer recorded for input without layer information
PART_BYTES = 64 << 20         # float32 vectors per part (and per batch read)
WRITE_AHEAD = 2               # batches queued for the writer thread

Progress = Callable[[int, int | None], None]   # (items read, items in all or None)


def import_key(name: str) -> str:
    """The run key of an import named `name` (one import per name)."""
    return hashlib.sha256(f"imported\0{name}".encode()).hexdigest()[:16]


def import_run_id(name: str) -> str:
    """The run id an import named `name` gets: `<name slug>-<8 hex digits>`."""
    key = import_key(name)
    run_id = new_run_id(name, key)
    return run_id if RUN_ID_RE.match(run_id) else f"run-{key}"


def import_embeddings(store: Store, paths: Sequence[str | Path] | str | Path, name: str, fmt: str = "auto",
                      model_id: str | None = None, layer: int | Sequence[int] | None = None,
                      level: str = "auto", key: str | None = None, id_column: str | None = None,
                      ids: str | Path | None = None, unknown: str = "error", store_local: bool = False,
                      pooling: str | None = None, progress: Progress | None = None) -> Run:
    """Import embedding files as a new run named `name` and return it.

    fmt: 'auto' or one of FORMATS. model_id: what produced the embeddings (recorded).
    layer: ESM / Parquet with a layer column: the layer(s) to import (negative counts back from the
    highest present; default all); other input: the layer number to record (default: the file's
    recorded layer, else -1).
    level: 'auto' | 'global' | 'local'. key / id_column / ids: see `open_source`.
    unknown: accessions not in the store are an error ('error') or skipped and counted
    ('skip'). store_local: also store per-residue vectors (level local). pooling: how the
    per-protein vectors were pooled (recorded; default 'mean' for local input, else 'imported').
    All or nothing: on any error the store is left unchanged."""
    store._check_writable()
    if unknown not in UNKNOWN_POLICIES:
        raise InputError(f"unknown-accession policy {unknown!r} is not one of "
                         f"{', '.join(UNKNOWN_POLICIES)}", param="unknown")
    if fmt != "auto" and fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not one of auto, {', '.join(FORMATS)}", param="format")
    if level not in LEVELS:
        raise InputError(f"level {level!r} is not one of {', '.join(LEVELS)}", param="level")
    name = (name or "").strip()
    if not name:
        raise InputError("an import needs a name (it names the run)", param="name")
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise InputError("no input files to import", param="paths")
    layers = None if layer is None else [int(layer)] if np.ndim(layer) == 0 else [int(x) for x in layer]
    found = fmt if fmt != "auto" else detect_format(paths[0])
    selects = found == "esm-pt" or (found == "parquet" and _layer_columns(paths))   # files with layer numbers
    if not selects and layers is not None and len(layers) != 1:
        raise InputError(f"{paths[0]}: {found} input holds one layer: give one layer number to record, "
                         f"not {layers}", param="layer")
    with store.job():      # the catalog is held only while reading what the import needs and committing
        with open_source(paths, fmt, key=key, id_column=id_column, layer=layers if selects else None,
                         level=level, ids=ids) as reader:
            return _Import(store, reader, name, model_id, None if selects else (layers or [None])[0],
                           unknown, store_local, pooling, progress).run()


class _Import:
    """One import: checks against the store, streaming into parts, the final commit."""

    def __init__(self, store: Store, reader: Reader, name: str, model_id: str | None,
                 declared: int | None, unknown: str, store_local: bool, pooling: str | None,
                 progress: Progress | None):
        self.store, self.reader, self.name, self.unknown = store, reader, name, unknown
        self.progress = progress
        self.local = reader.level == "local"
        if store_local and not self.local:
            raise InputError(f"{reader.path}: per-protein input has no residue vectors to store",
                             param="store_local")
        self.store_local = store_local
        self.layer_map = self._layer_map(declared)
        self.layers = sorted(set(self.layer_map.values()))
        self.layer_index = {la: i for i, la in enumerate(self.layers)}
        self.key = import_key(name)
        self.run_id = import_run_id(name)
        self.model_id, self.pooling = model_id, pooling or ("mean" if self.local else "imported")
        self.rows = max(256, min(65536, PART_BYTES // (4 * reader.dim)))   # vectors (local: residues) per batch
        self.skipped: set[str] = set()
        self.n_read = 0
        self.stats = {la: {} for la in self.layers} if self.local else None

    def _layer_map(self, declared: int | None) -> dict:
        """Layer of the input (None: not recorded) -> layer stored."""
        out = {}
        for src in self.reader.sources:
            for la in src.layers:
                if la is None:
                    out[None] = LAST_LAYER if declared is None else declared
                elif declared is not None and la != declared:
                    raise InputError(f"{src.path}: the file records layer {la}, not {declared}; drop the "
                                     "layer option or give the recorded one", param="layer")
                else:
                    out[la] = la
        return out

    # -- the store's proteins --------------------------------------------------------------
    def _load_proteins(self) -> None:
        """Accession -> position, lengths (and for per-residue input the sequences) of the
        store's proteins, read once; the catalog is released afterwards."""
        table = self.store.sql(Q.protein_sequences if self.local else Q.protein_lengths)
        self.accessions = table.column("accession").to_pylist()
        self.index = {a: i for i, a in enumerate(self.accessions)}
        self.lengths = table.column("length").to_numpy(zero_copy_only=False)
        self.sequences = table.column("sequence").combine_chunks() if self.local else None
        self.present = np.zeros((len(self.layers), len(self.accessions)), dtype=bool)
        self.seen = np.zeros(len(self.accessions), dtype=bool)

    def _check_name(self) -> None:
        taken = self.store.scalar(Q.import_taken, {"run_id": self.run_id, "key": self.key})
        if taken:
            raise InputError(f"an import named {self.name!r} exists already (run {taken}); choose another "
                             "name, or delete that run first (protiso.runs.delete_run)", param="name")

    # -- the run -----------------------------------------------------------------------------
    def _run_row(self) -> Run:
        r = self.reader
        return Run(run_id=self.run_id, model=self.name, model_id=self.model_id, revision=None,
                   family="imported", dim=r.dim, num_layers=None, layers=list(self.layers),
                   pooling=self.pooling, dtype=r.dtype, device=None, length_policy="imported",
                   max_length=None, status="done", run_key=self.key, software_version=__version__)

    def _details(self, seconds: float) -> dict:
        r = self.reader
        return {
            "sources": [{"path": str(s.path.resolve()), "format": s.format, "size_bytes": s.size_bytes,
                         "sha256": s.sha256, "files": s.files, "level": s.level, "dim": s.dim,
                         "dtype": s.dtype, "layers": s.layers, "n_items": s.n_items, "ids_from": s.ids_from}
                        for s in r.sources],
            "format": r.format, "level": r.level, "model_id": self.model_id, "dtype": r.dtype,
            "stored_dtype": "float32", "layers": {("none" if k is None else str(k)): v
                                                  for k, v in self.layer_map.items()},
            "unknown": self.unknown, "skipped_unknown": len(self.skipped),
            "skipped_examples": sorted(self.skipped)[:10], "store_local": self.store_local,
            "import_seconds": round(seconds, 3)}

    def run(self) -> Run:
        store = self.store
        t0 = time.perf_counter()
        self._check_name()
        for ds in (embeddings_dataset(self.run_id), local_dataset(self.run_id)):
            store.clean_orphan_parts(ds)      # files of an import killed before its commit
        self._load_proteins()
        run = self._run_row()
        self.writer = RunWriter(store, run, SimpleNamespace(layers=self.layers), self.local,
                                flush_seconds=float("inf"), flush_rows=1 << 62)
        if self.local:
            self.writer.load_stats()          # empty for a new run; removes a crashed import's files
        store.release()                       # from here on the catalog is opened only to commit
        created = _new_directories(store, self.run_id)
        ahead = _WriteAhead(self.writer)
        try:
            for batch in self.reader.batches(self.rows):
                chunk = self._chunk(batch)
                if chunk is not None:
                    ahead.put(chunk)
            ahead.finish()
            self._check_complete()
            if self.local:
                self.writer.add(Chunk([], [], {}, self.stats, 0, 0))
            with store.transaction():
                self._check_name()
                store.execute(Q.insert_imported_run, {
                    "run_id": run.run_id, "key": self.key, "model": run.model, "model_id": run.model_id,
                    "dim": run.dim, "layers": run.layers, "pooling": run.pooling, "dtype": run.dtype,
                    "version": __version__, "details": json.dumps(self._details(time.perf_counter() - t0))})
                self.writer.flush(final_status="done")
        except BaseException:
            ahead.abort()
            self.writer.discard()
            for d in created:                 # deepest first; only if empty
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
        return get_run(store, self.run_id)

    # -- batches -----------------------------------------------------------------------------
    def _chunk(self, batch: Batch) -> Chunk | None:
        """Check a batch against the store and turn it into parts, statuses and counts."""
        n = len(batch)
        self.n_read += n
        pos = np.fromiter((self.index.get(i, -1) for i in batch.ids), dtype=np.int64, count=n)
        keep = np.flatnonzero(pos >= 0)
        if keep.size < n:
            self._unknown(batch, pos)
        if self.progress:
            self.progress(self.n_read, self.reader.n_items)
        if not keep.size:
            return None
        layer = self.layer_map[batch.layer]
        li = self.layer_index[layer]
        p = pos[keep]
        row = self.present[li]
        if row[p].any() or len(np.unique(p)) < p.size:
            i = _first_repeat(p, row)
            fail(self.reader.path_of(batch, int(keep[i])), f"duplicate (layer {layer}): the protein "
                 f"appears twice (a row without a layer is recorded at layer {layer} too)",
                 "each protein may appear once per layer",
                 protein=batch.ids[keep[i]], key=batch.keys[keep[i]])
        row[p] = True
        new = ~self.seen[p]
        self.seen[p] = True
        accs = [batch.ids[i] for i in keep]
        if batch.vectors is not None:
            vectors = batch.vectors if keep.size == n else batch.vectors[keep]
            tables = [(embeddings_dataset(self.run_id), vectors_table(accs, layer, vectors))]
            statuses = [(a, "done", int(self.lengths[q]), None, None, False, False)
                        for a, q, fresh in zip(accs, p, new) if fresh]
            counts = {"n_done": len(statuses)}
            residues = 0
        else:
            tables, statuses, residues = self._local(batch, keep, p, new, layer)
            counts = {"n_done": len(statuses), "n_residues": sum(s[3] for s in statuses)}
        return Chunk(tables, statuses, counts, None, len(statuses), residues)

    def _local(self, batch: Batch, keep: np.ndarray, pos: np.ndarray, new: np.ndarray, layer: int):
        """Per-residue matrices: lengths checked against the stored sequences, mean-pooled
        global vectors, per-residue-type statistics and (store_local) the residue vectors."""
        seqs, mats = [], []
        for i, q in zip(keep, pos):
            m, seq = batch.matrices[i], self.sequences[int(q)].as_py()
            if m.shape[0] != len(seq):
                fail(self.reader.path_of(batch, int(i)), f"{m.shape[0]} residue vectors but the stored "
                     f"sequence has {len(seq)} residues", "per-residue embeddings must cover the whole "
                     "stored sequence (no special tokens, no truncation)",
                     protein=batch.ids[i], key=batch.keys[i])
            seqs.append(seq)
            mats.append(m)
        accs = [batch.ids[i] for i in keep]
        pooled = np.stack([m.mean(axis=0, dtype=np.float64).astype(np.float32) for m in mats])
        tables = [(embeddings_dataset(self.run_id), vectors_table(accs, layer, pooled))]
        if self.store_local:
            tables.append((local_dataset(self.run_id), residues_table(accs, layer, seqs, mats)))
        add_residue_stats(self.stats[layer], "".join(seqs), np.concatenate(mats))
        statuses = [(a, "done", len(s), len(s), None, True, self.store_local)
                    for a, s, fresh in zip(accs, seqs, new) if fresh]
        return tables, statuses, sum(len(s) for s in seqs)

    def _unknown(self, batch: Batch, pos: np.ndarray) -> None:
        missing = [batch.ids[i] for i in np.flatnonzero(pos < 0)]
        if self.unknown == "skip":
            self.skipped.update(missing)
            return
        i = int(np.flatnonzero(pos < 0)[0])
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise InputError(f"{self.reader.path_of(batch, i)}: {len(set(missing)):,} of the {self.n_read:,} "
                         f"proteins read so far are not in the store: {shown}; ingest their sequences "
                         "first, or skip such proteins", param="unknown")

    def _check_complete(self) -> None:
        """Every imported protein has every layer; at least one protein was imported."""
        if not self.seen.any():
            what = f"{len(self.skipped):,} proteins, none of them" if self.skipped else "no proteins"
            raise InputError(f"{self.reader.path}: the input holds {what} in the store; nothing to import")
        lacking = np.flatnonzero(self.seen & ~self.present.all(axis=0))
        if lacking.size:
            q = int(lacking[0])
            have = [la for la, ok in zip(self.layers, self.present[:, q]) if ok]
            miss = [la for la, ok in zip(self.layers, self.present[:, q]) if not ok]
            raise InputError(f"{self.reader.path}: protein {self.accessions[q]} has layers {have} but not "
                             f"{miss} ({lacking.size:,} proteins lack some layer); every protein needs "
                             "every layer: import the layers separately or select them (layer)")


def _layer_columns(paths: list[Path]) -> bool:
    """Whether Parquet inputs have a `layer` column (an unreadable file: the reader says why)."""
    import pyarrow.parquet as pq
    try:
        return all("layer" in pq.read_schema(p).names for p in paths)
    except Exception:   # noqa: BLE001 - open_source reports the file's problem
        return True


def add_residue_stats(per: dict[str, SufficientStats], seq: str, R: np.ndarray) -> None:
    """Add residue vectors R (one row per letter of seq) to per-residue-type statistics
    {one-letter code: SufficientStats}, in place (as `embed --local-stats` accumulates them)."""
    codes = np.frombuffer(seq.encode("ascii", "replace"), dtype=np.uint8)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for g in np.split(order, bounds):
        aa = chr(codes[g[0]])
        if aa not in per:
            per[aa] = SufficientStats.empty(R.shape[1])
        per[aa].update(R[g])


def _first_repeat(p: np.ndarray, row: np.ndarray) -> int:
    """Index in p of the first position already set in row or repeated within p."""
    seen: set[int] = set()
    for i, q in enumerate(p.tolist()):
        if row[q] or q in seen:
            return i
        seen.add(q)
    return 0


def _new_directories(store: Store, run_id: str) -> list[Path]:
    """The directories an import of run_id may create that do not exist yet, deepest first (a
    failed import removes those it left empty)."""
    out = []
    local = [store.dataset_dir(embeddings_dataset(run_id)), store.dataset_dir(local_dataset(run_id)),
             store.root / DATA_DIR / "localstats" / run_id]
    for d in local:
        if isinstance(d, Path):          # parts at a URL (store.data): no directories there to remove
            out += [d, d.parent]
    out.append(store.root / DATA_DIR)
    return [d for d in out if not d.exists()]


class _WriteAhead:
    """Writes chunks' part files on one background thread while the caller reads the next batch.
    Only that thread touches the writer until finish() or abort() returns."""

    def __init__(self, writer: RunWriter):
        self.writer = writer
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="protiso-import")
        self.pending: deque[Future] = deque()

    def _write(self, chunk: Chunk) -> None:
        self.writer.add(chunk)
        self.writer.write_ahead()

    def put(self, chunk: Chunk) -> None:
        while len(self.pending) >= WRITE_AHEAD:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(self._write, chunk))

    def finish(self) -> None:
        while self.pending:
            self.pending.popleft().result()
        self.pool.shutdown()

    def abort(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True)
        self.pending.clear()
