"""protiso-mini: ProtBERT tokenizer conventions, MLM masking, reproducible and resumable
training, and the shipped checkpoints (offline loading, loss clearly below the untrained model)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertForMaskedLM, BertTokenizer

from protiso.errors import InputError, NotFoundError
from protiso.models import mini
from protiso.training import mini as training

# ProtBERT's vocab.txt (Rostlab/prot_bert) id of each token, written out by hand.
PROTBERT_IDS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "L": 5, "A": 6, "G": 7,
                "V": 8, "E": 9, "S": 10, "I": 11, "K": 12, "R": 13, "D": 14, "T": 15, "P": 16,
                "N": 17, "Q": 18, "F": 19, "Y": 20, "M": 21, "H": 22, "C": 23, "W": 24, "X": 25,
                "U": 26, "B": 27, "Z": 28, "O": 29}


def tiny_config(**kw) -> training.MiniConfig:
    base = dict(seed=3, steps=4, batch_size=4, max_length=34, hidden_size=16, num_layers=1,
                num_heads=2, intermediate_size=32, warmup_steps=2, n_heldout=4, save_steps=(0, 2),
                threads=1, max_minutes=None)
    base.update(kw)
    return training.MiniConfig(**base)


@pytest.fixture(scope="module")
def small_fasta(tmp_path_factory) -> Path:
    """The first 24 proteins of the bundled sample, as a plain FASTA."""
    records = training.read_fasta(training.SAMPLE_FASTA)[:24]
    path = tmp_path_factory.mktemp("fasta") / "small.fasta"
    path.write_text("".join(f">{n}\n{s}\n" for n, s in records))
    return path


def weights_digest(directory: Path) -> str:
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- conventions

def test_vocabulary_is_protbert_order(tmp_path):
    tok = mini.make_tokenizer(tmp_path)
    assert tok.convert_ids_to_tokens(list(range(30))) == list(PROTBERT_IDS)
    assert [tok.convert_tokens_to_ids(t) for t in PROTBERT_IDS] == list(PROTBERT_IDS.values())


def test_tokenises_the_protbert_way(tmp_path):
    tok = mini.make_tokenizer(tmp_path)
    assert mini.protbert_text("mkUzOb") == "M K X X X X"
    ids = tok(mini.protbert_text("MKUAZW"))["input_ids"]
    # hand-worked: [CLS] M K X A X W [SEP]
    assert ids == [2, 21, 12, 25, 6, 25, 24, 3]
    # case is kept (do_lower_case False): lower-case letters are not residues
    assert tok("m k")["input_ids"] == [2, 1, 1, 3]


def test_read_fasta_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">P1\nMKV\n>P2\nMK1V\n")
    with pytest.raises(InputError, match=r"bad\.fasta, line 4.*P2"):
        training.read_fasta(bad)
    headless = tmp_path / "headless.fasta"
    headless.write_text("MKV\n")
    with pytest.raises(InputError, match="line 1"):
        training.read_fasta(headless)
    with pytest.raises(InputError, match="missing.fasta"):
        training.read_fasta(tmp_path / "missing.fasta")


# ---------------------------------------------------------------------------- masking and crops

def test_mask_tokens_follows_bert_80_10_10():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 25, size=(200, 500))
    ids[:, 0], ids[:, -1], ids[:, -50:-1] = 2, 3, 0       # [CLS] ... [SEP] and padding
    masked, labels = training.mask_tokens(ids, 0.15, np.random.default_rng(1))
    chosen = labels != -100
    residue = ids >= 5
    assert not (chosen & ~residue).any()                  # specials and padding never chosen
    assert np.array_equal(labels[chosen], ids[chosen])    # labels are the original tokens
    assert np.array_equal(masked[~chosen], ids[~chosen])  # nothing else changes
    frac = chosen.sum() / residue.sum()
    assert abs(frac - 0.15) < 0.005
    n = chosen.sum()
    is_mask = masked[chosen] == 4
    kept = masked[chosen] == ids[chosen]
    # a random replacement equals the original 1 time in 20, so "kept" is 10% + 10%/20
    assert abs(is_mask.sum() / n - 0.8) < 0.01
    assert abs(kept.sum() / n - (0.1 + 0.1 / 20)) < 0.01
    replaced = masked[chosen & (masked != 4)]
    assert replaced.min() >= 5 and replaced.max() <= 24   # random tokens are standard residues


def test_collate_crops_a_contiguous_window():
    prot = [np.arange(5, 25), np.array([6, 7, 8])]
    ids, attn = training.collate(prot, 10, np.random.default_rng(0))
    assert ids.shape == (2, 10)
    assert ids[0, 0] == 2 and ids[0, 9] == 3
    window = ids[0, 1:9]
    start = int(window[0]) - 5
    assert np.array_equal(window, np.arange(5, 25)[start:start + 8])
    assert ids[1].tolist() == [2, 6, 7, 8, 3, 0, 0, 0, 0, 0]
    assert attn[1].tolist() == [1] * 5 + [0] * 5


def test_lr_schedule_warms_up_then_decays():
    cfg = tiny_config(steps=100, warmup_steps=10)
    f = [training.lr_factor(s, cfg) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert training.lr_factor(100, cfg) == pytest.approx(0.1)


# ---------------------------------------------------------------------------- training

def test_training_is_reproducible_from_the_seed(tmp_path, small_fasta):
    a = training.train(tmp_path / "a", tiny_config(), fasta=small_fasta)
    b = training.train(tmp_path / "b", tiny_config(), fasta=small_fasta)
    c = training.train(tmp_path / "c", tiny_config(seed=4), fasta=small_fasta)
    assert a.losses == b.losses and len(a.losses) == 4
    assert a.steps_saved == [0, 2, 4] and a.final_step == 4
    for step in (0, 2, 4):
        assert weights_digest(a.out_dir / f"step{step}") == weights_digest(b.out_dir / f"step{step}")
    assert weights_digest(a.out_dir / "step4") != weights_digest(c.out_dir / "step4")
    assert a.losses != c.losses
    # weights change over training
    assert weights_digest(a.out_dir / "step0") != weights_digest(a.out_dir / "step4")
    info = json.loads((a.out_dir / "training.json").read_text())
    assert info["config"] == tiny_config().to_dict() and info["seed"] == 3
    assert [row[1] for row in info["loss_curve"]] == [round(v, 5) for v in a.losses]
    assert len(info["data"]["heldout_accessions"]) == 4
    assert "demonstration" in info["label"]
    assert mini.available_steps(a.out_dir) == [0, 2, 4]
    assert mini.checkpoint_dir(None, a.out_dir) == a.out_dir / "step4"
    assert not (a.out_dir / mini.RESUME_DIR).exists()


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, small_fasta):
    cfg = tiny_config(steps=5, save_steps=(0, 3))
    whole = training.train(tmp_path / "whole", cfg, fasta=small_fasta)

    def stop_at_4(step, total, loss):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(tmp_path / "cut", cfg, fasta=small_fasta, progress=stop_at_4)
    assert (tmp_path / "cut" / mini.RESUME_DIR / "state.pt").exists()
    seen = []
    resumed = training.train(tmp_path / "cut", cfg, fasta=small_fasta, progress=lambda s, n, l: seen.append(s))
    assert seen == [4, 5]                                   # continued after the step-3 checkpoint
    assert resumed.losses == whole.losses
    assert weights_digest(tmp_path / "cut" / "step5") == weights_digest(tmp_path / "whole" / "step5")


def test_time_limit_stops_and_a_rerun_finishes(tmp_path, small_fasta):
    cfg = tiny_config(steps=4, save_steps=(0,))
    whole = training.train(tmp_path / "whole", cfg, fasta=small_fasta)
    # a zero time budget stops after the first step, saving a checkpoint there
    stopped = training.train(tmp_path / "cut", tiny_config(steps=4, save_steps=(0,), max_minutes=0.0),
                         fasta=small_fasta)
    assert stopped.final_step == 1 and stopped.steps_saved == [0, 1]
    info = json.loads((tmp_path / "cut" / mini.TRAINING_FILE).read_text())
    assert info["stopped_early"] is True and info["final_step"] == 1
    # re-running (other thread count, no limit) continues to the planned end, same weights
    done = training.train(tmp_path / "cut", tiny_config(steps=4, save_steps=(0,), threads=2), fasta=small_fasta)
    assert done.final_step == 4 and done.steps_saved == [0, 1, 4]
    assert done.losses == whole.losses
    assert weights_digest(tmp_path / "cut" / "step4") == weights_digest(tmp_path / "whole" / "step4")
    assert not json.loads((tmp_path / "cut" / mini.TRAINING_FILE).read_text())["stopped_early"]


def test_bad_settings_are_rejected(tmp_path, small_fasta):
    with pytest.raises(InputError, match="n_heldout"):
        training.train(tmp_path / "x", tiny_config(n_heldout=24), fasta=small_fasta)
    with pytest.raises(InputError, match="steps"):
        training.train(tmp_path / "x", tiny_config(steps=0), fasta=small_fasta)
    with pytest.raises(NotFoundError, match="step 7.*0, 2"):
        training.train(tmp_path / "y", tiny_config(steps=2, save_steps=(0,)), fasta=small_fasta)
        mini.checkpoint_dir(7, tmp_path / "y")
    with pytest.raises(NotFoundError, match="train-mini"):
        mini.checkpoint_dir(None, tmp_path / "nothing")
    assert mini.available_steps(tmp_path / "nothing") == []


def test_cli_train_mini(tmp_path, small_fasta, invoke):
    out = tmp_path / "run"
    res = invoke("train-mini", "--out", out, "--fasta", small_fasta, "--steps", 2, "--max-length", 34,
                 "--batch-size", 4, "--save-steps", "0", "--heldout", 4, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["final_step"] == 2 and [c["step"] for c in summary["checkpoints"]] == [0, 2]
    assert BertForMaskedLM.from_pretrained(out / "step2", local_files_only=True).config.max_position_embeddings == 34
    bad = invoke("train-mini", "--out", out, "--fasta", tmp_path / "nope.fa", "--steps", 1)
    assert bad.exit_code == 1 and "nope.fa" in bad.output
    bad = invoke("train-mini", "--out", out, "--fasta", small_fasta, "--save-steps", "a,b")
    assert bad.exit_code == 1 and "--save-steps" in bad.output


# ---------------------------------------------------------------------------- shipped checkpoints

def heldout_loss_by_hand(model, tok, sequences: list[str]) -> float:
    """Masked-LM loss computed independently of protiso.models.mini: the first 200 residues of
    each protein, every 6th one replaced by [MASK], one padded batch; -log softmax of the true
    token in numpy."""
    enc = tok([mini.protbert_text(s[:200]) for s in sequences], padding=True, return_tensors="pt")
    ids = enc["input_ids"].clone()
    rows, cols = [], []
    for i, seq in enumerate(sequences):
        for j in range(1, min(len(seq), 200) + 1, 6):
            rows.append(i)
            cols.append(j)
    truth = ids[rows, cols].numpy().copy()
    ids[rows, cols] = tok.mask_token_id
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=enc["attention_mask"]).logits
    logits = logits[rows, cols].double().numpy()
    top = logits.max(1)
    logz = np.log(np.exp(logits - top[:, None]).sum(1)) + top
    return float(np.mean(logz - logits[np.arange(len(truth)), truth]))


def test_shipped_checkpoints_load_offline_and_learned():
    steps = mini.available_steps()
    assert steps and steps[0] == 0 and len(steps) >= 3
    info = json.loads((mini.PACKAGE_DIR / mini.TRAINING_FILE).read_text())
    assert "demonstration" in info["label"] and info["final_step"] == steps[-1]
    total_bytes = sum((mini.checkpoint_dir(s) / "model.safetensors").stat().st_size for s in steps)
    assert total_bytes <= 5_000_000

    heldout = set(info["data"]["heldout_accessions"])
    records = training.read_fasta(training.SAMPLE_FASTA)
    sequences = [s for n, s in records if n in heldout][:40]
    assert len(sequences) == 40
    # entropy of the residue frequencies of the training proteins: what a model that ignores
    # context can reach at best
    counts = np.unique(np.frombuffer("".join(s for n, s in records if n not in heldout).encode(), np.uint8),
                       return_counts=True)[1]
    freq = counts / counts.sum()
    unigram = float(-(freq * np.log(freq)).sum())
    losses = {}
    for step in (0, None):
        d = mini.checkpoint_dir(step)
        meta = json.loads((d / mini.META_FILE).read_text())
        assert "demonstration" in meta["label"]
        model = BertForMaskedLM.from_pretrained(d, local_files_only=True).eval()
        tok = BertTokenizer.from_pretrained(d, local_files_only=True)
        assert model.dtype == torch.float32                 # fp16 on disk, computed in fp32
        assert tok.convert_ids_to_tokens(list(range(30))) == list(PROTBERT_IDS)
        assert tok(mini.protbert_text("MKUZ"))["input_ids"] == [2, 21, 12, 25, 25, 3]
        losses[step] = heldout_loss_by_hand(model, tok, sequences)
    uniform = math.log(30)
    assert losses[0] > uniform - 0.2                        # random init: about a uniform guess
    assert losses[None] < losses[0] - 0.3
    assert losses[None] < uniform - 0.4
    assert losses[None] < unigram - 0.05                    # it uses context, not only composition
