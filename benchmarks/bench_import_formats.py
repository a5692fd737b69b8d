"""Reading a UniProt-sized per-protein HDF5 file through protiso.interchange: time and memory.

UniProt's per-protein.h5 for Swiss-Prot holds one float16 (1024,) dataset per accession
(516,371 of them, ~1.1 GB). Target (issue 14): the whole `protiso import` (reader + Parquet
parts) <= 60 s and <= 1.5 GB on 2 cores, so the reader must be well under that.

    python benchmarks/bench_import_formats.py                 # full size (~45 s to write the file)
    python benchmarks/bench_import_formats.py --n 50000       # scaled down
    python benchmarks/bench_import_formats.py --dir /tmp/b --keep   # keep / reuse the file

Phases, each in a fresh subprocess so its peak RSS is its own:
  write     the synthetic file, written with h5py (UniProt layout: contiguous, default format)
  sha256    one streaming hash pass over the file
  per-dataset access alternatives on --sample datasets (us per dataset)
  reader    open_source(...).batches(): validated float32 batches + sha256 alongside
  parquet   the reader feeding write_parquet (zstd), a stand-in for writing the run's parts
Needs only numpy, h5py, pyarrow and protiso (no pytest).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

UNIPROT_N = 516_371
DIM = 1024
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (less sensitive than wall time
    to other load on a shared machine)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def accessions(n: int) -> list[str]:
    """n distinct 6-character UniProt-shaped accessions ([OPQ][0-9][A-Z0-9]{3}[0-9]),
    shuffled. Up to 300 x 36^3 = 14 M."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a, b = divmod(i, 36 ** 3)
        mid = "".join(_ALNUM[(b // 36 ** k) % 36] for k in range(3))
        out.append(f"{'OPQ'[a % 3]}{(a // 3) % 10}{mid}{a // 30 % 10}")
    order = rng.permutation(n)  # UniProt files are not written in name order either
    return [out[i] for i in order]


def write_file(path: Path, n: int) -> dict:
    """UniProt layout: one contiguous float16 (1024,) dataset per accession at the root."""
    import h5py
    from h5py import h5d, h5s, h5t
    t0 = time.perf_counter()
    ids = accessions(n)
    assert len(set(ids)) == n
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((4096, DIM)).astype(np.float16)
    # low-level create + write: the same file as create_dataset makes, twice as fast
    with h5py.File(path, "w") as f:
        tid, space = h5t.py_create(np.dtype("<f2")), h5s.create_simple((DIM,))
        for i, acc in enumerate(ids):
            h5d.create(f.id, acc.encode(), tid, space).write(h5s.ALL, h5s.ALL, pool[i % 4096])
    return {"seconds": time.perf_counter() - t0, "bytes": path.stat().st_size}


def phase_sha256(path: Path) -> dict:
    from protiso.interchange._common import sha256_file
    t0 = time.perf_counter()
    sha256_file(path)
    return {"seconds": time.perf_counter() - t0}


def phase_alternatives(path: Path, sample: int) -> dict:
    """Per-dataset CPU cost (process_time: steadier than wall time on a shared machine) of
    ways to read many small datasets, on the first `sample` names."""
    import h5py
    from h5py import h5d, h5s, h5t
    out = {}
    with h5py.File(path, "r") as f:
        t0 = time.perf_counter()
        names: list[bytes] = []
        f.id.links.iterate(names.append)
        out["list_names_all_s"] = time.perf_counter() - t0
        names = names[:sample]
        strs = [n.decode() for n in names]
        buf16 = np.empty((len(names), DIM), np.float16)
        buf32 = np.empty((len(names), DIM), np.float32)

        def timed(label, fn):
            t = time.process_time()
            fn()
            out[label] = (time.process_time() - t) / len(names) * 1e6

        timed("highlevel_getitem_us", lambda: [f[s][()] for s in strs])
        timed("highlevel_read_direct_us",
              lambda: [f[s].read_direct(buf16, dest_sel=np.s_[i]) for i, s in enumerate(strs)])
        left = [len(names)]

        def visit(name, obj):
            obj[()]
            left[0] -= 1
            return True if left[0] == 0 else None
        timed("highlevel_visititems_us", lambda: f.visititems(visit))
        ms, ALL = h5s.create_simple((DIM,)), h5s.ALL
        m16, m32 = h5t.py_create(np.dtype("<f2")), h5t.py_create(np.dtype("<f4"))

        def lowlevel(buf, mtype, check):
            for i, nm in enumerate(names):
                ds = h5d.open(f.id, nm)
                if check:
                    ds.get_storage_size()
                ds.read(ms, ALL, buf[i], mtype)
        timed("lowlevel_native_f16_us", lambda: lowlevel(buf16, m16, True))
        timed("lowlevel_hdf5_convert_f32_us", lambda: lowlevel(buf32, m32, True))

        def shape_type():
            for i, nm in enumerate(names):
                ds = h5d.open(f.id, nm)
                ds.shape, ds.dtype
                ds.read(ms, ALL, buf16[i], m16)
        timed("lowlevel_with_shape_dtype_us", shape_type)
    with h5py.File(path, "r", rdcc_nbytes=64 << 20) as f:  # chunk cache: no use for contiguous
        t = time.process_time()
        for i, nm in enumerate(names):
            h5d.open(f.id, nm).read(ms, ALL, buf16[i], m16)
        out["lowlevel_rdcc64MB_us"] = (time.process_time() - t) / len(names) * 1e6
    from protiso.interchange.hdf5 import _open  # the reader's own open: evict-on-close
    f = _open(path)
    t = time.process_time()
    for i, nm in enumerate(names):
        ds = h5d.open(f.id, nm)
        ds.get_storage_size()
        ds.read(ms, ALL, buf16[i], m16)
    out["lowlevel_evict_on_close_us"] = (time.process_time() - t) / len(names) * 1e6
    f.close()
    return out


def phase_reader(path: Path, batch_rows: int, parquet: Path | None) -> dict:
    from protiso.interchange import open_source, write_parquet
    base = peak_rss_mb()  # imports (protiso pulls in its store modules) before any reading
    t0, c0 = time.perf_counter(), cpu_seconds()
    reader = open_source([path])
    rows = 0

    def counted():
        nonlocal rows
        for b in reader.batches(batch_rows):
            rows += len(b)
            yield b
    if parquet is None:
        for _ in counted():
            pass
    else:
        write_parquet(parquet, counted())
    seconds = time.perf_counter() - t0
    assert reader.sources[0].sha256 is not None
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds() - c0, "rows": rows,
           "rows_per_s": rows / seconds,
           "us_per_protein": seconds / rows * 1e6, "peak_rss_mb": peak_rss_mb(),
           "rss_after_imports_mb": base}
    if parquet is not None:
        out["parquet_bytes"] = parquet.stat().st_size
        parquet.unlink()
    return out


def child(args) -> None:
    path = Path(args.file)
    if args.phase == "write":
        res = write_file(path, args.n)
    elif args.phase == "sha256":
        res = phase_sha256(path)
    elif args.phase == "alternatives":
        res = phase_alternatives(path, args.sample)
    else:
        pq = path.with_suffix(".parquet") if args.phase == "parquet" else None
        res = phase_reader(path, args.batch_rows, pq)
    res["peak_rss_mb"] = res.get("peak_rss_mb", peak_rss_mb())
    print(json.dumps(res))


def run_phase(phase: str, file: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--file", str(file), "--n", str(args.n),
           "--sample", str(args.sample), "--batch-rows", str(args.batch_rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"phase {phase} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=UNIPROT_N, help="datasets (default: Swiss-Prot)")
    ap.add_argument("--dir", help="where the file goes (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the file (reused next time)")
    ap.add_argument("--sample", type=int, default=20_000, help="datasets per alternative")
    ap.add_argument("--batch-rows", type=int, default=4096)
    ap.add_argument("--skip", default="", help="comma list of phases to skip")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        return child(args)
    args.sample = min(args.sample, args.n)
    tmp = None if args.dir else tempfile.TemporaryDirectory()
    folder = Path(args.dir or tmp.name)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"per-protein-{args.n}.h5"
    skip = set(args.skip.split(","))
    results = {"n": args.n, "dim": DIM, "cpus": os.cpu_count(),
               "load_average_at_start": os.getloadavg()[0]}
    try:
        if file.exists() and args.keep:
            results["write"] = {"reused": True, "bytes": file.stat().st_size}
        else:
            results["write"] = run_phase("write", file, args)
        for phase in ("sha256", "alternatives", "reader", "parquet"):
            if phase not in skip:
                results[phase] = run_phase(phase, file, args)
                print(f"{phase:13s}", json.dumps(results[phase]), flush=True)
    finally:
        if not args.keep:
            file.unlink(missing_ok=True)
        if tmp is not None:
            tmp.cleanup()
    w = results["write"]
    print(f"\nfile: {args.n} datasets x {DIM} float16, {w['bytes'] / 2**20:.0f} MiB"
          + (f", written in {w['seconds']:.1f} s" if "seconds" in w else " (reused)"))
    if "reader" in results:
        r = results["reader"]
        print(f"reader: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU "
              f"({r['us_per_protein']:.1f} us/protein, {r['rows_per_s']:,.0f} proteins/s), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(after imports {r['rss_after_imports_mb']:.0f} MB)")
    if "parquet" in results:
        r = results["parquet"]
        print(f"reader + write_parquet: {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"load average at start: {results['load_average_at_start']:.1f} on {os.cpu_count()} CPUs")
    if "sha256" in results:
        print(f"sha256 alone: {results['sha256']['seconds']:.2f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
