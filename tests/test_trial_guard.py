"""The trial guard: a diverged or chance-level fit raises (Keras Tuner then records the trial FAILED)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pneumo.evaluation.stats import auc_standard_error
from pneumo.search.guard import DegenerateModel, TrialGuard


def fit(model, guard, epochs=2):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), (rng.random(64) < 0.6).astype("int64")
    x[:, 0] += 2.0 * y  # feature 0 carries the label
    model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=16, verbose=0, callbacks=[guard])


def model(trainable=True, lr=0.05):
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", trainable=trainable)
    m = keras.Model(inputs, dense(inputs))
    m.compile(keras.optimizers.SGD(lr), "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    return m


def test_a_constant_predictor_fails_with_the_reason():
    guard = TrialGuard(38, 26, z=1.645)
    with pytest.raises(DegenerateModel, match="no better than chance.*val_auc 0.500"):
        fit(model(trainable=False), guard)  # zero weights, frozen: p = 0.5 for every image


def test_a_model_that_learns_passes_and_a_diverged_one_fails():
    fit(model(), TrialGuard(38, 26, z=1.645))  # no exception
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(model(lr=float("inf")), TrialGuard(38, 26, z=1.645), epochs=1)


def test_no_chance_check_when_z_is_null():
    fit(model(trainable=False), TrialGuard(38, 26, z=None))


def test_hanley_mcneil_standard_error():
    # by hand: Q1 = 0.9/1.1, Q2 = 1.62/1.9; (0.09 + 49 (Q1 - 0.81) + 49 (Q2 - 0.81)) / 2500 = 0.001032
    assert auc_standard_error(0.9, 50, 50) == pytest.approx(0.03212, abs=1e-4)
    assert auc_standard_error(0.5, 10, 10) > auc_standard_error(0.5, 100, 100)


@pytest.mark.parametrize("spec, trial, epoch", [("mid_epoch", 1, 1), ("mid_epoch:0", 0, 1), ("mid_epoch:2:0", 2, 0)])
def test_the_kill_point_stops_after_the_first_batch_of_its_trials_epoch_only(monkeypatch, spec, trial, epoch):
    """PNEUMO_KILL_AT=mid_epoch[:TRIAL[:EPOCH]] (0-based, default 1 each); the stop itself (SIGKILL or a hold)
    is testpoints.stop_here, run for real by tests/test_resume.py: here it records where it was reached."""
    from pneumo.runtime import testpoints
    from pneumo.search import guard

    class Stopped(Exception):
        """stop_here never returns: the process dies or is held there."""

    monkeypatch.setattr(testpoints, "stop_here", lambda: (_ for _ in ()).throw(Stopped()))
    monkeypatch.setattr(guard.KillMidEpoch, "fits", 0)
    monkeypatch.setenv(testpoints.KILL_AT, spec)
    points = []
    with pytest.raises(Stopped):
        for t in range(3):
            k = guard.KillMidEpoch.from_env()  # Keras Tuner copies the callback per trial: one per model
            k.on_train_begin()
            for e in range(2):
                k.on_epoch_begin(e)
                for b in range(2):
                    points.append((t, e, b))
                    k.on_train_batch_end(b)
    assert points[-1] == (trial, epoch, 0)
    for other in ("", "after_search", "mid_epochs:1"):
        monkeypatch.setenv(testpoints.KILL_AT, other)
        assert guard.KillMidEpoch.from_env() is None
