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

Computed only when something watches it: `tuner.objective`, `trainer.early_stopping.monitor` or
`trainer.reduce_lr.monitor` set to `val_auc_shifted`.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from pneumo.record import names

SAMPLE = 2000  # training films the ranges are measured on (a seeded sample)
BLUR_PX = 1.0


def wanted(trainer_cfg, objective: str | None) -> bool:
    """Whether anything of the job watches val_auc_shifted."""
    monitors = [objective] + [(trainer_cfg.get(k) or {}).get("monitor") for k in ("early_stopping", "reduce_lr")]
    return names.VAL_AUC_SHIFTED in monitors


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
    from scipy.ndimage import gaussian_filter

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
    from pneumo.evaluation import stats

    if len(np.unique(y)) < 2:  # no AUC: nothing to predict
        return float("nan"), {}
    each = {k: stats.auc(y, np.ravel(predict(v))) for k, v in films.items()}
    return min(each.values()), each


class ShiftedValidation(keras.callbacks.Callback):
    """Puts `val_auc_shifted` into each epoch's logs, before the callbacks after it read them
    (early stopping, the LR schedule, the tuner's objective, the best epoch's weights)."""

    def __init__(self, films: dict[str, np.ndarray], y: np.ndarray, batch_size: int):
        super().__init__()
        self.films, self.y, self.batch_size = films, np.asarray(y), batch_size

    @classmethod
    def for_splits(cls, splits, batch_size: int, seed: int = 0) -> ShiftedValidation:
        return cls(renderings(splits.val.x, ranges(splits.train.x, seed)), splits.val.y, batch_size)

    def __deepcopy__(self, memo):  # Keras Tuner copies the callbacks per fit: the films are read-only, shared
        return type(self)(self.films, self.y, self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        predict = lambda x: self.model.predict(x, batch_size=self.batch_size, verbose=0)  # noqa: E731
        logs[names.VAL_AUC_SHIFTED], _ = worst_auc(predict, self.films, self.y)
