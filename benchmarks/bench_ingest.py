"""Full Swiss-Prot (2014: 516,371 proteins, 186.7 M residues, 4.5 M GO rows) ingest against an
anchor measured side by side in the same run.

Anchor (issue 15): a minimal parser (Python lines, no validation) feeding Arrow batches into a
DuckDB table with a primary key, FASTA only; 5.2 s when the target was set, so the target of
15 s for the full ingest (FASTA, GO, every validation) is 15 / 5.2 = 2.88 anchors, and the
peak memory target is 1 GB. Each measurement runs in a child process of its own, whose peak RSS
(getrusage's high-water mark, imports included, taken before the re-ingest) is the figure; the
sides alternate and the best of `--repeat` runs counts, since the machine is shared.

Sides: the anchor; protiso with the FASTA only; the full ingest (FASTA + the 4.5 M GO annotation
rows, every check: the issue's workload); the same plus the Gene Ontology file (go_2014.obo.gz,
parsed, closed over is_a/part_of and checked against the annotations) when DIR has it.

Usage: python benchmarks/bench_ingest.py [DIR] [--repeat 2]
DIR holds swissprot2014_go.fasta.gz, swissprot2014_go.tsv.gz and go_2014.obo.gz (default
/work/fullset; build it with ../shared/data/build_swissprot2014.sh DIR).
"""
from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHOR_SECONDS, TARGET_SECONDS, TARGET_RSS_MB = 5.2, 15.0, 1024


def anchor(fasta: Path, db: Path) -> dict:
    """The minimal parser + Arrow batches into DuckDB with a primary key."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE proteins (accession VARCHAR PRIMARY KEY, sequence VARCHAR NOT NULL)")
    accs, seqs, parts, acc = [], [], [], None

    def flush() -> None:
        batch = pa.table({"accession": accs, "sequence": seqs})  # noqa: F841 (read by DuckDB)
        con.execute("INSERT INTO proteins SELECT * FROM batch")
        accs.clear()
        seqs.clear()

    with gzip.open(fasta, "rt") as fh:
        for line in fh:
            if line[0] == ">":
                if acc is not None:
                    accs.append(acc)
                    seqs.append("".join(parts))
                    if len(accs) == 100_000:
                        flush()
                acc, parts = line[1:].split(None, 1)[0], []
            else:
                parts.append(line.rstrip())
    accs.append(acc)
    seqs.append("".join(parts))
    flush()
    n = con.execute("SELECT count(*) FROM proteins").fetchone()[0]
    con.close()
    return {"proteins": n}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(files: list[Path], tsv: Path | None, root: Path, again: bool) -> dict:
    from protiso import open_store
    from protiso.ingest import ingest

    with open_store(root, create=True) as store:
        result = ingest(store, files, annotations=[tsv] if tsv else [])
        out = {"proteins": result.n_new, "annotations": result.n_new_annotations,
               "residues": int(store.scalar("SELECT sum(length) FROM proteins")),
               "go_terms": sum(g.n_terms for g in result.go), "peak_rss_mb": _peak_mb()}
        if again:
            fasta = next(f for f in files if ".fasta" in f.name)
            t0, c0 = time.perf_counter(), time.process_time()
            out["again_new"] = ingest(store, [fasta]).n_new
            out["again_seconds"], out["again_cpu"] = time.perf_counter() - t0, time.process_time() - c0
    return out


def _child(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        if args.side == "anchor":
            out = anchor(args.fasta, Path(tmp) / "anchor.duckdb")
            out["peak_rss_mb"] = _peak_mb()
        else:
            files = ([args.obo] if args.side == "go" else []) + [args.fasta]
            out = ours(files, None if args.side == "fasta" else args.tsv, Path(tmp) / "store",
                       again=args.side == "full")
        out["seconds"] = time.perf_counter() - t0 - out.get("again_seconds", 0.0)
        out["cpu_seconds"] = time.process_time() - c0 - out.get("again_cpu", 0.0)
    print(json.dumps(out))


def _run(side: str, fasta: Path, tsv: Path, obo: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--fasta", str(fasta), "--tsv", str(tsv), "--obo", str(obo)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{side} run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="?", type=Path, default=Path("/work/fullset"))
    p.add_argument("--repeat", type=int, default=2, help="runs of each side; the fastest counts")
    p.add_argument("--child", choices=["anchor", "fasta", "full", "go"], dest="side")
    p.add_argument("--fasta", type=Path)
    p.add_argument("--tsv", type=Path)
    p.add_argument("--obo", type=Path)
    args = p.parse_args()
    if args.side:
        return _child(args)
    fasta, tsv = args.data / "swissprot2014_go.fasta.gz", args.data / "swissprot2014_go.tsv.gz"
    obo = args.data / "go_2014.obo.gz"
    for path in (fasta, tsv):
        if not path.exists():
            sys.exit(f"{path} missing: run ../shared/data/build_swissprot2014.sh {args.data}")
    runs: dict[str, list[dict]] = {"anchor": [], "fasta": [], "full": []}
    if obo.exists():
        runs["go"] = []
    for _ in range(args.repeat):
        for side in runs:
            runs[side].append(_run(side, fasta, tsv, obo))
    best = {side: min(rs, key=lambda r: r["seconds"]) for side, rs in runs.items()}
    a, f, full = best["anchor"], best["fasta"], best["full"]
    print(f"wall-clock on a shared machine, best of {args.repeat}; CPU = process CPU seconds, all threads; "
          "peak RSS of the child process that ran it")
    names = {"anchor": "anchor: minimal parser + Arrow into DuckDB (PK), FASTA only",
             "fasta": "protiso ingest, FASTA only", "full": "protiso ingest, FASTA + GO rows, all checks",
             "go": "protiso ingest, FASTA + GO rows + go_2014.obo.gz"}
    for side, r in best.items():
        print(f"{names[side]:62s} {r['seconds']:6.1f} s  CPU {r['cpu_seconds']:6.1f} s  peak RSS {r['peak_rss_mb']:6.0f} MB")
    print(f"proteins {full['proteins']:,}, residues {full['residues']:,}, GO rows {full['annotations']:,}"
          + (f", GO terms {best['go']['go_terms']:,}" if "go" in best else ""))
    target_ratio = TARGET_SECONDS / ANCHOR_SECONDS
    for side in ("full", "go") if "go" in best else ("full",):
        r = best[side]
        ratio = r["seconds"] / a["seconds"]
        print(f"ratio {side} ingest / anchor = {ratio:.2f} (target <= {target_ratio:.2f} = {TARGET_SECONDS:.0f} s / "
              f"{ANCHOR_SECONDS} s: {'PASS' if ratio <= target_ratio else 'FAIL'}; CPU {r['cpu_seconds'] / a['cpu_seconds']:.2f}); "
              f"at the anchor's {ANCHOR_SECONDS} s that is {ratio * ANCHOR_SECONDS:.1f} s")
        print(f"peak RSS {side} ingest = {r['peak_rss_mb']:.0f} MB (target <= {TARGET_RSS_MB} MB: "
              f"{'PASS' if r['peak_rss_mb'] <= TARGET_RSS_MB else 'FAIL'}); anchor {a['peak_rss_mb']:.0f} MB")
    print(f"ratio FASTA-only ingest / anchor = {f['seconds'] / a['seconds']:.2f} (CPU {f['cpu_seconds'] / a['cpu_seconds']:.2f}); "
          f"peak RSS {f['peak_rss_mb']:.0f} MB")
    print(f"re-ingest of the same FASTA (no-op, {full['again_new']} new): {full['again_seconds']:.1f} s")


if __name__ == "__main__":
    main()
