"""Pieces shared by the format readers: Source/Batch records, the id rule, duplicate tracking,
finite checks, checksums and one-line errors.

Kept free of protiso imports other than protiso.errors so the format layer can be used (and
tested) on its own.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from protiso.errors import InputError

FLOAT_KINDS = ("float16", "float32", "float64", "bfloat16")


@dataclass
class Source:
    """One input path (a file, or a directory of ESM .pt files) and what it holds.

    sha256 is None until the file has been read in full (batches()) or Reader.checksums() ran;
    for a directory it is the sha256 of the manifest lines "name<TAB>size<TAB>sha256<LF>" of its
    .pt files in name order."""
    path: Path
    format: str                    # 'h5' | 'esm-pt' | 'npz' | 'npy' | 'parquet'
    size_bytes: int
    sha256: str | None
    level: str                     # 'global' (one vector per protein) | 'local' (per residue)
    dim: int
    dtype: str                     # dtype in the file, before widening to float32
    layers: list[int | None]       # [None] when the format has no layer information
    n_items: int | None            # proteins (x layers for a Parquet layer column), if cheap
    ids_from: str = ""             # where ids come from, e.g. "dataset name", "original_id"
    files: int = 1


@dataclass
class Batch:
    """Proteins of one layer. Global: vectors float32 (n, d). Local: matrices, float32 (L_i, d).

    keys are the raw keys in the file (HDF5 dataset name, ESM label, id array entry), kept for
    provenance: for bio_embeddings files they are MD5 hashes of the sequences."""
    ids: list[str]
    layer: int | None
    vectors: np.ndarray | None = None
    matrices: list[np.ndarray] | None = None
    keys: list[str] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)   # per item: index of its Source (Reader)

    @property
    def level(self) -> str:
        return "global" if self.vectors is not None else "local"

    @property
    def items(self) -> list[tuple[str, int | None, np.ndarray]]:
        """(id, layer, matrix) per protein for local batches; (id, layer, vector) for global."""
        rows = self.matrices if self.vectors is None else list(self.vectors)
        return [(i, self.layer, m) for i, m in zip(self.ids, rows)]

    def __len__(self) -> int:
        return len(self.ids)


def fail(path, what: str, fix: str, protein: str | None = None, key: str | None = None):
    """Raise a one-line InputError: '<file>: protein P (key K): what; fix'."""
    where = str(path)
    if protein is not None:
        where += f": protein {protein}"
        if key is not None and key != protein:
            where += f" (key {key!r})"
    elif key is not None:
        where += f": key {key!r}"
    msg = f"{where}: {what}; {fix}"
    raise InputError(" ".join(msg.split()))


def short(exc: BaseException) -> str:
    """An exception's message on one line (h5py/zip/torch messages may span lines)."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__


# UniProt FASTA header: sp|P12345|NAME_HUMAN ... or tr|A0A0...|..., isoforms P12345-2; the
# same pattern protiso.ingest.fasta parses, so imported ids equal ingested accessions.
_UNIPROT = re.compile(r"(?:sp|tr)\|([^|\s]+)\|\S")
_PLAIN = re.compile(r"[^|>\s]+\Z")


def accession(label: str) -> str:
    """The protein id of a key, label or header, by the rule protiso ingest uses.

    A leading '>' is dropped; a UniProt header 'sp|P12345|NAME ...' / 'tr|...|...' gives the
    accession between the first two bars; anything else gives its first whitespace-separated
    word (as `protiso ingest` does for FASTA headers). So 'P12345', '>sp|P12345|ALBU_HUMAN Albumin OS=...' and 'P12345 some description' all
    give 'P12345', matching proteins.accession after `protiso ingest` of the same FASTA."""
    if _PLAIN.match(label):
        return label  # fast path: plain accessions (UniProt per-protein.h5 keys)
    s = label.strip().lstrip(">").strip()
    m = _UNIPROT.match(s)
    if m:
        return m.group(1)
    return s.split(None, 1)[0] if s else ""


# The layer a file records (written by protiso export): the HDF5 group's `layer` attribute, the
# .npz array `layer`; a file without it has no layer information (Source.layers == [None]).
LAYER_NAME = "layer"


def recorded_layer(value) -> int | None:
    """An integer scalar (or 1-element array) as int; anything else None (not a layer record)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return None
    return int(value)


def widen(a: np.ndarray) -> np.ndarray:
    """float16 -> float32 exactly (every float16 is a float32); float64 rounds to nearest."""
    return a if a.dtype == np.float32 else a.astype(np.float32)


def check_float_dtype(path, dtype, key=None, protein=None) -> str:
    """The dtype's name if it is a floating-point type protiso reads, else an InputError."""
    name = str(dtype)
    if name not in FLOAT_KINDS:
        fail(path, f"embedding dtype {name} is not floating point",
             "export float16/float32/float64 embeddings", protein=protein, key=key)
    return name


def first_nonfinite(block: np.ndarray) -> int:
    """Index of the first row holding NaN or +-Inf, or -1.

    Summing rows in float64 is exact about finiteness (a float32 row cannot overflow float64)
    and avoids an (n, d) boolean temporary."""
    if block.size == 0:
        return -1
    s = block.reshape(block.shape[0], -1).sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(s))
    return int(bad[0]) if bad.size else -1


class SeenIds:
    """Which (id, layer) keys were already read, across all files, in ~12 bytes per key.

    Keys are kept as 64-bit hashes (Python's hash, stable within the process) in sorted levels
    merged like a binary counter, with the index of the source they came from; a repeat is
    found with searchsorted. Two different ids sharing a 64-bit hash would be reported as a
    duplicate: for 10^8 ids that chance is below 3e-4, far under the rate of real duplicates."""

    def __init__(self):
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, ids: list[str], layer: int | None, source: int) -> tuple[int, int] | None:
        """Record a batch; on a repeat return (index in batch of the first repeated key, source
        index of its first sight), and record nothing."""
        n = len(ids)
        if n == 0:
            return None
        if layer is None:
            h = np.fromiter(map(hash, ids), dtype=np.int64, count=n)
        else:
            h = np.fromiter((hash((i, layer)) for i in ids), dtype=np.int64, count=n)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        rep = np.flatnonzero(hs[1:] == hs[:-1])
        if rep.size:  # stable sort: order[rep + 1] is the later one; report the first in batch order
            return int(order[rep + 1].min()), source
        found = None
        for keys, srcs in self._levels:
            pos = np.searchsorted(keys, hs).clip(max=len(keys) - 1)
            hit = np.flatnonzero(keys[pos] == hs)
            if hit.size:
                j = hit[np.argmin(order[hit])]
                if found is None or order[j] < found[0]:
                    found = (int(order[j]), int(srcs[pos[j]]))
        if found is not None:
            return found
        self._levels.append((hs, np.full(n, source, dtype=np.int32)))
        while len(self._levels) > 1 and len(self._levels[-2][0]) <= 2 * len(self._levels[-1][0]):
            (k2, s2), (k1, s1) = self._levels.pop(), self._levels.pop()
            k, s = np.concatenate([k1, k2]), np.concatenate([s1, s2])
            o = np.argsort(k, kind="stable")  # timsort: two sorted runs merge in linear time
            self._levels.append((k[o], s[o]))
        return None

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._levels)


_HASH_CHUNK = 1 << 20


def sha256_file(path: Path, stop=None) -> str | None:
    """Streaming sha256 of a file (1 MiB reads into one buffer); None if stop() turned true."""
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            if stop is not None and stop():
                return None
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])  # releases the GIL: hashing overlaps the reader's work
    return h.hexdigest()


def manifest_sha256(entries: Iterable[tuple[str, int, str]]) -> str:
    """sha256 of 'name<TAB>size<TAB>sha256<LF>' lines, for a directory of files."""
    h = hashlib.sha256()
    for name, size, digest in entries:
        h.update(f"{name}\t{size}\t{digest}\n".encode())
    return h.hexdigest()


def file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
