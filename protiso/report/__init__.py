"""A self-contained static HTML report of a store: the paper's table beside the published
figures, spectra, isotropy per layer / checkpoint / group, local per-residue isotropy, and
the pair analyses (correlation matrix, distance vs identity, GO similarity).

`build_report(store, out_dir)` writes out_dir/report.html (images inline as PNG data URIs)
and returns its path. Every number taken from table `metrics` is rendered in a cell carrying
its metric_id and field name (data-metric-id, data-field) so it can be checked against the
catalog; every figure has a provenance line (runs, filter, n, seed). An inline script marks,
after load, any image that failed to decode (element #image-check, data-broken)."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from protiso._version import __version__
from protiso.errors import InputError
from protiso.report import data, figures
from protiso.report.markup import CSS, SCRIPT, Doc, esc, filter_text, fmt, metric_cell, prov
from protiso.store import Store

REPORT_NAME = "report.html"
SECTIONS = (
    ("paper-table", "Isotropy: the paper's table"),
    ("spectra", "Eigenvalue spectra"),
    ("layers", "Isotropy per layer"),
    ("intrinsic", "Intrinsic dimension vs effective dimensions per layer"),
    ("rogue", "Rogue dimensions"),
    ("intervals", "Bootstrap intervals and bias"),
    ("checkpoints", "Isotropy over training checkpoints"),
    ("groups", "Isotropy per group (organism, GO)"),
    ("local", "Local (per-residue-type) isotropy"),
    ("correlations", "Correlation matrix"),
    ("pairs", "Embedding distance vs sequence identity and alignment score"),
    ("go", "GO-term similarity"),
    ("go-semantic", "GO semantic similarity (Resnik, Lin) vs embedding distance"),
    ("runs", "Embedding runs"),
)
CORR_VARS = ("cosine", "sq_euclidean", "score", "identity", "go_jaccard")

# ---------------------------------------------------------------------------- sections

def _diff(measured, published, digits: int) -> str:
    if measured is None or published is None or (isinstance(measured, float) and np.isnan(measured)):
        return "n/a"
    return f"{float(measured) - float(published):+.{digits}f}"


def _paper_table(doc: Doc, store: Store) -> None:
    rows = data.paper_table(store)
    doc.add('<p class="note">IsoScore (Rudman et al.) from the covariance spectrum; effective dimensions = '
            'IsoScore &times; (d &minus; 1) + 1; average cosine over all pairs of proteins (exact). '
            "Published: Hakim, Roy &amp; Rahman 2025, global embeddings of Swiss-Prot, last layer. Measured: "
            "this store, one row per run and filter at the run's last layer; &Delta; = measured &minus; "
            "published. The paper's four models are always listed; runs of other models follow.</p>")
    if not rows:
        doc.empty("No isotropy results yet: run `protiso reproduce` or `protiso isotropy --model ...`.")
    by_key: dict = {}
    others = []
    for r in rows:
        key = data.published_key(r["model"], r["model_id"], r["family"])
        (by_key.setdefault(key, []) if key else others).append(r)
    filters = {r["filter"] for r in rows}
    one_filter = len(filters) <= 1        # then it is said once, above the table, not in every row
    if rows and one_filter:
        doc.add(f'<p class="note" id="paper-table-filter">Every measured row: filter '
                f'[{esc(filter_text(next(iter(filters))))}].</p>')
    filter_head = "" if one_filter else '<th class="t">filter</th>'
    doc.add('<table id="paper-table-rows"><tr><th class="t">model (run)</th><th>layer</th>'
            f'{filter_head}<th>n</th><th>dim</th>'
            '<th class="pub">IsoScore published</th><th>IsoScore measured</th><th>&Delta; IsoScore</th>'
            '<th class="pub">effective dims published</th><th>effective dims measured</th>'
            '<th>&Delta; effective dims</th><th>average cosine</th></tr>')

    def lead(label: str, r: dict) -> str:
        filt = "" if one_filter else f'<td class="t filter">{esc(filter_text(r["filter"]))}</td>'
        return (f'<td class="t">{label}<br><span class="id">{esc(r["run_id"])}</span></td>'
                f'{metric_cell(r, "layer")}{filt}{metric_cell(r, "n")}{metric_cell(r, "d")}')

    for key, pub in data.PUBLISHED.items():
        runs = by_key.get(key, [])
        pub_iso = f'<td class="pub" data-published="{esc(pub["label"])}">{pub["isoscore"]:.6f}</td>'
        pub_dims = f'<td class="pub" data-published-dims="{esc(pub["label"])}">{pub["effective_dims"]}</td>'
        if not runs:
            doc.add(f'<tr data-published-only="{esc(key)}"><td class="t">{esc(pub["label"])}<br>'
                    f'<span class="na">no run in this store</span></td><td class="na">&ndash;</td>'
                    + ("" if one_filter else '<td class="na">&ndash;</td>')
                    + f'<td class="na">&ndash;</td><td>{pub["dim"]}</td>{pub_iso}'
                    f'<td class="na" colspan="2">not measured here</td>{pub_dims}'
                    '<td class="na" colspan="3">not measured here</td></tr>')
        for r in runs:
            doc.add(f'<tr data-run="{esc(r["run_id"])}">{lead(esc(pub["label"]) + " (" + esc(r["model"]) + ")", r)}'
                    f'{pub_iso}{metric_cell(r, "isoscore")}'
                    f'<td data-diff="isoscore">{_diff(r["isoscore"], pub["isoscore"], 6)}</td>'
                    f'{pub_dims}{metric_cell(r, "effective_dims")}'
                    f'<td data-diff="effective_dims">{_diff(r["effective_dims"], pub["effective_dims"], 1)}</td>'
                    f'{metric_cell(r, "avg_cosine")}</tr>')
    for r in others:
        flag = ' <span class="flag" title="fewer proteins than dimensions">n &le; d</span>' if _small(r) else ""
        doc.add(f'<tr data-run="{esc(r["run_id"])}">{lead(esc(r["model"]) + flag, r)}'
                f'<td class="na pub">not in the paper</td>{metric_cell(r, "isoscore")}<td class="na">&ndash;</td>'
                f'<td class="na pub">not in the paper</td>{metric_cell(r, "effective_dims")}<td class="na">&ndash;</td>'
                f'{metric_cell(r, "avg_cosine")}</tr>')
    doc.add("</table>")


def _spectra(doc: Doc, store: Store) -> None:
    rows = data.paper_table(store)
    if not rows:
        doc.empty("No runs with isotropy results.")
        return
    series, provs = [], []
    for r in rows:
        n, lam, source = data.spectrum(store, r["run_id"], r["layer"], r["filter"])
        series.append((f"{r['model']} (L{r['layer']})", lam))
        provs.append(f"run {r['run_id']} layer {r['layer']} filter [{filter_text(r['filter'])}] n={n} "
                     f"seed=none (deterministic) eigenvalues {source}")
    doc.figure(figures.spectra(series), "spectra",
               "Covariance eigenvalues as shares of the total variance (log-log): a few dominant "
               "directions mean an anisotropic space.", "; ".join(provs) + f"; protiso {__version__}")
    for (run_id, filt), rows in data.layer_series(store).items():
        series, provs = [], []
        for r in rows:
            n, lam, source = data.spectrum(store, run_id, r["layer"], filt)
            series.append((f"layer {r['layer']}", lam))
            provs.append(f"layer {r['layer']} n={n} eigenvalues {source}")
        doc.figure(figures.spectra(series), f"spectra-layers-{run_id}",
                   f"{rows[0]['model']}: spectra of every embedded layer.",
                   f"run {run_id} filter [{filter_text(filt)}] seed=none (deterministic); "
                   + "; ".join(provs) + f"; protiso {__version__}")


def _layers(doc: Doc, store: Store) -> None:
    series = data.layer_series(store)
    if not series:
        doc.empty("No run has isotropy results at more than one layer (embed with --layers all).")
        return
    doc.figure(figures.two_panel_lines(
        [(f"{v[0]['model']}", [r["layer"] for r in v], [r["isoscore"] for r in v],
          [r["effective_dims"] for r in v]) for v in series.values()],
        "layer (hidden-state index)", ("IsoScore", "effective dimensions")),
        "layers", "IsoScore and effective dimensions per layer.",
        prov([r for v in series.values() for r in v]))
    _metric_table(doc, "layer-table", ["run", "layer"], [r for v in series.values() for r in v],
                  lambda r: f'<td class="t id">{esc(r["run_id"])}</td>{metric_cell(r, "layer")}')


def _metric_table(doc: Doc, css_class: str, lead_headers: list[str], rows: list[dict], lead) -> None:
    """A table of metrics rows: the leading cells `lead(row)`, then n, IsoScore, effective dims and
    average cosine, each tagged with its `metrics` row so the tests can check it against SQL; rows
    with n <= d (when `d` is known) are flagged."""
    head = "".join(f'<th class="t">{h}</th>' if i == 0 else f"<th>{h}</th>" for i, h in enumerate(lead_headers))
    flagged = any(_small(r) for r in rows)
    doc.add(f'<table class="{css_class}"><tr>{head}<th>n</th><th>IsoScore</th>'
            '<th>effective dims</th><th>average cosine</th>' + ('<th class="t">note</th>' if flagged else "")
            + "</tr>")
    for r in rows:
        note = ('<td class="t flag" data-flag="n-le-d">n &le; d: IsoScore biased low</td>' if _small(r) else
                '<td></td>') if flagged else ""
        doc.add(f'<tr>{lead(r)}{metric_cell(r, "n")}{metric_cell(r, "isoscore")}'
                f'{metric_cell(r, "effective_dims")}{metric_cell(r, "avg_cosine")}{note}</tr>')
    doc.add("</table>")


def _small(r: dict) -> bool:
    """n <= d: fewer vectors than dimensions (IsoScore is biased toward anisotropy there)."""
    return r.get("d") is not None and r.get("n") is not None and r["n"] <= r["d"]


def _checkpoints(doc: Doc, store: Store) -> None:
    series = data.checkpoint_series(store)
    if not series:
        doc.empty("No training checkpoints embedded (e.g. `protiso-mini@step0`, `protiso-mini@step100`).")
        return
    doc.figure(figures.two_panel_lines(
        [(base, [r["step"] for r in v], [r["isoscore"] for r in v], [r["effective_dims"] for r in v])
         for (base, _), v in series.items()], "training step", ("IsoScore", "effective dimensions")),
        "checkpoints", "Isotropy of the last layer over training (step 0 = random initialisation).",
        prov([r for v in series.values() for r in v]))
    _metric_table(doc, "checkpoint-table", ["model", "step"], [r for v in series.values() for r in v],
                  lambda r: f'<td class="t">{esc(r["model"])}</td><td>{r["step"]}</td>')


def _group_label(group_by: str) -> str:
    if "list_contains(terms" in group_by:
        return "GO term (most frequent of the listed terms a protein carries)"
    return group_by


def _groups(doc: Doc, store: Store, max_bars: int = 15, min_n: int = 10) -> None:
    groups = data.group_rows(store)
    if not groups:
        doc.empty("No grouped isotropy results (`protiso isotropy --group-by ...`).")
        return
    doc.add(f'<p class="note">Groups of at least {min_n} proteins, largest first (at most {max_bars}); '
            "n under each bar. Hatched orange bars have n &le; d (fewer proteins than dimensions): "
            "their covariance has at most n &minus; 1 non-zero eigenvalues, so IsoScore and effective "
            "dimensions are biased low there (compare IsoScore* in table metrics).</p>")
    for (run_id, layer, filt, group_by), rows in groups.items():
        shown = [r for r in rows if r["n"] >= min_n][:max_bars]
        if not shown:
            doc.empty(f"{run_id}: no group of {_group_label(group_by)} has {min_n} proteins.")
            continue
        names = data.group_labels(store, [r["group_key"] for r in shown])
        labels = [str(names.get(r["group_key"], r["group_key"])) if r["group_key"] is not None else "(none)"
                  for r in shown]
        labels = [(s if len(s) <= 34 else s[:32] + "…") + f" (n={r['n']})" for s, r in zip(labels, shown)]
        flags = [_small(r) for r in shown]
        doc.figure(figures.bars(labels, [r["effective_dims"] for r in shown], "effective dimensions",
                                f"{shown[0]['model']}: by {_group_label(group_by)}", flags=flags,
                                flag_label=f"n ≤ d = {shown[0]['d']}: biased low"),
                   f"groups-{run_id}-{layer}", f"Effective dimensions per group ({_group_label(group_by)}), "
                   f"{len(shown)} largest groups"
                   + (f"; {sum(flags)} with n ≤ d (hatched)." if any(flags) else "."),
                   f"run {run_id} layer {layer} filter [{filter_text(filt)}] group-by [{group_by}] "
                   f"{len(shown)} groups, n={sum(r['n'] for r in shown)} proteins "
                   f"({min(r['n'] for r in shown)}-{max(r['n'] for r in shown)} per group, d={shown[0]['d']}) "
                   f"seed=none (deterministic); protiso {__version__}")
        _metric_table(doc, "group-table", ["group"], shown, lambda r: '<td class="t">'
                      f'{esc(names.get(r["group_key"], r["group_key"]) if r["group_key"] is not None else "(none)")}'
                      '</td>')


def _local(doc: Doc, store: Store) -> None:
    local = data.local_rows(store)
    if not local:
        doc.empty("No local results (embed with --local-stats, then `protiso isotropy --level local`).")
        return
    doc.add(f'<p class="note">The paper: about {data.PUBLISHED_LOCAL_PROTBERT} effective dimensions per '
            "amino-acid type on average for ProtBERT.</p>")
    summary = store.sql(data.Q.local_summary).to_pylist()
    if summary:
        doc.add('<table class="local-summary"><tr><th class="t">run</th><th>layer</th><th>residue types</th>'
                '<th>residues</th><th>mean effective dims</th><th>min</th><th>max</th></tr>')
        for r in summary:
            doc.add(f'<tr><td class="t">{esc(r["run_id"])}</td><td>{r["layer"]}</td><td>{r["n_residue_types"]}</td>'
                    f'<td>{r["n_residues"]}</td><td data-local-mean="{esc(r["run_id"])}/{r["layer"]}">'
                    f'{esc(fmt(r["mean_effective_dims"]))}</td><td>{esc(fmt(r["min_effective_dims"]))}</td>'
                    f'<td>{esc(fmt(r["max_effective_dims"]))}</td></tr>')
        doc.add("</table>")
    latest_layer: dict = {}
    for run_id, layer in local:
        latest_layer[run_id] = max(layer, latest_layer.get(run_id, layer))
    for run_id, layer in sorted(latest_layer.items()):
        rows = local[(run_id, layer)]
        per = [r for r in rows if r["group_by"] == "residue" and r["effective_dims"] is not None]
        if not per:
            continue
        mean = float(np.mean([r["effective_dims"] for r in per]))
        run_filter = store.scalar(data.Q.run_filter, {"run_id": run_id})
        doc.figure(figures.bars([r["group_key"] for r in per], [r["effective_dims"] for r in per],
                                "effective dimensions", f"{per[0]['model']} layer {layer}", mean,
                                f"mean {mean:.2f}", flags=[_small(r) for r in per],
                                flag_label=f"n ≤ d = {per[0]['d']} residues: biased low"),
                   f"local-{run_id}", "Effective dimensions of the residue vectors of each amino-acid type.",
                   f"run {run_id} layer {layer} level local, filter [{filter_text(run_filter)}] "
                   f"(the proteins embedded), n={sum(r['n'] for r in per)} residues, "
                   f"seed=none (deterministic); protiso {__version__}")
        _metric_table(doc, "local-table", ["residue"], rows,
                      lambda r: f'<td class="t">{esc(r["group_key"] or "all residues")}</td>')


def _pair_prov(c: dict) -> str:
    sample = f"fraction {c['fraction']}" if c.get("fraction") is not None else f"{c.get('n_proteins')} proteins"
    return (f"pair set {c['pair_set']} ({c.get('strategy')}, {sample}, filter [{filter_text(c.get('pair_filter'))}], "
            f"seed {c.get('seed')}); run {c['run_id']} layer {c['layer']}; alignment {c['alignment']}; "
            f"n={c['n_pairs']} pairs; protiso {__version__}")


def _correlations(doc: Doc, store: Store, rows: list[dict]) -> None:
    if not rows:
        doc.empty("No pair set with alignments and embedding distances (`protiso reproduce` or "
                  "`protiso pairs sample/align/distances`).")
        return
    doc.add('<p class="note">The paper (ProtBERT): cosine vs squared Euclidean 0.791, alignment score vs '
            "identity 0.847, cross terms between 0.014 and &minus;0.146. Here cosine is a similarity and "
            "squared Euclidean a distance, so their correlation is expected to be negative.</p>")
    for c in rows:
        m = np.full((len(CORR_VARS), len(CORR_VARS)), np.nan)
        for i, u in enumerate(CORR_VARS):
            for j, v in enumerate(CORR_VARS):
                val = 1.0 if u == v else c.get(f"{u}_{v}", c.get(f"{v}_{u}"))
                m[i, j] = np.nan if val is None else val
        doc.figure(figures.heatmap(m, list(CORR_VARS), f"{c['run_id']} L{c['layer']}"),
                   f"corr-{c['pair_set']}-{c['run_id']}", "Pearson correlations between embedding "
                   "cosine, squared Euclidean distance, alignment score, identity and GO Jaccard.", _pair_prov(c))
        doc.add(f'<table class="corr-table" data-pair-set="{esc(c["pair_set"])}" data-run="{esc(c["run_id"])}">'
                '<tr><th class="t">pair of variables</th><th>Pearson r</th></tr>')
        for key in ("cosine_sq_euclidean", "score_identity", "cosine_score", "cosine_identity",
                    "sq_euclidean_score", "sq_euclidean_identity"):
            doc.add(f'<tr><td class="t">{key}</td><td data-corr="{key}">{esc(fmt(c.get(key)))}</td></tr>')
        doc.add("</table>")


def _pairs(doc: Doc, store: Store, rows: list[dict]) -> None:
    if not rows:
        doc.empty("No pairs with embedding distances yet.")
        return
    for c in rows:
        pts = data.pair_points(store, c)
        doc.figure(figures.hexbins(pts), f"pairs-{c['pair_set']}-{c['run_id']}",
                   f"{c['run_id']}: embedding similarity and distance against sequence identity and alignment "
                   f"score ({len(pts['cosine'])} pairs drawn). The paper saw a wide spread at low identity "
                   "that narrows at high identity.", _pair_prov(c))


def _go(doc: Doc, store: Store, rows: list[dict]) -> None:
    rows = [c for c in rows if c.get("cosine_go_jaccard") is not None]
    if not rows:
        doc.empty("No pairs with GO annotations on both sides.")
        return
    for c in rows:
        bins = data.go_bins(store, c)
        doc.figure(figures.binned_means(
            bins, "GO-term Jaccard overlap of the pair",
            [("cosine", "mean cosine similarity", (-1.0, 1.0)), ("identity", "mean alignment identity", (0.0, 1.0))],
            f"{c['run_id']} layer {c['layer']}: {sum(b['n_pairs'] for b in bins):,} pairs with GO terms on both sides"),
            f"go-{c['pair_set']}-{c['run_id']}", f"{c['run_id']} layer {c['layer']}, "
            f"{sum(b['n_pairs'] for b in bins):,} pairs with GO terms on both sides: mean embedding similarity "
            "and sequence identity per bin of the overlap of the two proteins' GO terms, with 95% intervals "
            "of the mean and the pairs per bin; "
            "the y axes span the quantities' full ranges (cosine −1 to 1, identity 0 to 1).", _pair_prov(c))
        doc.add('<table class="go-bins"><tr><th class="t">GO Jaccard</th><th>pairs</th><th>mean cosine</th>'
                '<th>95% interval</th><th>mean identity</th><th>95% interval</th></tr>')
        for b in bins:
            doc.add(f'<tr><td class="t">{b["lo"]:.1f}–{b["hi"]:.1f}</td><td>{b["n_pairs"]}</td>'
                    f'<td>{esc(fmt(b["cosine"]))}</td><td>{_interval(b, "cosine")}</td>'
                    f'<td>{esc(fmt(b["identity"]))}</td><td>{_interval(b, "identity")}</td></tr>')
        doc.add("</table>")
        doc.add('<table class="go-table"><tr><th class="t">correlation with GO Jaccard</th><th>Pearson r</th></tr>')
        for key in ("cosine_go_jaccard", "sq_euclidean_go_jaccard", "score_go_jaccard", "identity_go_jaccard"):
            doc.add(f'<tr><td class="t">{key}</td><td data-corr="{key}">{esc(fmt(c.get(key)))}</td></tr>')
        doc.add("</table>")


def _intrinsic(doc: Doc, store: Store) -> None:
    series = data.intrinsic_series(store)
    if not series:
        doc.empty("No intrinsic dimension yet: `protiso isotropy --layer all --intrinsic`.")
        return
    doc.add('<p class="note">Intrinsic dimension counts the degrees of freedom of the manifold the '
            "proteins lie on (nonlinear); effective dimensions = IsoScore &times; (d &minus; 1) + 1 count "
            "the directions the variance spreads over (linear). TwoNN: Facco et al. 2017 (least squares, "
            "the largest 10% of distance ratios discarded); MLE: Levina &amp; Bickel 2005 with k neighbours "
            "(MacKay&ndash;Ghahramani average). Identical vectors are removed first and counted. For protein "
            "language models the intrinsic dimension across layers is reported to rise, peak and fall "
            "(Valeriani et al. 2023).</p>")
    for (run_id, filt), rows in series.items():
        layers = [r["layer"] for r in rows]
        name = rows[0]["model"]
        if len(rows) > 1:
            doc.figure(figures.lines(
                [("TwoNN", layers, [r["intrinsic_dim_twonn"] for r in rows]),
                 (f"MLE (k = {rows[0]['intrinsic_k']})", layers, [r["intrinsic_dim_mle"] for r in rows]),
                 ("effective dimensions (IsoScore)", layers, [r["effective_dims"] for r in rows])],
                "layer (hidden-state index)", "dimensions", title_text=f"{name}: intrinsic vs effective "
                "dimensions per layer", from_zero=True),
                f"intrinsic-{run_id}", f"{name}: intrinsic dimension (TwoNN, MLE) and IsoScore's effective "
                "dimensions per layer.", prov(rows, f"{rows[0]['intrinsic_n_duplicates']} duplicate vectors removed"))
        flagged = any(_small(r) for r in rows)
        doc.add(f'<table class="intrinsic-table" data-run="{esc(run_id)}"><tr><th class="t">{esc(name)}</th>'
                "<th>layer</th><th>n</th><th>d</th><th>TwoNN</th><th>MLE</th><th>effective dims</th>"
                "<th>duplicates</th>" + ('<th class="t">note</th>' if flagged else "") + "</tr>")
        for r in rows:
            note = ('<td class="t flag" data-flag="n-le-d">n &le; d</td>' if _small(r) else "<td></td>") if flagged else ""
            doc.add(f'<tr><td class="t id">{esc(run_id)}</td>{metric_cell(r, "layer")}{metric_cell(r, "n")}'
                    f'{metric_cell(r, "d")}{metric_cell(r, "intrinsic_dim_twonn")}{metric_cell(r, "intrinsic_dim_mle")}'
                    f'{metric_cell(r, "effective_dims")}{metric_cell(r, "intrinsic_n_duplicates")}{note}</tr>')
        doc.add("</table>")


def _rogue(doc: Doc, store: Store) -> None:
    rows = data.rogue_rows(store)
    if not rows:
        doc.empty("No rogue-dimension results (every `protiso isotropy` run stores them).")
        return
    doc.add('<p class="note">Rogue dimensions (Timkey &amp; van Schijndel 2021): the mean cosine '
            "similarity is a sum over dimensions of the products of the unit vectors&rsquo; coordinates; "
            "each dimension&rsquo;s share of that sum (over all ordered pairs, exact from the streaming "
            "statistics). A few dimensions carrying most of it make every pair look alike; the "
            "<code>standardize</code> transform (z-score per dimension) is their remedy.</p>")
    width = max(len(r["rogue_dims"] or []) for r in rows)
    doc.add('<table class="rogue-table"><tr><th class="t">model (run)</th><th>layer</th><th>n</th>'
            "<th>average cosine</th>" + "".join(f"<th>#{i + 1} dim (share)</th>" for i in range(width))
            + f"<th>top {width} together</th></tr>")
    for r in rows:
        cells = "".join(f'<td data-rogue-dim="{d}">{d} ({s:.1%})</td>'
                        for d, s in zip(r["rogue_dims"], r["rogue_shares"]))
        cells += "<td></td>" * (width - len(r["rogue_dims"]))
        doc.add(f'<tr data-run="{esc(r["run_id"])}"><td class="t">{esc(r["model"])}<br><span class="id">'
                f'{esc(r["run_id"])}</span></td>{metric_cell(r, "layer")}{metric_cell(r, "n")}'
                f'{metric_cell(r, "avg_cosine")}{cells}{metric_cell(r, "rogue_top_share")}</tr>')
    doc.add("</table>")


def _intervals(doc: Doc, store: Store) -> None:
    rows = data.interval_rows(store)
    if not rows:
        doc.empty("No bootstrap intervals (`protiso isotropy --bootstrap 200`).")
        return
    doc.add('<p class="note">Poisson bootstrap over proteins. IsoScore of a small sample is biased low, '
            "and its bootstrap distribution lower again, so the plain percentile interval can miss its "
            "own estimate; the BCa interval (bias-corrected and accelerated) shifts the percentiles by the "
            "bias and the skewness. Bias = mean of the replicates &minus; estimate; estimate &minus; bias is "
            "the bias-corrected estimate. Rows with n &le; 5 d are flagged: there the bias is several "
            "standard errors and no bootstrap interval comes close to its nominal coverage.</p>")
    doc.add('<div class="scroll"><table class="interval-table"><tr><th class="t">model (run)</th><th>layer</th>'
            '<th class="t">group</th><th>n</th><th>d</th><th>replicates</th><th class="t">interval</th>'
            "<th>IsoScore</th><th>low</th><th>high</th><th>bias</th><th>average cosine</th><th>low</th>"
            '<th>high</th><th>bias</th><th class="t">note</th></tr>')
    names = data.group_labels(store, [r["group_key"] for r in rows])
    for r in rows:
        group = "all" if not r["group_by"] else f'{r["group_by"]} = {names.get(r["group_key"], r["group_key"])}'
        weak = r["n"] is not None and r["d"] is not None and r["n"] <= 5 * r["d"]
        method = f'{(r["ci_method"] or "percentile").upper()} {r["ci_level"]:.0%}' if r["ci_level"] else ""
        doc.add(f'<tr><td class="t">{esc(r["model"])}<br><span class="id">{esc(r["run_id"])}</span></td>'
                f'{metric_cell(r, "layer")}<td class="t filter">{esc(group)}</td>{metric_cell(r, "n")}'
                f'{metric_cell(r, "d")}<td>{r["bootstrap"]}</td><td class="t">{esc(method)}</td>'
                + "".join(metric_cell(r, f) for f in ("isoscore", "isoscore_lo", "isoscore_hi", "isoscore_bias",
                                                      "avg_cosine", "avg_cosine_lo", "avg_cosine_hi", "avg_cosine_bias"))
                + ('<td class="t flag" data-flag="n-le-5d">n &le; 5 d: unreliable</td>' if weak else "<td></td>")
                + "</tr>")
    doc.add("</table></div>")


def _go_semantic(doc: Doc, store: Store) -> None:
    groups = data.go_semantic_rows(store)
    groups = {k: v for k, v in groups.items() if any(r["measure"] != "go_jaccard" for r in v)}
    if not groups:
        doc.empty("No GO semantic similarity yet: ingest an ontology (`protiso ingest go.obo`), then "
                  "`protiso correlate PAIR_SET` computes Resnik and Lin per pair.")
        return
    doc.add('<p class="note">Information content from the store&rsquo;s annotations propagated up '
            "is_a/part_of (true-path rule); Resnik = IC of the most informative common ancestor, Lin = "
            "2 IC(MICA) / (IC(a) + IC(b)); per protein pair the best-match average of the two term sets, "
            "per namespace (bp, mf, cc). Each measure is correlated over the pairs where it is defined "
            "(n pairs). Cosine is a similarity and squared Euclidean a distance: a functional signal in "
            "the embedding shows as positive and negative correlations respectively.</p>")
    for (pair_set, alignment, run_id, layer), rows in groups.items():
        c = dict(rows[0], n_pairs=max(r["n_pairs"] for r in rows))
        lin = max((r for r in rows if r["method"] == "lin"), key=lambda r: r["n_pairs"], default=None)
        if lin is not None:
            bins = data.go_measure_bins(store, c, lin["measure"])
            n = sum(b["n_pairs"] for b in bins)
            doc.figure(figures.binned_means(
                bins, f"Lin similarity, {lin['namespace'].replace('_', ' ')} (best-match average)",
                [("cosine", "mean cosine similarity", (-1.0, 1.0)), ("identity", "mean alignment identity", (0.0, 1.0))],
                f"{run_id} layer {layer}: {n:,} pairs with {lin['namespace'].replace('_', ' ')} terms on both sides"),
                f"go-semantic-{pair_set}-{run_id}", f"{run_id} layer {layer}: mean embedding cosine and sequence "
                f"identity per bin of the pair's Lin similarity ({lin['measure']}), {n:,} pairs, with 95% intervals "
                "of the mean and the pairs per bin; the y axes span the quantities' full ranges.", _pair_prov(
                    dict(c, n_pairs=n)))
        doc.add(f'<table class="go-semantic-table" data-pair-set="{esc(pair_set)}" data-run="{esc(run_id)}">'
                '<tr><th class="t">GO similarity</th><th>pairs</th><th>r with cosine</th>'
                "<th>r with squared Euclidean</th><th>r with alignment score</th><th>r with identity</th></tr>")
        for r in rows:
            doc.add(f'<tr><td class="t">{esc(r["measure"])}</td><td>{r["n_pairs"]:,}</td>'
                    + "".join(f'<td data-go-corr="{esc(r["measure"])}/{v}">{esc(fmt(r[v]))}</td>'
                              for v in ("cosine", "sq_euclidean", "score", "identity")) + "</tr>")
        doc.add("</table>")


def _interval(b: dict, key: str) -> str:
    """The 95% interval of a bin's mean (normal approximation), as text."""
    mean, sd, n = b.get(key), b.get(f"{key}_sd"), b.get("n_pairs") or 0
    if mean is None or sd is None or n < 2:
        return "n/a"
    half = 1.96 * sd / np.sqrt(n)
    return f"{mean - half:.4f} – {mean + half:.4f}"


def _runs(doc: Doc, store: Store) -> None:
    runs = data.runs(store)
    if not runs:
        doc.empty("No embedding runs.")
        return
    cols = ("run_id", "model", "model_id", "family", "dim", "layers", "pooling", "dtype", "max_length",
            "length_policy", "status", "n_done", "n_truncated", "n_failed", "local_stats", "filter",
            "revision")
    doc.add('<div class="scroll"><table><tr>' + "".join(f'<th class="t">{c}</th>' for c in cols) + "</tr>")
    for r in runs:
        doc.add("<tr>" + "".join(f'<td class="t{" id" if c == "run_id" else ""}">{esc(r.get(c))}</td>'
                                 for c in cols) + "</tr>")
    doc.add("</table></div>")


# ---------------------------------------------------------------------------- entry point

def _settings(doc: Doc, store: Store, settings: dict | None) -> None:
    """What the numbers below were computed with: the caller's settings (the demo's), and per run
    the residue limit with how many proteins it truncated, chunked or skipped."""
    items = []
    if settings:
        items.append("Run with: " + "; ".join(f"{esc(k)} = {esc(_setting_text(v))}" for k, v in settings.items()
                                              if v is not None and v != ""))
    for r in data.settings_rows(store):
        cut = {"truncated": r["n_truncated"], "chunked": r["n_chunked"], "skipped": r["n_skipped"]}
        done = (r["n_done"] or 0) + (r["n_skipped"] or 0)
        limit = f"at most {r['max_length']:,} residues per protein" if r["max_length"] else "no residue limit"
        what = ", ".join(f"{v:,} {k}" for k, v in cut.items() if v)
        items.append(f'<span data-settings-run="{esc(r["run_id"])}"><b>{esc(r["model"])}</b> (run {esc(r["run_id"])}): '
                     f"{limit} (longer ones: {esc(r['length_policy'])}"
                     + (f'; <span class="flag">{what} of {done:,} proteins</span>' if what else "; none affected")
                     + f"), {esc(r['dtype'])} on {esc(r['device'] or 'n/a')}, layers {esc(_setting_text(r['layers']))}, "
                     f"filter [{esc(filter_text(r['filter']))}]</span>")
    if items:
        doc.add('<div id="settings"><b>Settings</b><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>")


def _setting_text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_setting_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def build_report(store: Store, out_dir: str | os.PathLike | None = None, settings: dict | None = None) -> Path:
    """Write the report to out_dir/report.html (default: <store>/report) and return the path.
    `settings`: what the caller ran with (the demo's), shown at the top."""
    out = Path(out_dir) if out_dir is not None else store.root / "report"
    if out.exists() and not out.is_dir():
        raise InputError(f"report directory {out} exists and is not a directory")
    corr = data.correlation_rows(store)
    doc = Doc()
    builders = {"paper-table": _paper_table, "spectra": _spectra, "layers": _layers,
                "intrinsic": _intrinsic, "rogue": _rogue, "intervals": _intervals,
                "go-semantic": lambda d, s: _go_semantic(d, s),
                "checkpoints": _checkpoints, "groups": _groups, "local": _local,
                "correlations": lambda d, s: _correlations(d, s, corr),
                "pairs": lambda d, s: _pairs(d, s, corr), "go": lambda d, s: _go(d, s, corr), "runs": _runs}
    n_proteins = store.scalar(data.Q.protein_count)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(f'<h1>protiso report</h1><p class="note">Store {esc(store.root)}: {n_proteins:,} proteins. '
            f"Generated {now} by protiso {__version__}. Reproduces and extends "
            "&ldquo;A Look at the Isotropy of Pretrained Protein Language Models&rdquo; "
            "(Hakim, Roy, Rahman; arXiv 2510.10655).</p>")
    _settings(doc, store, settings)
    doc.add("<nav>" + "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title in SECTIONS) + "</nav>")
    doc.add('<p id="image-check" data-checked="no">Checking images&hellip;</p>')
    for sid, title in SECTIONS:
        doc.add(f'<section id="{sid}" data-section="{sid}"><h2>{esc(title)}</h2>')
        builders[sid](doc, store)
        doc.add("</section>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>protiso report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(doc.parts)
            + f"<script>{SCRIPT}</script></body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    tmp = out / f".{REPORT_NAME}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
