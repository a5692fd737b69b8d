"""FASTA files (plain or gzip) with UniProt header parsing, as Arrow batches.

Two paths give the same records. The fast path works on a whole decompressed block at once:
header lines found and replaced by a separator with one regex, sequences cleaned (case, line
ends) and validated by `bytes.translate` over the whole block, header fields by RE2 regexes over
the block's headers (pyarrow.compute), Arrow arrays built from joined buffers. Any block it cannot take exactly
(text before the first header, lone CR, control or non-ASCII bytes, an empty or invalid record,
a '>' line with no accession) goes to the exact path, the line-by-line parser, which raises the
error naming the file and line. Hand-written rather than Biopython's FASTA reader for speed
(per-line Python was 3/4 of the ingest) and to keep the file and line of every record.
"""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from protiso.errors import InputError
from protiso.ingest.records import (BATCH_SCHEMA, INT32_MAX, PROTEIN_ALPHABET, ProteinRecord,
                                    check_record, normalise_sequence, records_table, table_records)
from protiso.ingest.textio import block_lines, blocks

# >sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2
_UNIPROT = re.compile(r"^(sp|tr)\|([^|\s]+)\|(\S+)(?:\s+(.*))?$")
_FIELD = re.compile(r"\s(OS|OX|GN|PE|SV)=")

# The same rules vectorised (header_columns) for headers of printable ASCII and tab, where RE2's
# and Python's \s agree: fields are found by literal replacement of each "<space>KEY=" separator
# (separators cannot overlap: each ends in '='), then split; the last value of a key wins, as in
# the dict of split fields. (RE2 submatch extraction was slower than Python per header.)
_KEYS = ("OS", "OX", "GN", "PE", "SV")
_RE2_DIGITS = r"^[0-9]+$"
_SEP, _KEY_END = "\x01", "\x02"     # absent from such headers

_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\t"   # what the fast path admits in headers
_UPPER = bytes.maketrans(string.ascii_lowercase.encode(), string.ascii_uppercase.encode())
_LINE_SPACE = b" \t\r\n"  # whitespace in sequence lines; others (\v, \f, ...) go to the exact path
_HEADER = re.compile(rb"\n>([^\r\n]*)")
_RESIDUES_SEP = PROTEIN_ALPHABET.encode() + b">"


def parse_uniprot_header(header: str) -> dict | None:
    """Fields of a UniProt FASTA header, or None if it is not one.

    The OS value may contain spaces and parentheses; fields end where the next KEY= starts."""
    m = _UNIPROT.match(header)
    if m is None:
        return None
    _, accession, entry_name, rest = m.groups()
    parts = _FIELD.split(" " + (rest or ""))
    fields = dict(zip(parts[1::2], (v.strip() for v in parts[2::2])))
    taxon = fields.get("OX")
    return {
        "accession": accession,
        "entry_name": entry_name,
        "description": parts[0].strip() or None,
        "organism": fields.get("OS") or None,
        "taxon_id": int(taxon) if taxon and taxon.isdigit() else None,
        "gene": fields.get("GN") or None,
    }


# ---------------------------------------------------------------------------------------------
# The exact path: line by line
# ---------------------------------------------------------------------------------------------
def _make_record(path, header: str, line: int, seq_lines, uniprot: bool | None) -> ProteinRecord:
    fields = parse_uniprot_header(header) if uniprot is not False else None
    if fields is None:
        if uniprot:
            raise InputError(f"{path}:{line}: not a UniProt FASTA header "
                             f"(expected '>sp|ACCESSION|ENTRY_NAME ...'): {header[:80]!r}")
        accession, _, description = header.strip().partition(" ")
        fields = {"accession": accession, "entry_name": None,
                  "description": description.strip() or None, "organism": None,
                  "taxon_id": None, "gene": None}
    seq = normalise_sequence("".join(text for _, text in seq_lines))
    rec = ProteinRecord(fields["accession"], fields["entry_name"], fields["description"],
                        fields["organism"], fields["taxon_id"], fields["gene"], None, seq, line)
    check_record(path, rec, seq_lines)
    return rec


def records_from_lines(path, lines: Iterable[tuple[int, str]], uniprot: bool | None) -> Iterator[ProteinRecord]:
    """Records from numbered lines (the exact parser; text before the first header may be blank
    lines or ';' comments)."""
    header, header_line, seq_lines = None, 0, []
    for lineno, line in lines:
        if line.startswith(">"):
            if header is not None:
                yield _make_record(path, header, header_line, seq_lines, uniprot)
            header, header_line, seq_lines = line[1:].rstrip("\r"), lineno, []
        elif header is None:
            if line.strip() and not line.startswith(";"):
                raise InputError(f"{path}:{lineno}: expected a FASTA header line starting "
                                 f"with '>', got {line[:40]!r}")
        else:
            seq_lines.append((lineno, line))
    if header is not None:
        yield _make_record(path, header, header_line, seq_lines, uniprot)


def exact_block(path, block: bytes, first_line: int, uniprot: bool | None) -> pa.Table:
    """A block's records by the line-by-line parser."""
    return records_table(records_from_lines(path, block_lines(path, block, first_line), uniprot))


# ---------------------------------------------------------------------------------------------
# The fast path: a whole block at once
# ---------------------------------------------------------------------------------------------
def _trimmed(arr) -> pa.Array:
    """str.strip() semantics on printable ASCII and tab; '' becomes NULL (as `or None`)."""
    t = pc.ascii_trim_whitespace(arr)
    return pc.if_else(pc.equal(pc.binary_length(t), 0), pa.scalar(None, pa.string()), t)


def _element(lists, i: int) -> pa.Array:
    """Element i of each list, NULL where a list is shorter."""
    return pc.list_slice(lists, i, i + 1, return_fixed_size_list=True).flatten()


def _split_fields(text: pa.Array, tabs: bool) -> dict[str, pa.Array]:
    """Description and the last value of each key of " " + rest, as _FIELD.split does it."""
    n = len(text)
    for space in (" ", "\t") if tabs else (" ",):
        for key in _KEYS:
            text = pc.replace_substring(text, space + key + "=", _SEP + key + _KEY_END)
    pieces = pc.split_pattern(text, _SEP)
    out = {"description": _trimmed(_element(pieces, 0))}
    rest = pc.list_flatten(pc.list_slice(pieces, 1))
    parent = pc.list_parent_indices(pc.list_slice(pieces, 1)).to_numpy()
    keys, values = pc.utf8_slice_codeunits(rest, 0, 2), _trimmed(pc.utf8_slice_codeunits(rest, 3))
    for key in ("OS", "OX", "GN"):
        idx = np.flatnonzero(pc.equal(keys, key).to_numpy(zero_copy_only=False))
        last = np.full(n, -1, np.int64)
        np.maximum.at(last, parent[idx], idx)
        out[key] = values.take(pa.array(last, mask=last < 0))
    return out


def header_columns(headers: pa.Array, uniprot: bool | None) -> dict | None:
    """accession, entry_name, description, organism, taxon_id, gene of printable-ASCII headers
    (what `parse_uniprot_header` and the plain rule give), or None when one of them needs the
    exact path (no accession, not UniProt where required, a taxon id too large)."""
    n = len(headers)
    null = pa.nulls(n, pa.string())
    tabs = pc.any(pc.match_substring(headers, "\t")).as_py()
    plain = pc.split_pattern(pc.ascii_trim_whitespace(headers), " ", max_splits=1)
    cols = {"accession": _element(plain, 0), "entry_name": null,
            "description": _trimmed(_element(plain, 1)), "organism": null,
            "taxon_id": pa.nulls(n, pa.int32()), "gene": null}
    if uniprot is not False:
        # ^(sp|tr)\|([^|\s]+)\|(\S+)(?:\s+(.*))?$ : first token split on '|', rest after the spaces
        first = pc.split_pattern_regex(headers, r"\s+", max_splits=1) if tabs else \
            pc.split_pattern(headers, " ", max_splits=1)
        parts = pc.split_pattern(_element(first, 0), "|", max_splits=2)
        matched = pc.and_(pc.equal(pc.list_value_length(parts), 3),
                          pc.is_in(_element(parts, 0), pa.array(["sp", "tr"])))
        acc = _element(parts, 1)
        entry = _element(parts, 2)
        matched = pc.fill_null(pc.and_(matched, pc.and_(pc.greater(pc.binary_length(acc), 0),
                                                        pc.greater(pc.binary_length(entry), 0))), False)
        n_matched = pc.sum(matched).as_py() or 0
        if uniprot and n_matched < n:
            return None
        if n_matched:
            rest = pc.ascii_ltrim_whitespace(pc.fill_null(_element(first, 1), ""))
            fields = _split_fields(pc.binary_join_element_wise("", rest, " "), tabs)
            ox = fields["OX"]
            digits = pc.fill_null(pc.match_substring_regex(ox, _RE2_DIGITS), False)
            taxon = pc.cast(pc.if_else(digits, ox, pa.scalar(None, pa.string())), pa.int64())
            if (pc.max(taxon).as_py() or 0) > INT32_MAX:
                return None
            found = {"accession": acc, "entry_name": entry, "description": fields["description"],
                     "organism": fields["OS"], "taxon_id": pc.cast(taxon, pa.int32()), "gene": fields["GN"]}
            cols = {k: pc.if_else(matched, found[k], cols[k]) for k in cols}
    if not pc.all(pc.greater(pc.binary_length(cols["accession"]), 0)).as_py():
        return None
    return cols


def _string_array(items: list[bytes], data: bytes) -> pa.Array:
    """An Arrow string array of ASCII byte strings (`data` = their concatenation)."""
    offsets = np.zeros(len(items) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, items), np.int64, len(items)), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(len(items), pa.py_buffer(offsets), pa.py_buffer(data)
                                            ).cast(pa.string())


def fast_block(block: bytes, first_line: int, uniprot: bool | None) -> pa.Table | None:
    """A block's records, or None when the block needs the exact path.

    Every step iterates in C (bytes methods, one regex split, NumPy): no Python bytecode runs
    per record or per line."""
    if not block.startswith(b">") or (b"\r" in block and block.count(b"\r") != block.count(b"\r\n")):
        return None   # text before the first header, or a lone CR (a line break to universal newlines)
    parts = _HEADER.split(b"\n" + block)    # ['', header, sequence lines, header, ...]
    headers, n = parts[1::2], len(parts) // 2
    joined = b"".join(headers)
    if joined.translate(None, _PLAIN_BYTES):
        return None   # control or non-ASCII bytes in a header (sequences are checked below)
    # the sequence parts joined by '>' separators; case and line ends go in one translate
    body = b">" + b">".join(parts[2::2]).translate(_UPPER, _LINE_SPACE)
    if b"*" in body:   # a terminal stop is dropped; any other '*' fails validation below
        body = b">" + b">".join(s[:-1] if s.endswith(b"*") else s for s in body.split(b">")[1:])
    if body.translate(None, _RESIDUES_SEP):
        return None   # a character outside the alphabet (or a '>' inside a line)
    seps = np.flatnonzero(np.frombuffer(body, np.uint8) == ord(">"))
    lengths = np.diff(np.append(seps, len(body))) - 1
    if len(seps) != n or not lengths.all():
        return None   # an empty record: the exact path names it
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > INT32_MAX:
        return None
    sequence = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)),
                                           pa.py_buffer(body.replace(b">", b"")))
    # a record's line: 1 + the line feeds before its '>' (those followed by '>' start records)
    raw = np.frombuffer(block, np.uint8)
    feeds = np.flatnonzero(raw == 10)
    starts = feeds[raw[np.minimum(feeds + 1, len(raw) - 1)] == ord(">")] + 1
    lines = first_line + np.concatenate(([0], np.searchsorted(feeds, starts)))
    if len(lines) != n:
        return None
    if b" " in joined or b"\t" in joined or (uniprot is not False and b"|" in joined):
        cols = header_columns(_string_array(headers, joined), uniprot)
        if cols is None:
            return None
    elif uniprot or 0 in map(len, headers):
        return None   # not UniProt headers where required, or '>' alone: the exact path says so
    else:   # bare accessions ('>P12345'): the header is the accession
        null = pa.nulls(n, pa.string())
        cols = {"accession": _string_array(headers, joined), "entry_name": null, "description": null,
                "organism": null, "taxon_id": pa.nulls(n, pa.int32()), "gene": null}
    arrays = dict(cols, keywords=pa.nulls(n, pa.list_(pa.string())), sequence=sequence,
                  length=pa.array(lengths.astype(np.int32)), line=pa.array(lines))
    return pa.Table.from_arrays([arrays[f.name] for f in BATCH_SCHEMA], schema=BATCH_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def fasta_batches(path: Path, uniprot: bool | None = None) -> Iterator[pa.Table]:
    """Batches (records.BATCH_SCHEMA) of a FASTA file (plain or gzip), in file order.

    uniprot=True requires UniProt headers, False treats every header as plain
    ('>ACCESSION description'), None parses UniProt headers where they match."""
    found = 0
    for block, line in blocks(path, b"\n>"):
        table = fast_block(block, line, uniprot)
        if table is None:
            table = exact_block(path, block, line, uniprot)
        found += table.num_rows
        yield table
    if not found:
        raise InputError(f"{path}: no FASTA records found")


def parse_fasta(path: Path, uniprot: bool | None = None) -> Iterator[ProteinRecord]:
    """Records of a FASTA file (plain or gzip), as ProteinRecord tuples."""
    for table in fasta_batches(path, uniprot):
        yield from table_records(table)
