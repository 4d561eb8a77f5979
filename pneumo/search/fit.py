"""What every trial's `model.fit` gets: the training and validation data (never test), class
weights and the callbacks (the seed's early stopping and learning-rate schedule, the guard).
"""

from __future__ import annotations

from collections.abc import Mapping
import keras
from pneumo.search.guard import KillMidEpoch, TrialGuard


def fit_kwargs(trainer_cfg: Mapping, splits) -> dict:
    """What every trial's model.fit gets (Keras Tuner passes it through); never the test split."""
    return dict(
        x=splits.train.x, y=splits.train.y,
        validation_data=(splits.val.x, splits.val.y),
        epochs=trainer_cfg["epochs"],
        batch_size=trainer_cfg["batch_size"],
        class_weight=class_weight(splits.train.y) if trainer_cfg["class_weight"] else None,
        callbacks=keras_callbacks(trainer_cfg, splits.val.y),
        verbose=trainer_cfg["verbose"],
    )


def class_weight(y) -> dict[int, float]:
    """Balanced class weights: each class contributes equally to the loss (the films are ~74% PNEUMONIA)."""
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    return {int(c): float(w) for c, w in zip(classes, compute_class_weight("balanced", classes=classes, y=y))}


def keras_callbacks(trainer_cfg: Mapping, y_val) -> list:
    """The seed's callbacks plus the trial guard. The best-epoch checkpoint is Keras Tuner's own (per trial)."""
    out = []
    if trainer_cfg.get("early_stopping"):
        es = trainer_cfg["early_stopping"]
        out.append(keras.callbacks.EarlyStopping(monitor=es["monitor"], patience=es["patience"]))
    if trainer_cfg.get("reduce_lr"):
        rl = trainer_cfg["reduce_lr"]
        out.append(keras.callbacks.ReduceLROnPlateau(
            monitor=rl["monitor"], factor=rl["factor"], patience=rl["patience"], min_lr=rl["min_lr"]))
    n_pos = int((y_val == 1).sum())
    out.append(TrialGuard(n_pos, len(y_val) - n_pos, trainer_cfg.get("chance_z")))
    kill = KillMidEpoch.from_env()
    if kill is not None:  # tests only: a per-batch hook costs a device sync per step on a GPU
        out.append(kill)
    return out
