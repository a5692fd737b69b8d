"""An embedding job's settings resolved against the loaded model: device, layers, lengths, token
budget and precision (`--dtype auto` keeps reduced precision only where it matches float32)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protiso.errors import InputError
from protiso.models.base import BatchOutput, ModelAdapter, parse_layers
from protiso.models.device import resolve_device  # noqa: F401 - part of this module's API

LENGTH_POLICIES = ("truncate", "chunk", "skip")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
ENGINES = ("local", "ray")
PARITY_MIN = 0.999          # dtype auto uses reduced precision only at this cosine to fp32
DEFAULT_MAX_TOKENS = 16384  # padded tokens per batch on CPU (GPUs: see default_max_tokens)


def choice(value: str, choices, what: str) -> str:
    """`value` if it is one of `choices`, else an InputError naming the value and the choices."""
    if value not in choices:
        raise InputError(f"{what} {value!r}: choose one of {', '.join(choices)}")
    return value


def default_max_tokens(device: str) -> int:
    return DEFAULT_MAX_TOKENS if device == "cpu" else 65536


def _low_precision_candidate(device: str) -> str | None:
    """The reduced precision worth trying on this device, if any."""
    import torch

    if device == "cpu":
        try:
            return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except Exception:   # noqa: BLE001
            return None
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return None


def pooled_vectors(out: BatchOutput, layers: list[int]) -> list[dict[int, np.ndarray]]:
    """Per sequence, layer -> mean over residue rows (float32; sums in float64)."""
    if out.pooled is not None:
        return [{la: np.asarray(p[la], np.float32) for la in layers} for p in out.pooled]
    return [{la: r[la].mean(axis=0, dtype=np.float64).astype(np.float32) for la in layers}
            for r in out.residues]


def parity(adapter: ModelAdapter, sequences: list[str], layers: list[int], low: str) -> float:
    """Minimum cosine similarity between `low`-precision and fp32 pooled embeddings."""
    adapter.set_dtype("float32")
    ref = pooled_vectors(adapter.embed_batch(sequences, layers), layers)
    adapter.set_dtype(low)
    test = pooled_vectors(adapter.embed_batch(sequences, layers), layers)
    worst = 1.0
    for a, b in zip(ref, test):
        for la in layers:
            x, y = a[la].astype(np.float64), b[la].astype(np.float64)
            worst = min(worst, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)))
    return worst


@dataclass
class ModelConfig:
    """A run's model facts and the settings derived from them (layers, lengths, budget, dtype).

    Resolved once from a loaded adapter (`resolve_config`); picklable, so the Ray engine resolves
    it on a worker and ships it to the driver and the actors."""

    model_id: str
    revision: str
    family: str
    dim: int
    num_layers: int
    max_residues: int
    outputs_residues: bool
    device: str
    details: dict
    layers: list[int]
    max_length: int
    overlap: int
    max_tokens: int
    dtype: str
    dtype_requested: str
    parity_cos: float | None
    pooling: str


def resolve_config(adapter: ModelAdapter, layers, dtype: str, max_tokens: int | None, max_length: int | None,
                   long: str, local_stats: bool, store_local: bool, chunk_overlap: int | None,
                   probe: list[str]) -> ModelConfig:
    """Validate the settings against the loaded model, pick the dtype (--dtype auto: reduced
    precision only where it matches fp32 on the `probe` sequences) and set it on the adapter."""
    if not adapter.outputs_residues and layers in (None, "last", "all"):
        layer_list = [adapter.num_layers]          # a global output has a single "layer"
    else:
        layer_list = adapter.validate_layers(parse_layers(layers, adapter.num_layers))
    limit_len = adapter.max_residues
    if max_length is None:
        max_length = limit_len
    elif not 1 <= max_length <= limit_len:
        raise InputError(f"max length {max_length}: must be between 1 and the model's limit {limit_len}")
    if not adapter.outputs_residues:
        if long == "chunk":
            raise InputError(f"length policy 'chunk' needs per-residue outputs; {adapter.model_id} "
                             "outputs only a global vector: use truncate or skip")
        if local_stats or store_local:
            raise InputError(f"per-residue statistics or vectors need per-residue outputs; "
                             f"{adapter.model_id} outputs only a global vector")
    overlap = chunk_overlap if chunk_overlap is not None else max_length // 4
    if long == "chunk" and not 0 <= overlap < max_length:
        raise InputError(f"chunk overlap {overlap} must be in [0, max length {max_length})")
    dev = adapter.device
    parity_cos = None
    if dtype == "auto":
        low = _low_precision_candidate(dev)
        chosen = "float32"
        probe = [s[:min(max_length, 256)] for s in probe]
        if low is not None and probe:
            try:
                parity_cos = parity(adapter, probe, layer_list, low)
            except ValueError:        # adapter without reduced precision
                parity_cos = None
            if parity_cos is not None and parity_cos >= PARITY_MIN:
                chosen = low
        adapter.set_dtype(chosen)
    else:
        try:
            adapter.set_dtype(dtype)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        chosen = dtype
    return ModelConfig(adapter.model_id, adapter.revision, adapter.family, adapter.dim, adapter.num_layers,
                       limit_len, adapter.outputs_residues, dev, adapter.describe(), layer_list, max_length,
                       overlap, max_tokens or default_max_tokens(dev), chosen, dtype, parity_cos,
                       "mean" if adapter.outputs_residues else "model")


