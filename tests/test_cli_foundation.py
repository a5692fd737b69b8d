"""CLI: ingest, sql, info, demo — success and error paths through the real Typer app."""
from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
from pathlib import Path

from protiso import open_store

from tests.conftest import sample_files


def test_demo_then_info(invoke, tmp_path):
    root = tmp_path / "s"
    result = invoke("--store", root, "demo", "--proteins", "400")   # the same pipeline on a fixed subset
    assert result.exit_code == 0, result.output
    assert "2,100 records" in result.output and "BPO" in result.output
    settings = result.stdout.splitlines()[0]                       # printed first, in words
    assert settings.startswith("demo settings: model protiso-mini (all layers, per-residue statistics)")
    assert "a fixed subset of 400 proteins (--proteins), each truncated to its first 128 residues" in settings
    assert "(not given)" in result.stdout                          # FASTA entries carry no organism
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file() and report.stat().st_size > 100_000
    with open_store(root, read_only=True) as store:
        # protiso-mini (all layers) and its checkpoints embedded every protein
        runs = store.sql("SELECT model, n_done FROM runs ORDER BY model").to_pylist()
        assert [r["model"] for r in runs] == ["protiso-mini", "protiso-mini@step0",
                                              "protiso-mini@step100", "protiso-mini@step300"]
        assert all(r["n_done"] == 400 for r in runs)
        assert store.scalar("SELECT count(*) FROM metrics WHERE level = 'global'") >= 8
        assert store.scalar("SELECT count(*) FROM pairs WHERE score IS NOT NULL") > 1000
    again = invoke("--store", root, "demo", "--proteins", "400")  # every step is found done and skipped
    assert again.exit_code == 0 and "2,100 records, 0 new;" in again.output
    steps = [line for line in again.stderr.splitlines() if re.match(r"(\S+: )?\S+ (ran|skipped) - ", line)]
    assert steps and all(" skipped" in line for line in steps)
    info = invoke("--store", root, "info", "--json")
    data = json.loads(info.stdout)[0]
    counts = {t["table"]: t["rows"] for t in data["tables"]}
    assert counts["proteins"] == 2099 and counts["annotations"] > 17000
    assert data["size_bytes"] > 0


def test_ingest_cli_and_errors(invoke, tmp_path):
    root = tmp_path / "s"
    fasta, go, flat = sample_files()
    ok = invoke("--store", root, "ingest", flat)
    assert ok.exit_code == 0 and "100 records read, 100 new proteins" in ok.output
    bad = tmp_path / "bad.fa"
    bad.write_text(">X1\nMKV$\n")
    fail = invoke("--store", root, "ingest", bad)
    assert fail.exit_code == 1
    assert "bad.fa:2: record X1: character '$'" in fail.stderr
    unknown = invoke("--store", root, "ingest", "--annotations", go)
    assert unknown.exit_code == 1 and "is not in the store" in unknown.stderr
    skipped = invoke("--store", root, "ingest", "--annotations", go, "--unknown", "skip")
    assert skipped.exit_code == 0 and "warning: skipped" in skipped.stderr
    badfmt = invoke("--store", root, "ingest", flat, "--format", "genbank")
    assert badfmt.exit_code == 2 and "genbank" in badfmt.output


def test_sql_formats(invoke, tmp_path):
    root = tmp_path / "s"
    invoke("--store", root, "ingest", sample_files()[2])
    q = "SELECT accession, taxon_id FROM proteins ORDER BY accession LIMIT 3"
    as_json = json.loads(invoke("--store", root, "sql", q, "--format", "json").stdout)
    assert len(as_json) == 3 and set(as_json[0]) == {"accession", "taxon_id"}
    as_csv = invoke("--store", root, "sql", q, "--format", "csv").stdout.splitlines()
    assert as_csv[0] == "accession,taxon_id" and len(as_csv) == 4          # quoted only where needed
    assert as_csv[1] == f"{as_json[0]['accession']},{as_json[0]['taxon_id']}"
    out = tmp_path / "o.parquet"
    r = invoke("--store", root, "sql", q, "--format", "parquet", "--output", out)
    assert r.exit_code == 0 and pq.read_table(out).to_pylist() == as_json
    qfile = tmp_path / "q.sql"
    qfile.write_text(q)
    from_file = json.loads(invoke("--store", root, "sql", "--file", qfile, "--format", "json").stdout)
    assert from_file == as_json
    table = invoke("--store", root, "sql", "SELECT count(*) AS n FROM organism_summary")
    assert table.exit_code == 0 and "n" in table.output


def test_sql_errors(invoke, tmp_path):
    root = tmp_path / "s"
    missing = invoke("--store", root, "sql", "SELECT 1")
    assert missing.exit_code == 1 and "no store at" in missing.stderr
    assert not root.exists()                       # a read command never creates a store
    fasta, go, flat = sample_files()
    assert invoke("--store", root, "ingest", flat).exit_code == 0
    bad = invoke("--store", root, "sql", "SELECT nope FROM proteins")
    assert bad.exit_code == 1 and "query failed" in bad.stderr and "nope" in bad.stderr
    readonly = invoke("--store", root, "sql", "DELETE FROM proteins")
    assert readonly.exit_code == 1 and "read-only" in readonly.stderr.lower()
    neither = invoke("--store", root, "sql")
    assert neither.exit_code == 1 and "either a QUERY" in neither.stderr
    noout = invoke("--store", root, "sql", "SELECT 1", "--format", "parquet")
    assert noout.exit_code == 2 and "--output" in noout.stderr    # a usage error, as everywhere


def test_store_from_environment(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("PROTISO_STORE", str(tmp_path / "env_store"))
    missing = invoke("info")
    assert missing.exit_code == 1 and "no store at" in missing.stderr and str(tmp_path / "env_store") in missing.stderr
    fasta, go, flat = sample_files()
    assert invoke("ingest", flat).exit_code == 0
    assert (tmp_path / "env_store" / "protiso.duckdb").exists()
    assert invoke("info").exit_code == 0


def test_help_and_version(invoke):
    assert "ingest" in invoke("--help").output
    assert invoke("--version").output.startswith("protiso ")
