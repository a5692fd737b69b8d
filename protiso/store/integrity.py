"""Integrity of the files a store's catalog lists: what is recorded when a part is registered
(rows, size, SHA-256), the quick check every open makes (present, same size), the full check of
`protiso verify` (contents too, and the catalog's own tables), and `protiso repair`, which
unlists lost or changed files and lets the owning area mark their work as not done."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow.parquet as pq

from protiso.errors import DamagedStoreError
from protiso.store import registry
from protiso.store.fs import DATA_PREFIX, is_url
from protiso.store.ident import quote_ident
from protiso.store.sqlfiles import queries

Q = queries("store")
DAMAGED_DIR = "damaged"         # where repair moves changed files (outside data/, so no glob sees them)
REPAIR_HINT = "run `protiso repair` to unlist it and mark its work as not done, then re-run the job"


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return Path(path).stat().st_size, digest


def quick_problem(path: Path, size: int | None) -> str | None:
    """What a stat shows is wrong with a listed file: 'missing', 'size changed ...', or None."""
    try:
        now = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size is not None and now != size:
        return f"changed (size {now:,} bytes, registered with {size:,})"
    return None


@dataclass
class Problem:
    """A listed file that is not as registered: kind 'part' (dataset set) or a FileSet name."""

    kind: str
    path: str               # relative to the store root
    problem: str
    dataset: str | None = None

    def line(self) -> str:
        owner = f"part of {self.dataset}" if self.dataset else f"{self.kind} file"
        return f"{self.path} ({owner}): {self.problem}"


def damage_message(root: Path, problems: list[Problem]) -> str:
    first = problems[0]
    more = f" and {len(problems) - 1} more (`protiso verify` lists them)" if len(problems) > 1 else ""
    return (f"store {root} is damaged: {root / first.path} ({first.dataset or first.kind}) is "
            f"{first.problem}{more}; {REPAIR_HINT}")


def quick_check(store) -> list[Problem]:
    """Every listed part that is missing or has another size than when it was registered."""
    out = []
    for dataset, rel, _, size, _ in store.con.execute(Q.all_parts).fetchall():
        problem = store.part_problem(rel, size)
        if problem:
            out.append(Problem("part", rel, problem, dataset))
    return out


def require_intact(store) -> None:
    """DamagedStoreError naming the first damaged part, if any."""
    problems = quick_check(store)
    if problems:
        raise DamagedStoreError(damage_message(store.root, problems))


@dataclass
class Verification:
    checked_parts: int = 0
    checked_files: int = 0
    checked_tables: int = 0
    unchecked: int = 0            # parts registered before checksums were recorded
    problems: list[Problem] = field(default_factory=list)


def _part_problem(path: Path, n_rows: int | None, size: int | None, sha: str | None) -> str | None:
    problem = quick_problem(path, size)
    if problem:
        return problem
    if sha is not None and file_digest(path)[1] != sha:
        return "changed (checksum differs from the registered one)"
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:   # noqa: BLE001 - any unreadable footer is damage to report
        return f"unreadable as Parquet ({' '.join(str(exc).split())[:120]})"
    if n_rows is not None and rows != n_rows:
        return f"changed ({rows:,} rows, registered with {n_rows:,})"
    return None


def verify(store, progress: Callable[[str], None] | None = None) -> Verification:
    """Check every listed part (present, size, SHA-256, Parquet footer and row count), every file
    the areas declare (registry.files), and read every catalog table in full (DuckDB checks
    its block checksums as it reads)."""
    out = Verification()
    for (table,) in store.con.execute(Q.tables).fetchall():
        if progress:
            progress(f"table {table}")
        try:
            reader = store.con.sql(f"SELECT * FROM {quote_ident(table)}").to_arrow_reader(65536)
            for _ in reader:          # every block is read (and checksummed), none kept
                pass
        except duckdb.Error as exc:
            out.problems.append(Problem("catalog", store.catalog.name, f"table {table} cannot be read: "
                                        f"{' '.join(str(exc).split())[:200]}"))
        out.checked_tables += 1
    for dataset, rel, n_rows, size, sha in store.con.execute(Q.all_parts).fetchall():
        if progress:
            progress(rel)
        if store.data is not None and rel.startswith(DATA_PREFIX):      # at a URL (protiso.store.fs)
            problem = store.data.problem(rel, n_rows, size, sha)
        else:
            problem = _part_problem(store.root / rel, n_rows, size, sha)
        if problem:
            out.problems.append(Problem("part", rel, problem, dataset))
        out.unchecked += sha is None
        out.checked_parts += 1
    for fs in registry.FILESETS:
        try:
            rows = store.con.execute(fs.query).fetchall()
        except duckdb.CatalogException:
            continue
        for rel, size, sha in rows:
            if progress:
                progress(rel)
            if is_url(rel):           # a file at the data location, listed by its URL (e.g. an index)
                problem = _url_problem(store, rel, size, sha)
            else:
                path = store.root / rel
                problem = quick_problem(path, size)
                if problem is None and sha is not None and file_digest(path)[1] != sha:
                    problem = "changed (checksum differs from the registered one)"
                elif problem is None and sha is None and fs.check is not None:
                    problem = fs.check(path)
            if problem:
                out.problems.append(Problem(fs.name, rel, problem))
            out.checked_files += 1
    return out


def _url_problem(store, uri: str, size: int | None, sha: str | None) -> str | None:
    """What is wrong with a non-part file listed by its URL at the store's data location."""
    if store.data is None or store.data.rel(uri) is None:
        return "not under the store's data location"
    now = store.data.size(uri)
    if now is None:
        return "missing"
    if size is not None and now != size:
        return f"changed (size {now:,} bytes, registered with {size:,})"
    if sha is not None and store.data.digest(uri)[1] != sha:
        return "changed (checksum differs from the registered one)"
    return None


def repair(store) -> tuple[Verification, list[str]]:
    """Unlist every lost or changed part and file, move changed local ones aside (to damaged/),
    and let the owning areas mark their proteins, pairs or chunks as not done so that re-running
    the job restores them; all in one transaction. Every lost part of every dataset is unlisted
    before any area's repairer runs, so a repairer reads only intact parts (a run that lost an
    embeddings part and a status part at once). Returns the verification and what was done."""
    found = verify(store)
    if any(p.kind == "catalog" for p in found.problems):
        bad = next(p for p in found.problems if p.kind == "catalog")
        raise DamagedStoreError(f"store catalog {store.catalog} is damaged ({bad.problem}); it cannot be "
                                "repaired in place: restore it from a backup")
    actions: list[str] = []
    if not found.problems:
        return found, actions
    by_dataset: dict[str, list[str]] = {}
    by_fileset: dict[str, list[str]] = {}
    for p in found.problems:
        (by_dataset.setdefault(p.dataset, []) if p.kind == "part" else by_fileset.setdefault(p.kind, [])).append(p.path)
    moved: list[tuple[Path, Path]] = []
    with store.transaction():
        for dataset, lost in by_dataset.items():
            for rel in lost:
                store.execute(Q.unregister_part, {"path": rel})
            store._tx_parts_changed = True
            actions.append(f"{dataset}: unlisted {len(lost)} part(s)")
        for dataset, lost in by_dataset.items():
            for prefix, fn in registry.REPAIRERS:
                if dataset.startswith(prefix):
                    actions.extend(fn(store, dataset, lost) or [])
                    break
            else:
                actions.append(f"{dataset}: nothing re-creates these parts automatically")
        for fs in registry.FILESETS:
            lost = by_fileset.get(fs.name)
            if lost:
                actions.extend(fs.repair(store, lost) if fs.repair else
                               [f"{fs.name}: {len(lost)} file(s) damaged; nothing re-creates them automatically"])
        for rel in [p.path for p in found.problems if not is_url(p.path)]:
            src = store.root / rel      # files at a data location stay there, unlisted
            if src.exists():
                moved.append((src, store.root / DAMAGED_DIR / rel))
    for src, dst in moved:        # after the commit: the catalog no longer lists them
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        actions.append(f"moved changed file {src.relative_to(store.root)} to {dst.relative_to(store.root)}")
    return found, actions


def backfill_checksums(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Record size and SHA-256 of parts registered before migration 007 (once, on upgrade)."""
    for (rel,) in con.execute(Q.parts_without_checksum).fetchall():
        path = root / rel
        if path.is_file():
            size, sha = file_digest(path)
            con.execute(Q.record_checksum, {"path": rel, "size_bytes": size, "sha256": sha})
