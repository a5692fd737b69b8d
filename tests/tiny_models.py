"""Builders of tiny random-weight protein language models, one per family, with the real
tokenizer conventions of the published models:

- BERT (ProtBERT): WordPiece vocab.txt with ProtBERT's 30 tokens, no lower-casing;
- XLNet (ProtXLNet): a sentencepiece model trained here on space-separated residues
  (pieces "▁A", ...), <sep> <cls> at the end, padding on the left;
- ESM-2: ESM's 33-token vocab file, `<cls> ... <eos>`, no spaces;
- T5 encoder (ProtT5): a sentencepiece model trained here (<pad>=0, </s>=1, <unk>=2, "▁A", ...),
  `</s>` appended.

Each builder writes model + tokenizer with save_pretrained into a directory and returns it, so
tests load them through the same code path as a Hugging Face id. Weights are seeded.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch

# ProtBERT / ESM vocabularies (token order as published)
PROTBERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "L", "A", "G", "V", "E", "S", "I",
                  "K", "R", "D", "T", "P", "N", "Q", "F", "Y", "M", "H", "C", "W", "X", "U", "B",
                  "Z", "O"]
ESM_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D",
             "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-",
             "<null_1>", "<mask>"]
# ProtXLNet / ProtT5 map U, Z, O, B to X, so their vocabularies hold 21 residue letters
RESIDUES21 = "LAGVESIKRDTPNQFYMHCWX"

FAMILIES = ("bert", "xlnet", "esm", "t5")
SIZE = dict(hidden=32, layers=2, heads=2, intermediate=64)


def _train_sentencepiece(control: list[str], unk: str, unk_id: int, ids: dict) -> list[tuple[str, float]]:
    """Train a word-level sentencepiece model on space-separated residues; returns its
    (piece, score) list in id order (the vocab format transformers' tokenizers take)."""
    import random

    import sentencepiece as spm

    rng = random.Random(0)
    sentences = [" ".join(rng.choice(RESIDUES21) for _ in range(rng.randint(20, 60)))
                 for _ in range(300)]
    buf = io.BytesIO()
    special = {"bos_id": -1, "eos_id": -1, "pad_id": -1, "pad_piece": "<pad>", "eos_piece": "</s>", **ids}
    n_special = len(control) + 1 + sum(1 for k, v in ids.items() if k.endswith("_id") and v >= 0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buf, model_type="word",
        vocab_size=n_special + len(RESIDUES21), **({"control_symbols": control} if control else {}),
        unk_piece=unk, unk_id=unk_id, **special, character_coverage=1.0, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    assert all(f"▁{r}" in dict(pieces) for r in RESIDUES21), pieces
    return pieces


def build_bert(out: Path, seed: int = 0, **size) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    s = {**SIZE, **size}
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(PROTBERT_VOCAB) + "\n")
    tok = BertTokenizer(vocab=str(out / "vocab.txt"), do_lower_case=False)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(PROTBERT_VOCAB), hidden_size=s["hidden"],
                     num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                     intermediate_size=s["intermediate"], max_position_embeddings=s.get("max_pos", 128),
                     pad_token_id=0)
    BertForMaskedLM(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_xlnet(out: Path, seed: int = 0, **size) -> Path:
    from transformers import XLNetConfig, XLNetLMHeadModel, XLNetTokenizer

    s = {**SIZE, **size}
    out.mkdir(parents=True, exist_ok=True)
    control = ["<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>", "<s>", "</s>"]
    vocab = _train_sentencepiece(control, "<unk>", len(control), {})
    tok = XLNetTokenizer(vocab=vocab, unk_id=len(control), do_lower_case=False)
    torch.manual_seed(seed)
    cfg = XLNetConfig(vocab_size=len(vocab), d_model=s["hidden"], n_layer=s["layers"], n_head=s["heads"],
                      d_inner=s["intermediate"], pad_token_id=tok.pad_token_id)
    XLNetLMHeadModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_esm(out: Path, seed: int = 0, **size) -> Path:
    from transformers import EsmConfig, EsmForMaskedLM, EsmTokenizer

    s = {**SIZE, **size}
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(ESM_VOCAB) + "\n")
    tok = EsmTokenizer(vocab_file=str(out / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                    num_attention_heads=s["heads"], intermediate_size=s["intermediate"],
                    max_position_embeddings=s.get("max_pos", 130), position_embedding_type="rotary",
                    pad_token_id=1, mask_token_id=32, emb_layer_norm_before=False, token_dropout=True)
    EsmForMaskedLM(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_t5(out: Path, seed: int = 0, **size) -> Path:
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    s = {**SIZE, **size}
    out.mkdir(parents=True, exist_ok=True)
    vocab = _train_sentencepiece([], "<unk>", 2, {"pad_id": 0, "eos_id": 1})
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(vocab), d_model=s["hidden"], d_kv=s["hidden"] // s["heads"],
                   d_ff=s["intermediate"], num_layers=s["layers"], num_heads=s["heads"],
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


BUILDERS = {"bert": build_bert, "xlnet": build_xlnet, "esm": build_esm, "t5": build_t5}


def build(family: str, out: Path, seed: int = 0, **size) -> Path:
    """Build the tiny model of `family` into `out` (created) and return `out`."""
    return BUILDERS[family](Path(out), seed=seed, **size)
