"""Training protiso-mini (see `protiso.models.mini` for the model and its checkpoints).

Training is reproducible from the seed: the batch order, crops and masks of step t depend only
on (seed, t), so an interrupted run resumes from its last saved state and gives the same
weights as an uninterrupted one (for the same number of threads).
"""
from __future__ import annotations

import copy
import dataclasses
import gzip
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from protiso.errors import InputError
from protiso.models.mini import (LABEL, META_FILE, PROTBERT_VOCAB, RESUME_DIR, STANDARD_RESIDUES,
                                 TRAINING_FILE, make_tokenizer, protbert_text)


SAMPLE_FASTA = Path(__file__).resolve().parent.parent / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"


@dataclass
class MiniConfig:
    """Everything that determines a protiso-mini training run (recorded in training.json)."""

    seed: int = 0
    steps: int = 1000
    batch_size: int = 16
    max_length: int = 514            # tokens incl. [CLS]/[SEP]; longer proteins are randomly cropped
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.0             # as ProtBERT
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 150
    grad_clip: float = 1.0
    mask_prob: float = 0.15          # of residue tokens; of those 80% [MASK], 10% random, 10% kept
    n_heldout: int = 100             # proteins kept out of training, for evaluation
    save_steps: tuple[int, ...] = (0, 100, 300)  # plus the final step
    save_dtype: str = "float16"      # shipped weights are stored in half precision to stay small
    threads: int = 1
    max_minutes: float | None = 30.0  # stop early (and save) when the wall time is spent

    def result_dict(self) -> dict:
        """The settings that determine the trained weights (not threads or the time limit):
        a run resumes only from a state with the same ones."""
        d = self.to_dict()
        del d["threads"], d["max_minutes"]
        return d

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["save_steps"] = list(self.save_steps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MiniConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "save_steps" in d:
            d["save_steps"] = tuple(d["save_steps"])
        return cls(**d)


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    final_step: int
    steps_saved: list[int]
    losses: list[float]
    wall_seconds: float
    heldout_loss: dict[int, float] = field(default_factory=dict)


def read_fasta(path: Path | str) -> list[tuple[str, str]]:
    """(id, sequence) pairs of a plain or gzipped FASTA file; sequences upper-cased."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such FASTA file")
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[tuple[str, str]] = []
    name, chunks = None, []
    with opener(path, "rt") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(chunks)))
                name, chunks = line[1:].split()[0] if line[1:].split() else "", []
                if not name:
                    raise InputError(f"{path}, line {lineno}: FASTA header without an identifier")
            else:
                if name is None:
                    raise InputError(f"{path}, line {lineno}: sequence before the first '>' header")
                seq = line.upper()
                if not seq.isalpha():
                    raise InputError(f"{path}, line {lineno}: non-letter character in sequence of {name}")
                chunks.append(seq)
    if name is not None:
        records.append((name, "".join(chunks)))
    empty = [n for n, s in records if not s]
    if empty:
        raise InputError(f"{path}: record {empty[0]} has an empty sequence")
    if not records:
        raise InputError(f"{path}: no FASTA records")
    return records



def split_heldout(ids: list[str], n_heldout: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices of (training, held-out) proteins: a seeded random choice of n_heldout."""
    if n_heldout >= len(ids):
        raise InputError(f"n_heldout={n_heldout} leaves no training proteins out of {len(ids)}")
    perm = np.random.default_rng(seed).permutation(len(ids))
    held = sorted(perm[:n_heldout].tolist())
    held_set = set(held)
    return [i for i in range(len(ids)) if i not in held_set], held


# ---------------------------------------------------------------------------- batches and masks

def _epoch_batches(n: int, lengths: np.ndarray, cfg: MiniConfig, epoch: int) -> list[np.ndarray]:
    """Batches of one epoch: a seeded permutation, sorted by length within pools of 16
    batches (less padding), batch order shuffled. Depends only on (seed, epoch)."""
    rng = np.random.default_rng([cfg.seed, 1, epoch])
    perm = rng.permutation(n)
    pool = cfg.batch_size * 16
    batches = []
    for s in range(0, n, pool):
        chunk = perm[s:s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class _Schedule:
    """Maps a step to its batch (protein indices); epochs are generated on demand."""

    def __init__(self, lengths: np.ndarray, cfg: MiniConfig):
        self.lengths, self.cfg = lengths, cfg
        self.per_epoch = len(_epoch_batches(len(lengths), lengths, cfg, 0))
        self._cache: dict[int, list[np.ndarray]] = {}

    def batch(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.per_epoch)
        if epoch not in self._cache:
            self._cache = {epoch: _epoch_batches(len(self.lengths), self.lengths, self.cfg, epoch)}
        return self._cache[epoch][k]


def collate(token_ids: list[np.ndarray], max_length: int, rng: np.random.Generator):
    """Crop each protein (residue ids, no specials) to max_length-2 at a random start, add
    [CLS]/[SEP], pad. Returns (input_ids, attention_mask) int64 arrays."""
    keep = max_length - 2
    rows = []
    for ids in token_ids:
        if len(ids) > keep:
            start = int(rng.integers(0, len(ids) - keep + 1))
            ids = ids[start:start + keep]
        rows.append(np.concatenate([[2], ids, [3]]))
    width = max(len(r) for r in rows)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attn = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = r
        attn[i, :len(r)] = 1
    return input_ids, attn


def mask_tokens(input_ids: np.ndarray, mask_prob: float, rng: np.random.Generator):
    """BERT masking over residue tokens only (ids >= 5): each is chosen with mask_prob; a chosen
    token becomes [MASK] (80%), a random standard residue (10%) or stays (10%). Returns
    (masked_input_ids, labels) with labels -100 where not chosen. At least one token per
    sequence is chosen so every sequence contributes to the loss."""
    ids = input_ids.copy()
    residue = input_ids >= 5
    chosen = (rng.random(ids.shape) < mask_prob) & residue
    for i in range(ids.shape[0]):
        if not chosen[i].any() and residue[i].any():
            pos = np.flatnonzero(residue[i])
            chosen[i, pos[int(rng.integers(len(pos)))]] = True
    labels = np.where(chosen, input_ids, -100)
    action = rng.random(ids.shape)
    to_mask = chosen & (action < 0.8)
    to_random = chosen & (action >= 0.8) & (action < 0.9)
    ids[to_mask] = 4
    ids[to_random] = rng.integers(5, 5 + len(STANDARD_RESIDUES), size=int(to_random.sum()))
    return ids, labels


# ---------------------------------------------------------------------------- model

def build_model(cfg: MiniConfig):
    """A freshly initialised BertForMaskedLM (seeded by cfg.seed)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    bert_cfg = BertConfig(
        vocab_size=len(PROTBERT_VOCAB),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        max_position_embeddings=cfg.max_length,
        type_vocab_size=2,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(bert_cfg)
    return model


def lr_factor(step: int, cfg: MiniConfig) -> float:
    """Linear warmup over warmup_steps, then cosine decay to 10% at cfg.steps."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def mlm_loss(model, token_ids: list[np.ndarray], max_length: int, seed: int = 0,
             batch_size: int = 32, mask_prob: float = 0.15) -> float:
    """Mean masked-token cross-entropy (nats) of `model` on proteins (residue ids), with crops
    and masks drawn from `seed`: the same seed gives the same masks for every model."""
    import torch

    rng = np.random.default_rng([seed, 7])
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, len(token_ids), batch_size):
            ids, attn = collate(token_ids[s:s + batch_size], max_length, rng)
            masked, labels = mask_tokens(ids, mask_prob, rng)
            logits = model(input_ids=torch.from_numpy(masked),
                           attention_mask=torch.from_numpy(attn)).logits.float()
            lab = torch.from_numpy(labels)
            total += float(torch.nn.functional.cross_entropy(
                logits.view(-1, logits.shape[-1]), lab.view(-1), ignore_index=-100, reduction="sum"))
            count += int((lab != -100).sum())
    return total / count


def encode_proteins(tokenizer, sequences: list[str]) -> list[np.ndarray]:
    """Residue token ids of each protein (no special tokens), via the ProtBERT-style tokenizer."""
    out = []
    for seq in sequences:
        ids = tokenizer(protbert_text(seq), add_special_tokens=False, verbose=False)["input_ids"]
        out.append(np.asarray(ids, dtype=np.int64))
    return out


# ---------------------------------------------------------------------------- training

def _save_checkpoint(model, tokenizer, out_dir: Path, step: int, cfg: MiniConfig,
                     loss: float | None, heldout: float | None) -> None:
    """Write step<N>/ atomically: model (in cfg.save_dtype), tokenizer and protiso_mini.json."""
    import torch

    final = out_dir / f"step{step}"
    tmp = out_dir / f".step{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    m = copy.deepcopy(model).to(getattr(torch, cfg.save_dtype))
    m.config.protiso_label = LABEL
    m.save_pretrained(tmp)
    # Weights are stored in save_dtype to keep the package small, but the config asks for
    # float32 so a plain from_pretrained computes in full precision.
    conf = json.loads((tmp / "config.json").read_text())
    conf["dtype"] = "float32"
    (tmp / "config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(tmp)
    (tmp / "vocab.txt").write_text("\n".join(PROTBERT_VOCAB) + "\n")
    meta = {"label": LABEL, "model": "protiso-mini", "step": step, "train_loss": loss,
            "heldout_loss": heldout, "saved_dtype": cfg.save_dtype, "config": cfg.to_dict()}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (tmp / "README.md").write_text(
        f"# protiso-mini, step {step}\n\n{LABEL}\n\n"
        "BERT masked LM (transformers BertForMaskedLM) with ProtBERT's tokenizer conventions: "
        "residues separated by spaces, U/Z/O/B mapped to X, `[CLS] ... [SEP]`. Trained by "
        "`protiso train-mini` on the bundled Swiss-Prot sample (data (c) UniProt Consortium, "
        f"CC BY 4.0). Weights stored in {cfg.save_dtype}. Training config and loss: "
        f"`{META_FILE}` here and `../{TRAINING_FILE}`.\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def train(out_dir: Path | str, cfg: MiniConfig | None = None, fasta: Path | str = SAMPLE_FASTA,
          progress: Callable[[int, int, float], None] | None = None, resume: bool = True,
          state_every: int = 100) -> TrainResult:
    """Train protiso-mini on `fasta` and write checkpoints + training.json under `out_dir`.

    `progress(step, total, loss)` is called after every step. With `resume`, a state left by an
    interrupted run with the same config continues where it stopped (the resume state is
    saved at every checkpoint and every `state_every` steps)."""
    import torch

    cfg = cfg or MiniConfig()
    if cfg.steps < 1:
        raise InputError(f"steps must be >= 1, got {cfg.steps}")
    if cfg.max_length < 8:
        raise InputError(f"max_length must be >= 8, got {cfg.max_length}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(out_dir, cfg, Path(fasta), progress, resume, state_every)
    finally:
        torch.set_num_threads(prev_threads)


def _train(out_dir: Path, cfg: MiniConfig, fasta: Path, progress, resume: bool,
           state_every: int) -> TrainResult:
    import torch

    started = time.time()
    records = read_fasta(fasta)
    names = [n for n, _ in records]
    tokenizer = make_tokenizer(out_dir / RESUME_DIR / "tokenizer", cfg.max_length)
    tokens = encode_proteins(tokenizer, [s for _, s in records])
    train_idx, held_idx = split_heldout(names, cfg.n_heldout, cfg.seed)
    train_tokens = [tokens[i] for i in train_idx]
    held_tokens = [tokens[i] for i in held_idx]
    lengths = np.array([len(t) for t in train_tokens])
    schedule = _Schedule(lengths, cfg)

    model = build_model(cfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))

    state_path = out_dir / RESUME_DIR / "state.pt"
    losses: list[float] = []
    saved: list[int] = []
    heldout: dict[int, float] = {}
    step = 0
    prior_seconds = 0.0
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["config"] == cfg.result_dict() and state["fasta"] == str(fasta):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            losses, saved = state["losses"], state["saved"]
            heldout = {int(k): v for k, v in state["heldout"].items()}
            step, prior_seconds = state["step"], state["seconds"]

    def save_state() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"config": cfg.result_dict(), "fasta": str(fasta), "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "losses": losses, "saved": saved, "heldout": heldout, "step": step,
                    "seconds": prior_seconds + time.time() - started}, tmp)
        os.replace(tmp, state_path)

    def checkpoint(at: int) -> None:
        heldout[at] = mlm_loss(model, held_tokens, cfg.max_length, seed=cfg.seed, mask_prob=cfg.mask_prob)
        model.train()
        _save_checkpoint(model, tokenizer, out_dir, at, cfg, losses[at - 1] if at else None, heldout[at])
        if at not in saved:
            saved.append(at)
        save_state()

    model.train()
    if step == 0 and 0 in cfg.save_steps and 0 not in saved:
        checkpoint(0)
    deadline = None if cfg.max_minutes is None else started + cfg.max_minutes * 60  # per invocation
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, 2, step])
        batch = schedule.batch(step)
        ids, attn = collate([train_tokens[i] for i in batch], cfg.max_length, rng)
        masked, labels = mask_tokens(ids, cfg.mask_prob, rng)
        out = model(input_ids=torch.from_numpy(masked), attention_mask=torch.from_numpy(attn),
                    labels=torch.from_numpy(labels))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        losses.append(float(out.loss.detach()))
        if progress:
            progress(step, cfg.steps, losses[-1])
        out_of_time = deadline is not None and time.time() >= deadline
        if step in cfg.save_steps or step == cfg.steps or out_of_time:
            checkpoint(step)
        elif state_every and step % state_every == 0:
            save_state()
        if out_of_time:
            break

    wall = prior_seconds + time.time() - started
    info = {
        "label": LABEL,
        "model": "protiso-mini",
        "architecture": "BertForMaskedLM",
        "tokenizer": "BertTokenizer, ProtBERT vocabulary and order, do_lower_case=False, "
                     "residues space-separated, U/Z/O/B -> X",
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "data": {"fasta": fasta.name, "proteins": len(records), "training_proteins": len(train_idx),
                 "heldout_proteins": len(held_idx), "residues": int(sum(len(t) for t in tokens)),
                 "heldout_accessions": [names[i] for i in held_idx],
                 "copyright": "Swiss-Prot data (c) UniProt Consortium, CC BY 4.0"},
        "final_step": step,
        "steps_saved": sorted(saved),
        "stopped_early": step < cfg.steps,
        "heldout_loss": {str(k): heldout[k] for k in sorted(heldout)},
        "uniform_loss": math.log(len(PROTBERT_VOCAB)),
        "loss_curve": [[i + 1, round(v, 5)] for i, v in enumerate(losses)],
        "wall_seconds": round(wall, 2),
        "threads": cfg.threads,
        "torch_version": torch.__version__,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    tmp = out_dir / (TRAINING_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, out_dir / TRAINING_FILE)
    for stale in out_dir.glob("step*"):
        if stale.is_dir() and stale.name[4:].isdigit() and int(stale.name[4:]) not in saved:
            shutil.rmtree(stale)
    if step >= cfg.steps:   # finished; a run stopped by max_minutes keeps its state to resume
        shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)
    return TrainResult(out_dir, step, sorted(saved), losses, wall, heldout)


