"""What the study scripts (docs/fidelity.py, docs/screen.py) read from a store: one record per finished job
of an experiment, its lever, seed and fidelity taken from its overrides (its run name), and its logged
validation and test predictions, so that jobs can be ensembled after the fact.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per downloaded CSV buries the tables

from pneumo.evaluation import stats  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.record import names  # noqa: E402


@dataclass
class Job:
    run_id: str
    lever: str
    seed: str
    fidelity: str  # the job's other overrides, sorted: "trainer.image_size=32 data.train_fraction=0.5"
    seconds: float
    commit: str
    metrics: dict
    params: dict
    _client: object = field(repr=False, default=None)

    def predictions(self, artifact: str):
        """(hashes, patients, y, p) of a logged predictions artifact, sorted by (hash, patient)."""
        from pneumo.release.registry import read_predictions

        with tempfile.TemporaryDirectory() as tmp:
            rows = read_predictions(self._client.download_artifacts(self.run_id, artifact, tmp))
        h, pt, y, p = zip(*rows)
        return np.array(h), np.array(pt), np.array(y, int), np.array(p, float)


def jobs(store: str, experiment: str) -> list[Job]:
    """The FINISHED jobs of `experiment` in the store folder `store`, oldest first."""
    from mlflow import MlflowClient

    from pneumo.config.paths import local_tracking_uri
    from pneumo.record.store import pages

    client = MlflowClient(local_tracking_uri(store))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no experiment {experiment!r} in {store}")
    out = []
    for run in pages(client.search_runs, [exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'",
                     order_by=["attributes.start_time ASC"]):
        if run.info.status != "FINISHED" or run.data.tags.get(names.TAG_RERUN_OF):
            continue
        overrides = dict(o.split("=", 1) for o in run.info.run_name.split() if "=" in o)
        out.append(Job(run.info.run_id, overrides.pop("lever", "baseline"), overrides.pop("seed", "?"),
                       " ".join(f"{k}={v}" for k, v in sorted(overrides.items())),
                       (run.info.end_time - run.info.start_time) / 1000,
                       run.data.tags.get(names.TAG_GIT_COMMIT, "?")[:7], run.data.metrics, run.data.params, client))
    return out


def ensemble(members: list[Job], bootstrap: int = 1000) -> dict[str, float]:
    """The members' probabilities averaged film by film, thresholded on validation by the members' own policy
    (evaluation.threshold, target_sensitivity), then measured once on test with patient-bootstrap CIs: what a
    registered average of these jobs would have scored. Nothing here is chosen on test."""
    val = [m.predictions(names.VAL_PREDICTIONS_ARTIFACT) for m in members]
    test = [m.predictions(names.PREDICTIONS_ARTIFACT) for m in members]
    for part in (val, test):
        if any(not np.array_equal(part[0][0], other[0]) for other in part[1:]):
            raise SystemExit("the members were not scored on the same films: not one split")
    p_val, p_test = np.mean([v[3] for v in val], axis=0), np.mean([t[3] for t in test], axis=0)
    params = members[0].params
    threshold = stats.choose_threshold(val[0][2], p_val, params.get("evaluation.threshold", "sensitivity"),
                                       float(params.get("evaluation.target_sensitivity", 0.95)))
    out = stats.evaluate(test[0][2], p_test, test[0][1], threshold, bootstrap=bootstrap)
    return {names.MODEL_VAL_AUC: stats.auc(val[0][2], p_val), names.THRESHOLD: threshold, **out}


def mean_sd(values, digits: int = 3) -> str:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return "n/a"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def with_ci(values: dict, metric: str) -> str:
    low, high = names.ci_names(metric)
    if metric not in values:
        return "n/a"
    ci = f" [{values[low]:.3f}, {values[high]:.3f}]" if low in values and high in values else ""
    return f"{values[metric]:.3f}{ci}"
