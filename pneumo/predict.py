"""`pneumo predict`: a registered model on image files; a bad file is reported, not fatal."""

from __future__ import annotations

import sys
from pathlib import Path

from pneumo import output
from pneumo.data.index import IMAGE_SUFFIXES, is_metadata

COLUMNS = ("path", "probability", "label", "error")


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


def run(items: list[str], model_uri: str, fmt: str | None) -> int:
    from pneumo import tracking

    tracking.setup()
    files = collect(items)
    if not files:
        print("pneumo predict: no JPEG/PNG files found in " + " ".join(items), file=sys.stderr)
        return 2
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as e:
        print(f"pneumo predict: cannot load {model_uri}: {e.message.splitlines()[0]}\n"
              "  run a sweep and `pneumo promote` first, or pass --model models:/pneumonia-classifier/<version>",
              file=sys.stderr)
        return 2
    rows = predict_files(files, model)
    output.write(rows, output.choose(fmt), columns=list(COLUMNS), title=model_uri, cells=lambda r: [
        r["path"], "" if r["probability"] is None else f"{r['probability']:.3f}", r["label"], r["error"]])
    bad = sum(1 for r in rows if r["error"])
    if bad:
        print(f"{bad} of {len(rows)} file(s) could not be classified (see error column)", file=sys.stderr)
    return 1 if bad == len(rows) else 0
