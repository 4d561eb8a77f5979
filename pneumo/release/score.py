"""`pneumo evaluate`: score a registered version on any labelled folder, after the fact.

External validation as a record: the version's own logged model (the pyfunc a server
would run: same decoding, same threshold) scores every image of a folder with
NORMAL/ and PNEUMONIA/; the metrics get patient-level bootstrap CIs, and an
evaluation run nested under the version's job run holds them with the confusion
matrix, ROC and the other plots, the predictions and the folder's digest. Nothing
here selects or changes a model: the threshold is the one the job chose on validation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pneumo.data.imaging import MAX_FILE_MB
from pneumo.data.index import IMAGE_SUFFIXES
from pneumo.record import names, predictions
from pneumo.release.registry import load_model, version_of

UNREADABLE_NAMED = 5  # unreadable files named in the one-line error when too few readable ones are left

def score_folder(model, index, max_mb: float = MAX_FILE_MB) -> tuple[list, list[tuple[str, str]]]:
    """[(entry, probability)] for every image the model could read, and [(path, reason)] for the rest:
    the files the index passed over for what they are (a FIFO, too large) and those the model refused.
    The files are read a group at a time (release.predict.chunks)."""
    import pandas as pd

    from pneumo.release.predict import chunks, fit

    by_file = {index.root / e.path: e for e in index.entries}
    failed = [(path, why) for path, why in index.skipped
              if not path.endswith("/") and Path(path).suffix.lower() in IMAGE_SUFFIXES]
    scored = []
    for group in chunks(list(by_file), max_mb, fit(model, max_mb)):
        readable = [(by_file[f], data) for f, data in group if isinstance(data, bytes)]
        failed += [(by_file[f].path, data) for f, data in group if not isinstance(data, bytes)]
        if not readable:
            continue
        out = model.predict(pd.DataFrame({"image": [data for _, data in readable]}))
        for (e, _), (_, row) in zip(readable, out.iterrows()):
            if row["error"]:
                failed.append((e.path, row["error"]))
            else:
                scored.append((e, float(row["probability"])))
    return scored, sorted(failed)


def evaluate(root: str, model_uri: str, *, bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
             client=None, max_mb: float = MAX_FILE_MB) -> dict:
    """Score the version on the folder and record an evaluation run; returns its metrics and ids."""
    import numpy as np

    from pneumo.data import DataError
    from pneumo.data.index import scan_labelled
    from pneumo.data.loader import labels_digest
    from pneumo.data.splits import group_keys
    from pneumo.evaluation import plots
    from pneumo.evaluation import stats as ev
    from pneumo.record import runs, store

    client = client or store.connect(writes=True)
    version = version_of(client, model_uri)  # before any image is read: a wrong URI fails fast
    index = scan_labelled(root, max_mb=max_mb)
    model = load_model(f"models:/{version.name}/{version.version}", client)
    threshold = float(model.unwrap_python_model().threshold)
    scored, failed = score_folder(model, index, max_mb)
    y = np.array([e.label for e, _ in scored])
    if len(set(y.tolist())) < 2:  # raised before the command lists the unreadable files: name them here
        shown = "; ".join(f"{path}: {why}" for path, why in failed[:UNREADABLE_NAMED])
        more = f"; and {len(failed) - UNREADABLE_NAMED} more" if len(failed) > UNREADABLE_NAMED else ""
        raise DataError(f"{index.root}: {len(scored)} readable images, not both classes: nothing to evaluate"
                        + (f" ({len(failed)} unreadable, left out: {shown}{more})" if failed else ""))
    p = np.array([prob for _, prob in scored])
    patients = np.array(group_keys([e.patient for e, _ in scored], [e.hash for e, _ in scored]))
    results = ev.evaluate(y, p, patients, threshold, bootstrap=bootstrap, confidence=confidence, seed=seed)
    from pneumo.evaluation.subgroups import subtype_metrics

    results.update(subtype_metrics(y, p, patients, [e.path for e, _ in scored], threshold, bootstrap=bootstrap,
                                   confidence=confidence, seed=seed))
    band = getattr(model.unwrap_python_model(), "band", None)  # evaluation.refer: fixed on the job's validation
    if band is not None:
        from pneumo.evaluation.referral import decided_metrics

        results.update(decided_metrics(y, p, threshold, band))

    job = client.get_run(version.run_id)
    tags = {
        names.TAG_ROLE: names.ROLE_EVALUATION, names.PARENT_RUN_ID: job.info.run_id,
        names.TAG_MODEL_VERSION: str(version.version), names.TAG_MODEL_URI: f"models:/{version.name}/{version.version}",
        names.TAG_FOLDER: str(index.root), names.TAG_DATA_DIGEST: index.digest,
        names.TAG_TEST_DIGEST: labels_digest([e.hash for e, _ in scored], y),
        **runs.git_tags(),
    }
    run = client.create_run(job.info.experiment_id, run_name=f"evaluate {index.root.name} v{version.version}",
                            tags=tags)
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, metrics=[_metric(k, v) for k, v in results.items() if np.isfinite(v)])
        client.log_metric(run_id, names.IMAGES, len(scored))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / names.EVALUATION_DIR
            plots.write_report(out, y, p, threshold)
            rows = [(e.path, g, e.label, round(prob, 6)) for (e, prob), g in zip(scored, patients)]
            (out / names.EVALUATION_PREDICTIONS).write_text(predictions.to_csv(names.EVALUATION_COLUMNS, rows))
            if failed:
                (out / "unreadable.txt").write_text("".join(f"{path}\t{why}\n" for path, why in failed))
            client.log_artifacts(run_id, str(out), names.EVALUATION_DIR)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    out = {"run_id": run_id, "experiment_id": job.info.experiment_id, "version": str(version.version),
           "folder": str(index.root), "images": len(scored), "unreadable": failed, "threshold": threshold, **results}
    from pneumo.release import card

    if version.name == names.MODEL_NAME:  # the version's card lists every external test
        card.append(client, version.version, card.external_entry(out))
    return out


def _metric(key, value):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)
