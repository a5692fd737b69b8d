"""`protiso isotropy`: IsoScore, effective dimensions, average cosine and friends of a run."""
from __future__ import annotations

import math
from typing import Optional

import typer

from protiso.cli.core import console, emit, err_console, open_from_ctx, progress_bar
from protiso.isotropy.engine import isotropy as run_isotropy
from protiso.isotropy.metrics import DEFAULT_ZETA

LEVELS = ("global", "local")


def _fmt_ci(lo, hi) -> str:
    return "" if lo is None or hi is None else f"{lo:.4g} – {hi:.4g}"


def isotropy(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="Model alias or run id of an embedding run."),
    layer: Optional[str] = typer.Option(
        None, "--layer", "-l", help="Hidden-state index, or 'all' (default: the run's last layer)."),
    level: str = typer.Option("global", "--level", help="'global' (one vector per protein) or "
                              "'local' (per-residue statistics from `embed --local-stats`, per amino acid)."),
    where: Optional[str] = typer.Option(
        None, "--where", help="SQL filter over protein_meta, e.g. \"organism LIKE 'Homo%' AND length < 500\" "
        "or \"list_contains(terms, 'GO:0005737')\"."),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", help="SQL expression over protein_meta; one result per value, all groups in "
        "one pass, e.g. organism, 'length // 100 * 100'."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap replicates (resampling "
                                  "proteins, Poisson bootstrap in the same pass) for confidence intervals."),
    ci: float = typer.Option(0.95, "--ci", help="Confidence level of the bootstrap intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    zeta: float = typer.Option(DEFAULT_ZETA, "--zeta", help="Shrinkage weight of IsoScore* "
                               "(toward the pooled groups' covariance, or the scaled identity)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result rows as JSON."),
) -> None:
    """Isotropy of a run's embeddings in one streaming pass: IsoScore, IsoScore* (shrinkage),
    effective dimensions, exact average pairwise cosine, effective rank, top-PC variance,
    mean share. Results are stored in table `metrics` (views metrics_latest, isotropy_summary,
    local_isotropy_summary)."""
    if level not in LEVELS:
        raise typer.BadParameter(f"{level!r} is not one of {', '.join(LEVELS)}", param_hint="--level")
    with open_from_ctx(ctx) as store:
        with progress_bar() as bar:
            tasks = {}

            def progress(label, done, total):
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done)

            results = run_isotropy(store, model, layer, level, where, group_by, bootstrap, seed, zeta,
                                   ci, progress=progress)
    rows = [r.row() for r in results]
    small = [r for r in rows if r["n"] <= r["d"]]
    if small:
        err_console.print(
            f"[yellow]warning:[/] {len(small)} result(s) have n <= d (fewer vectors than dimensions), "
            f"e.g. n={small[0]['n']}, d={small[0]['d']}: IsoScore is biased toward anisotropy there; "
            f"compare isoscore_star (shrinkage zeta={zeta}).", highlight=False)
    if as_json:
        emit(rows, as_json=True)
        return
    grouped = any(r["group_by"] for r in rows)
    table_rows = []
    for r in rows:
        out = {"model": r["model"] or r["run_id"], "layer": r["layer"]}
        if grouped:
            out["group"] = "NULL" if r["group_key"] is None and r["group_by"] else (r["group_key"] or "(all)")
        out.update({"n": r["n"], "d": r["d"], "IsoScore": r["isoscore"], "IsoScore*": r["isoscore_star"],
                    "eff. dims": r["effective_dims"], "avg cos": r["avg_cosine"],
                    "eff. rank": r["effective_rank"], "top-1 PC": r["var_top1"]})
        if bootstrap:
            out[f"IsoScore {ci:.0%} CI"] = _fmt_ci(r["isoscore_lo"], r["isoscore_hi"])
            out[f"avg cos {ci:.0%} CI"] = _fmt_ci(r["avg_cosine_lo"], r["avg_cosine_hi"])
        table_rows.append(out)
    title = f"isotropy ({level})" + (f" where {where}" if where else "") \
        + (f" by {group_by}" if group_by else "")
    emit(table_rows, title=title)
    if level == "local":
        for lay in sorted({r["layer"] for r in rows}):
            dims = [r["effective_dims"] for r in rows if r["layer"] == lay and r["group_by"] == "residue"
                    and r["effective_dims"] is not None and not math.isnan(r["effective_dims"])]
            if dims:
                console.print(f"layer {lay}: mean effective dimensions across {len(dims)} residue types: "
                              f"{sum(dims) / len(dims):.2f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(isotropy)
