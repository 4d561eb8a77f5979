"""What the docs' store scripts read from a job's records: the job, the `pneumo shift` runs under it, its
logged predictions, and the referral band a target would choose on them (docs/trust_results.py,
docs/epoch_results.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pneumo.record import names  # noqa: E402 -- the checkout's pneumo, put on the path above

SUBTYPES = ("bacteria", "virus")  # pneumo.data.subtypes' order


def connect(store: str):
    from mlflow import MlflowClient

    from pneumo.config.paths import local_tracking_uri

    return MlflowClient(local_tracking_uri(store))


def job_run(client, experiment: str, run_id: str | None = None):
    if run_id:
        return client.get_run(run_id)
    exp = client.get_experiment_by_name(experiment)
    found = exp and client.search_runs(
        [exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not found:
        raise SystemExit(f"no FINISHED job in experiment {experiment!r} of {client.tracking_uri}")
    return found[0]


def shift_run(client, job, folder: str):
    """The latest FINISHED `pneumo shift` run on `folder` (matched by its last component) under `job`."""
    runs = client.search_runs([job.info.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_SHIFT}' and "
                              f"tags.`{names.PARENT_RUN_ID}` = '{job.info.run_id}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    name = Path(folder).name
    found = [r for r in runs if Path(r.data.tags.get(names.TAG_FOLDER, "")).name == name]
    if not found:
        raise SystemExit(f"no `pneumo shift` run on a folder named {name!r} under job {job.info.run_id}: run "
                         f"`pneumo shift {folder} --model models:/{names.MODEL_NAME}/N` on the job's version first")
    return found[0]


def predictions(client, job, artifact: str):
    """(labels, probabilities, patients) of a job's logged predictions."""
    import numpy as np

    from pneumo.record import predictions as csv

    rows = csv.read(client.download_artifacts(job.info.run_id, artifact))
    return (np.array([int(r["y_true"]) for r in rows]), np.array([float(r["probability"]) for r in rows]),
            [r["patient"] for r in rows])


def subtype_films(patients: list[str], y) -> dict[str, int]:
    """PNEUMONIA test films per subtype: Kermany's patient key ends in the subtype (pneumo.data.subtypes)."""
    kinds = [p.rsplit("_", 1)[-1] if p.startswith("person") and label == 1 else None for p, label in zip(patients, y)]
    return {s: kinds.count(s) for s in SUBTYPES}


def split_label(job) -> str:
    return "carved test split" if job.data.tags.get(names.TAG_TEST_SOURCE) == "carved from train" else "external set"


def share(x: float) -> str:
    return f"{x:.1%}"


def flagged(run) -> tuple[int, int]:
    """(films flagged, films) of a shift run."""
    images = int(run.data.metrics[names.IMAGES])
    return round(run.data.metrics[names.SHIFT_OOD_FLAGGED] * images), images


def band_at(client, job, target: float) -> dict:
    """The band a referral target chooses on the job's validation predictions, and what it decides on
    validation and on the test films (pneumo.evaluation.referral, as a job with evaluation.refer does)."""
    from pneumo.evaluation import referral

    threshold = job.data.metrics[names.THRESHOLD]
    (yv, pv, _), (yt, pt, _) = (predictions(client, job, a) for a in (names.VAL_PREDICTIONS_ARTIFACT,
                                                                          names.PREDICTIONS_ARTIFACT))
    band = referral.choose_band(yv, pv, threshold, target)
    return {"band": band, "val": referral.decided_metrics(yv, pv, threshold, band),
            "test": referral.decided_metrics(yt, pt, threshold, band)}
