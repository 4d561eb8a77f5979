"""What tracking adds to each training step and epoch stays off the critical path, and loses nothing.

benchmarks/overhead.py measures the cost; these check the mechanisms on the tracked tuner's own
`run_trial`: no callback of a trial's fit has a per-batch hook (so Keras keeps its asynchronous
step dispatch), the tuner hears every epoch, the best epoch's weights are written once per fit and
are what `load_model` returns, and per-epoch metrics written in the background all reach the store.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import keras
import keras_tuner
import numpy as np
import pytest

from pneumo.config import paths
from pneumo.record import store
from pneumo.record.client import Store
from pneumo.search.fit import BestEpochWeights
from pneumo.search.tuner import TrackedTuner

EPOCHS = 3
BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")


class Toy(keras_tuner.HyperModel):
    """A model that makes its variables on its first call (as load_model must handle under JAX);
    `fit` records the callbacks each fit gets."""

    def __init__(self, with_input=False):
        super().__init__()
        self.with_input, self.fits = with_input, []

    def build(self, hp):
        layers = [keras.layers.Dense(hp.Int("units", 2, 4), activation="relu"), keras.layers.Dense(1)]
        model = keras.Sequential(([keras.Input((4,))] if self.with_input else []) + layers)
        model.compile("sgd", "mse")
        return model

    def fit(self, hp, model, *args, **kwargs):
        self.fits.append(kwargs["callbacks"])
        return model.fit(*args, **kwargs)


class Recording(TrackedTuner):
    """The tracked tuner with its epoch hook recording instead of writing to MLflow."""

    def on_epoch_end(self, trial, model, epoch, logs=None):
        self.heard = [*getattr(self, "heard", []), (epoch, logs["val_score"])]


def toy_trial(tmp, scores: list[list[float]], **tuner_kwargs) -> SimpleNamespace:
    """One trial of `len(scores)` executions through `run_trial`; epoch e of execution i reports
    val_score scores[i][e] (the objective). What was written when, and what load_model returns."""
    seen = []  # (val_score, weights) per epoch, all executions

    class Score(keras.callbacks.Callback):  # a search callback: deep-copied per execution, `seen` shared
        def on_epoch_end(self, epoch, logs=None):
            logs["val_score"] = scores[len(seen) // EPOCHS][epoch]
            seen.append((logs["val_score"], self.model.get_weights()))

    hypermodel = Toy(tuner_kwargs.pop("with_input", False))
    search = keras_tuner.oracles.RandomSearchOracle(keras_tuner.Objective("val_score", "max"), max_trials=1, seed=0)
    tuner = Recording(oracle=search, hypermodel=hypermodel, executions_per_trial=len(scores), directory=str(tmp),
                      project_name="toy", **tuner_kwargs)
    trial = tuner.oracle.create_trial("tuner0")
    writes, save_weights = [], keras.Model.save_weights

    def counted(model, *args, **kwargs):
        writes.append(len(seen))  # epochs trained so far, all executions
        return save_weights(model, *args, **kwargs)

    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    keras.Model.save_weights = counted
    try:
        tuner.run_trial(trial, x, x[:, :1], validation_data=(x, x[:, :1]), epochs=EPOCHS, batch_size=8, verbose=0,
                        callbacks=[Score()])
    finally:
        keras.Model.save_weights = save_weights
    best = max(range(len(seen)), key=lambda i: (seen[i][0], -i))  # the first epoch with the highest score
    loaded = tuner.load_model(trial).get_weights()
    return SimpleNamespace(fits=hypermodel.fits, writes=writes, heard=tuner.heard,
                           loads_best=all(np.array_equal(a, b) for a, b in zip(loaded, seen[best][1], strict=True)))


def test_a_trials_fits_get_no_per_batch_hook_and_the_tuner_hears_every_epoch(tmp_path):
    run = toy_trial(tmp_path, [[0.2, 0.7, 0.5], [0.6, 0.9, 0.8]])
    assert len(run.fits) == 2
    per_batch = [type(c).__name__ for cbs in run.fits for c in cbs for hook in BATCH_HOOKS
                 if getattr(type(c), hook) is not getattr(keras.callbacks.Callback, hook)]
    assert per_batch == []
    assert run.heard == [(0, 0.2), (1, 0.7), (2, 0.5), (0, 0.6), (1, 0.9), (2, 0.8)]


@pytest.mark.parametrize("scores, writes", [
    ([[0.2, 0.7, 0.5], [0.6, 0.9, 0.8]], [3, 6]),  # the second execution improves: each fit writes once, at its end
    ([[0.2, 0.7, 0.5], [0.1, 0.3, 0.2]], [3]),  # it does not: the first's best epoch stays
])
def test_best_epoch_across_executions_written_once_per_fit_and_loaded(tmp_path, scores, writes):
    run = toy_trial(tmp_path, scores)
    assert run.writes == writes
    assert run.loads_best


def test_an_oversized_model_fails_its_trial(tmp_path):
    with pytest.raises(keras_tuner.errors.FailedTrialError, match="Oversized model"):
        toy_trial(tmp_path, [[0.5] * EPOCHS], with_input=True, max_model_size=5)


@pytest.mark.slow  # ~10-20 s: out of the fast suite, in make test-all
def test_keras_dispatches_steps_asynchronously_in_a_trial_under_jax(tmp_path):
    """Under JAX (the GPU backend here) Keras Tuner's own per-trial callback turned async dispatch off;
    load_model must build the model before loading its weights."""
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI"):
            pytest.fail("JAX is not installed: CI must run this test")
        pytest.skip("JAX is not installed")
    script = textwrap.dedent(f"""
        import keras
        from test_epoch_cost import toy_trial
        run = toy_trial({str(tmp_path)!r}, [[0.2, 0.7, 0.5], [0.6, 0.9, 0.8]])
        asynchronous = all(keras.callbacks.CallbackList(list(cbs))._async_train for cbs in run.fits)
        print(keras.backend.backend(), asynchronous, run.loads_best)
    """)
    tests = str(Path(__file__).parent)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.pathsep.join([str(paths.ROOT), tests]),
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ["jax", "True", "True"], out.stdout


def test_best_epoch_weights_written_once_at_train_end(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "checkpoint.weights.h5"
    cb = BestEpochWeights(keras_tuner.Objective("val_auc", "max"), path)
    cb.set_model(model)
    weights = {}
    for epoch, auc in enumerate([0.6, 0.8, float("nan"), 0.7]):
        weights[epoch] = [np.full_like(w, epoch + 1.0) for w in model.get_weights()]
        model.set_weights(weights[epoch])
        cb.on_epoch_end(epoch, {"val_auc": auc})
    assert not path.exists()  # nothing written per epoch
    cb.on_train_end()
    assert all((a == b).all() for a, b in zip(model.get_weights(), weights[3]))  # training's last state kept
    best = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best.load_weights(path)
    assert all((a == b).all() for a, b in zip(best.get_weights(), weights[1]))  # epoch 2, val_auc 0.8


def test_background_epoch_metrics_all_stored_before_the_run_ends(tmp_path):
    opened = store.connect(None, tmp_path / "mlruns", creates=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(opened.uri)
    run = client.create_run(opened.experiment("epochs")).info.run_id
    writes = [opened.log_epoch(run, e, {"loss": 1.0 / (e + 1), "val_auc": float("nan")}, synchronous=False)
              for e in range(20)]
    opened.wait_written(writes)
    client.set_terminated(run)
    history = client.get_metric_history(run, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(20))
    assert not client.get_metric_history(run, "val_auc")  # non-finite values are still left out


def test_a_failed_background_write_is_raised_when_waited_for(tmp_path):
    class Broken:
        def log_batch(self, run_id, metrics):
            raise OSError("disk full")

    broken = Store(f"sqlite:///{tmp_path}/nowhere.db")
    broken._client = Broken()
    write = broken.log_epoch("run", 0, {"loss": 0.5}, synchronous=False)
    with pytest.raises(OSError, match="disk full"):
        broken.wait_written([write])
