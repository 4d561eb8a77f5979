"""`pneumo`: one command, thin subcommands wiring the modules together.

Nothing heavy is imported at module level: `pneumo --help` and the data
commands never load TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys

from pneumo import paths

TRAIN_HELP = "run one job (Hydra overrides follow; add -m for a multirun grid)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/sweep hand their arguments to Hydra untouched (its own --help, -m, --cfg ...).
    if argv and argv[0] == "train":
        return _hydra(argv[1:])
    if argv and argv[0] == "sweep":
        return _sweep(argv[1:])

    parser = argparse.ArgumentParser(prog="pneumo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help=TRAIN_HELP, add_help=False)
    sub.add_parser("sweep", help="run a named sweep from sweeps/ (pneumo sweep NAME [overrides])", add_help=False)
    from pneumo.data.cli import register as register_data
    from pneumo.registry import register_cli as register_registry

    register_data(sub)
    register_registry(sub)
    p = sub.add_parser("predict", help="classify image files or folders with a registered model")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", default="models:/pneumonia-classifier@champion", help="an MLflow model URI")
    p.add_argument("--format", choices=["table", "csv", "json"], default=None)
    p.set_defaults(func=_predict)
    e = sub.add_parser("evaluate", help="score a registered version on a labelled folder (NORMAL/, PNEUMONIA/)")
    e.add_argument("root", metavar="ROOT", help="a folder with NORMAL/ and PNEUMONIA/ (or a Kaggle root with test/)")
    e.add_argument("--model", default="models:/pneumonia-classifier@champion", help="a registered version's URI")
    e.add_argument("--bootstrap", type=int, default=1000, help="patient-level resamples for the 95%% CIs")
    e.set_defaults(func=_evaluate)
    u = sub.add_parser("ui", help="open the MLflow UI on the local store (127.0.0.1)")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--backend-store-uri", help="default: MLFLOW_TRACKING_URI, else the local store")
    u.set_defaults(func=_ui)

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv else 2
    return int(args.func(args) or 0)


def _hydra(hydra_argv: list[str]) -> int:
    sys.argv = ["pneumo train", *hydra_argv]
    from pneumo import callbacks
    from pneumo.train import main as hydra_main

    code = 0
    try:
        hydra_main()
    except SystemExit as e:  # Hydra exits 1 after reporting a failed job
        code = e.code if isinstance(e.code, int) else 1
    failed = callbacks.summarize()
    return code or (1 if failed else 0)


def _sweep(argv: list[str]) -> int:
    names = sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml"))
    if not argv or argv[0].startswith("-"):
        print(f"usage: pneumo sweep NAME [overrides...]\nsweeps: {', '.join(names)}", file=sys.stderr)
        return 2
    name, overrides = argv[0], argv[1:]
    if name not in names:
        print(f"pneumo sweep: no sweep {name!r} in {paths.SWEEPS_DIR}; choose one of: {', '.join(names)}",
              file=sys.stderr)
        return 2
    return _hydra(["--multirun", "--config-dir", str(paths.SWEEPS_DIR), "--config-name", name, *overrides])


def _predict(args) -> int:
    from pneumo.predict import run

    return run(args.paths, args.model, args.format)


def _evaluate(args) -> int:
    from pneumo.external import command

    return command(args)


def _ui(args) -> int:
    from pathlib import Path

    from pneumo import tracking

    uri = tracking.setup(args.backend_store_uri)
    # This interpreter runs MLflow (and MLflow runs uvicorn the same way): no `mlflow`
    # on PATH needed, so it works from a venv that was never activated.
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host,
           "--port", str(args.port)]
    if uri.startswith("sqlite:"):
        cmd += ["--default-artifact-root", str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")]
    print(f"pneumo ui: {uri} at http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    os.execv(cmd[0], cmd)


def command(*args: str) -> str:
    """How to run `pneumo ARGS` as typed from the current folder, venv activated or not."""
    exe = os.path.join(os.path.dirname(sys.executable), "pneumo")
    if not os.path.exists(exe):
        return " ".join([sys.executable, "-m", "pneumo", *args])
    rel = os.path.relpath(exe)
    return " ".join([exe if rel.startswith("..") else rel, *args])


if __name__ == "__main__":
    sys.exit(main())
