"""Where a store's Parquet parts live: the store's own `data/` directory (the default), or a URL
that one of pyarrow's filesystems opens (`s3://bucket/prefix`, `gs://bucket/prefix`,
`hdfs://host/path`; connection options as URL query parameters, e.g.
`s3://b/p?endpoint_override=host:9000&scheme=http`; credentials from the environment, as every
S3 client takes them, or in the URL), while the catalog stays with the driver. Part URLs are shown
without credentials.

The catalog records every part as `data/<dataset>/part-<uuid>.parquet` whatever the location, so
a store's data can move. Parts are written whole to a hidden temporary name, then moved to their
final name (on object stores the move is a server-side copy: the final object appears whole or not
at all); size and SHA-256 come from the bytes written. DuckDB reads the URLs through the same
filesystem (registered with it through fsspec), so views and readers work unchanged. Other files
an area keeps beside the parts (nearest-neighbour indexes) are copied here the same way (`put`),
listed in the catalog by their URL, and fetched back for tools that need a local file (`get`).
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from protiso.errors import ProtisoError

DATA_PREFIX = "data/"          # how the catalog names parts: data/<dataset>/<file>


def is_url(location) -> bool:
    """Whether `location` names a remote filesystem (scheme://...), not a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


class DataFS:
    """The data location of a store given as a URL (see the module docstring)."""

    def __init__(self, location: str):
        split = urlsplit(location)
        if not split.scheme or not split.netloc:
            raise ProtisoError(f"data location {location!r} is not a URL like s3://bucket/prefix")
        try:
            self.fs, base = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise ProtisoError(f"cannot open data location {location!r}: {exc}") from None
        self.location = location                     # as given, with its options (and credentials, if any)
        self.query = split.query
        self.base = base.rstrip("/")
        self.url = urlunsplit((split.scheme, split.hostname or "", split.path.rstrip("/"), "", ""))
        self._userinfo = split.netloc.rsplit("@", 1)[0] + "@" if "@" in split.netloc else ""
        self.scheme = split.scheme

    # -- names ---------------------------------------------------------------------------
    def uri(self, rel: str) -> str:
        """The URL of a catalog path `data/<dataset>/<file>` (or of a dataset `<dataset>`)."""
        return f"{self.url}/{_strip(rel)}"

    def locator(self, rel: str) -> str:
        """`uri(rel)` with the location's options: what another process (a Ray worker) opens."""
        uri = self.uri(rel).replace("://", "://" + self._userinfo, 1)
        return uri + (f"?{self.query}" if self.query else "")

    def rel(self, uri: str) -> str | None:
        """The catalog path of a URL under this location, else None."""
        uri = uri.split("?", 1)[0]
        return DATA_PREFIX + uri[len(self.url) + 1:] if uri.startswith(self.url + "/") else None

    def _path(self, uri_or_rel: str) -> str:
        rel = self.rel(uri_or_rel) if "://" in uri_or_rel else uri_or_rel
        if rel is None:
            raise ProtisoError(f"{uri_or_rel} is not under the store's data location {self.url}")
        return f"{self.base}/{_strip(rel)}"

    # -- files ---------------------------------------------------------------------------
    def size(self, uri: str) -> int | None:
        """Size in bytes, or None when there is no such file."""
        info = self.fs.get_file_info(self._path(uri))
        return info.size if info.type == pafs.FileType.File else None

    def digest(self, uri: str) -> tuple[int, str]:
        """(size, SHA-256 hex) of a file, read back."""
        h, n = hashlib.sha256(), 0
        with self.fs.open_input_stream(self._path(uri)) as fh:
            while chunk := fh.read(8 << 20):
                h.update(chunk)
                n += len(chunk)
        return n, h.hexdigest()

    def problem(self, rel: str, n_rows: int | None, size: int | None, sha: str | None) -> str | None:
        """What `protiso verify` finds wrong with a listed part here (as for local parts)."""
        now = self.size(rel)
        if now is None:
            return "missing"
        if size is not None and now != size:
            return f"changed (size {now:,} bytes, registered with {size:,})"
        if sha is not None and self.digest(rel)[1] != sha:
            return "changed (checksum differs from the registered one)"
        try:
            rows = pq.read_metadata(self._path(rel), filesystem=self.fs).num_rows
        except Exception as exc:   # noqa: BLE001 - any unreadable footer is damage to report
            return f"unreadable as Parquet ({' '.join(str(exc).split())[:120]})"
        return f"changed ({rows:,} rows, registered with {n_rows:,})" if n_rows is not None and rows != n_rows else None

    def read_table(self, uri: str, columns: list[str] | None = None, filters=None) -> pa.Table:
        """A Parquet file here read with pyarrow (`columns`, `filters` as pq.read_table takes them)."""
        return pq.read_table(self._path(uri), filesystem=self.fs, columns=columns, filters=filters)

    def put(self, local, uri: str) -> tuple[int, str]:
        """Copy a local file here (any file, e.g. an index) the way parts are written: to a hidden
        temporary name, then moved, so the object appears whole or not at all. Returns (size,
        SHA-256) of the bytes sent."""
        final = self._path(uri)
        head, name = final.rsplit("/", 1)
        tmp = f"{head}/.{name}.tmp"
        h, n = hashlib.sha256(), 0
        try:
            with open(local, "rb") as src, self.fs.open_output_stream(tmp) as out:
                while chunk := src.read(8 << 20):
                    h.update(chunk)
                    n += len(chunk)
                    out.write(chunk)
            self.fs.move(tmp, final)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise
        return n, h.hexdigest()

    def get(self, uri: str, local) -> tuple[int, str]:
        """Copy a file from here to the local path `local` (overwritten); returns (size, SHA-256)
        of the bytes received, for the caller to check against the recorded ones."""
        h, n = hashlib.sha256(), 0
        with self.fs.open_input_stream(self._path(uri)) as src, open(local, "wb") as out:
            while chunk := src.read(8 << 20):
                h.update(chunk)
                n += len(chunk)
                out.write(chunk)
        return n, h.hexdigest()

    def names(self, dataset_uri: str) -> list[str]:
        """File names directly in a dataset directory (none if it does not exist)."""
        path = self._path(dataset_uri)
        infos = self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)

    def delete(self, uri: str) -> None:
        try:
            self.fs.delete_file(self._path(uri))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "not found" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                raise

    def delete_dir(self, dataset_uri: str) -> None:
        try:
            self.fs.delete_dir(self._path(dataset_uri))
        except (FileNotFoundError, OSError):
            pass

    def fsspec(self):
        """This filesystem as an fsspec filesystem for DuckDB (`register_filesystem`), answering
        for this location's scheme."""
        from fsspec.implementations.arrow import ArrowFSWrapper

        wrapper = type(f"Protiso{self.scheme.title()}FS", (ArrowFSWrapper,), {"protocol": self.scheme})
        return wrapper(self.fs)


def _strip(rel: str) -> str:
    return rel[len(DATA_PREFIX):] if rel.startswith(DATA_PREFIX) else rel


def with_metadata(table: pa.Table, metadata: dict | None) -> pa.Table:
    """`table` with `metadata` added to its schema's key-value metadata (written into the file)."""
    if not metadata:
        return table
    merged = dict(table.schema.metadata or {})
    merged.update({str(k).encode(): str(v).encode() for k, v in metadata.items()})
    return table.replace_schema_metadata(merged)


def parquet_options(schema: pa.Schema) -> dict:
    """zstd, except float vector columns (lists of floats): stored uncompressed and without a
    dictionary. Measured on 516,371 x 1024 float32: zstd saves 7.5% of the bytes but doubles
    the read cost (8.4 against 5.5 s of CPU for 2 GB with pyarrow; LZ4 saves nothing), and a
    dictionary attempt on floats only wastes work; uncompressed PLAIN pages are also what
    protiso.runs.pages reads without decoding (0.5 s for the same 2 GB)."""
    vectors = [f.name for f in schema if (pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type))
               and pa.types.is_floating(f.type.value_type)]
    if not vectors:
        return {"compression": "zstd"}
    return {"compression": {f.name: "none" if f.name in vectors else "zstd" for f in schema},
            "use_dictionary": [f.name for f in schema if f.name not in vectors]}


def write_part_file(directory: str | os.PathLike, table: pa.Table, metadata: dict | None = None) -> Path:
    """Write `table` as a new `part-<uuid>.parquet` in `directory`: under a hidden temporary
    name, fsynced, then renamed, so a reader never sees a half-written part. `metadata` is
    added to the file's key-value metadata. Not registered: `Store.write_part` (or a driver
    collecting workers' files) lists it in the catalog. A URL directory (see the module docstring)
    is written there, and the part's URL is returned."""
    if is_url(directory):
        return write_part_url(str(directory), table, metadata)[0]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    final, tmp = directory / name, directory / f".{name}.tmp"
    table = with_metadata(table, metadata)
    try:
        pq.write_table(table, tmp, **parquet_options(table.schema))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_part_url(directory: str, table: pa.Table, metadata: dict | None = None) -> tuple[str, int, str]:
    """Write `table` as a new part-<uuid>.parquet in `directory` (a dataset URL with the
    location's options, see DataFS.locator): whole, under a hidden temporary name, then moved.
    Returns (URL of the part, size, SHA-256)."""
    table = with_metadata(table, metadata)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema))
    data = sink.getvalue()
    split = urlsplit(directory)
    fs, base = pafs.FileSystem.from_uri(directory)
    base_url = urlunsplit((split.scheme, split.hostname or "", split.path.rstrip("/"), "", ""))
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp, final = f"{base.rstrip('/')}/.{name}.tmp", f"{base.rstrip('/')}/{name}"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, final)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass
        raise
    return f"{base_url}/{name}", data.size, hashlib.sha256(data).hexdigest()
