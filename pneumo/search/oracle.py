"""The search algorithm: the Keras Tuner oracle that `tuner._target_` names, built by pneumo.

`tuner._target_` names one of Keras Tuner's tuner classes (conf/tuner/*.yaml). Each of them only
builds its oracle (keras_tuner.oracles: the algorithm, with its budget) and hands it to
`keras_tuner.Tuner`; Hyperband's class also runs its rounds, which pneumo's own `run_trial` does
(pneumo.search.tuner). pneumo builds that same oracle from the same arguments, through Keras Tuner's
public classes, so that it can start the search from the defaults (a subclass overriding
`populate_space`, the method Keras Tuner's Oracle documents for subclasses), and gives it to its
tracked `keras_tuner.Tuner`. The oracle's saved state is unchanged: a tuner directory written
before resumes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import keras_tuner
from hydra.utils import get_class

from pneumo.config.errors import ConfigError

# The oracle each tuner class builds, by the tuner class.
ORACLES = {
    keras_tuner.RandomSearch: keras_tuner.oracles.RandomSearchOracle,
    keras_tuner.BayesianOptimization: keras_tuner.oracles.BayesianOptimizationOracle,
    keras_tuner.Hyperband: keras_tuner.oracles.HyperbandOracle,
    keras_tuner.GridSearch: keras_tuner.oracles.GridSearchOracle,
}

# Budget arguments that only some oracles take; an oracle's other arguments are shared by all, and what
# no oracle takes goes to keras_tuner.Tuner (executions_per_trial, max_model_size).
BUDGET = ("max_trials", "num_initial_points", "max_epochs", "factor", "hyperband_iterations")


class DefaultsFirst:
    """Put in front of an oracle class: the first trial takes every space's default (the seed model's
    values), the next ones are the oracle's own. A resumed search has trials already."""

    def populate_space(self, trial_id):
        if not self.trials:
            return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": self.get_space().values}
        return super().populate_space(trial_id)


def build(target: str, objective: keras_tuner.Objective, kwargs: Mapping, start_with_defaults: bool):
    """(the oracle of the tuner class `target`, built from the tuner config's `kwargs` that it takes;
    the rest of `kwargs`, for keras_tuner.Tuner)."""
    cls = get_class(target)
    base = ORACLES.get(cls)
    if base is None:
        known = ", ".join(f"{c.__module__.split('.')[0]}.{c.__name__}" for c in ORACLES)
        raise ConfigError(f"tuner._target_: {target} is not a Keras Tuner search pneumo runs; use one of {known}")
    accepted = inspect.signature(base.__init__).parameters
    for key in BUDGET:
        if key in kwargs and key not in accepted:
            raise ConfigError(f"tuner.{key} does not apply to {target}; set it to null or "
                              f"use the tuner's own budget ({', '.join(k for k in BUDGET if k in accepted)})")
    if start_with_defaults:
        if issubclass(base, keras_tuner.oracles.HyperbandOracle):
            raise ConfigError("tuner.start_with_defaults does not apply to Hyperband (its brackets choose the "
                              "trials); set it to false or use tuner=random or tuner=bayesian")
        base = type(f"DefaultsFirst{base.__name__}", (DefaultsFirst, base), {})
    oracle = base(objective=objective, **{k: v for k, v in kwargs.items() if k in accepted})
    return oracle, {k: v for k, v in kwargs.items() if k not in accepted}
