"""What tracking adds to each training step and epoch stays off the critical path, and loses nothing.

benchmarks/overhead.py measures the cost; these check the mechanisms: Keras' asynchronous step
dispatch survives Keras Tuner's callback, the best-epoch checkpoint is written once with the
best epoch's weights, and per-epoch metrics written in the background all reach the store.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import keras_tuner
import numpy as np
import pytest
from keras_tuner.src.engine import tuner_utils

from pneumo.config import paths
from pneumo.record import runs, store
from pneumo.search.tuner import BestEpochInMemory, _cheaper


class _Tuner(keras_tuner.RandomSearch):
    def __init__(self):  # no oracle, no directory: only the hooks are looked at
        pass


def _tuner_callbacks(tuner):
    objective = keras_tuner.Objective("val_auc", "max")
    return [keras.callbacks.History(), tuner_utils.TunerCallback(tuner, None),
            tuner_utils.SaveBestEpoch(objective, "unused")]


def _default(method) -> bool:
    return bool(getattr(method, "_is_default", False))  # how Keras tells a hook left alone


def test_tuner_callback_loses_its_no_op_batch_hooks_and_checkpoint_kept_in_memory():
    cbs = _tuner_callbacks(_Tuner())
    assert not _default(cbs[1].on_batch_end)
    _cheaper(cbs[1].tuner, cbs)
    assert _default(cbs[1].on_batch_begin) and _default(cbs[1].on_batch_end)
    assert not _default(cbs[1].on_epoch_end)  # the per-epoch hook (MLflow) stays
    assert type(cbs[2]) is BestEpochInMemory and cbs[2].filepath == "unused"


def test_a_tuner_with_its_own_batch_hooks_keeps_them_synchronous():
    class Batchwise(_Tuner):
        def on_batch_end(self, trial, model, batch, logs=None):
            pass

    cbs = _tuner_callbacks(Batchwise())
    _cheaper(cbs[1].tuner, cbs)
    assert not _default(cbs[1].on_batch_end)


def test_keras_dispatches_steps_asynchronously_with_the_tuner_callback_under_jax():
    """Under JAX (the GPU backend here) Keras Tuner's callback alone turned async dispatch off."""
    if importlib.util.find_spec("jax") is None:
        if os.environ.get("CI"):
            pytest.fail("JAX is not installed: CI must run this test")
        pytest.skip("JAX is not installed")
    script = textwrap.dedent("""
        import keras, keras_tuner
        from keras_tuner.src.engine import tuner_utils
        from pneumo.search.tuner import _cheaper
        class T(keras_tuner.RandomSearch):
            def __init__(self): pass
        cbs = [tuner_utils.TunerCallback(T(), None),
               tuner_utils.SaveBestEpoch(keras_tuner.Objective("val_auc", "max"), "unused")]
        before = keras.callbacks.CallbackList(list(cbs))._async_train
        _cheaper(cbs[0].tuner, cbs)
        after = keras.callbacks.CallbackList(list(cbs))._async_train
        print(keras.backend.backend(), before, after)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(paths.ROOT), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ["jax", "False", "True"], out.stdout


def test_best_epoch_written_once_at_train_end_with_the_best_weights(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "checkpoint.weights.h5"
    cb = tuner_utils.SaveBestEpoch(keras_tuner.Objective("val_auc", "max"), str(path))
    _cheaper(_Tuner(), [cb])
    cb.set_model(model)
    weights = {}
    for epoch, auc in enumerate([0.6, 0.8, 0.7]):
        weights[epoch] = [np.full_like(w, epoch + 1.0) for w in model.get_weights()]
        model.set_weights(weights[epoch])
        cb.on_epoch_end(epoch, {"val_auc": auc})
    assert not path.exists()  # nothing written per epoch
    cb.on_train_end()
    assert all((a == b).all() for a, b in zip(model.get_weights(), weights[2]))  # training's last state kept
    best = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best.load_weights(path)
    assert all((a == b).all() for a, b in zip(best.get_weights(), weights[1]))  # epoch 2, val_auc 0.8


def test_background_epoch_metrics_all_stored_before_the_run_ends(tmp_path):
    store.setup(None, tmp_path / "mlruns")
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.create_run(store.experiment_id("epochs", tmp_path / "mlruns")).info.run_id
    writes = [runs.log_epoch(client, run, e, {"loss": 1.0 / (e + 1), "val_auc": float("nan")}, synchronous=False)
              for e in range(20)]
    runs.wait_written(writes)
    client.set_terminated(run)
    history = client.get_metric_history(run, "loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(20))
    assert not client.get_metric_history(run, "val_auc")  # non-finite values are still left out


def test_a_failed_background_write_is_raised_when_waited_for():
    class Broken:
        def log_batch(self, run_id, metrics):
            raise OSError("disk full")

    write = runs.log_epoch(Broken(), "run", 0, {"loss": 0.5}, synchronous=False)
    with pytest.raises(OSError, match="disk full"):
        runs.wait_written([write])
