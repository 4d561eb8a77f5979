"""A trial the guard fails as no better than chance is not retried: the same hyperparameters and seed
would train the same model again (Keras Tuner retries other failures up to max_retries_per_trial)."""

from __future__ import annotations

import keras_tuner
import pytest

from pneumo.search.guard import DegenerateModel


class Counting(keras_tuner.HyperModel):
    def __init__(self, error):
        super().__init__()
        self.error, self.fits = error, 0

    def build(self, hp):
        hp.Int("units", 1, 4)
        return None

    def fit(self, hp, model, *args, **kwargs):
        self.fits += 1
        raise self.error


@pytest.mark.parametrize("error, fits_per_trial", [(DegenerateModel("no better than chance"), 1),
                                                   (RuntimeError("a flaky failure"), 2)])
def test_a_degenerate_trial_fails_once_other_failures_are_retried(tmp_path, error, fits_per_trial):
    hypermodel = Counting(error)
    tuner = keras_tuner.RandomSearch(hypermodel, objective=keras_tuner.Objective("val_auc", "max"), max_trials=2,
                                     max_retries_per_trial=1, max_consecutive_failed_trials=5,
                                     directory=str(tmp_path), project_name="p")
    tuner.run_trial = lambda trial, *a, **kw: hypermodel.fit(trial.hyperparameters, None, *a, **kw)
    tuner.search(x=None, epochs=1, verbose=0)
    trials = tuner.oracle.trials.values()
    assert [str(t.status) for t in trials] == ["FAILED", "FAILED"]
    assert hypermodel.fits == fits_per_trial * 2
