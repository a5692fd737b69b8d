"""Full Swiss-Prot (2014, 516k proteins, 186.7 M residues) ingest: wall time and peak memory.

Target (issue 2): <= 60 s on the 2-core machine, with memory bounded by the batch size.
Usage: python benchmarks/bench_ingest.py [DIR]   (DIR from ../shared/data/build_swissprot2014.sh;
default /work/fullset). Prints the time, records/s, residues/s and peak RSS.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

from protiso import open_store
from protiso.ingest import ingest

TARGET_SECONDS = 60.0


def main() -> None:
    data = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/fullset")
    fasta, tsv = data / "swissprot2014_go.fasta.gz", data / "swissprot2014_go.tsv.gz"
    if not fasta.exists():
        sys.exit(f"{fasta} missing: run ../shared/data/build_swissprot2014.sh {data}")
    with tempfile.TemporaryDirectory() as tmp:
        with open_store(tmp) as store:
            t0 = time.perf_counter()
            result = ingest(store, [fasta], annotations=[tsv])
            seconds = time.perf_counter() - t0
            residues = store.scalar("SELECT sum(length) FROM proteins")
            t1 = time.perf_counter()
            again = ingest(store, [fasta])
            reingest = time.perf_counter() - t1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"proteins: {result.n_new:,}  residues: {residues:,}  annotations: {result.n_new_annotations:,}")
    print(f"ingest (sequences + annotations): {seconds:.1f} s  "
          f"({result.n_records / seconds:,.0f} proteins/s, {residues / seconds / 1e6:.1f} M residues/s)")
    print(f"target {TARGET_SECONDS:.0f} s: ratio {seconds / TARGET_SECONDS:.2f} of the budget "
          f"({'PASS' if seconds <= TARGET_SECONDS else 'FAIL'})")
    print(f"re-ingest of the same FASTA (no-op, {again.n_new} new): {reingest:.1f} s")
    print(f"peak RSS: {peak_mb:,.0f} MB (the FASTA is {fasta.stat().st_size / 1e6:.0f} MB gzip, "
          f"{residues / 1e6:.0f} MB of residues)")


if __name__ == "__main__":
    main()
