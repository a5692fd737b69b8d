"""Figures for the report, drawn with matplotlib (Agg) and returned as PNG data URIs, so the
HTML file carries its images and opens from disk."""
from __future__ import annotations

import base64
import io

import numpy as np

_DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def spectra(series: list[tuple[str, np.ndarray]]) -> str:
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


def lines(series: list[tuple[str, list, list]], xlabel: str, ylabel: str, logy: bool = False) -> str:
    """One line (with markers) per series of (label, x, y)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6), constrained_layout=True)
    for label, x, y in series:
        ax.plot(x, y, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_data_uri(fig)


def two_panel_lines(series: list[tuple[str, list, list, list]], xlabel: str,
                    ylabels: tuple[str, str]) -> str:
    """Two side-by-side line plots sharing x: (label, x, y_left, y_right)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for label, x, y1, y2 in series:
        axes[0].plot(x, y1, marker="o", label=label)
        axes[1].plot(x, y2, marker="o", label=label)
    for ax, yl in zip(axes, ylabels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return to_data_uri(fig)


def bars(labels: list[str], values: list[float], ylabel: str, title: str = "",
         reference: float | None = None, reference_label: str = "") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(labels) + 2), 3.6), constrained_layout=True)
    ax.bar(range(len(labels)), values, color="#4c72b0")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45 if max((len(s) for s in labels), default=0) > 3 else 0,
                       ha="right" if max((len(s) for s in labels), default=0) > 3 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if reference is not None:
        ax.axhline(reference, color="#c44e52", ls="--", label=reference_label)
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return to_data_uri(fig)


def heatmap(matrix: np.ndarray, names: list[str], title: str = "") -> str:
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
    if title:
        ax.set_title(title, fontsize=9)
    return to_data_uri(fig)


def hexbins(points: dict[str, np.ndarray]) -> str:
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
