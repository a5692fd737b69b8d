"""What the report shows, gathered from the catalog (metrics, runs, pair views, spectra).

Each function returns plain rows (dicts) or NumPy arrays; nothing here draws or formats."""
from __future__ import annotations

import re

import numpy as np

from protiso.isotropy.spectra import compute_spectrum, stored_spectra
from protiso.models import mini
from protiso.store import Store, queries

Q = queries("report")

# The paper's published global figures (SwissProt; DESIGN.md), by registry alias and HF id.
PUBLISHED = {
    "prot_bert": {"label": "ProtBERT", "dim": 1024, "isoscore": 0.001658, "effective_dims": 3},
    "prot_bert_bfd": {"label": "ProtBERT-BFD", "dim": 1024, "isoscore": 0.003968, "effective_dims": 6},
    "prot_xlnet": {"label": "ProtXLNet", "dim": 1024, "isoscore": 0.001502, "effective_dims": 3},
    "proteinbert": {"label": "ProteinBERT", "dim": 512, "isoscore": 0.231228, "effective_dims": 120},
}
_HF_IDS = {"Rostlab/prot_bert": "prot_bert", "Rostlab/prot_bert_bfd": "prot_bert_bfd",
           "Rostlab/prot_xlnet": "prot_xlnet"}
PUBLISHED_LOCAL_PROTBERT = 14     # about 14 effective dimensions per amino-acid type (ProtBERT)
_STEP_RE = re.compile(r"^(.*)@step(\d+)$")


def published_key(model: str | None, model_id: str | None, family: str | None) -> str | None:
    """The key in PUBLISHED of a run's model, if the paper reports it."""
    key = model if model in PUBLISHED else _HF_IDS.get(model_id or "")
    if key is None and family == "proteinbert" and model == "proteinbert":
        key = "proteinbert"
    return key if key in PUBLISHED else None


def published_for(model: str | None, model_id: str | None, family: str | None) -> dict | None:
    """The published row for a run's model, if the paper reports one."""
    key = published_key(model, model_id, family)
    return PUBLISHED[key] if key else None


def settings_rows(store: Store) -> list[dict]:
    """Per run, the settings a reader must know to read its numbers: residue limit, what
    happened to longer proteins, dtype, device, layers and filter."""
    return store.sql(Q.run_settings).to_pylist()


def whole_set_rows(store: Store) -> list[dict]:
    """Latest ungrouped global metrics per run, layer and filter, with the run's details."""
    return store.sql(Q.whole_set_rows).to_pylist()


def paper_table(store: Store) -> list[dict]:
    """One row per run and filter at the run's last layer, with the published figures."""
    rows = []
    for r in whole_set_rows(store):
        layers = r["run_layers"] or [r["layer"]]
        if r["layer"] != max(layers):
            continue
        rows.append({**r, "published": published_for(r["model"], r["model_id"], r["family"])})
    return rows


def layer_series(store: Store) -> dict[tuple[str, str], list[dict]]:
    """(run_id, filter) -> rows per layer, for runs with metrics at more than one layer."""
    out: dict = {}
    for r in whole_set_rows(store):
        out.setdefault((r["run_id"], r["filter"]), []).append(r)
    return {k: v for k, v in out.items() if len(v) > 1}


def checkpoint_series(store: Store) -> dict[tuple[str, str], list[dict]]:
    """(base model, filter) -> rows (with 'step') of runs of training checkpoints
    `<model>@step<N>` plus the base model itself (its final step, for protiso-mini)."""
    rows = paper_table(store)
    steps: dict = {}
    for r in rows:
        m = _STEP_RE.match(r["model"] or "")
        if m:
            steps.setdefault((m.group(1), r["filter"]), []).append({**r, "step": int(m.group(2))})
    for r in rows:
        key = (r["model"], r["filter"])
        if key in steps:
            final = _final_step(r["model"])
            if final is not None and all(x["step"] != final for x in steps[key]):
                steps[key].append({**r, "step": final})
    return {k: sorted(v, key=lambda x: x["step"]) for k, v in steps.items() if len(v) > 1}


def _final_step(model: str) -> int | None:
    if model != "protiso-mini":
        return None
    try:
        steps = mini.available_steps()
    except Exception:   # noqa: BLE001 - an installation without the bundled model
        return None
    return max(steps) if steps else None


def group_rows(store: Store) -> dict[tuple[str, int, str, str], list[dict]]:
    """(run_id, layer, filter, group_by) -> latest grouped global rows, largest groups first."""
    out: dict = {}
    for r in store.sql(Q.group_rows).to_pylist():
        out.setdefault((r["run_id"], r["layer"], r["filter"], r["group_by"]), []).append(r)
    return out


def local_rows(store: Store) -> dict[tuple[str, int], list[dict]]:
    """(run_id, layer) -> per-residue-type local rows (plus the pooled row, group_key None)."""
    out: dict = {}
    for r in store.sql(Q.local_rows).to_pylist():
        out.setdefault((r["run_id"], r["layer"]), []).append(r)
    return out


def spectrum(store: Store, run_id: str, layer: int, filter_: str) -> tuple[int, np.ndarray, str]:
    """(n, eigenvalues, source) of a run's layer: stored by `reproduce`, else recomputed."""

    cached = stored_spectra(store, run_id)
    if cached is not None:
        rows = [r for r in cached.to_pylist() if r["layer"] == layer and r["filter"] == filter_]
        if rows:
            rows.sort(key=lambda r: r["rank"])
            return rows[0]["n"], np.array([r["eigenvalue"] for r in rows]), "stored"
    n, lam = compute_spectrum(store, run_id, layer, filter_ or None)
    return n, lam, "recomputed from the embeddings"


def correlation_rows(store: Store) -> list[dict]:
    """The Pearson correlation rows per pair set, alignment, run and layer, with the set's seed."""
    return store.sql(Q.correlation_rows).to_pylist()


def pair_points(store: Store, row: dict, max_points: int = 200_000) -> dict[str, np.ndarray]:
    """Per pair (a deterministic subsample when large): cosine, sq_euclidean, score, identity,
    go_jaccard."""
    tab = store.sql(Q.pair_points, {"pair_set": row["pair_set"], "alignment": row["alignment"],
                                    "run_id": row["run_id"], "layer": row["layer"], "max_points": max_points})
    return {c: tab.column(c).to_numpy(zero_copy_only=False).astype(float) for c in tab.column_names}


def go_bins(store: Store, row: dict, bins: int = 5) -> list[dict]:
    """Per GO-Jaccard bin: pairs, and mean and standard deviation of cosine, squared Euclidean
    distance and identity."""
    return store.sql(Q.go_bins, {"bins": bins, "pair_set": row["pair_set"], "alignment": row["alignment"],
                                 "run_id": row["run_id"], "layer": row["layer"]}).to_pylist()


def runs(store: Store) -> list[dict]:
    return store.sql(Q.runs).to_pylist()


def intrinsic_series(store: Store) -> dict[tuple[str, str], list[dict]]:
    """(run_id, filter) -> whole-set rows with an intrinsic dimension, one per layer."""
    out: dict = {}
    for r in store.sql(Q.intrinsic_rows).to_pylist():
        out.setdefault((r["run_id"], r["filter"]), []).append(r)
    return out


def rogue_rows(store: Store) -> list[dict]:
    """Whole-set rows at each run's last layer with their rogue dimensions."""
    return store.sql(Q.rogue_rows).to_pylist()


def interval_rows(store: Store) -> list[dict]:
    """Latest rows with bootstrap intervals and bias."""
    return store.sql(Q.interval_rows).to_pylist()


def go_semantic_rows(store: Store) -> dict[tuple, list[dict]]:
    """(pair_set, alignment, run_id, layer) -> one row per GO similarity measure (Pearson)."""
    out: dict = {}
    for r in store.sql(Q.go_semantic_rows).to_pylist():
        out.setdefault((r["pair_set"], r["alignment"], r["run_id"], r["layer"]), []).append(r)
    return out


def go_measure_bins(store: Store, row: dict, measure: str, bins: int = 5) -> list[dict]:
    """Per bin of a GO similarity measure in [0, 1]: pairs, mean and sd of cosine and identity."""
    return store.sql(Q.go_measure_bins, {"bins": bins, "pair_set": row["pair_set"], "alignment": row["alignment"],
                                         "run_id": row["run_id"], "layer": row["layer"],
                                         "measure": measure}).to_pylist()


def group_labels(store: Store, keys) -> dict:
    """Display text of group keys: GO ids with their names (protiso.go.names.label)."""
    from protiso.go.names import label

    return label(store, keys)
