"""Keras Tuner at the edge: the tuner factory and the MLflow-aware tuner.

Every trial is a nested MLflow child run of the job's parent run, opened and
closed through Keras Tuner's own hooks (on_trial_begin / on_epoch_end /
on_trial_end), so what MLflow says matches what the oracle recorded, also
across a kill and resume. A trial that raises is recorded FAILED with its
traceback and Keras Tuner's retry / consecutive-failure policy carries on.
Never evaluates on test.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
import keras
import keras_tuner
from hydra.utils import get_class
from keras_tuner.src.engine import tuner_utils
from pneumo.search import console, distributed
from pneumo.record import names, runs
from pneumo.config.space import ConfigError


# Keras Tuner prints every failed trial's traceback to the console (DEBUG defaults
# on). The traceback goes to the trial's MLflow run (error.txt) instead, and the
# console gets one line per failed trial.
_kt_config = importlib.import_module("keras_tuner.src.config")


_kt_config.DEBUG = False


log = logging.getLogger("pneumo")


# Budget arguments that only some tuners take (the rest go to keras_tuner.Tuner).
ORACLE_ARGS = ("max_trials", "num_initial_points", "max_epochs", "factor", "hyperband_iterations")


TRIAL_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INVALID": "FAILED"}


class TrackedTuner:
    """Mixin put in front of a Keras Tuner class; see `make_tuner`."""

    mlflow_client = None
    experiment_id: str = ""
    parent_run_id: str = ""

    def search(self, *args, **kwargs):
        if os.environ.get("KERASTUNER_TUNER_ID") == "chief":  # serves the oracle: its workers show the trials
            return super().search(*args, **kwargs)
        name = self.mlflow_client.get_run(self.parent_run_id).info.run_name if self.mlflow_client else ""
        objective, trials = self.oracle.objective, getattr(self.oracle, "trials", None) or {}
        ended = tuple(tid for tid, t in trials.items() if str(t.status) != "RUNNING")  # resumed: counted already
        with console.job(name, self.oracle.max_trials, kwargs.get("epochs"), objective.name,
                         objective.direction == "max", ended):
            return super().search(*args, **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        console.trial_begin(trial.trial_id)
        self._trial_run = runs.start_trial(
            self.mlflow_client, self.experiment_id, self.parent_run_id, trial.trial_id,
            trial.hyperparameters.values,
        )
        self._epoch_writes = []
        if "KERASTUNER_TUNER_ID" in os.environ:  # a distributed search: which process ran the trial
            self.mlflow_client.set_tag(self._trial_run, distributed.TAG_TUNER_ID, self.tuner_id)

    def _build_and_fit_model(self, trial, *args, **kwargs):
        """Keras Tuner's per-trial callbacks, made cheap per step and per epoch (see `_cheaper`)."""
        _cheaper(self, kwargs.get("callbacks") or [])
        return super()._build_and_fit_model(trial, *args, **kwargs)

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        logs = dict(logs or {})
        if "learning_rate" not in logs:  # ReduceLROnPlateau, when on, has put it there
            logs["learning_rate"] = _learning_rate(model)
        write = runs.log_epoch(self.mlflow_client, self._trial_run, epoch, logs, synchronous=False)
        if write is not None:
            self._epoch_writes.append(write)
        console.epoch_end(epoch, logs)

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)  # the oracle scores, retries or fails the trial here
        finally:
            if self._is_worker():  # the chief's oracle had the last word (a NaN score fails a trial)
                try:
                    trial = self.oracle.get_trial(trial.trial_id)
                except Exception:  # noqa: BLE001 -- the chief is gone: keep what this worker saw
                    pass
            status = TRIAL_STATUS.get(str(trial.status), "FAILED")
            message = trial.message if status == "FAILED" else None
            if status == "FAILED" and not message:
                message = f"trial {trial.trial_id} ended {trial.status} (objective missing or NaN)"
            try:
                runs.wait_written(self._epoch_writes)  # every epoch's metrics stored before the run ends
            except Exception as e:
                status, message = "FAILED", f"the trial's per-epoch metrics could not be written to MLflow: {e!r}"
                raise
            finally:
                runs.end_trial(self.mlflow_client, self._trial_run, status, message)
                console.trial_end(status, message)
                if status == "FAILED":
                    last = (message or "").strip().splitlines()[-1:] or [""]
                    log.warning("trial %s FAILED (run %s): %s", trial.trial_id, self._trial_run, last[0][:300])


def _cheaper(tuner, callbacks: list) -> None:
    """What Keras Tuner adds to each fit, without the per-step sync and per-epoch disk write.

    - Its TunerCallback overrides the batch hooks, to pass `self.model` to the tuner's
      on_batch_begin / on_batch_end (no-ops here) twice a step. Under JAX reading
      `Callback.model` copies the training state back into the model's variables (and the next
      step gathers it again), and any overridden batch-end hook turns off Keras' asynchronous
      step dispatch for the whole fit: every step then waits for its logs to reach the host.
      When the tuner's batch hooks are Keras Tuner's no-ops, the callback gets Keras' default
      (no-op) batch hooks and the fit steps as a bare `model.fit` does.
    - Its SaveBestEpoch writes the weights file at every improving epoch. `BestEpochInMemory`
      keeps a host copy of the best epoch's weights instead and writes the same file once, when
      training ends: what `load_model` reads is unchanged, and a trial killed before its end is
      run again from its start on resume, so its partial checkpoint was never read.
    """
    base = keras_tuner.Tuner
    no_batch_hooks = (type(tuner).on_batch_begin is base.on_batch_begin
                      and type(tuner).on_batch_end is base.on_batch_end)
    for cb in callbacks:
        if isinstance(cb, tuner_utils.TunerCallback) and no_batch_hooks:
            for hook in ("on_batch_begin", "on_batch_end"):
                setattr(cb, hook, getattr(keras.callbacks.Callback, hook).__get__(cb))
        elif type(cb) is tuner_utils.SaveBestEpoch:  # the one instance shared by a trial's executions
            cb.__class__ = BestEpochInMemory


class BestEpochInMemory(tuner_utils.SaveBestEpoch):
    """Keras Tuner's SaveBestEpoch, writing its file once per fit instead of once per improving epoch."""

    _best_weights = None

    def _save_model(self):  # SaveBestEpoch.on_epoch_end calls it when the objective improved
        self._best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._best_weights is None:
            return
        last = self.model.get_weights()
        self.model.set_weights(self._best_weights)
        try:
            super()._save_model()
        finally:
            self.model.set_weights(last)
            self._best_weights = None


def make_tuner(tuner_cfg: Mapping, hypermodel, *, directory: Path, project_name: str,
               overwrite: bool, client, experiment_id: str, parent_run_id: str):
    """Instantiate the configured Keras Tuner class, tracked by MLflow."""
    kwargs = {k: v for k, v in tuner_cfg.items() if k != "_target_" and v is not None}
    name = kwargs.pop("objective")
    start_with_defaults = kwargs.pop("start_with_defaults", False)
    try:
        direction = "max" if names.higher_is_better(name) else "min"
    except ValueError as e:
        raise ConfigError(f"tuner.objective: {e}") from None
    base = get_class(tuner_cfg["_target_"])
    accepted = inspect.signature(base.__init__).parameters
    for key in ORACLE_ARGS:
        if key in kwargs and key not in accepted:
            raise ConfigError(f"tuner.{key} does not apply to {tuner_cfg['_target_']}; set it to null or "
                              f"use the tuner's own budget ({', '.join(k for k in ORACLE_ARGS if k in accepted)})")
    cls = type(f"Tracked{base.__name__}", (TrackedTuner, base), {})
    try:
        tuner = cls(
            hypermodel=hypermodel,
            objective=keras_tuner.Objective(name, direction),
            directory=str(directory),
            project_name=project_name,
            overwrite=overwrite,
            **kwargs,
        )
    except (json.JSONDecodeError, KeyError, RuntimeError) as e:
        raise ConfigError(
            f"the tuner state in {Path(directory) / project_name} cannot be reloaded ({e}); "
            "rerun with restart=true to discard it and search again"
        ) from None
    tuner.mlflow_client, tuner.experiment_id, tuner.parent_run_id = client, experiment_id, parent_run_id
    if start_with_defaults:
        if isinstance(tuner.oracle, keras_tuner.oracles.HyperbandOracle):
            raise ConfigError("tuner.start_with_defaults does not apply to Hyperband (its brackets choose the "
                              "trials); set it to false or use tuner=random or tuner=bayesian")
        _first_trial_defaults(tuner.oracle)
    return tuner


def _first_trial_defaults(oracle) -> None:
    """Seed the search with the known-good configuration: the first trial takes every space's default
    (the seed model's values), the next ones are the tuner's own. A resumed search has trials already."""
    populate = oracle.populate_space

    def populate_space(trial_id):
        if not oracle.trials:
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": oracle.get_space().values}
        return populate(trial_id)

    oracle.populate_space = populate_space


def history(trial) -> dict[str, list[float]]:
    """A trial's per-epoch loss and AUC, training and validation, as Keras Tuner recorded them."""
    out = {}
    for name in (names.LOSS, names.VAL_LOSS, names.AUC, names.VAL_AUC):
        if trial.metrics.exists(name):
            out[name] = [float(o.value[0]) for o in trial.metrics.get_history(name)]
    return out


def trial_counts(tuner) -> dict[str, int]:
    statuses = [str(t.status) for t in tuner.oracle.trials.values()]
    return {
        names.TRIALS_COMPLETED: statuses.count("COMPLETED"),
        names.TRIALS_FAILED: statuses.count("FAILED") + statuses.count("INVALID"),
    }


def completed_trial_ids(tuner) -> set[str]:
    return {tid for tid, t in tuner.oracle.trials.items() if str(t.status) == "COMPLETED"}


def _learning_rate(model) -> float:
    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except Exception:  # noqa: BLE001 -- a schedule or a backend without it: skip
        return float("nan")
