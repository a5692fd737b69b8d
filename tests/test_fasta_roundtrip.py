"""Property tests: any set of valid records written as FASTA (any line width, CRLF or LF,
any case, gzip or not) parses back to the same accessions and sequences."""
from __future__ import annotations

import gzip

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
