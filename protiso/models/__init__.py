"""Protein language models: the adapter interface (base), the registry of aliases (registry)
and the Hugging Face adapter for BERT/XLNet/ESM/T5 families (hf)."""
from protiso.models.base import BatchOutput, LoadOptions, ModelAdapter, parse_layers
from protiso.models.device import resolve_device
from protiso.models.registry import REGISTRY, ModelSpec, list_models, load, load_model, register, resolve

__all__ = ["BatchOutput", "LoadOptions", "ModelAdapter", "parse_layers", "REGISTRY", "ModelSpec",
           "list_models", "load", "load_model", "register", "resolve", "resolve_device"]
