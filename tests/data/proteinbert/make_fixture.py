"""Build the ProteinBERT equivalence fixture with the authors' Keras code (needs TensorFlow).

Run with a Python that has `tensorflow-cpu` and `protein-bert==1.0.1` (NOT needed by the tests):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu protein-bert==1.0.1
    /tmp/tfvenv/bin/python tests/data/proteinbert/make_fixture.py

For each small configuration below it builds the package's model
(`proteinbert.conv_and_global_attention_model.create_model`), gives it seeded random weights,
dumps it in the official format (a pickle of `(n_annotations, model.get_weights(),
optimizer_weights)`, as `proteinbert.pretraining._save_model_state` writes it), and records the
outputs of `get_model_with_hidden_layers_as_outputs` on real Swiss-Prot sequences, each padded
to the sequence length the package's `split_dataset_by_len` gives it, with zero annotations
(the package's `InputEncoder.encode_X`). It also records the package's tokenisation of awkward
strings and the weight names/shapes of the published configuration (no weights).
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from proteinbert import conv_and_global_attention_model as cga  # noqa: E402
from proteinbert.finetuning import split_dataset_by_len  # noqa: E402
from proteinbert.model_generation import tokenize_seqs  # noqa: E402
from proteinbert.tokenization import n_tokens  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[2] / "protiso" / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"

# name -> (create_model kwargs, n_annotations, start_seq_len, accessions, seed)
CONFIGS = {
    "tiny_a": (dict(d_hidden_seq=8, d_hidden_global=12, n_blocks=2, n_heads=3, d_key=4,
                    conv_kernel_size=9, wide_conv_dilation_rate=5, activation="gelu"),
               11, 64, ["P85877", "P29605", "A9A7E7", "B8E1E3", "P26970"], 1),
    # even kernel (asymmetric 'same' padding), another dilation, one block, relu
    "tiny_b": (dict(d_hidden_seq=6, d_hidden_global=8, n_blocks=1, n_heads=2, d_key=3,
                    conv_kernel_size=4, wide_conv_dilation_rate=3, activation="relu"),
               5, 32, ["P0CAR3", "P85877", "P29605"], 2),
}
# strings whose tokenisation by the package is recorded (the package is case-sensitive and
# maps every letter outside ACDEFGHIKLMNPQRSTUVWXY to <OTHER>)
TOKEN_CASES = ["MKV", "ACDEFGHIKLMNPQRSTUVWXY", "BZOJ*-x", "mkvA", ""]
PUBLISHED = dict(n_annotations=8943)   # the published dump's annotation count; other args default


def read_fasta(path: Path) -> dict[str, str]:
    out, name = {}, None
    with gzip.open(path, "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split()[0]
                out[name] = ""
            elif name:
                out[name] += line
    return out


def random_weights(model, rng) -> list[np.ndarray]:
    """Seeded weights with non-trivial biases and LayerNorm parameters."""
    out = []
    for w in model.weights:
        shape = tuple(w.shape)
        name = w.path.split("/")[-1]
        if name == "gamma":
            a = 1.0 + 0.2 * rng.standard_normal(shape)
        elif len(shape) == 1:
            a = 0.2 * rng.standard_normal(shape)
        elif name == "embeddings":
            a = rng.standard_normal(shape)
        else:
            fan_in = shape[-2] if len(shape) == 2 else (shape[1] if name.startswith("W") else shape[0] * shape[1])
            a = rng.standard_normal(shape) / np.sqrt(fan_in)
        out.append(a.astype(np.float32))
    return out


def optimizer_weights(model) -> list[np.ndarray]:
    """The Adam state, as the package's dumps carry it (ignored by protiso's loader)."""
    opt = keras.optimizers.Adam(learning_rate=2e-4)
    opt.build(model.trainable_variables)
    return [np.asarray(v.numpy()) for v in opt.variables]


def main() -> None:
    seqs_all = read_fasta(SAMPLE)
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"tensorflow": tf.__version__, "keras": keras.__version__, "protein_bert": "1.0.1",
                  "configs": {}}
    fasta_lines = []
    for name, (kwargs, n_ann, start_len, accs, seed) in CONFIGS.items():
        rng = np.random.default_rng(seed)
        seqs = [seqs_all[a] for a in accs]
        for a, s in zip(accs, seqs):
            if f">{a}" not in fasta_lines:
                fasta_lines += [f">{a}", s]
        base = cga.create_model(start_len, n_tokens, n_ann, **kwargs)
        weights = random_weights(base, rng)
        with open(HERE / f"{name}.pkl", "wb") as fh:
            pickle.dump((n_ann, weights, optimizer_weights(base)), fh)
        df = pd.DataFrame({"seq": seqs, "acc": accs})
        buckets = []
        for part, seq_len, _ in split_dataset_by_len(df, start_seq_len=start_len):
            if len(part) == 0:
                continue
            keras.backend.clear_session()
            model = cga.create_model(seq_len, n_tokens, n_ann, **kwargs)
            model.set_weights(weights)
            hidden = cga.get_model_with_hidden_layers_as_outputs(model)
            tokens = tokenize_seqs(list(part["seq"]), seq_len)
            annotations = np.zeros((len(part), n_ann), dtype=np.int8)
            seq_out, glob_out = hidden.predict([tokens, annotations], verbose=0)
            for i, acc in enumerate(part["acc"]):
                arrays[f"{name}/{acc}/tokens"] = tokens[i].astype(np.int8)
                arrays[f"{name}/{acc}/seq"] = seq_out[i].astype(np.float32)
                arrays[f"{name}/{acc}/global"] = glob_out[i].astype(np.float32)
                buckets.append((acc, int(seq_len)))
            seq_names = [l.name for l in model.layers if isinstance(l, keras.layers.LayerNormalization)
                         and len(l.output.shape) == 3] + ["output-seq"]
            glob_names = ["dense-global-input"] + [l.name for l in model.layers if isinstance(
                l, keras.layers.LayerNormalization) and len(l.output.shape) == 2] + ["output-annotations"]
        meta["configs"][name] = {"create_model_kwargs": kwargs, "n_annotations": n_ann,
                                 "start_seq_len": start_len, "seed": seed, "accessions": accs,
                                 "seq_len_by_accession": dict(buckets),
                                 "seq_layers": seq_names, "global_layers": glob_names,
                                 "weight_names": [w.path for w in base.weights]}
    # tokenisation by the package
    meta["token_cases"] = {s: tokenize_seqs([s], len(s) + 4)[0].tolist() for s in TOKEN_CASES}
    # the published configuration: weight names and shapes only
    keras.backend.clear_session()
    pub = cga.create_model(512, n_tokens, PUBLISHED["n_annotations"])
    meta["published_weights"] = [[w.path, list(w.shape)] for w in pub.weights]
    np.savez_compressed(HERE / "keras_outputs.npz", **arrays)
    (HERE / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    (HERE / "sequences.fasta").write_text("\n".join(fasta_lines) + "\n")
    print("wrote", sorted(p.name for p in HERE.iterdir()), file=sys.stderr)


if __name__ == "__main__":
    main()
