"""Referral instead of a forced label: a band of probabilities around the threshold, chosen on
validation only, inside which the model answers REFER (to a radiologist).

The band is open, (low, high) = (threshold - w, threshold + w): a film with low < p < high is
referred, every other one is decided at the threshold. w is the narrowest width whose decided
validation films reach the target accuracy (evaluation.refer); the test split only reports it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from pneumo.record import names


def _curve(y, p, threshold):
    """(widths, coverage, accuracy of the decided films) for every distinct |p - threshold|, ascending."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    d = np.abs(p - threshold)
    correct = ((p >= threshold).astype(int) == y).astype(float)
    order = np.argsort(-d, kind="stable")  # farthest first: the decided films of a width are a prefix
    d, correct = d[order], correct[order]
    widths = np.unique(d)  # ascending; width w decides the films with d >= w
    n_decided = len(d) - np.searchsorted(d[::-1], widths, side="left")
    right = np.concatenate([[0.0], np.cumsum(correct)])[n_decided]
    with np.errstate(invalid="ignore", divide="ignore"):
        return widths, n_decided / max(len(d), 1), np.where(n_decided > 0, right / np.maximum(n_decided, 1), np.nan)


def choose_band(y_val, p_val, threshold: float, target: float) -> tuple[float, float]:
    """The narrowest open band around the threshold whose decided validation films reach `target`
    accuracy; when no width does, the one with the best accuracy (a warning says so)."""
    widths, coverage, accuracy = _curve(y_val, p_val, threshold)
    if not len(widths):
        return float(threshold), float(threshold)
    reached = np.flatnonzero(accuracy >= target)
    if len(reached):
        w = float(widths[reached[0]])
    else:
        w = float(widths[np.nanargmax(accuracy)])
        warnings.warn(f"evaluation.refer={target}: no band reaches it on validation; the best decides "
                      f"{coverage[np.nanargmax(accuracy)]:.0%} of films at accuracy {np.nanmax(accuracy):.3f}",
                      stacklevel=2)
    return float(threshold - w), float(threshold + w)


def referred(p, band) -> np.ndarray:
    """True where the model answers REFER."""
    p = np.asarray(p, dtype=float)
    if band is None:
        return np.zeros(p.shape, bool)
    low, high = band
    return (p > low) & (p < high)


def decided_metrics(y, p, threshold: float, band) -> dict[str, float]:
    """Coverage and the accuracy, sensitivity and specificity of the decided films (outside the band)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    keep = ~referred(p, band)
    yd, pred = y[keep], (p[keep] >= threshold).astype(int)

    def share(mask, of):
        return float(mask.sum() / of.sum()) if of.sum() else float("nan")

    return {names.TEST_COVERAGE: float(keep.mean()) if len(keep) else float("nan"),
            names.TEST_DECIDED_ACCURACY: share(pred == yd, np.ones_like(yd, bool)),
            names.TEST_DECIDED_SENSITIVITY: share((pred == 1) & (yd == 1), yd == 1),
            names.TEST_DECIDED_SPECIFICITY: share((pred == 0) & (yd == 0), yd == 0),
            names.REFER_LOW: float(band[0]), names.REFER_HIGH: float(band[1])}


def write_curve(out_dir, curves: dict, band, threshold: float) -> Path:
    """coverage_accuracy.png: accuracy of the decided films against coverage, one line per split."""
    from matplotlib.figure import Figure

    path = Path(out_dir) / Path(names.COVERAGE_PLOT).name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    w = band[1] - threshold
    for label, (y, p) in curves.items():
        widths, coverage, accuracy = _curve(y, p, threshold)
        ax.plot(coverage, accuracy, label=label)
        at = np.searchsorted(widths, w)
        if at < len(widths):
            ax.plot(coverage[at], accuracy[at], "o", color="k")
    ax.set(xlabel="coverage (share decided)", ylabel="accuracy of decided films", xlim=(0, 1.02),
           title=f"referral band ({band[0]:.3f}, {band[1]:.3f})")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
