"""Hugging Face adapter for the BERT (ProtBERT), XLNet (ProtXLNet), ESM-2 and T5-encoder
(ProtT5, Ankh) families.

Token ids are built here from a per-residue map taken from the model's own tokenizer, with the
family's layout of special tokens, so the residue positions of every output are known exactly:

    bert   [CLS] r1 .. rn [SEP]   right padding
    xlnet  r1 .. rn <sep> <cls>   left padding
    esm    <cls> r1 .. rn <eos>   right padding
    t5     r1 .. rn </s>          right padding

At load time the ids are checked against the tokenizer applied the way the model card says
(ProtBERT/ProtXLNet/ProtT5: space-separated residues with U, Z, O, B mapped to X; ESM: the plain
string), so a model with other conventions fails loudly instead of pooling the wrong positions.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from protiso.errors import NotFoundError, ProtisoError
from protiso.models.base import BatchOutput, LoadOptions, ModelAdapter

FAMILIES = ("bert", "xlnet", "esm", "t5")
# model_type in config.json -> family
MODEL_TYPES = {"bert": "bert", "xlnet": "xlnet", "esm": "esm", "t5": "t5", "mt5": "t5"}
RARE = "UZOB"            # mapped to X by the ProtTrans models
DEFAULT_MAX_RESIDUES = 4096   # cap for models with no (or a huge) position limit
PROBE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQXUZOB"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_ALLOW = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]


class ModelNotAvailableError(NotFoundError):
    """The model is neither a local directory nor in the Hugging Face cache, and cannot be fetched."""


def _offline(options: LoadOptions) -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return options.offline or env.lower() in ("1", "true", "yes", "on")


def locate(source: str, options: LoadOptions) -> tuple[Path, str]:
    """A local directory with the model files, and its revision.

    Local directories are used as they are (revision = fingerprint of config and weights).
    Hub ids come from the Hugging Face cache, downloading only if the network is allowed
    (revision = the snapshot's commit hash)."""
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise NotFoundError(f"model directory {path} has no config.json "
                                "(expected a directory written by save_pretrained)")
        return path, "local-" + _fingerprint(path)
    from huggingface_hub import snapshot_download

    last: Exception | None = None
    for local_only in ((True,) if _offline(options) else (True, False)):
        try:
            snap = Path(snapshot_download(source, local_files_only=local_only, allow_patterns=_ALLOW))
            if (snap / "config.json").exists():
                return snap, snap.name
        except Exception as exc:   # noqa: BLE001 - every hub failure becomes the message below
            last = exc
    raise ModelNotAvailableError(
        f"model {source!r} is not available: it is not a local directory, not in the Hugging Face "
        f"cache, and {'the network is disabled (offline mode)' if _offline(options) else 'could not be downloaded'}"
        f" ({type(last).__name__ if last else 'no config.json'}). Provide a local copy: give "
        f"a directory saved with save_pretrained as the model, or fill the Hugging Face cache on a "
        f"machine with network access (`hf download {source}`), copy ~/.cache/huggingface here and "
        f"set HF_HUB_OFFLINE=1.", param="model")


def _fingerprint(path: Path) -> str:
    """Short hash of config.json and the weight files (size + first/last MiB), cheap for big files."""
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.iterdir()):
        if f.name in _WEIGHT_FILES or f.suffix in (".safetensors", ".bin"):
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    return h.hexdigest()[:12]


def detect_family(model_dir: Path) -> str:
    """Family from config.json's model_type."""
    cfg = json.loads((model_dir / "config.json").read_text())
    mt = cfg.get("model_type")
    if mt not in MODEL_TYPES:
        raise ProtisoError(f"model at {model_dir}: unsupported model_type {mt!r}; "
                           f"supported: {sorted(MODEL_TYPES)}")
    return MODEL_TYPES[mt]


class HFAdapter(ModelAdapter):
    """A Hugging Face encoder of one of FAMILIES with its residue-level tokenisation."""

    def __init__(self, model_dir: Path, model_id: str, revision: str, family: str | None,
                 options: LoadOptions, spaced: bool | None = None):
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()      # weights of unused heads are expected to be left out
        hf_logging.disable_progress_bar()
        self.family = family or detect_family(model_dir)
        if self.family not in FAMILIES:
            raise ProtisoError(f"unknown model family {self.family!r}")
        self.model_id, self.revision = model_id, revision
        # ProtTrans models (and Ankh, which is unspaced) take residues as words
        self.spaced = (self.family != "esm") if spaced is None else spaced
        self.rare_to_x = self.family != "esm" and self.spaced
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        kwargs = {"add_pooling_layer": False} if self.family in ("bert", "esm") else {}
        cls = T5EncoderModel if self.family == "t5" else AutoModel
        self._load = lambda: cls.from_pretrained(model_dir, **kwargs).eval()
        try:
            self.model = self._load()
        except (OSError, ValueError) as exc:
            raise ProtisoError(f"cannot load model weights from {model_dir}: {exc}") from exc
        cfg = self.model.config
        self.dim = int(getattr(cfg, "hidden_size", None) or cfg.d_model)
        self.num_layers = int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
                              or cfg.num_layers)
        self.max_residues = self._model_limit(cfg)
        self._build_vocab()
        self.device = options.device
        self.model.to(self.device)
        self.dtype = "float32"
        self._autocast: torch.dtype | None = None
        self.set_dtype(options.dtype)      # also upcasts checkpoints stored in half precision
        self.extra = {"spaced_input": self.spaced}
        self.check_tokenisation(PROBE)

    # -- tokenisation ------------------------------------------------------------------
    def _model_limit(self, cfg) -> int:
        mpe = getattr(cfg, "max_position_embeddings", None)
        if self.family == "bert" and mpe:
            return min(int(mpe) - 2, DEFAULT_MAX_RESIDUES)
        if self.family == "esm" and mpe:
            # positions start after padding_idx; <cls> and <eos> take two (ESM-2: 1022 residues)
            return min(int(mpe) - int(cfg.pad_token_id or 0) - 1 - 2, DEFAULT_MAX_RESIDUES)
        return DEFAULT_MAX_RESIDUES

    def _token_id(self, token: str | None) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token) if token else None
        if tid is None:
            raise ProtisoError(f"{self.model_id}: tokenizer has no {token!r} token")
        return int(tid)

    def _build_vocab(self) -> None:
        """ids of the 26 letters (one token each) and of the family's special tokens."""
        tok = self.tokenizer
        unk = tok.unk_token_id
        table = np.full(128, -1, dtype=np.int64)
        for code in range(ord("A"), ord("Z") + 1):
            letter = chr(code)
            if self.rare_to_x and letter in RARE:
                letter = "X"
            ids = tok(letter, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                ids = [i for i in (tok.convert_tokens_to_ids(t) for t in (letter, "▁" + letter))
                       if i is not None and i != unk][:1] or [unk]
            table[code] = ids[0]
            table[code + 32] = ids[0]          # lower case too
        if (table[ord("A"):ord("Z") + 1] < 0).any():
            raise ProtisoError(f"{self.model_id}: tokenizer cannot encode every residue letter")
        self._letters = table
        self.pad_id = int(tok.pad_token_id)
        if self.family == "bert":
            self._pre, self._post = [self._token_id(tok.cls_token)], [self._token_id(tok.sep_token)]
        elif self.family == "xlnet":
            self._pre, self._post = [], [self._token_id(tok.sep_token), self._token_id(tok.cls_token)]
        elif self.family == "esm":
            self._pre, self._post = [self._token_id(tok.cls_token)], [self._token_id(tok.eos_token)]
        else:
            self._pre, self._post = [], [self._token_id(tok.eos_token)]
        self.left_pad = self.family == "xlnet"

    def token_ids(self, sequence: str) -> list[int]:
        """The model input ids of one sequence (with special tokens, no padding)."""
        codes = np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)
        ids = self._letters[np.minimum(codes, 127)]
        if (ids < 0).any():
            bad = sequence[int(np.argmax(ids < 0))]
            raise ProtisoError(f"{self.model_id}: cannot encode residue {bad!r}")
        return self._pre + ids.tolist() + self._post

    def reference_ids(self, sequence: str) -> list[int]:
        """Ids from the tokenizer itself, fed the way the model card says."""
        seq = sequence.upper()
        if self.rare_to_x:
            seq = seq.translate(str.maketrans(RARE, "X" * len(RARE)))
        if self.spaced:
            return self.tokenizer(" ".join(seq))["input_ids"]
        if self.family == "esm":
            return self.tokenizer(seq)["input_ids"]
        return self.tokenizer(list(seq), is_split_into_words=True)["input_ids"]

    def check_tokenisation(self, sequence: str) -> None:
        ours, theirs = self.token_ids(sequence), self.reference_ids(sequence)
        if ours != theirs:
            raise ProtisoError(
                f"{self.model_id}: its tokenizer does not follow the {self.family} family's residue "
                f"conventions (expected one token per residue and {self.family} special tokens); "
                f"got {self.tokenizer.convert_ids_to_tokens(theirs)[:12]}...")

    def batch_tensors(self, sequences: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(input_ids, attention_mask, offsets): offsets[i] = position of sequence i's first residue."""
        rows = [self.token_ids(s) for s in sequences]
        # widths rounded up to a multiple of 8: fewer distinct shapes (kernel caches) and
        # tensor-core friendly; the extra positions are padding, masked like any other
        longest = max(len(r) for r in rows)
        # ... but never past the model's position limit (absolute position embeddings)
        width = min(-(-longest // 8) * 8, max(longest, self.max_residues + len(self._pre) + len(self._post)))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        offsets = []
        for i, r in enumerate(rows):
            start = width - len(r) if self.left_pad else 0
            ids[i, start:start + len(r)] = r
            mask[i, start:start + len(r)] = 1
            offsets.append(start + len(self._pre))
        return torch.from_numpy(ids), torch.from_numpy(mask), offsets

    # -- compute ---------------------------------------------------------------------------
    def set_dtype(self, dtype: str) -> None:
        """Compute precision: weights cast to float32/bfloat16 (bf16 runs on AVX512-BF16/AMX
        units on CPUs); float16 on a CPU is autocast over fp32 weights (CPUs lack fp16 kernels
        for some ops). Hidden states are returned as float32 either way."""
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ProtisoError(f"unknown dtype {dtype!r}")
        on_cpu = str(self.device).startswith("cpu")
        if self.dtype != "float32" and self._autocast is None and dtype != self.dtype:
            # weights were rounded to 16 bits: reload them rather than upcast the rounded ones
            self.model = self._load().to(self.device)
        if on_cpu and dtype == "float16":
            self.model.to(torch.float32)
            self._autocast = torch.float16
        else:
            self.model.to(getattr(torch, dtype))
            self._autocast = None
        self.dtype = dtype

    @torch.inference_mode()
    def hidden_states(self, sequences: list[str], layers: list[int]):
        """Forward pass: ({layer: float32 tensor (B, T, dim) on CPU}, offsets)."""
        ids, mask, offsets = self.batch_tensors(sequences)
        ids, mask = ids.to(self.device), mask.to(self.device)
        want_all = any(layer != self.num_layers for layer in layers)
        ctx = (torch.autocast("cpu", dtype=self._autocast) if self._autocast is not None
               else _null())
        with ctx:
            kwargs = {"output_hidden_states": True} if want_all else {}
            if self.family == "xlnet":
                kwargs["use_mems"] = False
            out = self.model(input_ids=ids, attention_mask=mask, **kwargs)
        states = {}
        for layer in layers:
            h = out.last_hidden_state if layer == self.num_layers else out.hidden_states[layer]
            states[layer] = h.float().cpu()
        return states, offsets

    def embed_batch(self, sequences: list[str], layers: list[int]) -> BatchOutput:
        states, offsets = self.hidden_states(sequences, layers)
        residues = []
        for i, seq in enumerate(sequences):
            a, n = offsets[i], len(seq)
            residues.append({layer: h[i, a:a + n].numpy() for layer, h in states.items()})
        return BatchOutput(residues=residues)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def load_hf(spec, source: str, options: LoadOptions) -> HFAdapter:
    """Registry loader for Hugging Face models (ids or local directories)."""
    model_dir, revision = locate(source, options)
    return HFAdapter(model_dir, source, revision, spec.family, options,
                     spaced=spec.options.get("spaced"))
