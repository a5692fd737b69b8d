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


# ---------------------------------------------------------------------------------------------
# Issue 16: SQ lines, the first unknown annotation, truncated gzip flat files
# ---------------------------------------------------------------------------------------------
def _first_entry(flat) -> tuple[str, int]:
    """The sample's first entry (text up to and including '//') and the line of its SQ line."""
    text = flat.read_text()
    entry = text[:text.index("\n//\n") + 4]
    sq_line = next(i for i, line in enumerate(entry.splitlines(), 1) if line.startswith("SQ   "))
    return entry, sq_line


def test_sq_line_checksum_of_a_real_entry():
    from Bio.SeqUtils.CheckSum import crc64 as biopython_crc64

    from protiso.ingest.checksums import crc64, crc64_many
    entry, sq_line = _first_entry(sample_files()[2])
    sq = entry.splitlines()[sq_line - 1]
    given = sq.split()[-2]                                   # '700B468E4D251994' for P15455
    seq = "".join(line.replace(" ", "") for line in entry.splitlines()[sq_line:-1])
    assert f"CRC-{given}" == biopython_crc64(seq) == f"CRC-{crc64(seq):016X}"
    assert int(crc64_many([seq.encode(), b"", b"M"])[0]) == int(given, 16)


@pytest.mark.parametrize("damage,message", [
    (lambda e: e.replace("700B468E4D251994 CRC64", "700B468E4D251995 CRC64"),
     r"x\.dat:{sq}: entry P15455: the SQ line's CRC64 700B468E4D251995 does not match the "
     r"sequence's \(700B468E4D251994\)"),
    (lambda e: e.replace("SEQUENCE   472 AA", "SEQUENCE   471 AA"),
     r"x\.dat:{sq}: entry P15455: the SQ line gives 471 residues but the sequence has 472"),
    (lambda e: e.replace("MARVSSLLSF", "MARVSSLLSW"),          # a residue changed, SQ line kept
     r"x\.dat:{sq}: entry P15455: the SQ line's CRC64 700B468E4D251994 does not match"),
])
def test_sq_line_disagreeing_with_the_sequence(sample_store, tmp_path, damage, message):
    flat = sample_files()[2]
    entry, sq_line = _first_entry(flat)
    rest = flat.read_text()[len(entry):]
    bad = _write(tmp_path / "x.dat", damage(entry) + rest)
    before = _snapshot(sample_store)
    with pytest.raises(InputError, match=message.format(sq=sq_line)):
        ingest(sample_store, [bad])
    assert _snapshot(sample_store) == before


def test_bad_sq_line_is_reported_before_a_later_error(store, tmp_path):
    flat = sample_files()[2]
    entry, sq_line = _first_entry(flat)
    rest = flat.read_text()[len(entry):]
    later_bad = rest.replace("\n     M", "\n     1", 1)  # an invalid residue in a later entry
    path = _write(tmp_path / "x.dat", entry.replace("472 AA;", "470 AA;") + later_bad)
    with pytest.raises(InputError, match=rf"x\.dat:{sq_line}: entry P15455: the SQ line gives 470"):
        ingest(store, [path])


def test_unknown_annotation_cites_the_first_offending_line(sample_store, tmp_path):
    known = sample_store.scalar("SELECT min(accession) FROM proteins")
    rows = ["accession\taspect\tgo_id", "NOPE1\tBPO\tGO:1"] + [f"{known}\tMFO\tGO:{i}" for i in range(10)]
    rows.append("NOPE2\tCCO\tGO:2")                      # line 13: '13' < '2' as text
    tsv = _write(tmp_path / "go.tsv", "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"go\.tsv:2: accession NOPE1 is not in the store \(2 annotation "
                                         r"rows name unknown accessions") as err:
        ingest(sample_store, annotations=[tsv])
    assert err.value.param == "unknown" and "--unknown" not in str(err.value)


def test_truncated_gzip_flat_file(sample_store, tmp_path, invoke):
    data = gzip.compress(sample_files()[2].read_bytes())
    path = tmp_path / "t.dat.gz"
    path.write_bytes(data[: len(data) // 2])
    before = _snapshot(sample_store)
    with pytest.raises(InputError, match=r"t\.dat\.gz: truncated gzip file after line \d+") as err:
        ingest(sample_store, [path])
    assert "\n" not in str(err.value)
    assert _snapshot(sample_store) == before
    result = invoke("--store", tmp_path / "cli", "ingest", path)
    assert result.exit_code == 1 and "Aborted" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "truncated gzip file" in result.stderr


def test_library_errors_name_values_not_options(store, tmp_path):
    with pytest.raises(InputError, match=r"give the format explicitly \(fasta, uniprot or swiss\)") as err:
        ingest(store, [_write(tmp_path / "x.txt", "hello\n")])
    assert err.value.param == "format" and "--" not in str(err.value)
    with pytest.raises(InputError) as err:
        ingest(store, [_write(tmp_path / "a.fa", GOOD)], unknown="maybe")
    assert err.value.param == "unknown"


# ---------------------------------------------------------------------------------------------
# The block-wise parsers: many blocks, lines and errors far into a file
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_blocks(monkeypatch):
    """Read files in 1 KB blocks, so that small inputs span many blocks."""
    from protiso.ingest import textio
    monkeypatch.setattr(textio, "CHUNK_BYTES", 1024)


def _many(n: int, bad_at: int | None = None) -> tuple[str, dict]:
    """n records with 60-column lines; record `bad_at` gets a '1' on its third sequence line."""
    lines, seqs, line_of = [], {}, {}
    for i in range(n):
        seq = "ACDEFGHIKLMNPQRSTVWY"[i % 20] * (50 + 37 * (i % 7))
        seqs[f"Q{i:05d}"] = seq
        line_of[f"Q{i:05d}"] = len(lines) + 1
        lines.append(f">Q{i:05d} protein {i}")
        body = [seq[j:j + 60] for j in range(0, len(seq), 60)]
        if i == bad_at:
            body[2] = "1" + body[2][1:]
            line_of["bad"] = len(lines) + 3
        lines.extend(body)
    return "\n".join(lines) + "\n", {"seqs": seqs, "lines": line_of}


def test_many_blocks_round_trip_and_lines(store, tmp_path, small_blocks):
    from protiso.ingest.fasta import parse_fasta
    text, info = _many(500)
    path = _write(tmp_path / "m.fa.gz", text, gz=True)
    records = list(parse_fasta(path))
    assert {r.accession: r.sequence for r in records} == info["seqs"]
    assert {r.accession: r.line for r in records} == {a: info["lines"][a] for a in info["seqs"]}
    assert ingest(store, [path]).n_new == 500


def test_error_far_into_a_file(store, tmp_path, small_blocks):
    text, info = _many(400, bad_at=321)
    path = _write(tmp_path / "m.fa", text)
    with pytest.raises(InputError, match=rf"m\.fa:{info['lines']['bad']}: record Q00321: character '1'"):
        ingest(store, [path])


def test_conflict_across_blocks_names_the_first_line(store, tmp_path, small_blocks):
    text, info = _many(300)
    text += ">Q00007 again\nMKV\n"
    path = _write(tmp_path / "m.fa", text)
    last = text.count("\n") - 1
    with pytest.raises(InputError, match=rf"m\.fa:{last}: accession Q00007 appears again with a different "
                                         rf"sequence \(first at .*m\.fa:{info['lines']['Q00007']}\)"):
        ingest(store, [path])
    assert store.scalar("SELECT count(*) FROM proteins") == 0


def test_repeated_annotation_rows_are_stored_once(store, tmp_path, small_blocks):
    text, info = _many(50)
    ingest(store, [_write(tmp_path / "m.fa", text)])
    accs = sorted(info["seqs"])
    rows = [f"{a}\tBPO\tGO:{k:07d}" for a in accs for k in range(3)]
    sorted_tsv = _write(tmp_path / "a.tsv", "\n".join(rows) + "\n")
    assert ingest(store, annotations=[sorted_tsv]).n_new_annotations == 150
    shuffled = rows[::-1] + rows[:40] + [f"{accs[0]}\tMFO\tGO:9"]   # unsorted, repeated, one new
    result = ingest(store, annotations=[_write(tmp_path / "b.tsv", "\n".join(shuffled) + "\n")])
    assert (result.n_annotations, result.n_new_annotations) == (191, 1)
    assert store.scalar("SELECT count(*) FROM annotations") == 151
    assert store.scalar("SELECT count(*) FROM (SELECT DISTINCT * FROM annotations)") == 151


def test_annotation_rows_with_spaces_crlf_and_comments(store, tmp_path):
    ingest(store, [_write(tmp_path / "a.fa", ">A1\nMKV\n>A2\nMKW\n")])
    text = "#comment\r\nA1 \tBPO\t GO:1\r\n\r\nA2\tCCO\tGO:2\r\nA2\tCCO\tGO:2\r\n"
    result = ingest(store, annotations=[_write(tmp_path / "a.tsv", text)])
    assert (result.n_annotations, result.n_new_annotations) == (3, 2)
    assert store.sql("SELECT * FROM annotations ORDER BY ALL").to_pylist() == [
        {"accession": "A1", "namespace": "BPO", "term": "GO:1"},
        {"accession": "A2", "namespace": "CCO", "term": "GO:2"}]


def test_taxon_id_too_large(store, tmp_path):
    header = ">sp|P1|X_HUMAN Thing OS=Homo sapiens OX=99999999999 PE=1 SV=1\nMKV\n"
    with pytest.raises(InputError, match=r"x\.fa:1: taxon id 99999999999 is too large"):
        ingest(store, [_write(tmp_path / "x.fa", header)])


# Issue 15: annotations have no index (migration 013); the loader alone keeps rows unique.
@pytest.fixture
def small_batches(monkeypatch, small_blocks):
    """Hand DuckDB a few rows at a time, so that repeats fall into different statements."""
    from protiso.ingest import loader
    monkeypatch.setattr(loader, "BATCH", 7)
    monkeypatch.setattr(loader, "ANNOTATION_BATCH", 13)


def test_annotations_unique_across_batches_and_ingests(store, tmp_path, small_batches):
    import random
    text, info = _many(60)
    ingest(store, [_write(tmp_path / "m.fa", text)])
    accs = sorted(info["seqs"])
    rng = random.Random(15)
    pool = [(a, ns, f"GO:{k:07d}") for a in accs for ns in ("BPO", "CCO") for k in range(4)]
    expected = set()
    # sorted into an empty table (the fast path), then unsorted files that repeat rows within and
    # across batches and files, and a sorted file into a table no longer empty
    first = sorted(rng.sample(pool, 200))
    files = [first, [rng.choice(pool) for _ in range(300)], rng.sample(pool, 150) + first[:30],
             sorted(rng.sample(pool, 100))]
    for i, rows in enumerate(files):
        new = set(rows) - expected
        result = ingest(store, annotations=[_write(tmp_path / f"a{i}.tsv",
                                                   "".join("\t".join(r) + "\n" for r in rows))])
        expected |= set(rows)
        assert (result.n_annotations, result.n_new_annotations) == (len(rows), len(new))
        stored = [tuple(r.values()) for r in store.sql("SELECT * FROM annotations").to_pylist()]
        assert sorted(stored) == sorted(expected)   # no row twice


def test_two_sorted_files_in_one_ingest_overlap(store, tmp_path, small_batches):
    """The fast path for sorted rows sees the earlier file's rows: an overlap is not stored twice."""
    text, info = _many(20)
    ingest(store, [_write(tmp_path / "m.fa", text)])
    rows = [f"{a}\tBPO\tGO:{k}" for a in sorted(info["seqs"]) for k in range(3)]
    a, b = _write(tmp_path / "a.tsv", "\n".join(rows[:40]) + "\n"), _write(tmp_path / "b.tsv", "\n".join(rows[30:]) + "\n")
    result = ingest(store, annotations=[a, b])
    assert (result.n_annotations, result.n_new_annotations) == (70, 60)
    assert store.scalar("SELECT count(*) FROM (SELECT DISTINCT * FROM annotations)") == 60
    assert store.scalar("SELECT count(*) FROM annotations") == 60


def test_source_names_each_file_and_nothing_is_left_registered(store, tmp_path, small_batches):
    one, info_one = _many(30)
    two = "".join(f">R{i}\nMKV{'W' * i}\n" for i in range(25))
    a, b = _write(tmp_path / "one.fa", one), _write(tmp_path / "two.fa.gz", two, gz=True)
    result = ingest(store, [a, b])
    assert result.n_new == 55
    assert store.sql("SELECT source, count(*) AS n FROM proteins GROUP BY source ORDER BY source").to_pylist() == [
        {"source": str(a), "n": 30}, {"source": str(b), "n": 25}]
    names = {r[0] for r in store.con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    assert not {n for n in names if n.startswith("ingest_")}


def test_duckdb_memory_capped_during_ingest_and_settings_restored(store, tmp_path, small_batches):
    from protiso.ingest import loader
    from protiso.ingest.loader import _size_bytes
    before = store.one("SELECT current_setting('memory_limit'), current_setting('enable_progress_bar')")
    seen = []
    progress = lambda n: seen.append(store.one(        # noqa: E731
        "SELECT current_setting('memory_limit'), current_setting('enable_progress_bar'), "
        "(SELECT count(*) FROM proteins)"))
    text, _ = _many(40)
    ingest(store, [_write(tmp_path / "m.fa", text)], progress=progress)
    assert seen and all(bar is False for _, bar, _ in seen)
    for limit, _, n in seen:   # the cap follows the proteins stored so far (DuckDB prints 1 decimal)
        cap = loader.MEMORY_BASE + loader.MEMORY_PER_PROTEIN * n
        assert abs(_size_bytes(limit) - cap) <= 0.05 * (1 << 20), (limit, n)
    assert store.one("SELECT current_setting('memory_limit'), current_setting('enable_progress_bar')") == before
    with pytest.raises(InputError):
        ingest(store, [_write(tmp_path / "bad.fa", ">X1\nMK1\n")])
    assert store.one("SELECT current_setting('memory_limit'), current_setting('enable_progress_bar')") == before
