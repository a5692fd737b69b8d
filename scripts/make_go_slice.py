#!/usr/bin/env python3
"""Write the slice of the Gene Ontology that an annotation TSV needs, as a gzipped OBO file.

The slice holds every term the annotations use plus all their ancestors over is_a and part_of,
each term frame copied as it is in the full ontology except that relationships of other types
(regulates, ...) are kept only when their target is in the slice too; all [Typedef] frames are
kept. Its header carries the attribution. The output is byte-for-byte reproducible (gzip
mtime 0), so rerunning this script on the same inputs leaves git clean.

Usage (from the repository root; the defaults rebuild the bundled file):
    python scripts/make_go_slice.py [--obo ../shared/data/go_2014.obo.gz]
        [--annotations protiso/data/sample/swissprot2014_go_2k.tsv.gz]
        [--out protiso/data/go/go_2014_sample.obo.gz]
"""
from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import fastobo
import fastobo.header as fh
import fastobo.term as ft
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protiso.go.obo import CLOSURE_RELATIONS, ancestor_closure, load_obo_document, tables_from_document  # noqa: E402

ATTRIBUTION = [
    "Slice of the Gene Ontology: the terms annotated in protiso's bundled Swiss-Prot sample "
    "(protiso/data/sample/swissprot2014_go_2k.tsv.gz) and all their is_a/part_of ancestors, "
    "made by scripts/make_go_slice.py.",
    "Gene Ontology release matching UniProtKB/Swiss-Prot of January 2014, rebuilt from "
    "Debian's metastudent-data package (dataset_201401).",
    "The Gene Ontology is (c) the Gene Ontology Consortium and licensed under CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/); cite: Ashburner et al. (2000) Nat Genet "
    "25:25-29 and The Gene Ontology Consortium, Nucleic Acids Res.",
]


def annotation_terms(path: Path) -> set[str]:
    """Terms in the third column of an annotation TSV (accession, namespace, term)."""
    terms = set()
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as fh_in:
        for lineno, line in enumerate(fh_in, 1):
            fields = line.rstrip("\r\n").split("\t")
            if not line.strip() or line.startswith("#") or (lineno == 1 and fields[0] == "accession"):
                continue
            if len(fields) != 3:
                sys.exit(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(fields)}")
            terms.add(fields[2].strip())
    return terms


def make_slice(obo: Path, annotations: Path, out: Path) -> str:
    doc = load_obo_document(obo)
    terms, edges, _, _ = tables_from_document(doc, str(obo))
    used = annotation_terms(annotations)
    defined = set(terms.column("term").to_pylist())
    unknown = sorted(used - defined)
    if unknown:
        sys.exit(f"{annotations}: {len(unknown)} terms are not in {obo}, e.g. {unknown[:3]}")
    closure = ancestor_closure(edges, terms.column("term").to_pylist(), CLOSURE_RELATIONS, str(obo))
    rows = closure.filter(pc.is_in(closure.column("term"), value_set=pa.array(sorted(used))))
    keep = set(rows.column("ancestor").to_pylist())

    header = fh.HeaderFrame([c for c in doc.header if c.raw_tag() != "remark"]
                            + [fh.RemarkClause(r) for r in ATTRIBUTION])
    frames, n_rel = [], 0
    for frame in doc:
        if isinstance(frame, fastobo.term.TermFrame):
            if str(frame.id) not in keep:
                continue
            clauses = [c for c in frame if c.raw_tag() not in ("is_a", "relationship")
                       or str(c.term) in keep]
            n_rel += sum(c.raw_tag() in ("is_a", "relationship") for c in clauses)
            frames.append(ft.TermFrame(frame.id, clauses))
        elif isinstance(frame, fastobo.typedef.TypedefFrame):
            frames.append(frame)
    doc_out = fastobo.doc.OboDoc(header, frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(gzip.compress(str(doc_out).encode("utf-8"), compresslevel=9, mtime=0))
    tmp.replace(out)
    return (f"{len(used)} annotated terms -> {len(keep)} terms with ancestors, {n_rel} relations, "
            f"{out.stat().st_size / 1024:.0f} KiB -> {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--obo", type=Path, default=ROOT.parent / "shared" / "data" / "go_2014.obo.gz")
    ap.add_argument("--annotations", type=Path,
                    default=ROOT / "protiso" / "data" / "sample" / "swissprot2014_go_2k.tsv.gz")
    ap.add_argument("--out", type=Path, default=ROOT / "protiso" / "data" / "go" / "go_2014_sample.obo.gz")
    args = ap.parse_args()
    print(make_slice(args.obo, args.annotations, args.out))


if __name__ == "__main__":
    main()
