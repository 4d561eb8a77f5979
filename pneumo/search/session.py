"""A job's search: what it needs (`Search`, built once by the job), and what it found (`SearchResult`, the
one typed answer the job asks its questions of, as Ray Tune's ResultGrid is). Never evaluates on test."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import keras

from pneumo.model.builders import ensemble, served
from pneumo.record import names
from pneumo.search import distributed
from pneumo.search.failures import last_failure
from pneumo.search.fit import fit_kwargs
from pneumo.search.tuner import TunerState, completed_trial_ids, history, make_tuner, trial_counts

log = logging.getLogger("pneumo")


@dataclass(frozen=True)
class Search:
    """What a job's search needs: the tuner, the trials' fit, the data, and where the tuner keeps its state."""

    tuner: Mapping  # cfg.tuner: the Keras Tuner class, its budget, the objective
    trainer: Mapping  # cfg.trainer: what every trial's fit gets
    distributed: Mapping  # cfg.distributed: this process's part in a distributed search
    hypermodel: object  # pneumo.model.builders.HyperModel
    splits: object  # pneumo.data.base.Splits (train and val only are read here)
    state: TunerState
    seed: int

    @property
    def objective(self) -> str:
        return self.tuner["objective"]

    def seeded(self) -> None:
        """The seed and precision every model of the search starts from."""
        keras.utils.set_random_seed(self.seed)
        keras.mixed_precision.set_global_policy(self.trainer["precision"])

    def fit_kwargs(self) -> dict:
        return fit_kwargs(self.trainer, self.splits, self.objective)


@dataclass(frozen=True)
class SearchResult:
    """A finished search: its best trials (Keras Tuner's, best first) and how many trials completed and failed."""

    tuner: object  # the tuner, for its trials' models (repeats load the best one's)
    top: tuple  # the best `evaluation.ensemble` trials
    completed: int
    failed: int
    evaluation: Mapping  # cfg.evaluation: how the job's model is served (test-time views)

    @property
    def best(self):
        return self.top[0]

    @property
    def score(self) -> float:
        """The best trial's objective: what the job returns to Hydra."""
        return float(self.best.score)

    @property
    def epochs(self) -> int:
        """Epochs the best trial trained to its best epoch."""
        return (self.best.best_step or 0) + 1

    @property
    def best_hp(self) -> dict[str, str]:
        """The best trial's hyperparameters as params: best_hp.<key>."""
        return {f"{names.BEST_HP_PREFIX}{k}": str(v) for k, v in self.best.hyperparameters.values.items()}

    @property
    def trial_tags(self) -> dict[str, str]:
        """Which trial(s) the job's model is: the best, and the ensemble's members when it averages several."""
        return {names.TAG_BEST_TRIAL: self.best.trial_id,
                **({names.TAG_ENSEMBLE: " ".join(t.trial_id for t in self.top)} if len(self.top) > 1 else {})}

    @property
    def counts(self) -> dict[str, float]:
        return {names.TRIALS_COMPLETED: float(self.completed), names.TRIALS_FAILED: float(self.failed)}

    def history(self) -> dict[str, list[float]]:
        """The best trial's per-epoch loss and AUC, training and validation."""
        return history(self.best)

    @cached_property
    def model(self):
        """The job's model: the best trial's, or the top trials' average; served as evaluation.tta asks."""
        models = [self.tuner.load_model(t) for t in self.top]
        return served(ensemble(models) if len(models) > 1 else models[0], self.evaluation)


def run(search: Search, record, evaluation: Mapping) -> SearchResult:
    """The search, its trials recorded as children of the job's run (`record`: a JobRecord); a chief serves
    the oracle to its workers meanwhile. RuntimeError when no trial completed, with the last failure."""
    search.seeded()
    tuner = make_tuner(search.tuner, search.hypermodel, search.state, record)
    stale = record.close_stale_trials(completed_trial_ids(tuner))
    if stale:
        log.info("resumed job %s: closed %d trial run(s) left RUNNING by a killed process",
                 search.state.project_name, stale)
    distributed.publish(record, search.distributed)
    tuner.search(**search.fit_kwargs())  # a chief serves the oracle here until the workers are done
    distributed.withdraw(record, search.distributed)
    counts = trial_counts(tuner)
    found = SearchResult(tuner, tuple(tuner.oracle.get_best_trials(evaluation["ensemble"])) if
                         counts[names.TRIALS_COMPLETED] else (), counts[names.TRIALS_COMPLETED],
                         counts[names.TRIALS_FAILED], evaluation)
    record.log_metrics(found.counts)
    if not found.completed:
        raise RuntimeError(f"no trial completed ({found.failed} failed)\n{last_failure(tuner)}")
    return found


def work(search: Search, store, experiment_id: str) -> float:
    """A Keras Tuner worker: runs the trials the chief's oracle hands out, as children of its parent run."""
    chief = distributed.join(store, experiment_id, search.state.project_name, search.distributed)
    search.seeded()
    tuner = make_tuner(search.tuner, search.hypermodel, search.state, store.job_record(chief))
    tuner.search(**search.fit_kwargs())
    return float("nan")  # the job's objective is the chief's to report
