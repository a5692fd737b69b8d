"""GO: OBO parsing, ancestor closure, information content, Resnik/Lin and best-match average.

Checked against a hand-worked ontology, a pure-Python brute force on random DAGs, the bundled
slice, and goatools (an independent implementation) where it is installed."""
from __future__ import annotations

import collections
import gzip
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from protiso.errors import InputError, NotFoundError
from protiso.go import (InformationContent, ancestor_closure, pair_similarity, read_obo,
                        term_similarity)

DATA = Path(__file__).resolve().parent.parent / "protiso" / "data"

# Hand-worked ontology (biological_process; R is GO's real BP root so goatools finds it):
#
#          R (GO:0008150)
#         /  \
#        A    B            A, B is_a R
#       / \ .  \           C is_a A;  D is_a A and D part_of B;  E is_a B
#      C   D    E          E regulates C (not propagated);  O obsolete
#
# plus molecular_function: M (GO:0003674) <- N is_a M.
R, A, B, C, D, E = "GO:0008150", "GO:0000010", "GO:0000020", "GO:0000030", "GO:0000040", "GO:0000050"
M, N, O = "GO:0003674", "GO:0000060", "GO:0000070"
HAND_OBO = f"""format-version: 1.2
data-version: test-1
ontology: go

[Term]
id: {R}
name: biological_process
namespace: biological_process

[Term]
id: {A}
name: a \\{{braced\\}} name
namespace: biological_process
is_a: {R} ! biological_process

[Term]
id: {B}
name: b
namespace: biological_process
is_a: {R}

[Term]
id: {C}
name: c
namespace: biological_process
alt_id: GO:0000099
is_a: {A}

[Term]
id: {D}
name: d
namespace: biological_process
is_a: {A}
relationship: part_of {B}

[Term]
id: {E}
name: e
namespace: biological_process
is_a: {B}
relationship: regulates {C}

[Term]
id: {O}
name: obsolete thing
namespace: biological_process
is_obsolete: true

[Term]
id: {M}
name: molecular_function
namespace: molecular_function

[Term]
id: {N}
name: n
namespace: molecular_function
is_a: {M}

[Typedef]
id: part_of
name: part of

[Typedef]
id: regulates
name: regulates
"""
# Proteins: P1 {C}, P2 {D}, P3 {E}, P4 {A}, P5 {C (via its alt id), E}; Q1 {N} (MF only);
# P6 {O (obsolete), X (unknown)} is dropped entirely.
HAND_ANNOTATIONS = [("P1", "BPO", C), ("P2", "BPO", D), ("P3", "BPO", E), ("P4", "BPO", A),
                    ("P5", "BPO", "GO:0000099"), ("P5", "BPO", E), ("P5", "BPO", E),
                    ("Q1", "MFO", N), ("P6", "BPO", O), ("P6", "BPO", "GO:0999999")]
# True-path counts over N = 5 BP proteins: C {P1,P5}=2, D {P2}=1, E {P3,P5}=2,
# A {P1,P2,P4,P5}=4, B {P2 (D part_of B), P3, P5}=3, R=5.
LN = math.log
IC = {R: 0.0, A: LN(5 / 4), B: LN(5 / 3), C: LN(5 / 2), D: LN(5), E: LN(5 / 2)}


def annotation_table(rows) -> pa.Table:
    acc, ns, term = zip(*rows)
    return pa.table({"accession": list(acc), "namespace": list(ns), "term": list(term)})


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    path = tmp_path_factory.mktemp("go") / "hand.obo"
    path.write_text(HAND_OBO)
    go = read_obo(path)
    ic = InformationContent.from_tables(go.ancestors, annotation_table(HAND_ANNOTATIONS),
                                        go.terms, go.alt_ids)
    return path, go, ic


def test_hand_tables(hand):
    _, go, _ = hand
    terms = {r["term"]: r for r in go.terms.to_pylist()}
    assert terms[A]["name"] == "a {braced} name" and terms[O]["obsolete"] and not terms[C]["obsolete"]
    assert terms[N]["namespace"] == "molecular_function" and go.data_version == "test-1"
    edges = set(map(tuple, zip(*[go.edges.column(c).to_pylist() for c in ("child", "parent", "relation")])))
    assert edges == {(A, R, "is_a"), (B, R, "is_a"), (C, A, "is_a"), (D, A, "is_a"),
                     (D, B, "part_of"), (E, B, "is_a"), (E, C, "regulates"), (N, M, "is_a")}
    anc = collections.defaultdict(dict)
    for t, a, d in zip(*[go.ancestors.column(c).to_pylist() for c in ("term", "ancestor", "distance")]):
        anc[t][a] = d
    assert anc[D] == {D: 0, A: 1, B: 1, R: 2}  # part_of propagates, with a self row
    assert anc[E] == {E: 0, B: 1, R: 2}  # regulates does not
    assert anc[O] == {O: 0} and anc[R] == {R: 0}
    assert go.alt_ids.to_pylist() == [{"alt_id": "GO:0000099", "term": C}]


def test_hand_information_content(hand):
    _, _, ic = hand
    assert (ic.n_unknown, ic.n_obsolete, ic.n_annotations) == (1, 1, 7)
    assert ic.dropped_examples == ["P6:GO:0999999 (not in the ontology)", f"P6:{O} (obsolete)"]
    bp = ic.get("BPO")
    assert bp.n_proteins == 5 and set(bp.proteins) == {"P1", "P2", "P3", "P4", "P5"}
    got = dict(zip(bp.terms, bp.ic))
    assert set(got) == set(IC)
    for t, v in IC.items():
        assert got[t] == pytest.approx(v, abs=1e-12)
    assert ic.get("molecular_function").n_proteins == 1
    table = ic.ic_table()
    assert table.num_rows == 6 + 2 and set(table.column("namespace").to_pylist()) == {
        "biological_process", "molecular_function"}


def test_hand_term_similarity(hand):
    _, _, ic = hand
    pairs = [(C, D), (D, E), (C, E), (C, C), (A, C), (R, R)]
    a, b = zip(*pairs)
    # MICA(C, D) = A; MICA(D, E) = B (D part_of B); C, E share only R; MICA(C, C) = C
    resnik = [IC[A], IC[B], 0.0, IC[C], IC[A], 0.0]
    assert term_similarity(ic, a, b, "BP", "resnik") == pytest.approx(resnik, abs=1e-12)
    lin = [2 * IC[A] / (IC[C] + IC[D]), 2 * IC[B] / (IC[D] + IC[E]), 0.0, 1.0,
           2 * IC[A] / (IC[A] + IC[C]), 1.0]
    assert term_similarity(ic, a, b, "BP", "lin") == pytest.approx(lin, abs=1e-12)
    assert np.isnan(term_similarity(ic, [C, O], [D, D], "BP")[1])  # obsolete: no count


def test_hand_best_match_average(hand):
    _, _, ic = hand
    a = ["P5", "P1", "P4", "P5", "Q1", "P1", "nope"]
    b = ["P2", "P3", "P1", "P5", "P1", "Q1", "P1"]
    # P5 {C, E} vs P2 {D}: rows C->D = IC(A), E->D = IC(B); column D -> max = IC(B)
    # P1 {C} vs P3 {E}: 0; P4 {A} vs P1 {C}: (IC(A) + IC(A)) / 2
    # P5 vs P5: rows C->C, E->E, columns likewise: (2 IC(C) + 2 IC(E)) / 4
    expected = [(IC[A] + 2 * IC[B]) / 3, 0.0, IC[A], (2 * IC[C] + 2 * IC[E]) / 4]
    got = pair_similarity(ic, a, b, "biological_process", "resnik")
    assert got[:4] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(got[4:]).all()  # Q1 has no BP term; 'nope' is not annotated
    lin_cd = 2 * IC[A] / (IC[C] + IC[D])
    lin_ed = 2 * IC[B] / (IC[E] + IC[D])
    got = pair_similarity(ic, a[:1], b[:1], "BPO", "lin")
    assert got == pytest.approx([(lin_cd + lin_ed + max(lin_cd, lin_ed)) / 3], abs=1e-12)
    # tiny batches give the same answer as one batch
    assert pair_similarity(ic, a, b, "BP", batch_entries=1)[:4] == pytest.approx(expected, abs=1e-12)
    # MF: Q1 is the only protein, so IC(N) = -ln(1/1) = 0: Resnik 0, Lin 1 (same term), P1 NaN
    assert np.isnan(pair_similarity(ic, a, b, "MF")).all()
    assert pair_similarity(ic, ["Q1", "Q1"], ["Q1", "P1"], "MF", "resnik")[0] == 0.0
    assert pair_similarity(ic, ["Q1"], ["Q1"], "MF", "lin")[0] == 1.0
    with pytest.raises(NotFoundError, match="cellular_component"):
        pair_similarity(ic, a, b, "CCO")
    with pytest.raises(InputError, match="method"):
        pair_similarity(ic, a, b, "BP", "jaccard")


# ---- brute force on random DAGs -------------------------------------------------------------

def random_ontology(rng: random.Random, n: int):
    """Random DAG (labels shuffled so file order is not topological) as OBO text + edges."""
    labels = [f"GO:{i:07d}" for i in rng.sample(range(1, 10**6), n)]
    edges = []
    for i in range(1, n):
        for j in rng.sample(range(i), min(i, rng.randint(1, 3))):
            edges.append((labels[i], labels[j], rng.choice(["is_a", "is_a", "part_of", "regulates"])))
    frames = []
    order = list(range(n))
    rng.shuffle(order)
    for i in order:
        lines = [f"[Term]\nid: {labels[i]}\nname: t{i}\nnamespace: biological_process"]
        for c, p, r in edges:
            if c == labels[i]:
                lines.append(f"is_a: {p}" if r == "is_a" else f"relationship: {r} {p}")
        frames.append("\n".join(lines))
    return "format-version: 1.4\n\n" + "\n\n".join(frames) + "\n", labels, edges


def brute_ancestors(labels, edges):
    parents = collections.defaultdict(list)
    for c, p, r in edges:
        if r in ("is_a", "part_of"):
            parents[c].append(p)
    out = {}
    for t in labels:  # breadth-first walk from each term: shortest distances
        dist, queue = {t: 0}, collections.deque([t])
        while queue:
            x = queue.popleft()
            for p in parents[x]:
                if p not in dist:
                    dist[p] = dist[x] + 1
                    queue.append(p)
        out[t] = dist
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_dags_against_brute_force(tmp_path, seed):
    rng = random.Random(seed)
    text, labels, edges = random_ontology(rng, rng.randint(8, 40))
    path = tmp_path / "r.obo.gz"
    path.write_bytes(gzip.compress(text.encode()))
    go = read_obo(path)
    anc = brute_ancestors(labels, edges)
    got = collections.defaultdict(dict)
    for t, a, d in zip(*[go.ancestors.column(c).to_pylist() for c in ("term", "ancestor", "distance")]):
        got[t][a] = d
    assert dict(got) == anc

    prots = {f"P{k}": rng.sample(labels, rng.randint(1, 4)) for k in range(rng.randint(3, 15))}
    rows = [(p, "P", t) for p, ts in prots.items() for t in ts]
    ic = InformationContent.from_tables(go.ancestors, annotation_table(rows), go.terms)
    n = len(prots)
    count = collections.Counter(a for ts in prots.values() for a in set().union(*(anc[t] for t in ts)))
    ic_ref = {t: -math.log(c / n) for t, c in count.items()}
    bp = ic.get("biological_process")
    assert dict(zip(bp.terms, bp.ic)) == pytest.approx(ic_ref, abs=1e-12)

    def resnik(x, y):
        return max((ic_ref[z] for z in set(anc[x]) & set(anc[y])), default=0.0)

    def lin(x, y):
        den = ic_ref[x] + ic_ref[y]
        return 2 * resnik(x, y) / den if den > 0 else float(x == y)

    names = list(prots)
    pa_, pb_ = [rng.choice(names) for _ in range(60)], [rng.choice(names) for _ in range(60)]
    for method, f in (("resnik", resnik), ("lin", lin)):
        ref = []
        for x, y in zip(pa_, pb_):
            sa, sb = set(prots[x]), set(prots[y])
            s = sum(max(f(u, v) for v in sb) for u in sa) + sum(max(f(u, v) for u in sa) for v in sb)
            ref.append(s / (len(sa) + len(sb)))
        got = pair_similarity(ic, pa_, pb_, "BP", method, batch_entries=7)
        assert got == pytest.approx(ref, abs=1e-12)


def test_obsolete_convention_default_namespace_and_bfo_part_of(tmp_path):
    """metastudent-data marks obsolete terms by is_a to an obsolete_<namespace> pseudo-term."""
    path = tmp_path / "m.obo"
    path.write_text("format-version: 1.2\ndefault-namespace: gene_ontology\n\n"
                    "[Term]\nid: GO:0000005\nname: old\nis_a: obsolete_molecular_function\n\n"
                    "[Term]\nid: obsolete_molecular_function\n\n"
                    "[Term]\nid: GO:0000001\nname: plain\n\n"
                    "[Term]\nid: GO:0000002\nrelationship: BFO:0000050 GO:0000001\n")
    go = read_obo(path)
    rows = {r["term"]: (r["namespace"], r["obsolete"]) for r in go.terms.to_pylist()}
    assert rows == {"GO:0000005": ("molecular_function", True),
                    "obsolete_molecular_function": ("molecular_function", True),
                    "GO:0000001": ("gene_ontology", False), "GO:0000002": ("gene_ontology", False)}
    assert ("GO:0000002", "GO:0000001", "part_of") in set(
        map(tuple, zip(*[go.edges.column(c).to_pylist() for c in ("child", "parent", "relation")])))
    assert {"term": "GO:0000002", "ancestor": "GO:0000001", "distance": 1} in go.ancestors.to_pylist()


def test_closure_without_term_list_and_relations():
    edges = pa.table({"child": ["b", "c", "c"], "parent": ["a", "b", "a"],
                      "relation": ["is_a", "part_of", "has_part"]})
    rows = ancestor_closure(edges).to_pylist()
    assert rows == [{"term": "a", "ancestor": "a", "distance": 0},
                    {"term": "b", "ancestor": "b", "distance": 0},
                    {"term": "b", "ancestor": "a", "distance": 1},
                    {"term": "c", "ancestor": "c", "distance": 0},
                    {"term": "c", "ancestor": "b", "distance": 1},
                    {"term": "c", "ancestor": "a", "distance": 2}]
    only_is_a = ancestor_closure(edges, relations=("is_a",)).to_pylist()
    assert {"term": "c", "ancestor": "a", "distance": 2} not in only_is_a


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("content, match", [
    (b"hello world\nthis is not obo\n", r"bad\.obo:1: not valid OBO"),
    (b"format-version: 1.2\n\n[Term]\nid: GO:1\nis_a GO:2\n", r"bad\.obo:5: not valid OBO"),
    (b"format-version: 1.2\n", r"bad\.obo: no \[Term\] frames"),
    (b"\x00\x01\x02binary", r"bad\.obo: binary data"),
    (b"format-version: 1.2\n\n[Term]\nid: GO:1\nname: caf\xe9\n", r"bad\.obo:5: not UTF-8"),
    (b"[Term]\nid: GO:1\nis_a: GO:2\n\n[Term]\nid: GO:2\nis_a: GO:3\n\n[Term]\nid: GO:3\n"
     b"relationship: part_of GO:1\n", r"cycle through is_a/part_of edges: GO:\d -> .* -> GO:\d"),
    (b"[Term]\nid: GO:1\nis_a: GO:2\n", r"edge GO:1 is_a GO:2: the parent is not a defined term"),
    (b"[Term]\nid: GO:1\n\n[Term]\nid: GO:1\n", r"GO:1 is defined by two \[Term\] frames"),
])
def test_bad_obo(tmp_path, content, match):
    path = tmp_path / "bad.obo"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_obo(path)


def test_truncated_gzip_and_missing_file(tmp_path):
    path = tmp_path / "cut.obo.gz"
    path.write_bytes(gzip.compress(HAND_OBO.encode() * 20)[:300])
    with pytest.raises(InputError, match=r"cut\.obo\.gz: corrupt or truncated gzip"):
        read_obo(path)
    with pytest.raises(InputError, match=r"absent\.obo: cannot open"):
        read_obo(tmp_path / "absent.obo")


# ---- the bundled slice ------------------------------------------------------------------------

def test_bundled_slice_covers_the_sample():
    go = read_obo(DATA / "go" / "go_2014_sample.obo.gz")
    assert go.data_version.startswith("metastudent-data")
    with gzip.open(DATA / "sample" / "swissprot2014_go_2k.tsv.gz", "rt") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh][1:]
    ann = annotation_table(rows)
    ic = InformationContent.from_tables(go.ancestors, ann, go.terms, go.alt_ids)
    assert (ic.n_unknown, ic.n_obsolete) == (0, 0)
    assert set(ic.namespaces) == {"biological_process", "cellular_component", "molecular_function"}
    terms = set(go.terms.column("term").to_pylist())
    closed = set(go.ancestors.column("ancestor").to_pylist())
    assert closed <= terms  # every ancestor is in the slice
    for ns, root in (("BPO", R), ("MFO", M), ("CCO", "GO:0005575")):
        x = ic.get(ns)
        assert x.count[list(x.terms).index(root)] == x.n_proteins  # the root's count is N
    accs = sorted({r[0] for r in rows})
    s = pair_similarity(ic, accs[:200], accs[200:400], "BPO", "lin")
    ok = s[~np.isnan(s)]
    assert len(ok) > 100 and (ok >= 0).all() and (ok <= 1 + 1e-12).all()


# ---- goatools, an independent implementation --------------------------------------------------

def test_against_goatools(hand, capsys):
    obo_parser = pytest.importorskip("goatools.obo_parser")
    semantic = pytest.importorskip("goatools.semantic")
    path, go, _ = hand
    dag = obo_parser.GODag(str(path), prt=None)
    annots = collections.defaultdict(set)
    for acc, _, term in HAND_ANNOTATIONS:
        if term in (C, D, E, A, N):
            annots[acc].add(term)
    annots["P5"].add(C)
    counts = semantic.TermCounts(dag, dict(annots))
    # goatools' MICA walks is_a only, so compare on the is_a closure
    anc = ancestor_closure(go.edges, go.terms.column("term").to_pylist(), relations=("is_a",))
    rows = [(a, "P", t) for a, ts in annots.items() for t in ts]
    ic = InformationContent.from_tables(anc, annotation_table(rows), go.terms)
    terms = [R, A, B, C, D, E]
    a, b = zip(*[(x, y) for x in terms for y in terms])
    ref_r = [semantic.resnik_sim(x, y, dag, counts) for x, y in zip(a, b)]
    ref_l = [semantic.lin_sim(x, y, dag, counts) for x, y in zip(a, b)]
    assert term_similarity(ic, a, b, "BP", "resnik") == pytest.approx(ref_r, abs=1e-9)
    assert term_similarity(ic, a, b, "BP", "lin") == pytest.approx(ref_l, abs=1e-9)
    capsys.readouterr()
