"""ProteinBERT: protiso's PyTorch port against the authors' Keras package, at the published size.

The published dump cannot be downloaded here, so the published configuration (6 blocks, local
track 128-d, global track 512-d, 4 heads, d_key 64, kernel 9, dilation 5, 8943 annotations) gets
seeded random weights, written in the official dump format. N Swiss-Prot proteins are embedded,
each padded to its `split_dataset_by_len` length (512, 1024, ...), annotations zero, by

  - protiso's ProteinBertAdapter (PyTorch, global and local tracks), and
  - the protein-bert 1.0.1 Keras model (anchor; only where TensorFlow and protein-bert import),

in one process with the same number of threads. Printed: proteins/s and residues/s of each, the
ratio PyTorch / Keras, and the largest absolute differences of their global outputs
(global-merge2-norm-block6) and per-residue outputs (seq-merge2-norm-block6) from each other and
from a float64 evaluation of the same network (both float32 implementations should be equally
close to it: at full depth float32 rounding alone reaches ~1e-4).

    python benchmarks/bench_proteinbert.py                       # PyTorch only
    PYTHONPATH=. /path/to/tfvenv/bin/python benchmarks/bench_proteinbert.py --n 64
"""
from __future__ import annotations

import argparse
import gzip
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from protiso.models import proteinbert as pb  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "protiso" / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"


def read_fasta(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                out.append((line[1:].split()[0], ""))
            elif out:
                out[-1] = (out[-1][0], out[-1][1] + line)
    return out


def random_published_dump(path: Path, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = []
    for name, shape in pb.keras_weight_names(pb.ProteinBertConfig()):
        leaf = name.rsplit("/", 1)[1]
        if leaf == "gamma":
            a = 1 + 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:
            a = 0.1 * rng.standard_normal(shape)
        elif leaf == "embeddings":
            a = rng.standard_normal(shape)
        else:
            fan_in = shape[1] if leaf.startswith("W") else int(np.prod(shape[:-1]))
            a = rng.standard_normal(shape) / np.sqrt(fan_in)
        weights.append(a.astype(np.float32))
    with open(path, "wb") as fh:
        pickle.dump((8943, weights, []), fh)
    return weights


def keras_embed(weights, seqs, batch_size):
    """Global and local outputs of the package's model, per protein (buckets as the package)."""
    import keras
    from proteinbert import conv_and_global_attention_model as cga
    from proteinbert.model_generation import tokenize_seqs

    glob, loc = [None] * len(seqs), [None] * len(seqs)
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(pb.bucket_seq_len(len(s)), []).append(i)
    models = {}
    for seq_len in groups:            # build (and trace) outside the timed part
        keras.backend.clear_session()
        m = cga.create_model(seq_len, pb.N_TOKENS, 8943)
        m.set_weights(weights)
        sub = keras.models.Model(m.inputs, [m.get_layer("global-merge2-norm-block6").output,
                                            m.get_layer("seq-merge2-norm-block6").output])
        x = [tokenize_seqs(["M"], seq_len), np.zeros((1, 8943), np.int8)]
        sub.predict(x, verbose=0)
        models[seq_len] = sub
    t0 = time.perf_counter()
    for seq_len, idx in groups.items():
        x = [tokenize_seqs([seqs[i] for i in idx], seq_len), np.zeros((len(idx), 8943), np.int8)]
        g, s = models[seq_len].predict(x, batch_size=batch_size, verbose=0)
        for row, i in enumerate(idx):
            glob[i], loc[i] = g[row], s[row, 1:1 + len(seqs[i])]
    return glob, loc, time.perf_counter() - t0


def torch_embed(adapter, seqs, batch_size):
    t0 = time.perf_counter()
    out = []
    for lo in range(0, len(seqs), batch_size):
        res = adapter.embed_batch(seqs[lo:lo + batch_size], [adapter.num_layers])
        out.extend(r[adapter.num_layers] for r in (res.pooled or res.residues))
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="proteins to embed (random, <= 1022 residues)")
    ap.add_argument("--fasta", type=Path, default=SAMPLE)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    records = [r for r in read_fasta(args.fasta) if len(r[1]) <= 1022]
    rng = np.random.default_rng(args.seed)
    seqs = [records[i][1] for i in sorted(rng.choice(len(records), size=min(args.n, len(records)), replace=False))]
    n_res = sum(map(len, seqs))
    print(f"{len(seqs)} proteins, {n_res} residues (mean length {n_res / len(seqs):.0f}), "
          f"{args.threads} threads, batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "published_size_random.pkl"
        weights = random_published_dump(dump, args.seed)
        t0 = time.perf_counter()
        g_ad = pb.ProteinBertAdapter(dump, track="global")
        print(f"load dump ({dump.stat().st_size / 2**20:.0f} MiB) + build: {time.perf_counter() - t0:.2f} s")
        l_ad = pb.ProteinBertAdapter(dump, track="local")
        net64 = pb.load_network(dump).double()
    torch_embed(g_ad, seqs[:2], args.batch_size)                      # warm-up
    t_glob, s_glob = torch_embed(g_ad, seqs, args.batch_size)
    t_loc, s_loc = torch_embed(l_ad, seqs, args.batch_size)
    print(f"pytorch global: {s_glob:.2f} s  {len(seqs) / s_glob:.1f} proteins/s  {n_res / s_glob:.0f} residues/s")
    print(f"pytorch local : {s_loc:.2f} s  {len(seqs) / s_loc:.1f} proteins/s  {n_res / s_loc:.0f} residues/s")
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        import proteinbert  # noqa: F401
    except ImportError as exc:
        print(f"anchor (Keras protein-bert) not available: {exc}; run with a Python that has "
              "tensorflow-cpu and protein-bert to compare")
        return
    k_glob, k_loc, s_keras = keras_embed(weights, seqs, args.batch_size)
    r_glob, r_loc = float64_reference(net64, seqs)
    print(f"keras (anchor): {s_keras:.2f} s  {len(seqs) / s_keras:.1f} proteins/s  {n_res / s_keras:.0f} residues/s "
          f"(tensorflow {tf.__version__})")
    print(f"ratio pytorch/keras throughput (global): {s_keras / s_glob:.2f}x")

    def dev(xs, ys):
        return max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(xs, ys))

    # both float32 implementations against a float64 evaluation of the same network
    for what, t, k, r in (("global", t_glob, k_glob, r_glob), ("per-residue", t_loc, k_loc, r_loc)):
        d_tk, d_t, d_k = dev(t, k), dev(t, r), dev(k, r)
        scale = max(float(np.abs(x).max()) for x in r)
        print(f"{what:11s}: max |pytorch32 - keras32| {d_tk:.2e}; vs float64: pytorch32 {d_t:.2e}, "
              f"keras32 {d_k:.2e} (values up to {scale:.1f}) -> "
              f"{'PASS' if d_t <= 2 * d_k + 1e-6 else 'FAIL'} (pytorch no less accurate than keras)")


def float64_reference(net64, seqs):
    """Global and per-residue outputs of the network evaluated in float64."""
    import torch
    glob, loc = [], []
    with torch.inference_mode():
        for s in seqs:
            out = net64(torch.from_numpy(pb.encode([s], pb.bucket_seq_len(len(s)))))
            glob.append(out["global_states"][-1][0].numpy())
            loc.append(out["seq_states"][-1][0, 1:1 + len(s)].numpy())
    return glob, loc


if __name__ == "__main__":
    main()
