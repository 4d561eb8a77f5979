"""`pneumo shift`: a folder of unlabelled films against a registered version's training collection.

The version's own logged model measures every film (pneumo.release.serving: probability,
embedding, raw-file image checks, out-of-distribution flag); pneumo.evaluation.shift compares
them with the reference sample the version carries. The result is recorded as a run nested
under the version's job, as `pneumo evaluate` does, and added to the version's card.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pneumo.data.imaging import MAX_FILE_MB
from pneumo.evaluation.shift import Shift
from pneumo.record import names, provenance
from pneumo.release import card
from pneumo.release.package import load_model

# The report artifact's keys besides the metrics (names.SHIFT_REPORT)
REPORT_DIFFERS, REPORT_REFERENCE, REPORT_VERDICT, REPORT_UNREADABLE = "differs", "reference", "verdict", "unreadable"


class ShiftError(ValueError):
    """Input the check cannot use; str() is the one line the user sees."""


@dataclass(frozen=True)
class ShiftReport:
    """A `pneumo shift` check, as recorded."""

    run_id: str  # the shift check's run, nested under the version's job
    experiment_id: str
    version: str
    folder: str
    shift: Shift  # the verdict, what differs, and the numbers
    flagged: float  # share of the folder's films the out-of-distribution guard flags
    unreadable: tuple[tuple[str, str], ...]  # (path, why)

    @property
    def metrics(self) -> dict[str, float]:
        return {**self.shift.metrics, names.SHIFT_OOD_FLAGGED: self.flagged}


def check(folder: str, model_uri: str, *, bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
          store=None, max_mb: float = MAX_FILE_MB) -> ShiftReport:
    from pneumo.evaluation import shift
    from pneumo.record import store as stores
    from pneumo.release.predict import collect

    store = store or stores.connect(writes=True)
    version = store.version_of(model_uri)  # a wrong URI fails before any file is read
    root = Path(folder)
    if not root.is_dir():
        raise ShiftError(f"{folder} is not a folder")
    files = collect([folder])
    if not files:
        raise ShiftError(f"{folder} holds no JPEG/PNG files")
    served = load_model(version.uri, store).unwrap_python_model()
    if getattr(served, "guard", None) is None:
        raise ShiftError(f"version {version.version} carries no training-film statistics (registered before the "
                         "out-of-distribution guard): train a new version to check shift against it")
    m = measure(served, files, max_mb)
    if len(m["rows"]) < shift.MIN_FILMS:
        raise ShiftError(f"{folder}: {len(m['rows'])} of {len(files)} files are readable images; the check needs "
                         f"at least {shift.MIN_FILMS}")
    found = shift.compare(served.guard, m["feats"], m["emb"], m["prob"], bootstrap=bootstrap, confidence=confidence,
                          seed=seed)
    flagged = float(served.guard.score(m["feats"], m["emb"])[1].mean())
    unreadable = tuple((str(files[i]), why) for i, why in enumerate(m["errors"]) if why)
    job = store.run(version.run_id)
    tags = {names.TAG_MODEL_VERSION: str(version.version), names.TAG_MODEL_URI: version.uri,
            names.TAG_FOLDER: str(root.resolve()), names.TAG_SHIFT_VERDICT: found.verdict, **provenance.git_tags()}
    with store.child(job.experiment_id, job.id, f"shift {root.resolve().name} v{version.version}", names.ROLE_SHIFT,
                     tags) as run_id:
        report = ShiftReport(run_id, job.experiment_id, str(version.version), str(root.resolve()), found, flagged,
                             unreadable)
        store.log_metrics(run_id, {**report.metrics, names.IMAGES: found.images})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(names.SHIFT_REPORT).name
            path.write_text(json.dumps(_as_json(report), indent=2))
            store.log_artifacts(run_id, tmp, str(Path(names.SHIFT_REPORT).parent))
    if version.name == names.MODEL_NAME:
        card.append(store, version.version, card.shift_entry(report))
    return report


def _as_json(r: ShiftReport) -> dict:
    """The report artifact: the numbers, then what differs, the counts, the verdict and the unreadable files."""
    s = r.shift
    return {**s.metrics, REPORT_DIFFERS: list(s.differs), REPORT_REFERENCE: s.reference, names.IMAGES: s.images,
            REPORT_VERDICT: s.verdict, names.SHIFT_OOD_FLAGGED: r.flagged,
            REPORT_UNREADABLE: [list(u) for u in r.unreadable]}


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
