"""trainer.repeats: the best trial's hyperparameters trained with other seeds, for the seed spread.

A job's bootstrap CIs say how much the test *sample* moves its numbers, not how much
training noise does (initial weights, batch order, dropout, augmentation draws): on a
small set one seed can move a test AUC by more than the gap between two jobs. With
trainer.repeats=N the best hyperparameters are trained N times in all: repeat 0 is the
search's own fit of the best trial, repeats 1..N-1 start from seeds seed+1 ... seed+N-1 and
train as a trial does (same data, epochs, callbacks, best epoch restored by the objective).
Each one's threshold is chosen on validation and it is scored once on test; each is a child
run (role "repeat"), and the parent run gets every metric's mean and sample SD
(`test_auc_seed_mean`, `test_auc_seed_sd`, `seed_repeats`). The registered model stays the
search's; nothing is chosen on these numbers.

Keras Tuner's `executions_per_trial` (tuner.executions_per_trial) fits every trial N times
and gives the oracle the mean objective: a steadier choice of hyperparameters, at N times the
search. It keeps one checkpoint per trial, the best epoch over all executions, so there are no
per-seed models to test: the spread a user needs to tell two jobs apart is not there.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import traceback
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from pneumo.evaluation import scoring
from pneumo.model.builders import served
from pneumo.record import names
from pneumo.record.entities import FAILED, FINISHED
from pneumo.search.guard import DegenerateModel
from pneumo.search.session import Search, SearchResult

log = logging.getLogger("pneumo")


def run(search: Search, found: SearchResult, evaluation: Mapping, record) -> dict[str, float]:
    """Train and score the repeats; log each as a child run of the job's (`record`) and their mean and SD on it."""
    scores, best = [], found.best
    for r in range(search.trainer["repeats"]):
        seed = search.seed + r
        child = record.start_repeat(r, seed, best.trial_id)
        try:
            model = found.tuner.load_model(best) if r == 0 else _fit(search, best, seed)
            result = _score(model, search, evaluation)
        except (DegenerateModel, FloatingPointError) as e:  # the trial guard: this seed learned nothing
            record.end_child(child, FAILED, traceback.format_exc())
            log.warning("repeat %d (seed %d) FAILED: %s", r, seed, e)
            continue
        except BaseException:
            record.end_child(child, FAILED, traceback.format_exc())
            raise
        # The final numbers only: per-epoch values under the same names (val_auc) would show as the latest.
        record.log_epoch(child, 0, result)
        record.end_child(child, FINISHED)
        scores.append(result)
    summary = spread(scores)
    record.log_metrics(summary)
    return summary


def spread(scores: list[dict]) -> dict[str, float]:
    """Mean and sample SD (ddof=1) of each metric over the repeats that have it; SD needs two."""
    out = {names.SEED_REPEATS: float(len(scores))}
    for name in names.SEED_METRICS:
        values = [v for s in scores if (v := names.finite(s.get(name))) is not None]
        mean, sd = names.seed_names(name)
        if values:
            out[mean] = float(np.mean(values))
        if len(values) > 1:
            out[sd] = float(np.std(values, ddof=1))
    return out


def _fit(search: Search, best, seed: int):
    """The best trial's hyperparameters trained from `seed`, its best epoch (by the objective) restored."""
    objective = search.objective
    keras.backend.clear_session()  # as Keras Tuner does before each trial's build
    keras.utils.set_random_seed(seed)
    seeded = copy.copy(search.hypermodel)
    seeded.seed = seed  # the augmentation layer draws from its own seed
    hp = best.hyperparameters
    model = seeded.build(hp)
    kwargs = search.fit_kwargs()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "best.weights.h5"
        kwargs["callbacks"].append(
            keras.callbacks.ModelCheckpoint(weights, monitor=objective, save_best_only=True, save_weights_only=True,
                                            mode="max" if names.higher_is_better(objective) else "min"))
        seeded.fit(hp, model, **kwargs)
        model.load_weights(weights)
    return model


def _score(model, search: Search, evaluation: Mapping) -> dict[str, float]:
    """As the job scores its model (pneumo.evaluation.scoring), without the bootstrap."""
    return scoring.score_model(served(model, evaluation), search.splits, evaluation, search.trainer["batch_size"],
                               bootstrap=False).metrics
