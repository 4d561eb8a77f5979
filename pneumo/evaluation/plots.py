"""The evaluation's pictures and report: confusion matrix, ROC, PR, calibration, training curves and
the classification report, written into the job's (or an evaluation run's) evaluation/ folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from pneumo.data.base import CLASSES as LABELS
from pneumo.record import names


def write_report(out_dir, y, p, threshold, history: dict | None = None) -> list[Path]:
    """Confusion matrix, ROC, PR, calibration and training-curve plots plus text reports."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no figure to leak
    from sklearn.calibration import calibration_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        written.append(out / name)

    (out / "confusion_matrix.json").write_text(
        json.dumps({"labels": list(LABELS), "matrix": cm.tolist(), "threshold": float(threshold)}, indent=2)
    )
    written.append(out / "confusion_matrix.json")
    fig = Figure(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay(cm, display_labels=LABELS).plot(ax=fig.subplots(), colorbar=False)
    fig.axes[0].set_title(f"threshold {threshold:.3f}")
    save(fig, "confusion_matrix.png")

    fig = Figure(figsize=(4.5, 4))
    skm.RocCurveDisplay.from_predictions(y, p, ax=fig.subplots(), plot_chance_level=True)
    save(fig, "roc.png")

    fig = Figure(figsize=(4.5, 4))
    skm.PrecisionRecallDisplay.from_predictions(y, p, ax=fig.subplots(), plot_chance_level=True)
    save(fig, "pr.png")

    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    ax.plot([0, 1], [0, 1], "k:", label="perfectly calibrated")
    ax.plot(mean_pred, frac_pos, "o-", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="fraction of PNEUMONIA", title="calibration")
    ax.legend(loc="upper left")
    save(fig, "calibration.png")

    report = skm.classification_report(y, pred, labels=[0, 1], target_names=list(LABELS), zero_division=0)
    (out / "classification_report.txt").write_text(f"threshold: {threshold:.4f}\n\n{report}")
    written.append(out / "classification_report.txt")

    if history:
        pairs = [k for k in (names.LOSS, names.AUC) if k in history or f"val_{k}" in history]
        fig = Figure(figsize=(4.5 * max(len(pairs), 1), 4))
        for ax, key in zip(np.atleast_1d(fig.subplots(1, max(len(pairs), 1))), pairs):
            for name in (key, f"val_{key}"):
                if name in history:
                    ax.plot(np.arange(1, len(history[name]) + 1), history[name], label=name)
            ax.set(xlabel="epoch", title=key)
            ax.legend()
        save(fig, "training_curves.png")
    return written
