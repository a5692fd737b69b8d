"""NumPy input: an .npz with an (n, d) embedding matrix and n ids, or an .npy matrix plus ids.

.npz: the matrix is `key` (else the only 2-D float array, or among several the one named
embeddings/embedding/vectors/X), the ids are `id_column` (else the only 1-D string array of n
entries, or among several the one named ids/id/accessions/accession/labels/names/keys).
.npy: ids come from `ids=` (a path), else the first of <stem>.ids.txt, <stem>.ids.npy,
<stem>.txt next to it: text is one id per line (UTF-8, no blank lines), .npy a 1-D string array.
Ids go through `accession()`. Per-protein only (one row per protein); an integer scalar array
`layer` in an .npz (written by protiso export) labels the rows with that layer.

Both arrays are streamed row block by row block straight from the file or zip member (stored or
deflated, as np.savez / np.savez_compressed write them), so memory does not grow with n. Object
(pickled) arrays are refused: np.load would need allow_pickle, which can run code.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from protiso.interchange._common import (LAYER_NAME, Batch, Source, accession, check_float_dtype,
                                         fail, file_size, recorded_layer, short, widen)

EMBEDDING_NAMES = ("embeddings", "embedding", "vectors", "X", "emb")
ID_NAMES = ("ids", "id", "accessions", "accession", "labels", "names", "keys")


def _header(fp: IO[bytes], where) -> tuple[tuple, bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            return fmt.read_array_header_1_0(fp, max_header_size=100_000)
        if version == (2, 0):
            return fmt.read_array_header_2_0(fp, max_header_size=100_000)
        raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        fail(where, f"not a readable .npy array ({short(exc)})",
             "the file is truncated or not NumPy: save it again with np.save / np.savez")


def _is_text(dtype: np.dtype) -> bool:
    return dtype.kind in "US"


class _Rows:
    """Row blocks of one C-ordered array from an open binary stream positioned after its header."""

    def __init__(self, fp: IO[bytes], shape: tuple, dtype: np.dtype, where):
        self.fp, self.shape, self.dtype, self.where = fp, shape, dtype, where
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self.left = shape[0]

    def read(self, n: int) -> np.ndarray:
        n = min(n, self.left)
        want = n * self.row_bytes
        try:
            data = self.fp.read(want)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            fail(self.where, f"cannot read array data ({short(exc)})",
                 "the file is truncated or corrupt: save it again")
        if len(data) != want:
            done = self.shape[0] - self.left + len(data) // max(1, self.row_bytes)
            fail(self.where, f"truncated: data ends after row {done} of {self.shape[0]}",
                 "save the array again")
        self.left -= n
        return np.frombuffer(data, dtype=self.dtype).reshape((n,) + tuple(self.shape[1:]))


def _decode(values: np.ndarray) -> list[str]:
    out = values.tolist()
    if values.dtype.kind == "S":
        out = [v.decode("utf-8", "replace") for v in out]
    return out


class ArrayReader:
    """Streams an .npz or .npy file (see module docstring)."""

    def __init__(self, path: Path, fmt: str, key: str | None = None,
                 id_column: str | None = None, level: str = "auto", layer=None,
                 ids: Path | None = None, **_):
        self.path, self.fmt = path, fmt
        self._zip = None
        self.layer = None
        if layer is not None:
            fail(path, "NumPy files carry no layer information",
                 "drop the layer option (it selects a layer of ESM .pt or Parquet input)")
        if level == "local":
            fail(path, "NumPy input is read as per-protein (n, d) matrices",
                 "import per-residue embeddings from HDF5 or ESM .pt files")
        if fmt == "npz":
            self._open_npz(key, id_column)
        else:
            self._open_npy(ids)
        n, d = self.shape
        if self.n_ids != n:
            fail(path, f"{self.n_ids} ids for {n} embedding rows ({self.ids_from})",
                 "give exactly one id per row, in row order")
        self.dim = d
        self.source = Source(path=path, format=fmt, size_bytes=file_size(path), sha256=None,
                             level="global", dim=d, dtype=str(self.dtype), layers=[self.layer],
                             n_items=n, ids_from=self.ids_from)

    # -- npz -----------------------------------------------------------------------------------
    def _member(self, name: str):
        fp = self._zip.open(name)
        shape, fortran, dtype = _header(fp, f"{self.path}[{name}]")
        return fp, shape, fortran, dtype

    def _open_npz(self, key, id_column) -> None:
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = [n for n in self._zip.namelist() if n.endswith(".npy")]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            fail(self.path, f"not a readable .npz ({short(exc)})",
                 "the file is truncated or not an np.savez archive: save it again")
        if not names:
            fail(self.path, "the archive holds no arrays", "save the embeddings with np.savez")
        info = {}
        for name in names:
            fp, shape, fortran, dtype = self._member(name)
            fp.close()
            info[name[:-4]] = (shape, fortran, dtype)
        emb = self._pick(info, key, "embedding matrix", EMBEDDING_NAMES,
                         lambda s, dt: len(s) >= 2 and dt.kind == "f")
        shape, fortran, dtype = info[emb]
        self._check_matrix(emb, shape, dtype)
        n = shape[0]
        same = [k for k, (s, _, dt) in info.items() if s == (n,) and _is_text(dt)]
        idk = self._pick(info, id_column, "id array", ID_NAMES,
                         lambda s, dt: len(s) == 1 and _is_text(dt) and (not same or s == (n,)))
        ishape, _, idtype = info[idk]
        if len(ishape) != 1 or not _is_text(idtype):
            what = "an object (pickled) array" if idtype.kind == "O" else f"{idtype} {ishape}"
            fail(self.path, f"ids {idk!r} are {what}, not a 1-D string array",
                 "save ids as np.array(ids, dtype=str)", key=idk)
        self.key, self.id_key = emb, idk
        self.shape, self.dtype, self.fortran = shape, dtype, fortran
        lshape, _, ldtype = info.get(LAYER_NAME, (None, None, None))
        if lshape in ((), (1,)) and ldtype.kind in "iu" and LAYER_NAME not in (emb, idk):
            try:
                with self._zip.open(LAYER_NAME + ".npy") as fp:
                    self.layer = recorded_layer(np.lib.format.read_array(fp, allow_pickle=False))
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                fail(self.path, f"cannot read the layer array ({short(exc)})",
                     "the file is truncated or corrupt: save it again", key=LAYER_NAME)
        self.n_ids, self.ids_from = ishape[0], f"npz array {idk!r}"

    def _pick(self, info: dict, wanted: str | None, what: str, names, ok) -> str:
        if wanted is not None:
            if wanted not in info:
                fail(self.path, f"no array {wanted!r} (arrays: {', '.join(info)})",
                     f"name the {what} with one of those", key=wanted)
            return wanted
        hits = [k for k, (s, _, dt) in info.items() if ok(s, dt)]
        if len(hits) > 1:
            named = [k for k in names if k in hits]
            if named:
                return named[0]
            fail(self.path, f"several candidate {what}s ({', '.join(hits)})",
                 "choose one with --key (matrix) / --id-column (ids)")
        if not hits:
            fail(self.path, f"no {what} found (arrays: " + ", ".join(
                 f"{k} {dt}{list(s)}" for k, (s, _, dt) in info.items()) + ")",
                 "save a 2-D float matrix and a 1-D string id array (object arrays are not read)")
        return hits[0]

    def _check_matrix(self, name, shape, dtype) -> None:
        check_float_dtype(self.path, dtype, key=name)
        if len(shape) != 2:
            what = ("per-residue (n, L, d) array where per-protein vectors were expected"
                    if len(shape) == 3 else f"array of shape {shape}, not (n, d)")
            fail(self.path, what, "save one (n, d) per-protein matrix", key=name)
        if shape[0] == 0:
            fail(self.path, "empty embedding matrix (0 rows)", "nothing to import", key=name)

    # -- npy -----------------------------------------------------------------------------------
    def _open_npy(self, ids: Path | None) -> None:
        with open(self.path, "rb") as fp:
            shape, fortran, dtype = _header(fp, self.path)
        self._check_matrix(None, shape, dtype)
        self.shape, self.dtype, self.fortran = shape, dtype, fortran
        stem = self.path.with_suffix("")
        cands = [Path(ids)] if ids else [Path(f"{stem}.ids.txt"), Path(f"{stem}.ids.npy"),
                                         Path(f"{stem}.txt")]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            fail(self.path, f"no id file ({', '.join(c.name for c in cands)})",
                 "write one id per line to " + cands[0].name + " or pass ids=FILE")
        self.ids_path = found
        if found.suffix == ".npy":
            with open(found, "rb") as fp:
                ishape, _, idtype = _header(fp, found)
            if len(ishape) != 1 or not _is_text(idtype):
                fail(found, f"ids are {idtype} {ishape}, not a 1-D string array",
                     "save ids as np.array(ids, dtype=str)")
            self.n_ids = ishape[0]
        else:
            with open(found, "rb") as fh:
                self.n_ids = sum(1 for _ in fh)
        self.ids_from = f"id file {found.name}"

    # -- streaming -----------------------------------------------------------------------------
    def _id_blocks(self, batch_rows: int) -> Iterator[list[str]]:
        if self.fmt == "npz":
            fp, shape, _, dtype = self._member(self.id_key + ".npy")
            rows = _Rows(fp, shape, dtype, f"{self.path}[{self.id_key}]")
            with fp:
                while rows.left:
                    yield _decode(rows.read(batch_rows))
        elif self.ids_path.suffix == ".npy":
            with open(self.ids_path, "rb") as fp:
                shape, _, dtype = _header(fp, self.ids_path)
                rows = _Rows(fp, shape, dtype, self.ids_path)
                while rows.left:
                    yield _decode(rows.read(batch_rows))
        else:
            block: list[str] = []
            with open(self.ids_path, encoding="utf-8", errors="replace") as fh:
                for lineno, line in enumerate(fh, 1):
                    line = line.strip()
                    if not line:
                        fail(f"{self.ids_path}:{lineno}", "blank line in the id file",
                             "ids are matched to rows by line: remove it")
                    block.append(line)
                    if len(block) == batch_rows:
                        yield block
                        block = []
            if block:
                yield block

    def _matrix_blocks(self, batch_rows: int) -> Iterator[np.ndarray]:
        n = self.shape[0]
        if self.fortran:  # column-major: rows are strided, read via a map (npy) or whole (npz)
            if self.fmt == "npy":
                whole = np.load(self.path, mmap_mode="r")
            else:
                with self._zip.open(self.key + ".npy") as fp:
                    whole = np.lib.format.read_array(fp, allow_pickle=False)
            for s in range(0, n, batch_rows):
                yield np.ascontiguousarray(whole[s:s + batch_rows])
            return
        if self.fmt == "npz":
            fp, shape, _, dtype = self._member(self.key + ".npy")
        else:
            fp = open(self.path, "rb")
            shape, _, dtype = _header(fp, self.path)
        rows = _Rows(fp, shape, dtype, self.path)
        with fp:
            while rows.left:
                yield rows.read(batch_rows)

    def chunks(self, batch_rows: int) -> Iterator[Batch]:
        for keys, block in zip(self._id_blocks(batch_rows), self._matrix_blocks(batch_rows)):
            if len(keys) != len(block):
                fail(self.path, f"{len(keys)} ids for {len(block)} rows in a block",
                     "give exactly one id per row")
            yield Batch(ids=[accession(k) for k in keys], layer=self.layer, vectors=widen(block).copy()
                        if block.dtype == np.float32 else widen(block), keys=keys)

    def close(self) -> None:
        z, self._zip = self._zip, None
        if z is not None:
            z.close()
