"""Opening input files as text, plain or gzip, with errors that name the file and line.

The fast parsers read big decompressed blocks cut at record boundaries (`blocks`), decompressed
in a background thread (zlib releases the GIL, so inflating overlaps parsing and DuckDB);
`numbered_lines` is the exact line-by-line reading the slow paths and error messages rely on.
"""
from __future__ import annotations

import gzip
import io
import queue
import threading
import zlib
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

from protiso.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BYTES = 8192
CHUNK_BYTES = 2 << 20          # decompressed bytes per read: per-block costs vanish already (8 MB: no faster)
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
T = TypeVar("T")


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


def gzip_error(path: Path, exc: BaseException, after_line: int) -> InputError:
    """One message for a damaged gzip stream, wherever it is noticed."""
    kind = "truncated" if isinstance(exc, EOFError) else "corrupt"
    return InputError(f"{path}: {kind} gzip file after line {after_line} ({exc or 'unexpected end of data'})")


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
    yield from text_lines(path, io.TextIOWrapper(stream, encoding="utf-8", newline=None))


def text_lines(path, text: io.TextIOBase, first_line: int = 1) -> Iterator[tuple[int, str]]:
    """Numbered lines of a text stream (universal newlines), closed at the end."""
    lineno = first_line - 1
    try:
        with text:
            for lineno, line in enumerate(text, first_line):
                if "\x00" in line:
                    raise InputError(f"{path}:{lineno}: binary data (NUL byte) in text file")
                yield lineno, line.rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}:{lineno + 1}: not UTF-8 text ({exc.reason})") from exc
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc, lineno) from exc


def block_lines(path, block: bytes, first_line: int) -> Iterator[tuple[int, str]]:
    """Numbered lines of one decoded block, exactly as `numbered_lines` reads them (the slow
    paths' input); an undecodable byte is an error naming its line."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + line_breaks(block[:exc.start])
        raise InputError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from exc
    return text_lines(path, io.TextIOWrapper(io.BytesIO(block), encoding="utf-8", newline=None), first_line)


def open_text(path: Path) -> io.TextIOWrapper:
    """The whole file as a text stream (for parsers that take a handle, e.g. Biopython)."""
    sniff(path)
    stream, _ = _open_binary(path)
    return io.TextIOWrapper(stream, encoding="utf-8", newline=None)


def line_breaks(buf: bytes) -> int:
    """Line breaks in `buf` as universal newlines count them (LF, CRLF, lone CR)."""
    n = buf.count(b"\n")
    if b"\r" in buf:
        n += buf.count(b"\r") - buf.count(b"\r\n")
    return n


def blocks(path: Path, cut: bytes, chunk: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(block, number of its first line): the decompressed file in blocks of whole records.

    A block ends just before the last occurrence of `cut` in what has been read plus one byte
    (b"\\n>" keeps FASTA records whole, b"\\n" keeps lines whole); a record longer than `chunk`
    (default CHUNK_BYTES) makes its block longer. A damaged gzip stream is an InputError after
    the lines already given."""
    sniff(path)
    stream, _ = _open_binary(path)
    line = 1
    rest = b""
    try:
        for data in prefetch(_chunks(stream, chunk or CHUNK_BYTES)):
            buf = rest + data if rest else data
            at = buf.rfind(cut)
            if at < 0:
                rest = buf
                continue
            block, rest = buf[:at + 1], buf[at + 1:]
            yield block, line
            line += line_breaks(block)
        if rest:
            yield rest, line
    except GZIP_ERRORS as exc:
        raise gzip_error(path, exc, line - 1) from exc


def _chunks(stream, size: int) -> Iterator[bytes]:
    with stream:
        while data := stream.read(size):
            yield data


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a background thread, at most `depth` items ahead; its exceptions are
    raised here, in order. Closing this generator stops the thread (and closes `items`)."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="protiso-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()
