"""The guard's orientation check: is a film upright, or upside down, or mirrored?

A frontal chest film is not symmetric: apices at the top, diaphragm and abdomen at the bottom, the
heart's shadow more on one side. Fed upside down it still looks like a chest film to the image
statistics and to the model's embedding (issue 28: 0.58 to 0.77 on the `ood` scale, with confident
labels), so it gets a check of its own, on the film's layout (pneumo.evaluation.imagestats.layout:
8 x 8 block means, standardised). Two linear discriminants (scikit-learn's LDA with Ledoit-Wolf
shrinkage), fitted on TRAINING films and the same films turned around (turning is exact on the
layout, so no other data is needed):
- upside down: upright and mirrored films against the same flipped top-to-bottom and rotated by 180
  degrees; the fitted weights flip sign under a vertical flip and not under a mirror, so it answers
  "upside down?" whether or not the film is also mirrored;
- mirrored: upright films against the same flipped left-to-right.
Each score s is positive on the upright side. r = 1 - s / median(s over VALIDATION films) is 0 for
the typical film, 1 where s = 0 (as much turned as upright) and about 2 for a typical turned film.
Each check's line is its 1 - (1 - quantile) / 2 quantile of r on the validation films (or a normal
fitted to them when that is higher, as for the distances' threshold), so the two together flag
about 1 - quantile of validation films. A check that cannot tell the validation films from the same
films turned (its AUC between the two below MIN_AUC, or its median s not positive: films the data cannot
orient, where the weights are rounding noise and the sign of s a coin toss) is switched off. Each check is
kept as an affine map of the layout onto r / line: 1.0 is its line, as for the guard's `ood` score.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_auc_score

CHECKS = ("upside down", "mirrored")
MIN_AUC = 0.75  # a check must order 3 in 4 (validation film, the same film turned) pairs right to be kept


def turned(layouts: np.ndarray, vertical: bool, horizontal: bool) -> np.ndarray:
    """Flattened square layouts (one per row) flipped top-to-bottom and/or left-to-right."""
    n, side = len(layouts), int(round(np.sqrt(np.shape(layouts)[1])))
    a = np.asarray(layouts, float).reshape(n, side, side)
    return a[:, ::(-1 if vertical else 1), ::(-1 if horizontal else 1)].reshape(n, side * side)


def _discriminant(upright: np.ndarray, turned_: np.ndarray) -> tuple[np.ndarray, float]:
    """(w, b): s = x @ w + b, positive on the upright side."""
    x = np.vstack([upright, turned_])
    y = np.r_[np.ones(len(upright), int), np.zeros(len(turned_), int)]
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y)
    return lda.coef_.ravel(), float(lda.intercept_[0])


def tells_apart(upright: np.ndarray, turned_: np.ndarray) -> bool:
    """Whether a check's scores put validation films above the same films turned: their AUC (the share of
    pairs ordered right, ties counting half) reaches MIN_AUC. Symmetric films leave it near 0.5."""
    y = np.r_[np.ones(len(upright), int), np.zeros(len(turned_), int)]
    return bool(roc_auc_score(y, np.r_[upright, turned_]) >= MIN_AUC)


def line(r: np.ndarray, quantile: float) -> float:
    """The `quantile` of validation r: the empirical one, or a normal fitted to r when that is higher (a toy
    run's handful of validation films has no empirical tail)."""
    fitted = float(r.mean() + norm.ppf(quantile) * r.std(ddof=1)) if len(r) > 2 else 0.0
    return max(float(np.quantile(r, quantile)), fitted)


def fit(train: np.ndarray, val: np.ndarray, quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """(W, B), one row per CHECK: a film's ratios are layout @ W.T + B, and above 1.0 it is flagged."""
    train, val = np.asarray(train, float), np.asarray(val, float)
    if train.shape[1] == 0:  # statistics without a layout (a caller's own features): nothing to orient by
        return np.zeros((len(CHECKS), 0)), np.zeros(len(CHECKS))
    upside_down = _discriminant(np.vstack([train, turned(train, False, True)]),
                                np.vstack([turned(train, True, False), turned(train, True, True)]))
    mirrored = _discriminant(train, turned(train, False, True))
    rows, offsets = [], []
    for (w, b), val_turned in ((upside_down, turned(val, True, False)), (mirrored, turned(val, False, True))):
        s = val @ w + b
        median = float(np.median(s)) if len(s) else 0.0
        if median <= 0 or not tells_apart(s, val_turned @ w + b):  # films it cannot orient: no check
            rows.append(np.zeros_like(w))
            offsets.append(0.0)
            continue
        r = 1 - s / median
        at = max(line(r, 1 - (1 - quantile) / 2), 1e-6)
        rows.append(-w / (median * at))
        offsets.append((1 - b / median) / at)
    return np.stack(rows), np.array(offsets)


def ratios(layouts: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(films, CHECKS): each check's score in units of its line (above 1.0: flagged)."""
    return np.asarray(layouts, float) @ np.asarray(w, float).T + np.asarray(b, float)
