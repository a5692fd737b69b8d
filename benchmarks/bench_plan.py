"""Planning an embedding job at scale: N synthetic proteins (sequences generated, nothing
embedded), the plan walked as the engines walk it (to-do keys, pages of sequences, windows
sorted by length, the embedder's batches and the Ray engine's tasks), each plan in a fresh
process so its time, CPU time and peak memory are its own (times start once the store is open).

Anchors measured in the same run: the same plan over a quarter of the proteins (linearity:
4x the proteins should cost about 4x), and one plain DuckDB scan of every sequence into Arrow
(the floor: any plan that hands sequences to the engines reads them once).

A run half done: per-protein statuses of the first half of the proteins (in store order, as
the engines embed them), appended as status parts of 20,000 rows (one per commit, as the run
writer does; protiso.runs.status), then the plan of the other half. Anchor: the same statuses
as rows of a catalog table (as before migration 012, in a copy of the catalog): catalog size
and the plan's time and memory.

Synthetic proteins: accessions S000000000..., lengths log-normal (median about 0.73 x mean,
10..35,000), sequences cut from one random 40,000-residue string (so generation is fast; the
catalog compresses them better than real ones). The store is built in DIR and reused.

    python benchmarks/bench_plan.py                      # 10 M proteins, mean length 300
    python benchmarks/bench_plan.py --n 2000000 --dir /tmp/plan2m
    python benchmarks/bench_plan.py --no-half                # without the half-done run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"
SOURCE_LEN = 40_000


def synthetic_store(root: Path, n: int, mean_length: float = 300.0, seed: int = 0) -> None:
    """A store of `n` synthetic proteins (see the module docstring), generated inside DuckDB."""
    import numpy as np

    from protiso import open_store

    rng = np.random.default_rng(seed)
    source = "".join(rng.choice(list(ALPHABET), SOURCE_LEN))
    mu = float(np.log(mean_length) - 0.32)
    with open_store(root, create=True) as s:
        s.con.execute("SET enable_progress_bar = false")
        step = 2_000_000
        for lo in range(0, n, step):
            s.con.execute(f"""
                INSERT INTO proteins (accession, length, sequence, source)
                SELECT accession, n, substr($source, 1 + (hash(i * 3 + 2) % ({SOURCE_LEN} - n))::INTEGER, n),
                       'synthetic'
                FROM (SELECT i, 'S' || lpad(i::VARCHAR, 9, '0') AS accession,
                             least(35000, greatest(10, exp($mu + 0.8 * sqrt(-2 * ln((hash(i * 3) % 1000000 + 0.5) / 1e6))
                                 * cos(2 * pi() * (hash(i * 3 + 1) % 1000000 + 0.5) / 1e6))))::INTEGER AS n
                      FROM range($lo, $hi) t(i))""", {"source": source, "mu": mu, "lo": lo, "hi": min(n, lo + step)})
        s.con.execute("CHECKPOINT")


HALF_RUN = "bench-half"
FLUSH = 20_000


def half_done(root: Path, n: int) -> dict:
    """Statuses of the first half of the proteins as status parts of FLUSH rows (skipped when
    already there); returns the commit times and the catalog size before and after."""
    import pyarrow as pa

    from protiso import open_store
    from protiso.runs import status as run_status

    out = {}
    with open_store(root) as s:
        if s.scalar("SELECT count(*) FROM runs WHERE run_id = ?", [HALF_RUN]):
            return {}
        s.execute("CHECKPOINT")
        out["catalog_before_mb"] = (root / "protiso.duckdb").stat().st_size / 2**20
        s.execute("INSERT INTO runs (run_id, run_key, model, dim, layers, pooling, dtype, length_policy, status) "
                  "VALUES (?, 'bench', 'bench', 1024, [30], 'mean', 'float32', 'truncate', 'interrupted')", [HALF_RUN])
        keys = s.sql("SELECT accession, length FROM proteins WHERE rowid < ? ORDER BY rowid", [n // 2])
        times = []
        for lo in range(0, keys.num_rows, FLUSH):
            b = keys.slice(lo, FLUSH)
            k = b.num_rows
            table = pa.table({"accession": b.column("accession"), "status": pa.array(["done"] * k),
                              "length": b.column("length"), "n_residues": b.column("length"),
                              "reason": pa.nulls(k, pa.string()), "in_stats": pa.nulls(k, pa.bool_()),
                              "local_stored": pa.nulls(k, pa.bool_())})
            t = time.perf_counter()
            run_status.append(s, HALF_RUN, table)
            times.append(time.perf_counter() - t)
        s.execute("CHECKPOINT")
        out.update(parts=len(times), rows=keys.num_rows, first_commits_s=sum(times[:10]) / min(10, len(times)),
                   last_commits_s=sum(times[-10:]) / min(10, len(times)),
                   catalog_after_mb=(root / "protiso.duckdb").stat().st_size / 2**20,
                   status_mb=sum(p.stat().st_size for p in (root / "data" / "status" / HALF_RUN).glob("*.parquet"))
                   / 2**20)
    return out


def legacy_copy(root: Path, dest: Path, n: int) -> float:
    """The anchor: a copy of the catalog with the half-done statuses as catalog rows (the table
    stores had before migration 012) and no status parts; returns the catalog's size in MB."""
    import shutil

    import duckdb

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy2(root / "protiso.duckdb", dest / "protiso.duckdb")
    con = duckdb.connect(str(dest / "protiso.duckdb"))
    con.execute("SET enable_progress_bar = false")
    con.execute("DELETE FROM parts WHERE dataset = ?", [f"status/{HALF_RUN}"])
    con.execute("INSERT INTO run_proteins_legacy (run_id, accession, status, length, n_residues) "
                "SELECT ?, accession, 'done', length, length FROM proteins WHERE rowid < ?", [HALF_RUN, n // 2])
    con.execute("CHECKPOINT")
    con.close()
    return (dest / "protiso.duckdb").stat().st_size / 2**20


CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from protiso import open_store
from protiso.query import as_subset
from protiso.embedding.plan import peak_rss_mb, walk_plan
mode, store_dir, where, run = sys.argv[1], sys.argv[2], sys.argv[3] or None, sys.argv[4]
with open_store(store_dir, read_only=False) as s:
    with s.job():
        s.release()
        t0, c0 = time.perf_counter(), time.process_time()
        if mode == "scan":
            con = s.con
            n = res = 0
            for batch in con.sql("SELECT accession, sequence FROM proteins").to_arrow_reader(65536):
                n += batch.num_rows
            out = dict(proteins=n)
        else:
            r = walk_plan(s, run, as_subset(s, where), 1024, 256, 16384, "truncate", False, False, None, 4096,
                          workers=32)
            out = dict(r.__dict__)
out.update(wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0,
           peak_rss_mb=peak_rss_mb())
print(json.dumps(out))
"""


def child(mode: str, store_dir: Path, where: str = "", run: str = "") -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(store_dir), where, run],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--mean-length", type=float, default=300.0)
    ap.add_argument("--dir", type=Path, default=None, help="store directory (built if missing, then reused)")
    ap.add_argument("--no-half", action="store_true", help="skip the run half done (status parts)")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.gettempdir()) / f"protiso-plan-{args.n}"
    if not (root / "protiso.duckdb").exists():
        t = time.perf_counter()
        synthetic_store(root, args.n, args.mean_length)
        print(f"built {root}: {args.n:,} synthetic proteins in {time.perf_counter() - t:.0f} s")
    quarter = f"accession < 'S{args.n // 4:09d}'"
    scan = child("scan", root)
    q = child("plan", root, quarter)
    full = child("plan", root)
    load = os.getloadavg()[0]
    print(f"{full['proteins']:,} proteins, {full['residues']:,} residues; {os.cpu_count()} CPUs, load average "
          f"{load:.1f} (wall times include other processes' load; CPU times do not)")
    print(f"{'':26} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'1st window s':>13}")
    for label, r in (("scan of all sequences", scan), ("plan, 1/4 of proteins", q), ("plan, all proteins", full)):
        first = r.get("first_window_seconds")
        print(f"{label:26} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mb']:8.0f} "
              f"{'' if first is None else f'{first:13.2f}'}")
    print(f"plan: {full['pages']} pages, {full['windows']:,} windows, {full['batches']:,} batches, "
          f"{full['tasks']:,} Ray tasks (32 workers, {full['task_rows']} proteins each at most); "
          f"keys {full['select_seconds']:.1f} s, {full['keys_mb']:.0f} MB")
    print(f"all vs 1/4 of the proteins: {full['wall_s'] / q['wall_s']:.2f}x wall, {full['cpu_s'] / q['cpu_s']:.2f}x CPU "
          f"(4x the proteins); plan vs one scan of the sequences: {full['wall_s'] / scan['wall_s']:.2f}x wall, "
          f"{full['cpu_s'] / scan['cpu_s']:.2f}x CPU")
    ok = full["wall_s"] <= 60 and full["peak_rss_mb"] <= 2048
    print(f"targets (<= 60 s, <= 2 GB): {'met' if ok else 'NOT met'}")
    if args.no_half:
        return
    made = half_done(root, args.n)
    if made:
        print(f"run half done: {made['rows']:,} statuses in {made['parts']} status parts ({made['status_mb']:.0f} MB "
              f"of Parquet); commit {made['first_commits_s'] * 1000:.0f} ms (first 10) / "
              f"{made['last_commits_s'] * 1000:.0f} ms (last 10); catalog {made['catalog_before_mb']:.0f} -> "
              f"{made['catalog_after_mb']:.0f} MB")
    legacy_mb = legacy_copy(root, root.with_name(root.name + "-legacy"), args.n)
    size_mb = (root / "protiso.duckdb").stat().st_size / 2**20
    half = child("plan", root, "", HALF_RUN)
    old = child("plan", root.with_name(root.name + "-legacy"), "", HALF_RUN)
    print(f"{'plan of the other half':26} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'keys s':>8} {'catalog MB':>11}")
    for label, r, mb in (("statuses as status parts", half, size_mb), ("statuses as catalog rows", old, legacy_mb)):
        print(f"{label:26} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['peak_rss_mb']:8.0f} {r['select_seconds']:8.1f} "
              f"{mb:11.0f}")
    ok = half["wall_s"] <= 60 and half["peak_rss_mb"] <= 2048 and half["proteins"] == args.n - args.n // 2
    print(f"half done: {half['proteins']:,} proteins to do; status parts vs catalog rows: "
          f"{half['wall_s'] / old['wall_s']:.2f}x wall, {half['cpu_s'] / old['cpu_s']:.2f}x CPU, catalog "
          f"{size_mb - legacy_mb:+.0f} MB; targets (<= 60 s, <= 2 GB): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
