"""`protiso isotropy`: IsoScore, effective dimensions, average cosine and friends of a run."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import typer

from protiso.cli.core import (choice, console, emit, format_option, json_option, open_from_ctx, output_option,
                              progress_bar, resolve_format, warn)
from protiso.go.names import label as go_label
from protiso.isotropy.engine import CI_METHODS, DEFAULT_JACKKNIFE_BLOCKS
from protiso.isotropy.engine import isotropy as run_isotropy
from protiso.isotropy.metrics import DEFAULT_ZETA
from protiso.isotropy.shrinkage import TARGET_CHOICES
from protiso.runs.catalog import run_short_ids

LEVELS = ("global", "local")
MODEL_HELP = ("Model alias, run id or short run id (the `id` column of `protiso runs`). Default: the "
              "store's only run, else the latest run of the default model (protiso-mini).")


def natural_key(key):
    """Sort key for group values (text): numbers by value, text with embedded numbers naturally
    (step2 before step10), NULL last."""
    if key is None:
        return (2, 0.0, [])
    try:
        return (0, float(key), [])
    except ValueError:
        return (1, 0.0, [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", key)])


def select_groups(rows: list[dict], min_n: int, top: int | None) -> tuple[list[dict], str | None]:
    """The grouped rows to show, in natural order of their keys: groups of at least `min_n`
    proteins, the `top` largest of them if given; and a note on what was left out."""
    kept = [r for r in rows if r["n"] >= min_n]
    small = len(rows) - len(kept)
    if top is not None and len(kept) > top:
        kept = sorted(kept, key=lambda r: (-r["n"], natural_key(r["group_key"])))[:top]
    kept.sort(key=lambda r: (r["layer"], natural_key(r["group_key"])))
    notes = []
    if small:
        notes.append(f"{small} group{'s' if small != 1 else ''} with fewer than {min_n} proteins "
                     "(--min-n 1 shows every group)")
    hidden_top = len([r for r in rows if r["n"] >= min_n]) - len(kept)
    if hidden_top:
        notes.append(f"{hidden_top} smaller group{'s' if hidden_top != 1 else ''} beyond --top {top}")
    note = None
    if notes:
        note = ("not shown: " + "; ".join(notes) + ". Every group is stored in table metrics "
                "(view metrics_latest).")
    return kept, note


def _fmt_ci(lo, hi) -> str:
    return "" if lo is None or hi is None else f"{lo:.4g}–{hi:.4g}"


def _bad(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt_dims(dims, shares) -> str:
    """'12 (41%), 5 (9%)': rogue dimensions with their share of the mean cosine."""
    if not dims:
        return ""
    return ", ".join(f"{d} ({s:.0%})" if s is not None and not _bad(s) else str(d)
                     for d, s in zip(dims, shares or [None] * len(dims)))


def table_rows(rows: list[dict], short: dict, bootstrap: int, ci: float, intrinsic: bool = False,
               rogue: bool = False, labels: dict | None = None) -> tuple[list[dict], str]:
    """What the terminal table shows, and its title: run, model and layer move to the title when
    every row shares them. `labels`: display text of group keys and filters (GO ids with names)."""
    labels = labels or {}
    runs = {r["run_id"] for r in rows}
    layers = {r["layer"] for r in rows}
    grouped = any(r["group_by"] for r in rows) or any(r["level"] == "local" for r in rows)
    out = []
    for r in rows:
        row = {}
        if len(runs) > 1:
            row["run"] = short.get(r["run_id"], r["run_id"])
            row["model"] = r["model"]
        if len(layers) > 1:
            row["layer"] = r["layer"]
        if grouped:
            if r["level"] == "local":
                row["residue"] = r["group_key"] if r["group_key"] is not None else "(all)"
            else:
                row["group"] = "NULL" if r["group_key"] is None else labels.get(r["group_key"], r["group_key"])
        row.update({"n": r["n"], "d": r["d"], "IsoScore": r["isoscore"], "IsoScore*": r["isoscore_star"],
                    "eff. dims": r["effective_dims"], "avg cos": r["avg_cosine"]})
        if bootstrap:
            method = (r.get("ci_method") or "").upper()
            row[f"IsoScore {ci:.0%} {method} CI"] = _fmt_ci(r["isoscore_lo"], r["isoscore_hi"])
            row["IsoScore bias"] = r.get("isoscore_bias")
            row[f"avg cos {ci:.0%} {method} CI"] = _fmt_ci(r["avg_cosine_lo"], r["avg_cosine_hi"])
        if intrinsic:
            row["ID TwoNN"] = r.get("intrinsic_dim_twonn")
            row["ID MLE"] = r.get("intrinsic_dim_mle")
            if any(x.get("intrinsic_n_duplicates") for x in rows):
                row["dupl."] = r.get("intrinsic_n_duplicates")
        if rogue:
            row["rogue dims (share of avg cos)"] = _fmt_dims(r.get("rogue_dims"), r.get("rogue_shares"))
            row["top share"] = r.get("rogue_top_share")
        row["eff. rank"] = r["effective_rank"]
        row["top-1 PC"] = r["var_top1"]
        if any(x["n"] <= x["d"] for x in rows):
            row["note"] = "n ≤ d" if r["n"] <= r["d"] else ""
        out.append(row)
    first = rows[0]
    title = "isotropy"
    if len(runs) == 1:
        title += f" of {first['model'] or first['run_id']} (run {short.get(first['run_id'], first['run_id'])})"
    if len(layers) == 1:
        title += f", layer {first['layer']}"
    title += f", {first['level']}"
    if first["filter"]:
        title += f", where {labels.get(first['filter'], first['filter'])}"
    if first["group_by"] and first["level"] == "global":
        title += f", by {first['group_by']}"
    return out, title


def isotropy(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    layer: Optional[str] = typer.Option(
        None, "--layer", "-l", help="Hidden-state index, or 'all' (default: the run's last layer)."),
    level: str = typer.Option("global", "--level", metavar="global|local",
                              help="'global' (one vector per protein) or 'local' (per-residue "
                              "statistics from `embed --local-stats`, per amino acid)."),
    where: Optional[str] = typer.Option(
        None, "--where", metavar="SQL", help="SQL filter over protein_meta, e.g. \"organism LIKE 'Homo%' "
        "AND length < 500\" or \"list_contains(terms, 'GO:0005737')\"."),
    group_by: Optional[str] = typer.Option(
        None, "--group-by", metavar="SQL", help="SQL expression over protein_meta; one result per value, "
        "all groups in one pass, e.g. organism, 'length // 100 * 100'. Groups are listed in natural "
        "order (100 before 1000)."),
    min_n: Optional[int] = typer.Option(None, "--min-n", min=1, metavar="N", help="With --group-by: "
                                        "show groups of at least N proteins (default: 2 in the table, "
                                        "1 in the other formats; every group is stored in table metrics)."),
    top: Optional[int] = typer.Option(None, "--top", min=1, metavar="N",
                                      help="With --group-by: show only the N largest groups."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap replicates (resampling "
                                  "proteins, Poisson bootstrap in the same pass) for confidence intervals."),
    ci: float = typer.Option(0.95, "--ci", help="Confidence level of the bootstrap intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    zeta: float = typer.Option(DEFAULT_ZETA, "--zeta", help="Shrinkage weight of IsoScore*."),
    star_target: str = typer.Option("auto", "--star-target", metavar="|".join(TARGET_CHOICES),
                                    help="IsoScore*'s shrinkage target C0 in (1 - zeta) C + zeta C0: "
                                    "'scaled-identity' tr(C)/d * I (scale-free), 'identity' I (the "
                                    "reference package's suggestion; depends on the units), 'reference' "
                                    "the pooled groups' covariance (needs --group-by); 'auto' is "
                                    "reference with --group-by, else scaled-identity."),
    intrinsic: bool = typer.Option(False, "--intrinsic", help="Also the intrinsic dimension per "
                                   "group (TwoNN and Levina-Bickel MLE, k = 20) from an exact "
                                   "nearest-neighbour search; keeps the vectors in memory (at most 4 GiB)."),
    rogue: bool = typer.Option(False, "--rogue", help="Show the rogue dimensions: the 5 dimensions "
                               "contributing most to the average cosine and their share (always "
                               "stored; --format json lists each one's contribution)."),
    ci_method: str = typer.Option("bca", "--ci-method", metavar="|".join(CI_METHODS),
                                  help="Bootstrap interval: 'bca' (bias-corrected and accelerated, "
                                  f"acceleration from {DEFAULT_JACKKNIFE_BLOCKS} jackknife blocks), "
                                  "'bc' (bias-corrected percentile) or 'percentile'. The bootstrap "
                                  "bias is reported beside it."),
    fmt: Optional[str] = format_option(),
    output: Optional[Path] = output_option(),
    as_json: bool = json_option(),
) -> None:
    """Isotropy of a run's embeddings in one streaming pass: IsoScore, IsoScore* (shrinkage),
    effective dimensions, exact average pairwise cosine, effective rank, top-PC variance,
    mean share, rogue dimensions; with --intrinsic the intrinsic dimension (TwoNN, MLE); with
    --bootstrap intervals (BCa by default) and the bootstrap bias. GO ids in group keys and
    filters are shown with their names. Results are stored in table `metrics` (views
    metrics_latest, isotropy_summary, local_isotropy_summary); the table shows 6 significant
    digits, --format tsv|json every digit and every column."""
    choice(level, LEVELS, "--level")
    choice(star_target, TARGET_CHOICES, "--star-target")
    choice(ci_method, CI_METHODS, "--ci-method")
    fmt = resolve_format(fmt, as_json, output)
    with open_from_ctx(ctx) as store:
        with progress_bar() as bar:
            tasks = {}

            def progress(label, done, total):
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done)

            results = run_isotropy(store, model, layer, level, where, group_by, bootstrap, seed, zeta,
                                   ci, progress=progress, star_target=star_target, intrinsic=intrinsic,
                                   ci_method=ci_method)
        short = run_short_ids(store)
        rows = [r.row() for r in results]
        labels = go_label(store, [r["group_key"] for r in rows] + [r["filter"] for r in rows])
    for r in rows:
        if not rogue:
            r.pop("rogue_dimensions", None)
        if r["group_key"] is not None and labels.get(r["group_key"], r["group_key"]) != r["group_key"]:
            r["group_label"] = labels[r["group_key"]]
    note = None
    if group_by and level == "global":
        rows, note = select_groups(rows, min_n or (2 if fmt == "table" else 1), top)
    if fmt != "table":
        for r in rows:
            r["run"] = short.get(r["run_id"], r["run_id"])
        emit(rows, fmt, output)
    elif rows:
        shown, title = table_rows(rows, short, bootstrap, ci, intrinsic, rogue, labels)
        emit(shown, fmt, output, title=title, optional=("top-1 PC", "eff. rank", "IsoScore*"))
    else:
        console.print("no group has enough proteins to show; lower --min-n", highlight=False)
    small = [r for r in rows if r["n"] <= r["d"]]
    if small:
        warn(f"{len(small)} result(s) have n <= d (fewer vectors than dimensions), e.g. n={small[0]['n']}, "
             f"d={small[0]['d']}: IsoScore is biased toward anisotropy there; compare IsoScore* "
             f"(shrinkage zeta={zeta}, target {small[0]['star_target']}).")
    if note:
        warn(note)
    if level == "local" and fmt == "table":
        for lay in sorted({r["layer"] for r in rows}):
            dims = [r["effective_dims"] for r in rows if r["layer"] == lay and r["group_by"] == "residue"
                    and not _bad(r["effective_dims"])]
            if dims:
                console.print(f"layer {lay}: mean effective dimensions across {len(dims)} residue types: "
                              f"{sum(dims) / len(dims):.2f}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(isotropy)
