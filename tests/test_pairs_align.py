"""Alignment score and identity: equal to Biopython's PairwiseAligner, identity by hand, by
Biopython's enumeration of co-optimal alignments and by enumerating every alignment (no DP)."""
from __future__ import annotations

import gzip
import random
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO
from Bio.Align import PairwiseAligner, substitution_matrices

import protiso.pairs.align as align_mod
from protiso.errors import InputError
from protiso.pairs.align import Scoring, align_identity, align_many, align_pair, align_score, make_backend

SETTINGS = [("PAM250", 10, 0.5), ("BLOSUM62", 11, 1), ("BLOSUM62", 5, 2.5), ("PAM250", 2, 2)]


def _real_sequences(n: int = 60) -> list[str]:
    path = Path(str(resources.files("protiso") / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"))
    out = []
    with gzip.open(path, "rt") as fh:
        for rec in SeqIO.parse(fh, "fasta"):
            if len(rec.seq) <= 450:           # keep the Biopython side fast
                out.append(str(rec.seq))
            if len(out) == n:
                break
    return out


def _bio(sc: Scoring) -> PairwiseAligner:
    return PairwiseAligner(mode=sc.mode, substitution_matrix=substitution_matrices.load(sc.matrix),
                           open_gap_score=-sc.gap_open, extend_gap_score=-sc.gap_extend)


def _identities(aln) -> int:
    """Identical columns of a Biopython alignment, X-X (unknown residue) not counted."""
    return sum(x == y != "X" and x != "-" for x, y in zip(aln[0], aln[1]))


def _brute(a: str, b: str, sc: Scoring):
    """(score, identical pairs, columns) by enumerating Biopython's co-optimal alignments."""
    alns = _bio(sc).align(a, b)
    keys = [(_identities(x), -x.shape[1]) for x in alns]
    m, neg_len = max(keys)
    return alns.score, m, -neg_len


def _every_alignment(a: str, b: str, sc: Scoring):
    """The documented rule by enumerating every global alignment of a and b, no DP: the
    (score, identical pairs, columns) of the best score, then most identical pairs (X-X not
    counted), then fewest columns. A gap of length L costs open + (L - 1) * extend."""
    sub = substitution_matrices.load(sc.matrix)
    found = []

    def walk(i, j, prev, score, same, cols):
        if i == len(a) and j == len(b):
            found.append((score, same, -cols))
            return
        if i < len(a) and j < len(b):
            walk(i + 1, j + 1, "pair", score + sub[a[i]][b[j]], same + (a[i] == b[j] != "X"), cols + 1)
        if i < len(a):
            walk(i + 1, j, "gap_b", score - (sc.gap_extend if prev == "gap_b" else sc.gap_open), same, cols + 1)
        if j < len(b):
            walk(i, j + 1, "gap_a", score - (sc.gap_extend if prev == "gap_a" else sc.gap_open), same, cols + 1)

    walk(0, 0, None, 0.0, 0, 0)
    score, same, neg_cols = max(found)
    return score, same, -neg_cols


@pytest.fixture(scope="module")
def real_pairs():
    seqs = _real_sequences()
    rng = random.Random(7)
    pairs = [tuple(rng.sample(seqs, 2)) for _ in range(40)]
    # a related pair: a sequence and a mutated copy, so identity is high
    a = seqs[3]
    b = list(a)
    for i in rng.sample(range(len(b)), len(b) // 6):
        b[i] = rng.choice("ACDEFGHIKLMNPQRSTVWY")
    del b[10:14]
    pairs.append((a, "".join(b)))
    return pairs


@pytest.mark.parametrize("mode", ["global", "local"])
@pytest.mark.parametrize("matrix,gap_open,gap_extend", SETTINGS)
def test_scores_equal_biopython_on_swissprot_pairs(real_pairs, mode, matrix, gap_open, gap_extend):
    sc = Scoring(matrix, gap_open, gap_extend, mode)
    bio = _bio(sc)
    A = [sc.normalise(a) for a, _ in real_pairs]
    B = [sc.normalise(b) for _, b in real_pairs]
    fast = align_many(A, B, sc)
    ref = align_many(A, B, sc, backend="biopython")
    expected = np.array([bio.score(a, b) for a, b in zip(A, B)])
    np.testing.assert_array_equal(fast["score"], expected)
    for col in ("matches", "length", "gaps"):
        np.testing.assert_array_equal(fast[col], ref[col])
    np.testing.assert_array_equal(fast["identity"], ref["identity"])
    assert fast["identity"][-1] > 0.6          # the mutated copy
    if mode == "global":
        assert fast["identity"][:-1].max() < 0.45


def test_identity_on_swissprot_pairs_matches_enumeration(real_pairs):
    """On real pairs with few co-optimal alignments: the enumerated rule gives the same
    identical pairs, columns and gap columns."""
    sc = Scoring()
    bio = _bio(sc)
    checked = 0
    for a, b in real_pairs:
        a, b = sc.normalise(a), sc.normalise(b)
        alns = bio.align(a, b)
        if len(alns) > 200:
            continue
        best = max(alns, key=lambda x: (_identities(x), -x.shape[1]))
        r = align_pair(a, b, sc)
        assert r.matches == _identities(best)
        assert r.length == best.shape[1]
        assert r.gaps == best.counts().gaps
        assert r.identity == pytest.approx(_identities(best) / best.shape[1])
        checked += 1
    assert checked >= 5


def test_identity_hand_cases():
    sc = Scoring()            # PAM250, 10 / 0.5, global
    r = align_pair("HEAGAWGHEE", "HEAGAWGHEE", sc)
    assert (r.matches, r.length, r.gaps, r.identity) == (10, 10, 0, 1.0)
    # AWTS/SSAW: two optimal alignments, score -2:
    #   AWTS/SSAW (A-S 1, W-S -2, T-A 1, S-W -2): 0 identical of 4
    #   --AWTS/SSAW-- (A-A 2, W-W 17, two gaps of 2 at 10.5 each): 2 identical of 6
    r = align_pair("AWTS", "SSAW", sc)
    assert r.score == -2.0
    assert (r.matches, r.length, r.gaps) == (2, 6, 4)
    assert r.identity == pytest.approx(1 / 3)
    # WT/GTTA, score -14.5: --WT/GTTA (W-T -5, T-A 1) has 0 identical; WT--/GTTA
    # (W-G -7, T-T 3) has 1: the rule takes 1 of 4
    r = align_pair("WT", "GTTA", sc)
    assert (r.score, r.matches, r.length) == (-14.5, 1, 4)
    # order of the two sequences does not matter
    assert align_pair("GTTA", "WT", sc) == r


def test_identity_ties_match_brute_force_enumeration():
    """Most identical pairs, then fewest columns, over all co-optimal alignments (global)."""
    rng = random.Random(1)
    length_ties = 0
    for matrix, go, ge in SETTINGS[:3]:
        sc = Scoring(matrix, go, ge, "global")
        fast, ref = make_backend(sc), make_backend(sc, "biopython")
        for _ in range(150):
            a = "".join(rng.choice("ACDEGKW") for _ in range(rng.randint(1, 9)))
            b = "".join(rng.choice("ACDEGKW") for _ in range(rng.randint(1, 9)))
            score, m, cols = _brute(a, b, sc)
            keys = {(_identities(x), x.shape[1]) for x in _bio(sc).align(a, b)}
            length_ties += len({c for i, c in keys if i == m}) > 1
            for eng in (fast, ref):
                r = eng.align(a, b)
                assert (r.score, r.matches, r.length) == (score, m, cols), (a, b)
    assert length_ties > 0        # the second tie-break was exercised


@pytest.mark.parametrize("matrix,gap_open,gap_extend", SETTINGS)
def test_identity_rule_equals_enumeration_of_every_alignment(matrix, gap_open, gap_extend):
    """Tiny random pairs over a few letters, X included: many co-optimal alignments, X-X columns."""
    sc = Scoring(matrix, gap_open, gap_extend, "global")
    engines = [make_backend(sc), make_backend(sc, "biopython")]
    rng = random.Random(11)
    x_columns = 0
    for _ in range(60):
        a = "".join(rng.choice("AWCX") for _ in range(rng.randint(1, 5)))
        b = "".join(rng.choice("AWCX") for _ in range(rng.randint(1, 5)))
        expected = _every_alignment(a, b, sc)
        x_columns += "X" in a and "X" in b
        for eng in engines:
            r = eng.align(a, b)
            assert (r.score, r.matches, r.length) == expected, (a, b, type(eng).__name__)
            assert r.identity == expected[1] / expected[2]
    assert x_columns > 5


def test_unknown_residue_is_not_an_identity():
    """Issue 17: U, O, J become X, and X-X must not count as identical (the score keeps the
    matrix's X-X value)."""
    sc = Scoring()
    bio = _bio(sc)
    r = align_pair("MKUW", "MKXW", sc)
    # worked by hand: M-M 6, K-K 5, X-X -1, W-W 17 (PAM250) = 27; identical M, K, W: 3 of 4
    assert r.score == bio.score("MKXW", "MKXW") == 27
    assert (r.matches, r.length, r.identity) == (3, 4, 0.75)
    assert align_pair("UOJ", "XXX", sc).identity == 0.0
    assert align_pair("XX", "XX", sc, backend="biopython").matches == 0
    # other letters still count: B-B and Z-Z are letters of the matrix
    assert align_pair("BZ", "BZ", sc).matches == 2


def test_long_pairs_take_the_prepass_and_the_fallback_exactly():
    """Pairs too long for the a-priori 32-bit bound (16-bit score pass first) and too long for
    32 bits at all (Biopython in float64) give the same results as the Biopython backend."""
    sc = Scoring()
    path = Path(str(resources.files("protiso") / "data" / "sample" / "swissprot2014_go_2k.fasta.gz"))
    with gzip.open(path, "rt") as fh:
        seqs = [str(r.seq) for r in SeqIO.parse(fh, "fasta")]
    mid = [s for s in seqs if 600 <= len(s) <= 700][:2]
    big = [s for s in seqs if 1100 <= len(s) <= 1300][:2]
    A, B = [mid[0], big[0]], [mid[1], big[1]]
    eng = make_backend(sc)
    fast = align_many(A, B, sc, _engine=eng)
    assert eng.n_prepass == 2 and eng.n_fallback == 1
    ref = align_many(A, B, sc, backend="biopython")
    for k in fast:
        np.testing.assert_array_equal(fast[k], ref[k])
    bio = _bio(sc)
    np.testing.assert_array_equal(fast["score"], [bio.score(a, b) for a, b in zip(A, B)])


def test_pairs_sharing_a_sequence_equal_pair_by_pair(real_pairs):
    """One query against many, from either side (the shared side becomes the query)."""
    sc = Scoring()
    seqs = [a for a, _ in real_pairs[:12]]
    q = seqs[0]
    for A, B in (([q] * 11, seqs[1:]), (seqs[1:], [q] * 11)):
        many = align_many(A, B, sc)
        one = [align_pair(a, b, sc) for a, b in zip(A, B)]
        np.testing.assert_array_equal(many["score"], [r.score for r in one])
        np.testing.assert_array_equal(many["matches"], [r.matches for r in one])
        np.testing.assert_array_equal(many["length"], [r.length for r in one])


def test_local_identity_hand_case():
    sc = Scoring("PAM250", 10, 0.5, "local")
    # the best local alignment is the shared core WWCWW (W-W 17, C-C 12; D-F flanks are -6)
    r = align_pair("DDDWWCWWDDD", "FFFWWCWWFFF", sc)
    assert r.score == 17 * 4 + 12
    assert (r.matches, r.length, r.identity) == (5, 5, 1.0)
    assert r.gaps == -1
    # nothing scores above zero: empty local alignment, identity undefined
    r = align_pair("W", "G", sc)
    assert (r.score, r.matches, r.length) == (0, 0, 0) and r.identity != r.identity


def test_fallback_path_equals_fast_path(real_pairs, monkeypatch):
    sc = Scoring()
    A = [a for a, _ in real_pairs[:10]]
    B = [b for _, b in real_pairs[:10]]
    fast = align_many(A, B, sc)
    monkeypatch.setattr(align_mod, "_INT32_LIMIT", 1000)     # everything falls back
    eng = make_backend(sc)
    slow = align_many(A, B, sc, _engine=eng)
    assert eng.n_fallback == 10
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k])


def test_threads_give_identical_results(real_pairs):
    sc = Scoring("BLOSUM62", 11, 1)
    A = [a for a, _ in real_pairs]
    B = [b for _, b in real_pairs]
    one = align_many(A, B, sc)
    two = align_many(A, B, sc, threads=3)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])


def test_open_below_extend_uses_exact_backend():
    sc = Scoring("BLOSUM62", 1, 3)
    bio = _bio(sc)
    rng = random.Random(3)
    for _ in range(20):
        a = "".join(rng.choice("ACDEGKWLIV") for _ in range(rng.randint(5, 40)))
        b = "".join(rng.choice("ACDEGKWLIV") for _ in range(rng.randint(5, 40)))
        assert align_pair(a, b, sc).score == bio.score(a, b)


def test_unknown_letters_become_x_and_bad_settings_fail():
    sc = Scoring()
    assert sc.normalise("acuOz") == "ACXXZ"
    bio = _bio(sc)
    assert align_pair("MKUV", "MKCV", sc).score == bio.score("MKXV", "MKCV")
    # errors name the value and the parameter (the CLI turns it into the option)
    for kwargs, message, param in ((dict(matrix="NOPE"), "NOPE", "matrix"),
                                   (dict(mode="semi"), "alignment mode 'semi'", "mode"),
                                   (dict(gap_open=-1), ">= 0", "gap_open"),
                                   (dict(gap_extend=-2), "extend -2", "gap_extend")):
        with pytest.raises(InputError, match=message) as exc:
            Scoring(**kwargs)
        assert exc.value.param == param and "--" not in str(exc.value)
    with pytest.raises(InputError, match="alignment backend 'simd'") as exc:
        make_backend(Scoring(), "simd")
    assert exc.value.param == "backend"
    assert Scoring().scale == 2 and Scoring("BLOSUM62", 11, 1).scale == 1


def test_udfs_are_plain_functions_and_sql(store):
    bio = _bio(Scoring())
    assert align_score("HEAGAWGHEE", "PAWHEAE") == bio.score("HEAGAWGHEE", "PAWHEAE")
    assert align_identity("AWTS", "SSAW") == pytest.approx(1 / 3)
    row = store.con.execute("SELECT align_score('AWTS', 'SSAW'), align_identity('AWTS', 'SSAW'), "
                            "align_score(NULL, 'A')").fetchone()
    assert row[0] == -2.0 and row[1] == pytest.approx(1 / 3) and row[2] is None
