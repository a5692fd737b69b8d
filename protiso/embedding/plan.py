"""Planning an embedding job: which proteins of the selection still need work (the resume rule)
and the windows of them, with sequences, that the engines consume."""
from __future__ import annotations

from typing import Iterator

from protiso.embedding.compute import Protein
from protiso.query import Subset
from protiso.runs import EMBEDDED, Run
from protiso.runs.catalog import Q
from protiso.store import Store


def probe_sequences(store: Store, subset: Subset) -> list[str]:
    """A few proteins of the selection for the dtype auto parity probe."""
    return [s for (s,) in store.execute(Q.probe_sequences.replace("$subset", subset.accessions_sql())).fetchall()]


def select_todo(store: Store, run: Run, subset: Subset, local_stats: bool, store_local: bool,
                limit: int | None) -> tuple[int, int]:
    """The resume rule: fill temp table _protiso_todo (idx, accession, length, prev, in_stats,
    local_stored) with the selected proteins not yet embedded (or failed, or missing from the
    statistics / stored local vectors that are asked for), shortest first. -> (proteins, residues)."""
    store.execute(Q.select_todo.replace("$subset", subset.accessions_sql()),
                  {"run_id": run.run_id, "local_stats": bool(local_stats), "store_local": bool(store_local),
                   "limit": None if limit is None else int(limit)})
    n_total, res_total = store.one(Q.todo_size)
    return int(n_total), int(res_total)


def plan_windows(store: Store, max_length: int, long: str, local_stats: bool, store_local: bool,
                 window: int) -> Iterator[tuple[int, list[Protein], list[tuple]]]:
    """Walk _protiso_todo in windows: (first idx, proteins to embed, statuses of skipped ones)."""
    n_total = store.one(Q.todo_size)[0]
    for lo in range(0, n_total, window):
        rows = store.execute(Q.todo_window, {"lo": lo, "hi": lo + window}).fetchall()
        prots: list[Protein] = []
        skipped: list[tuple] = []
        for acc, length, prev, in_stats, local_stored, seq in rows:
            embedded_before = prev in EMBEDDED
            st = "done"
            if length > max_length:
                if long == "skip":
                    if not embedded_before:
                        skipped.append((acc, "skipped", length, 0,
                                        f"{length} residues > max length {max_length} (length policy skip)", False, False))
                    continue
                st = "truncated" if long == "truncate" else "chunked"
            prots.append(Protein(acc, seq, length, st, write=not embedded_before,
                                  stats=bool(local_stats) and not in_stats,
                                  local=bool(store_local) and not local_stored))
        yield lo, prots, skipped


