"""What a lost file means for each area (the top of the house, beside `wiring` and `udfs`).

`protiso verify` and `protiso repair` live in the store floor and know only Parquet parts;
here the areas' own files (statistics checkpoints, FAISS indexes, transform parameters) are
declared, and for each kind of dataset the repair marks the work its lost parts held as not
done, so re-running the job that made it restores it (by appending a status part, see
protiso.runs.status): an embedding run's proteins become 'failed' (embed redoes them),
per-residue vectors and statistics are forgotten, a lost status part is rebuilt from the
vectors that remain, a pair job's
chunks are unlisted (align / distances / go redo them), an index is dropped (index build)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from protiso.runs import embeddings_dataset, local_dataset
from protiso.runs.status import append, latest_sql
from protiso.store import Store, parquet_source, queries, registry

Q = queries("integrity")


def _present(store: Store, dataset: str) -> pa.Table:
    """Accessions in the dataset's remaining parts."""
    parts = store.parts(dataset)
    if not parts:
        return pa.table({"accession": pa.array([], pa.string())})
    return store.con.sql(f"SELECT DISTINCT accession FROM {parquet_source(parts)}").to_arrow_table()


def _append_rows(store: Store, run_id: str, query: str, present: str | None = None, **params) -> int:
    """Append the status rows `query` selects from the run's current statuses ($source), with
    the accessions of dataset `present` registered as _protiso_present; returns how many."""
    if present is not None:
        store.con.register("_protiso_present", _present(store, present))
    try:
        rows = store.sql(query.replace("$source", latest_sql(store, run_id)), {"run_id": run_id, **params})
    finally:
        if present is not None:
            store.con.unregister("_protiso_present")
    return append(store, run_id, rows, {"run_id": run_id})


def _recount(store: Store, run_id: str) -> None:
    store.execute(Q.recount_run.replace("$source", latest_sql(store, run_id)), {"run_id": run_id})


def _reset_stats(store: Store, run_id: str) -> None:
    """Forget a run's statistics: its checkpoints and which proteins they counted."""
    _append_rows(store, run_id, Q.stats_reset_rows)
    store.execute(Q.forget_run_stats, {"run_id": run_id})


@registry.repairs("embeddings/")
def _run_vectors(store: Store, dataset: str, lost: list[str]) -> list[str]:
    run_id = dataset.split("/", 1)[1]
    n = _append_rows(store, run_id, Q.lost_vectors, present=dataset)
    _recount(store, run_id)
    return [f"run {run_id}: {n:,} protein(s) whose vectors were lost marked as not done; re-run "
            "`protiso embed` with the run's model and settings to embed them again"]


@registry.repairs("local/")
def _run_local_vectors(store: Store, dataset: str, lost: list[str]) -> list[str]:
    run_id = dataset.split("/", 1)[1]
    n = _append_rows(store, run_id, Q.lost_local, present=dataset)
    return [f"run {run_id}: {n:,} protein(s) lost their per-residue vectors; re-run `protiso embed "
            "--store-local` with the run's settings"]


@registry.repairs("status/")
def _run_statuses(store: Store, dataset: str, lost: list[str]) -> list[str]:
    """A lost status part: the proteins whose vectors exist get their status back (so embed does
    not embed them twice), those whose per-residue vectors exist get local_stored back, the
    others (failed, skipped) are tried again; the statistics, which may count proteins the lost
    part said were counted, start afresh."""
    run_id = dataset.split("/", 1)[1]
    row = store.one(Q.run_policy, {"run_id": run_id})
    if row is None:
        return [f"{dataset}: status parts of an unknown run {run_id} unlisted"]
    max_length, policy = row
    n = _append_rows(store, run_id, Q.unstated_vectors, present=embeddings_dataset(run_id),
                     max_length=max_length, policy=policy)
    _append_rows(store, run_id, Q.unstated_local, present=local_dataset(run_id))
    out = [f"run {run_id}: a status part was lost; the status of {n:,} protein(s) with vectors restored, "
           "the others will be embedded again by `protiso embed` with the run's settings"]
    if store.scalar(Q.run_has_stats, {"run_id": run_id}):
        _reset_stats(store, run_id)
        out.append(f"run {run_id}: per-residue statistics reset; re-run `protiso embed --local-stats` "
                   "to accumulate them again")
    _recount(store, run_id)
    return out


@registry.repairs("pairs/")
def _pair_chunks(store: Store, dataset: str, lost: list[str]) -> list[str]:
    if dataset.endswith("/list"):
        return [f"{dataset}: the pair list itself lost parts; delete the pair set and sample it again"]
    jobs = store.execute(Q.chunks_of_parts, {"paths": lost}).fetchall()
    store.execute(Q.forget_chunks, {"paths": lost})
    return [f"pair set {s}: {kind} job {key} has {len(lost)} chunk(s) to redo; re-run `protiso pairs "
            f"{'align' if kind == 'align' else 'distances' if kind == 'distance' else kind}`"
            for s, kind, key in jobs]


def _stats_files(store: Store, lost: list[str]) -> list[str]:
    out = []
    for (run_id,) in store.execute(Q.runs_of_stats_files, {"paths": lost}).fetchall():
        _reset_stats(store, run_id)
        out.append(f"run {run_id}: per-residue statistics reset (a checkpoint was lost); re-run "
                   "`protiso embed --local-stats` with the run's settings to accumulate them again")
    return out


def _index_files(store: Store, lost: list[str]) -> list[str]:
    ids = [i for (i,) in store.execute(Q.indexes_of_files, {"paths": lost}).fetchall()]
    store.execute(Q.drop_indexes_of_files, {"paths": lost})
    return [f"index {i} dropped (its file was lost or changed); rebuild it with `protiso index build`"
            for i in ids]


def _transform_files(store: Store, lost: list[str]) -> list[str]:
    return [f"derived run {r}: its transform parameters are lost; delete the run and create the "
            "transform again" for (r,) in store.execute(Q.transforms_of_files, {"paths": lost}).fetchall()]


def _check_stats(path) -> str | None:
    try:
        with np.load(path) as data:
            data.files
    except Exception as exc:   # noqa: BLE001 - any unreadable file is damage to report
        return f"unreadable ({' '.join(str(exc).split())[:100]})"
    return None


def _check_index(path) -> str | None:
    import faiss     # optional: only where indexes exist

    try:
        faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as exc:
        return f"unreadable as a FAISS index, truncated or changed ({str(exc).splitlines()[0][:100]})"
    return None


registry.files("statistics", Q.statistics_files, _stats_files, _check_stats)
registry.files("index", Q.index_files, _index_files, _check_index)
registry.files("transform", Q.transform_files, _transform_files)
