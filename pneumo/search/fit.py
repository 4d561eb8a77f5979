"""What every trial's `model.fit` gets: the training and validation data (never test), class
weights and the callbacks (the seed's early stopping and learning-rate schedule, the guard), and
the two the tuner adds per trial (its epoch-end hook, the best epoch's weights).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from pneumo.config.errors import ConfigError
from pneumo.record import names
from pneumo.search import shifted
from pneumo.search.guard import KillMidEpoch, TrialGuard
from pneumo.search.schedules import WarmupCosine


def fit_kwargs(trainer_cfg: Mapping, splits, objective: str | None = None) -> dict:
    """What every trial's model.fit gets (Keras Tuner passes it through); never the test split.
    `objective`: the tuner's; where it or a monitor is val_auc_shifted, the shifted validation films are made."""
    shifted_val = None
    if shifted.wanted(trainer_cfg, objective):
        shifted_val = shifted.ShiftedValidation.for_splits(splits, 2 * trainer_cfg["batch_size"])
    return dict(
        x=splits.train.x, y=splits.train.y,
        validation_data=(splits.val.x, splits.val.y),
        epochs=trainer_cfg["epochs"],
        batch_size=trainer_cfg["batch_size"],
        class_weight=class_weight(splits.train.y) if trainer_cfg["class_weight"] else None,
        callbacks=keras_callbacks(trainer_cfg, splits.val.y, shifted_val),
        verbose=trainer_cfg["verbose"],
    )


def class_weight(y) -> dict[int, float]:
    """Balanced class weights: each class contributes equally to the loss (the films are ~74% PNEUMONIA)."""
    classes = np.unique(y)
    return {int(c): float(w) for c, w in zip(classes, compute_class_weight("balanced", classes=classes, y=y))}


def keras_callbacks(trainer_cfg: Mapping, y_val, shifted_val=None) -> list:
    """The seed's callbacks plus the trial guard. The tuner adds its own per trial (see TrackedTuner.run_trial).
    `shifted_val` (a ShiftedValidation) goes first: the others read the logs it writes to."""
    out = [shifted_val] if shifted_val is not None else []
    if trainer_cfg.get("early_stopping"):
        es = trainer_cfg["early_stopping"]
        out.append(keras.callbacks.EarlyStopping(monitor=es["monitor"], patience=es["patience"],
                                                 start_from_epoch=es["start_from_epoch"], mode=_mode(es["monitor"])))
    if trainer_cfg.get("lr_schedule"):
        if trainer_cfg.get("reduce_lr"):
            raise ConfigError("trainer.lr_schedule and trainer.reduce_lr both set the learning rate: set one to null")
        out.append(WarmupCosine(trainer_cfg["epochs"], **trainer_cfg["lr_schedule"]))
    if trainer_cfg.get("reduce_lr"):
        rl = trainer_cfg["reduce_lr"]
        out.append(keras.callbacks.ReduceLROnPlateau(
            monitor=rl["monitor"], factor=rl["factor"], patience=rl["patience"], min_lr=rl["min_lr"],
            mode=_mode(rl["monitor"])))
    n_pos = int((y_val == 1).sum())
    out.append(TrialGuard(n_pos, len(y_val) - n_pos, trainer_cfg.get("chance_z")))
    kill = KillMidEpoch.from_env()
    if kill is not None:  # tests only: a per-batch hook costs a device sync per step on a GPU
        out.append(kill)
    return out


def _mode(monitor: str) -> str:
    """A monitor's direction where pneumo knows the metric (Keras infers only its compiled metrics')."""
    try:
        return "max" if names.higher_is_better(monitor) else "min"
    except ValueError:
        return "auto"


class TunerEpochEnd(keras.callbacks.Callback):
    """Hands each epoch's logs to the tuner's public `on_epoch_end` hook (MLflow's per-epoch metrics, the
    console), and nothing per step. Keras Tuner's own TunerCallback calls the tuner's batch hooks (no-ops
    here) twice a step: any callback with a batch-end hook makes Keras wait for every step's logs on the
    host (no asynchronous step dispatch), and under JAX each read of `self.model` copies the training
    state back into the model's variables."""

    def __init__(self, tuner, trial):
        super().__init__()
        self.tuner, self.trial = tuner, trial

    def on_epoch_end(self, epoch, logs=None):
        self.tuner.on_epoch_end(self.trial, self.model, epoch, logs=logs)


class BestEpochWeights(keras.callbacks.Callback):
    """The best epoch's weights by `objective` (a keras_tuner.Objective), kept on the host and written to
    `path` once, when a fit that improved on the best ends.

    One instance serves all of a trial's executions, so the file holds the best epoch across them.
    Keras Tuner's SaveBestEpoch writes at every improving epoch instead; a trial killed before its end
    is run again from its start on resume, so a file written mid-fit was never read.
    """

    def __init__(self, objective, path):
        super().__init__()
        self.objective, self.path = objective, str(path)
        self.best = float("-inf") if objective.direction == "max" else float("inf")  # a NaN epoch never wins
        self.weights = None  # this fit's best epoch, until it is written

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.objective.has_value(logs):
            value = self.objective.get_value(logs)
            if not self.objective.better_than(value, self.best):
                return
            self.best = value
        self.weights = self.model.get_weights()  # no objective in the logs: the last epoch, as Keras Tuner does

    def on_train_end(self, logs=None):
        if self.weights is None:
            return
        last = self.model.get_weights()
        self.model.set_weights(self.weights)
        try:
            self.model.save_weights(self.path)
        finally:
            self.model.set_weights(last)  # the fit's caller gets the model as training left it
            self.weights = None
