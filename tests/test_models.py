"""Model adapters: tokenisation conventions, residue positions and pooling for every family,
batch invariance, registry and offline errors. Tiny random models built with tests/tiny_models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import tiny_models
from protiso.errors import InputError, NotFoundError
from protiso.models import LoadOptions, load_model, parse_layers, resolve
from protiso.models.registry import REGISTRY

SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "GSHMUZ", "ACDEFGHIKLMNPQRSTVWYXBO", "MW", "PEPTIDEKLLLLLLLLLLGGGA"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {f: tiny_models.build(f, root / f) for f in tiny_models.FAMILIES}


@pytest.fixture(scope="module")
def adapters(tiny):
    return {f: load_model(str(path), LoadOptions(device="cpu", dtype="float32", offline=True))
            for f, path in tiny.items()}


def _manual_pooled(adapter, sequences, layer):
    """Reference: the family's own tokenizer (spaced + X-mapped for ProtTrans, plain for ESM)
    with its own padding side, hidden states from the raw model, mean over positions that are
    neither special nor padding tokens."""
    tok, model = adapter.tokenizer, adapter.model
    texts = []
    for s in sequences:
        if adapter.family == "esm":
            texts.append(s)
        else:
            texts.append(" ".join(s.translate(str.maketrans("UZOB", "XXXX"))))
    enc = tok(texts, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    if adapter.family == "xlnet":
        assert tok.padding_side == "left"
        # the shortest sequence is padded on the left
        assert enc["attention_mask"][3, 0] == 0 and enc["attention_mask"][3, -1] == 1
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    h = out.hidden_states[layer].double()
    keep = (enc["attention_mask"] == 1) & (enc["special_tokens_mask"] == 0)
    res = []
    for i, s in enumerate(sequences):
        assert int(keep[i].sum()) == len(s), "one token per residue"
        res.append(h[i][keep[i]].mean(0).numpy())
    return np.stack(res)


@pytest.mark.parametrize("family", tiny_models.FAMILIES)
def test_family_detected_and_token_layout(adapters, family):
    a = adapters[family]
    assert a.family == family and a.dim == 32 and a.num_layers == 2
    assert a.revision.startswith("local-")
    tok = a.tokenizer
    for s in SEQS:
        ids = a.token_ids(s)
        assert ids == a.reference_ids(s)
        names = tok.convert_ids_to_tokens(ids)
        expected = {"bert": (["[CLS]"], ["[SEP]"]), "xlnet": ([], ["<sep>", "<cls>"]),
                    "esm": (["<cls>"], ["<eos>"]), "t5": ([], ["</s>"])}[family]
        pre, post = expected
        assert names[:len(pre)] == pre and names[len(names) - len(post):] == post
        assert len(ids) == len(s) + len(pre) + len(post)
    # ProtTrans families map U, Z, O, B to X; ESM keeps them
    rare = tok.convert_ids_to_tokens(a.token_ids("UZOB"))
    if family == "esm":
        assert rare[1:5] == ["U", "Z", "O", "B"]
    else:
        assert all(t.lstrip("▁") == "X" for t in rare if t not in ("[CLS]", "[SEP]", "<sep>", "<cls>", "</s>"))


@pytest.mark.parametrize("family", tiny_models.FAMILIES)
def test_mean_pooling_matches_manual_residue_positions(adapters, family):
    a = adapters[family]
    for layer in (0, 1, 2):
        out = a.embed_batch(SEQS, [layer])
        ours = np.stack([r[layer].mean(0) for r in out.residues])
        for r, s in zip(out.residues, SEQS):
            assert r[layer].shape == (len(s), a.dim)
        np.testing.assert_allclose(ours, _manual_pooled(a, SEQS, layer), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", tiny_models.FAMILIES)
def test_batch_composition_and_order_do_not_change_results(adapters, family):
    a = adapters[family]
    together = a.embed_batch(SEQS, [2]).residues
    alone = [a.embed_batch([s], [2]).residues[0] for s in SEQS]
    reversed_ = a.embed_batch(SEQS[::-1], [2]).residues[::-1]
    for x, y, z in zip(together, alone, reversed_):
        np.testing.assert_allclose(x[2], y[2], atol=2e-5)
        np.testing.assert_allclose(x[2], z[2], atol=2e-5)


def test_parse_layers():
    assert parse_layers("last", 6) == [6]
    assert parse_layers(None, 6) == [6]
    assert parse_layers("all", 2) == [0, 1, 2]
    assert parse_layers("0,-1, 3", 6) == [0, 3, 6]
    assert parse_layers([2, 2, 1], 6) == [1, 2]
    for bad in ("7", "x", "-8", ""):
        with pytest.raises(InputError):
            parse_layers(bad, 6)


def test_unknown_model_offline_names_it_and_says_how(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFoundError) as err:
        load_model("no-such-org/no-such-protein-model", LoadOptions(offline=True))
    msg = str(err.value)
    assert "no-such-org/no-such-protein-model" in msg
    assert "save_pretrained" in msg and "cache" in msg and "hf download" in msg and "HF_HUB_OFFLINE" in msg
    assert err.value.param == "model"
    # an alias resolves to its hub id, which is named in the error too
    with pytest.raises(NotFoundError, match="Rostlab/prot_bert"):
        load_model("prot_bert", LoadOptions(offline=True))


def test_registry_aliases_and_local_dirs(tiny, tmp_path):
    assert resolve("prot_bert").source == "Rostlab/prot_bert"
    assert resolve("prot_xlnet").spec.family == "xlnet"
    assert resolve("esm2_t6_8M").source == "facebook/esm2_t6_8M_UR50D"
    assert resolve("prot_t5_xl").spec.family == "t5"
    assert resolve(str(tiny["esm"])).source == str(tiny["esm"].resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="config.json"):
        load_model(str(tmp_path / "empty"))
    with pytest.raises(NotFoundError, match="step 987654"):
        resolve("protiso-mini@step987654")
    assert "protiso-mini" in REGISTRY


def test_revision_changes_with_weights(tmp_path):
    a = tiny_models.build("bert", tmp_path / "a", seed=0)
    b = tiny_models.build("bert", tmp_path / "b", seed=1)
    ra = load_model(str(a)).revision
    assert ra == load_model(str(a)).revision
    assert ra != load_model(str(b)).revision


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_reduced_precision_close_to_fp32_and_reversible(adapters, low):
    a = adapters["bert"]
    ref = a.embed_batch(SEQS, [2]).residues
    a.set_dtype(low)
    try:
        low_out = a.embed_batch(SEQS, [2]).residues
    finally:
        a.set_dtype("float32")
    back = a.embed_batch(SEQS, [2]).residues      # fp32 weights restored exactly, not rounded
    for x, y in zip(ref, back):
        np.testing.assert_array_equal(x[2], y[2])
    low = low_out
    for x, y in zip(ref, low):
        mx, my = x[2].mean(0), y[2].mean(0)
        assert mx @ my / np.linalg.norm(mx) / np.linalg.norm(my) > 0.99
        assert not np.array_equal(x[2], y[2])   # reduced precision really was used


def test_mistyped_alias_suggests_the_alias():
    from protiso.errors import NotFoundError
    from protiso.models.registry import resolve

    with pytest.raises(NotFoundError, match="did you mean 'prot_bert'"):
        resolve("prot_bertt")
    assert resolve("Rostlab/prot_bert").source == "Rostlab/prot_bert"   # hub ids are not second-guessed
