"""The card's figures: PNGs rendered with matplotlib's Agg backend, byte-identical on rerun."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from curate.io.atomic import atomic_path

_PNG_METADATA = {"Software": None}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "font.size": 9, "svg.hashsalt": "curate"})
    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_METADATA, bbox_inches="tight")
    _pyplot().close(fig)


def funnel(stages: list[dict[str, Any]], path: Path) -> None:
    """Records kept after each stage, with what each stage rejected stacked on top."""
    plt = _pyplot()
    names = [s["name"] for s in stages]
    kept = np.array([s["kept"] for s in stages])
    rejected = np.array([s["rejected"] for s in stages])
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(stages)))
    y = np.arange(len(stages))[::-1]
    ax.barh(y, kept, color="#4C72B0", label="kept")
    ax.barh(y, rejected, left=kept, color="#DD8452", label="rejected")
    for yi, k, r in zip(y, kept, rejected, strict=True):
        ax.text(k + r, yi, f" {k:,} kept / {r:,} rejected", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlabel("records")
    ax.set_xlim(0, max(1, int((kept + rejected).max())) * 1.45)
    ax.set_title("Funnel: records in, kept and rejected per stage")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def histograms(series: dict[str, np.ndarray], path: Path, title: str, xlabel: str, log: bool = True) -> None:
    """Overlaid histograms on shared bins (log-spaced for lengths)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    values = [v for v in series.values() if v.size]
    if values:
        low = max(1.0, float(min(v.min() for v in values)))
        high = max(low + 1, float(max(v.max() for v in values)))
        bins = np.geomspace(low, high, 40) if log else np.linspace(low, high, 40)
        for (label, data), color in zip(series.items(), ("#999999", "#4C72B0", "#55A868", "#C44E52"), strict=False):
            if data.size:
                ax.hist(
                    np.maximum(data, low),
                    bins=bins,
                    alpha=0.55,
                    color=color,
                    label=f"{label} (n={data.size:,}, median {np.median(data):.0f})",
                )
        if log:
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("records")
    ax.set_title(title)
    _save(fig, path)


def bars(labels: list[str], values: list[int], path: Path, title: str, xlabel: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.3 * max(1, len(labels))))
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color="#4C72B0")
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:,}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max([1, *values]) * 1.2)
    ax.set_title(title)
    _save(fig, path)


_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def loss_curves(curves: dict[str, list[float]], path: Path, title: str) -> None:
    """Training loss per optimizer step, one line per label."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for (label, losses), color in zip(curves.items(), _COLORS * 4, strict=False):
        ax.plot(np.arange(1, len(losses) + 1), losses, color=color, label=label, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("response-token loss")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=8)
    _save(fig, path)


def ablation(
    curves: dict[str, list[float]], panels: dict[str, dict[str, tuple[float, float, float]]], path: Path, title: str
) -> None:
    """Left: each arm's mean loss curve over seeds. Then one panel per metric: each arm's mean with its 95% CI."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 1 + len(panels), figsize=(4.2 * (1 + len(panels)), 3.4), gridspec_kw={"wspace": 0.55}, squeeze=False
    )
    left, *rights = axes[0]
    for (label, losses), color in zip(curves.items(), _COLORS * 4, strict=False):
        left.plot(np.arange(1, len(losses) + 1), losses, color=color, label=label, linewidth=1.2)
    left.set_xlabel("optimizer step")
    left.set_ylabel("training loss (mean over seeds)")
    left.legend(fontsize=8)
    for right, (metric, finals) in zip(rights, panels.items(), strict=True):
        names = list(finals)
        means = np.array([finals[n][0] for n in names])
        low = np.array([finals[n][1] for n in names])
        high = np.array([finals[n][2] for n in names])
        y = np.arange(len(names))[::-1]
        right.errorbar(means, y, xerr=[means - low, high - means], fmt="o", color="#4C72B0", capsize=4)
        right.set_yticks(y, names)
        right.set_xlabel(f"{metric}\n(mean, 95% CI over seeds)", fontsize=9)
    fig.suptitle(title)
    _save(fig, path)
