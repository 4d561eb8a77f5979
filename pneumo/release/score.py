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
from dataclasses import dataclass
from pathlib import Path

from pneumo.data.imaging import MAX_FILE_MB
from pneumo.data.index import IMAGE_SUFFIXES
from pneumo.data.loader import labels_digest
from pneumo.evaluation import plots
from pneumo.record import names, predictions, provenance
from pneumo.release import card
from pneumo.release.package import load_model

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
        out = model.predict(pd.DataFrame({names.IMAGE_COLUMN: [data for _, data in readable]}))
        for (e, _), (_, row) in zip(readable, out.iterrows()):
            if row[names.ERROR_COLUMN]:
                failed.append((e.path, row[names.ERROR_COLUMN]))
            else:
                scored.append((e, float(row[names.PROBABILITY_COLUMN])))
    return scored, sorted(failed)


@dataclass(frozen=True)
class External:
    """A version scored on a labelled folder (`pneumo evaluate`), as recorded."""

    run_id: str  # the evaluation run, nested under the version's job
    experiment_id: str
    version: str
    folder: str
    images: int  # scored
    unreadable: tuple[tuple[str, str], ...]  # (path, why) of the files left out
    threshold: float  # the job's, chosen on its validation split
    metrics: dict[str, float]  # the test metrics with their CIs, per subtype, and the referral band's (NaN: undefined)


def evaluate(root: str, model_uri: str, *, bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
             store=None, max_mb: float = MAX_FILE_MB) -> External:
    """Score the version on the folder and record an evaluation run, nested under the version's job."""
    from pneumo.data.index import scan_labelled
    from pneumo.record import store as stores

    store = store or stores.connect(writes=True)
    version = store.version_of(model_uri)  # before any image is read: a wrong URI fails fast
    index = scan_labelled(root, max_mb=max_mb)
    model = load_model(version.uri, store)
    threshold = float(model.unwrap_python_model().threshold)
    scored, failed = score_folder(model, index, max_mb)
    y, p, patients, results = _measure(model, index, scored, failed, threshold, bootstrap, confidence, seed)
    job = store.run(version.run_id)
    tags = {names.TAG_MODEL_VERSION: str(version.version), names.TAG_MODEL_URI: version.uri,
            names.TAG_FOLDER: str(index.root), names.TAG_DATA_DIGEST: index.digest,
            names.TAG_TEST_DIGEST: labels_digest([e.hash for e, _ in scored], y), **provenance.git_tags()}
    with store.child(job.experiment_id, job.id, f"evaluate {index.root.name} v{version.version}",
                     names.ROLE_EVALUATION, tags) as run_id:
        store.log_metrics(run_id, {**results, names.IMAGES: len(scored)})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / names.EVALUATION_DIR
            plots.write_report(out, y, p, threshold)
            rows = [(e.path, g, e.label, round(prob, 6)) for (e, prob), g in zip(scored, patients)]
            (out / names.EVALUATION_PREDICTIONS).write_text(predictions.to_csv(names.EVALUATION_COLUMNS, rows))
            if failed:
                (out / names.UNREADABLE_ARTIFACT).write_text("".join(f"{path}\t{why}\n" for path, why in failed))
            store.log_artifacts(run_id, out, names.EVALUATION_DIR)
    external = External(run_id, job.experiment_id, str(version.version), str(index.root), len(scored),
                        tuple(failed), threshold, results)
    if version.name == names.MODEL_NAME:  # the version's card lists every external test
        card.append(store, version.version, card.external_entry(external))
    return external


def _measure(model, index, scored, failed, threshold, bootstrap, confidence, seed):
    """(labels, probabilities, patient keys, metrics with patient-bootstrap CIs) of the scored films."""
    import numpy as np

    from pneumo.data import DataError
    from pneumo.data.splits import group_keys
    from pneumo.evaluation import stats as ev
    from pneumo.evaluation.subgroups import subtype_metrics

    y = np.array([e.label for e, _ in scored])
    if len(set(y.tolist())) < 2:  # raised before the command lists the unreadable files: name them here
        shown = "; ".join(f"{path}: {why}" for path, why in failed[:UNREADABLE_NAMED])
        more = f"; and {len(failed) - UNREADABLE_NAMED} more" if len(failed) > UNREADABLE_NAMED else ""
        raise DataError(f"{index.root}: {len(scored)} readable images, not both classes: nothing to evaluate"
                        + (f" ({len(failed)} unreadable, left out: {shown}{more})" if failed else ""))
    p = np.array([prob for _, prob in scored])
    patients = np.array(group_keys([e.patient for e, _ in scored], [e.hash for e, _ in scored]))
    results = ev.evaluate(y, p, patients, threshold, bootstrap=bootstrap, confidence=confidence, seed=seed)
    results.update(subtype_metrics(y, p, patients, [e.path for e, _ in scored], threshold, bootstrap=bootstrap,
                                   confidence=confidence, seed=seed))
    band = getattr(model.unwrap_python_model(), "band", None)  # evaluation.refer: fixed on the job's validation
    if band is not None:
        from pneumo.evaluation.referral import decided_metrics

        results.update(decided_metrics(y, p, threshold, band))
    return y, p, patients, results
