"""Trial guards: a trial that diverged or learned nothing fails (and is recorded FAILED) instead
of being scored; and the reliability tests' kill point inside an epoch.
"""

from __future__ import annotations

import math
import os

import keras
import keras_tuner

from pneumo.evaluation.stats import auc_standard_error
from pneumo.record import names
from pneumo.runtime import testpoints


class KillMidEpoch(keras.callbacks.Callback):
    """A kill point inside an epoch, for the reliability tests (PNEUMO_KILL_AT, as testpoints.fault_point).

    `PNEUMO_KILL_AT=mid_epoch[:TRIAL[:EPOCH]]` SIGKILLs the process (or holds it for a signal:
    testpoints.stop_here) after the first batch of epoch EPOCH of the TRIAL-th model it trains (both
    0-based, default 1: the second trial's second epoch), so a trial run is RUNNING with its earlier
    epochs logged: deterministic, where polling the store for the moment would race the job.
    """

    fits = 0  # models this process has started training (Keras Tuner deep-copies callbacks per trial)

    def __init__(self, trial: int, epoch: int):
        super().__init__()
        self.trial, self.epoch, self.nth, self.now = trial, epoch, -1, -1  # nth model; epoch now

    @classmethod
    def from_env(cls):
        name, _, at = os.environ.get("PNEUMO_KILL_AT", "").partition(":")
        if name != "mid_epoch":
            return None
        trial, _, epoch = at.partition(":")
        return cls(int(trial or 1), int(epoch or 1))

    def on_train_begin(self, logs=None):
        self.nth, KillMidEpoch.fits = KillMidEpoch.fits, KillMidEpoch.fits + 1

    def on_epoch_begin(self, epoch, logs=None):
        self.now = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.nth, self.now) == (self.trial, self.epoch):
            testpoints.stop_here()


class TrialGuard(keras.callbacks.Callback):
    """Fails a trial (by raising, so Keras Tuner records it FAILED and may retry it) that
    diverged or learned nothing, instead of letting it be scored.

    - A non-finite loss at the end of an epoch: diverged. Keras' TerminateOnNaN stops such a
      fit quietly (it then scores val_auc 0.0) and reads the loss after every batch, which on a
      GPU is a device-to-host wait per step; the epoch's mean loss is already on the host.
    - At the end of training, a best validation AUC within `z` standard errors of 0.5
      (Hanley & McNeil's, from the validation class counts): a constant predictor or a coin.
    """

    def __init__(self, n_pos: int, n_neg: int, z: float | None):
        super().__init__()
        self.n_pos, self.n_neg, self.z = n_pos, n_neg, z
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for name in (names.LOSS, names.VAL_LOSS):
            value = logs.get(name)
            if value is not None and not math.isfinite(float(value)):
                raise FloatingPointError(f"{name} became {float(value)} in epoch {epoch + 1}: the trial diverged "
                                         "(learning rate too high?)")
        auc = logs.get(names.VAL_AUC)
        if auc is not None and math.isfinite(float(auc)):
            self.best = max(float(auc), self.best if self.best is not None else -1.0)

    def on_train_end(self, logs=None):
        if self.z is None or self.best is None or not (self.n_pos and self.n_neg):
            return
        low = self.best - self.z * auc_standard_error(self.best, self.n_pos, self.n_neg)
        if low <= 0.5:
            raise DegenerateModel(
                f"no better than chance: best val_auc {self.best:.3f}, {self.best:.3f} - {self.z:g} x SE = {low:.3f} "
                f"<= 0.5 on {self.n_pos} PNEUMONIA + {self.n_neg} NORMAL validation images (constant or "
                "near-constant predictions; trainer.chance_z sets the margin)")


class DegenerateModel(keras_tuner.errors.FailedTrialError):
    """A trained model whose validation predictions carry no information. Keras Tuner fails its trial
    without retrying it: the same hyperparameters and seed would train the same model again."""
