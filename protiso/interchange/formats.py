"""Format detection and the streaming reader behind `protiso import`.

    reader = open_source([Path("per-protein.h5")])      # fmt/level/layer: see open_source
    for batch in reader.batches(4096):                  # Batch: ids, layer, vectors | matrices
        ...                                             # write parts inside one transaction
    reader.sources[0].sha256                            # set once the stream is exhausted

Validation happens while streaming, so an InputError can come after batches were yielded: the
caller must consume batches inside a transaction (nothing is kept on error). Every error is one
line naming the file, the protein/key and what to do.
"""
from __future__ import annotations

import threading
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from protiso.interchange._common import (Batch, Source, fail, first_nonfinite, sha256_file,
                                         SeenIds)
from protiso.interchange.esm import SUFFIXES as PT_SUFFIXES

FORMATS = ("h5", "esm-pt", "npz", "npy", "parquet")
LEVELS = ("auto", "global", "local")

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_SUFFIX = {".h5": "h5", ".hdf5": "h5", ".hdf": "h5", ".pt": "esm-pt", ".pth": "esm-pt",
           ".npz": "npz", ".npy": "npy", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path | str) -> str:
    """'h5' | 'esm-pt' | 'npz' | 'npy' | 'parquet' from the leading bytes (HDF5 signature, also
    after a 512/1024/2048-byte user block; PAR1; \x93NUMPY; a zip holding torch's data.pkl is a
    .pt, any other zip an .npz). The suffix only admits legacy pickled .pt files and names the
    expected format in errors. A directory holding .pt files is 'esm-pt'."""
    path = Path(path)
    if path.is_dir():
        if any(p.suffix in PT_SUFFIXES for p in path.iterdir()):
            return "esm-pt"
        fail(path, "directory holds no .pt files", "pass a file, or extract.py's output directory")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if not head:
                fail(path, "empty file", "the export did not finish: produce the file again")
            if head[:4] == b"PAR1":
                return "parquet"
            is_hdf5 = head == _HDF5 or any(_probe(fh, off) for off in (512, 1024, 2048))
    except OSError as exc:
        fail(path, f"cannot open ({exc.strerror})", "check the path and permissions")
    suffix = _SUFFIX.get(path.suffix.lower())
    if is_hdf5:
        return "h5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head[:4] in _ZIP:
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            fail(path, f"corrupt or truncated zip archive ({exc})", "produce the file again")
        if any(n.endswith("data.pkl") for n in names):
            return "esm-pt"
        if suffix in ("esm-pt",) and not names:
            fail(path, "empty torch archive", "re-run extract.py for this protein")
        return "npz"
    if head[:1] == b"\x80" and suffix == "esm-pt":
        return "esm-pt"  # legacy (pre-zip) torch.save format
    if suffix is not None:
        fail(path, f"not a valid {suffix} file (unrecognised leading bytes {head[:8]!r})",
             "the file is truncated, corrupt or of another format: produce it again")
    fail(path, f"unknown file format (leading bytes {head[:8]!r})",
         f"give an HDF5, ESM .pt, .npz/.npy or Parquet file (formats: {', '.join(FORMATS)})")


def _probe(fh, offset: int) -> bool:
    """HDF5 signature at a user-block offset."""
    fh.seek(offset)
    return fh.read(8) == _HDF5


def _reader_for(path: Path, fmt: str, opts: dict):
    if fmt == "h5":
        from protiso.interchange.hdf5 import H5Reader
        return H5Reader(path, **opts)
    if fmt == "esm-pt":
        from protiso.interchange.esm import EsmReader
        return EsmReader(path, **opts)
    if fmt in ("npz", "npy"):
        from protiso.interchange.arrays import ArrayReader
        return ArrayReader(path, fmt, **opts)
    from protiso.interchange.parquet import ParquetReader
    return ParquetReader(path, **opts)


class Reader:
    """Several input paths of one format read as one stream of validated float32 batches.

    Attributes mirror Source for the whole input: format, level, dim, dtype, layers, n_items
    (None unless known for every path), size_bytes; `sources` has one Source per path."""

    def __init__(self, readers: list, fmt: str):
        self._readers = readers
        self.sources: list[Source] = [r.source for r in readers]
        first = self.sources[0]
        for s in self.sources[1:]:
            if s.level != first.level:
                fail(s.path, f"{s.level} embeddings while {first.path} holds {first.level} ones",
                     "import per-protein and per-residue files separately")
            if s.dim != first.dim:
                fail(s.path, f"embedding dimension {s.dim} differs from {first.dim} in "
                     f"{first.path}", "all inputs must come from the same model")
        self.format, self.level, self.dim = fmt, first.level, first.dim
        dtypes = sorted({s.dtype for s in self.sources})
        self.dtype = dtypes[0] if len(dtypes) == 1 else "mixed:" + ",".join(dtypes)
        self.layers = sorted({l for s in self.sources for l in s.layers},
                             key=lambda l: (l is None, l or 0))
        counts = [s.n_items for s in self.sources]
        self.n_items = None if None in counts else sum(counts)
        self.size_bytes = sum(s.size_bytes for s in self.sources)
        self.path = first.path

    @property
    def sha256(self) -> str | None:
        """The single source's checksum (None for several inputs: see sources)."""
        return self.sources[0].sha256 if len(self.sources) == 1 else None

    def batches(self, batch_rows: int = 4096) -> Iterator[Batch]:
        """Validated batches: ids as accessions, float32, finite, fixed dim, no repeated
        (id, layer) across all inputs. Global batches hold <= batch_rows proteins; local ones
        about batch_rows residues (a longer protein comes alone). Small batches (the ends of
        files, many small files) are merged per layer, so batches may span files. Files are
        hashed alongside; each Source's sha256 is set when the stream ends."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be >= 1")
        yield from _coalesce(self._validated(batch_rows), batch_rows)

    def _validated(self, batch_rows: int) -> Iterator[Batch]:
        seen = SeenIds()
        stop = threading.Event()
        hasher = threading.Thread(target=self._hash_all, args=(stop,), daemon=True)
        hasher.start()
        try:
            for k, (src, r) in enumerate(zip(self.sources, self._readers)):
                for batch in r.chunks(batch_rows):
                    self._validate(batch, src, k, seen)
                    batch.origin = [k] * len(batch)
                    yield batch
                if getattr(r, "digest", None):
                    src.sha256 = r.digest
            hasher.join()
        finally:
            stop.set()

    def _hash_all(self, stop: threading.Event) -> None:
        for src, r in zip(self.sources, self._readers):
            if src.sha256 is None and not hasattr(r, "digest"):  # ESM hashes what it loads
                try:
                    src.sha256 = sha256_file(src.path, stop.is_set)
                except OSError:
                    src.sha256 = None

    def _validate(self, batch: Batch, src: Source, k: int, seen: SeenIds) -> None:
        path = src.path
        for i, pid in enumerate(batch.ids):
            if not pid:
                fail(path, "empty id", "every protein needs an id", key=batch.keys[i])
        if batch.vectors is not None:
            if batch.vectors.shape[1:] != (self.dim,):
                fail(path, f"embedding dimension {batch.vectors.shape[1:]} differs from "
                     f"{self.dim}", "all inputs must come from the same model",
                     protein=batch.ids[0], key=batch.keys[0])
            bad = first_nonfinite(batch.vectors)
        else:
            bad = -1
            for i, m in enumerate(batch.matrices):
                if m.ndim != 2 or m.shape[1] != self.dim:
                    fail(path, f"per-residue matrix of shape {m.shape}, expected (L, {self.dim})",
                         "all inputs must come from the same model", protein=batch.ids[i],
                         key=batch.keys[i])
                if first_nonfinite(m) >= 0:
                    bad = i
                    break
        if bad >= 0:
            layer = "" if batch.layer is None else f" (layer {batch.layer})"
            fail(path, f"NaN or infinite value in the embedding{layer}",
                 "fix or drop this protein and import again", protein=batch.ids[bad],
                 key=batch.keys[bad])
        rep = seen.add(batch.ids, batch.layer, k)
        if rep is not None:
            i, first = rep
            where = ("appears twice in this input" if first == k
                     else f"already read from {self.sources[first].path}")
            layer = "" if batch.layer is None else f" (layer {batch.layer})"
            fail(path, f"duplicate{layer}: {where}",
                 "each protein may appear once per layer: drop the repeat",
                 protein=batch.ids[i], key=batch.keys[i])

    def path_of(self, batch: Batch, i: int) -> Path:
        """The input path item i of a batch came from (batches may span inputs)."""
        k = batch.origin[i] if i < len(batch.origin) else 0
        return self.sources[k].path

    def checksums(self) -> list[str]:
        """sha256 of every source now (a streaming pass over files not hashed yet)."""
        for src, r in zip(self.sources, self._readers):
            if src.sha256 is None:
                src.sha256 = r.checksum() if hasattr(r, "checksum") else sha256_file(src.path)
        return [s.sha256 for s in self.sources]

    def close(self) -> None:
        for r in self._readers:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _rows(b: Batch) -> int:
    return len(b.ids) if b.vectors is not None else sum(m.shape[0] for m in b.matrices)


def _merge(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    ids = [i for b in parts for i in b.ids]
    keys = [k for b in parts for k in b.keys]
    origin = [o for b in parts for o in b.origin]
    if parts[0].vectors is not None:
        return Batch(ids=ids, layer=parts[0].layer, keys=keys, origin=origin,
                     vectors=np.concatenate([b.vectors for b in parts]))
    return Batch(ids=ids, layer=parts[0].layer, keys=keys, origin=origin,
                 matrices=[m for b in parts for m in b.matrices])


def _coalesce(stream: Iterator[Batch], batch_rows: int) -> Iterator[Batch]:
    """Pack small batches (file ends, many small files) per layer into batches of batch_rows
    rows (global: exactly, by slicing; local: at least, whole proteins). A full batch passes
    through without a copy, after what was pending for its layer."""
    pending: dict = {}
    for b in stream:
        parts, n = pending.pop(b.layer, ([], 0))
        if _rows(b) >= batch_rows:
            if parts:
                yield _merge(parts)
            yield b
            continue
        parts.append(b)
        n += _rows(b)
        if n >= batch_rows:
            merged = _merge(parts)
            if merged.vectors is None:
                yield merged
                continue
            yield _slice(merged, 0, batch_rows)
            parts, n = ([_slice(merged, batch_rows, n)], n - batch_rows) if n > batch_rows \
                else ([], 0)
        if parts:
            pending[b.layer] = (parts, n)
    for parts, _ in pending.values():
        yield _merge(parts)


def _slice(b: Batch, start: int, stop: int) -> Batch:
    return Batch(ids=b.ids[start:stop], layer=b.layer, vectors=b.vectors[start:stop],
                 keys=b.keys[start:stop], origin=b.origin[start:stop])


def open_source(paths: Sequence[Path | str] | Path | str, fmt: str = "auto",
                key: str | None = None, id_column: str | None = None, layer=None,
                level: str = "auto", ids: Path | str | None = None) -> Reader:
    """Open input paths (files, or directories of ESM .pt files) as one Reader.

    fmt: 'auto' (detect_format per path; all must agree) or one of FORMATS.
    key: HDF5 group holding the datasets; npz matrix array; Parquet embedding column; ESM
      representation ('mean_representations' | 'representations' | 'bos_representations').
    id_column: npz id array or Parquet id column. ids: id file for an .npy matrix.
    layer: int or list of ints selecting ESM layers / Parquet `layer` values (negative counts
      back from the highest layer present); must be None for formats without layers.
    level: 'auto' (from the data), 'global' (per-protein) or 'local' (per-residue); a
      mismatch with the data is an InputError.
    Each path's first item is read to fill its Source (cheap); nothing else is read yet."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("open_source needs at least one path")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, not {fmt!r}")
    fmts = [detect_format(p) if fmt == "auto" else fmt for p in paths]
    if len(set(fmts)) > 1:
        fail(paths[fmts.index(fmts[-1])], f"is {fmts[-1]} while {paths[0]} is {fmts[0]}",
             "import one format at a time")
    opts = dict(key=key, level=level, layer=layer)
    if id_column is not None and fmts[0] not in ("npz", "parquet"):
        fail(paths[0], f"is {fmts[0]} input: the id column option applies to npz and Parquet",
             "drop it (HDF5 and ESM ids come from dataset names, original_id or labels)")
    if ids is not None and fmts[0] != "npy":
        fail(paths[0], f"is {fmts[0]} input: an id file applies to .npy matrices only",
             "drop it")
    if fmts[0] in ("npz", "parquet"):
        opts["id_column"] = id_column
    if fmts[0] == "npy":
        opts["ids"] = Path(ids) if ids else None
    readers = []
    try:
        for p in paths:
            readers.append(_reader_for(p, fmts[0], opts))
        return Reader(readers, fmts[0])
    except BaseException:
        for r in readers:
            r.close()
        raise
