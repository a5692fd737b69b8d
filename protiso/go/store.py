"""The Gene Ontology in the store: `protiso ingest go.obo` fills go_terms (with depth),
go_edges, go_ancestors (the is_a/part_of closure), go_alt_ids and go_ids (every id with its
primary term), and records the file in go_ontology (migration 010).

A store holds one ontology: an OBO ingest replaces the previous one as a whole, inside the
caller's transaction (or one of its own), so a failed ingest leaves the store as it was. The
file is parsed and checked (`read_go`) before anything is written (`write_go`). SQL over the
tables (go_under, go_first, go_top, go_term_names, ...) is in sql/views/60_go.sql.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from protiso._version import __version__
from protiso.errors import InputError
from protiso.go.obo import GoTables, read_obo
from protiso.store import Store, queries

Q = queries("go")
OBO_SUFFIXES = (".obo", ".obo.gz")
BUNDLED_OBO = "go_2014_sample.obo.gz"  # the slice the bundled Swiss-Prot sample needs
_STAGED = ("go_terms_in", "go_edges_in", "go_ancestors_in", "go_alt_ids_in")


def is_obo(path: str | Path) -> bool:
    """Whether a file is taken as an OBO ontology: its name ends in .obo or .obo.gz."""
    return str(path).lower().endswith(OBO_SUFFIXES)


def bundled_obo() -> Path:
    """The GO slice shipped with protiso (the terms of the bundled sample and their ancestors)."""
    return Path(str(resources.files("protiso") / "data" / "go" / BUNDLED_OBO))


@dataclass
class GoIngestResult:
    """What an OBO ingest did."""

    source: str
    data_version: str | None
    n_terms: int
    n_edges: int
    n_ancestors: int
    n_alt_ids: int
    replaced: str | None = None  # the ontology it replaced ('source (data-version)'), if any
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI."""
        version = f" ({self.data_version})" if self.data_version else ""
        text = (f"Gene Ontology {Path(self.source).name}{version}: {self.n_terms:,} terms, "
                f"{self.n_edges:,} relations, {self.n_ancestors:,} ancestor rows")
        return text + (f"; replaced {self.replaced}" if self.replaced else "")


def read_go(path: str | Path) -> tuple[GoTables, str]:
    """Parse and check an OBO file (nothing written): its tables and SHA-256."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    go = read_obo(path)
    with open(path, "rb") as fh:
        return go, hashlib.file_digest(fh, "sha256").hexdigest()


def write_go(store: Store, go: GoTables, sha256: str) -> GoIngestResult:
    """Make parsed tables the store's ontology (replacing any), in one transaction."""
    t0, started = time.perf_counter(), dt.datetime.now()
    counts = {"n_terms": go.terms.num_rows, "n_edges": go.edges.num_rows,
              "n_ancestors": go.ancestors.num_rows, "n_alt_ids": go.alt_ids.num_rows}
    con = store.con
    with store.transaction():
        old = store.one(Q.ontology)
        store.execute(Q.clear_ontology, {})
        for name, table in zip(_STAGED, (go.terms, go.edges, go.ancestors, go.alt_ids)):
            con.register(name, table)
        try:
            store.execute(Q.insert_staged, {})
        finally:
            for name in _STAGED:
                con.unregister(name)
        params = {"source": go.source, "data_version": go.data_version, "sha256": sha256,
                  "software_version": __version__, "started_at": started, **counts}
        store.execute(Q.record_ontology, params)
        store.execute(Q.record_ingest, params)
        warnings = coverage_warnings(store)
    replaced = (old[0] + (f" ({old[1]})" if old[1] else "")) if old else None
    return GoIngestResult(go.source, go.data_version, replaced=replaced,
                          seconds=time.perf_counter() - t0, warnings=warnings, **counts)


def ingest_obo(store: Store, path: str | Path) -> GoIngestResult:
    """Parse an OBO file (plain or gzip) and make it the store's ontology, in one transaction;
    a bad file leaves the store as it was."""
    t0 = time.perf_counter()
    result = write_go(store, *read_go(path))
    result.seconds = time.perf_counter() - t0
    return result


def coverage_warnings(store: Store) -> list[str]:
    """Warnings about annotated GO ids the ontology lacks or marks obsolete (they reach no
    ancestor: go_under does not see them)."""
    n_unknown, unknown, n_obsolete, obsolete = store.one(Q.annotation_coverage)
    out = []
    if n_unknown:
        out.append(f"{n_unknown:,} annotated GO terms are not in the ontology (e.g. "
                   f"{', '.join(unknown)}); go_under and group-by over GO terms ignore them")
    if n_obsolete:
        out.append(f"{n_obsolete:,} annotated GO terms are obsolete in the ontology (e.g. "
                   f"{', '.join(obsolete)}); they have no ancestors")
    return out


def ontology(store: Store) -> dict | None:
    """The ingested ontology's provenance row as a dict, or None when there is none."""
    row = store.one(Q.ontology)
    if row is None:
        return None
    keys = ("source", "data_version", "sha256", "n_terms", "n_edges", "n_ancestors", "n_alt_ids",
            "ingested_at")
    return dict(zip(keys, row))
