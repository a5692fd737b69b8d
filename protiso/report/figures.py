"""Figures for the report, drawn with matplotlib (Agg) and returned as PNG data URIs, so the
HTML file carries its images and opens from disk.

Every figure is checked before it is saved: titles are wrapped to the width of their axes,
and anything still drawn outside the canvas is listed in the returned URI's `clipped` (the
report puts it on the <img>, where the browser test looks). Integer x data get integer ticks."""
from __future__ import annotations

import base64
import io
import textwrap

import numpy as np

_DPI = 100
FLAG_COLOR = "#dd8452"      # bars of results with n <= d


class Png(str):
    """A PNG data URI, with the texts of the figure that did not fit its canvas."""

    clipped: tuple[str, ...] = ()


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def clipped(fig) -> list[str]:
    """What of the figure is drawn outside its canvas: each axes (with its title, labels, tick
    labels and legend) and the figure's own texts, by name."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    out = []
    for i, ax in enumerate(fig.axes):
        box = ax.get_tightbbox(renderer)
        if box is None:
            continue
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            out.append(ax.get_title() or ax.get_ylabel() or f"axes {i}")
    for text in fig.texts:
        box = text.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            out.append(text.get_text())
    return out


def to_data_uri(fig) -> Png:
    """The figure as a PNG data URI (closing it), with what did not fit in `.clipped`."""
    problems = clipped(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    _plt().close(fig)
    uri = Png("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    uri.clipped = tuple(problems)
    return uri


def title(ax, text: str, fontsize: float = 9) -> None:
    """An axes title wrapped to the width of the axes."""
    fig = ax.figure
    width_in = fig.get_figwidth() * ax.get_position().width
    chars = max(20, int(width_in * 72 / (fontsize * 0.6)))
    ax.set_title("\n".join(textwrap.wrap(text, chars)) or text, fontsize=fontsize)


def _integer_ticks(ax, x) -> None:
    from matplotlib.ticker import MaxNLocator

    values = [v for v in x if v is not None]
    if values and all(float(v).is_integer() for v in values):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def spectra(series: list[tuple[str, np.ndarray]]) -> Png:
    """Normalised eigenvalue spectra (share of variance per component, log scale)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for label, lam in series:
        lam = np.asarray(lam, dtype=float)
        total = lam.sum()
        share = lam / total if total > 0 else lam
        keep = share > 1e-10      # numerically zero directions (e.g. left by LayerNorm) are not drawn
        ax.plot(np.arange(1, len(lam) + 1)[keep], share[keep], label=label, lw=1.5)
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("principal component (rank)")
    ax.set_ylabel("share of variance")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return to_data_uri(fig)


def lines(series: list[tuple[str, list, list]], xlabel: str, ylabel: str, logy: bool = False,
          title_text: str = "", from_zero: bool = False) -> Png:
    """One line (with markers) per series of (label, x, y); integer x get integer ticks.
    `from_zero`: the y axis starts at 0 (counts of dimensions), so no difference is magnified."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    for label, x, y in series:
        ax.plot(x, y, marker="o", label=label)
        _integer_ticks(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    elif from_zero:
        ax.set_ylim(0, None)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title_text:
        title(ax, title_text)
    return to_data_uri(fig)


def two_panel_lines(series: list[tuple[str, list, list, list]], xlabel: str,
                    ylabels: tuple[str, str]) -> Png:
    """Two side-by-side line plots sharing x: (label, x, y_left, y_right); integer x get
    integer ticks (layers, training steps)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for label, x, y1, y2 in series:
        axes[0].plot(x, y1, marker="o", label=label)
        axes[1].plot(x, y2, marker="o", label=label)
        for ax in axes:
            _integer_ticks(ax, x)
    for ax, yl in zip(axes, ylabels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return to_data_uri(fig)


def bars(labels: list[str], values: list[float], ylabel: str, title_text: str = "",
         reference: float | None = None, reference_label: str = "", flags: list[bool] | None = None,
         flag_label: str = "") -> Png:
    """One bar per label; bars whose flag is set are drawn hatched in another colour and named in
    the legend (`flag_label`), e.g. results with n <= d."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(labels) + 2), 3.8), constrained_layout=True)
    flags = list(flags) if flags is not None else [False] * len(labels)
    colors = [FLAG_COLOR if f else "#4c72b0" for f in flags]
    drawn = ax.bar(range(len(labels)), values, color=colors)
    for bar, flag in zip(drawn, flags):
        if flag:
            bar.set_hatch("//")
    ax.set_xticks(range(len(labels)))
    long = max((len(s) for s in labels), default=0) > 3
    ax.set_xticklabels(labels, rotation=45 if long else 0, ha="right" if long else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    handles = []
    if reference is not None:
        handles.append(ax.axhline(reference, color="#c44e52", ls="--", label=reference_label))
        values = list(values) + [reference]
    if any(flags):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor=FLAG_COLOR, hatch="//", label=flag_label or "flagged"))
    if handles:   # headroom above the tallest bar, so the legend covers none
        top = max((v for v in values if v is not None and np.isfinite(v)), default=1.0)
        ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
        ax.legend(handles=handles, fontsize=8, loc="upper right")
    if title_text:
        title(ax, title_text)
    ax.grid(alpha=0.3, axis="y")
    return to_data_uri(fig)


def heatmap(matrix: np.ndarray, names: list[str], title_text: str = "") -> Png:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.6), constrained_layout=True)
    m = np.asarray(matrix, dtype=float)
    im = ax.imshow(np.nan_to_num(m, nan=0.0), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, "n/a" if np.isnan(m[i, j]) else f"{m[i, j]:.3f}", ha="center", va="center",
                    fontsize=7, color="white" if abs(np.nan_to_num(m[i, j])) > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="Pearson r")
    if title_text:
        title(ax, title_text)
    return to_data_uri(fig)


def binned_means(bins: list[dict], xlabel: str, panels: list[tuple[str, str, tuple[float, float]]],
                 title_text: str = "") -> Png:
    """Means per bin with 95% intervals of the mean (1.96 sd / sqrt(n)) and n under each bin.

    bins: dicts with 'lo', 'hi', 'n_pairs' and, per panel key, '<key>' (mean) and '<key>_sd';
    panels: (key, y label, y range): the range is the quantity's natural one (e.g. cosine
    similarity [-1, 1] or identity [0, 1]), widened if an interval reaches past it, so a
    small difference is not magnified by an automatic zoom."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), constrained_layout=True)
    axes = np.atleast_1d(axes)
    x = np.arange(len(bins))
    n = np.array([b["n_pairs"] for b in bins], dtype=float)
    for ax, (key, ylabel, (ymin, ymax)) in zip(axes, panels):
        mean = np.array([np.nan if b[key] is None else b[key] for b in bins], dtype=float)
        sd = np.array([np.nan if b.get(f"{key}_sd") is None else b[f"{key}_sd"] for b in bins], dtype=float)
        half = 1.96 * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1))
        ax.errorbar(x, mean, yerr=half, marker="o", capsize=4, lw=1.5)
        lo = np.nanmin(mean - half) if np.isfinite(mean).any() else ymin
        hi = np.nanmax(mean + half) if np.isfinite(mean).any() else ymax
        bottom, top = min(ymin, lo), max(ymax, hi)
        ax.set_ylim(bottom, top)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{b['lo']:.1f}–{b['hi']:.1f}\nn={int(ni):,}" for b, ni in zip(bins, n)], fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if title_text:
        fig.suptitle(title_text, fontsize=9)
    return to_data_uri(fig)


def hexbins(points: dict[str, np.ndarray]) -> Png:
    """Embedding cosine / squared Euclidean distance against identity and alignment score."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), constrained_layout=True)
    for i, y in enumerate(("cosine", "sq_euclidean")):
        for j, x in enumerate(("identity", "score")):
            ax = axes[i][j]
            if len(points[x]):
                hb = ax.hexbin(points[x], points[y], gridsize=40, bins="log", mincnt=1, cmap="viridis")
                fig.colorbar(hb, ax=ax, label="pairs (log)")
            ax.set_xlabel("alignment identity" if x == "identity" else "alignment score (PAM250)")
            ax.set_ylabel("cosine similarity" if y == "cosine" else "squared Euclidean distance")
    return to_data_uri(fig)
