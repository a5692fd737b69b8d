"""Opening input files as text, plain or gzip, with errors that name the file and line."""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Iterator

from protiso.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 8192


def _open_binary(path: Path):
    try:
        raw = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw, mode="rb"), True
    raw.seek(0)
    return raw, False


def sniff(path: Path) -> str:
    """The first few KB of the decompressed file as text; rejects binary files."""
    stream, is_gzip = _open_binary(path)
    try:
        with stream:
            head = stream.read(_SNIFF_BYTES)
    except (EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
    nul = head.find(b"\x00")
    if nul >= 0:
        raise InputError(f"{path}: binary file (NUL byte at offset {nul}), "
                         "expected FASTA, Swiss-Prot flat file or TSV text")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a multi-byte character cut at the edge
            raise InputError(f"{path}: binary or non-UTF-8 file (undecodable byte at offset "
                             f"{exc.start})") from exc
        return head[:exc.start].decode("utf-8")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line without its end-of-line), CRLF or LF.

    Decompression and decoding failures become InputErrors naming the file and line."""
    sniff(path)
    stream, is_gzip = _open_binary(path)
    text = io.TextIOWrapper(stream, encoding="utf-8", newline=None)
    lineno = 0
    try:
        with text:
            for lineno, line in enumerate(text, 1):
                if "\x00" in line:
                    raise InputError(f"{path}:{lineno}: binary data (NUL byte) in text file")
                yield lineno, line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{lineno + 1}: not UTF-8 text ({exc.reason})") from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        kind = "truncated" if isinstance(exc, EOFError) else "corrupt"
        raise InputError(f"{path}: {kind} gzip file after line {lineno} ({exc})") from exc


def open_text(path: Path) -> io.TextIOWrapper:
    """The whole file as a text stream (for parsers that take a handle, e.g. Biopython)."""
    sniff(path)
    stream, _ = _open_binary(path)
    return io.TextIOWrapper(stream, encoding="utf-8", newline=None)
