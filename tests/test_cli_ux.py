"""The command line as a user meets it: one error path (one line, a documented exit status, never
a traceback), one output layer (table, csv, tsv, json, ndjson, parquet), tables that never cut
an id, short run ids, defaults, natural group order, hints and clean help."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sample_files
from support import fake_run

from protiso import open_store
from protiso.cli.group import EXIT_CODES
from protiso.cli.output import emit, quote_field, to_text
from protiso.errors import NotFoundError
from protiso.ingest import ingest
from protiso.runs.catalog import resolve_run, short_ids

PROTISO = Path(sys.executable).parent / "protiso"
RUN_A = "protiso-mini-1a2b3c4d"               # the default model's run
RUN_B = "protiso-mini-step100-1a9f0e0e"       # shares the first two hash digits with RUN_A
RUN_C = "esm2-t6-8m-77aa0011"
DIM = 16


@pytest.fixture(scope="module")
def runs_store(tmp_path_factory):
    """The bundled sample with three fake runs (16-d vectors, layers 1-2) of two models."""
    root = tmp_path_factory.mktemp("ux") / "store"
    fasta, go, flat = sample_files()
    with open_store(root, create=True) as s:
        ingest(s, [fasta, flat], annotations=[go])
        accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins ORDER BY accession").fetchall()]
        X = np.random.default_rng(0).normal(size=(len(accs), DIM)).astype("float32")
        fake_run(s, RUN_A, {1: (accs, X), 2: (accs, X * 2 + 1)}, model="protiso-mini", num_layers=2)
        fake_run(s, RUN_B, {2: (accs, X + 3)}, model="protiso-mini@step100", num_layers=2)
        fake_run(s, RUN_C, {6: (accs[:300], X[:300] - 1)}, model="esm2_t6_8M", num_layers=6)
    return root


def one_line_error(res) -> str:
    """The failure as a user sees it: no traceback, and its last stderr line is `error: ...`."""
    assert "Traceback" not in res.output, res.output
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert lines and lines[-1].startswith("error: "), res.output
    return lines[-1]


# ------------------------------------------------------------------------------ the output layer

NESTED = pa.table({
    "acc": ["A0B913", "P69905", "Q,1", 'say "hi"', "", None],
    "layers": [[0, 1, 2], [4], [], None, [1], [2]],
    "meta": [{"k": 1, "s": "x"}, None, {"k": 2, "s": None}, {"k": 3, "s": "a,b"}, None, None],
    "emb": pa.array([[0.5, -1.25], [1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [2.0, 2.0]],
                    pa.list_(pa.float32(), 2)),
    "x": [0.1, -0.912345678901, float("nan"), None, 1e300, 2.0],
})


def _emit_text(result, fmt: str, capsys) -> str:
    emit(result, fmt)
    return capsys.readouterr().out


def test_csv_and_tsv_quote_only_where_needed_and_json_encode_nested_values(capsys):
    text = _emit_text(NESTED, "csv", capsys)
    lines = text.splitlines()
    assert lines[0] == "acc,layers,meta,emb,x"
    assert lines[1] == 'A0B913,"[0,1,2]","{""k"":1,""s"":""x""}","[0.5,-1.25]",0.1'   # no quotes on A0B913
    assert lines[2].startswith("P69905,[4],,")                      # NULL struct: empty field
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["acc"] for r in rows] == ["A0B913", "P69905", "Q,1", 'say "hi"', "", ""]
    assert lines[5].startswith('"",') and lines[6].startswith(",")   # '' and NULL differ, as DuckDB writes
    assert json.loads(rows[0]["layers"]) == [0, 1, 2] and json.loads(rows[2]["meta"]) == {"k": 2, "s": None}
    assert json.loads(rows[0]["emb"]) == [0.5, -1.25]
    assert float(rows[1]["x"]) == -0.912345678901                    # full precision
    tsv = _emit_text(NESTED, "tsv", capsys).splitlines()
    assert tsv[0] == "acc\tlayers\tmeta\temb\tx"
    assert tsv[3].split("\t")[0] == "Q,1"                             # a comma needs no quotes in TSV


def test_scalar_fields_are_quoted_exactly_as_duckdb_writes_them(tmp_path):
    values = ["a", "", None, "x,y", 'say "hi"', " lead", "tab\there", "new\nline", "A0B913"]
    for delimiter, name in ((",", "q.csv"), ("\t", "q.tsv")):
        con = duckdb.connect()
        con.execute("CREATE TABLE t AS SELECT unnest(?::VARCHAR[]) AS s", [values])
        con.execute(f"COPY t TO '{tmp_path / name}' (HEADER false, DELIMITER '{delimiter}')")
        theirs = (tmp_path / name).read_text()
        ours = "".join(quote_field(v, delimiter) + "\n" for v in values)
        assert ours == theirs


def test_json_ndjson_and_parquet(tmp_path, capsys):
    rows = json.loads(_emit_text(NESTED, "json", capsys))
    assert rows[0]["layers"] == [0, 1, 2] and rows[2]["x"] is None      # NaN is null
    assert rows[1]["x"] == -0.912345678901
    lines = _emit_text(NESTED, "ndjson", capsys).splitlines()
    assert len(lines) == NESTED.num_rows and json.loads(lines[3])["meta"] == {"k": 3, "s": "a,b"}
    out = tmp_path / "not" / "there" / "yet.parquet"                      # parents are created
    emit(NESTED, "parquet", out)
    back = pq.read_table(out)
    for name in ("acc", "layers", "emb"):
        assert back.column(name).to_pylist() == NESTED.column(name).to_pylist()
    assert back.schema.field("emb").type == NESTED.schema.field("emb").type     # FLOAT[2], not re-typed
    assert "wrote 6 rows (parquet)" in capsys.readouterr().err
    assert not list(out.parent.glob(".*tmp*"))                           # written under a temp name


def test_parquet_keeps_rows_whose_dicts_are_empty(tmp_path):
    out = tmp_path / "flat.parquet"            # `index build --kind flat`: params {} (no struct field)
    emit([{"kind": "flat", "params": {}}, {"kind": "flat", "params": None}], "parquet", out)
    assert pq.read_table(out).to_pylist() == [{"kind": "flat", "params": "{}"}, {"kind": "flat", "params": None}]


def test_table_never_cuts_an_id_or_a_number():
    rows = [{"id": "1a2b", "run_id": "protiso-mini-step100-1a2b3c4d", "model": "protiso-mini@step100",
             "isoscore": -0.912345678, "organism": "Takifugu rubripes (Japanese pufferfish) (Fugu rubripes)"},
            {"id": "9f8e", "run_id": RUN_A, "model": "protiso-mini", "isoscore": 0.5, "organism": None}]
    for width in (40, 60, 80, 120, 200):
        text = to_text(rows, "runs", width=width, optional=["run_id"])
        assert "…" not in text and "..." not in text, text
        for value in ("1a2b", "protiso-mini@step100", "-0.912346", "9f8e"):
            assert value in text, (width, text)
        flat = re.sub(r"\s+", " ", text)
        assert "Takifugu rubripes (Japanese pufferfish) (Fugu rubripes)" in flat
    assert "protiso-mini-step100-1a2b3c4d" in to_text(rows, width=200)
    assert "left out to fit 80 columns: run_id" in re.sub(r"\s+", " ", to_text(rows, width=80, optional=["run_id"]))
    # far too narrow for a table: one block per row, every value whole
    narrow = to_text(rows, width=40)
    assert "row 1 of 2" in narrow and "protiso-mini-step100-1a2b3c4d" in narrow


# ------------------------------------------------------------------------------ short run ids, defaults

def test_short_ids_are_unique_abbreviations_that_resolve_back(runs_store):
    short = short_ids([RUN_A, RUN_B, RUN_C, f"{RUN_A}-l2-center", "sqlrun"])
    assert short[RUN_A] == "1a2b" and short[RUN_B] == "1a9f" and short[RUN_C] == "77aa"
    assert short[f"{RUN_A}-l2-center"] == "1a2b-l2-center" and short["sqlrun"] == "sqlrun"
    assert short_ids(["x-12345678", "y-12345679"]) == {"x-12345678": "12345678", "y-12345679": "12345679"}
    with open_store(runs_store, read_only=True) as s:
        assert resolve_run(s, "1a2b").run_id == RUN_A
        assert resolve_run(s, "1a9f0").run_id == RUN_B                  # any longer prefix of the hash
        assert resolve_run(s, "protiso-mini-step").run_id == RUN_B      # a prefix of the run id
        assert resolve_run(s, "esm2_t6_8M").run_id == RUN_C             # the model, as before
        assert resolve_run(s, None).run_id == RUN_A                     # the default model's run
        with pytest.raises(NotFoundError, match=r"'1a' .*no embedding run|runs in this store: 1a2b"):
            resolve_run(s, "1a")                                         # too short to abbreviate
        with pytest.raises(NotFoundError, match="matches 2 runs: 1a2b .*1a9f"):
            resolve_run(s, "protiso-mini-")


def test_runs_table_shows_short_ids_and_every_command_takes_them(runs_store, invoke):
    res = invoke("--store", runs_store, "runs")
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    for text in ("1a2b", "1a9f", "77aa", "protiso-mini@step100", "esm2_t6_8M"):
        assert text in res.stdout
    tsv = list(csv.DictReader(io.StringIO(invoke("--store", runs_store, "runs", "--format", "tsv").stdout),
                              delimiter="\t"))
    assert {r["id"]: r["run_id"] for r in tsv} == {"1a2b": RUN_A, "1a9f": RUN_B, "77aa": RUN_C}
    res = invoke("--store", runs_store, "isotropy", "-m", "77aa", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["run_id"] == RUN_C


def test_isotropy_defaults_to_the_only_run_or_the_default_models_run(runs_store, tmp_path, invoke):
    res = invoke("--store", runs_store, "isotropy", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["run_id"] == RUN_A
    one = tmp_path / "one"
    fasta, go, _ = sample_files()
    with open_store(one, create=True) as s:
        ingest(s, [fasta])
        accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins LIMIT 100").fetchall()]
        fake_run(s, RUN_C, {6: (accs, np.random.default_rng(1).normal(size=(100, 8)))}, model="esm2_t6_8M")
    res = invoke("--store", one, "isotropy", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["run_id"] == RUN_C, res.output
    with open_store(one) as s:
        fake_run(s, "prot-bert-0badcafe", {6: (accs, np.ones((100, 8)))}, model="prot_bert")
    res = invoke("--store", one, "isotropy")
    assert res.exit_code == 1
    line = one_line_error(res)
    assert "77aa (esm2_t6_8M)" in line and "0bad (prot_bert)" in line and "(option --model)" in line


# ------------------------------------------------------------------------------ group-by

def test_group_keys_sort_naturally_and_small_groups_are_summarised(runs_store, invoke):
    expr = "length // 100 * 100"
    res = invoke("--store", runs_store, "isotropy", "-m", "1a2b", "--group-by", expr, "--format", "tsv")
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout), delimiter="\t"))
    keys = [int(r["group_key"]) for r in rows]
    assert keys == sorted(keys) and 1000 in keys and keys.index(1000) > keys.index(900)
    sizes = {int(r["group_key"]): int(r["n"]) for r in rows}
    assert min(sizes.values()) == 1                      # every group in the export by default
    table = invoke("--store", runs_store, "isotropy", "-m", "1a2b", "--group-by", expr)
    shown = re.findall(r"^\s*(\d+)\s+(\d+)\s+16\s", table.stdout, re.M)
    assert [int(k) for k, _ in shown] == sorted(k for k, n in sizes.items() if n >= 2)
    assert "fewer than 2 proteins (--min-n 1 shows every group)" in table.stderr
    top = invoke("--store", runs_store, "isotropy", "-m", "1a2b", "--group-by", expr, "--top", "3",
                 "--min-n", "5", "--json")
    got = {int(r["group_key"]): r["n"] for r in json.loads(top.stdout)}
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    assert got == dict(largest) and list(got) == sorted(got)
    assert "beyond --top 3" in top.stderr


def test_group_by_organism_shows_names_whole_and_flags_n_le_d(runs_store, invoke):
    res = invoke("--store", runs_store, "isotropy", "--group-by", "organism",
                 "--where", "organism IS NOT NULL", "--min-n", "5")
    assert res.exit_code == 0, res.output
    words = res.stdout.split()      # names wrap inside their column; no word of them is cut
    for word in "Takifugu rubripes (Japanese pufferfish) (Fugu rubripes) Homo sapiens (Human)".split():
        assert word in words, word
    assert "…" not in res.stdout
    assert "n ≤ d" in res.stdout and "n <= d" in res.stderr          # E. coli: 5 proteins, 16 dims


def test_the_readmes_sample_journeys_each_show_something(runs_store, invoke):
    """The isotropy journeys the README offers for the bundled sample: each runs and shows a
    result; the grouped ones at least two groups, none of them the NULL group."""
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"On the bundled sample.*?```bash\n(.*?)```", readme, re.S).group(1)
    journeys = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.startswith("protiso ")]
    assert len(journeys) >= 4
    for args in journeys:
        res = invoke("--store", runs_store, *args[1:], "--format", "json")
        assert res.exit_code == 0, (args, res.output)
        rows = json.loads(res.stdout)
        assert rows and all(r["n"] >= 2 for r in rows), args
        if "--group-by" in args:
            assert len(rows) >= 2 and all(r["group_key"] is not None for r in rows), (args, rows)


# ------------------------------------------------------------------------------ formats on analyses

@pytest.mark.parametrize("args", [["models"], ["runs"], ["isotropy", "-m", "1a9f"]])
def test_analysis_commands_write_every_format(runs_store, tmp_path, invoke, args):
    as_json = json.loads(invoke("--store", runs_store, *args, "--json").stdout)
    assert json.loads(invoke("--store", runs_store, *args, "--format", "json").stdout) == as_json
    nd = [json.loads(x) for x in invoke("--store", runs_store, *args, "--format", "ndjson").stdout.splitlines()]
    assert nd == as_json
    tsv = list(csv.DictReader(io.StringIO(invoke("--store", runs_store, *args, "--format", "tsv").stdout),
                              delimiter="\t"))
    assert len(tsv) == len(as_json) and list(tsv[0]) == list(as_json[0])
    out = tmp_path / "deep" / "dir" / "out.parquet"                 # format from the suffix
    res = invoke("--store", runs_store, *args, "--output", out)
    assert res.exit_code == 0, res.output
    assert pq.read_table(out).num_rows == len(as_json)
    res = invoke("--store", runs_store, *args, "--json", "--format", "csv")
    assert res.exit_code == 2 and "disagree" in one_line_error(res)


# ------------------------------------------------------------------------------ one error path

def test_every_command_fails_in_one_line_with_a_documented_status(runs_store, tmp_path, invoke):
    """A battery of bad arguments, files and paths: never a traceback, never an internal error."""
    missing = tmp_path / "missing.fasta"
    binary = tmp_path / "binary.fasta"
    binary.write_bytes(bytes(range(256)) * 4)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    empty = tmp_path / "empty-store"
    s = str(runs_store)
    battery = [
        ["--store", a_file, "info"],
        ["--store", empty, "runs"],
        ["--store", empty, "isotropy"],
        ["--store", s, "ingest", missing],
        ["--store", s, "ingest", binary],
        ["--store", s, "ingest", tmp_path],
        ["--store", s, "ingest", "--format", "genbank", missing],
        ["--store", s, "sql", "SELECT nope FROM proteins"],
        ["--store", s, "sql", "--file", missing],
        ["--store", s, "sql", "SELECT 1", "--format", "xml"],
        ["--store", s, "sql", "SELECT 1", "--store", s],
        ["--store", s, "embed", "--model", "no-such-model-xyz", "--offline"],
        ["--store", s, "embed", "--long", "fold"],
        ["--store", s, "embed", "--where", "no_column > 1", "--offline"],
        ["--store", s, "isotropy", "-m", "nothing-like-this"],
        ["--store", s, "isotropy", "-m", "1a2b", "--layer", "7"],
        ["--store", s, "isotropy", "-m", "1a2b", "--layer", "seven"],
        ["--store", s, "isotropy", "-m", "1a2b", "--where", "nonsense_col = 1"],
        ["--store", s, "isotropy", "-m", "1a2b", "--group-by", "length / 0 +"],
        ["--store", s, "isotropy", "-m", "1a2b", "--level", "cosmic"],
        ["--store", s, "isotropy", "-m", "1a2b", "--ci", "2"],
        ["--store", s, "isotropy", "-m", "1a2b", "--output", tmp_path],
        ["--store", s, "isotropy", "-m", "1a2b", "--format", "parquet"],
        ["--store", s, "isotropy", "-m", "1a2b", "--output", a_file / "below-a-file.csv"],
        ["--store", s, "isotropy", "-m", "1a2b", "--level", "local"],
        ["--store", s, "runs", "--format", "yaml"],
        ["--store", s, "models", "--output", tmp_path / "m.parquet", "--format", "csv", "--json"],
        ["--store", s, "index", "build", "-m", "nothing-like-this"],
        ["--store", s, "neighbors", "P69905", "-m", "1a2b"],
        ["--store", s, "transform", "apply", "-m", "1a2b", "--kind", "rotate"],
        ["--store", s, "pairs", "align", "no-such-set"],
        ["--store", s, "pairs", "drop", "no-such-set"],
        ["--store", s, "pairs", "sample", "--name", "p", "--fraction", "7"],
        ["--store", s, "correlate", "no-such-set", "--model", "1a2b"],
        ["--store", s, "reproduce", "--models", "protiso-mini", "--where", "no_column > 1", "--no-pairs"],
        ["--store", s, "report", "--out", a_file],
        ["train-mini", "--save-steps", "1,x", "--out", tmp_path / "mini"],
        ["train-mini", "--fasta", missing, "--out", tmp_path / "mini"],
        ["--store", s, "demo", "--proteins", "12"],
        ["--store", s, "no-such-command"],
        ["--store", s, "isotropy", "--no-such-option"],
        # every other command, and the output options of each command that has them
        ["--store", s, "models", "--format", "xml"],
        ["--store", empty, "verify"],
        ["--store", empty, "repair"],
        ["--store", s, "verify", "--output", a_file / "problems.tsv"],
        ["--store", s, "info", "--format", "parquet"],
        ["--store", s, "info", "--output", tmp_path],
        ["--store", s, "sql", "SELECT 1", "--output", a_file / "below.csv"],
        ["--store", s, "sql", "SELECT 1", "--output", Path(s) / "inside.csv"],
        ["--store", s, "sql", "--file", binary],
        ["--store", s, "sql", "SELECT 1", "--json", "--format", "tsv"],
        ["--store", s, "runs", "--output", tmp_path],
        ["--store", s, "embed", "--model", "prot_bertt", "--offline"],
        ["--store", s, "index", "list", "-m", "nothing-like-this"],
        ["--store", s, "index", "list", "--format", "parquet"],
        ["--store", s, "index", "build", "--kind", "ivf", "--nlist", "0"],
        ["--store", s, "index", "build", "--kind", "ivf", "--nlist", "100000"],
        ["--store", s, "index", "build", "--kind", "annoy"],
        ["--store", s, "neighbors", "P69905", "--format", "parquet"],
        ["--store", s, "neighbors", "NOT_AN_ACCESSION_9"],
        ["--store", s, "transform", "apply", "--kind", "center", "--output", tmp_path],
        ["--store", s, "transform", "report", "--transforms", "center:x"],
        ["--store", s, "transform", "report", "--queries", "0", "--pool", "20"],
        ["--store", s, "pairs", "sample", "--name", "p", "--strategy", "identity-stratified"],
        ["--store", s, "pairs", "sample", "--name", "bad name!", "--proteins", "5"],
        ["--store", s, "pairs", "distances", "no-such-set"],
        ["--store", s, "pairs", "list", "--output", a_file / "sets.csv"],
        ["--store", s, "pairs", "align", "no-such-set", "--format", "yaml"],
        ["--store", s, "correlate", "no-such-set", "--plot", tmp_path],
        ["--store", s, "correlate", "no-such-set", "--plot", a_file / "below.png"],
        ["--store", s, "isotropy", "--group-by", "length", "--min-n", "0"],
        ["--store", s, "import", missing, "--name", "x"],
        ["--store", s, "import", binary, "--name", "x"],
        ["--store", s, "export", "-m", "1a2b", "--output", a_file / "below.npz"],
        ["--store", s, "export", "-m", "nothing-like-this", "--output", tmp_path / "x.npz"],
    ]
    failures = []
    for args in battery:
        res = invoke(*args)
        try:
            assert res.exit_code in (1, 2), f"exit {res.exit_code}"
            assert res.exit_code in EXIT_CODES
            line = one_line_error(res)
            assert "internal error" not in line
        except AssertionError as exc:
            failures.append(f"{' '.join(map(str, args[2:] if args[0] == '--store' else args))}: {exc}\n"
                            f"{res.output[-600:]}")
    assert not failures, "\n\n".join(failures)
    assert not empty.exists()                                   # a failed read created no store
    words = [[str(a) for a in (args[2:] if args[0] == "--store" else args)] for args in battery]
    untried = [c for c in all_commands() if not any(w[:len(c)] == list(c) for w in words)]
    assert not untried, f"commands the battery does not try: {untried}"
    with open_store(runs_store, read_only=True) as st:          # the failures left nothing behind
        assert st.scalar("SELECT count(*) FROM nn_indexes") == 0 and st.scalar("SELECT count(*) FROM runs") == 3


def all_commands() -> list[tuple[str, ...]]:
    """Every command of the CLI as its words: ('ingest',), ('pairs', 'align'), ..."""
    from protiso.cli import app
    from typer.main import get_command

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [path]
        return [p for name, sub in subs.items() for p in walk(sub, path + (name,))]
    return walk(get_command(app), ())


def test_outputs_into_directories_that_do_not_exist_yet(runs_store, tmp_path, invoke):
    res = invoke("--store", runs_store, "report", "--out", tmp_path / "a" / "b" / "report")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "b" / "report" / "report.html").exists()
    res = invoke("--store", runs_store, "runs", "--output", tmp_path / "c" / "d" / "runs.tsv")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "d" / "runs.tsv").read_text().startswith("id\trun_id\t")


def test_global_option_after_the_command_gets_a_hint(runs_store, invoke):
    res = invoke("sql", "SELECT 1", "--store", runs_store)
    assert res.exit_code == 2
    line = one_line_error(res)
    assert "--store is a global option: put it before the command" in line
    assert "`protiso --store DIR sql ...`" in line and "protiso sql --help" in line


def test_a_bug_is_one_line_with_status_3(runs_store, invoke, monkeypatch):
    import protiso.cli.isotropy as cli_isotropy

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero somewhere deep")

    monkeypatch.setattr(cli_isotropy, "run_isotropy", broken)
    res = invoke("--store", runs_store, "isotropy")
    assert res.exit_code == 3
    line = one_line_error(res)
    assert "internal error: ZeroDivisionError" in line and "PROTISO_DEBUG=1" in line
    monkeypatch.setenv("PROTISO_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        invoke("--store", runs_store, "isotropy")


def test_ctrl_c_says_what_was_kept(runs_store, invoke, monkeypatch, tmp_path):
    import protiso.cli.foundation as foundation
    import protiso.cli.isotropy as cli_isotropy

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_isotropy, "run_isotropy", interrupted)
    res = invoke("--store", runs_store, "isotropy")
    assert res.exit_code == 130 and "interrupted; nothing was saved" in res.stderr
    for error in (KeyboardInterrupt(), duckdb.InterruptException("INTERRUPT Error: Interrupted!"),
                  RuntimeError("Query interrupted")):    # Ctrl-C inside a DuckDB query, or its Arrow stream
        def raising(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(foundation, "ingest_files", raising)
        res = invoke("--store", runs_store, "ingest", sample_files()[2])
        assert res.exit_code == 130, (error, res.output)
        assert "interrupted; nothing was ingested" in res.stderr and "finished work is kept" not in res.stderr


def test_ctrl_c_that_surfaces_as_an_aborted_transaction_is_an_interruption(runs_store, invoke, monkeypatch):
    """A Ctrl-C inside a DuckDB call aborts the transaction; DuckDB may swallow the
    KeyboardInterrupt and the next statement fail with "transaction is aborted": the user
    still reads that the command was interrupted and what was kept, status 130."""
    import signal
    import time

    import protiso.cli.foundation as foundation

    def swallowed(*args, **kwargs):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        raise duckdb.TransactionException("TransactionContext Error: Current transaction is aborted (please ROLLBACK)")

    monkeypatch.setattr(foundation, "ingest_files", swallowed)
    res = invoke("--store", runs_store, "ingest", sample_files()[2])
    assert res.exit_code == 130, res.output
    assert res.stderr.strip() == "interrupted; nothing was ingested: the store is as it was"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler        # restored

    def failing(*args, **kwargs):
        raise duckdb.TransactionException("TransactionContext Error: Current transaction is aborted")

    monkeypatch.setattr(foundation, "ingest_files", failing)           # without a Ctrl-C: an error
    res = invoke("--store", runs_store, "ingest", sample_files()[2])
    assert res.exit_code == 1 and one_line_error(res).startswith("error: DuckDB: TransactionContext")


def test_output_into_a_closed_pipe_stops_quietly():
    proc = subprocess.run(f"'{PROTISO}' models --format csv | head -n 1", shell=True, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout.startswith("alias,") and proc.stderr == ""


# ------------------------------------------------------------------------------ help

def test_help_shows_values_not_python_types_and_keeps_placeholders(invoke):
    for args in (["ingest", "--help"], ["train-mini", "--help"], ["isotropy", "--help"], ["--help"],
                 ["pairs", "align", "--help"]):
        res = invoke(*args)
        assert res.exit_code == 0, res.output
        for bad in ("<list[", "<bool>", "<str>", "<int>", "<float>", "<Path>", "<path>"):
            assert bad not in res.stdout, (args, bad)
    text = re.sub(r"\s+", " ", invoke("train-mini", "--help").stdout)
    assert "--out/step<N>/" in text and "(step<N>/)" in text and "INTEGER" in text
    assert "PATH..." in invoke("ingest", "--help").stdout
    root = re.sub(r"\s+", " ", invoke("--help").stdout)
    assert "Exit status: 0 success; 1 error" in root and "130 interrupted" in root


# ------------------------------------------------------------------------------ wired by the other commands

def test_sql_csv_of_list_columns_is_json_in_fields(runs_store, tmp_path, invoke):
    res = invoke("--store", runs_store, "sql", "SELECT run_id, layers FROM runs ORDER BY run_id", "--format", "csv")
    assert res.exit_code == 0, res.output
    layers = {r["run_id"]: json.loads(r["layers"]) for r in csv.DictReader(io.StringIO(res.stdout))}
    assert layers == {RUN_A: [1, 2], RUN_B: [2], RUN_C: [6]}
    res = invoke("--store", runs_store, "sql", "SELECT accession, terms FROM protein_meta WHERE len(terms) > 1 "
                 "LIMIT 3", "--format", "tsv")
    assert res.exit_code == 0 and not res.stdout.splitlines()[1].startswith('"'), res.output
    out = tmp_path / "new" / "dir" / "emb.parquet"
    res = invoke("--store", runs_store, "sql", f"SELECT * FROM embeddings_{RUN_C.replace('-', '_')} LIMIT 5",
                 "--output", out)
    assert res.exit_code == 0 and pq.read_table(out).num_rows == 5, res.output


def test_info_run_table_shows_short_ids_at_80_columns(runs_store, invoke):
    res = invoke("--store", runs_store, "info")
    assert res.exit_code == 0
    for text in (r"\b1a2b\b", r"\b77aa\b", "protiso-mini@step100", "esm2_t6_8M"):
        assert re.search(text, res.stdout), text
    assert "…" not in res.stdout


# ------------------------------------------------------------------------------ every analysis, every format

def _rows_in_every_format(invoke, root, args, tmp_path) -> list[dict]:
    """Run `args` as ndjson, tsv and into a .parquet file: the same rows and columns each time
    (json and csv are the same writers, tested above); returns the ndjson rows."""
    res = invoke("--store", root, *args, "--format", "ndjson")
    assert res.exit_code == 0, (args, res.output)
    nd = [json.loads(x) for x in res.stdout.splitlines()]
    res = invoke("--store", root, *args, "--format", "tsv")
    assert res.exit_code == 0, (args, res.output)
    header, *rows = list(csv.reader(io.StringIO(res.stdout), delimiter="\t"))
    assert len(rows) == len(nd), args
    assert not nd or header == list(nd[0]), (args, header)
    out = tmp_path / "out" / f"{'-'.join(a for a in args if a.isalpha())}.parquet"
    res = invoke("--store", root, *args, "--output", out)
    assert res.exit_code == 0, (args, res.output)
    assert pq.read_table(out).num_rows == len(nd), args
    return nd


def test_every_analysis_command_takes_every_format_and_defaults_to_the_default_run(runs_store, tmp_path, invoke):
    """pairs, correlate, index, neighbors, transform, verify, sql, info: --format
    table|csv|tsv|json|ndjson|parquet and --output, and no --model needed (the default model's
    run, RUN_A, of the three)."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(runs_store, root)            # this test adds pair sets, indexes and a run
    with open_store(root, read_only=True) as s:
        acc = s.scalar("SELECT min(accession) FROM proteins")
    sample = json.loads(invoke("--store", root, "pairs", "sample", "--name", "ux", "--proteins", "12",
                               "--seed", "1", "--json").stdout)
    assert sample[0]["pairs"] == 66
    align = _rows_in_every_format(invoke, root, ["pairs", "align", "ux", "--threads", "1"], tmp_path)
    assert align[0]["pairs"] == 66 and align[0]["job"] == "align"
    dist = _rows_in_every_format(invoke, root, ["pairs", "distances", "ux"], tmp_path)
    assert dist[0]["key"] == f"{RUN_A}/L2"                       # the default run, its last layer
    sets = _rows_in_every_format(invoke, root, ["pairs", "list"], tmp_path)
    assert [r["name"] for r in sets] == ["ux"]
    matrix = _rows_in_every_format(invoke, root, ["correlate", "ux"], tmp_path)
    assert {r["run_id"] for r in matrix} == {RUN_A} and len(matrix) == 5
    assert [r["variable"] for r in matrix] == ["cosine", "sq_euclidean", "score", "identity", "go_jaccard"]
    doc = json.loads(invoke("--store", root, "correlate", "ux", "--json").stdout)
    assert doc["run_id"] == RUN_A and doc["n_pairs"] == 66 and doc["matrix"][0]["variable"] == "cosine"
    bins = _rows_in_every_format(invoke, root, ["correlate", "ux", "--bins", "4", "-m", "1a9f"], tmp_path)
    assert sum(r["n_pairs"] for r in bins) == 66 and {r["run_id"] for r in bins} == {RUN_B}
    built = _rows_in_every_format(invoke, root, ["index", "build", "--kind", "flat"], tmp_path)
    assert built[0]["run_id"] == RUN_A and built[0]["action"] in ("built", "fresh")
    listed = _rows_in_every_format(invoke, root, ["index", "list"], tmp_path)
    assert [r["index_id"] for r in listed] == [f"{RUN_A}/L2/flat-cosine"] and "params" in listed[0]
    assert "params" not in invoke("--store", root, "index", "list").stdout     # the table leaves it out
    hits = _rows_in_every_format(invoke, root, ["neighbors", acc, "-k", "3"], tmp_path)
    assert len(hits) == 3 and all(RUN_A in h["index_id"] for h in hits)
    report = _rows_in_every_format(invoke, root, ["transform", "report", "--transforms", "center", "--queries",
                                                  "2", "--pool", "20", "-k", "3"], tmp_path)
    assert [r["transform"] for r in report] == ["none", "center"] and report[0]["n_queries"] == 2
    problems = _rows_in_every_format(invoke, root, ["verify"], tmp_path)
    assert problems == []
    assert invoke("--store", root, "verify", "--format", "tsv").stdout == "path\towner\tproblem\n"
    terms = _rows_in_every_format(invoke, root, ["sql", "SELECT accession, terms FROM protein_meta "
                                                 "WHERE len(terms) > 2 ORDER BY accession LIMIT 4"], tmp_path)
    assert len(terms) == 4 and all(isinstance(r["terms"], list) for r in terms)
    # info: json and ndjson give the whole summary, one object; tsv, csv and parquet its table counts
    counts = json.loads(invoke("--store", root, "info", "--format", "ndjson").stdout)
    assert counts == json.loads(invoke("--store", root, "info", "--json").stdout)[0]
    rows = {t["table"]: t["rows"] for t in counts["tables"]}
    assert rows["pair_sets"] == 1 and [r["run_id"] for r in counts["runs"]].count(RUN_A) == 1
    tsv = list(csv.DictReader(io.StringIO(invoke("--store", root, "info", "--format", "tsv").stdout),
                              delimiter="\t"))
    assert {r["table"]: int(r["rows"]) for r in tsv} == rows
    assert invoke("--store", root, "info", "--output", tmp_path / "info.parquet").exit_code == 0
    assert pq.read_table(tmp_path / "info.parquet").to_pylist() == counts["tables"]
    derived = json.loads(invoke("--store", root, "transform", "apply", "--kind", "center", "--format",
                                "json").stdout)[0]
    assert derived["parent_run"] == RUN_A and derived["layer"] == 2


def test_commands_without_model_name_the_runs_when_the_default_is_ambiguous(tmp_path, invoke):
    root = tmp_path / "two"
    fasta, _, _ = sample_files()
    with open_store(root, create=True) as s:
        ingest(s, [fasta])
        accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins LIMIT 60").fetchall()]
        rng = np.random.default_rng(2)
        fake_run(s, RUN_C, {6: (accs, rng.normal(size=(60, 8)))}, model="esm2_t6_8M")
        fake_run(s, "prot-bert-0badcafe", {6: (accs, rng.normal(size=(60, 8)))}, model="prot_bert")
    assert invoke("--store", root, "pairs", "sample", "--name", "p", "--proteins", "6").exit_code == 0
    for args in (["index", "build"], ["neighbors", accs[0]], ["transform", "apply", "--kind", "center"],
                 ["transform", "report"], ["pairs", "distances", "p"], ["correlate", "p"]):
        res = invoke("--store", root, *args)
        assert res.exit_code == 1, (args, res.output)
        line = one_line_error(res)
        assert "77aa (esm2_t6_8M)" in line and "0bad (prot_bert)" in line and "(option --model)" in line, args


# ------------------------------------------------------------------------------ tables, hints, messages

def test_a_table_with_long_text_fits_the_terminal_without_cutting_a_word():
    from protiso.models.registry import model_rows

    rows = model_rows()
    for width in (60, 80, 100, 120):
        text = to_text(rows, "models", width=width, optional=("description", "source"))
        assert max(len(line) for line in text.splitlines()) <= width, width
        assert "protiso-mini" in text and "…" not in text.replace("f… (", "")
        if "description" in text.splitlines()[1]:            # shown: every word of it, whole
            words = set(text.split())
            assert {"demonstration", "conventions),", "published"} <= words, (width, text)
    mini = next(r for r in rows if r["alias"] == "protiso-mini")
    assert (mini["dim"], mini["layers"]) == (128, 4)          # known offline, from the bundled config


def test_help_shows_a_long_default_whole(invoke):
    text = re.sub(r"\s+", " ", invoke("reproduce", "--help").stdout.replace("│", " "))
    assert "Default: prot_bert, prot_bert_bfd, prot_xlnet, proteinbert." in text
    assert "…" not in invoke("reproduce", "--help").stdout


def test_sql_says_why_go_jaccard_is_null(tmp_path, invoke):
    root = tmp_path / "s"
    fasta, go, _ = sample_files()
    with open_store(root, create=True) as s:
        ingest(s, [fasta], annotations=[go])
        accs = [a for (a,) in s.con.execute("SELECT accession FROM proteins").fetchall()]
        fake_run(s, RUN_A, {2: (accs, np.random.default_rng(3).normal(size=(len(accs), 4)))}, model="protiso-mini")
    for args in (["pairs", "sample", "--name", "p", "--proteins", "5"], ["pairs", "align", "p", "--threads", "1"],
                 ["pairs", "distances", "p"]):
        assert invoke("--store", root, *args).exit_code == 0, args
    query = "SELECT pair_id, go_jaccard FROM pair_metrics"
    res = invoke("--store", root, "sql", query, "--format", "tsv")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 11, res.output
    assert "go_jaccard is NULL in every row" in res.stderr and "`protiso correlate PAIR_SET`" in res.stderr
    assert invoke("--store", root, "correlate", "p").exit_code == 0        # computes the overlaps
    res = invoke("--store", root, "sql", query, "--format", "tsv")
    assert res.exit_code == 0 and "NULL in every row" not in res.stderr, res.output
    assert invoke("--store", root, "sql", "SELECT 1 AS go_jaccard_x").stderr == ""


def test_identity_stratified_shortfall_says_how_many_and_why():
    from protiso.pairs.sample import stratified_shortfall

    identity = np.array([0.05] * 50 + [0.15] * 40 + [0.35] * 3 + [0.95] * 1 + [np.nan] * 2)
    assert stratified_shortfall(identity, 40, 4, 40) is None
    # 4 bins of [0, 1): quota ceil(100 / 4) = 25 each; bins hold 90, 3, 1 and 0 pool pairs
    kept = sum(min(c, 25) for c in (90, 3, 1, 0))
    note = stratified_shortfall(identity, 100, 4, kept)
    assert note.startswith("identity-stratified sampling gave 29 of the 100 pairs asked for")
    assert "at most 25 pairs of an aligned pool of 94 random pairs" in note
    assert "3 bins held fewer (0.25-0.5: 3, 0.5-0.75: 0, 0.75-1: 1)" in note and "--pool-factor" in note


def test_identity_stratified_sampling_warns_when_short(tmp_path, invoke):
    root = tmp_path / "s"
    with open_store(root, create=True) as s:
        ingest(s, [sample_files()[2]])
    res = invoke("--store", root, "pairs", "sample", "--name", "st", "--strategy", "identity-stratified",
                 "--pairs", "200", "--proteins", "40", "--pool-factor", "2", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)[0]["pairs"]
    assert got < 200 and f"warning: identity-stratified sampling gave {got:,} of the 200 pairs" in res.stderr


def _sigint_handler(_):
    import signal

    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_alignment_workers_leave_ctrl_c_to_the_parent():
    """A Ctrl-C reaches every process of the terminal's group: the pool's workers ignore it, so
    only the parent speaks (one line saying what was kept), and the parent's own chunks loop
    (threads=1) still gets it."""
    import multiprocessing as mp
    import signal

    from protiso.pairs import jobs
    from protiso.pairs.align import Scoring

    with mp.get_context("fork").Pool(2, initializer=jobs._pool_worker_init,
                                     initargs=(Scoring(), "parasail")) as pool:
        assert pool.map(_sigint_handler, range(4)) == [True] * 4
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def test_ingest_messages(tmp_path, invoke):
    root = tmp_path / "s"
    res = invoke("--store", root, "ingest", tmp_path)
    assert res.exit_code == 1
    assert one_line_error(res) == f"error: {tmp_path} is a directory; give the files in it, e.g. {tmp_path}/*.fasta.gz"
    from protiso.go.store import bundled_obo

    res = invoke("--store", root, "ingest", bundled_obo())
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and re.match(r"Gene Ontology go_2014_sample\.obo\.gz .*: 6,049 terms, [\d,]+ relations", lines[0])
    res = invoke("--store", root, "ingest", sample_files()[2])
    assert res.stdout.strip() == "100 records read, 100 new proteins; 0 annotation rows, 0 new"


def test_demo_settings_are_printed_in_words():
    from protiso.pipeline.demo import demo_settings, settings_text

    text = settings_text(demo_settings())
    assert text.startswith("demo settings: model protiso-mini (all layers, per-residue statistics) and its "
                           "training checkpoints step")
    assert "every protein of the sample, each truncated to its first 128 residues" in text
    assert "all pairs among 250 proteins, seed 0" in text
    assert "a fixed subset of 400 proteins (--proteins)" in settings_text(demo_settings(400), 400)


def test_ctrl_c_while_the_command_line_starts_is_one_line(tmp_path):
    """A real process interrupted while it imports (pyarrow, DuckDB, FAISS): one line, exit 130."""
    import signal
    import time

    exe = str(Path(sys.executable).with_name("protiso"))
    for delay in (0.05, 0.15, 0.3):
        proc = subprocess.Popen([exe, "--store", str(tmp_path / "none"), "runs"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, (delay, err[-2000:])
        assert proc.returncode in (130, 1), (delay, proc.returncode, err)   # 1: it had finished (no store)
