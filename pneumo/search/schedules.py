"""Learning-rate schedules by epoch (`trainer.lr_schedule`): a linear warm-up, then a cosine decay to the
end of the planned epochs. `warmup_epochs: 0, start_factor: 1` is plain cosine decay; a warm-up from a
small `start_factor` is the one-cycle policy (Smith 2018). The peak is the optimizer's own learning rate
(the search's `learning_rate` space), read when training starts, so the tuner still searches it.
"""

from __future__ import annotations

import math

import keras


class WarmupCosine(keras.callbacks.Callback):
    """Sets the optimizer's learning rate at the start of each epoch: start_factor x peak rising linearly to
    the peak over `warmup_epochs`, then half a cosine down to end_factor x peak at the last epoch."""

    def __init__(self, epochs: int, *, warmup_epochs: int, start_factor: float, end_factor: float):
        super().__init__()
        self.epochs, self.warmup = int(epochs), int(warmup_epochs)
        self.start, self.end = float(start_factor), float(end_factor)
        self.peak = None

    def factor(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.start + (1.0 - self.start) * epoch / self.warmup
        decay = max(self.epochs - 1 - self.warmup, 1)
        progress = min((epoch - self.warmup) / decay, 1.0)
        return self.end + (1.0 - self.end) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def on_train_begin(self, logs=None):
        self.peak = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.peak * self.factor(epoch)
