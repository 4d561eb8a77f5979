"""Keras Tuner at the edge: the tuner factory and the MLflow-aware tuner.

Every trial is a nested MLflow child run of the job's parent run, opened and
closed through Keras Tuner's own hooks (on_trial_begin / on_epoch_end /
on_trial_end), so what MLflow says matches what the oracle recorded, also
across a kill and resume. A trial that raises is recorded FAILED with its
traceback and Keras Tuner's retry / consecutive-failure policy carries on.
Trials run through Keras Tuner's documented extension point, `Tuner.run_trial`.
Never evaluates on test.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
import keras_tuner.src.config

from pneumo.config.errors import ConfigError
from pneumo.record import names
from pneumo.search import console, failures, oracle
from pneumo.search.fit import BestEpochWeights, TunerEpochEnd

# Keras Tuner prints every failed trial's traceback to stderr unless its DEBUG flag is off, and offers
# no public switch: the traceback goes to the trial's MLflow run (error.txt) instead, and the console
# gets one line per failed trial. The one private name pneumo touches, so keras-tuner is pinned below
# 1.5 (pyproject.toml): a release that moved it would print those tracebacks again (tests/test_failures.py
# says so) or fail this import.
keras_tuner.src.config.DEBUG = False

log = logging.getLogger("pneumo")


TRIAL_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INVALID": "FAILED"}


@dataclass(frozen=True)
class TunerState:
    """Where Keras Tuner keeps a search's state (trials, checkpoints), and whether to start it afresh."""

    directory: Path  # shared by a distributed search's chief and workers
    project_name: str  # the job key: one folder a job
    overwrite: bool  # False: a resumed job goes on from the trials it finished


class TrackedTuner(keras_tuner.Tuner):
    """Keras Tuner's Tuner, each trial an MLflow child run; see `make_tuner`."""

    record = None  # pneumo.record.jobs.JobRecord: the job's run, its trials' parent

    def search(self, *args, **kwargs):
        if os.environ.get("KERASTUNER_TUNER_ID") == "chief":  # serves the oracle: its workers show the trials
            return super().search(*args, **kwargs)
        name = self.record.name if self.record else ""
        objective, trials = self.oracle.objective, getattr(self.oracle, "trials", None) or {}
        ended = tuple(tid for tid, t in trials.items() if str(t.status) != "RUNNING")  # resumed: counted already
        scores = [t.score for t in trials.values() if str(t.status) == "COMPLETED" and t.score is not None]
        best = (max if objective.direction == "max" else min)(scores) if scores else None
        with console.job(name, self.oracle.max_trials, kwargs.get("epochs"), objective.name,
                         objective.direction == "max", ended, best):
            return super().search(*args, **kwargs)

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        console.trial_begin(trial.trial_id)
        # a distributed search: which process ran the trial
        distributed = self.tuner_id if "KERASTUNER_TUNER_ID" in os.environ else None
        self._trial_run = self.record.start_trial(trial.trial_id, trial.hyperparameters.values, distributed)
        self._epoch_writes = []

    def run_trial(self, trial, *args, **kwargs):
        """Build and fit the trial's model once per execution; Keras Tuner scores the histories returned,
        or retries / fails the trial on what is raised.

        Each execution gets the search's callbacks deep-copied (as Keras Tuner does: no early-stopping
        or guard state leaks between fits) and two of pneumo's in place of Keras Tuner's own: the
        tuner's epoch-end hook without per-step hooks, and the best epoch's weights (across
        executions) written once per fit instead of at every improving epoch (pneumo.search.fit).
        """
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:  # a Hyperband round (values HyperbandOracle documents)
            kwargs.update(epochs=hp.values["tuner/epochs"], initial_epoch=hp.values["tuner/initial_epoch"])
        best = BestEpochWeights(self.oracle.objective, _trial_file(self, trial.trial_id, WEIGHTS))
        callbacks = kwargs.pop("callbacks", None) or []
        histories = []
        for _ in range(self.executions_per_trial):
            if "tuner/trial_id" in hp.values:  # Hyperband goes on from the previous round's best epoch
                model = self.load_model(self.oracle.get_trial(hp.values["tuner/trial_id"]))
            else:
                model = _build_or_name(self, hp)
            own = [*_copies(callbacks), TunerEpochEnd(self, trial), best]
            try:
                histories.append(self.hypermodel.fit(hp, model, *args, callbacks=own, **kwargs))
            except FloatingPointError as e:  # the trial guard's divergence: the step size that took it there
                key = "optimizer.learning_rate"  # a space's pick, else the config's value
                group, name = key.split(".")
                rate = hp.values.get(key, self.hypermodel.groups[group][name])
                raise FloatingPointError(f"{e} at {key}={rate}") from e
            Path(_trial_file(self, trial.trial_id, BUILD_CONFIG)).write_text(json.dumps(model.get_build_config()))
        return histories

    def load_model(self, trial):
        """The trial's model with its best epoch's weights."""
        model = _build(self.hypermodel, trial.hyperparameters)
        if not model.built:  # built on its first call: its variables must exist before loading (JAX, ...)
            model.build_from_config(json.loads(Path(_trial_file(self, trial.trial_id, BUILD_CONFIG)).read_text()))
        model.load_weights(_trial_file(self, trial.trial_id, WEIGHTS))
        return model

    def on_epoch_end(self, trial, model, epoch, logs=None):
        super().on_epoch_end(trial, model, epoch, logs=logs)
        logs = dict(logs or {})
        if names.LEARNING_RATE not in logs:  # ReduceLROnPlateau, when on, has put it there
            logs[names.LEARNING_RATE] = _learning_rate(model)
        write = self.record.log_epoch(self._trial_run, epoch, logs, synchronous=False)
        if write is not None:
            self._epoch_writes.append(write)
        console.epoch_end(epoch, logs)

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)  # the oracle scores, retries or fails the trial here
        finally:
            if _is_worker():  # the chief's oracle had the last word (a NaN score fails a trial)
                try:
                    trial = self.oracle.get_trial(trial.trial_id)
                except Exception:  # noqa: BLE001 -- the chief is gone: keep what this worker saw
                    pass
            status = TRIAL_STATUS.get(str(trial.status), "FAILED")
            message = trial.message if status == "FAILED" else None
            if status == "FAILED" and not message:
                message = f"trial {trial.trial_id} ended {trial.status} (objective missing or NaN)"
            try:
                self.record.wait_written(self._epoch_writes)  # every epoch's metrics stored before the run ends
            except Exception as e:
                status, message = "FAILED", f"the trial's per-epoch metrics could not be written to MLflow: {e!r}"
                raise
            finally:
                self.record.end_child(self._trial_run, status, message)
                console.trial_end(status, message)
                if status == "FAILED":
                    last = (message or "").strip().splitlines()[-1:] or [""]
                    log.warning("trial %s FAILED (run %s): %s", trial.trial_id, self._trial_run, last[0][:300])


# In each trial's directory (Keras Tuner's own names: tuner directories written before still load).
WEIGHTS = "checkpoint.weights.h5"  # the best epoch's weights
BUILD_CONFIG = "build_config.json"  # the input shape a model that builds on its first call was built with


def _build(hypermodel, hp, max_model_size: int | None = None):
    """A fresh model for `hp`; one over `max_model_size` trainable parameters fails its trial."""
    keras.backend.clear_session()  # the previous trial's graphs and layer names go, as in Keras Tuner
    gc.collect()
    model = hypermodel.build(hp)
    size = sum(math.prod(w.shape) for w in model.trainable_weights)  # what Keras Tuner counts
    if max_model_size and size > max_model_size:
        raise keras_tuner.errors.FailedTrialError(f"Oversized model: {size} parameters, over "
                                                  f"tuner.max_model_size={max_model_size}. Skip model.")
    return model


def _build_or_name(tuner, hp):
    """`_build`; hyperparameters that cannot build a model fail the trial without a retry (they would fail
    again), with an error naming the keys that break it (pneumo.search.failures)."""
    try:
        return _build(tuner.hypermodel, hp, tuner.max_model_size)
    except (ValueError, TypeError) as e:
        message = failures.unbuildable(tuner.hypermodel, tuner.oracle.get_space(), hp.values,
                                       lambda probe: _build(tuner.hypermodel, probe), e)
        raise keras_tuner.errors.FailedTrialError(message) from e


def _copies(callbacks: list) -> list:
    try:
        return copy.deepcopy(callbacks)
    except Exception as e:
        raise keras_tuner.errors.FatalValueError(f"every callback of a search must be deep-copyable: {e!r}") from e


def _trial_file(tuner, trial_id: str, name: str) -> str:
    return os.path.join(tuner.get_trial_dir(trial_id), name)


def _is_worker() -> bool:
    """A worker of a distributed search, by Keras Tuner's documented KERASTUNER_* variables."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def make_tuner(tuner_cfg: Mapping, hypermodel, state: TunerState, record=None):
    """The configured search (pneumo.search.oracle) in a TrackedTuner, its trials child runs of `record`'s."""
    kwargs = {k: v for k, v in tuner_cfg.items() if k != "_target_" and v is not None}
    name = kwargs.pop("objective")
    start_with_defaults = kwargs.pop("start_with_defaults", False)
    try:
        direction = "max" if names.higher_is_better(name) else "min"
    except ValueError as e:
        raise ConfigError(f"tuner.objective: {e}") from None
    algorithm, kwargs = oracle.build(tuner_cfg["_target_"], keras_tuner.Objective(name, direction), kwargs,
                                     start_with_defaults)
    try:
        tuner = TrackedTuner(
            oracle=algorithm,
            hypermodel=hypermodel,
            directory=str(state.directory),
            project_name=state.project_name,
            overwrite=state.overwrite,
            **kwargs,
        )
    except (json.JSONDecodeError, KeyError, RuntimeError) as e:
        raise ConfigError(
            f"the tuner state in {Path(state.directory) / state.project_name} cannot be reloaded ({e}); "
            "rerun with restart=true to discard it and search again"
        ) from None
    tuner.record = record
    return tuner


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
