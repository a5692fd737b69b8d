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
    An identical pair is a column of two equal letters other than X: X stands for an unknown
    residue (letters outside the matrix alphabet, such as U, O and J, become X), and X-X is no
    evidence of identity. Its score stays the matrix's X-X value.

It is computed without a traceback by lexicographic scoring: every column scores
`W * s + K * [identical] - 1` (W > K^2 as radices), so the optimum of the packed score is the
lexicographic optimum of (score, identical pairs, -columns), and all three decode from one
number. parasail's 32-bit scan kernel computes it, with the query's profile reused over its
targets, when a bound shows every DP value fits in 32 bits (a priori, else from the optimum of
a 16-bit score-only pass); otherwise (pairs of two proteins over ~900 residues, ~0.15% of random
Swiss-Prot pairs) Biopython's aligner computes the same packed score in float64 (exact below
2**53). open < extend goes to Biopython (parasail would let adjacent gaps split a run).

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
    "identical residue pairs (X-X, the unknown residue, is not one) / alignment columns (gap "
    "columns included), on the optimal-score alignment with the most identical pairs, then the "
    "fewest columns")
MODES = ("global", "local")
UNKNOWN = "X"       # letters outside the matrix alphabet become this; X-X is not an identity


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

    def identical(self) -> np.ndarray:
        """0/1 matrix: which letter pairs count as identical (same letter, not the unknown X)."""
        same = np.eye(len(self.alphabet), dtype=np.int64)
        if UNKNOWN in self.alphabet:
            i = self.alphabet.index(UNKNOWN)
            same[i, i] = 0
        return same

    def packed(self, w: int, k_len: int) -> np.ndarray:
        """The packed substitution values w*sub + k_len*[identical] - 1: one alignment score that
        carries, in its weighted digits, the score, the identical pairs and the columns."""
        return w * self.sub + k_len * self.identical() - 1

    def describe(self) -> dict:
        return {"matrix": self.matrix.upper(), "gap_open": self.gap_open,
                "gap_extend": self.gap_extend, "mode": self.mode, "scale": self.scale,
                "identity": IDENTITY_DEFINITION}

    def normalise(self, seq: str) -> str:
        """Upper-case; letters outside the matrix alphabet become X."""
        s = seq.upper()
        if UNKNOWN in self.alphabet:
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
_K_STEP = 16        # radices rounded up so that one packed matrix and profile serve many lengths


def _round_up(x: int, step: int) -> int:
    return (x + step - 1) // step * step


def _radices(sc: Scoring, n: int, m: int) -> tuple[int, int, int, int]:
    """(W, K_m, K_len, offset) for a pair: identical pairs < K_m, columns - offset < K_len."""
    k_m = _round_up(min(n, m) + 1, _K_STEP)
    if sc.mode == "global":
        k_len, offset = k_m, max(n, m)          # columns in [max(n,m), n+m]
    else:
        k_len, offset = _round_up(n + m + 1, 64), 0
    return k_m * k_len + 1, k_m, k_len, offset


def _decode(v: int, w: int, k_len: int, offset: int) -> tuple[int, int, int]:
    """Packed optimum -> (scaled score, identical pairs, columns)."""
    u = v + offset
    s = (u + k_len - 1) // w
    r = u + k_len - w * s
    matches = (r - 1) // k_len
    columns = k_len * matches - (r - k_len) + offset
    return s, matches, columns


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
        self.n_fallback = 0

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
        return _finish(sc, n, m, *_decode(v, w, k_len, offset))

    def align_batch(self, seqs_a, seqs_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, identical pairs, columns) of each pair (normalised sequences)."""
        res = [self.align(a, b) for a, b in zip(seqs_a, seqs_b)]
        return (np.array([r.score for r in res], dtype=np.float64),
                np.array([r.matches for r in res], dtype=np.int64),
                np.array([r.length for r in res], dtype=np.int64))


# --- parasail (fast path) --------------------------------------------------------------
# parasail's 32-bit kernels start E and F from -inf = INT32_MIN/2: real DP values minus a gap open
# must stay above it (so -inf never wins) and real values plus a substitution below INT32_MAX.
_INT32_LIMIT = 2 ** 30
_FLOAT_EXACT = 2 ** 52


class _ParasailBackend:
    """The packed score with parasail's 32-bit scan kernels, one profile per query and radix.

    Pairs are grouped by the sequence they share (one query against many: the all-pairs
    workload), so the query's packed profile is built once for all its targets. Global mode
    shifts every column by sigma per residue consumed (substitutions +2 sigma, gap columns
    +sigma, sigma = the packed gap extension): every global alignment of the pair gains the same
    sigma * (n + m), so the optimum is unchanged, gap extensions cost 0 and DP values stay within
    a few gap opens below 0 instead of falling with n + m. What is left to bound is the top: a
    priori from the best substitution of each residue, else from the optimum of a cheap 16-bit
    score-only pass (prefix <= optimum + all-gap completion); pairs still too long for 32 bits
    (both over ~900 residues) go to Biopython in float64. Scan kernels because they are exact
    for any open >= extend (parasail 1.3.4's striped ones are not when open <= extend) and, with
    a reused profile, measured faster than striped ones (benchmarks/bench_pairs.py prints the
    kernel rates); parasail's 64-bit kernels measured slower than Biopython."""

    def __init__(self, sc: Scoring):
        import parasail

        self.sc = sc
        self.ps = parasail
        self.glob = sc.mode == "global"
        self.plain = self._matrix(sc.sub)
        self.max_sub = int(np.abs(sc.sub).max())
        # prefix score bounds per letter code: best substitution, + 2 extensions when shifted
        shift = 2 * sc.extend_i if self.glob else 0
        self.row_best = np.zeros(256, dtype=np.int64)
        for i, letter in enumerate(sc.alphabet):
            self.row_best[ord(letter)] = max(0, int(sc.sub[i].max()) + shift)
        # score, identity and columns stay the same with a and b swapped iff the matrix is symmetric
        self.symmetric = bool(np.array_equal(sc.sub, sc.sub.T))
        self._packed: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self.bio = _BioBackend(sc)
        prefix = "nw" if self.glob else "sw"
        self.score_16 = getattr(parasail, f"{prefix}_scan_profile_16")
        self.score_32 = getattr(parasail, f"{prefix}_scan_32")
        self.packed_32 = getattr(parasail, f"{prefix}_scan_profile_32")
        self.n_prepass = 0           # pairs that needed the 16-bit score pass to prove 32 bits safe
        self.n_fallback = 0          # pairs aligned by Biopython (too long for 32 bits)

    def score_upper_bound(self, s: str) -> int:
        """Every substitution column scores at most the best substitution of its residue (gap
        columns score <= 0), so any (prefix) alignment with s scores at most this sum over s."""
        return int(self.row_best[np.frombuffer(s.encode("ascii"), dtype=np.uint8)].sum())

    def _matrix(self, values: np.ndarray):
        mat = self.ps.matrix_create(self.sc.alphabet, 0, 0)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                mat.set_value(i, j, int(values[i, j]))
        return mat

    def gaps(self, w: int) -> tuple[int, int, int]:
        """(sigma, gap open, gap extension) of the packed, shifted scoring for radix w."""
        sc = self.sc
        sigma = w * sc.extend_i + 1 if self.glob else 0
        return sigma, w * sc.open_i + 1 - sigma, w * sc.extend_i + 1 - sigma

    def packed(self, w: int, k_len: int):
        key = (w, k_len)
        with self._lock:
            mat = self._packed.get(key)
            if mat is None:
                sigma = self.gaps(w)[0]
                mat = self._matrix(self.sc.packed(w, k_len) + 2 * sigma)
                self._packed[key] = mat
            return mat

    def fits_32(self, n: int, m: int, w: int, ub: int, s_opt: int | None = None) -> bool:
        """No DP value of this pair can overflow the 32-bit kernel.

        ub bounds every prefix's (shifted) score; s_opt, the optimum, bounds them too (global:
        a prefix plus the all-gap completion scores at most the optimum)."""
        sc = self.sc
        sigma, go, ge = self.gaps(w)
        if s_opt is not None:
            ub = min(ub, s_opt + 2 * (sc.open_i - sc.extend_i) + sc.extend_i * (n + m) if self.glob else s_opt)
        top = w * (max(ub, 0) + self.max_sub + 2 * sc.extend_i + 3)
        # global: values >= -(2 opens) - an open - a substitution; local: H >= 0, and -inf minus
        # a query's worth of extensions must not wrap
        bottom = 3 * go + w * (self.max_sub + 1) + ge * (n + m + 2)
        return top < 2 * _INT32_LIMIT - 1 and bottom < _INT32_LIMIT

    def align(self, a: str, b: str) -> PairResult:
        score, matches, columns = self.align_batch([a], [b])
        gaps = 2 * int(columns[0]) - len(a) - len(b) if self.glob else -1
        col = int(columns[0])
        return PairResult(float(score[0]), int(matches[0]) / col if col else float("nan"),
                          int(matches[0]), col, gaps)

    def align_batch(self, seqs_a, seqs_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, identical pairs, columns) of each pair (normalised sequences), grouped by query."""
        sc = self.sc
        count = len(seqs_a)
        score = np.empty(count, dtype=np.float64)
        matches = np.empty(count, dtype=np.int64)
        columns = np.empty(count, dtype=np.int64)
        # the side with fewer distinct sequences is the query (needs a symmetric matrix to swap)
        swap = self.symmetric and len(set(seqs_b)) < len(set(seqs_a))
        queries, targets = (seqs_b, seqs_a) if swap else (seqs_a, seqs_b)
        groups: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(q, []).append(i)
        ubs: dict[str, int] = {}

        def ub(s: str) -> int:
            v = ubs.get(s)
            if v is None:
                v = ubs[s] = self.score_upper_bound(s)
            return v

        n_prepass = n_fallback = 0
        for q, idx in groups.items():
            n = len(q)
            ub_q = ub(q)
            profiles: dict[tuple, object] = {}
            plain_16 = None
            for i in idx:
                t = targets[i]
                m = len(t)
                w, k_m, k_len, offset = _radices(sc, n, m)
                ok = n > 0 and m > 0 and self.fits_32(n, m, w, min(ub_q, ub(t)))
                if not ok and n > 0 and m > 0:
                    n_prepass += 1
                    if plain_16 is None:
                        plain_16 = self.ps.profile_create_16(q, self.plain)
                    r = self.score_16(plain_16, t, sc.open_i, sc.extend_i)
                    s_opt = r.score if not r.saturated else \
                        self.score_32(q, t, sc.open_i, sc.extend_i, self.plain).score
                    ok = self.fits_32(n, m, w, min(ub_q, ub(t)), s_opt)
                if not ok:
                    r = self.bio.align(q, t)
                    score[i], matches[i], columns[i] = r.score, r.matches, r.length
                    n_fallback += n > 0 and m > 0
                    continue
                sigma, go, ge = self.gaps(w)
                prof = profiles.get((w, k_len))
                if prof is None:
                    prof = profiles[(w, k_len)] = self.ps.profile_create_32(q, self.packed(w, k_len))
                v = self.packed_32(prof, t, go, ge).score - sigma * (n + m)
                s, matches[i], columns[i] = _decode(v, w, k_len, offset)
                score[i] = s / sc.scale
        with self._lock:
            self.n_prepass += n_prepass
            self.n_fallback += n_fallback
        return score, matches, columns


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

    Pairs sharing a sequence reuse its profile (order pairs by a shared sequence, as all-pairs
    sets are, for speed). Threads share the work in contiguous slices; parasail's C calls
    release the GIL."""
    sc = scoring or Scoring()
    if len(seqs_a) != len(seqs_b):
        raise ValueError("seqs_a and seqs_b differ in length")
    engine = _engine or make_backend(sc, backend)
    n = len(seqs_a)
    norm: dict[str, str] = {}

    def normalised(seqs) -> list[str]:
        out = []
        for s in seqs:
            v = norm.get(s)
            if v is None:
                v = norm[s] = sc.normalise(s)
            out.append(v)
        return out

    A, B = normalised(seqs_a), normalised(seqs_b)
    score = np.empty(n, dtype=np.float64)
    matches = np.empty(n, dtype=np.int64)
    columns = np.empty(n, dtype=np.int64)

    def work(lo: int, hi: int) -> None:
        score[lo:hi], matches[lo:hi], columns[lo:hi] = engine.align_batch(A[lo:hi], B[lo:hi])

    threads = max(1, min(threads, n))
    if threads == 1:
        work(0, n)
    else:
        step = -(-n // (threads * 2))
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda lo: work(lo, min(n, lo + step)), range(0, n, step)))
    lengths = np.fromiter((len(a) + len(b) for a, b in zip(A, B)), dtype=np.int64, count=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        identity = np.where(columns > 0, matches / np.maximum(columns, 1), np.nan)
    gaps = 2 * columns - lengths if sc.mode == "global" else np.full(n, -1)
    return {"score": score, "identity": identity, "matches": matches.astype(np.int32),
            "length": columns.astype(np.int32), "gaps": gaps.astype(np.int32)}


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
