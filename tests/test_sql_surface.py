"""Every analysis the CLI does can be done in `protiso sql`: the isotropy UDF over any query gives
the numbers `protiso isotropy --group-by` stores; the reference package checks IsoScore itself."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from IsoScore import IsoScore

from support import fake_run


@pytest.fixture
def run_root(sample_store):
    accs = [a for (a,) in sample_store.con.execute(
        "SELECT accession FROM proteins ORDER BY accession LIMIT 400").fetchall()]
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((len(accs), 6)) * [5, 2, 1, 1, 0.5, 0.1] + 1).astype(np.float32)
    fake_run(sample_store, "sqlrun", {3: (accs, X)}, model="synthetic", n_parts=2)
    root = sample_store.root
    sample_store.close()
    return root


def test_isotropy_udf_equals_cli_group_by(run_root, invoke):
    group = "length // 300"
    r = invoke("--store", run_root, "isotropy", "--model", "sqlrun", "--group-by", group, "--json")
    assert r.exit_code == 0, r.output
    cli = {row["group_key"]: row for row in json.loads(r.stdout)}
    query = ("SELECT CAST(length // 300 AS VARCHAR) AS g, unnest(isotropy(list(embedding))) "
             "FROM embeddings JOIN proteins USING (accession) WHERE run_id = 'sqlrun' GROUP BY g")
    r = invoke("--store", run_root, "sql", query, "--format", "json")
    assert r.exit_code == 0, r.output
    sql = {row["g"]: row for row in json.loads(r.stdout)}
    assert set(sql) == set(cli)
    for key, row in sql.items():
        assert row["n"] == cli[key]["n"]
        for field in ("isoscore", "effective_dims", "avg_cosine", "effective_rank", "var_top1"):
            if cli[key][field] is None:
                continue
            assert row[field] == pytest.approx(cli[key][field], rel=2e-6), field  # stored vectors are float32: the pass multiplies centred float32 blocks (state; the UDF is float64)


def test_isotropy_udf_matches_reference_package(run_root, invoke):
    r = invoke("--store", run_root, "sql",
               "SELECT isotropy(list(embedding)).isoscore AS iso, list(embedding) AS v FROM embeddings",
               "--format", "json")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)[0]
    X = np.asarray(row["v"], dtype=np.float64)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)   # the reference computes sqrt(d) in torch's default dtype
    try:
        reference = float(IsoScore.IsoScore(X))
    finally:
        torch.set_default_dtype(old)
    assert row["iso"] == pytest.approx(reference, rel=1e-9)
