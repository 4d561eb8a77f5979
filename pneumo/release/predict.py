"""A registered model on image files or folders: one row a file; a file that cannot be read is
reported in its row, not fatal."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from pneumo.data import imaging
from pneumo.data.index import IMAGE_SUFFIXES, is_metadata
from pneumo.record import names
from pneumo.release import limits
from pneumo.release.limits import SERVED, Limits

PATH_COLUMN = "path"
COLUMNS = (PATH_COLUMN, names.PROBABILITY_COLUMN, names.LABEL_COLUMN, names.ERROR_COLUMN, names.OOD_COLUMN,
           names.OOD_FLAG_COLUMN)
NO_GUARD = ("this version has no out-of-distribution screening (registered before the guard): "
            "its labels do not say when a file is not a chest film")
EXPLAIN_COLUMN = "explanation"  # with --explain: the overlay PNG's path ('' where the file was not classified)
DISPLAY_PX = 384  # side of the film in an overlay PNG (the heat is computed at the model's input size)


class InputError(ValueError):
    """A path the user named that cannot be used at all; str() is the one line they see."""


def collect(items: list[str]) -> list[Path]:
    """The files named, and the image files (by suffix) under the folders named, in order; a path that
    does not exist is an InputError naming it. What each file is (FIFO, device, too large) is read()'s
    to say, in the file's own row."""
    missing = [item for item in items if not os.path.lexists(item)]
    if missing:
        raise InputError(f"{', '.join(missing)}: no such file or folder")
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                            and not any(is_metadata(part) for part in f.relative_to(p).parts))
        else:
            files.append(p)
    return files


def fit(model, max_mb: float) -> Limits:
    """The limits a loaded version's calls are cut to: the served ones, with room for one file of
    max_mb (--max-file-mb past the served byte line widens it for this process only)."""
    served = model.unwrap_python_model()
    wanted = replace(SERVED, megabytes=max(SERVED.megabytes, max_mb))
    if hasattr(served, "limits"):  # versions registered before the limits check nothing: any group fits
        served.limits = wanted
    return wanted


def chunks(files: list[Path], max_mb: float, lines: Limits = SERVED):
    """The files read (imaging.read: regular files of at most max_mb MiB), in groups that one call
    of the served model may hold (release.limits): [(path, bytes or the reason it was not read)].
    Memory holds one group at a time, however many files there are."""
    group, size, pixels = [], 0, 0
    for f in files:
        try:
            data = imaging.read(f, max_mb)
        except imaging.ImageError as e:
            data = str(e)
        n, px = limits.cost(data)
        if group and (len(group) == lines.rows or size + n > lines.megabytes * 2**20 or pixels + px > lines.pixels):
            yield group
            group, size, pixels = [], 0, 0
        group.append((f, data))
        size, pixels = size + n, pixels + px
    if group:
        yield group


@dataclass(frozen=True)
class Prediction:
    """A file's row: its probability and label, or why it has none; the guard's score and flag where it has one."""

    path: str
    probability: float | None  # rounded to 6 decimals
    label: str  # '' when the file could not be used
    error: str  # '' when it could
    ood: float | None = None
    ood_flag: bool | None = None
    explanation: str = ""  # with --explain: the overlay PNG's path ('' where the file was not classified)


def predict_files(files: list[Path], model, max_mb: float = imaging.MAX_FILE_MB) -> list[Prediction]:
    """One row a file, in order; a file that cannot be read or used has its reason in `error`."""
    import pandas as pd

    rows = []
    for group in chunks(files, max_mb, fit(model, max_mb)):
        readable = [(f, data) for f, data in group if isinstance(data, bytes)]
        out = iter(model.predict(pd.DataFrame({names.IMAGE_COLUMN: [data for _, data in readable]})).iterrows()
                   if readable else ())
        for f, data in group:
            if not isinstance(data, bytes):
                rows.append(Prediction(str(f), None, "", data))
                continue
            _, r = next(out)
            p = r[names.PROBABILITY_COLUMN]
            ood = r.get(names.OOD_COLUMN)  # absent from versions registered before the guard
            flag = r.get(names.OOD_FLAG_COLUMN)
            rows.append(Prediction(str(f), None if p != p else round(float(p), 6), r[names.LABEL_COLUMN],
                                   r[names.ERROR_COLUMN], None if ood is None or ood != ood else round(float(ood), 4),
                                   None if flag is None or flag != flag else bool(flag)))
    return rows


def has_guard(model) -> bool:
    """Whether a loaded version screens for out-of-distribution films (versions before the guard do not)."""
    return getattr(model.unwrap_python_model(), "guard", None) is not None


def explain_rows(rows: list[Prediction], model, out_dir: Path,
                 max_mb: float = imaging.MAX_FILE_MB) -> list[Prediction]:
    """One overlay PNG per classified file in out_dir (see pneumo.evaluation.explain); the rows with its path.
    Files are read again, a group at a time (chunks), so memory does not grow with their number."""
    import numpy as np

    from pneumo.evaluation import explain

    served = model.unwrap_python_model()  # pneumo.release.serving.PneumoniaModel: its Keras model, input size, threshold
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i, r in enumerate(rows) if r.label]
    pending, taken, written = iter(todo), set(), {}
    for group in chunks([Path(rows[i].path) for i in todo], max_mb):
        films = []
        for (_, data), i in zip(group, pending):
            try:
                if isinstance(data, bytes):  # else changed on disk since it was classified: no overlay
                    films.append((i, data, imaging.decode(data, served.image_size)))
            except imaging.ImageError:
                pass
        if not films:
            continue
        heat, _ = explain.occlusion(served.model, np.stack([image for _, _, image in films])[..., None])
        for (i, data, _), h in zip(films, heat):
            stem, n = Path(rows[i].path).stem, 1
            name = f"{stem}.png"
            while name in taken:  # a.jpeg and a.png, or the same name in two folders
                n += 1
                name = f"{stem}-{n}.png"
            taken.add(name)
            display = imaging.decode(data, max(served.image_size, DISPLAY_PX))
            explain.explain_file(out_dir / name, display, h, rows[i].probability, served.threshold,
                                 Path(rows[i].path).name)
            written[i] = str(out_dir / name)
    return [replace(r, explanation=written.get(i, "")) for i, r in enumerate(rows)]
