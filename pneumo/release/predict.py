"""A registered model on image files or folders: one row a file; a file that cannot be read is
reported in its row, not fatal."""

from __future__ import annotations

from pathlib import Path

from pneumo.data.index import IMAGE_SUFFIXES, is_metadata
from pneumo.record import names

COLUMNS = ("path", "probability", "label", "error", names.OOD_COLUMN, names.OOD_FLAG_COLUMN)
NO_GUARD = ("this version has no out-of-distribution screening (registered before the guard): "
            "its labels do not say when a file is not a chest film")
EXPLAIN_COLUMN = "explanation"  # with --explain: the overlay PNG's path ('' where the file was not classified)
DISPLAY_PX = 384  # side of the film in an overlay PNG (the heat is computed at the model's input size)


def collect(items: list[str]) -> list[Path]:
    files = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES
                            and not any(is_metadata(part) for part in f.relative_to(p).parts))
        else:
            files.append(p)
    return files


def predict_files(files: list[Path], model) -> list[dict]:
    import pandas as pd

    rows, images, readable = [], [], []
    for f in files:
        try:
            images.append(f.read_bytes())
            readable.append(f)
        except OSError as e:
            rows.append({"path": str(f), "probability": None, "label": "", "error": f"unreadable: {e.strerror or e}",
                         names.OOD_COLUMN: None, names.OOD_FLAG_COLUMN: None})
    if images:
        out = model.predict(pd.DataFrame({"image": images}))
        for f, (_, r) in zip(readable, out.iterrows()):
            prob = None if r["probability"] != r["probability"] else round(float(r["probability"]), 6)
            ood = r.get(names.OOD_COLUMN)  # absent from versions registered before the guard
            flag = r.get(names.OOD_FLAG_COLUMN)
            rows.append({"path": str(f), "probability": prob, "label": r["label"], "error": r["error"],
                         names.OOD_COLUMN: None if ood is None or ood != ood else round(float(ood), 4),
                         names.OOD_FLAG_COLUMN: None if flag is None or flag != flag else bool(flag)})
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(rows, key=lambda r: order[r["path"]])


def has_guard(model) -> bool:
    """Whether a loaded version screens for out-of-distribution films (versions before the guard do not)."""
    return getattr(model.unwrap_python_model(), "guard", None) is not None


def explain_rows(rows: list[dict], model, out_dir: Path) -> None:
    """One overlay PNG per classified file in out_dir (see pneumo.evaluation.explain); each row gains its path."""
    import numpy as np

    from pneumo.data.imaging import decode
    from pneumo.evaluation import explain

    served = model.unwrap_python_model()  # pneumo.release.serving.PneumoniaModel: its Keras model, input size, threshold
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in rows:
        r[EXPLAIN_COLUMN] = ""
    todo = [r for r in rows if r["label"]]
    if not todo:
        return
    raw = [Path(r["path"]).read_bytes() for r in todo]
    heat, _ = explain.occlusion(served.model, np.stack([decode(b, served.image_size) for b in raw])[..., None])
    taken: set[str] = set()
    for r, data, h in zip(todo, raw, heat):
        stem, n = Path(r["path"]).stem, 1
        name = f"{stem}.png"
        while name in taken:  # a.jpeg and a.png, or the same name in two folders
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name)
        display = decode(data, max(served.image_size, DISPLAY_PX))
        explain.explain_file(out_dir / name, display, h, r["probability"], served.threshold, Path(r["path"]).name)
        r[EXPLAIN_COLUMN] = str(out_dir / name)
