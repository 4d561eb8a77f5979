"""`val_auc_shifted` per epoch: the model's worst validation AUC over fixed re-renderings of the
validation films (pneumo.evaluation.renderings says which and why), put into each epoch's logs where
something watches it: `tuner.objective`, `trainer.early_stopping.monitor` or `trainer.reduce_lr.monitor`.
"""

from __future__ import annotations

import keras
import numpy as np

from pneumo.evaluation.renderings import Renderings
from pneumo.record import names


def wanted(trainer_cfg, objective: str | None) -> bool:
    """Whether anything of the job watches val_auc_shifted."""
    monitors = [objective] + [(trainer_cfg.get(k) or {}).get("monitor") for k in ("early_stopping", "reduce_lr")]
    return names.VAL_AUC_SHIFTED in monitors


class ShiftedValidation(keras.callbacks.Callback):
    """Puts `val_auc_shifted` into each epoch's logs, before the callbacks after it read them
    (early stopping, the LR schedule, the tuner's objective, the best epoch's weights)."""

    def __init__(self, films: Renderings, y: np.ndarray, batch_size: int):
        super().__init__()
        self.films, self.y, self.batch_size = films, np.asarray(y), batch_size

    @classmethod
    def for_splits(cls, splits, batch_size: int, seed: int = 0) -> ShiftedValidation:
        return cls(Renderings.of(splits.val.x, splits.train.x, seed), splits.val.y, batch_size)

    def __deepcopy__(self, memo):  # Keras Tuner copies the callbacks per fit: the films are read-only, shared
        return type(self)(self.films, self.y, self.batch_size)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        predict = lambda x: self.model.predict(x, batch_size=self.batch_size, verbose=0)  # noqa: E731
        logs[names.VAL_AUC_SHIFTED] = self.films.worst_auc(predict, self.y)
