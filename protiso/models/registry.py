"""Model registry: aliases -> where the weights come from and how to load them.

`REGISTRY` maps an alias to a `ModelSpec`. A spec's `loader` is a callable or a
"module:function" string (imported only when the model is loaded, so heavy frameworks stay
optional) called as loader(spec, source, LoadOptions) -> ModelAdapter. Areas add their own
entries with `register(ModelSpec(...))` (e.g. protiso.models.proteinbert adds `proteinbert`;
list its module in PLUGIN_MODULES so the registry imports it).

Anything not in the registry is taken as a local directory (if it exists) or a Hugging Face id,
loaded by the Hugging Face adapter with the family detected from its config.
`protiso-mini@step<N>` names an intermediate checkpoint of the bundled demonstration model.
"""
from __future__ import annotations

import difflib
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protiso.errors import NotFoundError
from protiso.models.base import LoadOptions, ModelAdapter
from protiso.models.device import resolve_device

HF_LOADER = "protiso.models.hf:load_hf"


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. `source` is a Hugging Face id or a local directory; for the bundled
    protiso-mini it is resolved at load time (see `resolve`)."""

    alias: str
    source: str
    description: str
    family: str | None = None          # None: detected from the model's config
    dim: int | None = None             # informational, for `protiso models`
    num_layers: int | None = None
    loader: str | Callable = HF_LOADER
    options: dict = field(default_factory=dict)   # family-specific extras passed to the loader


REGISTRY: dict[str, ModelSpec] = {}

# Modules that register extra entries when imported (optional dependencies are imported lazily
# by their loaders, so importing these must be cheap).
PLUGIN_MODULES: list[str] = ["protiso.models.proteinbert"]
_plugins_loaded = False


def register(spec: ModelSpec) -> None:
    REGISTRY[spec.alias] = spec


def _builtin() -> None:
    register(ModelSpec("prot_bert", "Rostlab/prot_bert", "ProtBERT (UniRef100), Elnaggar et al. 2021",
                       "bert", 1024, 30))
    register(ModelSpec("prot_bert_bfd", "Rostlab/prot_bert_bfd", "ProtBERT-BFD (BFD), Elnaggar et al. 2021",
                       "bert", 1024, 30))
    register(ModelSpec("prot_xlnet", "Rostlab/prot_xlnet", "ProtXLNet (UniRef100), Elnaggar et al. 2021",
                       "xlnet", 1024, 30))
    register(ModelSpec("prot_t5_xl", "Rostlab/prot_t5_xl_half_uniref50-enc",
                       "ProtT5-XL-UniRef50 encoder (half-precision weights)", "t5", 1024, 24))
    register(ModelSpec("prot_t5_xl_full", "Rostlab/prot_t5_xl_uniref50",
                       "ProtT5-XL-UniRef50 (full model, encoder used)", "t5", 1024, 24))
    for name, dim, n in [("esm2_t6_8M_UR50D", 320, 6), ("esm2_t12_35M_UR50D", 480, 12),
                         ("esm2_t30_150M_UR50D", 640, 30), ("esm2_t33_650M_UR50D", 1280, 33),
                         ("esm2_t36_3B_UR50D", 2560, 36), ("esm2_t48_15B_UR50D", 5120, 48)]:
        alias = "_".join(name.split("_")[:3])  # esm2_t6_8M
        register(ModelSpec(alias, f"facebook/{name}", f"ESM-2 {name.split('_')[2]} (Lin et al. 2023)",
                           "esm", dim, n))
    register(ModelSpec("ankh_base", "ElnaggarLab/ankh-base", "Ankh base encoder (Elnaggar et al. 2023)",
                       "t5", 768, 48, options={"spaced": False}))
    register(ModelSpec("ankh_large", "ElnaggarLab/ankh-large", "Ankh large encoder (Elnaggar et al. 2023)",
                       "t5", 1536, 48, options={"spaced": False}))
    register(ModelSpec("protiso-mini", "protiso-mini",
                       "protiso's own small demonstration masked LM (BERT, ProtBERT conventions), "
                       "trained on the bundled sample; not a stand-in for published pLMs", "bert"))


_builtin()
MINI_ALIAS = "protiso-mini"
DEFAULT_MODEL = MINI_ALIAS
_MINI_STEP = re.compile(r"^protiso-mini@step(\d+)$")


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for mod in PLUGIN_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:   # the plugin exists but is broken: say so
                raise


def list_models() -> list[ModelSpec]:
    """Registered models, aliases sorted (protiso-mini first)."""
    _load_plugins()
    return sorted(REGISTRY.values(), key=lambda s: (s.alias != MINI_ALIAS, s.alias))


@dataclass(frozen=True)
class Resolved:
    """A model name resolved to a spec and a concrete source (HF id or directory)."""

    name: str
    spec: ModelSpec
    source: str


def resolve(name: str) -> Resolved:
    """Alias, `protiso-mini@step<N>`, local directory or Hugging Face id -> Resolved."""
    _load_plugins()
    m = _MINI_STEP.match(name)
    if name == MINI_ALIAS or m:
        try:
            from protiso.models import mini
        except ImportError as exc:
            raise NotFoundError(f"model {name!r}: the bundled protiso-mini model is not available "
                                f"in this installation ({exc})") from exc
        step = int(m.group(1)) if m else None
        if step is not None and step not in mini.available_steps():
            raise NotFoundError(f"model {name!r}: no checkpoint at step {step}; available steps: "
                                f"{mini.available_steps()}")
        path = Path(mini.checkpoint_dir(step))
        if not (path / "config.json").exists():
            raise NotFoundError(f"model {name!r}: weights not found at {path}; "
                                "train them with `protiso train-mini`")
        return Resolved(name, REGISTRY[MINI_ALIAS], str(path))
    if name in REGISTRY:
        spec = REGISTRY[name]
        return Resolved(name, spec, spec.source)
    path = Path(name).expanduser()
    if not path.exists() and "/" not in name:   # hub ids are owner/name: this is a mistyped alias
        close = difflib.get_close_matches(name, list(REGISTRY) + [MINI_ALIAS], n=1, cutoff=0.6)
        if close:
            raise NotFoundError(f"unknown model {name!r}; did you mean {close[0]!r}? "
                                "(`protiso models` lists the aliases)")
    if path.exists():
        if not path.is_dir():
            raise NotFoundError(f"model {name!r}: not a directory (expected a save_pretrained directory)")
        source = str(path.resolve())
    else:
        source = name
    return Resolved(name, ModelSpec(name, source, "Hugging Face model (family from its config)"), source)


def load_model(name: str, options: LoadOptions | None = None) -> ModelAdapter:
    """Resolve `name` and load its adapter."""
    res = resolve(name)
    loader = res.spec.loader
    if isinstance(loader, str):
        module, func = loader.split(":")
        loader = getattr(importlib.import_module(module), func)
    return loader(res.spec, res.source, options or LoadOptions())


def model_rows() -> list[dict]:
    """The registry as rows for `protiso models`: alias, source, family, dim, layers, a note
    (for protiso-mini: its checkpoints, with dim and layers read from its config) and description."""
    rows = []
    for spec in list_models():
        dim, layers, note = spec.dim, spec.num_layers, ""
        if spec.alias == MINI_ALIAS:
            from protiso.models import mini   # the bundled demo model (an optional install part)

            steps = mini.available_steps()
            note = f"steps {', '.join(map(str, steps))}" if steps else "not trained yet (protiso train-mini)"
            if steps:
                cfg = json.loads((mini.checkpoint_dir() / "config.json").read_text())
                dim, layers = cfg.get("hidden_size"), cfg.get("num_hidden_layers")
        rows.append({"alias": spec.alias, "source": spec.source, "family": spec.family or "auto",
                     "dim": dim, "layers": layers, "note": note, "description": spec.description})
    return rows


def load(name: str, device: str = "auto", weights: str | None = None, offline: bool | None = None,
         dtype: str = "float32") -> ModelAdapter:
    """The one way protiso loads a model: resolve the name (alias, `protiso-mini@step<N>`,
    directory or hub id) and the device, then load the adapter in `dtype`."""
    return load_model(name, LoadOptions(device=resolve_device(device), dtype=dtype, weights=weights,
                                        offline=bool(offline) if offline is not None else False))
