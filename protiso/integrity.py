"""What a lost file means for each area (the top of the house, beside `wiring` and `udfs`).

`protiso verify` and `protiso repair` live in the store floor and know only Parquet parts;
here the areas' own files (statistics checkpoints, FAISS indexes, transform parameters) are
declared, and for each kind of dataset the repair marks the work its lost parts held as not
done, so re-running the job that made it restores it: an embedding run's proteins become
'failed' (embed redoes them), per-residue vectors and statistics are forgotten, a pair job's
chunks are unlisted (align / distances / go redo them), an index is dropped (index build)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from protiso.store import Store, parquet_source, queries, registry

Q = queries("integrity")


def _present(store: Store, dataset: str) -> pa.Table:
    """Accessions in the dataset's remaining parts."""
    parts = store.parts(dataset)
    if not parts:
        return pa.table({"accession": pa.array([], pa.string())})
    return store.con.sql(f"SELECT DISTINCT accession FROM {parquet_source(parts)}").to_arrow_table()


def _mark(store: Store, dataset: str, query: str) -> int:
    run_id = dataset.split("/", 1)[1]
    store.con.register("_protiso_present", _present(store, dataset))
    try:
        changed = store.execute(query, {"run_id": run_id}).fetchall()[0][0]
    finally:
        store.con.unregister("_protiso_present")
    store.execute(Q.recount_run, {"run_id": run_id})
    return int(changed)


@registry.repairs("embeddings/")
def _run_vectors(store: Store, dataset: str, lost: list[str]) -> list[str]:
    n = _mark(store, dataset, Q.mark_lost_vectors)
    run_id = dataset.split("/", 1)[1]
    return [f"run {run_id}: {n:,} protein(s) whose vectors were lost marked as not done; re-run "
            "`protiso embed` with the run's model and settings to embed them again"]


@registry.repairs("local/")
def _run_local_vectors(store: Store, dataset: str, lost: list[str]) -> list[str]:
    n = _mark(store, dataset, Q.mark_lost_local)
    run_id = dataset.split("/", 1)[1]
    return [f"run {run_id}: {n:,} protein(s) lost their per-residue vectors; re-run `protiso embed "
            "--store-local` with the run's settings"]


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
        store.execute(Q.reset_run_stats, {"run_id": run_id})
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
