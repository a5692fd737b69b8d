"""CUDA check of `protiso embed` (run on a machine with a GPU): the CUDA path, --dtype auto's
parity probe there, and real out-of-memory halving.

1. A 6-layer, 512-wide BERT (ProtBERT architecture, random weights) embeds N bundled Swiss-Prot
   proteins on CPU (float32) and on CUDA (--dtype auto); printed: residues/s and the cosine of
   every CUDA embedding to its CPU float32 embedding.
2. The same on CUDA with the process limited to a small fraction of GPU memory and a huge token
   budget, so that the first batches run out of memory: printed: how many forward passes ran out
   of memory, that every protein was embedded (or recorded as failed), and that the vectors equal
   those of step 1.

    python benchmarks/check_embed_cuda.py --n 300
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_embed import SAMPLE, SIZE, cosines, make_store, read_fasta  # noqa: E402


class CountingAdapter:
    def __init__(self, inner):
        self._inner, self.calls, self.ooms, self.sizes = inner, 0, 0, []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed_batch(self, seqs, layers):
        self.calls += 1
        try:
            out = self._inner.embed_batch(seqs, layers)
        except torch.cuda.OutOfMemoryError:
            self.ooms += 1
            raise
        self.sizes.append(len(seqs))
        return out


def main() -> None:
    import random

    import tiny_models
    from protiso import open_store
    from protiso.embedding import embed
    from protiso.runs import delete_run, load_embeddings
    from protiso.models import LoadOptions, load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--fraction", type=float, default=0.02)
    args = ap.parse_args()
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    tmp = Path(tempfile.mkdtemp())
    model_dir = tiny_models.build("bert", tmp / "model", **SIZE)
    recs = random.Random(0).sample(read_fasta(SAMPLE), args.n)
    make_store(tmp / "store", recs)
    res = {}
    with open_store(tmp / "store") as s:
        for dev, dtype in (("cpu", "float32"), ("cuda", "auto"), ("cuda", "float32")):
            t = time.perf_counter()
            run = embed(s, model=str(model_dir), device=dev, dtype=dtype, max_length=1022)
            secs = time.perf_counter() - t
            acc, X = load_embeddings(s, run.run_id)
            res[(dev, dtype)] = dict(zip(acc, X))
            print(f"{dev:5s} {dtype:8s} -> {run.dtype:8s} parity {run.parity_cosine}  {run.n_done} proteins "
                  f"{run.n_residues} residues {secs:.1f} s  {run.n_residues / secs:,.0f} res/s (incl. load)")
            delete_run(s, run.run_id)
        for k in (("cuda", "auto"), ("cuda", "float32")):
            c = cosines(res[k], res[("cpu", "float32")])
            print(f"cosine {k} vs cpu float32: min {c.min():.6f} mean {c.mean():.6f}")
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(args.fraction)
        adapter = CountingAdapter(load_model(str(model_dir), LoadOptions(device="cuda", dtype="float32")))
        run = embed(s, model=str(model_dir), adapter=adapter, dtype="float32", max_tokens=4_000_000,
                    max_length=1022)
        acc, X = load_embeddings(s, run.run_id)
        got = dict(zip(acc, X))
        failed = s.sql("SELECT accession, length, reason FROM run_proteins WHERE run_id = ? AND status = "
                       "'failed'", [run.run_id]).to_pylist()
        print(f"memory fraction {args.fraction}: {adapter.calls} forward passes, {adapter.ooms} out of memory, "
              f"batch sizes run: max {max(adapter.sizes)} min {min(adapter.sizes)}; "
              f"{run.n_done} done, {run.n_failed} failed (+ {len(failed)} recorded)")
        for f in failed[:3]:
            print("  failed:", f)
        c = cosines(got, {k: v for k, v in res[("cuda", "float32")].items() if k in got})
        print(f"OOM-halved run vs unconstrained cuda float32: min cosine {c.min():.7f}, "
              f"max abs diff {max(np.abs(got[k] - res[('cuda', 'float32')][k]).max() for k in got):.2e}")


if __name__ == "__main__":
    main()
