"""`protiso import` of a UniProt-sized per-protein HDF5 file: wall time, CPU time and peak memory,
against the bare format reader measured in the same run.

UniProt publishes Swiss-Prot per-protein embeddings (ProtT5, mean-pooled) as per-protein.h5: one
float16 (1024,) dataset per accession. Target (issue 14): the import of 516k x 1024 float16 in
<= 60 s on 2 cores with peak memory <= 1.5 GB. The file is written here with h5py (UniProt
layout, random float16 vectors) for the accessions of a store built from a Swiss-Prot FASTA.

    python benchmarks/bench_import.py                                   # /work/fullset FASTA, all proteins
    python benchmarks/bench_import.py --n 50000                         # the first 50k accessions only
    python benchmarks/bench_import.py --fasta none --n 20000            # synthetic accessions/sequences
    python benchmarks/bench_import.py --dir /tmp/bi --keep              # keep / reuse store and file

Phases, each in a fresh process so its peak RSS is its own:
  store    ingest the FASTA (`protiso ingest`; reused with --keep)
  write    the HDF5 file (reused with --keep)
  reader   the bare reader: open_source(...).batches() drained (validation, float32, sha256)
  import   `python -m protiso --store COPY import FILE --name ...` as a child process, into a copy
           of the store; CPU and peak RSS from getrusage(RUSAGE_CHILDREN); the run is checked
           (proteins, one vector compared), then the copy is removed
The two measured phases alternate `--repeat` times (the best of each counts: the machine is shared).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1024
FULLSET = Path("/work/fullset/swissprot2014_go.fasta.gz")
TARGET_SECONDS, TARGET_RSS_MB = 60.0, 1536


def fasta_accessions(fasta: Path, n: int | None) -> list[str]:
    """Accessions of the FASTA in file order (first word of each header)."""
    out = []
    with gzip.open(fasta, "rt") as fh:
        for line in fh:
            if line[0] == ">":
                out.append(line[1:].split(None, 1)[0])
                if n is not None and len(out) == n:
                    break
    return out


def synthetic_fasta(path: Path, n: int) -> None:
    """n proteins with UniProt-shaped accessions and 50-residue random sequences."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_import_formats import accessions
    rng = np.random.default_rng(2)
    letters = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
    with gzip.open(path, "wt", compresslevel=1) as fh:
        for acc in sorted(accessions(n)):
            fh.write(f">{acc}\n{letters[rng.integers(0, 20, 50)].tobytes().decode()}\n")


def phase_store(store: Path, fasta: Path) -> dict:
    from protiso import open_store
    from protiso.ingest import ingest
    t0 = time.perf_counter()
    with open_store(store, create=True) as s:
        ingest(s, [fasta])
        n = s.scalar("SELECT count(*) FROM proteins")
    return {"seconds": time.perf_counter() - t0, "proteins": n}


def phase_write(path: Path, fasta: Path, n: int | None) -> dict:
    """UniProt layout: one contiguous float16 (1024,) dataset per accession at the root, in a
    shuffled order (UniProt files are not written in name order either)."""
    import h5py
    from h5py import h5d, h5s, h5t
    t0 = time.perf_counter()
    ids = fasta_accessions(fasta, n)
    order = np.random.default_rng(0).permutation(len(ids))
    pool = np.random.default_rng(1).standard_normal((4096, DIM)).astype(np.float16)
    with h5py.File(path, "w") as f:
        tid, space = h5t.py_create(np.dtype("<f2")), h5s.create_simple((DIM,))
        for i in order:
            h5d.create(f.id, ids[i].encode(), tid, space).write(h5s.ALL, h5s.ALL, pool[i % 4096])
    return {"seconds": time.perf_counter() - t0, "bytes": path.stat().st_size, "n": len(ids)}


def phase_reader(path: Path) -> dict:
    from protiso.interchange import open_source
    from protiso.interchange.importer import PART_BYTES
    rows = max(256, min(65536, PART_BYTES // (4 * DIM)))   # the batch size the import reads with
    t0, c0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    reader = open_source([path])
    n = 0
    for b in reader.batches(rows):
        n += len(b)
    assert reader.sources[0].sha256 is not None
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": _cpu(resource.RUSAGE_SELF) - c0, "rows": n,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def phase_import(path: Path, store: Path, name: str) -> dict:
    """The CLI import into a copy of the store (deleted afterwards, so the store is reused as it is)."""
    import shutil

    import h5py
    from protiso import open_store
    from protiso.runs import load_vectors
    copy = store.with_name(store.name + "-import")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    cmd = [sys.executable, "-m", "protiso", "--store", str(copy), "import", str(path), "--name", name,
           "--model-id", "synthetic/float16-1024", "--json"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            sys.exit(f"import failed:\n{proc.stderr}")
        try:
            row = json.loads(proc.stdout)[0]
        except ValueError:
            sys.exit(f"import printed no JSON:\n{proc.stdout[:2000]}\n{proc.stderr[:2000]}")
        out = {"seconds": seconds, "cpu_seconds": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
               "proteins": row["n_done"], "run_id": row["run_id"]}
        with open_store(copy) as s:       # one vector back, exactly
            with h5py.File(path, "r") as f:
                acc = next(iter(f))
                want = f[acc][()].astype(np.float32)
            assert np.array_equal(load_vectors(s, row["run_id"], -1, [acc])[0], want)
            out["parts"] = s.scalar("SELECT count(*) FROM parts WHERE dataset = $d",
                                    {"d": f"embeddings/{row['run_id']}"})
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return out


def _cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_phase(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"phase {args[0]} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fasta", default=str(FULLSET), help="Swiss-Prot FASTA (gz) for the store, or 'none' "
                    "for synthetic proteins")
    ap.add_argument("--n", type=int, default=None, help="proteins in the file (default: all of the FASTA)")
    ap.add_argument("--dir", help="where the store and file go (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the store and the file")
    ap.add_argument("--repeat", type=int, default=1, help="alternating reader/import measurements")
    ap.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        kind, *rest = args.phase
        if kind == "store":
            res = phase_store(Path(rest[0]), Path(rest[1]))
        elif kind == "write":
            res = phase_write(Path(rest[0]), Path(rest[1]), int(rest[2]) or None)
        elif kind == "reader":
            res = phase_reader(Path(rest[0]))
        else:
            res = phase_import(Path(rest[0]), Path(rest[1]), rest[2])
        print(json.dumps(res))
        return
    tmp = None if args.dir else tempfile.TemporaryDirectory()
    folder = Path(args.dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    fasta = Path(args.fasta)
    if args.fasta == "none" or not fasta.is_file():
        if args.fasta != "none":
            print(f"{fasta} not found: synthetic proteins", flush=True)
        fasta = folder / f"synthetic-{args.n or 20000}.fasta.gz"
        if not fasta.exists():
            synthetic_fasta(fasta, args.n or 20000)
    store = folder / f"store-{fasta.name.split('.')[0]}"
    h5 = folder / f"per-protein-{fasta.name.split('.')[0]}-{args.n or 'all'}.h5"
    results = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0]}
    try:
        if not (args.keep and (store / "protiso.duckdb").exists()):
            results["store"] = run_phase("store", str(store), str(fasta))
            print("store  ", json.dumps(results["store"]), flush=True)
        if not (args.keep and h5.exists()):
            results["write"] = run_phase("write", str(h5), str(fasta), str(args.n or 0))
            print("write  ", json.dumps(results["write"]), flush=True)
        readers, imports = [], []
        for i in range(args.repeat):
            readers.append(run_phase("reader", str(h5)))
            print("reader ", json.dumps(readers[-1]), flush=True)
            imports.append(run_phase("import", str(h5), str(store), f"bench-{os.getpid()}-{i}"))
            print("import ", json.dumps(imports[-1]), flush=True)
    finally:
        if not args.keep:
            import shutil
            h5.unlink(missing_ok=True)
            shutil.rmtree(store, ignore_errors=True)
        if tmp is not None:
            tmp.cleanup()
    r = min(readers, key=lambda x: x["seconds"])
    m = min(imports, key=lambda x: x["seconds"])
    results.update(reader=r, imports=imports, best_import=m, ratio_wall=m["seconds"] / r["seconds"],
                   ratio_cpu=m["cpu_seconds"] / r["cpu_seconds"], load_average_at_end=os.getloadavg()[0])
    print(f"\nfile: {m['proteins']:,} proteins x {DIM} float16")
    print(f"bare reader:     {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"protiso import:  {m['seconds']:.1f} s wall, {m['cpu_seconds']:.1f} s CPU, peak RSS {m['peak_rss_mb']:.0f} MB "
          f"(target <= {TARGET_SECONDS:.0f} s, <= {TARGET_RSS_MB} MB)")
    print(f"import / reader: {results['ratio_wall']:.2f}x wall, {results['ratio_cpu']:.2f}x CPU; load average "
          f"{results['load_average_at_start']:.1f} at start, {results['load_average_at_end']:.1f} at end on "
          f"{os.cpu_count()} CPUs")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
