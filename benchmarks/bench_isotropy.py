"""Benchmark: streaming isotropy (protiso) vs the reference IsoScore package on one matrix.

Builds a temporary store holding N x D float32 synthetic anisotropic embeddings in Parquet
(default the full Swiss-Prot 2014 size, 516,371 x 1024, about 2 GB; generated in chunks),
plus N proteins in 100 organisms, then measures, each side in its own subprocess (peak RSS
from getrusage), side by side:

  1. protiso: one streaming pass (scan_layer + metrics), vs the reference: load the same
     matrix from the same Parquet files into memory, IsoScore.IsoScore(X). Time and peak RSS.
     Targets: protiso peak <= 1/3 of the reference's, and faster.
  2. a 100-group --group-by (organism) in one pass vs one group. Target <= 1.5x.
  3. exact average cosine (sum of unit vectors, O(n d)) vs a brute-force estimate over a
     random sample of m proteins (O(m^2 d)): time and error.

Usage: python benchmarks/bench_isotropy.py [--n 516371] [--dim 1024] [--keep DIR]
The machine is shared: timings are noisy; run it more than once to compare.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

LAYER = 0
RUN = "bench"
N_GROUPS = 100


def generate(root: Path, n: int, dim: int, chunk: int = 32768, seed: int = 0) -> None:
    """Anisotropic embeddings like a pLM's: a large common offset, a decaying spectrum."""
    from protiso import open_store

    rng = np.random.default_rng(seed)
    scales = (1.0 + np.arange(dim)) ** -1.0 * 4.0          # decaying per-direction spread
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    mix = (scales[:, None] * basis.T).astype(np.float32)    # rotate so no axis is special
    offset = rng.normal(0, 1.0, dim).astype(np.float32) * 0.5
    with open_store(root) as store:
        accs = [f"B{i:07d}" for i in range(n)]
        proteins = pa.table({"accession": accs, "organism": [f"org{i % N_GROUPS:03d}" for i in range(n)],
                             "length": pa.array(rng.integers(50, 1000, n), pa.int32()),
                             "sequence": ["M"] * n})
        store.con.register("_bench_proteins", proteins)
        store.con.execute("INSERT INTO proteins (accession, organism, length, sequence) "
                          "SELECT accession, organism, length, sequence FROM _bench_proteins")
        store.con.unregister("_bench_proteins")
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            Z = rng.standard_normal((stop - start, dim), dtype=np.float32)
            X = Z @ mix + offset
            flat = pa.array(X.ravel(), pa.float32())
            store.write_part(f"embeddings/{RUN}", pa.table({
                "accession": accs[start:stop], "layer": pa.array([LAYER] * (stop - start), pa.int16()),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, dim)}))


# ------------------------------------------------------------------ measured sides (subprocess)
def side_protiso(root: str, dim: int, group_by: str | None) -> dict:
    from protiso import open_store
    from protiso.isotropy.engine import scan_layer, summarize

    t0 = time.perf_counter()
    with open_store(root, read_only=True) as store:
        acc = scan_layer(store, RUN, LAYER, dim, group_by=group_by)
        t_pass = time.perf_counter() - t0
        rows = summarize(acc, grouped=bool(group_by))
    elapsed = time.perf_counter() - t0
    first = rows[0][1] if not group_by else None
    return {"seconds": elapsed, "pass_seconds": t_pass, "groups": len(rows),
            "isoscore": first.isoscore if first else None, "avg_cosine": first.avg_cosine if first else None}


def _load_matrix(root: str, dim: int) -> np.ndarray:
    """The reference needs the matrix in memory: read the same Parquet parts into one array."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from protiso import open_store

    with open_store(root, read_only=True) as store:
        parts = store.parts(f"embeddings/{RUN}")
        n = int(store.scalar("SELECT sum(n_rows) FROM parts WHERE dataset = ?", [f"embeddings/{RUN}"]))
    X = np.empty((n, dim), dtype=np.float32)
    at = 0
    for part in parts:
        t = pq.read_table(part, columns=["layer", "embedding"])
        t = t.filter(pc.equal(t["layer"], LAYER))
        emb = t["embedding"].combine_chunks()
        X[at:at + len(emb)] = emb.flatten().to_numpy().reshape(-1, dim)
        at += len(emb)
        del t, emb
    return X[:at]


def side_reference(root: str, dim: int) -> dict:
    from IsoScore.IsoScore import IsoScore

    t0 = time.perf_counter()
    X = _load_matrix(root, dim)
    t_load = time.perf_counter() - t0
    score = float(IsoScore(X))
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "load_seconds": t_load, "isoscore": score}


def side_cosine(root: str, dim: int, samples: list[int]) -> dict:
    X = _load_matrix(root, dim)
    n = len(X)
    t0 = time.perf_counter()
    su = np.zeros(dim)
    for start in range(0, n, 65536):
        B = X[start:start + 65536].astype(np.float64)
        su += (B / np.linalg.norm(B, axis=1, keepdims=True)).sum(0)
    exact = float((su @ su - n) / (n * (n - 1)))
    out = {"exact": exact, "exact_seconds": time.perf_counter() - t0, "sampled": []}
    rng = np.random.default_rng(1)
    for m in samples:
        t0 = time.perf_counter()
        S = X[rng.choice(n, m, replace=False)].astype(np.float64)
        S /= np.linalg.norm(S, axis=1, keepdims=True)
        total = 0.0  # all m^2 dot products, in row blocks (brute force, O(m^2 d))
        for start in range(0, m, 2048):
            total += float((S[start:start + 2048] @ S.T).sum())
        est = float((total - m) / (m * (m - 1)))
        out["sampled"].append({"m": m, "seconds": time.perf_counter() - t0, "estimate": est,
                               "abs_error": abs(est - exact)})
    return out


def _child(args) -> None:
    if args.side == "protiso":
        res = side_protiso(args.root, args.dim, args.group_by)
    elif args.side == "reference":
        res = side_reference(args.root, args.dim)
    else:
        res = side_cosine(args.root, args.dim, [1000, 5000, 20000])
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def _run(root: Path, dim: int, side: str, group_by: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--root", str(root), "--dim", str(dim)]
    if group_by:
        cmd += ["--group-by", group_by]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=516_371)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--keep", type=Path, help="build/reuse the store here and keep it")
    p.add_argument("--child", choices=["protiso", "reference", "cosine"], dest="side")
    p.add_argument("--root")
    p.add_argument("--group-by")
    args = p.parse_args()
    if args.side:
        return _child(args)

    need = args.n * args.dim * 4 * 1.3
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench_isotropy_"))
    free = shutil.disk_usage(base if base.exists() else base.parent).free
    if free < need * 1.5:
        sys.exit(f"need about {need / 2**30:.1f} GiB free under {base}, have {free / 2**30:.1f}")
    root = base / "store"
    try:
        if not (root / "protiso.duckdb").exists():
            t0 = time.perf_counter()
            generate(root, args.n, args.dim)
            print(f"generated {args.n:,} x {args.dim} float32 in {time.perf_counter() - t0:.0f} s "
                  f"({sum(f.stat().st_size for f in root.rglob('*.parquet')) / 2**30:.2f} GiB Parquet)")
        print("timings are wall-clock on a shared machine: noisy")
        ours = _run(root, args.dim, "protiso")
        ref = _run(root, args.dim, "reference")
        print(f"protiso streaming : {ours['seconds']:7.1f} s  peak RSS {ours['peak_rss_mb']:8.0f} MB  "
              f"IsoScore {ours['isoscore']:.6g}")
        print(f"reference IsoScore: {ref['seconds']:7.1f} s  peak RSS {ref['peak_rss_mb']:8.0f} MB  "
              f"IsoScore {ref['isoscore']:.6g}  (load {ref['load_seconds']:.1f} s, torch float32)")
        print(f"  ratio memory protiso/reference = {ours['peak_rss_mb'] / ref['peak_rss_mb']:.3f} (target <= 0.333)")
        print(f"  ratio time   protiso/reference = {ours['seconds'] / ref['seconds']:.3f} (target < 1)")
        print(f"  IsoScore relative difference = {abs(ours['isoscore'] - ref['isoscore']) / abs(ref['isoscore']):.2e}")
        grouped = _run(root, args.dim, "protiso", group_by="organism")
        print(f"group-by organism : {grouped['seconds']:7.1f} s  {grouped['groups']} groups  "
              f"peak RSS {grouped['peak_rss_mb']:.0f} MB  (pass {grouped['pass_seconds']:.1f} s, "
              f"one group's pass {ours['pass_seconds']:.1f} s)")
        print(f"  ratio time {grouped['groups']} groups / 1 group = {grouped['seconds'] / ours['seconds']:.3f} "
              f"with all metrics, {grouped['pass_seconds'] / ours['pass_seconds']:.3f} for the pass "
              "(target <= 1.5)")
        cos = _run(root, args.dim, "cosine")
        print(f"exact average cosine {cos['exact']:.6f} in {cos['exact_seconds']:.2f} s (O(n d), all "
              f"{args.n * (args.n - 1) // 2:,} pairs); protiso gets it from the same pass")
        for s in cos["sampled"]:
            print(f"  sampled brute force m={s['m']:>6,}: {s['seconds']:6.2f} s  estimate {s['estimate']:.6f}  "
                  f"abs error {s['abs_error']:.2e}  time ratio exact/sampled "
                  f"{cos['exact_seconds'] / s['seconds']:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
