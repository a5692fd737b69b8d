"""`protiso import` / `protiso export` (issue 14): embedding files written here by h5py, torch and
NumPy (random vectors for the bundled sample's accessions, real layouts) become runs whose stored
vectors equal the written ones exactly, whose isotropy equals the reference IsoScore package, and
which work wherever a run does; bad input is refused naming file and protein with the store
unchanged; an export imported again gives identical rows."""
from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from IsoScore import IsoScore as IsoScoreRef  # the reference package (PyPI IsoScore), test dependency

from protiso.errors import InputError
from protiso.interchange import importer
from protiso.interchange.exporter import export_run
from protiso.interchange.importer import import_embeddings, import_run_id
from protiso.isotropy.engine import isotropy
from protiso.isotropy.stats import SufficientStats
from protiso.runs import get_run, load_embeddings, load_local_stats

D = 16
F32 = 2e-6      # the isotropy engine's float32 streaming tolerance (tests/test_isotropy_engine.py)


def proteins(store, where="true", limit=100_000):
    """[(accession, sequence)] of the store, in accession order."""
    return store.execute(f"SELECT accession, sequence FROM proteins WHERE {where} ORDER BY accession "
                         f"LIMIT {int(limit)}").fetchall()


def rows(store, run_id, layer=None):
    """{(accession, layer): float32 vector} of a run (one layer or all)."""
    run = get_run(store, run_id)
    out = {}
    for la in ([layer] if layer is not None else run.layers):
        accs, X = load_embeddings(store, run_id, la)
        out.update({(a, la): x for a, x in zip(accs, X)})
    return out


def snapshot(store):
    """Catalog rows an import writes and every file under data/ with its SHA-256."""
    tables = {t: store.sql(f"SELECT * FROM {t} ORDER BY ALL").to_pylist()
              for t in ("runs", "run_proteins", "parts", "local_stats")}
    files = {str(f.relative_to(store.root)): hashlib.sha256(f.read_bytes()).hexdigest()
             for f in sorted((store.root / "data").rglob("*")) if f.is_file()}
    dirs = sorted(str(d.relative_to(store.root)) for d in store.root.rglob("*") if d.is_dir())
    return tables, files, dirs


def write_h5(path, ids, matrix, attrs=None):
    """UniProt per-protein layout with h5py: one dataset per id at the root."""
    with h5py.File(path, "w") as f:
        for i, v in zip(ids, matrix):
            f.create_dataset(i, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def write_esm_dir(folder, prots, layers, rng, per_tok=True):
    """ESM extract.py output with torch.save: one <label>.pt per protein, FASTA header labels."""
    folder.mkdir()
    reps = {}
    for acc, seq in prots:
        label = f"sp|{acc}|{acc}_TEST Test protein OS=Homo sapiens"
        r = {la: torch.from_numpy(rng.standard_normal((len(seq), D)).astype(np.float32)) for la in layers}
        obj = {"label": label, "mean_representations": {la: t.mean(0) for la, t in r.items()}}
        if per_tok:
            obj["representations"] = r
        torch.save(obj, folder / f"{acc}.pt")
        reps[acc] = obj
    return reps


# -- formats: exact vectors -------------------------------------------------------------------

def test_uniprot_h5_float16_imports_exactly_with_provenance(sample_store, tmp_path):
    accs = [a for a, _ in proteins(sample_store, limit=700)]
    X = np.random.default_rng(0).standard_normal((len(accs), D)).astype(np.float16)
    path = write_h5(tmp_path / "per-protein.h5", accs, X)
    run = import_embeddings(sample_store, [path], name="UniProt ProtT5", model_id="Rostlab/prot_t5_xl_uniref50")
    assert run.run_id == import_run_id("UniProt ProtT5") and run.run_id.startswith("uniprot-prott5-")
    assert (run.family, run.model, run.model_id, run.dim, run.layers, run.dtype, run.status, run.n_done) == (
        "imported", "UniProt ProtT5", "Rostlab/prot_t5_xl_uniref50", D, [-1], "float16", "done", len(accs))
    got = rows(sample_store, run.run_id)
    assert set(got) == {(a, -1) for a in accs}
    for a, x in zip(accs, X):
        assert np.array_equal(got[(a, -1)], x.astype(np.float32))        # float16 widened exactly
    src = run.details["sources"][0]
    assert src["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (src["path"], src["size_bytes"], src["format"], src["dtype"], src["dim"]) == (
        str(path.resolve()), path.stat().st_size, "h5", "float16", D)
    assert run.details["model_id"] == "Rostlab/prot_t5_xl_uniref50" and run.details["skipped_unknown"] == 0
    statuses = sample_store.sql(f"SELECT accession, status, length FROM run_proteins WHERE run_id = '{run.run_id}' "
                                "ORDER BY accession").to_pylist()
    lengths = dict(sample_store.execute("SELECT accession, length FROM proteins").fetchall())
    assert statuses == [{"accession": a, "status": "done", "length": lengths[a]} for a in sorted(accs)]
    # every layer-less command default finds it: -1 is "the last layer"
    assert sample_store.scalar(f"SELECT count(*) FROM embeddings_{run.run_id.replace('-', '_')}") == len(accs)
    with pytest.raises(InputError, match="exists already"):
        import_embeddings(sample_store, [path], name="UniProt ProtT5")


def test_isotropy_of_imported_run_equals_reference(sample_store, tmp_path, torch64):
    prots = proteins(sample_store)
    accs = [a for a, _ in prots]
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((len(accs), D)) @ rng.standard_normal((D, D)) + 1.5).astype(np.float16)
    path = write_h5(tmp_path / "emb.h5", accs, X)
    run = import_embeddings(sample_store, [path], name="iso")
    ref = float(IsoScoreRef.IsoScore(X.astype(np.float64)))
    _, Y = load_embeddings(sample_store, run.run_id)       # the stored matrix: the same numbers
    assert float(IsoScoreRef.IsoScore(Y.astype(np.float64))) == pytest.approx(ref, rel=1e-12)
    res = isotropy(sample_store, run.run_id, save=False)
    assert len(res) == 1 and res[0].metrics.n == len(accs)
    # the engine streams float32 products into float64 sums: F32 of tests/test_isotropy_engine.py
    assert res[0].metrics.isoscore == pytest.approx(ref, rel=F32)
    # a --where subset is the reference on the same rows
    short = {a for (a,) in sample_store.execute("SELECT accession FROM proteins WHERE length < 200").fetchall()}
    sub = X[[a in short for a in accs]].astype(np.float64)
    res = isotropy(sample_store, run.run_id, where="length < 200", save=False)
    assert res[0].metrics.n == len(sub)
    assert res[0].metrics.isoscore == pytest.approx(float(IsoScoreRef.IsoScore(sub)), rel=F32)


def test_bio_embeddings_md5_keys_with_original_id(sample_store, tmp_path):
    prots = proteins(sample_store, limit=50)
    X = np.random.default_rng(2).standard_normal((len(prots), D)).astype(np.float32)
    path = tmp_path / "reduced_embeddings_file.h5"
    with h5py.File(path, "w") as f:                       # bio_embeddings: keys are MD5(sequence)
        for (acc, seq), v in zip(prots, X):
            ds = f.create_dataset(hashlib.md5(seq.encode()).hexdigest(), data=v)
            ds.attrs["original_id"] = f"sp|{acc}|{acc}_TEST desc OS=x"
    run = import_embeddings(sample_store, path, name="bio")
    got = rows(sample_store, run.run_id)
    for (acc, _), v in zip(prots, X):
        assert np.array_equal(got[(acc, -1)], v)
    assert run.details["sources"][0]["ids_from"] == "original_id attribute"


def test_esm_pt_layers_global_exact(sample_store, tmp_path):
    prots = proteins(sample_store, "length < 120", limit=40)
    reps = write_esm_dir(tmp_path / "esm", prots, [0, 3, 6], np.random.default_rng(3), per_tok=False)
    run = import_embeddings(sample_store, tmp_path / "esm", name="esm", model_id="facebook/esm2_t6_8M_UR50D")
    assert run.layers == [0, 3, 6] and run.n_done == len(prots) and run.details["sources"][0]["files"] == len(prots)
    got = rows(sample_store, run.run_id)
    assert len(got) == 3 * len(prots)
    for acc, obj in reps.items():
        for la in (0, 3, 6):
            assert np.array_equal(got[(acc, la)], obj["mean_representations"][la].numpy())
    one = import_embeddings(sample_store, tmp_path / "esm", name="esm-last", layer=-1)   # ESM's -1: highest
    assert one.layers == [6] and len(rows(sample_store, one.run_id)) == len(prots)


def test_per_residue_gives_local_statistics_and_vectors(sample_store, tmp_path, torch64):
    prots = proteins(sample_store, "length < 150", limit=30)
    reps = write_esm_dir(tmp_path / "esm", prots, [5, 6], np.random.default_rng(4))
    run = import_embeddings(sample_store, tmp_path / "esm", name="esm-local", level="local", layer=[6],
                            store_local=True)
    assert (run.layers, run.local_stats, run.pooling, run.n_done) == ([6], True, "mean", len(prots))
    assert run.n_residues == sum(len(s) for _, s in prots)
    got = rows(sample_store, run.run_id)
    for acc, obj in reps.items():   # global vector = mean over residues, as embed pools
        R = obj["representations"][6].numpy()
        assert np.array_equal(got[(acc, 6)], R.mean(axis=0, dtype=np.float64).astype(np.float32))
    # per-residue-type statistics from the stored sequences, against a direct computation
    by_aa: dict[str, list] = {}
    for acc, seq in prots:
        R = reps[acc]["representations"][6].numpy().astype(np.float64)
        for c, r in zip(seq, R):
            by_aa.setdefault(c, []).append(r)
    stats = load_local_stats(sample_store, run.run_id, 6)
    assert set(stats) == set(by_aa)
    for aa, vs in by_aa.items():
        ref = SufficientStats.from_matrix(np.array(vs))
        assert stats[aa].n == ref.n
        np.testing.assert_allclose(stats[aa].sum_outer, ref.sum_outer, rtol=1e-12, atol=1e-12)
    res = {r.group_key: r for r in isotropy(sample_store, run.run_id, level="local", save=False)}
    L = np.array(by_aa["L"])
    assert res["L"].metrics.n == len(L)
    assert res["L"].metrics.isoscore == pytest.approx(float(IsoScoreRef.IsoScore(L)), rel=2e-6)  # stored vectors are float32: the pass multiplies centred float32 blocks (stated bound 2e-6 relative)
    # stored residue vectors, the layout embed --store-local writes
    acc, seq = prots[0]
    local = sample_store.sql("SELECT position, residue, embedding FROM local_embeddings WHERE run_id = $r AND "
                             "accession = $a ORDER BY position", {"r": run.run_id, "a": acc}).to_pylist()
    assert "".join(r["residue"] for r in local) == seq
    assert np.array_equal(np.array([r["embedding"] for r in local], np.float32),
                          reps[acc]["representations"][6].numpy())
    # per-residue HDF5 (ProtTrans layout): same path
    h5 = write_h5(tmp_path / "per-residue.h5", [a for a, _ in prots],
                  [reps[a]["representations"][5].numpy().astype(np.float16) for a, _ in prots])
    run2 = import_embeddings(sample_store, h5, name="h5-local")
    assert run2.local_stats and set(load_local_stats(sample_store, run2.run_id)) == set(by_aa)


def test_npz_npy_parquet_import_exactly(sample_store, tmp_path):
    prots = proteins(sample_store, limit=80)
    accs = [a for a, _ in prots]
    X = np.random.default_rng(5).standard_normal((len(accs), D)).astype(np.float32)
    np.savez(tmp_path / "e.npz", embeddings=X, ids=np.array(accs))
    np.save(tmp_path / "m.npy", X.astype(np.float16))
    (tmp_path / "m.ids.txt").write_text("\n".join(accs) + "\n")
    pq.write_table(pa.table({"accession": accs, "embedding": pa.array(list(X), pa.list_(pa.float32()))}),
                   tmp_path / "e.parquet")
    for name, path, want in (("npz", "e.npz", X), ("npy", "m.npy", X.astype(np.float16).astype(np.float32)),
                             ("pq", "e.parquet", X)):
        run = import_embeddings(sample_store, tmp_path / path, name=name, layer=12)   # layer declared
        assert run.layers == [12]
        got = rows(sample_store, run.run_id)
        assert all(np.array_equal(got[(a, 12)], x) for a, x in zip(accs, want)), name


# -- export: the same rows back -----------------------------------------------------------------

def test_export_reimport_identical_rows(sample_store, tmp_path):
    prots = proteins(sample_store, "length < 200", limit=60)
    write_esm_dir(tmp_path / "esm", prots, [2, 4], np.random.default_rng(6), per_tok=False)
    run = import_embeddings(sample_store, tmp_path / "esm", name="src")
    want = rows(sample_store, run.run_id)
    for fmt in ("h5", "npz", "parquet"):
        out = tmp_path / "out" / f"x.{fmt}"
        info = export_run(sample_store, run.run_id, out, layer=2)
        assert (info["format"], info["layers"], info["n_vectors"]) == (fmt, [2], len(prots))
        back = import_embeddings(sample_store, out, name=f"back-{fmt}")
        assert back.layers == [2]
        got = rows(sample_store, back.run_id)
        assert got.keys() == {k for k in want if k[1] == 2}
        assert all(np.array_equal(got[k], want[k]) for k in got), fmt
    # each readable by its own library alone
    with h5py.File(tmp_path / "out" / "x.h5", "r") as f:
        acc = prots[0][0]
        assert f.attrs["layer"] == 2 and f[acc].dtype == np.float32 and np.array_equal(f[acc][()], want[(acc, 2)])
    with np.load(tmp_path / "out" / "x.npz") as z:
        i = z["ids"].tolist().index(acc)
        assert int(z["layer"]) == 2 and np.array_equal(z["embeddings"][i], want[(acc, 2)])
    # all layers as Parquet, with --where
    out = tmp_path / "all.parquet"
    info = export_run(sample_store, run.run_id, out, layer="all", where="length < 100")
    t = pq.read_table(out)
    short = {a for a, s in prots if len(s) < 100}
    assert info["n_vectors"] == 2 * len(short) == t.num_rows and set(t.column("layer").to_pylist()) == {2, 4}
    back = import_embeddings(sample_store, out, name="back-all")
    got = rows(sample_store, back.run_id)
    assert got.keys() == {k for k in want if k[0] in short}
    assert all(np.array_equal(got[k], want[k]) for k in got)
    with pytest.raises(InputError, match="one layer per file"):
        export_run(sample_store, run.run_id, tmp_path / "all.h5", layer="all")
    with pytest.raises(InputError, match="nothing to export"):
        export_run(sample_store, run.run_id, tmp_path / "none.npz", where="length < 0")
    assert not (tmp_path / "none.npz").exists()


# -- bad input: refused, store unchanged ---------------------------------------------------------

def _bad_case(case, tmp_path, prots):
    """(paths, options, text the error must contain)."""
    accs = [a for a, _ in prots]
    X = np.random.default_rng(7).standard_normal((len(accs), D)).astype(np.float32)
    p = tmp_path / "bad.h5"
    late = accs[-1]       # the last protein in name order: parts of earlier batches are written first
    if case in ("nan", "inf"):
        X[-1, 3] = np.nan if case == "nan" else np.inf
        return [write_h5(p, accs, X)], {}, ["NaN or infinite", f"protein {late}"]
    if case == "dimension":
        with h5py.File(p, "w") as f:
            for a, v in zip(accs, X):
                f.create_dataset(a, data=v if a != late else np.zeros(D + 1, np.float32))
        return [p], {}, ["dimension", f"protein {late}"]
    if case == "duplicate":
        with h5py.File(p, "w") as f:
            for a, v in zip(accs, X):
                f.create_dataset(a, data=v)
            f.create_dataset(f"sp|{accs[0]}|X_HUMAN", data=X[0])   # the same protein under another key
        return [p], {}, ["duplicate", f"protein {accs[0]}"]
    if case == "duplicate-files":   # the first repeat in the second file's (name) order is named
        q = tmp_path / "more.h5"
        return [write_h5(p, accs, X), write_h5(q, accs[-2:], X[-2:])], {}, [
            "duplicate", f"protein {min(accs[-2:])}", "already read from"]
    if case == "duplicate-layer":     # a row without a layer is recorded at -1, where the protein already is
        p = tmp_path / "bad.parquet"
        pq.write_table(pa.table({"accession": accs + [accs[0]], "layer": pa.array([-1] * len(accs) + [None],
                                                                                  pa.int32()),
                                 "embedding": pa.array(list(X) + [X[0]], pa.list_(pa.float32()))}), p)
        return [p], {}, ["duplicate (layer -1)", f"protein {accs[0]}"]
    if case == "truncated":
        write_h5(tmp_path / "full.h5", accs, X)
        data = (tmp_path / "full.h5").read_bytes()
        p.write_bytes(data[:len(data) // 2])
        return [p], {}, ["truncated"]
    if case == "not-hdf5":
        p.write_text("accession\tvalue\nP1\t0.5\n")
        return [p], {}, ["not a valid h5 file"]
    if case == "empty":
        p.write_bytes(b"")
        return [p], {}, ["empty file"]
    if case == "unknown":
        return [write_h5(p, accs[:-3] + ["NOPE1", "NOPE2", "NOPE3"], X)], {}, [
            "3 of the", "not in the store", "NOPE1, NOPE2, NOPE3"]
    if case == "length":
        long = next(i for i, (_, s) in enumerate(prots) if len(s) > 3)
        with h5py.File(p, "w") as f:
            for i, (a, s) in enumerate(prots):
                f.create_dataset(a, data=np.ones((len(s) - (1 if i == long else 0), D), np.float16))
        return [p], {}, [f"protein {accs[long]}", f"{len(prots[long][1]) - 1} residue vectors",
                         f"stored sequence has {len(prots[long][1])} residues"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["nan", "inf", "dimension", "duplicate", "duplicate-files", "duplicate-layer",
                                  "truncated",
                                  "not-hdf5", "empty", "unknown", "length"])
def test_bad_input_refused_store_unchanged(sample_store, tmp_path, monkeypatch, case):
    monkeypatch.setattr(importer, "PART_BYTES", 256 * 4 * D)      # 256 vectors per part: several parts
    prots = proteins(sample_store, "length < 60" if case == "length" else "true",
                     limit=40 if case == "length" else 700)
    paths, opts, needles = _bad_case(case, tmp_path, prots)
    before = snapshot(sample_store)
    with pytest.raises(InputError) as info:
        import_embeddings(sample_store, paths, name="bad", **opts)
    msg = str(info.value)
    assert "\n" not in msg and str(paths[-1] if case == "duplicate-files" else paths[0]) in msg, msg
    for needle in needles:
        assert needle in msg, msg
    assert snapshot(sample_store) == before


def test_unknown_accessions_skipped_and_counted(sample_store, tmp_path):
    accs = [a for a, _ in proteins(sample_store, limit=30)]
    X = np.random.default_rng(8).standard_normal((33, D)).astype(np.float32)
    path = write_h5(tmp_path / "e.h5", accs + ["ZZZ1", "ZZZ2", "ZZZ3"], X)
    run = import_embeddings(sample_store, path, name="skip", unknown="skip")
    assert run.n_done == 30 and run.details["skipped_unknown"] == 3
    assert run.details["skipped_examples"] == ["ZZZ1", "ZZZ2", "ZZZ3"]
    only = write_h5(tmp_path / "none.h5", ["ZZZ1"], X[:1])
    with pytest.raises(InputError, match="none of them in the store"):
        import_embeddings(sample_store, only, name="nothing", unknown="skip")


def test_recorded_layer_must_match_declared(sample_store, tmp_path):
    accs = [a for a, _ in proteins(sample_store, limit=5)]
    path = write_h5(tmp_path / "e.h5", accs, np.ones((5, D), np.float32), attrs={"layer": np.int64(7)})
    with pytest.raises(InputError, match="records layer 7, not 3"):
        import_embeddings(sample_store, path, name="x", layer=3)
    assert import_embeddings(sample_store, path, name="x").layers == [7]


# -- CLI: import, export, and the imported run everywhere a run works ------------------------------

def test_cli_import_export_and_every_command(sample_store, tmp_path, invoke):
    prots = proteins(sample_store)
    accs = [a for a, _ in prots]
    rng = np.random.default_rng(9)
    X = (rng.standard_normal((len(accs), D)) @ rng.standard_normal((D, D))).astype(np.float16)
    path = write_h5(tmp_path / "per-protein.h5", accs, X)
    root = sample_store.root
    sample_store.close()
    r = invoke("--store", root, "import", path, "--name", "uni", "--model-id", "Rostlab/prot_t5_xl_uniref50",
               "--json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)[0]
    rid = row["run_id"]
    assert (row["family"], row["n_done"], row["layers"], row["model_id"]) == (
        "imported", len(accs), [-1], "Rostlab/prot_t5_xl_uniref50")
    assert row["sources"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    r = invoke("--store", root, "import", path, "--name", "uni")
    assert r.exit_code == 1 and "exists already" in r.output and "\n" == r.output[-1] and r.output.count("\n") == 1
    r = invoke("--store", root, "isotropy", "--model", "uni", "--where", "length < 300", "--group-by",
               "length < 150", "--json")
    assert r.exit_code == 0, r.output
    assert sum(g["n"] for g in json.loads(r.output)) == sum(1 for _, s in prots if len(s) < 300)
    for args in (["index", "build", "--model", rid], ["neighbors", accs[0], "--model", rid, "-k", "3"],
                 ["transform", "apply", "--model", rid, "--kind", "center"],
                 ["pairs", "sample", "--name", "ps", "--proteins", "12", "--where", "length < 150"],
                 ["pairs", "align", "ps"], ["pairs", "distances", "ps", "--model", rid],
                 ["correlate", "ps", "--model", rid]):
        r = invoke("--store", root, *args)
        assert r.exit_code == 0, (args, r.output)
    r = invoke("--store", root, "report", "--out", tmp_path / "report")
    assert r.exit_code == 0, r.output
    assert rid in (tmp_path / "report" / "report.html").read_text()
    out = tmp_path / "exp.h5"
    r = invoke("--store", root, "export", "--model", "uni", "--output", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["n_vectors"] == len(accs)
    with h5py.File(out, "r") as f:
        assert np.array_equal(f[accs[5]][()], X[5].astype(np.float32))
    r = invoke("--store", root, "import", out, "--name", "uni-again")
    assert r.exit_code == 0, r.output
    r = invoke("--store", root, "export", "--model", "uni", "--output", root / "inside.npz")
    assert r.exit_code == 1 and "inside the store" in r.output
    r = invoke("--store", root, "import", path, "--name", "z", "--unknown", "maybe")
    assert r.exit_code == 2


def test_cli_import_creates_store_and_removes_it_on_failure(tmp_path, invoke):
    bad = write_h5(tmp_path / "e.h5", ["P69905"], np.ones((1, D), np.float32))
    root = tmp_path / "new-store"
    r = invoke("--store", root, "import", bad, "--name", "x")
    assert r.exit_code == 1 and "not in the store" in r.output
    assert not root.exists()
