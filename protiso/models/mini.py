"""protiso-mini: a small protein masked language model that protiso trains itself
(`protiso.training.mini` holds the trainer).

No model hub is reachable from where protiso is developed, so the project ships a tiny BERT
(transformers `BertForMaskedLM`) trained on the bundled 2,000-protein Swiss-Prot sample with
ProtBERT's tokenizer conventions: ProtBERT's vocabulary in ProtBERT's order, residues separated
by spaces, U/Z/O/B mapped to X, `[CLS] ... [SEP]`. It is a DEMONSTRATION model that lets every
command run offline; it is not a stand-in for published pLMs (ProtBERT, ESM-2, ProtT5), and
figures computed with it say nothing about them.

Checkpoints from several points of training are kept (`step<N>/` directories, each a
`save_pretrained` model + tokenizer + `protiso_mini.json`) so isotropy can be followed over
training; `training.json` beside them holds the full config, seed, loss curve and wall time.
"""
from __future__ import annotations

import json
from pathlib import Path

from protiso.errors import NotFoundError

PROTBERT_VOCAB = (
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "L", "A", "G", "V", "E", "S", "I", "K", "R", "D", "T", "P", "N", "Q", "F",
    "Y", "M", "H", "C", "W", "X", "U", "B", "Z", "O",
)
STANDARD_RESIDUES = "LAGVESIKRDTPNQFYMHCW"  # ids 5..24: random replacements draw from these
RARE_TO_X = str.maketrans({"U": "X", "Z": "X", "O": "X", "B": "X"})

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "data" / "protiso-mini"
META_FILE = "protiso_mini.json"
TRAINING_FILE = "training.json"
RESUME_DIR = ".resume"
LABEL = ("protiso-mini: a demonstration protein masked LM trained by protiso on 2,000 Swiss-Prot "
         "proteins; not a stand-in for published protein language models.")



# ---------------------------------------------------------------------------- checkpoints

def checkpoint_dir(step: int | None = None, root: Path | str | None = None) -> Path:
    """Directory of the shipped (or `root`'s) checkpoint at `step`; None = the final one."""
    root = Path(root) if root is not None else PACKAGE_DIR
    info_path = root / TRAINING_FILE
    if not info_path.exists():
        raise NotFoundError(f"no protiso-mini checkpoints in {root} (missing {TRAINING_FILE}); "
                            "run `protiso train-mini --out DIR` to train them")
    info = json.loads(info_path.read_text())
    steps = sorted(info["steps_saved"])
    if step is None:
        step = info["final_step"]
    if step not in steps:
        raise NotFoundError(f"protiso-mini has no checkpoint at step {step}; "
                            f"available steps: {', '.join(map(str, steps))}")
    return root / f"step{step}"


def available_steps(root: Path | str | None = None) -> list[int]:
    """Training steps with a saved checkpoint, ascending (empty when none are present)."""
    root = Path(root) if root is not None else PACKAGE_DIR
    info_path = root / TRAINING_FILE
    if not info_path.exists():
        return []
    return sorted(json.loads(info_path.read_text())["steps_saved"])


def protbert_text(sequence: str) -> str:
    """A protein the ProtBERT way: upper case, U/Z/O/B -> X, residues separated by spaces."""
    return " ".join(sequence.upper().translate(RARE_TO_X))


def make_tokenizer(directory: Path | str, model_max_length: int | None = None):
    """A BertTokenizer with ProtBERT's vocabulary and settings, written to `directory`."""
    from transformers import BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(PROTBERT_VOCAB) + "\n")
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    return BertTokenizer(str(vocab), do_lower_case=False, **extra)



def load_checkpoint(step: int | None = None, root: Path | str | None = None, dtype=None):
    """(BertForMaskedLM, BertTokenizer) of a protiso-mini checkpoint, loaded offline in float32
    unless `dtype` says otherwise."""
    import torch
    from transformers import BertForMaskedLM, BertTokenizer

    d = checkpoint_dir(step, root)
    model = BertForMaskedLM.from_pretrained(d, dtype=dtype or torch.float32, local_files_only=True)
    tok = BertTokenizer.from_pretrained(d, local_files_only=True)
    return model, tok

