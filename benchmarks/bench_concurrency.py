"""Readers during a long job (issue 13): how long a reader waits for a query while `protiso embed`
runs, and what a reader polling every second costs the embed.

Store: the 20k Swiss-Prot sample (../shared/data, else the bundled 2k sample) ingested once,
copied for each embed. Job: `protiso embed` (protiso-mini, float32, the default commit interval
of 10 s unless --flush-seconds) in a child process, as a user runs it.

1. undisturbed: the embed alone; its throughput is the run's recorded residues/s.
2. disturbed: the same embed on a fresh copy while this process, every --interval seconds, opens
   the store read-only (`open_store(..., read_only=True)`), runs a query over the catalog and
   the embeddings view, and closes it; each poll's wall time is the reader's wait. A baseline of
   the same poll with no job running separates the wait from the cost of opening a store.
3. control (--control): the same reader polling another copy of the store, so it shares the
   CPUs but no lock with the embed: what the reader's own CPU costs the embed on this machine.
   --repeats alternates the runs, which steadies the ratios on a shared machine.

Targets: median reader wait <= 1 s; disturbed throughput >= 0.95 x undisturbed. Every poll
must succeed (no "in use by another process").

    python benchmarks/bench_concurrency.py                     # the full 20k sample
    python benchmarks/bench_concurrency.py --where "length < 200" --repeats 3 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protiso import open_store  # noqa: E402
from protiso.ingest import ingest  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "swissprot2014_go_20k.fasta.gz"
SAMPLE = ROOT / "protiso" / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"
PROTISO = str(Path(sys.executable).with_name("protiso"))
POLL = "SELECT (SELECT count(*) FROM run_proteins) AS proteins, (SELECT count(*) FROM embeddings) AS vectors"


def poll(root: Path) -> tuple[float, int, str | None]:
    """One reader's query: (seconds waited, proteins committed, error)."""
    t0 = time.perf_counter()
    try:
        with open_store(root, read_only=True, wait=120) as s:
            proteins, _ = s.one(POLL)
    except Exception as exc:   # noqa: BLE001 - a failed poll is a result to report
        return time.perf_counter() - t0, -1, f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - t0, int(proteins), None


def embed(root: Path, args, reader_interval: float | None, read_root: Path | None = None) -> dict:
    cmd = [PROTISO, "--store", str(root), "embed", "--model", args.model, "--dtype", "float32",
           "--flush-seconds", str(args.flush_seconds), "--json"]
    if args.where:
        cmd += ["--where", args.where]
    t0 = time.perf_counter()
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waits, errors, seen = [], [], []
    if reader_interval:
        time.sleep(reader_interval)
        while job.poll() is None:
            start = time.perf_counter()
            wait, proteins, err = poll(read_root or root)
            if job.poll() is not None:
                break                        # the poll overlapped the end of the job
            waits.append(wait)
            seen.append(proteins)
            if err:
                errors.append(err)
            time.sleep(max(0.0, reader_interval - (time.perf_counter() - start)))
    out, err = job.communicate()
    wall = time.perf_counter() - t0
    if job.returncode != 0:
        raise SystemExit(f"embed failed ({job.returncode}): {err[-2000:]}")
    run = json.loads(out)[0]
    return {"wall_s": wall, "residues_per_s": run["residues_per_s"], "n_done": run["n_done"],
            "n_residues": run["n_residues"], "waits": waits, "errors": errors,
            "monotonic": seen == sorted(seen)}


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(values), "median_s": statistics.median(values),
            "p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max_s": ordered[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fasta", type=Path, default=SHARED if SHARED.exists() else SAMPLE)
    ap.add_argument("--where", default=None, help="embed only these proteins (SQL over protein_meta)")
    ap.add_argument("--model", default="protiso-mini")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between reader polls")
    ap.add_argument("--flush-seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1, help="alternate undisturbed and disturbed embeds "
                    "this many times (on a shared machine the ratio of sums is steadier)")
    ap.add_argument("--control", action="store_true", help="also run the embed while the same reader "
                    "polls another copy of the store: the reader's CPU cost without any shared lock")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        template = Path(tmp) / "template"
        with open_store(template, create=True) as s:
            ingest(s, [args.fasta])
            n = s.scalar("SELECT count(*) FROM protein_meta" + (f" WHERE {args.where}" if args.where else ""))
        baseline = [poll(template)[0] for _ in range(10)]
        plan = [("undisturbed", None, False), ("disturbed", args.interval, False)]
        if args.control:
            plan.append(("control", args.interval, True))
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
        for _ in range(args.repeats):
            for name, interval, elsewhere in plan:
                root = Path(tmp) / name
                shutil.copytree(template, root)
                runs[name].append(embed(root, args, interval, template if elsewhere else None))
                shutil.rmtree(root)
    runs = {name: {"wall_s": sum(r["wall_s"] for r in rs),
                   "residues_per_s": sum(r["n_residues"] for r in rs) / sum(r["n_residues"] / r["residues_per_s"] for r in rs),
                   "each_residues_per_s": [r["residues_per_s"] for r in rs],
                   "n_done": rs[0]["n_done"], "n_residues": rs[0]["n_residues"],
                   "waits": [w for r in rs for w in r["waits"]], "errors": [e for r in rs for e in r["errors"]],
                   "monotonic": all(r["monotonic"] for r in rs)} for name, rs in runs.items()}
    ratio = runs["disturbed"]["residues_per_s"] / runs["undisturbed"]["residues_per_s"]
    result = {
        "proteins": n, "fasta": str(args.fasta), "where": args.where, "model": args.model,
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats,
        "flush_seconds": args.flush_seconds, "interval_s": args.interval,
        "reader_baseline": summary(baseline),
        "reader_during_embed": summary(runs["disturbed"]["waits"]),
        "reader_errors": runs["disturbed"]["errors"][:5], "reader_saw_monotonic_state": runs["disturbed"]["monotonic"],
        **{name: {k: v for k, v in r.items() if k not in ("waits", "errors", "monotonic")} for name, r in runs.items()},
        "throughput_ratio": ratio,
        "control_ratio": runs["control"]["residues_per_s"] / runs["undisturbed"]["residues_per_s"] if args.control else None,
    }
    r = result["reader_during_embed"]
    print(f"{n:,} proteins, {args.model}; reader every {args.interval:g} s during the embed: "
          f"{r.get('n', 0)} polls, median wait {r.get('median_s', float('nan')):.3f} s, "
          f"p95 {r.get('p95_s', float('nan')):.3f} s, max {r.get('max_s', float('nan')):.3f} s "
          f"(no job: median {result['reader_baseline']['median_s']:.3f} s), "
          f"{len(runs['disturbed']['errors'])} failed polls")
    print(f"embed: {runs['undisturbed']['residues_per_s']:,.0f} residues/s alone, "
          f"{runs['disturbed']['residues_per_s']:,.0f} with the reader: ratio {ratio:.3f}"
          + (f"; with the same reader on another copy of the store (CPU only, no lock): ratio "
             f"{result['control_ratio']:.3f}" if args.control else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
