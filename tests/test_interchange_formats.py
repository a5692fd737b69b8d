"""Embedding interchange formats (issue 14): readers for the files pLM users have, validation
while streaming, and export writers that round-trip exactly. Every input file is written here by
its own library (h5py, torch.save, NumPy, pyarrow)."""
from __future__ import annotations

import hashlib
import os
import shutil

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protiso.errors import InputError
from protiso.interchange import (accession, detect_format, open_source, write_h5, write_npz,
                                 write_parquet)
from protiso.interchange._common import SeenIds

D = 16
RNG = np.random.default_rng(7)
ACCS = ["P69905", "P68871", "Q9Y6K9", "A0A023GPI8", "O15552", "P12345-2"]


def vecs(n, d=D, dtype=np.float16):
    return RNG.standard_normal((n, d)).astype(dtype)


def read_all(paths, batch_rows=4, **kw):
    """{(id, layer): float32 array} and the reader, after a full stream."""
    reader = open_source(paths, **kw)
    out = {}
    for b in reader.batches(batch_rows=batch_rows):
        for pid, layer, arr in b.items:
            assert arr.dtype == np.float32
            out[(pid, layer)] = arr
    return out, reader


def write_uniprot_h5(path, ids, matrix):
    with h5py.File(path, "w") as f:
        for pid, v in zip(ids, matrix):
            f.create_dataset(pid, data=v)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def refused(match, paths, **kw):
    """The InputError message of opening and streaming `paths` (one line)."""
    with pytest.raises(InputError, match=match) as info:
        reader = open_source(paths, **kw)
        for _ in reader.batches(batch_rows=2):
            pass
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# -- accession rule ---------------------------------------------------------------------------

def test_accession_rule():
    assert accession("P69905") == "P69905"
    assert accession(">sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens") == "P69905"
    assert accession("tr|A0A023GPI8|A0A023GPI8_CANAL Lectin") == "A0A023GPI8"
    assert accession("sp|P12345-2|X") == "P12345-2"
    assert accession("UniRef50_P12345 some cluster") == "UniRef50_P12345"
    assert accession("  Q9Y6K9\tdesc ") == "Q9Y6K9"


# -- HDF5 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_uniprot_h5_exact(tmp_path, dtype):
    path = tmp_path / "per-protein.h5"
    m = vecs(len(ACCS), dtype=dtype)
    write_uniprot_h5(path, ACCS, m)
    assert detect_format(path) == "h5"
    got, reader = read_all([path])
    src = reader.sources[0]
    assert (src.format, src.level, src.dim, src.dtype, src.layers, src.n_items) == (
        "h5", "global", D, np.dtype(dtype).name, [None], len(ACCS))
    assert src.sha256 == sha(path) and reader.sha256 == src.sha256
    assert set(got) == {(a, None) for a in ACCS}
    for a, v in zip(ACCS, m):
        np.testing.assert_array_equal(got[(a, None)], v.astype(np.float32))  # exact widening


def test_bio_embeddings_md5_keys_use_original_id(tmp_path):
    path = tmp_path / "reduced_embeddings_file.h5"
    seqs = ["MKV", "MALW", "MSTNPKPQRK"]
    labels = ["sp|P69905|HBA_HUMAN Hemoglobin subunit alpha OS=Homo sapiens", "Q9Y6K9",
              "tr|A0A023GPI8|A0A023GPI8_CANAL Lectin"]
    m = vecs(3, dtype=np.float32)
    with h5py.File(path, "w") as f:
        for s, lab, v in zip(seqs, labels, m):
            ds = f.create_dataset(hashlib.md5(s.encode()).hexdigest(), data=v)
            ds.attrs["original_id"] = lab
    reader = open_source(path)
    assert reader.sources[0].ids_from == "original_id attribute"
    batches = list(reader.batches())
    by_id = {i: (k, v) for b in batches for i, k, v in zip(b.ids, b.keys, b.vectors)}
    assert set(by_id) == {"P69905", "Q9Y6K9", "A0A023GPI8"}
    for s, acc, v in zip(seqs, ["P69905", "Q9Y6K9", "A0A023GPI8"], m):
        key, got = by_id[acc]
        assert key == hashlib.md5(s.encode()).hexdigest()  # raw key kept for provenance
        np.testing.assert_array_equal(got, v)


def test_per_residue_h5(tmp_path):
    path = tmp_path / "per-residue.h5"
    mats = {a: vecs(L) for a, L in zip(ACCS[:3], (5, 1, 9))}
    with h5py.File(path, "w") as f:
        for a, m in mats.items():
            f.create_dataset(a, data=m)
    got, reader = read_all([path])
    assert reader.level == "local"
    for a, m in mats.items():
        np.testing.assert_array_equal(got[(a, None)], m.astype(np.float32))
    msg = refused("per-residue matrix", [path], level="global")
    assert str(path) in msg and f"protein {min(mats)}" in msg  # first dataset in name order


def test_h5_group_key_and_slow_path(tmp_path):
    """Datasets under a group, one chunked+compressed and one float64: same values."""
    path = tmp_path / "g.h5"
    m = vecs(3, dtype=np.float32)
    with h5py.File(path, "w") as f:
        g = f.create_group("emb")
        g.create_dataset("A1", data=m[0])
        g.create_dataset("A2", data=m[1], chunks=(8,), compression="gzip")
        g.create_dataset("A3", data=m[2].astype(np.float64))
    got, _ = read_all([path], key="emb")
    for a, v in zip(["A1", "A2", "A3"], m):
        np.testing.assert_array_equal(got[(a, None)], v)
    refused("is a group", [path])


# -- ESM extract.py .pt -----------------------------------------------------------------------

def write_esm(path, label, L, layers, dtype="float32", include=("mean", "per_tok")):
    import torch
    reps = {l: torch.from_numpy(vecs(L, dtype=np.float32)).to(getattr(torch, dtype))
            for l in layers}
    obj = {"label": label}
    if "per_tok" in include:
        obj["representations"] = reps
    if "mean" in include:
        obj["mean_representations"] = {l: t.float().mean(0).to(t.dtype) for l, t in reps.items()}
    torch.save(obj, path)
    return obj


def test_esm_directory_layers(tmp_path):
    out = tmp_path / "esm_out"
    out.mkdir()
    layers = [0, 5, 6]
    objs = {}
    for i, a in enumerate(ACCS[:3]):
        label = f"sp|{a}|NAME_HUMAN Protein {i}" if i else a
        objs[a] = write_esm(out / f"{label}.pt", label, 4 + i, layers,
                            dtype="float16" if i == 2 else "float32")
    assert detect_format(out) == "esm-pt" and detect_format(next(out.iterdir())) == "esm-pt"
    got, reader = read_all([out])
    src = reader.sources[0]
    assert (src.level, src.layers, src.dim, src.files, src.n_items) == ("global", layers, D, 3, 9)
    for a, obj in objs.items():
        for l in layers:
            np.testing.assert_array_equal(got[(a, l)],
                                          obj["mean_representations"][l].float().numpy())
    lines = sorted((p.name, p.stat().st_size, sha(p)) for p in out.iterdir())
    assert src.sha256 == hashlib.sha256(
        "".join(f"{n}\t{s}\t{h}\n" for n, s, h in lines).encode()).hexdigest()
    assert reader.checksums() == [src.sha256]

    reader = open_source(out, layer=-1)  # ESM's -1: the highest layer present
    batches = list(reader.batches())
    assert {b.layer for b in batches} == {6} and reader.layers == [6]

    got, reader = read_all([out], layer=[5], level="local")
    assert reader.level == "local"
    for a, obj in objs.items():
        np.testing.assert_array_equal(got[(a, 5)], obj["representations"][5].float().numpy())
    assert "layer 7 not in the file" in refused("layer 7", [out], layer=7)


def test_esm_per_residue_only_refused_as_global(tmp_path):
    p = tmp_path / "x.pt"
    write_esm(p, "P69905", 5, [6], include=("per_tok",))
    msg = refused("per-residue", [p], level="global")
    assert str(p) in msg
    got, reader = read_all([p])  # auto: per-residue only -> local
    assert reader.level == "local" and got[("P69905", 6)].shape == (5, D)


# -- NumPy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True])
def test_npz_autodetect_and_key(tmp_path, compressed):
    path = tmp_path / "emb.npz"
    m = vecs(len(ACCS))
    save = np.savez_compressed if compressed else np.savez
    save(path, X=m, accs=np.array(ACCS), lengths=np.arange(len(ACCS)))
    assert detect_format(path) == "npz"
    got, reader = read_all([path])
    assert reader.sources[0].ids_from == "npz array 'accs'" and reader.dtype == "float16"
    for a, v in zip(ACCS, m):
        np.testing.assert_array_equal(got[(a, None)], v.astype(np.float32))
    save(path, a=m, b=m[::-1].copy(), ids=np.array(ACCS))
    refused("several candidate", [path])
    got, _ = read_all([path], key="b", id_column="ids")
    np.testing.assert_array_equal(got[(ACCS[0], None)], m[-1].astype(np.float32))


def test_npy_with_companion_ids(tmp_path):
    path = tmp_path / "emb.npy"
    m = vecs(len(ACCS), dtype=np.float32)
    np.save(path, m)
    assert detect_format(path) == "npy"
    refused("no id file", [path])
    (tmp_path / "emb.ids.txt").write_text(
        "\n".join(f">sp|{a}|N desc" for a in ACCS) + "\n")
    got, reader = read_all([path])
    assert reader.sources[0].ids_from == "id file emb.ids.txt"
    for a, v in zip(ACCS, m):
        np.testing.assert_array_equal(got[(a, None)], v)
    (tmp_path / "emb.ids.txt").write_text("\n".join(ACCS[:-1]) + "\n")
    refused("5 ids for 6 embedding rows", [path])


# -- Parquet ----------------------------------------------------------------------------------

def test_parquet_list_and_layer_column(tmp_path):
    path = tmp_path / "emb.parquet"
    m = vecs(4, dtype=np.float32)
    pq.write_table(pa.table({"id": ACCS[:2] * 2, "layer": [3, 3, 7, 7],
                             "embedding": pa.array(list(m), type=pa.list_(pa.float32()))}),
                   path, row_group_size=3)
    assert detect_format(path) == "parquet"
    got, reader = read_all([path])
    assert reader.layers == [3, 7] and reader.n_items == 4
    np.testing.assert_array_equal(got[(ACCS[1], 7)], m[3])
    got, reader = read_all([path], layer=-1)
    assert set(got) == {(ACCS[0], 7), (ACCS[1], 7)}


def test_parquet_fixed_size_half(tmp_path):
    path = tmp_path / "h.parquet"
    m = vecs(3)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1), type=pa.float16()), D)
    pq.write_table(pa.table({"accession": ACCS[:3], "vec": emb}), path)
    got, reader = read_all([path])
    assert reader.dtype == "float16"
    for a, v in zip(ACCS, m):
        np.testing.assert_array_equal(got[(a, None)], v.astype(np.float32))


# -- refusals ---------------------------------------------------------------------------------

def test_nan_inf_refused_naming_file_and_protein(tmp_path):
    m = vecs(4)
    m[2, 3] = np.nan
    h5 = tmp_path / "nan.h5"
    write_uniprot_h5(h5, ACCS[:4], m)
    msg = refused("NaN or infinite", [h5])
    assert str(h5) in msg and ACCS[2] in msg
    m2 = vecs(4, dtype=np.float32)
    m2[1, 0] = np.inf
    npz = tmp_path / "inf.npz"
    np.savez(npz, embeddings=m2, ids=np.array(ACCS[:4]))
    msg = refused("NaN or infinite", [npz])
    assert str(npz) in msg and ACCS[1] in msg


def test_dimension_mismatch(tmp_path):
    p = tmp_path / "dims.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("A1", data=vecs(1)[0])
        f.create_dataset("B2", data=vecs(1, d=D + 1)[0])
    msg = refused("dimension 17", [p])
    assert "B2" in msg and str(p) in msg
    q = tmp_path / "other.h5"
    write_uniprot_h5(q, ["C3"], vecs(1, d=8))
    a = tmp_path / "a.h5"
    write_uniprot_h5(a, ["A1"], vecs(1))
    refused("dimension 8 differs from 16", [a, q])


def test_duplicates_within_and_across_files(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_uniprot_h5(a, ACCS[:3], vecs(3))
    write_uniprot_h5(b, ["sp|Q0|X", ACCS[1]], vecs(2))
    msg = refused("duplicate", [a, b])
    assert f"already read from {a}" in msg and ACCS[1] in msg and str(b) in msg
    # within one file: two headers that name the same accession
    c = tmp_path / "c.h5"
    write_uniprot_h5(c, ["P69905", "sp|P69905|HBA_HUMAN"], vecs(2))
    msg = refused("appears twice in this input", [c])
    assert "P69905" in msg
    pqp = tmp_path / "d.parquet"
    pq.write_table(pa.table({"accession": ["X1", "X2", "X1"],
                             "embedding": pa.array(list(vecs(3, dtype=np.float32)))}), pqp)
    assert "X1" in refused("duplicate", [pqp])


def test_small_files_coalesced(tmp_path):
    """Batches span files: 5 files of 3 proteins give full batches, not 5 small ones."""
    paths, expect = [], {}
    for f in range(5):
        ids = [f"F{f}P{i}" for i in range(3)]
        m = vecs(3)
        paths.append(tmp_path / f"f{f}.h5")
        write_uniprot_h5(paths[-1], ids, m)
        expect.update({i: v.astype(np.float32) for i, v in zip(ids, m)})
    reader = open_source(paths)
    batches = list(reader.batches(batch_rows=4))
    assert [len(b) for b in batches] == [4, 4, 4, 3]
    got = {i: v for b in batches for i, v in zip(b.ids, b.vectors)}
    assert got.keys() == expect.keys()
    for i, v in expect.items():
        np.testing.assert_array_equal(got[i], v)
    assert all(s.sha256 == sha(s.path) for s in reader.sources)


def test_esm_file_list(tmp_path):
    files = []
    for a in ACCS[:3]:
        files.append(tmp_path / f"{a}.pt")
        write_esm(files[-1], a, 3, [33], include=("mean",))
    batches = list(open_source(files).batches(batch_rows=8))
    assert len(batches) == 1 and batches[0].ids == ACCS[:3] and batches[0].layer == 33


def test_seen_ids_many_batches():
    seen = SeenIds()
    for k in range(300):
        assert seen.add([f"P{k}_{i}" for i in range(7)], None, k) is None
    assert len(seen) == 2100
    assert seen.add(["new", "P123_4"], None, 999) == (1, 123)
    assert seen.add(["P123_4"], 5, 999) is None  # another layer is another key


def test_broken_files(tmp_path):
    good = tmp_path / "good.h5"
    write_uniprot_h5(good, [f"P{i:05d}" for i in range(200)], vecs(200, d=256))
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    msg = refused("truncated|corrupt", [trunc])
    assert str(trunc) in msg
    fake = tmp_path / "fake.h5"
    fake.write_text("accession\tvalue\n")
    assert str(fake) in refused("not a valid h5 file", [fake])
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert str(empty) in refused("empty file", [empty])
    nodata = tmp_path / "nodata.h5"
    h5py.File(nodata, "w").close()
    assert str(nodata) in refused("no datasets", [nodata])
    npz = tmp_path / "t.npz"
    np.savez(npz, embeddings=vecs(50, d=64), ids=np.array([f"P{i}" for i in range(50)]))
    (tmp_path / "t2.npz").write_bytes(npz.read_bytes()[:-200])
    assert "t2.npz" in refused("corrupt or truncated", [tmp_path / "t2.npz"])
    pqf = tmp_path / "t.parquet"
    pq.write_table(pa.table({"accession": ["A"], "embedding": [[1.0, 2.0]]}), pqf)
    (tmp_path / "t2.parquet").write_bytes(pqf.read_bytes()[:-30])
    assert "t2.parquet" in refused("not a readable Parquet", [tmp_path / "t2.parquet"])
    pt = tmp_path / "bad.pt"
    pt.write_bytes(b"\x80\x02junk")
    assert str(pt) in refused("not a readable torch", [pt])
    refused("no layers|carry no layer", [good], layer=3)
    refused("id column option applies", [good], id_column="name")


# -- export round trip ------------------------------------------------------------------------

def test_export_round_trip(tmp_path):
    src = tmp_path / "in.h5"
    ids = [f"P{i:05d}" for i in range(37)]
    m = vecs(37)
    write_uniprot_h5(src, ids, m)
    batches = list(open_source(src).batches(batch_rows=10))
    ids_in = [i for b in batches for i in b.ids]
    mat = np.concatenate([b.vectors for b in batches])

    h5 = tmp_path / "out" / "export.h5"
    assert write_h5(h5, ids_in, (b.vectors for b in batches)) == 37
    with h5py.File(h5, "r") as f:  # UniProt layout, h5py alone
        assert f["P00003"].dtype == np.float32 and f["P00003"].shape == (D,)
        np.testing.assert_array_equal(f["P00003"][()], m[3].astype(np.float32))
    npz = tmp_path / "export.npz"
    write_npz(npz, ids_in, (b.vectors for b in batches))
    with np.load(npz) as z:  # NumPy alone
        assert z["ids"].tolist() == ids_in
        np.testing.assert_array_equal(z["embeddings"], mat)
    pqf = tmp_path / "export.parquet"
    write_parquet(pqf, batches)
    t = pq.read_table(pqf)  # pyarrow alone
    assert "BYTE_STREAM_SPLIT" in pq.ParquetFile(pqf).metadata.row_group(0).column(2).encodings
    assert t.schema.field("embedding").type == pa.list_(pa.float32(), D)
    assert t.column("accession").to_pylist() == ids_in

    for path in (h5, npz, pqf):
        got, _ = read_all([path])
        assert sorted(got) == sorted((i, None) for i in ids_in)
        for i, v in zip(ids_in, mat):
            np.testing.assert_array_equal(got[(i, None)], v)
    assert not [p for p in tmp_path.rglob(".*tmp")]

    # a failing export leaves no file behind
    bad = tmp_path / "bad.h5"
    with pytest.raises(InputError, match="more vectors than ids"):
        write_h5(bad, ids_in[:3], mat)
    assert not bad.exists() and not list(tmp_path.glob(".bad.h5*"))


def test_checksums_without_streaming(tmp_path):
    a = tmp_path / "a.npz"
    np.savez(a, embeddings=vecs(3, dtype=np.float32), ids=np.array(ACCS[:3]))
    reader = open_source([a])
    assert reader.sources[0].sha256 is None
    assert reader.checksums() == [sha(a)]
    shutil.copy(a, tmp_path / "b.npz")
    os.utime(tmp_path / "b.npz")
    assert "already read from" in refused("duplicate", [a, tmp_path / "b.npz"])


def test_recorded_layer_and_origin(tmp_path):
    """A layer written by the exporters comes back on Source and batches; each item knows its
    input path even when small files are coalesced into one batch."""
    from protiso.interchange import write_h5_batches, write_npz_batches
    m = vecs(4, dtype=np.float32)
    h5, npz = tmp_path / "a.h5", tmp_path / "b.npz"
    assert write_h5_batches(h5, [(ACCS[:2], m[:2]), (ACCS[2:4], m[2:4])], layer=7) == 4
    assert write_npz_batches(npz, [(ACCS[4:6], m[:2])], n=2, layer=7) == 2
    with h5py.File(h5, "r") as f:
        assert f.attrs["layer"] == 7
    for path in (h5, npz):
        reader = open_source(path)
        assert reader.sources[0].layers == [7]
        assert {b.layer for b in reader.batches()} == {7}
    c = tmp_path / "c.h5"
    write_h5(c, ACCS[4:6], m[:2], layer=7)
    reader = open_source([h5, c])
    (batch,) = list(reader.batches(batch_rows=100))  # two files, one layer: coalesced
    assert batch.layer == 7 and [reader.path_of(batch, i) for i in range(6)] == [h5] * 4 + [c] * 2
    with pytest.raises(InputError, match="batch of 1 ids with 2 vectors"):
        write_npz_batches(tmp_path / "d.npz", [(ACCS[:1], m[:2])], n=2)
    with pytest.raises(InputError, match="more ids than vectors"):
        write_npz_batches(tmp_path / "d.npz", [(ACCS[:1], m[:1])], n=2)
    assert not (tmp_path / "d.npz").exists()
