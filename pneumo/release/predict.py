"""`pneumo predict`: a registered model on image files; a bad file is reported, not fatal."""

from __future__ import annotations

import sys
from pathlib import Path

from pneumo.commands import output
from pneumo.data.index import IMAGE_SUFFIXES, is_metadata

COLUMNS = ("path", "probability", "label", "error")
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
            rows.append({"path": str(f), "probability": None, "label": "", "error": f"unreadable: {e.strerror or e}"})
    if images:
        out = model.predict(pd.DataFrame({"image": images}))
        for f, (_, r) in zip(readable, out.iterrows()):
            prob = None if r["probability"] != r["probability"] else round(float(r["probability"]), 6)
            rows.append({"path": str(f), "probability": prob, "label": r["label"], "error": r["error"]})
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(rows, key=lambda r: order[r["path"]])


def explain_rows(rows: list[dict], model, out_dir: Path) -> None:
    """One overlay PNG per classified file in out_dir (see pneumo.evaluation.explain); each row gains its path."""
    import numpy as np

    from pneumo.evaluation import explain
    from pneumo.data.imaging import decode

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


def run(items: list[str], model_uri: str, fmt: str | None, explain: str | None = None) -> int:
    from pneumo.record import store

    store.setup()
    files = collect(items)
    if not files:
        print("pneumo predict: no JPEG/PNG files found in " + " ".join(items), file=sys.stderr)
        return 2
    import mlflow
    from mlflow.exceptions import MlflowException

    from pneumo.runtime import quiet

    quiet.libraries(0)  # the model's Keras backend loads next: its import chatter stays off the console
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as e:
        print(f"pneumo predict: cannot load {model_uri}: {e.message.splitlines()[0]}\n"
              "  run a sweep and `pneumo promote` first, or pass --model models:/pneumonia-classifier/<version>",
              file=sys.stderr)
        return 2
    rows = predict_files(files, model)
    columns = list(COLUMNS)
    if explain:
        explain_rows(rows, model, Path(explain))
        columns.append(EXPLAIN_COLUMN)
    output.write(rows, output.choose(fmt), columns=columns, title=model_uri, cells=lambda r: [
        r["path"], "" if r["probability"] is None else f"{r['probability']:.3f}", r["label"], r["error"],
        *([r[EXPLAIN_COLUMN]] if explain else [])])
    bad = sum(1 for r in rows if r["error"])
    if bad:
        print(f"{bad} of {len(rows)} file(s) could not be classified (see error column)", file=sys.stderr)
    return 1 if bad == len(rows) else 0
