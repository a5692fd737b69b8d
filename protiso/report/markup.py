"""The report's HTML building blocks: style, the image check script, escaping, number format,
metric cells tagged for checking against the catalog, the document being built, provenance lines."""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from protiso._version import __version__

CSS = """
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
SCRIPT = """
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


def esc(x) -> str:
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
    return (f'<td data-metric-id="{int(row["metric_id"])}" data-field="{esc(fieldname)}">'
            f'{esc(fmt(row[fieldname]))}</td>')


def filter_text(f: str | None) -> str:
    return f if f else "all proteins"


@dataclass
class Doc:
    parts: list[str] = field(default_factory=list)
    n_figures: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, uri: str, name: str, caption: str, provenance: str) -> None:
        self.n_figures += 1
        clipped = "|".join(getattr(uri, "clipped", ()))
        self.add(f'<figure data-figure="{esc(name)}"><img src="{uri}" alt="{esc(caption)}" '
                 f'data-figure="{esc(name)}" data-clipped="{esc(clipped)}"><figcaption>{esc(caption)}</figcaption>'
                 f'<div class="prov">provenance: {esc(provenance)}</div></figure>')

    def empty(self, text: str) -> None:
        self.add(f'<p class="empty">{esc(text)}</p>')


def prov(rows: list[dict], extra: str = "") -> str:
    """run, filter, n, seed (and more) of the rows behind a figure."""
    bits = []
    for r in rows:
        seed = r.get("seed")
        bits.append(f"run {r['run_id']} layer {r.get('layer')} filter [{filter_text(r.get('filter'))}] "
                    f"n={r.get('n')} seed={'none (deterministic)' if seed is None else seed}")
    text = "; ".join(bits)
    return (text + ("; " + extra if extra else "")) + f"; protiso {__version__}"
