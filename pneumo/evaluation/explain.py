"""Where the model looks, and what it got wrong: occlusion heatmaps and the error gallery.

Method: occlusion sensitivity (Zeiler & Fergus, 2014). Each film is copied once per
position of a square patch (1/8 of the side, moved by half its width: 15 x 15
positions), the patch painted with the film's own mean gray, and the copies
scored in batches; a pixel's heat is the mean drop in P(pneumonia) over the
patches that hid it. Red: hiding it lowers P(pneumonia) (evidence *for*
pneumonia); blue: hiding it raises it (evidence for NORMAL).

Why not Grad-CAM: it needs gradients through a named last convolution, taken
with each backend's own machinery (tf.GradientTape, jax.grad, torch autograd),
and pneumo's models do not all have one such layer: `transfer` hides it inside
a nested keras.applications model, and an ensemble (`pneumo.model.builders.ensemble`) is an
Average of several sub-models, each with its own. Occlusion needs only
`model.predict`, so it runs unchanged on TensorFlow, JAX and PyTorch, on every
architecture, through the in-model rescaling/standardisation layers (the
augmentation layer is inactive in predict), and it measures what the output
itself does when a region is hidden, not a gradient's local slope. Its price is
225 forward passes per film, which is why a job explains a small fixed sample.

The mean-gray patch (not black): a black square on a film is a strong feature of
its own (a collimator edge, a pneumothorax), and with `trainer.standardize` a
patch near the film's mean changes its normalisation least.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pneumo.data.base import CLASSES

PATCH = 8  # the patch is 1/PATCH of the film's side, moved by half its width: 15 x 15 positions
COPIES_PER_CALL = 2048  # occluded copies per predict call: bounds memory (2048 x 128 x 128 B = 32 MB)
# The four outcomes, in the order a reviewer reads them: what went right, then each kind of error.
OUTCOMES = (("TP", "true positive", 1, 1), ("TN", "true negative", 0, 0),
            ("FP", "false alarm", 0, 1), ("FN", "missed pneumonia", 1, 0))
HEAT_CMAP = "RdBu_r"
HEAT_LABEL = "drop in P(pneumonia) when the region is hidden"


# -- the method ---------------------------------------------------------------------------


def _positions(size: int) -> tuple[int, list[int]]:
    patch = max(2, size // PATCH)
    stride = max(1, patch // 2)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:  # the last row/column of pixels is covered too
        starts.append(size - patch)
    return patch, starts


def occlusion(model, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(heat (N, S, S) float32, P(pneumonia) (N,)) for uint8 films (N, S, S, 1), by occlusion."""
    images = np.asarray(images, dtype=np.uint8)
    n, size = len(images), images.shape[1]
    patch, starts = _positions(size)
    boxes = [(y, x) for y in starts for x in starts]
    per_call = max(1, COPIES_PER_CALL // len(boxes))
    p = model.predict(images, batch_size=batch_size, verbose=0).reshape(-1)
    heat = np.zeros((n, size, size), np.float32)
    for lo in range(0, n, per_call):
        chunk = images[lo:lo + per_call]
        copies = np.repeat(chunk[:, None], len(boxes), axis=1)  # (n, boxes, S, S, 1)
        fill = chunk.reshape(len(chunk), -1).mean(axis=1).round().astype(np.uint8)
        for b, (y, x) in enumerate(boxes):
            copies[:, b, y:y + patch, x:x + patch] = fill[:, None, None, None]
        hidden = model.predict(copies.reshape(-1, size, size, 1), batch_size=batch_size, verbose=0)
        drop = p[lo:lo + len(chunk), None] - hidden.reshape(len(chunk), len(boxes))
        total, count = np.zeros((len(chunk), size, size)), np.zeros((size, size))
        for b, (y, x) in enumerate(boxes):
            total[:, y:y + patch, x:x + patch] += drop[:, b, None, None]
            count[y:y + patch, x:x + patch] += 1
        heat[lo:lo + len(chunk)] = total / count
    return heat, p


# -- pictures -----------------------------------------------------------------------------


def overlay(ax, film: np.ndarray, heat: np.ndarray, limit: float):
    """The film in gray with the heat over it, opaque where it is strong and clear where it is ~0."""
    film = np.asarray(film).squeeze()
    h, w = film.shape
    ax.imshow(film, cmap="gray", vmin=0, vmax=255, extent=(0, w, h, 0))
    alpha = np.clip(np.abs(heat) / limit, 0, 1) * 0.75 if limit > 0 else np.zeros_like(heat)
    shown = ax.imshow(heat, cmap=HEAT_CMAP, vmin=-limit, vmax=limit, alpha=alpha, interpolation="bilinear",
                      extent=(0, w, h, 0))
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _limit(heat: np.ndarray) -> float:
    return float(np.abs(heat).max()) or 1e-6


def outcome(y: int, p: float, threshold: float) -> str:
    called = int(p >= threshold)
    return next(code for code, _, truth, call in OUTCOMES if (truth, call) == (int(y), called))


def sample(y, p, threshold: float, hashes, per_outcome: int) -> dict[str, list[int]]:
    """Up to per_outcome films of each outcome, chosen by file hash: a fixed sample, not the prettiest
    (the same film shows in every job of a sweep that gets it the same way)."""
    kinds = np.array([outcome(t, q, threshold) for t, q in zip(y, p)])
    order = np.argsort(np.asarray(hashes))
    return {code: [int(i) for i in order if kinds[i] == code][:per_outcome] for code, *_ in OUTCOMES}


def heatmap_grid(out: Path, model, test, p, threshold: float, per_outcome: int, batch_size: int) -> Path:
    """heatmaps.png (one column per outcome) and heatmaps.json (which films, how they came out)."""
    picked = sample(test.y, p, threshold, test.hashes, per_outcome)
    index = [i for code, *_ in OUTCOMES for i in picked[code]]
    heat, _ = occlusion(model, test.x[index], batch_size) if index else (np.zeros((0, 1, 1)), None)
    limit = _limit(heat) if index else 1.0
    rows = max(1, max(len(v) for v in picked.values()))
    fig = Figure(figsize=(2.4 * len(OUTCOMES) + 1.2, 2.5 * rows + 0.9), layout="constrained")
    axes = np.asarray(fig.subplots(rows, len(OUTCOMES), squeeze=False))
    shown, k, record = None, 0, []
    for col, (code, name, *_) in enumerate(OUTCOMES):
        axes[0, col].set_title(f"{code}: {name}", fontsize=9, fontweight="bold")
        for row in range(rows):
            ax = axes[row, col]
            if row >= len(picked[code]):
                ax.axis("off")
                if row == 0:
                    ax.text(0.5, 0.5, "none in the test split", ha="center", va="center", transform=ax.transAxes)
                continue
            i = picked[code][row]
            shown = overlay(ax, test.x[i], heat[k], limit)
            ax.set_xlabel(f"p={p[i]:.3f}  {_short(test.patients[i])}", fontsize=8)
            record.append({"outcome": code, "path": str(test.paths[i]), "patient": str(test.patients[i]),
                           "y_true": int(test.y[i]), "probability": round(float(p[i]), 6)})
            k += 1
    fig.suptitle(f"Where the model looks: occlusion sensitivity on {k} test films (threshold {threshold:.3f})\n"
                 "red: hiding the region lowers P(pneumonia); blue: raises it", fontsize=10)
    if shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label=HEAT_LABEL)
    fig.savefig(out / "heatmaps.png", dpi=100)
    (out / "heatmaps.json").write_text(json.dumps({"threshold": threshold, "films": record}, indent=2))
    return out / "heatmaps.png"


def errors(y, p, threshold: float) -> list[int]:
    """Indices of the misclassified films, most confident first (furthest past the threshold)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    wrong = np.flatnonzero((p >= threshold).astype(int) != y)
    return [int(i) for i in wrong[np.argsort(-np.abs(p[wrong] - threshold), kind="stable")]]


def error_gallery(out: Path, test, p, threshold: float, limit: int, columns: int = 6) -> Path:
    """error_gallery.png (the worst `limit` errors) and errors.csv (every error), most confident first."""
    wrong = errors(test.y, p, threshold)
    with open(out / "errors.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("rank", "outcome", "path", "patient", "y_true", "probability", "threshold"))
        for rank, i in enumerate(wrong, 1):
            w.writerow((rank, outcome(test.y[i], p[i], threshold), test.paths[i], test.patients[i],
                        CLASSES[int(test.y[i])], round(float(p[i]), 6), round(threshold, 6)))
    shown = wrong[:limit]
    cols = max(1, min(columns, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(2.2 * max(cols, 3), 2.4 * rows + 0.8), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, i in zip(axes, shown):
        kind = outcome(test.y[i], p[i], threshold)
        ax.imshow(np.asarray(test.x[i]).squeeze(), cmap="gray", vmin=0, vmax=255)
        rel = "<" if kind == "FN" else ">="
        ax.set_title(f"{kind}: p {p[i]:.3f} {rel} {threshold:.3f}\n{_short(test.patients[i])}", fontsize=8,
                     color="#b2182b" if kind == "FN" else "#2166ac")
    n_fn = sum(1 for i in wrong if test.y[i] == 1)
    head = (f"Test films the model got wrong: {len(wrong)} of {len(test.y)} ({n_fn} missed pneumonia (FN), "
            f"{len(wrong) - n_fn} false alarms (FP)), most confident first; threshold {threshold:.3f}")
    if len(shown) < len(wrong):
        head += f"\nthe first {len(shown)} shown; every one in errors.csv"
    if not wrong:
        axes[0].text(0.5, 0.5, "no errors", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(head, fontsize=9)
    fig.savefig(out / "error_gallery.png", dpi=100)
    return out / "error_gallery.png"


def write_pictures(out_dir, model, test, p, threshold: float, *, per_outcome: int, gallery: int,
                   batch_size: int = 256) -> list[Path]:
    """What a job logs under evaluation/: the heatmap grid (when per_outcome > 0) and the error gallery."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [error_gallery(out, test, p, threshold, gallery)]
    if per_outcome > 0:
        written.append(heatmap_grid(out, model, test, p, threshold, per_outcome, batch_size))
    return written


def explain_file(path: Path, display: np.ndarray, heat: np.ndarray, p: float, threshold: float, name: str) -> Path:
    """One overlay PNG for `pneumo predict --explain`: the film at display size, the heat over it."""
    fig = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = fig.subplots()
    shown = overlay(ax, display, heat, _limit(heat))
    label = CLASSES[int(p >= threshold)]
    ax.set_title(f"{name}\n{label}: P(pneumonia) {p:.3f}, threshold {threshold:.3f}", fontsize=9)
    fig.colorbar(shown, ax=ax, shrink=0.7, label=HEAT_LABEL)
    fig.savefig(path, dpi=100)
    return path


def _short(patient, width: int = 22) -> str:
    text = str(patient)
    return text if len(text) <= width else text[: width - 1] + "…"
