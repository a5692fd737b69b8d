"""`protiso embed --engine ray` on this machine: throughput with 1 and 2 actors against the local
engine (the anchor), same model and proteins, run side by side in one process; whether the rows
are bit-identical to the local engine's; and the driver's overhead per result (registering an
actor's parts, statuses and statistics in the catalog). Runs without the test dependencies.

Model: a BERT with ProtBERT's architecture and tokenizer conventions (random weights, seeded;
--hidden/--layers), saved with save_pretrained and loaded by path by every engine. Proteins: the
first N (by length, then accession) of the bundled Swiss-Prot sample with length <= --max-len.
Each engine runs in a fresh copy of the store; --local-stats is on, so the statistics path is
measured too. Ray runs on a local cluster of --cpus CPUs (each actor: 1 CPU, one torch thread,
as the local engine is given here); wall time includes model loading in the actors, so the
figures also print the time to the first result.

    python benchmarks/bench_distributed.py                  # N=240, task size chosen from the workers
    python benchmarks/bench_distributed.py --n 600 --task-rows 64
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--max-len", type=int, default=400)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--task-rows", type=int, default=None, help="default: chosen from the number of workers")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16")
    args = ap.parse_args()

    import torch

    import tiny_models
    from protiso import open_store
    from protiso.cluster import connect
    from protiso.embedding.engines import ray as dembed
    from protiso.embedding import embed
    from protiso.runs import load_embeddings
    from protiso.ingest import ingest

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    try:
        model = tiny_models.build("bert", tmp / "model", hidden=args.hidden, layers=args.layers,
                                  heads=max(1, args.hidden // 64), intermediate=4 * args.hidden, max_pos=args.max_len + 2)
        template = tmp / "template"
        sample = ROOT / "protiso" / "data" / "sample"
        fasta, go = sample / "swissprot2014_go_2k.fasta.gz", sample / "swissprot2014_go_2k.tsv.gz"
        with open_store(template, create=True) as s:
            ingest(s, [fasta], annotations=[go])
            accs = [a for (a,) in s.con.execute(
                "SELECT accession FROM proteins WHERE length <= ? ORDER BY length DESC, accession LIMIT ?",
                [args.max_len, args.n]).fetchall()]
        where = "accession IN (" + ", ".join(f"'{a}'" for a in accs) + ")"   # accessions are [A-Z0-9]
        kw = dict(model=str(model), where=where, layers="last", dtype=args.dtype, device="cpu",
                  local_stats=True, max_tokens=4096)

        overhead = {}
        real_run = dembed.RayEmbedEngine.run

        def run_and_keep(self, *a, **k):
            t0 = time.perf_counter()
            first = {}
            on_chunk = a[-1]

            def timed(chunk, skipped):
                if chunk is not None and "t" not in first:
                    first["t"] = time.perf_counter() - t0
                on_chunk(chunk, skipped)
            real_run(self, *a[:-1], timed, **k)
            overhead.update(self.overhead, first_result_s=first.get("t"))
        dembed.RayEmbedEngine.run = run_and_keep

        results = {}

        def one(label, engine, workers=None):
            root = tmp / label
            shutil.copytree(template, root)
            with open_store(root) as s:
                t0 = time.perf_counter()
                run = embed(s, engine=engine, flush_rows=10**9, flush_seconds=1e9,
                            ray_options={"workers": workers, "task_rows": args.task_rows} if workers else None, **kw)
                wall = time.perf_counter() - t0
                accs_, X = load_embeddings(s, run.run_id)
            results[label] = dict(wall=wall, residues=run.n_residues, X=dict(zip(accs_, X)),
                                  overhead=dict(overhead) if workers else None)
            overhead.clear()

        import ray
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level=40)
        connect()               # quiet logging, as the engine has it
        one("local", "local")
        one("ray-1", "ray", 1)
        one("ray-2", "ray", 2)
        ray.shutdown()

        base = results["local"]
        n_res = base["residues"]
        print(f"{len(accs)} proteins, {n_res:,} residues, BERT {args.layers}x{args.hidden} "
              f"(random weights), {args.dtype} CPU, --local-stats, {args.cpus} Ray CPUs")
        print(f"{'engine':8} {'wall s':>8} {'res/s':>9} {'vs local':>9} {'1st result s':>13} {'tasks':>6} "
              f"{'task rows':>10} {'driver ms/task':>15} {'rows differing':>15} {'max |diff|':>11}")
        for label, r in results.items():
            diffs = [float(np.abs(r["X"][a] - base["X"][a]).max()) for a in base["X"]]
            o = r["overhead"] or {}
            per = (1000 * o["driver_seconds"] / o["results"]) if o.get("results") else None
            print(f"{label:8} {r['wall']:8.2f} {n_res / r['wall']:9.0f} {base['wall'] / r['wall']:8.2f}x "
                  f"{o.get('first_result_s') or float('nan'):13.2f} {o.get('results', '-'):>6} "
                  f"{o.get('task_rows', '-'):>10} {per if per is not None else float('nan'):15.2f} "
                  f"{sum(d > 0 for d in diffs):>9} of {len(diffs)} {max(diffs):11.2e}")
        r1, r2 = results["ray-1"], results["ray-2"]
        print(f"2 actors vs 1 actor: {r1['wall'] / r2['wall']:.2f}x; steady state (after the first result): "
              f"{(r1['wall'] - r1['overhead']['first_result_s']) / max(1e-9, r2['wall'] - r2['overhead']['first_result_s']):.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
