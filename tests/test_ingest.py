"""Ingest: formats, UniProt headers, flat files, annotations, and every bad-input case
leaving the store unchanged."""
from __future__ import annotations

import gzip
import re

import pytest

from protiso.errors import InputError
from protiso.ingest import ingest
from protiso.ingest.fasta import parse_uniprot_header
from tests.conftest import sample_files


def _write(path, text: str, gz: bool = False):
    data = text.encode()
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def _snapshot(store):
    return (store.sql("SELECT * FROM proteins ORDER BY accession").to_pylist(),
            store.sql("SELECT * FROM annotations ORDER BY ALL").to_pylist(),
            store.scalar("SELECT count(*) FROM ingests"))


GOOD = ">sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2\n" \
       "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHF\nDLSHGSAQVKGHGKKVADALTNAVAHV\n"


@pytest.mark.parametrize("header,expected", [
    ("sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2",
     ("P69905", "HBA_HUMAN", "Hemoglobin subunit alpha", "Homo sapiens", 9606, "HBA1")),
    ("tr|A0A024R161|A0A024R161_HUMAN Guanine nucleotide-binding protein subunit gamma "
     "OS=Homo sapiens OX=9606 GN=DNAJC25-GNG10 PE=3 SV=1",
     ("A0A024R161", "A0A024R161_HUMAN", "Guanine nucleotide-binding protein subunit gamma",
      "Homo sapiens", 9606, "DNAJC25-GNG10")),
    ("sp|P12345-2|AATM_RABIT Isoform 2 of Aspartate aminotransferase OS=Oryctolagus cuniculus "
     "(Rabbit) OX=9986",
     ("P12345-2", "AATM_RABIT", "Isoform 2 of Aspartate aminotransferase",
      "Oryctolagus cuniculus (Rabbit)", 9986, None)),
    ("sp|P0A7Y4|RNH_ECOLI Ribonuclease HI OS=Escherichia coli (strain K12) OX=83333 GN=rnhA PE=1 SV=1",
     ("P0A7Y4", "RNH_ECOLI", "Ribonuclease HI", "Escherichia coli (strain K12)", 83333, "rnhA")),
])
def test_uniprot_headers(header, expected):
    f = parse_uniprot_header(header)
    assert (f["accession"], f["entry_name"], f["description"], f["organism"], f["taxon_id"],
            f["gene"]) == expected


def test_fasta_uniprot_gz_crlf_lowercase(store, tmp_path):
    text = GOOD.replace("\n", "\r\n").lower().replace(">sp|p69905|hba_human", ">sp|P69905|HBA_HUMAN") \
        .replace("os=homo sapiens ox=9606 gn=hba1 pe=1 sv=2", "OS=Homo sapiens OX=9606 GN=HBA1 PE=1 SV=2")
    path = _write(tmp_path / "a.fasta.gz", text, gz=True)
    result = ingest(store, [path])
    assert (result.n_records, result.n_new) == (1, 1)
    row = store.sql("SELECT * FROM proteins").to_pylist()[0]
    assert row["sequence"] == "MVLSPADKTNVKAAWGKVGAHAGEYGAEALERMFLSFPTTKTYFPHFDLSHGSAQVKGHGKKVADALTNAVAHV"
    assert row["length"] == len(row["sequence"])
    assert (row["organism"], row["taxon_id"], row["gene"]) == ("Homo sapiens", 9606, "HBA1")


def test_same_accession_same_sequence_is_noop(store, tmp_path):
    path = _write(tmp_path / "a.fa", GOOD)
    ingest(store, [path])
    before = _snapshot(store)[:2]
    result = ingest(store, [path, path])
    assert result.n_new == 0 and _snapshot(store)[:2] == before


def test_flat_file_round_trip(store):
    fasta, go, flat = sample_files()
    result = ingest(store, [flat])
    text = flat.read_text()
    entries = text.split("\n//")
    expected = {}
    for entry in entries:
        ac = re.search(r"^AC   (\w+);", entry, re.M)
        if not ac:
            continue
        os_lines = " ".join(m.group(1).strip() for m in re.finditer(r"^OS   (.*)$", entry, re.M))
        ox = re.search(r"^OX   NCBI_TaxID=(\d+)", entry, re.M)
        expected[ac.group(1)] = (os_lines.rstrip("."), int(ox.group(1)))
    assert result.n_records == len(expected) == 100
    got = {r["accession"]: (r["organism"], r["taxon_id"])
           for r in store.sql("SELECT accession, organism, taxon_id FROM proteins").to_pylist()}
    assert got == expected
    lengths = dict(store.con.execute("SELECT accession, length FROM proteins").fetchall())
    for entry in entries:
        ac = re.search(r"^AC   (\w+);", entry, re.M)
        sq = re.search(r"^SQ   SEQUENCE\s+(\d+) AA", entry, re.M)
        if ac:
            assert lengths[ac.group(1)] == int(sq.group(1))
    p = store.sql("SELECT * FROM proteins WHERE accession = 'P15455'").to_pylist()[0]
    assert p["entry_name"] == "CRU4_ARATH" and p["gene"] == "CRU4"
    assert p["description"] == "12S seed storage protein CRU4"
    assert "Alternative splicing" in p["keywords"]


def test_sample_with_annotations(sample_store):
    assert sample_store.scalar("SELECT count(*) FROM proteins") == 2099
    fasta, go, _ = sample_files()
    n_rows = sum(1 for _ in gzip.open(go, "rt")) - 1
    assert sample_store.scalar("SELECT count(*) FROM annotations") == n_rows
    assert sample_store.scalar("SELECT count(DISTINCT namespace) FROM annotations") == 3
    # the FASTA's residues equal the stored sequences
    seqs, acc = {}, None
    for line in gzip.open(fasta, "rt"):
        if line.startswith(">"):
            acc = line[1:].strip()
            seqs[acc] = ""
        else:
            seqs[acc] += line.strip()
    stored = dict(sample_store.con.execute("SELECT accession, sequence FROM proteins").fetchall())
    assert {a: stored[a] for a in seqs} == seqs
    # P70076 is in both files: the flat file filled in its metadata
    assert sample_store.scalar("SELECT organism FROM proteins WHERE accession = 'P70076'")


def test_fasta_then_flat_file_fills_metadata(store, tmp_path):
    fasta, _, flat = sample_files()
    first = next(iter(re.finditer(r"^AC   (\w+);", flat.read_text(), re.M))).group(1)
    from protiso.ingest.swiss import parse_swiss
    rec = next(r for r in parse_swiss(flat) if r.accession == first)
    ingest(store, [_write(tmp_path / "x.fa", f">{first}\n{rec.sequence}\n")])
    assert store.scalar("SELECT organism FROM proteins") is None
    ingest(store, [flat])
    assert store.scalar("SELECT organism FROM proteins WHERE accession = ?", [first]) == rec.organism


BAD_CASES = {
    "empty_record": (">A1\nMKV\n>A2\n\n>A3\nMK\n", r"x\.fa:3: record A2 has an empty sequence"),
    "invalid_char": (">A1\nMKV\n>A2\nMKVL\nMK1L\n", r"x\.fa:5: record A2: character '1' at residue 7"),
    "gap_char": (">A1\nMK-V\n", r"x\.fa:2: record A1: character '-' at residue 3"),
    "no_header": ("MKVL\n>A1\nMK\n", r"x\.fa: cannot detect the format"),
    "conflict_in_file": (">A1\nMKV\n>A1\nMKW\n", r"x\.fa:3: accession A1 appears again with a "
                                                 r"different sequence \(first at .*x\.fa:1\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_fasta_leaves_store_unchanged(sample_store, tmp_path, case):
    text, message = BAD_CASES[case]
    before = _snapshot(sample_store)
    good = _write(tmp_path / "good.fa", ">NEW1\nMKVLA\n")
    with pytest.raises(InputError, match=message):
        ingest(sample_store, [good, _write(tmp_path / "x.fa", text)])
    assert _snapshot(sample_store) == before


def test_conflict_with_store(sample_store, tmp_path):
    acc, seq = sample_store.one("SELECT accession, sequence FROM proteins LIMIT 1")
    before = _snapshot(sample_store)
    path = _write(tmp_path / "c.fa", f">NEW\nMKV\n>{acc}\n{seq}W\n")
    with pytest.raises(InputError, match=rf"c\.fa:3: accession {acc} is already in the store "
                                         "with a different sequence"):
        ingest(sample_store, [path])
    assert _snapshot(sample_store) == before


def test_truncated_gzip(sample_store, tmp_path):
    data = gzip.compress(("".join(f">T{i}\nMKVLAAGG\n" for i in range(5000))).encode())
    path = tmp_path / "t.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    before = _snapshot(sample_store)
    with pytest.raises(InputError, match=r"t\.fa\.gz: truncated gzip file after line \d+"):
        ingest(sample_store, [path])
    assert _snapshot(sample_store) == before


def test_binary_file(sample_store, tmp_path):
    path = tmp_path / "b.fa"
    path.write_bytes(b">A\nMKV\n" + bytes(range(256)) * 4)
    before = _snapshot(sample_store)
    with pytest.raises(InputError, match=r"b\.fa: binary file \(NUL byte at offset 7\)"):
        ingest(sample_store, [path])
    assert _snapshot(sample_store) == before


def test_unknown_annotation_accession(sample_store, tmp_path):
    acc = sample_store.scalar("SELECT min(accession) FROM proteins")
    tsv = _write(tmp_path / "go.tsv", f"accession\taspect\tgo_id\n{acc}\tMFO\tGO:1\nNOPE1\tBPO\tGO:2\n")
    before = _snapshot(sample_store)
    with pytest.raises(InputError, match=r"go\.tsv:3: accession NOPE1 is not in the store"):
        ingest(sample_store, annotations=[tsv])
    assert _snapshot(sample_store) == before
    result = ingest(sample_store, annotations=[tsv], unknown="skip")
    assert (result.n_new_annotations, result.n_unknown_skipped) == (1, 1)
    assert "skipped 1 annotation rows" in result.warnings[0]


def test_bad_annotation_columns(sample_store, tmp_path):
    tsv = _write(tmp_path / "go.tsv", "P1\tMFO\n")
    with pytest.raises(InputError, match=r"go\.tsv:1: expected 3 tab-separated columns"):
        ingest(sample_store, annotations=[tsv])


def test_missing_file_and_nothing_to_do(store, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        ingest(store, [tmp_path / "nope.fa"])
    with pytest.raises(InputError, match="nothing to ingest"):
        ingest(store, [])


def test_undetectable_format(store, tmp_path):
    with pytest.raises(InputError, match="cannot detect the format"):
        ingest(store, [_write(tmp_path / "x.txt", "hello\n")])


def test_forced_uniprot_format_rejects_plain_header(store, tmp_path):
    with pytest.raises(InputError, match=r"p\.fa:1: not a UniProt FASTA header"):
        ingest(store, [_write(tmp_path / "p.fa", ">A1 plain\nMKV\n")], fmt="uniprot")


def test_sequence_before_first_header_with_explicit_format(store, tmp_path):
    with pytest.raises(InputError, match=r"x\.fa:2: expected a FASTA header"):
        ingest(store, [_write(tmp_path / "x.fa", "\nMKVL\n>A1\nMK\n")], fmt="fasta")
