"""Choosing the torch device: auto prefers CUDA, then Apple MPS, then the CPU."""
from __future__ import annotations

from protiso.errors import InputError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps': Apple MPS is not available on this machine")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise InputError(f"device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
    return device
