"""`pneumo shift`: a folder of unlabelled films against a registered version's training collection.

The version's own logged model measures every film (pneumo.release.serving: probability,
embedding, raw-file image checks, out-of-distribution flag); pneumo.evaluation.shift compares
them with the reference sample the version carries. The result is recorded as a run nested
under the version's job, as `pneumo evaluate` does, and added to the version's card.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pneumo.data.imaging import MAX_FILE_MB
from pneumo.record import names


class ShiftError(ValueError):
    """Input the check cannot use; str() is the one line the user sees."""


def check(folder: str, model_uri: str, *, bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
          client=None, max_mb: float = MAX_FILE_MB) -> dict:
    import numpy as np

    from pneumo.evaluation import shift
    from pneumo.record import runs, store
    from pneumo.release import card
    from pneumo.release.predict import collect
    from pneumo.release.registry import load_model, version_of

    client = client or store.connect(writes=True)
    version = version_of(client, model_uri)  # a wrong URI fails before any file is read
    root = Path(folder)
    if not root.is_dir():
        raise ShiftError(f"{folder} is not a folder")
    files = collect([folder])
    if not files:
        raise ShiftError(f"{folder} holds no JPEG/PNG files")
    model = load_model(f"models:/{version.name}/{version.version}", client)
    served = model.unwrap_python_model()
    if getattr(served, "guard", None) is None:
        raise ShiftError(f"version {version.version} carries no training-film statistics (registered before the "
                         "out-of-distribution guard): train a new version to check shift against it")
    m = measure(served, files, max_mb)
    if len(m["rows"]) < shift.MIN_FILMS:
        raise ShiftError(f"{folder}: {len(m['rows'])} of {len(files)} files are readable images; the check needs "
                         f"at least {shift.MIN_FILMS}")
    r = shift.compare(served.guard, m["feats"], m["emb"], m["prob"], bootstrap=bootstrap, confidence=confidence,
                      seed=seed)
    r[names.SHIFT_OOD_FLAGGED] = float(served.guard.score(m["feats"], m["emb"])[1].mean())
    unreadable = [(str(files[i]), why) for i, why in enumerate(m["errors"]) if why]

    job = client.get_run(version.run_id)
    tags = {names.TAG_ROLE: names.ROLE_SHIFT, names.PARENT_RUN_ID: job.info.run_id, names.TAG_MODEL_VERSION: str(version.version),
            names.TAG_MODEL_URI: f"models:/{version.name}/{version.version}", names.TAG_FOLDER: str(root.resolve()),
            names.TAG_SHIFT_VERDICT: r["verdict"], **runs.git_tags()}
    run = client.create_run(job.info.experiment_id, run_name=f"shift {root.resolve().name} v{version.version}",
                            tags=tags)
    run_id = run.info.run_id
    try:
        for k, v in r.items():
            if isinstance(v, float) and np.isfinite(v):
                client.log_metric(run_id, k, v)
        client.log_metric(run_id, names.IMAGES, len(m["rows"]))
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / Path(names.SHIFT_REPORT).name
            report.write_text(json.dumps({**r, "unreadable": unreadable}, indent=2))
            client.log_artifact(run_id, str(report), str(Path(names.SHIFT_REPORT).parent))
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    out = {**r, "run_id": run_id, "experiment_id": job.info.experiment_id, "version": str(version.version),
           "folder": str(root.resolve()), "unreadable": unreadable}
    if version.name == names.MODEL_NAME:
        card.append(client, version.version, card.shift_entry(out))
    return out


def measure(served, files: list[Path], max_mb: float) -> dict:
    """served.measure over every file, a group at a time (release.predict.chunks), joined: what it
    keeps of a film (probability, embedding, image features) is small, and no file is held past its group."""
    import numpy as np

    from pneumo.release.predict import chunks

    rows, errors, prob, emb, feats = [], [], [], [], []
    for group in chunks(files, max_mb):
        m = served.measure([data if isinstance(data, bytes) else b"" for _, data in group])
        rows += [len(errors) + i for i in m["rows"]]
        errors += [why if isinstance(data, bytes) else data for (_, data), why in zip(group, m["errors"])]
        prob.append(m["prob"])
        if m["emb"] is not None:
            emb.append(m["emb"])
            feats.append(m["feats"])
    return {"rows": np.array(rows, int), "errors": errors, "prob": np.concatenate(prob) if prob else np.zeros(0),
            "emb": np.concatenate(emb) if emb else None, "feats": np.concatenate(feats) if feats else None}
