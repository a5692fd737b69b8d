"""HDF5 embedding files: UniProt per-protein.h5 and ProtTrans / bio_embeddings .h5.

Layout read: one dataset per protein directly under a group (the root, or `key`), shape (d,)
(per protein) or (L, d) (per residue), float16/32/64; an integer `layer` attribute on the group
(written by protiso export) labels the batches with that layer. The id is the dataset name, or the
dataset's `original_id` attribute when the first dataset has one (bio_embeddings names its
datasets by the MD5 of the sequence and keeps the real id there); either goes through
`accession()` ('sp|P12345|NAME ...' -> 'P12345'). MD5-looking keys without `original_id` are
refused (they are sequence hashes, not ids). In a per-protein file a (1, d) dataset counts as
that protein's vector; any other (L, d) is refused as per-residue.

Speed (benchmarks/bench_import_formats.py, 516,371 datasets x 1024 float16, 2 cores; CPU time
per dataset, steadier than wall time on a shared machine): h5py's per-dataset overhead dominates.
`f[name][()]` ~100 us, `read_direct` ~135 us, `visititems` ~120 us; low-level `h5d.open` +
`read` into a row of a preallocated batch in the file's own dtype ~28 us, ~24 us with
evict-on-close (kept: see _set_evict_on_close). Letting HDF5 convert float16 -> float32 costs
6-15 us more than one numpy astype per batch, and shape/dtype queries ~17 us more, so the fast
path asks only get_storage_size(): with the element-count check H5Dread does itself it pins
itemsize and size; anything else goes down a slow, fully checked path. Names are listed once,
in index (name) order, into a compact bytes array: restarting H5Literate at an index walks the
group from the start (quadratic: 65 us/dataset at 516k). The chunk cache (rdcc_*) does not
apply to contiguous datasets (no change measured); a smaller metadata cache thrashes (6-20x
slower). The whole reader (ids, validation, float32, sha256 alongside) costs ~33 us CPU per
protein, ~17 s CPU and ~250 MB peak RSS (100 MB of it importing protiso) for the file above.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from h5py import h5d, h5f, h5p, h5s, h5t

from protiso.interchange._common import (LAYER_NAME, Batch, Source, accession, check_float_dtype,
                                         fail, file_size, recorded_layer, short, widen)

_ID_ATTR = "original_id"
_MD5 = re.compile(r"[0-9a-f]{32}")
_READ_ERRORS = (KeyError, ValueError, OSError, TypeError, RuntimeError)


_evict = None  # H5Pset_evict_on_close from the libhdf5 h5py loaded, or False if not found


def _set_evict_on_close(fapl) -> bool:
    """Ask HDF5 to drop an object's metadata from its cache when the object is closed.

    Without it every opened dataset's decoded object header stays cached until the cache
    (32 MB, counted in on-disk bytes) fills: measured 538 MB peak RSS instead of 246 MB for
    a 516k-dataset file, and ~15% slower opens. h5py does not wrap this call, so it is made through ctypes on the very
    libhdf5 h5py loaded (found in /proc/self/maps); elsewhere it is skipped (more memory only)."""
    global _evict
    if _evict is None:
        _evict = False
        try:
            import ctypes
            with open("/proc/self/maps") as fh:
                paths = {ln.split()[-1] for ln in fh if "/libhdf5" in ln}
            libs = {p for p in paths if os.path.basename(p).startswith("libhdf5")
                    and "_hl" not in os.path.basename(p)}
            if len(libs) == 1:
                fn = ctypes.CDLL(libs.pop()).H5Pset_evict_on_close
                fn.argtypes, fn.restype = [ctypes.c_int64, ctypes.c_bool], ctypes.c_int
                _evict = fn
        except (OSError, AttributeError):
            pass
    return bool(_evict) and _evict(fapl.id, True) >= 0


def _open(path: Path) -> h5py.File:
    """Read-only h5py.File with evict-on-close (see _set_evict_on_close)."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5f.CLOSE_STRONG)  # as h5py.File does
    _set_evict_on_close(fapl)
    return h5py.File(h5f.open(os.fsencode(path), h5f.ACC_RDONLY, fapl=fapl))


def _attr_id(ds: h5py.Dataset) -> str | None:
    """The dataset's original_id attribute as str (h5py gives str, bytes or a 1-element array)."""
    v = ds.attrs.get(_ID_ATTR)
    if isinstance(v, np.ndarray):
        v = v.reshape(-1)[0] if v.size == 1 else None
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace")
    return None if v is None else str(v)


class H5Reader:
    """Streams one HDF5 file; `source` describes it after construction (first dataset read)."""

    def __init__(self, path: Path, key: str | None = None, level: str = "auto",
                 layer=None, **_):
        self.path = path
        if layer is not None:
            fail(path, "HDF5 embedding files carry no layer information",
                 "drop the layer option (it selects a layer of ESM .pt or Parquet input)")
        try:
            self._file = _open(path)
        except (OSError, ValueError) as exc:
            fail(path, f"not a readable HDF5 file ({short(exc)})",
                 "the file is truncated, corrupt or not HDF5: download or export it again")
        group = self._file
        if key:
            obj = self._file.get(key)
            if not isinstance(obj, h5py.Group):
                self.close()
                fail(path, f"no group {key!r}" if obj is None else f"{key!r} is not a group",
                     "pass the group that holds one dataset per protein, or no key for the root")
            group = obj
        self._group, self._gid = group, group.id
        first = []
        self._gid.links.iterate(lambda n: first.append(n) or 1)
        if not first:
            self.close()
            fail(path, "no datasets in the file" + (f" group {key!r}" if key else ""),
                 "check that the export finished; the file holds no embeddings")
        name0 = first[0].decode("utf-8", "surrogateescape")
        ds0 = group.get(name0)
        if not isinstance(ds0, h5py.Dataset):
            groups = [n for n in list(group.keys())[:5] if isinstance(group.get(n), h5py.Group)]
            self.close()
            fail(path, f"{name0!r} is a group, not a dataset (top-level groups: "
                 f"{', '.join(groups)})", "pass key=GROUP naming the group of per-protein datasets",
                 key=name0)
        pid0 = accession(_attr_id(ds0) or name0)
        dtype = check_float_dtype(path, ds0.dtype, protein=pid0, key=name0)
        rank = ds0.ndim
        if rank not in (1, 2):
            fail(path, f"dataset of shape {ds0.shape}", "expected (d,) per protein or (L, d) "
                 "per residue", protein=pid0, key=name0)
        found = "global" if rank == 1 else "local"
        if level == "global" and found == "local":
            fail(path, f"per-residue matrix {ds0.shape} where per-protein vectors were expected",
                 "import with level 'local', or export mean-pooled per-protein embeddings",
                 protein=pid0, key=name0)
        if level == "local" and found == "global":
            fail(path, f"per-protein vector {ds0.shape} where per-residue matrices were expected",
                 "import with level 'global'", protein=pid0, key=name0)
        self._use_attr = _attr_id(ds0) is not None
        self._native = ds0.dtype
        self.dim = int(ds0.shape[-1])
        self.layer = recorded_layer(group.attrs.get(LAYER_NAME))  # protiso export records it
        self.source = Source(path=path, format="h5", size_bytes=file_size(path), sha256=None,
                             level=found, dim=self.dim, dtype=dtype, layers=[self.layer],
                             n_items=len(group),
                             ids_from=f"{_ID_ATTR} attribute" if self._use_attr else "dataset name")

    # -- ids ---------------------------------------------------------------------------------
    def _id(self, ds, key: str) -> str:
        if not self._use_attr:
            return accession(key)
        hl = ds if isinstance(ds, h5py.Dataset) else h5py.Dataset(ds)
        raw = _attr_id(hl)
        if raw is None:
            fail(self.path, f"dataset has no {_ID_ATTR!r} attribute while the first one has",
                 "every dataset of a bio_embeddings file needs it; fix or re-export the file",
                 key=key)
        return accession(raw)

    def _no_md5(self, keys: list[str]) -> None:
        """Refuse bio_embeddings-style MD5 keys without original_id: they are not protein ids."""
        for k in keys:
            if len(k) == 32 and _MD5.fullmatch(k):
                fail(self.path, f"key looks like an MD5 sequence hash (bio_embeddings) but the "
                     f"dataset has no {_ID_ATTR!r} attribute", "re-export keeping original ids, "
                     "or name datasets by accession", key=k)

    def _names(self) -> np.ndarray:
        """All dataset names in index (name) order as one compact bytes array.

        One H5Literate pass (see module docstring); names are packed 64k at a time so the
        transient list of bytes objects stays small."""
        parts: list[np.ndarray] = []
        names: list[bytes] = []

        def take(name: bytes):
            names.append(name)
            if len(names) == 65536:
                parts.append(np.array(names, dtype=np.bytes_))
                names.clear()
        self._gid.links.iterate(take)
        parts.append(np.array(names, dtype=np.bytes_) if names else np.array([], dtype="S1"))
        width = max(p.dtype.itemsize for p in parts)
        return np.concatenate([p.astype(f"S{width}") for p in parts])

    # -- slow, fully checked path --------------------------------------------------------------
    def _pid(self, key: str, ds=None) -> str:
        """Best-effort protein id for an error message (never raises)."""
        try:
            if self._use_attr and isinstance(ds, h5py.Dataset):
                return accession(_attr_id(ds) or key)
        except Exception:  # noqa: BLE001 - only decorates a message
            pass
        return accession(key)

    def _checked(self, key: str, local: bool) -> np.ndarray:
        """Read one dataset with every check, float32; used off the fast path."""
        try:
            ds = self._group.get(key)
        except _READ_ERRORS as exc:
            fail(self.path, f"cannot open dataset ({short(exc)})",
                 "the file may be truncated or corrupt: export it again",
                 protein=self._pid(key), key=key)
        pid = self._pid(key, ds)
        if not isinstance(ds, h5py.Dataset):
            fail(self.path, "is a group or link, not a dataset",
                 "keep one dataset per protein directly under the group", protein=pid, key=key)
        check_float_dtype(self.path, ds.dtype, protein=pid, key=key)
        shape = ds.shape
        if not local and len(shape) == 2 and shape[0] != 1:
            fail(self.path, f"per-residue matrix {shape} where a per-protein vector was "
                 "expected", "import per-residue files with level 'local', or pool them first",
                 protein=pid, key=key)
        if local and len(shape) != 2:
            fail(self.path, f"shape {shape} where a per-residue (L, d) matrix was expected",
                 "keep per-protein and per-residue embeddings in separate files",
                 protein=pid, key=key)
        if shape[-1:] != (self.dim,) or (not local and len(shape) > 2):
            fail(self.path, f"embedding dimension {shape[-1] if shape else 0} (shape {shape}) "
                 f"differs from {self.dim} of the first dataset",
                 "all proteins must come from the same model and layer", protein=pid, key=key)
        if local and shape[0] == 0:
            fail(self.path, "empty per-residue matrix (0 residues)",
                 "drop the protein or export it again", protein=pid, key=key)
        if ds.id.get_storage_size() == 0 and ds.size > 0:
            fail(self.path, "dataset has no data written (unallocated)",
                 "the export was interrupted: export the file again", protein=pid, key=key)
        try:
            data = ds[()]
        except _READ_ERRORS as exc:
            fail(self.path, f"cannot read dataset ({short(exc)})",
                 "the file may be truncated or corrupt: export it again", protein=pid, key=key)
        return widen(np.asarray(data)).reshape(shape if local else (self.dim,))

    # -- streaming -----------------------------------------------------------------------------
    def chunks(self, batch_rows: int) -> Iterator[Batch]:
        names = self._names()
        if self.source.level == "global":
            yield from self._global(names, batch_rows)
        else:
            yield from self._local(names, batch_rows)

    def _global(self, names: np.ndarray, batch_rows: int) -> Iterator[Batch]:
        d, native = self.dim, self._native
        mtype = h5t.py_create(native)
        mspace = h5s.create_simple((d,))
        nbytes = d * native.itemsize
        buf = np.empty((batch_rows, d), dtype=native)
        gid, ALL, dopen, errors = self._gid, h5s.ALL, h5d.open, _READ_ERRORS
        for start in range(0, len(names), batch_rows):
            chunk = names[start:start + batch_rows].tolist()
            slow = []
            for j, nm in enumerate(chunk):  # the hot loop: keep it to three HDF5 calls
                try:
                    ds = dopen(gid, nm)
                    if ds.get_storage_size() == nbytes:
                        ds.read(mspace, ALL, buf[j], mtype)  # HDF5 checks element count == d
                        continue
                except errors:
                    pass
                slow.append(j)
            keys = [n.decode("utf-8", "surrogateescape") for n in chunk]
            vectors = buf[:len(chunk)].astype(np.float32)  # exact for float16; copies out of buf
            for j in slow:
                vectors[j] = self._checked(keys[j], local=False)
            if self._use_attr:
                ids = [self._id(self._group[k], k) for k in keys]
            else:
                ids = [accession(k) for k in keys]
                self._no_md5(keys)
            yield Batch(ids=ids, layer=self.layer, vectors=vectors, keys=keys)

    def _local(self, names: np.ndarray, batch_rows: int) -> Iterator[Batch]:
        ids, keys, mats, rows = [], [], [], 0
        for start in range(0, len(names), 4096):
            for nm in names[start:start + 4096].tolist():
                key = nm.decode("utf-8", "surrogateescape")
                mat = self._checked(key, local=True)
                ids.append(self._id(self._group[key], key))
                if not self._use_attr:
                    self._no_md5([key])
                keys.append(key)
                mats.append(mat)
                rows += mat.shape[0]
                if rows >= batch_rows:
                    yield Batch(ids=ids, layer=self.layer, matrices=mats, keys=keys)
                    ids, keys, mats, rows = [], [], [], 0
        if ids:
            yield Batch(ids=ids, layer=self.layer, matrices=mats, keys=keys)

    def close(self) -> None:
        f, self._file = getattr(self, "_file", None), None
        if f is not None:
            f.close()
