"""pneumo: search chest X-ray pneumonia classifiers honestly, track every run, ship the best one.

Sweeps of Keras Tuner searches composed by Hydra, every job and trial recorded in
MLflow, and a `champion` moved only behind gates. This is the `pneumo` command: it
builds the parser from the subcommands in pneumo/commands/, each of which parses its
arguments and calls the stage that does the work. Nothing heavy is imported at module
level, so `pneumo --help` and the data commands never load TensorFlow.
"""

from __future__ import annotations

import argparse
import sys

from pneumo.commands import compare, data, evaluate, predict, promote, rerun, run, shift, ui
from pneumo.config import defaults
from pneumo.config.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/sweep hand their arguments to Hydra untouched (its own --help, -m, --cfg ...).
    if argv and argv[0] == "train":
        return run.train(argv[1:])
    if argv and argv[0] == "sweep":
        return run.sweep(argv[1:])
    args = parser().parse_args(argv)
    if not getattr(args, "func", None):
        parser().print_help()
        return 0 if not argv else 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:  # e.g. a tracking store that does not exist or is not a database: it names it
        print(f"pneumo {args.command}: {e}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    evaluation = defaults.option("evaluation", "default")  # the CLI's defaults are the config's (conf/)
    top = argparse.ArgumentParser(prog="pneumo", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="run one job (Hydra overrides follow; add -m for a multirun grid)", add_help=False)
    sub.add_parser("sweep", help="run a named sweep from sweeps/ (pneumo sweep NAME [overrides])", add_help=False)
    data.register(sub)
    compare.register(sub, confidence=evaluation.confidence)
    promote.register(sub, confidence=evaluation.confidence)
    predict.register(sub)
    evaluate.register(sub, bootstrap=evaluation.bootstrap)
    shift.register(sub, bootstrap=evaluation.bootstrap)
    rerun.register(sub)
    ui.register(sub)
    return top


if __name__ == "__main__":
    sys.exit(main())
