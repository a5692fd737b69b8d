"""Property tests: any set of valid records written as FASTA (any line width, CRLF or LF,
any case, gzip or not) parses back to the same accessions and sequences."""
from __future__ import annotations

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protiso.errors import InputError
from protiso.ingest.fasta import parse_fasta
from protiso.ingest.records import PROTEIN_ALPHABET

accessions = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.", min_size=1, max_size=12)
sequences = st.text(alphabet=PROTEIN_ALPHABET, min_size=1, max_size=300)
records = st.dictionaries(accessions, sequences, min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=records, width=st.integers(1, 80), crlf=st.booleans(), lower=st.booleans(),
       gz=st.booleans(), descriptions=st.booleans())
def test_fasta_round_trip(tmp_path, records, width, crlf, lower, gz, descriptions):
    eol = "\r\n" if crlf else "\n"
    lines = []
    for acc, seq in records.items():
        lines.append(f">{acc} some description" if descriptions else f">{acc}")
        body = seq.lower() if lower else seq
        lines.extend(body[i:i + width] for i in range(0, len(body), width))
    data = (eol.join(lines) + eol).encode()
    path = tmp_path / ("r.fa.gz" if gz else "r.fa")
    path.write_bytes(gzip.compress(data) if gz else data)
    parsed = list(parse_fasta(path))
    assert [(r.accession, r.sequence) for r in parsed] == list(records.items())
    assert all((r.description == "some description") == descriptions for r in parsed)


# ---------------------------------------------------------------------------------------------
# The fast (whole-block) parsers give what the exact line-by-line rules give
# ---------------------------------------------------------------------------------------------
import pyarrow as pa  # noqa: E402

from protiso.ingest import annotations as A  # noqa: E402
from protiso.ingest import fasta as F  # noqa: E402

KEYS = ["OS", "OX", "GN", "PE", "SV", "XX"]
words = st.text(alphabet="abcXYZ09()-_.=|", min_size=0, max_size=6)
spaces = st.sampled_from([" ", "  ", "\t", " \t"])


@st.composite
def uniprot_headers(draw):
    """UniProt-like headers, including odd ones: fields in any order, repeated, empty, tabs."""
    head = draw(st.sampled_from(["sp", "tr", "xx", ""]))
    acc = draw(st.text(alphabet="P0123|-", min_size=0, max_size=7))
    entry = draw(st.text(alphabet="ABC_1 ", min_size=0, max_size=6))
    text = f"{head}|{acc}|{entry}" if draw(st.booleans()) else draw(words)
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            text += draw(spaces) + draw(st.sampled_from(KEYS)) + "=" + draw(words)
        else:
            text += draw(spaces) + draw(words)
    return draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " ", "\t "]))


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(uniprot_headers(), min_size=1, max_size=20), uniprot=st.sampled_from([None, False]))
def test_vectorised_headers_match_the_exact_rules(headers, uniprot):
    cols = F.header_columns(pa.array(headers, pa.string()), uniprot)
    expected = []
    for h in headers:
        fields = F.parse_uniprot_header(h) if uniprot is None else None
        if fields is None:
            acc, _, desc = h.strip().partition(" ")
            fields = {"accession": acc, "entry_name": None, "description": desc.strip() or None,
                      "organism": None, "taxon_id": None, "gene": None}
        expected.append(fields)
    if cols is None:   # only for a header the exact path rejects (no accession)
        assert any(not f["accession"] for f in expected)
        return
    got = pa.table(cols).to_pylist()
    assert got == [{k: f[k] for k in cols} for f in expected]


@st.composite
def fasta_blocks(draw):
    records = draw(st.lists(st.tuples(uniprot_headers(), st.text(alphabet=PROTEIN_ALPHABET, min_size=1,
                                                                  max_size=150)), min_size=1, max_size=6))
    width, eol = draw(st.integers(1, 70)), draw(st.sampled_from(["\n", "\r\n"]))
    out = []
    for header, seq in records:
        if draw(st.booleans()):
            seq = seq.lower()
        if draw(st.booleans()):
            seq += "*"
        out.append(">" + header)
        out.extend(seq[i:i + width] + draw(st.sampled_from(["", " "])) for i in range(0, len(seq), width))
    return (eol.join(out) + eol).encode()


@settings(max_examples=300, deadline=None)
@given(block=fasta_blocks(), first_line=st.integers(1, 10**6), uniprot=st.sampled_from([None, False]))
def test_fast_fasta_block_matches_the_exact_parser(block, first_line, uniprot):
    try:
        exact = F.exact_block("x.fa", block, first_line, uniprot)
    except InputError:
        exact = None
    fast = F.fast_block(block, first_line, uniprot)
    if fast is not None:
        assert exact is not None and fast.equals(exact)
    elif exact is not None:   # the fast path declines only for headers with no accession
        assert not all(exact.column("accession").to_pylist())


def test_fast_path_takes_ordinary_uniprot_blocks():
    block = (b">sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2\n"
             b"MVLSPADKTNVKAAWGKVGA\nHAGEYGAEALERMF\n"
             b">tr|A0A0|A0A0_ECOLI Thing OS=Escherichia coli (strain K12) OX=83333 PE=4 SV=1\nmkv*\n")
    fast = F.fast_block(block, 7, True)
    assert fast is not None and fast.equals(F.exact_block("x.fa", block, 7, True))
    assert fast.column("line").to_pylist() == [7, 10]
    assert fast.column("sequence").to_pylist() == ["MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMF", "MKV"]


@st.composite
def tsv_blocks(draw):
    """Mostly well-formed rows (fields padded with spaces at times), now and then an odd line."""
    field = st.text(alphabet="AB01:.", min_size=1, max_size=5).map(lambda f: f" {f}" if len(f) == 3 else f)
    good = st.lists(field, min_size=3, max_size=3).map("\t".join)
    odd = st.sampled_from(["", "#c\tB\tC", "A\tB", "A\tB\tC\tD", "A\t\tC", " \tB\tC", "A\tB\tC "])
    lines = draw(st.lists(st.one_of(good, good, good, odd), min_size=1, max_size=12))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return (eol.join(lines) + draw(st.sampled_from(["", eol]))).encode()


@settings(max_examples=300, deadline=None)
@given(block=tsv_blocks(), first_line=st.integers(2, 10**6))
def test_fast_tsv_block_matches_the_exact_rules(block, first_line):
    try:
        exact = A.exact_block("x.tsv", block, first_line)
    except InputError:
        exact = None
    fast = A.fast_block(block, first_line)
    if fast is not None:
        assert exact is not None and fast.equals(exact)


def test_fast_path_takes_ordinary_tsv_blocks():
    block = b"P1\tBPO\tGO:0000001\nP1\tCCO\tGO:0000002\nP2\tMFO\tGO:0000003"
    fast = A.fast_block(block, 5)
    assert fast is not None and fast.equals(A.exact_block("x.tsv", block, 5))
    assert fast.column("line").to_pylist() == [5, 6, 7]
