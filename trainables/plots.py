"""Reliability diagrams (SPEC 9.4) as PNG files, drawn without a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def reliability_figure(bins_by_split: dict, path) -> None:
    """One panel per split: accuracy per confidence bin against the diagonal, with the bin counts."""
    splits = list(bins_by_split)
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        b = bins_by_split[split]
        edges = b["edges"]
        width = edges[1] - edges[0]
        centers = [(lo + hi) / 2 for lo, hi in zip(edges[:-1], edges[1:])]
        ax.bar(centers, b["accuracy"], width=width * 0.95, color="#4C72B0", edgecolor="k", label="accuracy")
        gaps = [c - a if n else 0 for a, c, n in zip(b["accuracy"], b["confidence"], b["count"])]
        ax.bar(centers, gaps, bottom=b["accuracy"], width=width * 0.95, color="#DD8452", alpha=0.5, label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"{split} reliability")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
