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
import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from protiso._version import __version__
from protiso.errors import InputError
from protiso.report import data, figures
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

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;
padding:1rem 2rem;color:#222;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td.t,th.t{text-align:left}figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
.scroll{overflow-x:auto;max-width:100%}
.prov{font-size:.78rem;color:#555;font-family:ui-monospace,monospace;word-break:break-word}
.empty{color:#8a6d3b;background:#fcf8e3;padding:.4rem .6rem}.note{font-size:.85rem;color:#444}
nav a{margin-right:.8rem;font-size:.85rem}#image-check{font-size:.8rem;color:#555}
.id{white-space:nowrap;font-family:ui-monospace,monospace;font-size:.78rem;color:#444}
td.filter{max-width:14rem;word-break:break-word;font-size:.78rem}#paper-table-rows{font-size:.8rem}.na{color:#777;font-style:italic}td.na{text-align:center}.flag{color:#a3561c;font-weight:600}
th.pub,td.pub{background:#f7f7fb}#settings{font-size:.85rem;background:#f4f8fb;padding:.4rem .8rem;
border-left:3px solid #4c72b0}#settings ul{margin:.2rem 0;padding-left:1.2rem}
"""
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                   .map(function (i) { return i.getAttribute('data-figure') || i.alt; });
  var el = document.getElementById('image-check');
  el.setAttribute('data-images', String(imgs.length));
  el.setAttribute('data-broken', broken.join('|'));
  el.setAttribute('data-checked', 'yes');
  el.textContent = broken.length ? ('Images that failed to load: ' + broken.join(', '))
                                 : ('All ' + imgs.length + ' images loaded.');
});
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def fmt(value) -> str:
    """How numbers are shown: 6 significant digits, integers in full."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.6g}"


def metric_cell(row: dict, fieldname: str) -> str:
    """A table cell showing metrics[field] of row['metric_id'], tagged for checking."""
    return (f'<td data-metric-id="{int(row["metric_id"])}" data-field="{_e(fieldname)}">'
            f'{_e(fmt(row[fieldname]))}</td>')


def _filter_text(f: str | None) -> str:
    return f if f else "all proteins"


@dataclass
class _Doc:
    parts: list[str] = field(default_factory=list)
    n_figures: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, uri: str, name: str, caption: str, provenance: str) -> None:
        self.n_figures += 1
        clipped = "|".join(getattr(uri, "clipped", ()))
        self.add(f'<figure data-figure="{_e(name)}"><img src="{uri}" alt="{_e(caption)}" '
                 f'data-figure="{_e(name)}" data-clipped="{_e(clipped)}"><figcaption>{_e(caption)}</figcaption>'
                 f'<div class="prov">provenance: {_e(provenance)}</div></figure>')

    def empty(self, text: str) -> None:
        self.add(f'<p class="empty">{_e(text)}</p>')


def _prov(rows: list[dict], extra: str = "") -> str:
    """run, filter, n, seed (and more) of the rows behind a figure."""
    bits = []
    for r in rows:
        seed = r.get("seed")
        bits.append(f"run {r['run_id']} layer {r.get('layer')} filter [{_filter_text(r.get('filter'))}] "
                    f"n={r.get('n')} seed={'none (deterministic)' if seed is None else seed}")
    text = "; ".join(bits)
    return (text + ("; " + extra if extra else "")) + f"; protiso {__version__}"


# ---------------------------------------------------------------------------- sections

def _diff(measured, published, digits: int) -> str:
    if measured is None or published is None or (isinstance(measured, float) and np.isnan(measured)):
        return "n/a"
    return f"{float(measured) - float(published):+.{digits}f}"


def _paper_table(doc: _Doc, store: Store) -> None:
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
                f'[{_e(_filter_text(next(iter(filters))))}].</p>')
    filter_head = "" if one_filter else '<th class="t">filter</th>'
    doc.add('<table id="paper-table-rows"><tr><th class="t">model (run)</th><th>layer</th>'
            f'{filter_head}<th>n</th><th>dim</th>'
            '<th class="pub">IsoScore published</th><th>IsoScore measured</th><th>&Delta; IsoScore</th>'
            '<th class="pub">effective dims published</th><th>effective dims measured</th>'
            '<th>&Delta; effective dims</th><th>average cosine</th></tr>')

    def lead(label: str, r: dict) -> str:
        filt = "" if one_filter else f'<td class="t filter">{_e(_filter_text(r["filter"]))}</td>'
        return (f'<td class="t">{label}<br><span class="id">{_e(r["run_id"])}</span></td>'
                f'{metric_cell(r, "layer")}{filt}{metric_cell(r, "n")}{metric_cell(r, "d")}')

    for key, pub in data.PUBLISHED.items():
        runs = by_key.get(key, [])
        pub_iso = f'<td class="pub" data-published="{_e(pub["label"])}">{pub["isoscore"]:.6f}</td>'
        pub_dims = f'<td class="pub" data-published-dims="{_e(pub["label"])}">{pub["effective_dims"]}</td>'
        if not runs:
            doc.add(f'<tr data-published-only="{_e(key)}"><td class="t">{_e(pub["label"])}<br>'
                    f'<span class="na">no run in this store</span></td><td class="na">&ndash;</td>'
                    + ("" if one_filter else '<td class="na">&ndash;</td>')
                    + f'<td class="na">&ndash;</td><td>{pub["dim"]}</td>{pub_iso}'
                    f'<td class="na" colspan="2">not measured here</td>{pub_dims}'
                    '<td class="na" colspan="3">not measured here</td></tr>')
        for r in runs:
            doc.add(f'<tr data-run="{_e(r["run_id"])}">{lead(_e(pub["label"]) + " (" + _e(r["model"]) + ")", r)}'
                    f'{pub_iso}{metric_cell(r, "isoscore")}'
                    f'<td data-diff="isoscore">{_diff(r["isoscore"], pub["isoscore"], 6)}</td>'
                    f'{pub_dims}{metric_cell(r, "effective_dims")}'
                    f'<td data-diff="effective_dims">{_diff(r["effective_dims"], pub["effective_dims"], 1)}</td>'
                    f'{metric_cell(r, "avg_cosine")}</tr>')
    for r in others:
        flag = ' <span class="flag" title="fewer proteins than dimensions">n &le; d</span>' if _small(r) else ""
        doc.add(f'<tr data-run="{_e(r["run_id"])}">{lead(_e(r["model"]) + flag, r)}'
                f'<td class="na pub">not in the paper</td>{metric_cell(r, "isoscore")}<td class="na">&ndash;</td>'
                f'<td class="na pub">not in the paper</td>{metric_cell(r, "effective_dims")}<td class="na">&ndash;</td>'
                f'{metric_cell(r, "avg_cosine")}</tr>')
    doc.add("</table>")


def _spectra(doc: _Doc, store: Store) -> None:
    rows = data.paper_table(store)
    if not rows:
        doc.empty("No runs with isotropy results.")
        return
    series, provs = [], []
    for r in rows:
        n, lam, source = data.spectrum(store, r["run_id"], r["layer"], r["filter"])
        series.append((f"{r['model']} (L{r['layer']})", lam))
        provs.append(f"run {r['run_id']} layer {r['layer']} filter [{_filter_text(r['filter'])}] n={n} "
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
                   f"run {run_id} filter [{_filter_text(filt)}] seed=none (deterministic); "
                   + "; ".join(provs) + f"; protiso {__version__}")


def _layers(doc: _Doc, store: Store) -> None:
    series = data.layer_series(store)
    if not series:
        doc.empty("No run has isotropy results at more than one layer (embed with --layers all).")
        return
    doc.figure(figures.two_panel_lines(
        [(f"{v[0]['model']}", [r["layer"] for r in v], [r["isoscore"] for r in v],
          [r["effective_dims"] for r in v]) for v in series.values()],
        "layer (hidden-state index)", ("IsoScore", "effective dimensions")),
        "layers", "IsoScore and effective dimensions per layer.",
        _prov([r for v in series.values() for r in v]))
    _metric_table(doc, "layer-table", ["run", "layer"], [r for v in series.values() for r in v],
                  lambda r: f'<td class="t id">{_e(r["run_id"])}</td>{metric_cell(r, "layer")}')


def _metric_table(doc: _Doc, css_class: str, lead_headers: list[str], rows: list[dict], lead) -> None:
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


def _checkpoints(doc: _Doc, store: Store) -> None:
    series = data.checkpoint_series(store)
    if not series:
        doc.empty("No training checkpoints embedded (e.g. `protiso-mini@step0`, `protiso-mini@step100`).")
        return
    doc.figure(figures.two_panel_lines(
        [(base, [r["step"] for r in v], [r["isoscore"] for r in v], [r["effective_dims"] for r in v])
         for (base, _), v in series.items()], "training step", ("IsoScore", "effective dimensions")),
        "checkpoints", "Isotropy of the last layer over training (step 0 = random initialisation).",
        _prov([r for v in series.values() for r in v]))
    _metric_table(doc, "checkpoint-table", ["model", "step"], [r for v in series.values() for r in v],
                  lambda r: f'<td class="t">{_e(r["model"])}</td><td>{r["step"]}</td>')


def _group_label(group_by: str) -> str:
    if "list_contains(terms" in group_by:
        return "GO term (most frequent of the listed terms a protein carries)"
    return group_by


def _groups(doc: _Doc, store: Store, max_bars: int = 15, min_n: int = 10) -> None:
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
                   f"run {run_id} layer {layer} filter [{_filter_text(filt)}] group-by [{group_by}] "
                   f"{len(shown)} groups, n={sum(r['n'] for r in shown)} proteins "
                   f"({min(r['n'] for r in shown)}-{max(r['n'] for r in shown)} per group, d={shown[0]['d']}) "
                   f"seed=none (deterministic); protiso {__version__}")
        _metric_table(doc, "group-table", ["group"], shown, lambda r: '<td class="t">'
                      f'{_e(names.get(r["group_key"], r["group_key"]) if r["group_key"] is not None else "(none)")}'
                      '</td>')


def _local(doc: _Doc, store: Store) -> None:
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
            doc.add(f'<tr><td class="t">{_e(r["run_id"])}</td><td>{r["layer"]}</td><td>{r["n_residue_types"]}</td>'
                    f'<td>{r["n_residues"]}</td><td data-local-mean="{_e(r["run_id"])}/{r["layer"]}">'
                    f'{_e(fmt(r["mean_effective_dims"]))}</td><td>{_e(fmt(r["min_effective_dims"]))}</td>'
                    f'<td>{_e(fmt(r["max_effective_dims"]))}</td></tr>')
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
                   f"run {run_id} layer {layer} level local, filter [{_filter_text(run_filter)}] "
                   f"(the proteins embedded), n={sum(r['n'] for r in per)} residues, "
                   f"seed=none (deterministic); protiso {__version__}")
        _metric_table(doc, "local-table", ["residue"], rows,
                      lambda r: f'<td class="t">{_e(r["group_key"] or "all residues")}</td>')


def _pair_prov(c: dict) -> str:
    sample = f"fraction {c['fraction']}" if c.get("fraction") is not None else f"{c.get('n_proteins')} proteins"
    return (f"pair set {c['pair_set']} ({c.get('strategy')}, {sample}, filter [{_filter_text(c.get('pair_filter'))}], "
            f"seed {c.get('seed')}); run {c['run_id']} layer {c['layer']}; alignment {c['alignment']}; "
            f"n={c['n_pairs']} pairs; protiso {__version__}")


def _correlations(doc: _Doc, store: Store, rows: list[dict]) -> None:
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
        doc.add(f'<table class="corr-table" data-pair-set="{_e(c["pair_set"])}" data-run="{_e(c["run_id"])}">'
                '<tr><th class="t">pair of variables</th><th>Pearson r</th></tr>')
        for key in ("cosine_sq_euclidean", "score_identity", "cosine_score", "cosine_identity",
                    "sq_euclidean_score", "sq_euclidean_identity"):
            doc.add(f'<tr><td class="t">{key}</td><td data-corr="{key}">{_e(fmt(c.get(key)))}</td></tr>')
        doc.add("</table>")


def _pairs(doc: _Doc, store: Store, rows: list[dict]) -> None:
    if not rows:
        doc.empty("No pairs with embedding distances yet.")
        return
    for c in rows:
        pts = data.pair_points(store, c)
        doc.figure(figures.hexbins(pts), f"pairs-{c['pair_set']}-{c['run_id']}",
                   f"{c['run_id']}: embedding similarity and distance against sequence identity and alignment "
                   f"score ({len(pts['cosine'])} pairs drawn). The paper saw a wide spread at low identity "
                   "that narrows at high identity.", _pair_prov(c))


def _go(doc: _Doc, store: Store, rows: list[dict]) -> None:
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
                    f'<td>{_e(fmt(b["cosine"]))}</td><td>{_interval(b, "cosine")}</td>'
                    f'<td>{_e(fmt(b["identity"]))}</td><td>{_interval(b, "identity")}</td></tr>')
        doc.add("</table>")
        doc.add('<table class="go-table"><tr><th class="t">correlation with GO Jaccard</th><th>Pearson r</th></tr>')
        for key in ("cosine_go_jaccard", "sq_euclidean_go_jaccard", "score_go_jaccard", "identity_go_jaccard"):
            doc.add(f'<tr><td class="t">{key}</td><td data-corr="{key}">{_e(fmt(c.get(key)))}</td></tr>')
        doc.add("</table>")


def _intrinsic(doc: _Doc, store: Store) -> None:
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
                "dimensions per layer.", _prov(rows, f"{rows[0]['intrinsic_n_duplicates']} duplicate vectors removed"))
        flagged = any(_small(r) for r in rows)
        doc.add(f'<table class="intrinsic-table" data-run="{_e(run_id)}"><tr><th class="t">{_e(name)}</th>'
                "<th>layer</th><th>n</th><th>d</th><th>TwoNN</th><th>MLE</th><th>effective dims</th>"
                "<th>duplicates</th>" + ('<th class="t">note</th>' if flagged else "") + "</tr>")
        for r in rows:
            note = ('<td class="t flag" data-flag="n-le-d">n &le; d</td>' if _small(r) else "<td></td>") if flagged else ""
            doc.add(f'<tr><td class="t id">{_e(run_id)}</td>{metric_cell(r, "layer")}{metric_cell(r, "n")}'
                    f'{metric_cell(r, "d")}{metric_cell(r, "intrinsic_dim_twonn")}{metric_cell(r, "intrinsic_dim_mle")}'
                    f'{metric_cell(r, "effective_dims")}{metric_cell(r, "intrinsic_n_duplicates")}{note}</tr>')
        doc.add("</table>")


def _rogue(doc: _Doc, store: Store) -> None:
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
        doc.add(f'<tr data-run="{_e(r["run_id"])}"><td class="t">{_e(r["model"])}<br><span class="id">'
                f'{_e(r["run_id"])}</span></td>{metric_cell(r, "layer")}{metric_cell(r, "n")}'
                f'{metric_cell(r, "avg_cosine")}{cells}{metric_cell(r, "rogue_top_share")}</tr>')
    doc.add("</table>")


def _intervals(doc: _Doc, store: Store) -> None:
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
        doc.add(f'<tr><td class="t">{_e(r["model"])}<br><span class="id">{_e(r["run_id"])}</span></td>'
                f'{metric_cell(r, "layer")}<td class="t filter">{_e(group)}</td>{metric_cell(r, "n")}'
                f'{metric_cell(r, "d")}<td>{r["bootstrap"]}</td><td class="t">{_e(method)}</td>'
                + "".join(metric_cell(r, f) for f in ("isoscore", "isoscore_lo", "isoscore_hi", "isoscore_bias",
                                                      "avg_cosine", "avg_cosine_lo", "avg_cosine_hi", "avg_cosine_bias"))
                + ('<td class="t flag" data-flag="n-le-5d">n &le; 5 d: unreliable</td>' if weak else "<td></td>")
                + "</tr>")
    doc.add("</table></div>")


def _go_semantic(doc: _Doc, store: Store) -> None:
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
        doc.add(f'<table class="go-semantic-table" data-pair-set="{_e(pair_set)}" data-run="{_e(run_id)}">'
                '<tr><th class="t">GO similarity</th><th>pairs</th><th>r with cosine</th>'
                "<th>r with squared Euclidean</th><th>r with alignment score</th><th>r with identity</th></tr>")
        for r in rows:
            doc.add(f'<tr><td class="t">{_e(r["measure"])}</td><td>{r["n_pairs"]:,}</td>'
                    + "".join(f'<td data-go-corr="{_e(r["measure"])}/{v}">{_e(fmt(r[v]))}</td>'
                              for v in ("cosine", "sq_euclidean", "score", "identity")) + "</tr>")
        doc.add("</table>")


def _interval(b: dict, key: str) -> str:
    """The 95% interval of a bin's mean (normal approximation), as text."""
    mean, sd, n = b.get(key), b.get(f"{key}_sd"), b.get("n_pairs") or 0
    if mean is None or sd is None or n < 2:
        return "n/a"
    half = 1.96 * sd / np.sqrt(n)
    return f"{mean - half:.4f} – {mean + half:.4f}"


def _runs(doc: _Doc, store: Store) -> None:
    runs = data.runs(store)
    if not runs:
        doc.empty("No embedding runs.")
        return
    cols = ("run_id", "model", "model_id", "family", "dim", "layers", "pooling", "dtype", "max_length",
            "length_policy", "status", "n_done", "n_truncated", "n_failed", "local_stats", "filter",
            "revision")
    doc.add('<div class="scroll"><table><tr>' + "".join(f'<th class="t">{c}</th>' for c in cols) + "</tr>")
    for r in runs:
        doc.add("<tr>" + "".join(f'<td class="t{" id" if c == "run_id" else ""}">{_e(r.get(c))}</td>'
                                 for c in cols) + "</tr>")
    doc.add("</table></div>")


# ---------------------------------------------------------------------------- entry point

def _settings(doc: _Doc, store: Store, settings: dict | None) -> None:
    """What the numbers below were computed with: the caller's settings (the demo's), and per run
    the residue limit with how many proteins it truncated, chunked or skipped."""
    items = []
    if settings:
        items.append("Run with: " + "; ".join(f"{_e(k)} = {_e(_setting_text(v))}" for k, v in settings.items()
                                              if v is not None and v != ""))
    for r in data.settings_rows(store):
        cut = {"truncated": r["n_truncated"], "chunked": r["n_chunked"], "skipped": r["n_skipped"]}
        done = (r["n_done"] or 0) + (r["n_skipped"] or 0)
        limit = f"at most {r['max_length']:,} residues per protein" if r["max_length"] else "no residue limit"
        what = ", ".join(f"{v:,} {k}" for k, v in cut.items() if v)
        items.append(f'<span data-settings-run="{_e(r["run_id"])}"><b>{_e(r["model"])}</b> (run {_e(r["run_id"])}): '
                     f"{limit} (longer ones: {_e(r['length_policy'])}"
                     + (f'; <span class="flag">{what} of {done:,} proteins</span>' if what else "; none affected")
                     + f"), {_e(r['dtype'])} on {_e(r['device'] or 'n/a')}, layers {_e(_setting_text(r['layers']))}, "
                     f"filter [{_e(_filter_text(r['filter']))}]</span>")
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
    doc = _Doc()
    builders = {"paper-table": _paper_table, "spectra": _spectra, "layers": _layers,
                "intrinsic": _intrinsic, "rogue": _rogue, "intervals": _intervals,
                "go-semantic": lambda d, s: _go_semantic(d, s),
                "checkpoints": _checkpoints, "groups": _groups, "local": _local,
                "correlations": lambda d, s: _correlations(d, s, corr),
                "pairs": lambda d, s: _pairs(d, s, corr), "go": lambda d, s: _go(d, s, corr), "runs": _runs}
    n_proteins = store.scalar(data.Q.protein_count)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(f'<h1>protiso report</h1><p class="note">Store {_e(store.root)}: {n_proteins:,} proteins. '
            f"Generated {now} by protiso {__version__}. Reproduces and extends "
            "&ldquo;A Look at the Isotropy of Pretrained Protein Language Models&rdquo; "
            "(Hakim, Roy, Rahman; arXiv 2510.10655).</p>")
    _settings(doc, store, settings)
    doc.add("<nav>" + "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title in SECTIONS) + "</nav>")
    doc.add('<p id="image-check" data-checked="no">Checking images&hellip;</p>')
    for sid, title in SECTIONS:
        doc.add(f'<section id="{sid}" data-section="{sid}"><h2>{_e(title)}</h2>')
        builders[sid](doc, store)
        doc.add("</section>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>protiso report</title>"
            f"<style>{_CSS}</style></head><body>" + "\n".join(doc.parts)
            + f"<script>{_SCRIPT}</script></body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    tmp = out / f".{REPORT_NAME}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
