"""ProteinBERT in PyTorch against the authors' Keras package (outputs recorded in
tests/data/proteinbert by make_fixture.py; TensorFlow is not needed here)."""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from protiso.errors import InputError, NotFoundError
from protiso.models import proteinbert as pb
from protiso.models.base import LoadOptions

DATA = Path(__file__).parent / "data" / "proteinbert"
META = json.loads((DATA / "meta.json").read_text())
KERAS = np.load(DATA / "keras_outputs.npz")
TOL = 1e-4


def read_fasta(path: Path) -> dict[str, str]:
    out, name = {}, None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:]
            out[name] = ""
        elif line.strip():
            out[name] += line.strip()
    return out


SEQS = read_fasta(DATA / "sequences.fasta")


def network(name: str):
    kw = META["configs"][name]["create_model_kwargs"]
    return pb.load_network(DATA / f"{name}.pkl", kw["wide_conv_dilation_rate"], kw["activation"])


def adapter(name: str, track: str, **kw) -> pb.ProteinBertAdapter:
    """The fixture model as an adapter; bucketed by default, as the Keras outputs were made."""
    cfg = META["configs"][name]
    mk = cfg["create_model_kwargs"]
    kw.setdefault("length_mode", "bucketed")
    return pb.ProteinBertAdapter(DATA / f"{name}.pkl", track=track, start_seq_len=cfg["start_seq_len"],
                                 wide_conv_dilation_rate=mk["wide_conv_dilation_rate"],
                                 activation=mk["activation"], **kw)


def keras_layer(name: str, acc: str, side: str, layer: str) -> np.ndarray:
    """One layer's slice of the package's concatenated hidden outputs."""
    cfg = META["configs"][name]
    names = cfg["seq_layers" if side == "seq" else "global_layers"]
    mk = cfg["create_model_kwargs"]
    width = {"output-seq": pb.N_TOKENS, "output-annotations": cfg["n_annotations"]}
    d = mk["d_hidden_seq"] if side == "seq" else mk["d_hidden_global"]
    start = sum(width.get(n, d) for n in names[:names.index(layer)])
    return KERAS[f"{name}/{acc}/{side}"][..., start:start + width.get(layer, d)]


@pytest.mark.parametrize("name", sorted(META["configs"]))
def test_network_matches_keras(name):
    """Every hidden layer the package's get_model_with_hidden_layers_as_outputs concatenates
    (all LayerNorm outputs, dense-global-input, both output heads), at every position."""
    cfg = META["configs"][name]
    net = network(name)
    assert [n for n, _ in pb.keras_weight_names(net.config)] == cfg["weight_names"]
    assert {k: v for k, v in net.config.to_dict().items() if k in cfg["create_model_kwargs"]} \
        == cfg["create_model_kwargs"]
    for acc in cfg["accessions"]:
        tokens = pb.encode([SEQS[acc]], cfg["seq_len_by_accession"][acc])
        np.testing.assert_array_equal(tokens[0], KERAS[f"{name}/{acc}/tokens"])
        with torch.no_grad():
            out = net(torch.from_numpy(tokens), heads=True)
        np.testing.assert_allclose(out["seq_all"][0].numpy(), KERAS[f"{name}/{acc}/seq"], atol=TOL, rtol=0)
        np.testing.assert_allclose(out["global_all"][0].numpy(), KERAS[f"{name}/{acc}/global"], atol=TOL, rtol=0)


def test_published_layout():
    """The published configuration (defaults) has the Keras model's weight names and shapes,
    and its hyper-parameters are read back from those shapes alone."""
    expected = [(n, tuple(s)) for n, s in META["published_weights"]]
    assert pb.keras_weight_names(pb.ProteinBertConfig()) == expected
    fake = [np.broadcast_to(np.float32(0), s) for _, s in expected]   # no memory
    assert pb.config_from_weights(8943, fake) == pb.ProteinBertConfig()
    params = sum(int(np.prod(s)) for _, s in expected)
    net = pb.build_model(pb.ProteinBertConfig())
    assert sum(p.numel() for p in net.parameters()) == params


def test_tokenisation_as_package():
    for seq, tokens in META["token_cases"].items():
        np.testing.assert_array_equal(pb.encode([seq], len(seq) + 4)[0], tokens)
    # hand-worked: residues 0..21 in ALL_AAS order, every other letter (lower case too) <OTHER>
    assert pb.tokenize("AY").tolist() == [pb.START, 0, 21, pb.END]
    assert pb.tokenize("BZOJa").tolist() == [pb.START] + [pb.OTHER] * 5 + [pb.END]
    assert pb.tokenize("é").tolist() == [pb.START, pb.OTHER, pb.END]


def test_seq_len_buckets_as_package():
    """Padded length per protein = the package's split_dataset_by_len (start, doubled)."""
    for name, cfg in META["configs"].items():
        for acc, seq_len in cfg["seq_len_by_accession"].items():
            assert pb.bucket_seq_len(len(SEQS[acc]), cfg["start_seq_len"]) == seq_len
    assert [pb.bucket_seq_len(n) for n in (0, 510, 511, 1022, 1023)] == [512, 512, 1024, 1024, 2048]
    with pytest.raises(InputError, match="more than seq_len"):
        pb.encode(["A" * 63], 64)        # 63 + <START> + <END> > 64: the package cannot either
    assert pb.encode(["A" * 62], 64)[0, -1] == pb.END


def test_adapter_global_track():
    name = "tiny_a"
    ad = adapter(name, "global")
    n = ad.num_layers
    assert (ad.dim, n, ad.outputs_residues, ad.family) == (12, 2, False, "proteinbert")
    accs = META["configs"][name]["accessions"]
    out = ad.embed_batch([SEQS[a] for a in accs], [n])
    assert out.residues is None and len(out.pooled) == len(accs)
    for acc, vecs in zip(accs, out.pooled):
        assert set(vecs) == {n} and vecs[n].dtype == np.float32
        np.testing.assert_allclose(vecs[n], keras_layer(name, acc, "global", f"global-merge2-norm-block{n}"),
                                   atol=TOL, rtol=0)
    # batch composition does not matter: each protein is padded to its own bucket
    alone = ad.embed_batch([SEQS[accs[-1]]], [n]).pooled[0][n]
    np.testing.assert_allclose(alone, out.pooled[-1][n], atol=1e-6, rtol=0)
    one_at_a_time = adapter(name, "global", max_positions=64).embed_batch([SEQS[a] for a in accs], [n])
    for a, b in zip(one_at_a_time.pooled, out.pooled):
        np.testing.assert_allclose(a[n], b[n], atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="global vector"):
        ad.embed_batch([SEQS[accs[0]]], [0])


def test_adapter_local_track():
    name = "tiny_a"
    ad = adapter(name, "local")
    assert (ad.dim, ad.outputs_residues) == (8, True)
    accs = META["configs"][name]["accessions"]
    weights = pb.load_dump(DATA / f"{name}.pkl")[1]
    out = ad.embed_batch([SEQS[a] for a in accs], [0, 1, 2])
    assert out.pooled is None
    for acc, vecs in zip(accs, out.residues):
        n = len(SEQS[acc])
        for k in (1, 2):
            ref = keras_layer(name, acc, "seq", f"seq-merge2-norm-block{k}")[1:1 + n]
            assert vecs[k].shape == (n, 8)
            np.testing.assert_allclose(vecs[k], ref, atol=TOL, rtol=0)
        # layer 0 = the token embedding of the residues (no <START>/<END>/<PAD>)
        np.testing.assert_allclose(vecs[0], weights[2][pb.tokenize(SEQS[acc])[1:-1]], atol=1e-7)


def test_adapter_length_limit():
    ad = adapter("tiny_b", "global", max_seq_len=100)     # buckets 32, 64: at most 62 residues
    assert ad.max_residues == 62
    ad.embed_batch(["A" * 62], [ad.num_layers])
    with pytest.raises(InputError, match="max_residues 62"):
        ad.embed_batch(["A" * 63], [ad.num_layers])


def test_missing_weights_message(monkeypatch, tmp_path):
    monkeypatch.delenv(pb.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(NotFoundError) as exc:
        pb.resolve_weights()
    msg = str(exc.value)
    for part in (pb.PUBLISHED_URL, "--weights", pb.WEIGHTS_ENV, "epoch_92400_sample_23500000.pkl"):
        assert part in msg
    with pytest.raises(NotFoundError, match="nope.pkl does not exist"):
        pb.resolve_weights(tmp_path / "nope.pkl")
    monkeypatch.setenv(pb.WEIGHTS_ENV, str(tmp_path / "gone.pkl"))
    with pytest.raises(NotFoundError, match=r"gone.pkl \(from \$PROTISO_PROTEINBERT_WEIGHTS\)"):
        pb.resolve_weights()


def test_weights_resolution_order(monkeypatch, tmp_path):
    home = tmp_path / "home"
    (home / "proteinbert_models").mkdir(parents=True)
    default = home / "proteinbert_models" / "default.pkl"
    default.write_bytes((DATA / "tiny_b.pkl").read_bytes())
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(pb.WEIGHTS_ENV, raising=False)
    assert pb.resolve_weights() == default
    monkeypatch.setenv(pb.WEIGHTS_ENV, str(DATA / "tiny_a.pkl"))
    assert pb.resolve_weights() == DATA / "tiny_a.pkl"
    assert pb.resolve_weights(default) == default


def test_registry_alias(monkeypatch):
    from protiso.models import registry
    monkeypatch.setenv(pb.WEIGHTS_ENV, str(DATA / "tiny_a.pkl"))
    aliases = {s.alias for s in registry.list_models()}
    assert {"proteinbert", "proteinbert_local"} <= aliases
    ad = registry.load_model("proteinbert", LoadOptions())
    assert isinstance(ad, pb.ProteinBertAdapter) and ad.track == "global" and ad.dim == 12
    # the default: every protein at 512 tokens, longer ones cut by the embed loop
    assert ad.revision.startswith("sha256:") and ad.revision.endswith(";length=fixed512")
    assert ad.max_residues == 510 and ad.length_mode == "fixed"
    assert ad.describe()["start_seq_len"] == 512 and ad.describe()["length_mode"] == "fixed"
    local = registry.load_model("proteinbert_local", LoadOptions())
    assert local.track == "local" and local.outputs_residues and local.max_residues == 510
    bucketed = registry.load_model("proteinbert_bucketed", LoadOptions())
    assert bucketed.max_residues == 4094 and bucketed.revision.endswith(";length=bucketed512-4096")
    assert bucketed.revision.split(";")[0] == ad.revision.split(";")[0]
    local_b = registry.load_model("proteinbert_local_bucketed", LoadOptions())
    assert local_b.track == "local" and local_b.max_residues == 4094
    # an explicit weights option (the CLI's --weights) wins over the environment
    opts = LoadOptions()
    opts.weights = str(DATA / "tiny_b.pkl")      # set as an attribute if LoadOptions lacks the field
    assert registry.load_model("proteinbert", opts).dim == 8


def test_numpy1_dump_with_optimizer_scalars(tmp_path):
    """Dumps written under NumPy 1.x name numpy.core.multiarray; optimizer state holds scalars."""
    n_ann, weights = pb.load_dump(DATA / "tiny_b.pkl")
    data = pickle.dumps((n_ann, weights, [np.int64(7)] + weights), protocol=3)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "old.pkl"
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    n2, w2 = pb.load_dump(path)
    assert n2 == n_ann and all(np.array_equal(a, b) for a, b in zip(weights, w2))


def test_bad_dumps(tmp_path):
    n_ann, weights = pb.load_dump(DATA / "tiny_b.pkl")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps((1, [os.getcwd], [])))
    with pytest.raises(InputError, match="refusing to load .*getcwd"):
        pb.load_dump(evil)
    for bad, pattern in [({"a": 1}, "expected a pickled 3-tuple"),
                         ((n_ann, weights[:-1], []), "29 arrays"),
                         ((n_ann, weights[:5] + [weights[6], weights[5]] + weights[7:], []),
                          r"array 5 \(narrow-conv-block1/kernel\)")]:
        path = tmp_path / "bad.pkl"
        path.write_bytes(pickle.dumps(bad))
        with pytest.raises(InputError, match=pattern):
            pb.load_network(path)
    (tmp_path / "text.pkl").write_text("not a pickle")
    with pytest.raises(InputError, match="text.pkl: not a ProteinBERT dump"):
        pb.load_dump(tmp_path / "text.pkl")
    with pytest.raises(NotFoundError, match="cannot read"):
        pb.load_dump(tmp_path / "missing.pkl")
    with pytest.raises(InputError, match="float32 only"):
        pb.ProteinBertAdapter(DATA / "tiny_b.pkl", options=LoadOptions(dtype="float16"))


def test_embed_run_matches_keras(store):
    """Through protiso's embedding loop into the store: global track as is, local track
    mean-pooled over residues, both equal to the Keras outputs."""
    from protiso.embedding import embed
    from protiso.runs import load_embeddings
    from protiso.ingest import ingest

    ingest(store, [DATA / "sequences.fasta"])
    name = "tiny_a"
    accs = META["configs"][name]["accessions"]
    where = "accession IN ('" + "','".join(accs) + "')"
    g = adapter(name, "global")
    import hashlib
    sha = hashlib.sha256((DATA / f"{name}.pkl").read_bytes()).hexdigest()[:16]
    assert g.revision == f"sha256:{sha};length=bucketed64-4096"   # the length mode joins the run key
    run = embed(store, model="proteinbert", adapter=g, where=where, dtype="float32")
    got_accs, X = load_embeddings(store, run.run_id)
    assert got_accs == sorted(accs) and X.shape == (5, 12)
    for acc, x in zip(got_accs, X):
        np.testing.assert_allclose(x, keras_layer(name, acc, "global", "global-merge2-norm-block2"), atol=TOL)
    run = embed(store, model="proteinbert_local", adapter=adapter(name, "local"), where=where,
                layers="all", dtype="float32")
    for k in (1, 2):
        got_accs, X = load_embeddings(store, run.run_id, layer=k)
        for acc, x in zip(got_accs, X):
            ref = keras_layer(name, acc, "seq", f"seq-merge2-norm-block{k}")[1:1 + len(SEQS[acc])]
            np.testing.assert_allclose(x, ref.mean(axis=0), atol=TOL)


# ---- length modes: fixed (the package's usual 512-token use) and bucketed -----------------------

def forward_global(name: str, seqs: list[str], seq_len: int) -> np.ndarray:
    """The network's last global state for sequences padded to seq_len (checked against Keras
    at every length in test_network_matches_keras)."""
    net = network(name)
    with torch.no_grad():
        return net(torch.from_numpy(pb.encode(seqs, seq_len)))["global_states"][-1].numpy()


def cosine(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_fixed_mode_matches_keras_at_start_length():
    """Fixed mode = the package's create_model(seq_len) + encode_X(seqs, seq_len): every protein
    that fits is exactly the Keras output at that length."""
    name = "tiny_a"
    cfg = META["configs"][name]
    ad = adapter(name, "global", length_mode="fixed")
    assert ad.max_residues == cfg["start_seq_len"] - 2 == 62
    assert ad.revision.endswith(";length=fixed64")
    fits = [a for a, n in cfg["seq_len_by_accession"].items() if n == cfg["start_seq_len"]]
    assert len(fits) == 3
    out = ad.embed_batch([SEQS[a] for a in fits], [2])
    for acc, vecs in zip(fits, out.pooled):
        np.testing.assert_allclose(vecs[2], keras_layer(name, acc, "global", "global-merge2-norm-block2"),
                                   atol=TOL, rtol=0)
    with pytest.raises(InputError, match="max_residues 62"):
        ad.embed_batch([SEQS["B8E1E3"]], [2])      # 63+ residues: the embed loop cuts it first


def test_padding_changes_the_global_vector():
    """Why the mode matters: global attention does not skip <PAD>, so the same protein gives
    another vector at another padded length (here, with random weights)."""
    seq = SEQS["P85877"]
    v64, v128, v256 = (forward_global("tiny_a", [seq], n)[0] for n in (64, 128, 256))
    assert cosine(v64, v128) < 0.999 and cosine(v64, v256) < 0.999
    ad = adapter("tiny_a", "global", length_mode="fixed")
    np.testing.assert_allclose(ad.embed_batch([seq], [2]).pooled[0][2], v64, atol=1e-5)


def test_length_mode_arguments():
    with pytest.raises(InputError, match="length mode must be one of fixed, bucketed"):
        adapter("tiny_b", "global", length_mode="auto")
    with pytest.raises(InputError, match="max_seq_len 100 needs length mode 'bucketed'"):
        adapter("tiny_b", "global", length_mode="fixed", max_seq_len=100)
    assert adapter("tiny_b", "global", length_mode="fixed", max_seq_len=32).max_residues == 30


def test_modes_through_embed(store):
    """Fixed mode truncates long proteins to start - 2 residues (recorded per protein), skip drops
    them as the package's finetune does; bucketed keeps every residue; each is its own run."""
    from protiso.embedding import embed
    from protiso.ingest import ingest
    from protiso.runs import load_embeddings

    ingest(store, [DATA / "sequences.fasta"])
    name = "tiny_a"
    accs = META["configs"][name]["accessions"]
    where = "accession IN ('" + "','".join(accs) + "')"
    fixed = embed(store, model="proteinbert", adapter=adapter(name, "global", length_mode="fixed"),
                  where=where, dtype="float32")
    assert fixed.revision.endswith(";length=fixed64") and fixed.max_length == 62
    rows = store.sql(f"SELECT accession, status FROM run_proteins WHERE run_id = '{fixed.run_id}'")
    status = dict(zip(rows.column("accession").to_pylist(), rows.column("status").to_pylist()))
    long_ones = {a for a in accs if len(SEQS[a]) > 62}
    assert long_ones == {"B8E1E3", "P26970"}
    assert status == {a: "truncated" if a in long_ones else "done" for a in accs}
    got_accs, X = load_embeddings(store, fixed.run_id)
    ref = forward_global(name, [SEQS[a][:62] for a in got_accs], 64)   # cut, then padded to 64
    np.testing.assert_allclose(X, ref, atol=1e-5)

    bucketed = embed(store, model="proteinbert", adapter=adapter(name, "global"), where=where, dtype="float32")
    assert bucketed.run_id != fixed.run_id
    _, Xb = load_embeddings(store, bucketed.run_id)
    for acc, x, xb in zip(got_accs, X, Xb):
        np.testing.assert_allclose(xb, keras_layer(name, acc, "global", "global-merge2-norm-block2"), atol=TOL)
        if acc in long_ones:
            assert cosine(x, xb) < 0.999            # the published number depends on the mode
        else:
            np.testing.assert_allclose(x, xb, atol=1e-5)

    again = embed(store, model="proteinbert", adapter=adapter(name, "global", length_mode="fixed"),
                  where=where, dtype="float32")
    assert again.run_id == fixed.run_id             # same mode: the same run, resumed
    skipped = embed(store, model="proteinbert", adapter=adapter(name, "global", length_mode="fixed"),
                    where=where, dtype="float32", long="skip")
    rows = store.sql(f"SELECT accession, status FROM run_proteins WHERE run_id = '{skipped.run_id}' "
                     "AND status = 'skipped' ORDER BY accession").column("accession").to_pylist()
    assert rows == sorted(long_ones)
