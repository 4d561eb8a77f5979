"""Registered versions: what a job leaves in the Model Registry, and how promotion reads it back.

A job writes its model's record through this module (`log_predictions`, `register`), and
promotion reads it back here: each format is written in one function, beside its reader.
The Store (pneumo.record) holds the versions; nothing here talks to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from pneumo.record import names, predictions
from pneumo.record.entities import Run, Version


@dataclass(frozen=True)
class Registered:
    """The version a job's model became."""

    run_id: str
    version: str
    no_guard: str | None = None  # why the model carries no out-of-distribution guard (the version's tag)
    resumed: bool = False  # registered before the job was killed and resumed


def log_predictions(record, hashes, patients, y, probabilities, artifact: str = names.PREDICTIONS_ARTIFACT) -> None:
    """The job's test predictions, one row an image: what a paired bootstrap between two versions reads (and
    its validation predictions: what an ensemble of jobs is thresholded on, after the fact). `record`: the
    job's run (pneumo.record.jobs.JobRecord)."""
    rows = ((h, p, int(t), round(float(q), 6)) for h, p, t, q in zip(hashes, patients, y, probabilities))
    record.log_text(predictions.to_csv(names.PREDICTION_COLUMNS, rows), artifact)


def read_predictions(path) -> list[tuple[str, str, int, float]]:
    return predictions.read_job(path)


def register(record, model_uri: str, splits, evaluated) -> Registered:
    """A new version of the job's model from `model_uri`, tagged with what promotion and the registry UI read:
    its job run, data and test digests, threshold and test metrics, and why it has no guard (if it has none)."""
    tags = version_tags(record.run_id, splits, evaluated)
    return Registered(record.run_id, record.register(model_uri, tags), evaluated.no_guard)


def version_tags(run_id: str, splits, evaluated) -> dict[str, str]:
    """What a registered version carries about its job (`evaluated`: a pneumo.evaluation.scoring.Evaluated)."""
    return {
        names.VERSION_TAG_RUN_ID: run_id,
        names.TAG_DATA_DIGEST: splits.digest,
        names.TAG_TEST_DIGEST: splits.test_digest,
        names.THRESHOLD: str(evaluated.threshold),
        **{m: str(evaluated.metrics[m]) for m in names.TEST_METRICS if m in evaluated.metrics},
        **({names.TAG_NO_GUARD: evaluated.no_guard} if evaluated.no_guard is not None else {}),
    }


def previous_alias(alias: str) -> str:
    return names.PREVIOUS if alias == names.CHAMPION else f"{alias}-{names.PREVIOUS}"


def logged(version: Version, run: Run | None, name: str) -> float | None:
    """A number the job logged: the run's metric, else the version's tag."""
    value = run.metric(name) if run is not None else None
    return value if value is not None else version.number_logged(name)


def tested_on(version: Version, run: Run | None) -> str | None:
    return version.test_digest or (run.tags.get(names.TAG_TEST_DIGEST) if run else None)
