"""`protiso embed` throughput against a naive per-sequence Hugging Face loop, same model and proteins.

Model: a 6-layer, 512-wide BERT with ProtBERT's architecture and tokenizer conventions (random
weights, seeded), saved with save_pretrained and loaded by protiso from the directory. Proteins:
N random Swiss-Prot proteins (seeded) from ../shared/data (else the bundled sample), truncated
to --max-length residues by both paths.

Anchor (naive loop): for each protein, tokenizer(" ".join(sequence)) -> BertModel in float32 ->
mean of the last hidden state over the residue positions.
protiso: `embed(store, model=DIR, dtype=...)`: sorted, token-budget batches, numpy pooling,
Parquet + catalog writes included; with --dtype auto (bf16 autocast where parity holds) and
float32.

Printed: residues/s of each, the ratios, the parity (cosine of every protiso embedding to the
anchor's fp32 embedding: min and mean), and peak RSS of `embed` in child processes over N and
4N proteins (it must not grow with the number of proteins).

    python benchmarks/bench_embed.py                 # N=120, max length 512
    python benchmarks/bench_embed.py --n 300 --threads 2
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "swissprot2014_go_20k.fasta.gz"
SAMPLE = ROOT / "protiso" / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"
SIZE = dict(hidden=512, layers=6, heads=8, intermediate=2048, max_pos=1026)


def read_fasta(path: Path) -> list[tuple[str, str]]:
    out, acc, buf = [], None, []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if acc:
                    out.append((acc, "".join(buf)))
                acc, buf = line[1:].split()[0], []
            elif line:
                buf.append(line.upper())
    if acc:
        out.append((acc, "".join(buf)))
    return out


def write_fasta(path: Path, records) -> None:
    with open(path, "w") as fh:
        for acc, seq in records:
            fh.write(f">{acc}\n{seq}\n")


def naive_loop(model_dir: Path, records, max_length: int) -> tuple[dict, float]:
    """The anchor: one protein per forward pass, fp32, Hugging Face tokenizer."""
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).eval()
    out = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for acc, seq in records:
            s = seq[:max_length].translate(str.maketrans("UZOB", "XXXX"))
            enc = tok(" ".join(s), return_tensors="pt")
            h = model(**enc).last_hidden_state[0, 1:-1]
            out[acc] = h.mean(0).numpy()
    return out, time.perf_counter() - t0


def protiso_run(store_dir: Path, model_dir: Path, dtype: str, max_length: int, max_tokens: int | None):
    from protiso import open_store
    from protiso.embedding import embed
    from protiso.runs import delete_run, load_embeddings

    with open_store(store_dir) as store:
        t0 = time.perf_counter()
        run = embed(store, model=str(model_dir), dtype=dtype, device="cpu", max_length=max_length,
                    max_tokens=max_tokens)
        seconds = time.perf_counter() - t0
        acc, X = load_embeddings(store, run.run_id)
        # remove the run so that the next configuration starts from nothing
        delete_run(store, run.run_id)
    return dict(zip(acc, X)), seconds, run


def cosines(a: dict, b: dict) -> np.ndarray:
    keys = sorted(a)
    X = np.stack([a[k] for k in keys]).astype(np.float64)
    Y = np.stack([b[k] for k in keys]).astype(np.float64)
    return (X * Y).sum(1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1))


def child_peak(store_dir: Path, model_dir: Path, max_length: int, threads: int) -> dict:
    """Peak RSS of an `embed` of the whole store in a fresh process."""
    code = (
        "import resource, sys, torch, time\n"
        f"torch.set_num_threads({threads})\n"
        "from protiso import open_store\nfrom protiso.embedding import embed\n"
        f"s = open_store({str(store_dir)!r})\nt = time.perf_counter()\n"
        f"r = embed(s, model={str(model_dir)!r}, dtype='auto', device='cpu', max_length={max_length})\n"
        "print(r.n_done, r.n_residues, time.perf_counter() - t, "
        "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    n, res, secs, rss = out.stdout.split()[-4:]
    return {"proteins": int(n), "residues": int(res), "seconds": float(secs), "peak_rss_mb": int(rss) / 1024}


def make_store(path: Path, records) -> None:
    from protiso import open_store
    from protiso.ingest import ingest

    fasta = path.with_suffix(".fasta")
    write_fasta(fasta, records)
    with open_store(path) as store:
        ingest(store, [fasta])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-n", type=int, default=100, help="proteins of the smaller memory run")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import tiny_models

    source = SHARED if SHARED.exists() else SAMPLE
    records = read_fasta(source)
    rng = random.Random(args.seed)
    picked = rng.sample(records, args.n)
    n_res = sum(min(len(s), args.max_length) for _, s in picked)
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    model_dir = tiny_models.build("bert", tmp / "model", seed=0, **SIZE)
    make_store(tmp / "store", picked)
    print(f"model: BERT 6 layers x 512 (ProtBERT architecture and vocab, random weights); "
          f"{args.n} proteins from {source.name}, {n_res:,} residues (max length {args.max_length}); "
          f"{args.threads} threads; CPU bf16 support: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")

    ref, t_naive = naive_loop(model_dir, picked, args.max_length)
    fp32, t_fp32, run32 = protiso_run(tmp / "store", model_dir, "float32", args.max_length, args.max_tokens)
    auto, t_auto, run_auto = protiso_run(tmp / "store", model_dir, "auto", args.max_length, args.max_tokens)
    c32, cauto = cosines(fp32, ref), cosines(auto, ref)
    rows = [("naive HF loop (fp32, 1 seq/pass)", t_naive, None),
            ("protiso embed --dtype float32", t_fp32, c32),
            (f"protiso embed --dtype auto (-> {run_auto.dtype})", t_auto, cauto)]
    print(f"{'path':44s} {'seconds':>8s} {'residues/s':>11s} {'vs naive':>9s} {'cos min':>9s} {'cos mean':>9s}")
    for name, t, c in rows:
        print(f"{name:44s} {t:8.2f} {n_res / t:11.0f} {t_naive / t:8.2f}x "
              + (f"{c.min():9.6f} {c.mean():9.6f}" if c is not None else f"{'(anchor)':>9s}"))
    print(f"auto parity probe (min cosine {run_auto.dtype} vs fp32 on 8 proteins): {run_auto.parity_cosine}")
    result = {"n": args.n, "residues": n_res, "naive_res_s": n_res / t_naive, "fp32_res_s": n_res / t_fp32,
              "auto_res_s": n_res / t_auto, "auto_dtype": run_auto.dtype, "ratio_auto": t_naive / t_auto,
              "ratio_fp32": t_naive / t_fp32, "cos_min_auto": float(cauto.min()), "cos_min_fp32": float(c32.min())}
    if not args.skip_memory:
        small = rng.sample(records, args.memory_n)
        big = small + rng.sample(records, 3 * args.memory_n)
        make_store(tmp / "mem_small", small)
        make_store(tmp / "mem_big", big)
        a = child_peak(tmp / "mem_small", model_dir, 256, args.threads)
        b = child_peak(tmp / "mem_big", model_dir, 256, args.threads)
        print(f"peak RSS of embed (max length 256): {a['proteins']} proteins {a['peak_rss_mb']:.0f} MB, "
              f"{b['proteins']} proteins {b['peak_rss_mb']:.0f} MB (ratio {b['peak_rss_mb'] / a['peak_rss_mb']:.2f})")
        result.update(mem_small=a, mem_big=b)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
