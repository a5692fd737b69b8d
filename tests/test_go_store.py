"""The Gene Ontology in the store: `ingest go.obo`, the go_* tables, go_under / go_first /
go_top / names in SQL and in --where / --group-by, checked against brute force on the hand-worked
ontology of test_go.py, random DAGs, and the bundled slice with the bundled sample."""
from __future__ import annotations

import collections
import gzip
import random
from pathlib import Path

import duckdb
import pytest

from protiso import open_store
from protiso.errors import InputError, NotFoundError
from protiso.go import names as go_names
from protiso.go import read_obo, subsets
from protiso.go.store import bundled_obo, ingest_obo, is_obo, ontology
from protiso.ingest import ingest
from protiso.query import Subset
from tests.test_go import (A, B, C, D, E, HAND_OBO, M, N, O, R, brute_ancestors,
                           random_ontology)

SHARED_GO = Path(__file__).resolve().parents[2] / "shared" / "data" / "go_2014.obo.gz"
# proteins of the hand-worked store: P5 uses C's alt id GO:0000099; P6 an obsolete and an unknown term
HAND_PROTEINS = {"P1": [C], "P2": [D], "P3": [E], "P4": [A], "P5": ["GO:0000099", E], "Q1": [N],
                 "P6": [O, "GO:0999999"], "P7": []}
HAND_DEPTH = {R: 0, A: 1, B: 1, C: 2, D: 2, E: 2, O: None, M: 0, N: 1}


def write_inputs(tmp_path: Path, proteins: dict[str, list[str]], obo_text: str, name="go.obo"):
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">{acc}\nMKV{'A' * i}\n" for i, acc in enumerate(proteins)))
    tsv = tmp_path / "a.tsv"
    tsv.write_text("".join(f"{acc}\tP\t{t}\n" for acc, ts in proteins.items() for t in ts))
    obo = tmp_path / name
    if name.endswith(".gz"):
        obo.write_bytes(gzip.compress(obo_text.encode()))
    else:
        obo.write_text(obo_text)
    return fasta, tsv, obo


@pytest.fixture
def hand_store(store, tmp_path):
    fasta, tsv, obo = write_inputs(tmp_path, HAND_PROTEINS, HAND_OBO)
    result = ingest(store, [fasta, obo], annotations=[tsv])
    return store, result


def column(store, query: str) -> list:
    return [r[0] for r in store.execute(query).fetchall()]


def under_brute(proteins, anc, alt=None) -> dict[str, set[str]]:
    """term -> proteins under it: annotated to it or to a descendant (alt ids mapped)."""
    alt = alt or {}
    out = collections.defaultdict(set)
    for acc, terms in proteins.items():
        for t in terms:
            for a in anc.get(alt.get(t, t), {}):
                out[a].add(acc)
    return out


def test_tables_and_depth(hand_store):
    store, result = hand_store
    go = read_obo(result.go[0].source)
    assert (result.go[0].n_terms, result.go[0].n_edges) == (go.terms.num_rows, go.edges.num_rows) == (9, 8)
    rows = store.execute("SELECT term, name, namespace, obsolete, depth FROM go_terms ORDER BY term").fetchall()
    assert [r[:4] for r in rows] == sorted(tuple(r.values()) for r in go.terms.to_pylist())
    assert {r[0]: r[4] for r in rows} == HAND_DEPTH
    for table, ref in (("go_edges", go.edges), ("go_ancestors", go.ancestors), ("go_alt_ids", go.alt_ids)):
        got = sorted(store.execute(f"SELECT * FROM {table}").fetchall())
        assert got == sorted(tuple(r.values()) for r in ref.to_pylist()), table
    assert sorted(store.execute("SELECT id, term FROM go_ids WHERE id <> term").fetchall()) == [("GO:0000099", C)]
    info = ontology(store)
    assert info["data_version"] == "test-1" and info["n_ancestors"] == go.ancestors.num_rows
    assert store.scalar("SELECT count(*) FROM ingests WHERE format = 'obo'") == 1
    # the annotated unknown id is reported; the obsolete one too
    assert any("GO:0999999" in w and "not in the ontology" in w for w in result.warnings)
    assert any(O in w and "obsolete" in w for w in result.warnings)
    assert result.files[0].endswith("go.obo") and result.n_new == len(HAND_PROTEINS)


def test_go_under_true_path_rule(hand_store):
    store, _ = hand_store
    anc = brute_ancestors([R, A, B, C, D, E, O, M, N], [
        (A, R, "is_a"), (B, R, "is_a"), (C, A, "is_a"), (D, A, "is_a"), (D, B, "part_of"),
        (E, B, "is_a"), (E, C, "regulates"), (N, M, "is_a")])
    expected = under_brute(HAND_PROTEINS, anc, {"GO:0000099": C})
    # hand check of the brute force: D part_of B puts P2 under B; 'regulates' does not propagate
    assert expected[B] == {"P2", "P3", "P5"} and expected[C] == {"P1", "P5"} and "P3" not in expected[C]
    for t in (R, A, B, C, D, E, O, M, N, "GO:0000099"):
        got = column(store, f"SELECT accession FROM protein_meta WHERE go_under(accession, '{t}') ORDER BY 1")
        assert got == sorted(expected[{"GO:0000099": C}.get(t, t)]), t
        subset = Subset.parse(store, subsets.under(t))
        assert subset.count(store) == len(got)
    both = f"go_under(accession, '{A}') AND go_under(accession, '{B}') AND length < 100"
    assert sorted(Subset.parse(store, both).accessions(store).to_pylist()) == ["P2", "P5"]


def test_go_first_names_and_depth(hand_store):
    store, _ = hand_store
    expr = subsets.group_by_terms([C, B, R])
    assert expr == f"go_first(accession, ['{C}', '{B}', '{R}'])"
    subset = Subset.parse(store, "", expr)
    groups = dict(store.execute(f"SELECT accession, grp FROM ({subset.groups_sql()})").fetchall())
    # priority by list order: C first, then B, then the root; Q1 (MF) and P6, P7 in none
    assert groups == {"P1": C, "P5": C, "P2": B, "P3": B, "P4": R, "Q1": None, "P6": None, "P7": None}
    assert store.execute(f"SELECT go_name('{A}'), go_name('GO:0000099'), go_label('{C}'), go_label('x'), "
                         f"go_depth('{D}'), go_depth('GO:0000099'), go_term('GO:0000099'), "
                         "go_namespace('BPO'), go_namespace('cc')").fetchall()[0] == (
        "a {braced} name", "c", f"{C} (c)", "x", 2, 2, C, "biological_process", "cellular_component")
    assert store.execute("SELECT name FROM go_term_names WHERE id = 'GO:0000099'").fetchall() == [("c",)]


def test_go_top_and_term_proteins(hand_store):
    store, _ = hand_store
    # depth 1 in BP: A {P1, P2, P4, P5} = 4, B {P2, P3, P5} = 3
    top = subsets.top_terms(store, "BPO", 1, 5)
    assert list(zip(top.column("term").to_pylist(), top.column("n_proteins").to_pylist())) == [(A, 4), (B, 3)]
    assert store.scalar("SELECT go_top('P', 1, 1)") == [A]
    assert store.scalar("SELECT go_top('MF', 7, 3)") == []
    assert subsets.group_by_top_terms(store, "BP", 2, 2) == f"go_first(accession, ['{C}', '{E}'])"
    rows = dict(store.execute("SELECT term, n_proteins FROM go_term_proteins").fetchall())
    assert rows == {R: 5, A: 4, B: 3, C: 2, D: 1, E: 2, M: 1, N: 1}
    with pytest.raises(NotFoundError, match="no annotated GO terms in namespace 'CC' at depth 1"):
        subsets.top_terms(store, "CC", 1)
    with pytest.raises(InputError, match="not an ontology id"):
        subsets.under("GO:1'; DROP TABLE proteins; --")


def test_errors_name_the_term(store, hand_store):
    hand, _ = hand_store
    with pytest.raises(duckdb.Error, match="GO term GO:0000123 is not in the ingested Gene Ontology"):
        hand.execute("SELECT count(*) FROM protein_meta WHERE go_under(accession, 'GO:0000123')").fetchall()
    with pytest.raises(duckdb.Error, match="GO term GO:0000123 is not in"):
        hand.execute("SELECT go_first(accession, ['GO:0000010', 'GO:0000123']) FROM protein_meta").fetchall()


def test_no_ontology(store, tmp_path):
    fasta, tsv, _ = write_inputs(tmp_path, {"P1": [C]}, HAND_OBO)
    ingest(store, [fasta], annotations=[tsv])
    with pytest.raises(duckdb.Error, match=r"GO term GO:0005737: no Gene Ontology in the store; "
                                           r"ingest one first, e\.g\. `protiso ingest go\.obo`"):
        store.execute("SELECT count(*) FROM protein_meta WHERE go_under(accession, 'GO:0005737')").fetchall()
    with pytest.raises(NotFoundError, match="no Gene Ontology in the store"):
        subsets.top_terms(store, "CC", 2)
    assert go_names.label(store, ["GO:0005737", None, "x"]) == {"GO:0005737": "GO:0005737", None: None, "x": "x"}
    assert ontology(store) is None


def test_labels(hand_store):
    store, _ = hand_store
    keys = [C, "GO:0000099", None, "human", f"go_under(accession, '{D}')", "GO:7777777", 3]
    assert go_names.label(store, keys) == {
        C: f"{C} (c)", "GO:0000099": "GO:0000099 (c)", None: None, "human": "human",
        f"go_under(accession, '{D}')": f"go_under(accession, '{D} (d)')", "GO:7777777": "GO:7777777", 3: 3}
    assert go_names.names(store, [A, "GO:0000099", "nope", None]) == {A: "a {braced} name", "GO:0000099": "c"}


def test_replace_atomicity_and_dispatch(store, tmp_path):
    fasta, tsv, obo = write_inputs(tmp_path, HAND_PROTEINS, HAND_OBO, "hand.obo.gz")
    assert is_obo(obo) and is_obo("X.OBO") and not is_obo(fasta)
    first = ingest(store, [obo])                           # an ontology alone
    assert first.go[0].replaced is None and first.n_records == 0
    smaller = HAND_OBO.replace("data-version: test-1", "data-version: test-2").split("[Term]\nid: GO:0003674")[0]
    (tmp_path / "v2.obo").write_text(smaller + "[Typedef]\nid: part_of\n\n[Typedef]\nid: regulates\n")
    second = ingest_obo(store, tmp_path / "v2.obo")
    assert second.replaced.endswith("hand.obo.gz (test-1)") and second.n_terms == 7
    assert store.scalar("SELECT count(*) FROM go_terms") == 7 and ontology(store)["data_version"] == "test-2"
    before = store.execute("SELECT (SELECT count(*) FROM proteins), (SELECT count(*) FROM go_terms), "
                           "(SELECT count(*) FROM ingests)").fetchall()
    bad = tmp_path / "bad.obo"
    bad.write_text("format-version: 1.2\n\n[Term]\nid: GO:1\nis_a: GO:2\n")
    with pytest.raises(InputError, match=r"bad\.obo: edge GO:1 is_a GO:2"):
        ingest(store, [fasta, bad], annotations=[tsv])     # nothing of this call is kept
    with pytest.raises(InputError, match="one ontology per store"):
        ingest(store, [obo, tmp_path / "v2.obo"])
    with pytest.raises(InputError, match=r"missing\.obo: no such file"):
        ingest(store, [tmp_path / "missing.obo"])
    assert store.execute("SELECT (SELECT count(*) FROM proteins), (SELECT count(*) FROM go_terms), "
                         "(SELECT count(*) FROM ingests)").fetchall() == before


def test_cli_ingest_and_read_only_sql(invoke, tmp_path):
    fasta, tsv, obo = write_inputs(tmp_path, HAND_PROTEINS, HAND_OBO)
    root = tmp_path / "s"
    assert invoke("--store", root, "ingest", fasta, "--annotations", tsv).exit_code == 0
    assert invoke("--store", root, "ingest", obo).exit_code == 0
    out = invoke("--store", root, "sql", "--format", "csv",
                 f"SELECT accession, go_label(go_first(accession, go_top('BP', 1, 2))) AS g FROM protein_meta "
                 f"WHERE go_under(accession, '{R}') ORDER BY accession")
    assert out.exit_code == 0, out.output
    assert f'P2,{A} (a {{braced}} name)' in out.output and f'P3,{B} (b)' in out.output
    with open_store(root, read_only=True) as ro:
        assert ro.sql("SELECT count(*) AS n FROM go_term_proteins").column("n")[0].as_py() == 8


@pytest.mark.parametrize("seed", range(4))
def test_random_dags_against_brute_force(store, tmp_path, seed):
    rng = random.Random(100 + seed)
    text, labels, edges = random_ontology(rng, rng.randint(10, 40))
    anc = brute_ancestors(labels, edges)
    proteins = {f"P{k}": rng.sample(labels, rng.randint(0, 3)) for k in range(rng.randint(5, 25))}
    fasta, tsv, obo = write_inputs(tmp_path, proteins, text, "r.obo.gz")
    ingest(store, [fasta, obo], annotations=[tsv])
    expected = under_brute(proteins, anc)
    for t in labels:
        got = column(store, f"SELECT accession FROM protein_meta WHERE go_under(accession, '{t}') ORDER BY 1")
        assert got == sorted(expected[t]), t
    roots = {t for t in labels if anc[t] == {t: 0}}
    depth = dict(store.execute("SELECT term, depth FROM go_terms").fetchall())
    assert depth == {t: min(d for a, d in anc[t].items() if a in roots) for t in labels}
    counts = dict(store.execute("SELECT term, n_proteins FROM go_term_proteins").fetchall())
    assert counts == {t: len(p) for t, p in expected.items() if p}
    cands = rng.sample(labels, 4)
    groups = dict(store.execute(f"SELECT accession, go_first(accession, {cands}) FROM protein_meta").fetchall())
    assert groups == {p: next((c for c in cands if p in expected[c]), None) for p in proteins}


def test_bundled_slice_with_the_sample(sample_store):
    result = ingest(sample_store, [bundled_obo()])
    assert result.warnings == []                            # every sample term is in the slice
    go = read_obo(bundled_obo())
    anc = collections.defaultdict(dict)
    for t, a, d in zip(*[go.ancestors.column(c).to_pylist() for c in ("term", "ancestor", "distance")]):
        anc[t][a] = d
    proteins = collections.defaultdict(list)
    for acc, term in sample_store.execute("SELECT accession, term FROM annotations").fetchall():
        proteins[acc].append(term)
    expected = under_brute(proteins, anc)
    for t in ("GO:0005737", "GO:0005634", "GO:0016020", "GO:0003674", "GO:0008150"):
        got = set(Subset.parse(sample_store, subsets.under(t)).accessions(sample_store).to_pylist())
        assert got == expected[t] and len(got) > 50, t
    assert go_names.label(sample_store, ["GO:0005737"]) == {"GO:0005737": "GO:0005737 (cytoplasm)"}
    expr = subsets.group_by_top_terms(sample_store, "CC", 2, 5)
    groups = collections.Counter(sample_store.execute(
        f"SELECT grp FROM ({Subset.parse(sample_store, '', expr).groups_sql()})").fetchall())
    assert sum(groups.values()) == sample_store.scalar("SELECT count(*) FROM proteins") and len(groups) >= 3


@pytest.mark.skipif(not SHARED_GO.is_file(), reason="the full GO 2014 release is not beside the project")
def test_full_release(store):
    result = ingest_obo(store, SHARED_GO)
    assert (result.n_terms, result.n_edges) == (40_417, 79_118)
    roots = column(store, "SELECT term FROM go_terms WHERE depth = 0 AND term LIKE 'GO:%' ORDER BY 1")
    assert roots == ["GO:0003674", "GO:0005575", "GO:0008150"]
    assert store.execute("SELECT go_depth('GO:0005737'), go_name('GO:0005737')").fetchall() == [(3, "cytoplasm")]


def test_isotropy_pass_with_go_filter_and_groups(hand_store):
    """go_under / go_first inside the isotropy engine's --where / --group-by (a fake run)."""
    import numpy as np

    from protiso.isotropy.engine import isotropy
    from tests.support import fake_run

    store, _ = hand_store
    accs = sorted(HAND_PROTEINS)
    X = np.random.default_rng(0).standard_normal((len(accs), 4))
    fake_run(store, "r1", {1: (accs, X)})
    rows = isotropy(store, "r1", where=subsets.under(B), save=False)
    assert [r.metrics.n for r in rows] == [3]                    # P2, P3, P5
    grouped = isotropy(store, "r1", group_by=subsets.group_by_terms([C, B]), save=False)
    assert {r.group_key: r.metrics.n for r in grouped} == {C: 2, B: 2, None: 4}
    assert go_names.label(store, [r.group_key for r in grouped]) == {C: f"{C} (c)", B: f"{B} (b)", None: None}
