"""ESM `extract.py` output: one torch .pt file per protein, a directory of them or single files.

Each file is a dict {"label": str, "representations": {layer: (L, d)}, "mean_representations":
{layer: (d,)}, optionally "bos_representations": {layer: (d,)}, "contacts": ...}. The id is the
label through `accession()` (extract.py labels are FASTA headers: 'sp|P12345|NAME ...' ->
'P12345'). Which representation is read: `key` if given ('mean_representations',
'representations' or 'bos_representations'), else the mean for level global, the per-residue
one for level local, and for 'auto' the mean when present. Files are loaded with
weights_only=True (no arbitrary unpickling) and hashed from the same bytes they are loaded from.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterator

import numpy as np

from protiso.interchange._common import (Batch, Source, accession, fail, manifest_sha256,
                                         short)

KINDS = {"mean_representations": "global", "bos_representations": "global",
         "representations": "local"}
SUFFIXES = (".pt", ".pth")


def list_pt_files(path: Path) -> list[Path]:
    """The .pt files of a directory in name order (not recursive), or the file itself."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
    if not files:
        fail(path, "directory holds no .pt files", "pass the extract.py output directory")
    return files


def _as_layers(layer) -> list[int] | None:
    if layer is None:
        return None
    return [int(layer)] if isinstance(layer, (int, np.integer)) else [int(x) for x in layer]


class EsmReader:
    """Streams ESM .pt files of one path (a file or a directory); see module docstring."""

    def __init__(self, path: Path, key: str | None = None, level: str = "auto", layer=None, **_):
        self.path = path
        self.files = list_pt_files(path)
        self.digest: str | None = None
        first, _ = self._load(self.files[0])
        kind = key or self._default_kind(first, level)
        if kind not in KINDS:
            fail(path, f"unknown representation {kind!r}",
                 f"use one of {', '.join(KINDS)}", key=key)
        found = KINDS[kind]
        if level not in ("auto", found):
            fail(self.files[0], f"{kind} holds {found} embeddings, not {level}",
                 "choose the representation that matches the level")
        reps = first.get(kind)
        if not isinstance(reps, dict) or not reps:
            have = [k for k in KINDS if k in first]
            if found == "global" and "representations" in have:
                fail(self.files[0], f"per-residue matrices only (no {kind!r}) where per-protein "
                     "vectors were expected", "import with level 'local', or re-run extract.py "
                     "with --include mean")
            fail(self.files[0], f"no {kind!r} in the file (it has {', '.join(have) or 'none'})",
                 "re-run esm extract.py with --include mean per_tok, or choose another level")
        avail = sorted(int(k) for k in reps)
        wanted = _as_layers(layer)
        if wanted is None:
            self.layers = avail
        else:  # negative layers count back from the highest layer in the file (ESM's -1)
            self.layers = [w if w >= 0 else avail[-1] + 1 + w for w in wanted]
            missing = [w for w, r in zip(wanted, self.layers) if r not in avail]
            if missing:
                fail(self.files[0], f"layer {missing[0]} not in the file (layers {avail})",
                     "pick one of those layers or re-run extract.py with --repr_layers")
        self.kind, self.level = kind, found
        t0 = reps[self.layers[0]]
        self.dim = int(t0.shape[-1])
        dtype = str(t0.dtype).replace("torch.", "")
        self.source = Source(path=path, format="esm-pt",
                             size_bytes=sum(f.stat().st_size for f in self.files), sha256=None,
                             level=found, dim=self.dim, dtype=dtype, layers=list(self.layers),
                             n_items=len(self.files) * len(self.layers),
                             ids_from=f"label ({kind})", files=len(self.files))

    @staticmethod
    def _default_kind(obj: dict, level: str) -> str:
        if level == "local" or (level == "auto" and "mean_representations" not in obj
                                and "representations" in obj):
            return "representations"
        return "mean_representations"

    def _load(self, file: Path) -> tuple[dict, tuple[int, str]]:
        import torch  # lazy: only ESM input needs torch
        try:
            data = file.read_bytes()
        except OSError as exc:
            fail(file, f"cannot read ({exc.strerror})", "check the path and permissions")
        if not data:
            fail(file, "empty file", "re-run extract.py for this protein")
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt or foreign files
            fail(file, f"not a readable torch .pt file ({short(exc)})",
                 "the file is truncated or not an ESM extract.py output: extract it again")
        if not isinstance(obj, dict) or not isinstance(obj.get("label"), str):
            fail(file, "not an ESM extract.py output (no 'label')",
                 "expected a dict with 'label' and '*representations' per protein")
        return obj, (len(data), hashlib.sha256(data).hexdigest())

    def _tensor(self, file: Path, obj: dict, layer: int, pid: str, key: str) -> np.ndarray:
        import torch
        reps = obj.get(self.kind)
        if not isinstance(reps, dict):
            other = [k for k in KINDS if k in obj]
            fail(file, f"no {self.kind!r} (the file has {', '.join(other) or 'none'})",
                 "all files must come from the same extract.py run", protein=pid, key=key)
        t = reps.get(layer)
        if not isinstance(t, torch.Tensor):
            fail(file, f"no layer {layer} (layers {sorted(reps)})",
                 "all files must come from the same extract.py run", protein=pid, key=key)
        if not t.is_floating_point():
            fail(file, f"tensor dtype {t.dtype} is not floating point",
                 "export float embeddings", protein=pid, key=key)
        want = 1 if self.level == "global" else 2
        if t.ndim != want:
            what = ("per-residue matrix where a per-protein vector was expected" if t.ndim == 2
                    else f"tensor of shape {tuple(t.shape)}")
            fail(file, f"{what} (layer {layer}, shape {tuple(t.shape)})",
                 "use the mean representations or import with level 'local'",
                 protein=pid, key=key)
        if int(t.shape[-1]) != self.dim or (want == 2 and t.shape[0] == 0):
            fail(file, f"shape {tuple(t.shape)} (layer {layer}) does not match dimension "
                 f"{self.dim} of {self.files[0].name}",
                 "all proteins must come from the same model", protein=pid, key=key)
        # exact for float16 / bfloat16; copied so a view never pins a larger saved storage
        return np.array(t.detach().to(torch.float32).numpy(), copy=True)

    def chunks(self, batch_rows: int) -> Iterator[Batch]:
        pending: dict[int, tuple[list, list, list]] = {l: ([], [], []) for l in self.layers}
        rows, digests = 0, []
        for file in self.files:
            obj, (size, sha) = self._load(file)
            digests.append((file.name, size, sha))
            key = obj["label"]
            pid = accession(key)
            for layer in self.layers:
                arr = self._tensor(file, obj, layer, pid, key)
                ids, keys, arrs = pending[layer]
                ids.append(pid)
                keys.append(key)
                arrs.append(arr)
                rows += 1 if self.level == "global" else arr.shape[0]
            if rows >= batch_rows:  # bound the rows held over all layers together
                yield from self._flush(pending)
                rows = 0
        yield from self._flush(pending)
        self.digest = (manifest_sha256(digests) if self.path.is_dir() else digests[0][2])

    def _flush(self, pending) -> Iterator[Batch]:
        for layer, (ids, keys, arrs) in pending.items():
            if not ids:
                continue
            if self.level == "global":
                yield Batch(ids=list(ids), layer=layer, vectors=np.stack(arrs), keys=list(keys))
            else:
                yield Batch(ids=list(ids), layer=layer, matrices=list(arrs), keys=list(keys))
            ids.clear(), keys.clear(), arrs.clear()

    def checksum(self) -> str:
        """sha256 of the file, or of the directory's manifest (see Source)."""
        from protiso.interchange._common import sha256_file
        entries = [(f.name, f.stat().st_size, sha256_file(f)) for f in self.files]
        return manifest_sha256(entries) if self.path.is_dir() else entries[0][2]

    def close(self) -> None:
        pass
