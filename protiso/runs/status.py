"""Per-protein statuses of runs as Parquet parts, so that they stay small at 60 M proteins.

Each commit of a run appends one part to the dataset `status/<run_id>` (STATUS_SCHEMA: seq,
accession, status, length, n_residues, reason, in_stats, local_stored), written and registered
through the store's part machinery like the vectors (atomic writes, recorded size and SHA-256,
object storage). `seq` orders the parts of a run (runs.status_seq is the last one used); the
current status of a protein is its latest row (`status_latest` in sql/queries/runs.sql), where a
NULL field means "unchanged": a pass that only adds statistics or per-residue vectors to
embedded proteins writes NULL statuses, and flags are written only when they become true (or,
by repair, false). `run_proteins` is a TEMP view over every run's current statuses (it reads
like the table it replaces). Rows of stores made before migration 012 stay in
`run_proteins_legacy` (seq 0) until the next write moves them into a part (`move_legacy`).
"""
from __future__ import annotations

import pyarrow as pa

from protiso.runs.catalog import Q, RUN_ID_RE
from protiso.store import Store, parquet_source, registry, sql_literal

STATUS_SCHEMA = pa.schema([("seq", pa.int64()), ("accession", pa.string()), ("status", pa.string()),
                           ("length", pa.int32()), ("n_residues", pa.int32()), ("reason", pa.string()),
                           ("in_stats", pa.bool_()), ("local_stored", pa.bool_())])
_EMPTY = ("(SELECT NULL::BIGINT AS seq, NULL::VARCHAR AS accession, NULL::VARCHAR AS status, "
          "NULL::INTEGER AS length, NULL::INTEGER AS n_residues, NULL::VARCHAR AS reason, "
          "NULL::BOOLEAN AS in_stats, NULL::BOOLEAN AS local_stored WHERE false)")


def status_dataset(run_id: str) -> str:
    """The dataset of a run's per-protein status parts."""
    return f"status/{run_id}"


def status_table(rows: list[tuple], seq: int) -> pa.Table:
    """A status part of `rows` (accession, status, length, n_residues, reason, in_stats,
    local_stored) at sequence number `seq`. A false flag is written as NULL (unchanged): a run
    writer never un-sets a flag, only repair does (through `append`)."""
    cols = list(zip(*rows)) if rows else [()] * 7
    flags = [[True if x else None for x in c] for c in cols[5:7]]
    return pa.table([pa.array([seq] * len(rows), pa.int64()), pa.array(cols[0], pa.string()),
                     pa.array(cols[1], pa.string()), pa.array(cols[2], pa.int32()), pa.array(cols[3], pa.int32()),
                     pa.array(cols[4], pa.string()), pa.array(flags[0], pa.bool_()), pa.array(flags[1], pa.bool_())],
                    schema=STATUS_SCHEMA)


def latest_sql(store: Store, run_id: str) -> str:
    """A parenthesised SQL relation: the current status of each protein of `run_id` (accession,
    status, length, n_residues, reason, in_stats, local_stored), over the run's registered status
    parts as the catalog lists them now (so also inside a transaction that just added one)."""
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    parts = store.parts(status_dataset(run_id))
    source = parquet_source(parts) if parts else _EMPTY
    return "(" + Q.status_latest.replace("$source", source).replace("$run_id", sql_literal(run_id)) + ")"


def has_statuses(store: Store, run_id: str) -> bool:
    """Whether any protein of the run has a status (parts, or rows from before migration 012)."""
    return bool(store.parts(status_dataset(run_id))) or bool(store.scalar(Q.has_legacy_statuses, {"run_id": run_id}))


def next_seq(store: Store, run_id: str) -> int:
    return int(store.scalar(Q.status_seq, {"run_id": run_id}) or 0) + 1


def append(store: Store, run_id: str, table: pa.Table, metadata: dict | None = None) -> int:
    """Write `table` (STATUS_SCHEMA without seq; NULL = unchanged, false flags kept) as the run's
    next status part and register it, in the current transaction (opened here if none is);
    returns the rows written (no part for none)."""
    if not table.num_rows:
        return 0
    with store.transaction():
        seq = next_seq(store, run_id)
        table = pa.table([pa.array([seq] * table.num_rows, pa.int64())] +
                         [table.column(f.name).cast(f.type) for f in STATUS_SCHEMA if f.name != "seq"],
                         schema=STATUS_SCHEMA)
        store.write_part(status_dataset(run_id), table, metadata)
        store.execute(Q.bump_status_seq, {"seq": seq, "run_id": run_id})
    return table.num_rows


def move_legacy(store: Store, metadata_of=None) -> list[str]:
    """Move the statuses kept from before migration 012 into status parts (seq 0), one per run,
    and empty run_proteins_legacy; in the current transaction. Returns the runs moved."""
    moved = []
    with store.transaction():
        for (run_id,) in store.execute(Q.legacy_status_runs).fetchall():
            table = store.sql(Q.legacy_statuses, {"run_id": run_id}).cast(STATUS_SCHEMA)
            if table.num_rows:
                store.write_part(status_dataset(run_id), table, metadata_of(run_id) if metadata_of else None)
            store.execute(Q.drop_legacy_statuses, {"run_id": run_id})
            moved.append(run_id)
    return moved


@registry.views
def create_status_view(store: Store) -> None:
    """TEMP view `run_proteins` (run_id, accession, status, length, n_residues, reason, in_stats,
    local_stored): the current status of every protein of every run, over the status parts."""
    try:
        runs = [r for (r, *_) in store.execute(Q.view_sources).fetchall() if RUN_ID_RE.match(r)]
        legacy = {r for (r,) in store.execute(Q.legacy_status_runs).fetchall()}
    except Exception:   # noqa: BLE001 - catalog without these tables (older store opened read-only)
        return
    bodies = []
    for run_id in runs:
        if run_id in legacy or store.parts(status_dataset(run_id)):
            bodies.append(f"SELECT {sql_literal(run_id)} AS run_id, * FROM {latest_sql(store, run_id)}")
    body = " UNION ALL ".join(bodies) if bodies else (
        "SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS accession, NULL::VARCHAR AS status, "
        "NULL::INTEGER AS length, NULL::INTEGER AS n_residues, NULL::VARCHAR AS reason, "
        "NULL::BOOLEAN AS in_stats, NULL::BOOLEAN AS local_stored WHERE false")
    store.con.execute(f"CREATE OR REPLACE TEMP VIEW run_proteins AS {body}")
