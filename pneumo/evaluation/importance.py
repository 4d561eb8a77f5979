"""Which config keys explain a metric across a sweep's jobs, and how sure that is.

A random forest (scikit-learn) learns the metric from the jobs' keys. A key's importance is how much
the forest's error on jobs it did not see grows when that key's values are shuffled among them:
scikit-learn's permutation importance, scored as mean absolute error, so it reads in the metric's
own units (0.02 = shuffling the key costs 0.02 AUC on average). The forest is refitted on bootstrap
resamples of the jobs and scored on each resample's left-out jobs, so each key gets a mean and a
percentile interval; a key whose interval reaches 0 cannot be told from noise (the seeds of one
configuration land on both sides of a resample, so seed noise is what the forest cannot learn).

Keys constant across the jobs are left out. Keys that always change together (a model group's keys,
a lever's) cannot be told apart by any data, so they are one entry. Keys that only partly move together
share the credit, as permutation importance always does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MIN_JOBS = 8  # a resample leaves out ~37% of the jobs (1/e): below 8 jobs that is 2 or fewer to score on
TREES = 50  # per forest: a sweep's few dozen jobs need no more (100 moved no mean by more than its interval)
PERMUTATIONS = 3  # shuffles of each key per resample; the resamples carry the rest of the spread


@dataclass(frozen=True)
class Importance:
    keys: tuple[str, ...]  # the key, or the keys that always change together (sorted)
    values: int  # distinct values across the jobs
    mean: float  # the increase of the forest's mean absolute error, in the metric's units
    low: float  # percentile interval over the resamples
    high: float


@dataclass(frozen=True)
class Report:
    jobs: int
    importances: tuple[Importance, ...]  # largest mean first
    constant: int  # keys left out because every job has the same value
    resamples: int  # resamples scored
    error: float | None  # the forest's mean absolute error on the left-out jobs (mean over resamples)
    baseline: float | None  # the same for predicting every job as the resample's mean: nothing learned
    reason: str | None  # why nothing can be said; the other numbers are then empty


def _partition(column: tuple) -> tuple[int, ...]:
    """Each job's value as the index of its first appearance: equal for columns that always change together."""
    first: dict = {}
    return tuple(first.setdefault(v, len(first)) for v in column)


def _numeric(column: tuple) -> np.ndarray | None:
    try:
        return np.array([np.nan if v is None else float(v) for v in column])
    except (TypeError, ValueError):
        return None


def features(jobs: Sequence[Mapping[str, str]]) -> tuple[dict[tuple[str, ...], int], np.ndarray, int]:
    """(the keys of each feature -> its number of distinct values, the jobs x features matrix, the number of
    constant keys) from each job's
    key -> value (a key a job lacks is a value of its own). A feature of one numeric key keeps its numbers
    (NaN where missing: the forest splits on them); the others are category codes, which trees split as well."""
    keys = sorted(set().union(*jobs))
    columns = {k: tuple(job.get(k) for job in jobs) for k in keys}
    groups: dict[tuple[int, ...], list[str]] = {}
    for key, column in columns.items():
        if len(set(column)) > 1:
            groups.setdefault(_partition(column), []).append(key)
    names, cols = {}, []
    for partition, group in groups.items():
        numbers = _numeric(columns[group[0]]) if len(group) == 1 else None
        names[tuple(group)] = max(partition) + 1
        cols.append(numbers if numbers is not None else np.array(partition, dtype=float))
    matrix = np.column_stack(cols) if cols else np.empty((len(jobs), 0))
    return names, matrix, len(keys) - sum(map(len, names))


def importance(jobs: Sequence[Mapping[str, str]], y: Sequence[float], *, confidence: float, resamples: int,
               seed: int = 0) -> Report:
    """Permutation importance of each varying key for `y`, over bootstrap resamples of the jobs."""
    # here, not at the top: every `pneumo compare` loads this module, and only --importance fits forests
    # (0.4-0.8 s of import: pneumo/__init__.py lists such imports)
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    names, x, constant = features(jobs)
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < MIN_JOBS:
        return _nothing(n, constant, f"{n} jobs: too few to say which keys matter (at least {MIN_JOBS})")
    if not names:
        return _nothing(n, constant, "no key varies across the jobs but the seed: nothing to rank")
    rng = np.random.default_rng(seed)
    scores, errors, baselines = [], [], []
    for b in range(resamples):
        inside = rng.integers(0, n, n)
        left_out = np.setdiff1d(np.arange(n), inside)
        if len(left_out) < 2:  # nothing to shuffle among
            continue
        forest = RandomForestRegressor(n_estimators=TREES, random_state=b).fit(x[inside], y[inside])
        shuffled = permutation_importance(forest, x[left_out], y[left_out], scoring="neg_mean_absolute_error",
                                          n_repeats=PERMUTATIONS, random_state=b)
        scores.append(shuffled.importances_mean)
        errors.append(np.mean(np.abs(forest.predict(x[left_out]) - y[left_out])))
        baselines.append(np.mean(np.abs(y[inside].mean() - y[left_out])))
    if not scores:
        return _nothing(n, constant, "no resample left 2 jobs out to score on")
    scores = np.array(scores)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail], axis=0)
    found = [Importance(k, names[k], float(m), float(lo), float(hi))
             for k, m, lo, hi in zip(names, scores.mean(axis=0), low, high)]
    found.sort(key=lambda i: -i.mean)
    return Report(n, tuple(found), constant, len(scores), float(np.mean(errors)), float(np.mean(baselines)), None)


def _nothing(n: int, constant: int, reason: str) -> Report:
    return Report(n, (), constant, 0, None, None, reason)
