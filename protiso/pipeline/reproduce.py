"""The paper's pipeline in one call: embed, isotropy (global, per layer, local, per group),
spectra, a pair sample with alignments, embedding distances and GO overlaps.

Every step first looks in the catalog for its finished result and is skipped when it is
there, so an interrupted `reproduce` simply runs again (the long steps, embedding and the
pair jobs, also resume inside themselves). Models that cannot be loaded here (no network,
no local copy, no weights file) are reported with the reason and the rest goes on.

Correlations are not a step: they are SQL views (pair_correlations) over the finished pair
jobs, read by `correlations()` and the report.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping

import numpy as np
import pyarrow as pa

from protiso.embedding import embed
from protiso.errors import InputError, ProtisoError
from protiso.isotropy.engine import isotropy
from protiso.isotropy.spectra import SPECTRA_SCHEMA, compute_spectrum, spectra_dataset, stored_spectra
from protiso.models import load
from protiso.pairs.align import Scoring
from protiso.pairs.distances import distance_pair_set
from protiso.pairs.functional import go_pair_set, go_semantic_pair_set
from protiso.pairs.jobs import align_pair_set, alignment_key
from protiso.pairs.sample import sample_pairs
from protiso.query import Subset, as_subset
from protiso.runs import list_runs
from protiso.store import Store, queries

# Intrinsic dimension needs an exact k-NN search over the run's vectors (cost ~ n^2 d): the
# reproduction adds it to every layer's row for runs up to this size (the demo: 2,099 proteins).
INTRINSIC_MAX_PROTEINS = 20_000

Q = queries("pipeline")

PAPER_MODELS = ("prot_bert", "prot_bert_bfd", "prot_xlnet", "proteinbert")
GO_NAMESPACE = "CCO"          # per-group isotropy over the most frequent cellular-component terms
GO_TOP_TERMS = 6
MIN_GROUP = 10                # organisms with fewer proteins are left out of the organism grouping
_GO_RE = re.compile(r"^GO:\d{7}$")


@dataclass
class StepResult:
    """What one step did: status 'ran', 'skipped' (already in the catalog) or 'unavailable'."""

    model: str | None
    step: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ReproduceResult:
    steps: list[StepResult] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)          # model -> run_id
    unavailable: dict[str, str] = field(default_factory=dict)   # model -> reason
    pair_set: str | None = None

    def to_dict(self) -> dict:
        return {"runs": self.runs, "unavailable": self.unavailable, "pair_set": self.pair_set,
                "steps": [asdict(s) for s in self.steps]}


# ------------------------------------------------------------------------------- detection

def _wanted_layers(run, layers: str) -> bool:
    """Does a run hold the requested layers ('last', 'all' or a comma list of indices)?"""
    have = set(int(x) for x in run.layers)
    top = run.num_layers if run.num_layers is not None else max(have)
    if run.pooling == "model":        # a global output has a single layer
        return bool(have)
    if layers == "last":
        return top in have
    if layers == "all":
        return have >= set(range(top + 1))
    want = {top + 1 + int(x) if int(x) < 0 else int(x) for x in str(layers).split(",") if x.strip()}
    return have >= want


def finished_run(store: Store, model: str, subset: Subset, layers: str = "last",
                 max_length: int | None = None, local_stats: bool = False):
    """The latest run of `model` that covers every protein of the subset with the requested
    layers (and per-residue statistics if asked), or None."""
    for run in sorted(list_runs(store), key=lambda r: str(r.updated_at), reverse=True):
        if run.model != model or run.status != "done" or not _wanted_layers(run, layers):
            continue
        if max_length is not None and run.max_length != max_length:
            continue
        if local_stats and run.pooling != "model" and not run.local_stats:
            continue
        missing = store.scalar(Q.missing_from_run.replace("$subset", subset.accessions_sql()),
                               {"run_id": run.run_id, "need_stats": bool(local_stats and run.pooling != "model")})
        if missing == 0:
            return run
    return None


def _has_metrics(store: Store, run_id: str, layer: int, level: str, filter_: str, group_by: str) -> bool:
    return bool(store.scalar(Q.has_metrics, {"run_id": run_id, "layer": layer, "level": level,
                                             "filter": filter_, "group_by": group_by}))


def _job_done(store: Store, pair_set: str, kind: str, key: str) -> bool:
    return bool(store.scalar(Q.job_done, {"pair_set": pair_set, "kind": kind, "key": key}))


def go_grouping(store: Store, subset: Subset, top: int = GO_TOP_TERMS,
                namespace: str = GO_NAMESPACE) -> str | None:
    """A group-by expression assigning each protein the most frequent of the `top` most
    frequent GO terms of `namespace` it carries ('other' if none). Term ids are checked
    against the GO id pattern before they go into the expression."""
    terms = [t for (t,) in store.execute(Q.top_terms.replace("$subset", subset.accessions_sql()),
                                         {"namespace": namespace, "top": top}).fetchall()]
    terms = [t for t in terms if _GO_RE.match(t)]
    if len(terms) < 2:
        return None
    cases = " ".join(f"WHEN list_contains(terms, '{t}') THEN '{t}'" for t in terms)
    return f"CASE {cases} ELSE 'other' END"


def organism_filter(store: Store, subset: Subset, min_group: int = MIN_GROUP) -> Subset | None:
    """The subset for per-organism isotropy (proteins with a known organism), or None when
    fewer than two organisms have `min_group` proteins."""
    n = store.scalar(Q.organisms_with_min.replace("$subset", subset.accessions_sql()), {"min_group": min_group})
    if n < 2:
        return None
    return subset.narrow(store, "organism IS NOT NULL")


def pair_set_name(fraction: float | None, proteins: int | None, seed: int, where: str | None) -> str:
    size = f"p{proteins}" if proteins is not None else f"f{fraction:g}"
    name = f"paper-{size}-s{seed}"
    if where:
        name += "-" + hashlib.sha256(where.encode()).hexdigest()[:8]
    return name


# ------------------------------------------------------------------------------- the pipeline

def reproduce(store: Store, models=PAPER_MODELS, fraction: float | None = 0.01, seed: int = 0, *,
              where: str | None = None, layers: str | Mapping[str, str] = "last",
              max_length: int | None = None, local_stats: bool | Mapping[str, bool] = True,
              groups: bool = True,
              pair_proteins: int | None = None, pair_where: str | None = None, pairs: bool = True,
              threads: int = 1, device: str = "auto", dtype: str = "auto", offline: bool | None = None,
              weights: str | None = None, adapters: Mapping | None = None,
              on_step: Callable[[StepResult], None] | None = None,
              embed_progress: Callable | None = None) -> ReproduceResult:
    """Run the paper's pipeline for each model on the proteins matching `where`.

    layers: 'last' (the paper), 'all' (isotropy per layer) or a mapping model -> layers;
    local_stats likewise a bool or a mapping model -> bool (per-residue statistics).
    fraction / pair_proteins: the pair sample (all pairs among that share / number of the
    proteins matching `pair_where`, default `where`, drawn with `seed`); pairs=False leaves
    pairs out.
    adapters: already loaded models by name (tests). Unloadable models are reported in
    `result.unavailable`, not raised."""
    store._check_writable()
    models = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not models:
        raise InputError("no models given")
    if len(set(models)) != len(models):
        raise InputError(f"models listed twice: {models}")
    if pairs and (fraction is None) == (pair_proteins is None):
        raise InputError("give exactly one of fraction and pair_proteins for the pair sample")
    if fraction is not None and not 0 < fraction <= 1:
        raise InputError(f"pair fraction {fraction} must be in (0, 1]")
    if not store.scalar(Q.protein_count):
        raise InputError(f"store {store.root} holds no proteins; ingest some first (`protiso ingest`)")
    subset = as_subset(store, where)
    filt = subset.where
    pair_subset = as_subset(store, pair_where) if (pair_where or "").strip() else subset
    result = ReproduceResult()

    def record(model, step, status, detail="", t0=None):
        s = StepResult(model, step, status, detail, round(time.perf_counter() - t0, 3) if t0 else 0.0)
        result.steps.append(s)
        if on_step:
            on_step(s)

    local_wanted = {m: bool(local_stats.get(m, False) if isinstance(local_stats, Mapping) else local_stats)
                    for m in models}

    # 1. embeddings
    runs = {}
    for name in models:
        want = layers.get(name, "last") if isinstance(layers, Mapping) else layers
        local = local_wanted[name]
        t0 = time.perf_counter()
        run = finished_run(store, name, subset, want, max_length, local)
        if run is not None:
            record(name, "embed", "skipped", f"run {run.run_id} covers the proteins")
        else:
            adapter = (adapters or {}).get(name)
            if adapter is None:
                try:
                    adapter = load(name, device, weights, offline)
                except (ProtisoError, ImportError, OSError) as exc:
                    result.unavailable[name] = str(exc)
                    record(name, "embed", "unavailable", str(exc))
                    continue
            use_local = local and adapter.outputs_residues
            run = embed(store, name, where=subset, layers=want, device=device, dtype=dtype,
                        max_length=max_length, local_stats=use_local, adapter=adapter,
                        progress=embed_progress)
            del adapter
            record(name, "embed", "ran", f"run {run.run_id}: {run.n_done} proteins", t0)
        runs[name] = run
        result.runs[name] = run.run_id

    # 2. isotropy per run: every embedded layer, local, groups, spectra
    go_expr = go_grouping(store, subset) if groups else None
    org_subset = organism_filter(store, subset) if groups else None
    for name, run in runs.items():
        rid = run.run_id
        last = max(run.layers)
        todo = [la for la in sorted(run.layers) if not _has_metrics(store, rid, la, "global", filt, "")]
        t0 = time.perf_counter()
        exact_knn = (run.n_done or 0) <= INTRINSIC_MAX_PROTEINS
        for la in todo:
            isotropy(store, rid, la, "global", subset, intrinsic=exact_knn)
        record(name, "isotropy", "ran" if todo else "skipped",
               f"layers {todo}" if todo else f"layers {sorted(run.layers)} in metrics", t0)

        if local_wanted[name] and run.local_stats:
            t0 = time.perf_counter()
            todo = [la for la in sorted(run.layers) if not _has_metrics(store, rid, la, "local", "", "residue")]
            for la in todo:
                isotropy(store, rid, la, "local")
            record(name, "local", "ran" if todo else "skipped",
                   f"layers {todo}" if todo else "per-residue-type rows in metrics", t0)

        for label, expr, gsubset in (("groups-go", go_expr, subset), ("groups-organism", "organism", org_subset)):
            if not groups:
                break
            if expr is None or gsubset is None:
                record(name, label, "skipped", "too few annotated groups in the store")
                continue
            t0 = time.perf_counter()
            if _has_metrics(store, rid, last, "global", gsubset.where, expr):
                record(name, label, "skipped", "grouped rows in metrics")
            else:
                isotropy(store, rid, last, "global", gsubset, expr)
                record(name, label, "ran", f"layer {last}", t0)

        t0 = time.perf_counter()
        cached = stored_spectra(store, rid)
        have = set() if cached is None else {
            (la, f) for la, f in zip(cached.column("layer").to_pylist(), cached.column("filter").to_pylist())}
        todo = [la for la in sorted(run.layers) if (la, filt) not in have]
        if todo:
            tables = []
            for la in todo:
                n, lam = compute_spectrum(store, rid, la, subset)
                k = len(lam)
                tables.append(pa.table({"run_id": [rid] * k, "layer": pa.array([la] * k, pa.int32()),
                                        "filter": [filt] * k, "n": pa.array([n] * k, pa.int64()),
                                        "rank": pa.array(np.arange(1, k + 1, dtype=np.int32)),
                                        "eigenvalue": pa.array(lam, pa.float64())}, schema=SPECTRA_SCHEMA))
            store.write_part(spectra_dataset(rid), pa.concat_tables(tables))
        record(name, "spectrum", "ran" if todo else "skipped",
               f"layers {todo}" if todo else "eigenvalues stored", t0)

    # 3. pairs: sample, align, GO overlap (shared), distances per run
    if pairs and runs:
        name = pair_set_name(fraction, pair_proteins, seed, pair_subset.where)
        result.pair_set = name
        t0 = time.perf_counter()
        if store.scalar(Q.pair_set_exists, {"name": name}):
            record(None, "pairs-sample", "skipped", f"pair set {name} exists")
        else:
            ps = sample_pairs(store, name, fraction=fraction, proteins=pair_proteins, seed=seed,
                              where=pair_subset)
            record(None, "pairs-sample", "ran", f"{name}: {ps.n_proteins} proteins, {ps.n_pairs} pairs", t0)
        key = alignment_key(Scoring())
        t0 = time.perf_counter()
        if _job_done(store, name, "align", key):
            record(None, "align", "skipped", f"{key} done")
        else:
            align_pair_set(store, name, threads=threads)
            record(None, "align", "ran", key, t0)
        t0 = time.perf_counter()
        go = go_pair_set(store, name)
        record(None, "go-overlap", "ran" if go.chunks_computed else "skipped",
               "annotation Jaccard per pair" if go.chunks_computed else "current", t0)
        t0 = time.perf_counter()
        semantic = go_semantic_pair_set(store, name)
        if semantic is None:
            record(None, "go-semantic", "skipped", "no ontology in the store (protiso ingest go.obo)")
        else:
            record(None, "go-semantic", "ran" if semantic.chunks_computed else "skipped",
                   "Resnik and Lin per namespace" if semantic.chunks_computed else "current", t0)
        for mname, run in runs.items():
            layer = max(run.layers)
            t0 = time.perf_counter()
            if _job_done(store, name, "distance", f"{run.run_id}/L{layer}"):
                record(mname, "distances", "skipped", f"{run.run_id}/L{layer} done")
            else:
                try:
                    distance_pair_set(store, name, run.run_id, layer)
                except ProtisoError as exc:   # e.g. the run lacks proteins of a filtered pair set
                    record(mname, "distances", "unavailable", str(exc))
                    continue
                record(mname, "distances", "ran", f"{run.run_id}/L{layer}", t0)
    store.refresh_views()
    return result


def correlations(store: Store, pair_set: str | None = None) -> pa.Table:
    """The paper's correlation matrices (Pearson) from the pair_correlations view."""
    if pair_set is None:
        return store.sql("SELECT * FROM pair_correlations ORDER BY pair_set, run_id, layer")
    return store.sql("SELECT * FROM pair_correlations WHERE pair_set = ? ORDER BY run_id, layer", [pair_set])


def summary_json(result: ReproduceResult) -> str:
    return json.dumps(result.to_dict(), indent=2)
