"""ProteinBERT (Brandes et al., Bioinformatics 2022) in PyTorch, loading the authors' weight dumps.

The published model is Keras code (PyPI `protein-bert`) and a pickled dump
`(n_annotations, model_weights, optimizer_weights)`; this module re-implements the network so
protiso embeds with it without TensorFlow. Equivalence with the authors' package is checked by
tests/test_proteinbert.py against outputs of the Keras model (tests/data/proteinbert).

Architecture (per block, `n_blocks` of them; `act` = GELU in the published model):

    local track  s: (L, d_seq)        global track  g: (d_global,)
    s = LN(s + act(Dense(g)) + act(Conv_k(s)) + act(Conv_k,dilated(s)))
    s = LN(s + act(Dense(s)))
    g = LN(g + act(Dense(g)) + GlobalAttention(g, s))
    g = LN(g + act(Dense(g)))

with s0 = Embedding(tokens) and g0 = act(Dense(annotations)), annotations all zero for
inference (as the package's `InputEncoder` does). Global attention: per head a query
tanh(g Wq), keys tanh(s Wk), values gelu(s Wv), softmax over all positions (padding included:
ProteinBERT does not mask, so outputs depend on the padded length, see below).

Tokens: residues `ACDEFGHIKLMNPQRSTUVWXY` are 0..21, anything else (lower case too) <OTHER>=22,
<START>=23, <END>=24, <PAD>=25; each sequence is `<START> residues <END>` padded to `seq_len`.

Length modes. The global attention does not skip <PAD>, so one protein's vectors depend on the
padded length it is run at (issue 17 measured cosine 0.63-0.86 for the same protein between
lengths with the published weights, and 0.32-0.57 against the fixed 512-token use). Each protein
is run on its own, so nothing depends on the batch, and the mode is part of the run key:

- `fixed` (default): every protein is padded to exactly 512 tokens; longer ones (over 510
  residues) are cut by the embed loop's --long policy (truncate, the default: the first 510
  residues; skip; chunk for the local track). Every protein is embedded under the same
  conditions. This is the package's usual use: `create_model(512)` with
  `InputEncoder.encode_X(seqs, 512)` (its README and demo, and `finetune`'s seq_len=512, which
  drops longer proteins: --long skip does the same).
- `bucketed`: padded to 512, 1024, 2048 or 4096 tokens, the first that fits (the package's
  `split_dataset_by_len` / `evaluate_by_len`): no residue is lost, but proteins of different
  lengths are embedded under different conditions.

Embeddings: global = the global track after the last block (`global-merge2-norm-block6`, 512-d),
as the isotropy paper used it; local = the local track (`seq-merge2-norm-blockN`, 128-d per
residue, <START>/<END>/<PAD> positions dropped). Hidden-state index k = output of block k
(0 = the input embedding / the annotation dense layer).
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from protiso.errors import InputError, NotFoundError
from protiso.models.base import BatchOutput, LoadOptions, ModelAdapter
from protiso.models.registry import ModelSpec, register

# -- tokenisation (the package's proteinbert/tokenization.py) -----------------------------------
ALL_AAS = "ACDEFGHIKLMNPQRSTUVWXY"
OTHER, START, END, PAD = 22, 23, 24, 25
N_TOKENS = 26
ADDED_TOKENS_PER_SEQ = 2
_TABLE = np.full(256, OTHER, dtype=np.int64)
_TABLE[np.frombuffer(ALL_AAS.encode(), dtype=np.uint8)] = np.arange(len(ALL_AAS))

# -- where the published weights come from -------------------------------------------------------
PUBLISHED_DUMP = "epoch_92400_sample_23500000.pkl"
PUBLISHED_URL = f"ftp://ftp.cs.huji.ac.il/users/nadavb/protein_bert/{PUBLISHED_DUMP}"
WEIGHTS_ENV = "PROTISO_PROTEINBERT_WEIGHTS"
# where the protein-bert package itself keeps the dump (load_pretrained_model's defaults)
PACKAGE_DEFAULT_PATHS = ("~/proteinbert_models/default.pkl", f"~/proteinbert_models/{PUBLISHED_DUMP}")

DEFAULT_START_SEQ_LEN = 512     # the package's finetune/evaluate_by_len default
DEFAULT_MAX_SEQ_LEN = 4096      # longest padded length of the bucketed mode (4094 residues)
LENGTH_MODES = ("fixed", "bucketed")
DEFAULT_LENGTH_MODE = "fixed"   # every protein under the same conditions (see the module docstring)


def tokenize(sequence: str) -> np.ndarray:
    """`<START> residues <END>` token ids of one sequence (int64), as the package tokenises."""
    codes = np.frombuffer(sequence.encode("utf-8"), dtype=np.uint8)
    if not sequence.isascii():    # one token per character, like the package
        codes = np.array([ord(c) if ord(c) < 128 else 0 for c in sequence], dtype=np.uint8)
    return np.concatenate([[START], _TABLE[codes], [END]]).astype(np.int64)


def encode(sequences: list[str], seq_len: int) -> np.ndarray:
    """Token matrix (n, seq_len), each row padded with <PAD>. A sequence longer than
    seq_len - 2 residues is an error (the package cannot encode it either)."""
    out = np.full((len(sequences), seq_len), PAD, dtype=np.int64)
    for i, seq in enumerate(sequences):
        if len(seq) + ADDED_TOKENS_PER_SEQ > seq_len:
            raise InputError(f"ProteinBERT: sequence {i} has {len(seq)} residues, more than "
                             f"seq_len {seq_len} - {ADDED_TOKENS_PER_SEQ} allows")
        t = tokenize(seq)
        out[i, :len(t)] = t
    return out


def bucket_seq_len(n_residues: int, start: int = DEFAULT_START_SEQ_LEN, factor: int = 2) -> int:
    """The padded length the package's `split_dataset_by_len` gives a protein: start,
    start*factor, ... the first that holds the residues plus <START> and <END>."""
    seq_len = start
    while n_residues + ADDED_TOKENS_PER_SEQ > seq_len:
        seq_len *= factor
    return seq_len


# -- configuration and the dump format --------------------------------------------------------
@dataclass(frozen=True)
class ProteinBertConfig:
    """Hyper-parameters of `create_model` in the package (defaults = the published model)."""

    n_annotations: int = 8943
    vocab_size: int = N_TOKENS
    d_hidden_seq: int = 128
    d_hidden_global: int = 512
    n_blocks: int = 6
    n_heads: int = 4
    d_key: int = 64
    conv_kernel_size: int = 9
    wide_conv_dilation_rate: int = 5
    activation: str = "gelu"

    @property
    def d_value(self) -> int:
        return self.d_hidden_global // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


def keras_weight_names(cfg: ProteinBertConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(Keras weight name, shape) in the order of `model.get_weights()`, i.e. of the arrays in
    a dump: layers in the functional model's order, kernel before bias, gamma before beta."""
    ds, dg, k = cfg.d_hidden_seq, cfg.d_hidden_global, cfg.conv_kernel_size
    out = [("dense-global-input/kernel", (cfg.n_annotations, dg)), ("dense-global-input/bias", (dg,)),
           ("embedding-seq-input/embeddings", (cfg.vocab_size, ds))]

    def dense(name, n_in, n_out):
        out.extend([(f"{name}/kernel", (n_in, n_out)), (f"{name}/bias", (n_out,))])

    def norm(name, d):
        out.extend([(f"{name}/gamma", (d,)), (f"{name}/beta", (d,))])

    for b in range(1, cfg.n_blocks + 1):
        dense(f"global-to-seq-dense-block{b}", dg, ds)
        for conv in ("narrow", "wide"):
            out.extend([(f"{conv}-conv-block{b}/kernel", (k, ds, ds)), (f"{conv}-conv-block{b}/bias", (ds,))])
        norm(f"seq-merge1-norm-block{b}", ds)
        dense(f"seq-dense-block{b}", ds, ds)
        norm(f"seq-merge2-norm-block{b}", ds)
        dense(f"global-dense1-block{b}", dg, dg)
        out.extend([(f"global-attention-block{b}/Wq", (cfg.n_heads, dg, cfg.d_key)),
                    (f"global-attention-block{b}/Wk", (cfg.n_heads, ds, cfg.d_key)),
                    (f"global-attention-block{b}/Wv", (cfg.n_heads, ds, cfg.d_value))])
        norm(f"global-merge1-norm-block{b}", dg)
        dense(f"global-dense2-block{b}", dg, dg)
        norm(f"global-merge2-norm-block{b}", dg)
    dense("output-seq", ds, cfg.vocab_size)
    dense("output-annotations", dg, cfg.n_annotations)
    return out


_PER_BLOCK, _OUTSIDE = 23, 7     # arrays per block, and outside the blocks


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and scalars only: a dump is data, never code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only NumPy arrays are allowed)")
        try:
            import numpy._core.multiarray as ma
            import numpy._core.numeric as nu
        except ImportError:          # NumPy 1.x
            import numpy.core.multiarray as ma
            import numpy.core.numeric as nu
        mod = {"numpy": np, "numpy.core.multiarray": ma, "numpy._core.multiarray": ma,
               "numpy.core.numeric": nu, "numpy._core.numeric": nu}[module]
        return getattr(mod, name)


def load_dump(path: str | Path) -> tuple[int, list[np.ndarray]]:
    """(n_annotations, model weights) from a ProteinBERT dump; optimizer state is dropped."""
    path = Path(path).expanduser()
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise NotFoundError(f"ProteinBERT weights {path}: cannot read ({exc.strerror or exc})") from None
    try:
        with fh:
            obj = _NumpyOnlyUnpickler(fh).load()
    except Exception as exc:   # noqa: BLE001 - any unpickling failure means "not a dump"
        raise InputError(f"ProteinBERT weights {path}: not a ProteinBERT dump "
                         f"(a pickle of (n_annotations, model_weights, optimizer_weights)): {exc}") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 3 and isinstance(obj[1], (list, tuple))):
        raise InputError(f"ProteinBERT weights {path}: expected a pickled 3-tuple "
                         f"(n_annotations, model_weights, optimizer_weights), got {type(obj).__name__}")
    n_annotations, weights = int(obj[0]), [np.asarray(w) for w in obj[1]]
    return n_annotations, weights


def config_from_weights(n_annotations: int, weights: list[np.ndarray], source: str = "dump",
                        wide_conv_dilation_rate: int = 5, activation: str = "gelu") -> ProteinBertConfig:
    """Hyper-parameters read off the weight shapes (the dilation rate and the activation are not
    stored in a dump: the published model's 5 and 'gelu' are the defaults). Every array's shape
    is checked."""
    n = len(weights)
    if n < _OUTSIDE + _PER_BLOCK or (n - _OUTSIDE) % _PER_BLOCK:
        raise InputError(f"ProteinBERT weights {source}: {n} arrays; a ProteinBERT model has "
                         f"{_OUTSIDE} + {_PER_BLOCK} per block")
    try:
        wq = weights[17]
        cfg = ProteinBertConfig(
            n_annotations=n_annotations, vocab_size=weights[2].shape[0], d_hidden_seq=weights[2].shape[1],
            d_hidden_global=weights[0].shape[1], n_blocks=(n - _OUTSIDE) // _PER_BLOCK, n_heads=wq.shape[0],
            d_key=wq.shape[2], conv_kernel_size=weights[5].shape[0],
            wide_conv_dilation_rate=wide_conv_dilation_rate, activation=activation)
    except (IndexError, AttributeError) as exc:
        raise InputError(f"ProteinBERT weights {source}: unexpected array shapes ({exc})") from None
    if cfg.vocab_size != N_TOKENS:
        raise InputError(f"ProteinBERT weights {source}: embedding has {cfg.vocab_size} tokens, "
                         f"the ProteinBERT vocabulary has {N_TOKENS}")
    for i, ((name, shape), w) in enumerate(zip(keras_weight_names(cfg), weights)):
        if tuple(w.shape) != shape:
            raise InputError(f"ProteinBERT weights {source}: array {i} ({name}) has shape "
                             f"{tuple(w.shape)}, expected {shape} for {cfg}")
    return cfg


# -- the network --------------------------------------------------------------------------------
def _torch():
    import torch
    return torch


def _activation(name: str):
    import torch.nn.functional as F
    table = {"gelu": F.gelu, "relu": F.relu, "tanh": _torch().tanh, "sigmoid": _torch().sigmoid,
             "silu": F.silu, "swish": F.silu, "linear": lambda x: x, None: lambda x: x}
    if name not in table:
        raise InputError(f"ProteinBERT: unsupported activation {name!r}; supported: "
                         f"{sorted(k for k in table if k)}")
    return table[name]


def build_model(cfg: ProteinBertConfig):
    """An uninitialised ProteinBert network (torch.nn.Module) for `cfg`. The classes are
    defined here so that importing this module (done by the model registry) does not import
    torch."""
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional
    act = _activation(cfg.activation)

    class GlobalAttention(nn.Module):
        """The global track's query attends over all positions of the local track, per head."""

        def __init__(self):
            super().__init__()
            h, dg, ds = cfg.n_heads, cfg.d_hidden_global, cfg.d_hidden_seq
            self.Wq = nn.Parameter(torch.empty(h, dg, cfg.d_key))
            self.Wk = nn.Parameter(torch.empty(h, ds, cfg.d_key))
            self.Wv = nn.Parameter(torch.empty(h, ds, cfg.d_value))
            self.scale = 1.0 / float(np.sqrt(cfg.d_key))

        def forward(self, g, s):
            h, dk = cfg.n_heads, cfg.d_key
            q = torch.tanh(torch.einsum("bg,hgk->bhk", g, self.Wq))                  # (B, h, dk)
            # keys and values of all heads in one matmul: (B, L, h*dk + h*dv)
            w = torch.cat([self.Wk.permute(1, 0, 2).reshape(s.shape[-1], -1),
                           self.Wv.permute(1, 0, 2).reshape(s.shape[-1], -1)], dim=1)
            kv = torch.matmul(s, w)
            k = torch.tanh(kv[..., :h * dk]).unflatten(-1, (h, dk))                  # (B, L, h, dk)
            v = F.gelu(kv[..., h * dk:]).unflatten(-1, (h, cfg.d_value))             # (B, L, h, dv)
            # float32 accuracy on CPU: softmax along the last dimension (along a middle one torch's
            # kernel is ~10x less precise) and the weighted sum over positions as a reduction
            # (a 1-row batched matmul accumulates sequentially: ~1e-5 off at L = 512)
            z = torch.softmax(torch.einsum("bhk,blhk->bhl", q, k) * self.scale, dim=-1)  # (B, h, L)
            return (z.transpose(1, 2).unsqueeze(-1) * v).sum(1).reshape(g.shape[0], -1)

    class SameConv(nn.Module):
        """Conv1D with Keras/TensorFlow 'same' padding (the extra pad goes on the right)."""

        def __init__(self, dilation):
            super().__init__()
            total = dilation * (cfg.conv_kernel_size - 1)
            self.pad = (total // 2, total - total // 2)
            symmetric = self.pad[0] == self.pad[1]
            self.conv = nn.Conv1d(cfg.d_hidden_seq, cfg.d_hidden_seq, cfg.conv_kernel_size, dilation=dilation,
                                  padding=self.pad[0] if symmetric else 0)
            self.explicit_pad = not symmetric

        def forward(self, x):            # x: (B, C, L), channels first
            return self.conv(F.pad(x, self.pad) if self.explicit_pad else x)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            ds, dg = cfg.d_hidden_seq, cfg.d_hidden_global
            self.global_to_seq = nn.Linear(dg, ds)
            self.narrow_conv = SameConv(1)
            self.wide_conv = SameConv(cfg.wide_conv_dilation_rate)
            self.seq_norm1 = nn.LayerNorm(ds, eps=1e-3)
            self.seq_dense = nn.Linear(ds, ds)
            self.seq_norm2 = nn.LayerNorm(ds, eps=1e-3)
            self.global_dense1 = nn.Linear(dg, dg)
            self.attention = GlobalAttention()
            self.global_norm1 = nn.LayerNorm(dg, eps=1e-3)
            self.global_dense2 = nn.Linear(dg, dg)
            self.global_norm2 = nn.LayerNorm(dg, eps=1e-3)

        def forward(self, s, g, trace):
            x = s.transpose(1, 2).contiguous()
            convs = (act(self.narrow_conv(x)) + act(self.wide_conv(x))).transpose(1, 2)
            s = self.seq_norm1(s + act(self.global_to_seq(g)).unsqueeze(1) + convs)
            trace.append(("seq", s))
            s = self.seq_norm2(s + act(self.seq_dense(s)))
            trace.append(("seq", s))
            g = self.global_norm1(g + act(self.global_dense1(g)) + self.attention(g, s))
            trace.append(("global", g))
            g = self.global_norm2(g + act(self.global_dense2(g)))
            trace.append(("global", g))
            return s, g

    class ProteinBert(nn.Module):
        """ProteinBERT's pretraining network. `forward` returns a dict with
        'seq_states' / 'global_states' (index k = output of block k, 0 = input layers) and, with
        heads=True, the package's concatenated hidden layers ('seq_all', 'global_all')."""

        def __init__(self):
            super().__init__()
            self.config = cfg
            self.global_input = nn.Linear(cfg.n_annotations, cfg.d_hidden_global)
            self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_hidden_seq)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_blocks))
            self.output_seq = nn.Linear(cfg.d_hidden_seq, cfg.vocab_size)
            self.output_annotations = nn.Linear(cfg.d_hidden_global, cfg.n_annotations)

        def forward(self, tokens, annotations=None, heads: bool = False) -> dict:
            if annotations is None:      # inference: no annotations, the dense layer sees zeros
                g = act(self.global_input.bias).expand(tokens.shape[0], -1)
            else:
                g = act(self.global_input(annotations))
            s = self.embedding(tokens)
            seq_states, global_states, trace = [s], [g], []
            for block in self.blocks:
                s, g = block(s, g, trace)
                seq_states.append(s)
                global_states.append(g)
            out = {"seq_states": seq_states, "global_states": global_states}
            if heads:
                # get_model_with_hidden_layers_as_outputs: every LayerNormalization output, plus
                # the output heads (and dense-global-input on the global side), in model order
                seq_all = [t for kind, t in trace if kind == "seq"]
                seq_all.append(torch.softmax(self.output_seq(s), dim=-1))
                glob_all = [global_states[0]] + [t for kind, t in trace if kind == "global"]
                glob_all.append(torch.sigmoid(self.output_annotations(g)))
                out["seq_all"] = torch.cat(seq_all, dim=-1)
                out["global_all"] = torch.cat(glob_all, dim=-1)
            return out

        def keras_targets(self) -> list:
            """(parameter, transform) in the order of keras_weight_names(cfg)."""
            T = lambda w: w.T                       # Dense kernel (in, out) -> Linear (out, in)
            C = lambda w: w.transpose(2, 1, 0)      # Conv1D (k, in, out) -> Conv1d (out, in, k)
            I = lambda w: w
            def lin(m): return [(m.weight, T), (m.bias, I)]
            def ln(m): return [(m.weight, I), (m.bias, I)]
            out = lin(self.global_input) + [(self.embedding.weight, I)]
            for b in self.blocks:
                out += lin(b.global_to_seq)
                out += [(b.narrow_conv.conv.weight, C), (b.narrow_conv.conv.bias, I),
                        (b.wide_conv.conv.weight, C), (b.wide_conv.conv.bias, I)]
                out += ln(b.seq_norm1) + lin(b.seq_dense) + ln(b.seq_norm2) + lin(b.global_dense1)
                out += [(b.attention.Wq, I), (b.attention.Wk, I), (b.attention.Wv, I)]
                out += ln(b.global_norm1) + lin(b.global_dense2) + ln(b.global_norm2)
            return out + lin(self.output_seq) + lin(self.output_annotations)

        def load_keras_weights(self, weights: list[np.ndarray]) -> None:
            """Copy a dump's arrays (in keras_weight_names order) into the parameters."""
            targets = self.keras_targets()
            names = keras_weight_names(cfg)
            if len(weights) != len(targets):
                raise InputError(f"ProteinBERT: {len(weights)} arrays for a model with {len(targets)}")
            with torch.no_grad():
                for (name, _), (param, tf), w in zip(names, targets, weights):
                    value = torch.from_numpy(np.ascontiguousarray(tf(np.asarray(w, dtype=np.float32))))
                    if value.shape != param.shape:
                        raise InputError(f"ProteinBERT: {name} has shape {tuple(w.shape)}, "
                                         f"does not fit parameter {tuple(param.shape)}")
                    param.copy_(value)

    return ProteinBert()


def load_network(path: str | Path, wide_conv_dilation_rate: int = 5, activation: str = "gelu"):
    """A ProteinBert network in eval mode with the weights of the dump at `path`."""
    n_annotations, weights = load_dump(path)
    cfg = config_from_weights(n_annotations, weights, str(path), wide_conv_dilation_rate, activation)
    model = build_model(cfg)
    model.load_keras_weights(weights)
    return model.eval()


# -- the embedding adapter ----------------------------------------------------------------------
def weights_help() -> str:
    return (f"The published ProteinBERT weights are the authors' dump {PUBLISHED_DUMP} (Brandes et "
            f"al. 2022), released at {PUBLISHED_URL} (the file the protein-bert package downloads). "
            f"protiso never downloads it: fetch it on a machine with network access, then pass it "
            f"with `protiso embed --model proteinbert --weights PATH`, or set {WEIGHTS_ENV}=PATH, or "
            f"put it at ~/proteinbert_models/default.pkl (where the protein-bert package keeps it).")


def resolve_weights(weights: str | os.PathLike | None = None) -> Path:
    """The dump to load: `weights` if given, else ${PROTISO_PROTEINBERT_WEIGHTS}, else the
    protein-bert package's own location (~/proteinbert_models/). NotFoundError otherwise."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise NotFoundError(f"ProteinBERT weights file {path} does not exist. {weights_help()}")
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise NotFoundError(f"ProteinBERT weights file {path} (from ${WEIGHTS_ENV}) does not "
                                f"exist. {weights_help()}")
        return path
    for candidate in PACKAGE_DEFAULT_PATHS:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    raise NotFoundError(f"ProteinBERT weights not found (no --weights, ${WEIGHTS_ENV} unset, "
                        f"nothing at {' or '.join(PACKAGE_DEFAULT_PATHS)}). {weights_help()}")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class ProteinBertAdapter(ModelAdapter):
    """ProteinBERT as a protiso model.

    track='global': the global track's output after the last block, one vector per protein
    (`pooled`, the paper's ProteinBERT embedding; only the last layer). track='local': the local
    track's per-residue vectors after each block (`residues`, layers 0..n_blocks; the embed loop
    mean-pools them). length_mode 'fixed': every protein padded to start_seq_len tokens (longer
    ones are cut by the embed loop: max_residues = start_seq_len - 2); 'bucketed': each protein
    padded to its own `bucket_seq_len` (start_seq_len, doubled up to max_seq_len). Either way
    results do not depend on the batch. The mode and non-default settings join the revision
    (the run key). A batch is run max_positions padded positions at a time (default 16384 on
    CPU, 65536 else)."""

    family = "proteinbert"

    def __init__(self, weights: str | os.PathLike, track: str = "global", options: LoadOptions | None = None,
                 start_seq_len: int = DEFAULT_START_SEQ_LEN, max_seq_len: int | None = None,
                 wide_conv_dilation_rate: int = 5, activation: str = "gelu", max_positions: int | None = None,
                 length_mode: str = DEFAULT_LENGTH_MODE):
        options = options or LoadOptions()
        if track not in ("global", "local"):
            raise InputError(f"ProteinBERT track must be 'global' or 'local', not {track!r}")
        if length_mode not in LENGTH_MODES:
            raise InputError(f"ProteinBERT length mode must be one of {', '.join(LENGTH_MODES)}, "
                             f"not {length_mode!r}")
        if length_mode == "fixed":
            if max_seq_len not in (None, start_seq_len):
                raise InputError(f"ProteinBERT: length mode 'fixed' runs every protein at "
                                 f"start_seq_len {start_seq_len}; max_seq_len {max_seq_len} needs "
                                 "length mode 'bucketed'")
            max_seq_len = start_seq_len
        elif max_seq_len is None:
            max_seq_len = DEFAULT_MAX_SEQ_LEN
        if options.dtype != "float32":
            raise InputError(f"ProteinBERT runs in float32 only (asked for {options.dtype})")
        if start_seq_len < 3 or max_seq_len < start_seq_len:
            raise InputError(f"ProteinBERT: need 3 <= start_seq_len <= max_seq_len, got "
                             f"{start_seq_len}, {max_seq_len}")
        torch = _torch()
        path = Path(weights).expanduser().resolve()
        self.network = load_network(path, wide_conv_dilation_rate, activation)
        cfg = self.network.config
        self.config = cfg
        self.track = track
        self.length_mode = length_mode
        self.start_seq_len, self.max_seq_len = int(start_seq_len), int(max_seq_len)
        self.model_id = str(path)
        # settings that change the outputs but are not in the file join the revision (run key):
        # always the length mode with its padded lengths, the others when not the default
        lengths = (f"length=fixed{self.start_seq_len}" if length_mode == "fixed" else
                   f"length=bucketed{self.start_seq_len}-{self._largest_bucket()}")
        custom = [f"{k}={v}" for k, v in (("dilation", wide_conv_dilation_rate), ("activation", activation))
                  if v != {"dilation": 5, "activation": "gelu"}[k]]
        self.revision = ";".join(["sha256:" + _file_sha256(path)[:16], lengths] + custom)
        self.dim = cfg.d_hidden_global if track == "global" else cfg.d_hidden_seq
        self.num_layers = cfg.n_blocks
        self.outputs_residues = track == "local"
        self.max_residues = self._largest_bucket() - ADDED_TOKENS_PER_SEQ
        self.device = options.device
        self.dtype = "float32"
        self.max_positions = int(max_positions or (16384 if self.device == "cpu" else 65536))
        self.network.to(torch.device(self.device))
        self.extra = {"track": track, "length_mode": length_mode, "start_seq_len": self.start_seq_len,
                      "max_seq_len": self._largest_bucket(), "annotations": "zeros",
                      "config": cfg.to_dict(),
                      "output_layer": ("global-merge2-norm-block{k}" if track == "global"
                                       else "seq-merge2-norm-block{k}")}

    def _largest_bucket(self) -> int:
        seq_len = self.start_seq_len
        while seq_len * 2 <= self.max_seq_len:
            seq_len *= 2
        return seq_len

    def _forward(self, sequences: list[str], seq_len: int, layers: list[int]) -> list[dict[int, np.ndarray]]:
        """Per sequence {layer: vector} (global) or {layer: (n_residues, dim)} (local)."""
        torch = _torch()
        with torch.inference_mode():
            tokens = torch.from_numpy(encode(sequences, seq_len)).to(self.device)
            out = self.network(tokens)
            states = out["global_states"] if self.track == "global" else out["seq_states"]
            arrays = {k: states[k].float().cpu().numpy() for k in layers}
        if self.track == "global":
            return [{k: arrays[k][row].copy() for k in layers} for row in range(len(sequences))]
        return [{k: arrays[k][row, 1:1 + len(seq)].copy() for k in layers} for row, seq in enumerate(sequences)]

    def embed_batch(self, sequences: list[str], layers: list[int]) -> BatchOutput:
        layers = self.validate_layers(layers)
        for i, seq in enumerate(sequences):
            if len(seq) > self.max_residues:
                raise InputError(f"ProteinBERT: sequence {i} has {len(seq)} residues, more than "
                                 f"max_residues {self.max_residues}")
        results: list[dict[int, np.ndarray] | None] = [None] * len(sequences)
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(sequences):
            groups.setdefault(bucket_seq_len(len(seq), self.start_seq_len), []).append(i)
        for seq_len, group in sorted(groups.items()):
            # every protein is padded to seq_len (>= 512), more than the caller budgets for short
            # ones: forward at most max_positions padded positions at a time
            step = max(1, self.max_positions // seq_len)
            for lo in range(0, len(group), step):
                idx = group[lo:lo + step]
                for i, vecs in zip(idx, self._forward([sequences[i] for i in idx], seq_len, layers)):
                    results[i] = vecs
        if self.track == "global":
            return BatchOutput(pooled=results)
        return BatchOutput(residues=results)


def load_proteinbert(spec: ModelSpec, source: str, options: LoadOptions) -> ProteinBertAdapter:
    """Registry loader: weights from options.weights (the CLI's --weights), the spec's options,
    ${PROTISO_PROTEINBERT_WEIGHTS} or ~/proteinbert_models/, in that order."""
    opts = dict(spec.options)
    explicit = getattr(options, "weights", None) or opts.pop("weights", None)
    opts.pop("weights", None)
    path = resolve_weights(explicit)
    return ProteinBertAdapter(path, options=options, **opts)


register(ModelSpec("proteinbert", PUBLISHED_URL,
                   "ProteinBERT (Brandes et al. 2022) global track output, as the isotropy paper; every "
                   "protein at 512 tokens (longer ones follow --long); needs the authors' weights file "
                   "(--weights)", "proteinbert", 512, 6,
                   loader="protiso.models.proteinbert:load_proteinbert",
                   options={"track": "global", "length_mode": "fixed"}))
register(ModelSpec("proteinbert_local", PUBLISHED_URL,
                   "ProteinBERT local track, per residue (mean-pooled globally), 512 tokens; same weights file",
                   "proteinbert", 128, 6, loader="protiso.models.proteinbert:load_proteinbert",
                   options={"track": "local", "length_mode": "fixed"}))
register(ModelSpec("proteinbert_bucketed", PUBLISHED_URL,
                   "ProteinBERT global track, each protein padded to 512/1024/2048/4096 tokens, the "
                   "first that fits (no truncation; lengths embedded under different conditions)",
                   "proteinbert", 512, 6, loader="protiso.models.proteinbert:load_proteinbert",
                   options={"track": "global", "length_mode": "bucketed"}))
register(ModelSpec("proteinbert_local_bucketed", PUBLISHED_URL,
                   "ProteinBERT local track, padded to 512/1024/2048/4096 tokens; same weights file",
                   "proteinbert", 128, 6, loader="protiso.models.proteinbert:load_proteinbert",
                   options={"track": "local", "length_mode": "bucketed"}))
