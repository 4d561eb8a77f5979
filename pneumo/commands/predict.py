"""`pneumo predict`: classify image files or folders with a registered model (pneumo.release.predict)."""

from __future__ import annotations

import sys
from pathlib import Path

from pneumo.commands import output
from pneumo.record import names
from pneumo.release import predict as served


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify image files or folders with a registered model")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", default=names.CHAMPION_URI, help="an MLflow model URI")
    p.add_argument("--format", choices=output.FORMATS, default=None)
    p.add_argument("--explain", metavar="DIR", help="also write an occlusion heatmap PNG per classified file into DIR")
    p.set_defaults(func=predict)


def predict(args) -> int:
    items, model_uri, fmt, explain = args.paths, args.model, args.format, args.explain
    files = served.collect(items)
    if not files:
        print("pneumo predict: no JPEG/PNG files found in " + " ".join(items), file=sys.stderr)
        return 2
    from mlflow.exceptions import MlflowException

    from pneumo.record import store
    from pneumo.release import registry
    from pneumo.runtime import quiet

    client = store.connect() if registry.in_store(model_uri) else None  # before Keras: a bad store fails fast
    quiet.libraries(0)  # the model's Keras backend loads next: its import chatter stays off the console
    try:
        model = registry.load_model(model_uri, client)  # a private copy: reading writes nothing into the store
    except MlflowException as e:
        print(f"pneumo predict: cannot load {model_uri}: {e.message.splitlines()[0]}\n"
              "  run a sweep and `pneumo promote` first, or pass --model models:/pneumonia-classifier/<version>",
              file=sys.stderr)
        return 2
    if not served.has_guard(model):
        print(f"pneumo predict: {served.NO_GUARD}", file=sys.stderr)
    rows = served.predict_files(files, model)
    columns = list(served.COLUMNS)
    if explain:
        served.explain_rows(rows, model, Path(explain))
        columns.append(served.EXPLAIN_COLUMN)
    output.write(rows, output.choose(fmt), columns=columns, title=model_uri, cells=lambda r: [
        r["path"], "" if r["probability"] is None else f"{r['probability']:.3f}", r["label"], r["error"],
        "" if r[names.OOD_COLUMN] is None else f"{r[names.OOD_COLUMN]:.2f}",
        "" if r[names.OOD_FLAG_COLUMN] is None else ("yes" if r[names.OOD_FLAG_COLUMN] else "no"),
        *([r[served.EXPLAIN_COLUMN]] if explain else [])])
    bad = sum(1 for r in rows if r["error"])
    if bad:
        print(f"{bad} of {len(rows)} file(s) could not be classified (see error column)", file=sys.stderr)
    return 1 if bad == len(rows) else 0
