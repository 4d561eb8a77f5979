"""EDA pictures of a data set: class counts per split and a grid of sample films."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the OO API: no pyplot state, no GUI backend

from pneumo.data.base import CLASSES


def class_counts(counts: dict, out: Path, title: str) -> Path:
    """Grouped bars: {split: {class: n}} -> out (png)."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    splits = list(counts)
    pos = np.arange(len(splits))
    for k, name in enumerate(CLASSES):
        n = [counts[s].get(name, 0) for s in splits]
        bars = ax.bar(pos + (k - 0.5) * 0.4, n, width=0.4, label=name)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(pos, splits)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.savefig(out, dpi=100)
    return out


def sample_grid(subset, out: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Rows of random films per class from a Subset -> out (png)."""
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(per_class * 1.2, len(CLASSES) * 1.4), layout="constrained")
    axes = fig.subplots(len(CLASSES), per_class, squeeze=False)
    for label, name in enumerate(CLASSES):
        idx = np.flatnonzero(subset.y == label)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j, ax in enumerate(axes[label]):
            ax.axis("off")
            if j < len(pick):
                ax.imshow(subset.x[pick[j], ..., 0], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{name}\n{Path(str(subset.paths[pick[j]])).name}", fontsize=5)
    fig.savefig(out, dpi=120)
    return out


def write_all(source_counts: dict, carved_counts: dict, splits, out_dir: str | Path) -> list:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        class_counts(source_counts, out_dir / "class_counts_source.png", "images per class, source folders"),
        class_counts(carved_counts, out_dir / "class_counts_splits.png", "images per class after splitting"),
        sample_grid(splits.train, out_dir / "samples_train.png"),
    ]
