"""`pneumo evaluate`: score a registered version on any labelled folder, after the fact.

External validation as a record: the version's own logged model (the pyfunc a server
would run: same decoding, same threshold) scores every image of a folder with
NORMAL/ and PNEUMONIA/; the metrics get patient-level bootstrap CIs, and an
evaluation run nested under the version's job run holds them with the confusion
matrix, ROC and the other plots, the predictions and the folder's digest. Nothing
here selects or changes a model: the threshold is the one the job chose on validation.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from pneumo.record import names as M

TAG_MODEL_VERSION = "pneumo.model_version"
TAG_MODEL_URI = "pneumo.model_uri"
TAG_FOLDER = "pneumo.folder"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def version_of(client, uri: str):
    """The registered version a models:/ URI names (by number or alias)."""
    m = _URI.match(uri)
    if not m:
        raise ValueError(f"{uri!r} is not a registered version: use models:/NAME/VERSION or models:/NAME@ALIAS")
    if m["version"]:
        return client.get_model_version(m["name"], m["version"])
    return client.get_model_version_by_alias(m["name"], m["alias"])


def score_folder(model, index) -> tuple[list, list[tuple[str, str]]]:
    """[(entry, probability)] for every image the model could read, and [(path, reason)] for the rest."""
    import pandas as pd

    out = model.predict(pd.DataFrame({"image": [(index.root / e.path).read_bytes() for e in index.entries]}))
    scored, failed = [], []
    for e, (_, row) in zip(index.entries, out.iterrows()):
        if row["error"]:
            failed.append((e.path, row["error"]))
        else:
            scored.append((e, float(row["probability"])))
    return scored, failed


def evaluate(root: str, model_uri: str, *, bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
             client=None) -> dict:
    """Score the version on the folder and record an evaluation run; returns its metrics and ids."""
    import mlflow
    import numpy as np

    from pneumo.evaluation import stats as ev
    from pneumo.record import runs, store
    from pneumo.data.index import scan_labelled
    from pneumo.data.loader import labels_digest
    from pneumo.data.splits import group_keys
    from pneumo.data import DataError

    client = client or store.connect()
    version = version_of(client, model_uri)  # before any image is read: a wrong URI fails fast
    index = scan_labelled(root)
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    threshold = float(model.unwrap_python_model().threshold)
    scored, failed = score_folder(model, index)
    y = np.array([e.label for e, _ in scored])
    if len(set(y.tolist())) < 2:
        raise DataError(f"{index.root}: {len(scored)} readable images, not both classes: nothing to evaluate "
                        "(see the unreadable files listed above)")
    p = np.array([prob for _, prob in scored])
    patients = np.array(group_keys([e.patient for e, _ in scored], [e.hash for e, _ in scored]))
    results = ev.evaluate(y, p, patients, threshold, bootstrap=bootstrap, confidence=confidence, seed=seed)

    job = client.get_run(version.run_id)
    tags = {
        M.TAG_ROLE: "evaluation", "mlflow.parentRunId": job.info.run_id,
        TAG_MODEL_VERSION: str(version.version), TAG_MODEL_URI: f"models:/{version.name}/{version.version}",
        TAG_FOLDER: str(index.root), M.TAG_DATA_DIGEST: index.digest,
        M.TAG_TEST_DIGEST: labels_digest([e.hash for e, _ in scored], y),
        **runs.git_tags(),
    }
    run = client.create_run(job.info.experiment_id, run_name=f"evaluate {index.root.name} v{version.version}",
                            tags=tags)
    run_id = run.info.run_id
    try:
        client.log_batch(run_id, metrics=[_metric(k, v) for k, v in results.items() if np.isfinite(v)])
        client.log_metric(run_id, "images", len(scored))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "evaluation"
            ev.write_report(out, y, p, threshold)
            rows = [("path", "patient", "y_true", "probability")]
            rows += [(e.path, g, e.label, round(prob, 6)) for (e, prob), g in zip(scored, patients)]
            (out / "predictions.csv").write_text("".join(",".join(map(str, r)) + "\n" for r in rows))
            if failed:
                (out / "unreadable.txt").write_text("".join(f"{path}\t{why}\n" for path, why in failed))
            client.log_artifacts(run_id, str(out), "evaluation")
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    out = {"run_id": run_id, "experiment_id": job.info.experiment_id, "version": str(version.version),
           "folder": str(index.root), "images": len(scored), "unreadable": failed, "threshold": threshold, **results}
    from pneumo.release import card

    if version.name == M.MODEL_NAME:  # the version's card lists every external test
        card.append(client, version.version, card.external_entry(out))
    return out


def _metric(key, value):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def command(args) -> int:
    from mlflow.exceptions import MlflowException

    from pneumo.runtime import quiet
    from pneumo.data import DataError

    quiet.libraries(0)  # the model's Keras backend loads in evaluate(): its import chatter stays off the console
    try:
        r = evaluate(args.root, args.model, bootstrap=args.bootstrap)
    except DataError as e:
        print(f"pneumo evaluate: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, MlflowException) as e:
        message = getattr(e, "message", str(e)).splitlines()[0]
        print(f"pneumo evaluate: cannot use {args.model}: {message}\n  list versions with `pneumo compare`, "
              "or pass --model models:/pneumonia-classifier/<version>", file=sys.stderr)
        return 2
    for path, why in r["unreadable"]:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    print(f"version {r['version']} on {r['folder']}: {r['images']} images, threshold {r['threshold']:.4f} "
          f"(chosen on the job's validation split)")
    for name in M.TEST_METRICS:
        low, high = (r.get(b) for b in M.ci_names(name))
        if name in r and r[name] == r[name]:
            ci = f"  [{low:.3f}, {high:.3f}]" if low == low and high == high else ""
            print(f"  {name:18s} {r[name]:.3f}{ci}")
    print(f"recorded as run {r['run_id']} (experiment {r['experiment_id']}), nested under the version's job")
    return 0
