"""Pairwise alignment score and identity, fast (parasail SIMD) and exact (equal to Biopython).

Scoring follows Biopython's `PairwiseAligner`: a substitution matrix, and a gap of length L
costs `gap_open + (L - 1) * gap_extend` (Biopython: open_gap_score = -gap_open,
extend_gap_score = -gap_extend; end gaps cost the same as inner gaps). Fractional matrices and
gaps are made exact by scaling everything by the smallest integer `scale` that makes them
integers (PAM250 with 10/0.5 -> scale 2: matrix x2, open 20, extend 1) and dividing at the end.

Identity needs one particular optimal alignment, and co-optimal alignments can differ in it.
The rule here (implementation independent, so any exact aligner reproduces it):

    among all alignments with the optimal score, take those with the most identical residue
    pairs, and among those the ones with the fewest columns (the shortest).
    identity = identical pairs / alignment columns (gap columns included).

It is computed without a traceback by lexicographic scoring: every column scores
`W * s + K * [identical] - 1` (W > K^2 as radices), so the optimum of the packed score is the
lexicographic optimum of (score, identical pairs, -columns), and all three decode from one
number. parasail's 32-bit SIMD kernel computes it when a bound shows every DP value fits in
32 bits (bounded a priori from the matrix, else from the optimum of a cheap 16-bit pass);
otherwise (very long pairs, ~0.3% of random Swiss-Prot pairs) Biopython's aligner computes
the same packed score in float64 (exact below 2**53). parasail's striped kernels are used when
open > extend, its scan kernels when open == extend; open < extend goes to Biopython (parasail
would let adjacent gaps split a run). Letters outside the matrix alphabet become X.

Columns reported per pair: score, identity, matches (identical pairs), length (columns),
gaps (gap columns; global mode only, local alignments report -1 as their span is not decoded).
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import numpy as np

from protiso.errors import InputError

IDENTITY_DEFINITION = (
    "identical residue pairs / alignment columns (gap columns included), on the optimal-score "
    "alignment with the most identical pairs, then the fewest columns")
MODES = ("global", "local")
# |packed DP values| stay below this: parasail's 32-bit kernels start from -inf = INT32_MIN/2,
# so real values and -inf minus penalties both stay inside int32.
_INT32_SAFE = 2 ** 30
_FLOAT_EXACT = 2 ** 52


@lru_cache(maxsize=None)
def _load_matrix(name: str):
    from Bio.Align import substitution_matrices

    try:
        return substitution_matrices.load(name.upper())
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"unknown substitution matrix {name!r}; choose one of "
                         f"{', '.join(substitution_matrices.load())}", param="matrix") from exc


def _integer_scale(values) -> int:
    """Smallest integer f such that f * v is an integer for all v (denominators up to 1000)."""
    scale = 1
    for v in values:
        frac = Fraction(float(v)).limit_denominator(1000)
        if abs(float(frac) - float(v)) > 1e-9:
            raise InputError(f"score {v} is not a fraction with denominator <= 1000")
        scale = scale * frac.denominator // math.gcd(scale, frac.denominator)
    return scale


@dataclass(frozen=True)
class Scoring:
    """Matrix, gaps and mode, with the integer-scaled copies the aligners use."""

    matrix: str = "PAM250"
    gap_open: float = 10.0
    gap_extend: float = 0.5
    mode: str = "global"
    alphabet: str = field(init=False)
    scale: int = field(init=False)
    sub: np.ndarray = field(init=False, repr=False)       # scaled int64 (|A| x |A|)
    open_i: int = field(init=False)
    extend_i: int = field(init=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"alignment mode {self.mode!r} must be one of {', '.join(MODES)}", param="mode")
        if self.gap_open < 0 or self.gap_extend < 0:
            raise InputError(f"gap penalties must be >= 0 (costs), got open {self.gap_open}, "
                             f"extend {self.gap_extend}",
                             param="gap_open" if self.gap_open < 0 else "gap_extend")
        m = _load_matrix(self.matrix)
        alphabet = "".join(m.alphabet)
        data = np.asarray(m, dtype=float)
        scale = _integer_scale(list(np.unique(data)) + [self.gap_open, self.gap_extend])
        object.__setattr__(self, "alphabet", alphabet)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "sub", np.rint(data * scale).astype(np.int64))
        object.__setattr__(self, "open_i", int(round(self.gap_open * scale)))
        object.__setattr__(self, "extend_i", int(round(self.gap_extend * scale)))

    def packed(self, w: int, k_len: int) -> np.ndarray:
        """The packed substitution values w*sub + k_len*[identical] - 1: one alignment score that
        carries, in its weighted digits, the score, the identical pairs and the columns."""
        return w * self.sub + k_len * np.eye(len(self.alphabet), dtype=np.int64) - 1

    def describe(self) -> dict:
        return {"matrix": self.matrix.upper(), "gap_open": self.gap_open,
                "gap_extend": self.gap_extend, "mode": self.mode, "scale": self.scale,
                "identity": IDENTITY_DEFINITION}

    def normalise(self, seq: str) -> str:
        """Upper-case; letters outside the matrix alphabet become X."""
        s = seq.upper()
        if "X" in self.alphabet:
            return s.translate(_unknown_to_x(self.alphabet))
        bad = set(s) - set(self.alphabet)
        if bad:
            raise InputError(f"letters {''.join(sorted(bad))} not in the alphabet of {self.matrix}")
        return s


@lru_cache(maxsize=8)
def _unknown_to_x(alphabet: str) -> dict:
    table = {c: "X" for c in range(256) if chr(c) not in alphabet}
    return table


@dataclass
class PairResult:
    score: float
    identity: float
    matches: int
    length: int
    gaps: int


# --- packing ----------------------------------------------------------------------------
def _round_up(x: int, step: int = 64) -> int:
    return (x + step - 1) // step * step


def _radices(sc: Scoring, n: int, m: int) -> tuple[int, int, int, int]:
    """(W, K_m, K_len, offset) for a pair: identical pairs < K_m, columns - offset < K_len."""
    short = min(n, m)
    k_m = _round_up(short + 1)
    if sc.mode == "global":
        k_len, offset = k_m, max(n, m)          # columns in [max(n,m), n+m]
    else:
        k_len, offset = _round_up(n + m + 1), 0
    return k_m * k_len + 1, k_m, k_len, offset


def _decode(v: int, w: int, k_m: int, k_len: int, offset: int) -> tuple[int, int, int]:
    """Packed optimum -> (scaled score, identical pairs, columns)."""
    u = v + offset
    s = (u + k_len - 1) // w
    r = u + k_len - w * s
    matches = (r - 1) // k_len
    columns = k_len * matches - (r - k_len) + offset
    return s, matches, columns


def _packed_bound(sc: Scoring, n: int, m: int, w: int, s_opt: int, max_sub: int) -> int:
    """Upper bound on |packed DP value| given the optimal scaled score s_opt.

    A cell's prefix score plus the cheapest all-gap completion is at most s_opt, and at least
    the all-gap prefix; E/F values are within one gap open of those."""
    return w * (abs(s_opt) + 3 * sc.open_i + sc.extend_i * (n + m) + max_sub + 1)


def _finish(sc: Scoring, n: int, m: int, s: int, matches: int, columns: int) -> PairResult:
    gaps = 2 * columns - n - m if sc.mode == "global" else -1
    identity = matches / columns if columns else float("nan")
    return PairResult(s / sc.scale, identity, matches, columns, gaps)


# --- Biopython (reference and fallback) ------------------------------------------------
class _BioBackend:
    """Exact packed scoring with Biopython's PairwiseAligner (float64)."""

    def __init__(self, sc: Scoring):
        self.sc = sc
        self._aligners: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.max_sub = int(np.abs(sc.sub).max())

    def aligner(self, w: int, k_len: int):
        key = (w, k_len)
        with self._lock:
            al = self._aligners.get(key)
            if al is None:
                from Bio.Align import PairwiseAligner, substitution_matrices

                sc = self.sc
                packed = sc.packed(w, k_len)
                arr = substitution_matrices.Array(alphabet=sc.alphabet, dims=2,
                                                  data=packed.astype(np.float64))
                al = PairwiseAligner(mode=sc.mode, substitution_matrix=arr,
                                     open_gap_score=-float(w * sc.open_i + 1),
                                     extend_gap_score=-float(w * sc.extend_i + 1))
                self._aligners[key] = al
            return al

    def align(self, a: str, b: str) -> PairResult:
        sc = self.sc
        n, m = len(a), len(b)
        w, k_m, k_len, offset = _radices(sc, n, m)
        bound = w * (self.max_sub * (n + m) + 3 * sc.open_i + sc.extend_i * (n + m) + 1)
        if bound >= _FLOAT_EXACT:
            raise InputError(f"pair of lengths {n} and {m} is too long to align exactly")
        v = int(round(self.aligner(w, k_len).score(a, b)))
        return _finish(sc, n, m, *_decode(v, w, k_m, k_len, offset))


# --- parasail (fast path) --------------------------------------------------------------
class _ParasailBackend:
    def __init__(self, sc: Scoring):
        import parasail

        self.sc = sc
        self.ps = parasail
        self.plain = self._matrix(sc.sub)
        self.max_sub = int(np.abs(sc.sub).max())
        self.max_pos = int(sc.sub.max())
        self.row_best = np.zeros(256, dtype=np.int64)      # by letter code: max(0, best score)
        for i, letter in enumerate(sc.alphabet):
            self.row_best[ord(letter)] = max(0, int(sc.sub[i].max()))
        self._packed: dict[int, object] = {}
        self._lock = threading.Lock()
        self.bio = _BioBackend(sc)
        # striped kernels are wrong when open <= extend (seen with parasail 1.3.4); scan is not
        kind = "striped" if sc.open_i > sc.extend_i else "scan"
        prefix = "nw" if sc.mode == "global" else "sw"
        self.score_16 = getattr(parasail, f"{prefix}_{kind}_16")
        self.score_32 = getattr(parasail, f"{prefix}_{kind}_32")
        self.n_fallback = 0

    def score_upper_bound(self, a: str, b: str) -> int:
        """Every column scores at most the best substitution of either of its residues (gaps
        score < 0), so the optimum is at most the smaller sum of those over a or over b."""
        ua = self.row_best[np.frombuffer(a.encode("ascii"), dtype=np.uint8)].sum()
        ub = self.row_best[np.frombuffer(b.encode("ascii"), dtype=np.uint8)].sum()
        return int(min(ua, ub))

    def _matrix(self, values: np.ndarray):
        mat = self.ps.matrix_create(self.sc.alphabet, 0, 0)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                mat.set_value(i, j, int(values[i, j]))
        return mat

    def packed(self, w: int, k_len: int):
        key = (w, k_len)
        with self._lock:
            mat = self._packed.get(key)
            if mat is None:
                mat = self._matrix(self.sc.packed(w, k_len))
                self._packed[key] = mat
            return mat

    def align(self, a: str, b: str) -> PairResult:
        sc = self.sc
        n, m = len(a), len(b)
        if n == 0 or m == 0:
            return self.bio.align(a, b)
        w, k_m, k_len, offset = _radices(sc, n, m)
        # a priori bounds first; if they fail, get the real optimum with a cheap 16-bit pass
        s_opt = self.max_pos * min(n, m)
        if _packed_bound(sc, n, m, w, s_opt, self.max_sub) >= _INT32_SAFE:
            s_opt = self.score_upper_bound(a, b)
        if _packed_bound(sc, n, m, w, s_opt, self.max_sub) >= _INT32_SAFE:
            r = self.score_16(a, b, sc.open_i, sc.extend_i, self.plain)
            if r.saturated:
                r = self.score_32(a, b, sc.open_i, sc.extend_i, self.plain)
            s_opt = r.score
            if _packed_bound(sc, n, m, w, s_opt, self.max_sub) >= _INT32_SAFE:
                self.n_fallback += 1
                return self.bio.align(a, b)
        pw = w * sc.open_i + 1
        pe = w * sc.extend_i + 1
        v = self.score_32(a, b, pw, pe, self.packed(w, k_len)).score
        return _finish(sc, n, m, *_decode(v, w, k_m, k_len, offset))


BACKENDS = ("parasail", "biopython")


def make_backend(sc: Scoring, backend: str = "parasail"):
    if backend == "parasail":
        # parasail lets adjacent gaps split a run, which only matters when open < extend
        return _ParasailBackend(sc) if sc.open_i >= sc.extend_i else _BioBackend(sc)
    if backend == "biopython":
        return _BioBackend(sc)
    raise InputError(f"alignment backend {backend!r} must be one of {', '.join(BACKENDS)}", param="backend")


def align_pair(a: str, b: str, scoring: Scoring | None = None, backend: str = "parasail") -> PairResult:
    """Score and identity of one pair (see the module docstring for the definitions)."""
    sc = scoring or Scoring()
    return make_backend(sc, backend).align(sc.normalise(a), sc.normalise(b))


RESULT_FIELDS = (("score", np.float64), ("identity", np.float64), ("matches", np.int32),
                 ("length", np.int32), ("gaps", np.int32))


def align_many(seqs_a, seqs_b, scoring: Scoring | None = None, threads: int = 1,
               backend: str = "parasail", _engine=None) -> dict[str, np.ndarray]:
    """Align seqs_a[i] with seqs_b[i] for all i; returns column arrays (see RESULT_FIELDS).

    Threads share the work in contiguous slices; parasail's C calls release the GIL."""
    sc = scoring or Scoring()
    if len(seqs_a) != len(seqs_b):
        raise ValueError("seqs_a and seqs_b differ in length")
    engine = _engine or make_backend(sc, backend)
    n = len(seqs_a)
    out = {name: np.empty(n, dtype=dt) for name, dt in RESULT_FIELDS}

    def work(lo: int, hi: int) -> None:
        norm = sc.normalise
        for i in range(lo, hi):
            r = engine.align(norm(seqs_a[i]), norm(seqs_b[i]))
            out["score"][i] = r.score
            out["identity"][i] = r.identity
            out["matches"][i] = r.matches
            out["length"][i] = r.length
            out["gaps"][i] = r.gaps

    threads = max(1, min(threads, n))
    if threads == 1:
        work(0, n)
    else:
        step = max(1, min(256, -(-n // (threads * 4))))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda lo: work(lo, min(n, lo + step)), range(0, n, step)))
    return out


# --- SQL UDFs (PAM250, gaps 10/0.5, global: the paper's setting) --------------------------
_DEFAULT_ENGINE: dict = {}


def _default_align(a: str, b: str) -> PairResult:
    eng = _DEFAULT_ENGINE.get("engine")
    if eng is None:
        eng = _DEFAULT_ENGINE["engine"] = make_backend(Scoring())
    sc = eng.sc
    return eng.align(sc.normalise(a), sc.normalise(b))


def align_score(a: str, b: str) -> float:
    """Global alignment score of two sequences (PAM250, gap open 10, extend 0.5)."""
    return _default_align(a, b).score


def align_identity(a: str, b: str) -> float | None:
    """Identity of the global PAM250 10/0.5 alignment (see IDENTITY_DEFINITION)."""
    value = _default_align(a, b).identity
    return None if value != value else value
