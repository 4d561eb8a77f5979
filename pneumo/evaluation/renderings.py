"""Validation under simulated acquisition shift: `val_auc_shifted`, the model's worst validation AUC
over fixed re-renderings of the validation films, as another machine or protocol would produce them.

The validation split is carved from the training collection, so it cannot see the shift that costs
specificity on films taken later (issue 20). Selecting on the worst AUC over plausible renderings
prefers a model whose ranking survives them. It is still validation only: the renderings are fixed
(no randomness, so every epoch and trial sees the same films), and their sizes come from the training
films' own spread or from imaging physics, never from an external set:

- tone curve (gamma): the gammas that move the median training film's median intensity to the 5th and
  95th percentiles of the training films' medians;
- window: each film's contrast about its mean scaled by the 5th / 95th percentile ratio of the training
  films' standard deviations to their median, clipped to the detector's range (a `standardize` model is
  blind to the linear part; the clipped ends are what it sees);
- detector sharpness: a Gaussian blur of 1 px at the model's resolution, and its unsharp mask (vendor
  edge enhancement).

Per epoch (search/shifted.py) only when something watches it: `tuner.objective`,
`trainer.early_stopping.monitor` or `trainer.reduce_lr.monitor` set to `val_auc_shifted`. The job's
model is always measured once (`model_val_auc_shifted`, evaluation/scoring.py): a screen ranks on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from pneumo.evaluation import stats

SAMPLE = 2000  # training films the ranges are measured on (a seeded sample)
BLUR_PX = 1.0


def ranges(x_train: np.ndarray, seed: int = 0) -> dict[str, tuple[float, float]]:
    """The perturbation sizes, from the training films' own spread (uint8 films, (n, h, w))."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x_train), min(SAMPLE, len(x_train)), replace=False)
    films = x_train[np.sort(pick)].reshape(len(pick), -1).astype(np.float32) / 255.0
    medians, spreads = np.median(films, axis=1), films.std(axis=1)
    clip = lambda v: float(min(max(v, 0.02), 0.98))  # noqa: E731 -- a gamma needs 0 < intensity < 1
    mid = clip(np.median(medians))
    gammas = tuple(math.log(clip(q)) / math.log(mid) for q in np.quantile(medians, [0.05, 0.95]))
    typical = max(float(np.median(spreads)), 1e-6)
    contrasts = tuple(float(q) / typical for q in np.quantile(spreads, [0.05, 0.95]))
    return {"gamma": gammas, "contrast": contrasts}


def renderings(x: np.ndarray, sizes: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """The validation films (uint8, (n, h, w) or (n, h, w, 1)) re-rendered: {name: uint8 films}, the
    unchanged films first."""
    f = x.astype(np.float32) / 255.0
    out = {"as acquired": f}
    for g in sizes["gamma"]:
        out[f"gamma {g:.2f}"] = f ** g
    mean = f.mean(axis=tuple(range(1, f.ndim)), keepdims=True)
    for c in sizes["contrast"]:
        out[f"window x{c:.2f}"] = np.clip(mean + (f - mean) * c, 0.0, 1.0)
    blurred = gaussian_filter(f, sigma=(0, BLUR_PX, BLUR_PX, *(0,) * (f.ndim - 3)))  # (n, h, w[, channel])
    out[f"blur {BLUR_PX:g} px"] = blurred
    out["sharpened"] = np.clip(2 * f - blurred, 0.0, 1.0)
    return {k: np.rint(v * 255.0).astype(np.uint8) for k, v in out.items()}


def worst_auc(predict, films: dict[str, np.ndarray], y: np.ndarray) -> tuple[float, dict[str, float]]:
    """The lowest ROC AUC over the renderings, and each one's; NaN with one class only."""
    if len(np.unique(y)) < 2:  # no AUC: nothing to predict
        return float("nan"), {}
    each = {k: stats.auc(y, np.ravel(predict(v))) for k, v in films.items()}
    return min(each.values()), each




@dataclass(frozen=True)
class Renderings:
    """The validation films re-rendered, (name, uint8 films) pairs, the unchanged films first; fixed once."""

    films: tuple[tuple[str, np.ndarray], ...]

    @classmethod
    def of(cls, x_val: np.ndarray, x_train: np.ndarray, seed: int = 0) -> Renderings:
        """`x_val`'s renderings, sized from the training films `x_train`'s spread."""
        return cls(tuple(renderings(x_val, ranges(x_train, seed)).items()))

    def worst_auc(self, predict, y: np.ndarray) -> float:
        """The lowest ROC AUC of `predict` over the renderings; NaN with one class only."""
        return worst_auc(predict, dict(self.films), y)[0]
