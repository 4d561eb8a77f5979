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
    max_file_mb(p)
    p.set_defaults(func=predict)


def max_file_mb(p) -> None:
    """The option of a command that reads image files (predict, evaluate, shift)."""
    from pneumo.data.imaging import MAX_FILE_MB

    p.add_argument("--max-file-mb", type=_positive, default=MAX_FILE_MB, metavar="MB",
                   help="a larger file is refused in its own row, unread (default %(default)s MB)")


def _positive(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of MB")
    return value


def predict(args) -> int:
    items, model_uri, fmt, explain = args.paths, args.model, args.format, args.explain
    try:
        files = served.collect(items)
    except served.InputError as e:
        print(f"pneumo predict: error: {e}", file=sys.stderr)
        return 2
    if not files:
        print("pneumo predict: no JPEG/PNG files found in " + " ".join(items), file=sys.stderr)
        return 2
    from pneumo.record import store
    from pneumo.record.entities import RecordError
    from pneumo.record.versions import in_store
    from pneumo.release.package import load_model
    from pneumo.runtime import quiet

    client = store.connect() if in_store(model_uri) else None  # before Keras: a bad store fails fast
    quiet.libraries(0)  # the model's Keras backend loads next: its import chatter stays off the console
    try:
        model = load_model(model_uri, client)  # a private copy: reading writes nothing into the store
    except RecordError as e:
        print(f"pneumo predict: cannot load {model_uri}: {e.message.splitlines()[0]}\n"
              "  run a sweep and `pneumo promote` first, or pass --model "
              f"{names.version_uri(names.MODEL_NAME, '<version>')}",
              file=sys.stderr)
        return 2
    if not served.has_guard(model):
        print(f"pneumo predict: {served.NO_GUARD}", file=sys.stderr)
    rows = served.predict_files(files, model, args.max_file_mb)
    columns = list(served.COLUMNS)
    if explain:
        rows = served.explain_rows(rows, model, Path(explain), args.max_file_mb)
        columns.append(served.EXPLAIN_COLUMN)
    output.write(rows, output.choose(fmt), columns=columns, title=model_uri,
                 record=lambda r: _record(r, bool(explain)), cells=lambda r: [
        r.path, "" if r.probability is None else f"{r.probability:.3f}", r.label, r.error,
        "" if r.ood is None else f"{r.ood:.2f}", "" if r.ood_flag is None else ("yes" if r.ood_flag else "no"),
        *([r.explanation] if explain else [])])
    bad = sum(1 for r in rows if r.error)
    if bad:
        print(f"{bad} of {len(rows)} file(s) could not be classified (see error column)", file=sys.stderr)
    return 1 if bad == len(rows) else 0


def _record(r: served.Prediction, explained: bool) -> dict:
    """A file's row under served.COLUMNS (and EXPLAIN_COLUMN when `explained`), as JSON and CSV give it."""
    values = (r.path, r.probability, r.label, r.error, r.ood, r.ood_flag)
    return {**dict(zip(served.COLUMNS, values)), **({served.EXPLAIN_COLUMN: r.explanation} if explained else {})}
