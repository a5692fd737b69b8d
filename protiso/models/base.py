"""The model adapter interface: what `protiso embed` needs from a protein language model.

An adapter owns a loaded model, its tokenisation and the knowledge of which output positions
are residues. `embed_batch` takes plain amino-acid strings (upper case, any letters; the adapter
maps rare residues as its family expects) and returns, per sequence, either

- per-layer residue vectors (`residues`): one row per input residue, special and padding
  tokens already removed, in sequence order; the embed loop pools these (mean over residues),
  accumulates per-residue statistics and can store them; or
- per-layer global vectors (`pooled`): for models whose output is a protein-level vector
  (ProteinBERT), used as is.

Layers are hidden-state indices: 0 = output of the embedding layer, `num_layers` = last layer.
Models with only a global output have `outputs_residues = False` and accept only their
`num_layers` (the "last" layer).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

# dtype names accepted by adapters (the CLI's "auto" is resolved before the adapter sees it)
DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class BatchOutput:
    """Output of `ModelAdapter.embed_batch` for a batch of n sequences.

    residues[i][layer] -> float32 array (len(sequence i), dim), residue positions only.
    pooled[i][layer]   -> float32 array (dim,), a global vector computed by the model itself.
    Exactly one of the two is set (the one matching the adapter's `outputs_residues`)."""

    residues: list[dict[int, np.ndarray]] | None = None
    pooled: list[dict[int, np.ndarray]] | None = None


@dataclass
class LoadOptions:
    """How to load a model: device ('cpu', 'cuda', 'cuda:1', 'mps'), dtype (one of DTYPES;
    for bfloat16/float16 on CPU adapters may keep fp32 weights and autocast), and whether
    the network may be used (False: local files and the Hugging Face cache only)."""

    device: str = "cpu"
    dtype: str = "float32"
    offline: bool = True
    weights: str | None = None     # a weights file, for models that need one (ProteinBERT)


class ModelAdapter(ABC):
    """A loaded model ready to embed protein sequences. Subclasses set the attributes below."""

    family: str              # e.g. "bert", "xlnet", "esm", "t5", "proteinbert"
    model_id: str            # Hugging Face id or resolved local directory
    revision: str            # commit hash / weights hash / "local"; part of the run key
    dim: int                 # width of the returned vectors
    num_layers: int          # index of the last hidden state (0 = embeddings)
    max_residues: int        # most residues one sequence may have in a forward pass
    outputs_residues: bool = True
    device: str = "cpu"
    dtype: str = "float32"
    extra: dict              # optional free-form provenance recorded with a run (set in __init__)

    @abstractmethod
    def embed_batch(self, sequences: list[str], layers: list[int]) -> BatchOutput:
        """Embed a batch of sequences (each at most `max_residues` long) at the given layers.

        Must not depend on batch composition beyond floating-point noise (padding is masked).
        Raises the framework's out-of-memory error unchanged so the caller can split the batch."""

    def set_dtype(self, dtype: str) -> None:
        """Switch compute precision (used by `--dtype auto`'s parity probe). Default: fp32 only."""
        if dtype != "float32":
            raise ValueError(f"{self.family} adapter supports only float32, not {dtype}")
        self.dtype = dtype

    def validate_layers(self, layers: list[int]) -> list[int]:
        """Check layer indices against the model; returns them sorted and deduplicated."""
        out = sorted(set(int(x) for x in layers))
        allowed = range(self.num_layers + 1) if self.outputs_residues else [self.num_layers]
        bad = [x for x in out if x not in allowed]
        if bad or not out:
            from protiso.errors import InputError
            raise InputError(
                f"layer(s) {bad or layers} not available for {self.model_id}: "
                + (f"valid layers are 0..{self.num_layers}" if self.outputs_residues
                   else f"this model outputs only a global vector (layer {self.num_layers})"))
        return out

    def describe(self) -> dict:
        """Provenance fields recorded with a run."""
        return {"family": self.family, "model_id": self.model_id, "revision": self.revision,
                "dim": self.dim, "num_layers": self.num_layers, "max_residues": self.max_residues,
                "device": self.device, "dtype": self.dtype, **getattr(self, "extra", {})}


def parse_layers(spec: str | int | list[int] | None, num_layers: int) -> list[int]:
    """'last' (default) | 'all' | '0,3,-1' | int | list -> sorted hidden-state indices.

    Negative numbers count from the end (-1 = last)."""
    from protiso.errors import InputError

    if spec is None or spec == "last":
        return [num_layers]
    if spec == "all":
        return list(range(num_layers + 1))
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, str):
        try:
            items = [int(s) for s in spec.replace(" ", "").split(",") if s]
        except ValueError:
            raise InputError(f"layers {spec!r}: expected 'last', 'all' or a comma-separated "
                             "list of layer numbers (negative counts from the end)") from None
    else:
        items = [int(x) for x in spec]
    out = []
    for x in items:
        y = x + num_layers + 1 if x < 0 else x
        if not 0 <= y <= num_layers:
            raise InputError(f"layer {x} out of range 0..{num_layers} (or -1..-{num_layers + 1})")
        out.append(y)
    if not out:
        raise InputError(f"layers {spec!r}: no layer given")
    return sorted(set(out))
