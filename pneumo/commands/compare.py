"""`pneumo compare`: the leaderboard of the jobs in MLflow (pneumo.commands.leaderboard): by configuration,
its seeds grouped and the ties with the best marked (pneumo.commands.groups), or one row per job; with
--importance, which config keys explain the metric (pneumo.commands.importance)."""

from __future__ import annotations

import argparse
import sys

from pneumo.commands import output
from pneumo.record import names

BY = ("auto", "config", "job")
RESAMPLES = 50  # --importance: forests refitted; 9 s for 18 jobs and 3 keys on 2 CPU cores under a load of 11


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (0.95 is a 95% interval)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive count")
    return value


def register(sub, confidence: float) -> None:
    p = sub.add_parser("compare", help="leaderboard of the jobs in MLflow: seeds grouped, ties with the best marked")
    p.add_argument("--experiment", help="the sweep (MLflow experiment); default: every experiment")
    p.add_argument("--metric", default=names.TEST_AUC, choices=sorted(names.HIGHER_IS_BETTER), help="rank by")
    p.add_argument("--by", choices=BY, default="auto",
                   help="a row per configuration (its seeds grouped: mean, SD, CI, tie with the best) or per job; "
                        "auto: by configuration when some configuration has 2 or more seeds")
    p.add_argument("--confidence", type=_fraction, default=confidence,
                   help="of the intervals over seeds and of the tie test (default %(default)s, as evaluation.confidence)")
    p.add_argument("--top", type=_positive, help="only the best N rows")
    p.add_argument("--tolerance", type=float, help="a rerun differs from its original beyond this "
                   "(default: pneumo rerun's)")
    p.add_argument("--importance", action="store_true",
                   help="which config keys and best_hp.* explain --metric across the jobs, with intervals")
    p.add_argument("--resamples", type=_positive, default=RESAMPLES,
                   help="--importance: bootstrap resamples of the jobs (default %(default)s)")
    p.add_argument("--format", choices=output.FORMATS, help="default: table on a terminal, json otherwise")
    p.set_defaults(func=compare)


def compare(args) -> int:
    from pneumo.commands import groups, importance, leaderboard, table
    from pneumo.record import store

    fmt = output.choose(args.format)
    opened = store.connect()  # a missing store is refused, not created
    try:
        if args.importance:
            importance.render(importance.explain(args.experiment, args.metric, args.confidence, args.resamples,
                                                 store=opened), fmt)
            return 0
        rows = leaderboard.leaderboard(args.experiment, args.metric, None if args.by != "job" else args.top,
                                       store=opened, tolerance=args.tolerance)
        if not rows:
            print(f"pneumo compare: no jobs in {args.experiment or 'any experiment'} at {opened.uri}: run a "
                  "sweep first, or point MLFLOW_TRACKING_URI at the store that holds them", file=sys.stderr)
            return 2
        if args.by == "config" or (args.by == "auto" and groups.seeded(rows)):
            found, left = groups.group(rows, args.metric, args.confidence)
            groups.render(found[: args.top], left, args.metric, args.confidence, fmt)
            return 0
        if args.top is not None and args.by == "auto":
            rows = leaderboard.leaderboard(args.experiment, args.metric, args.top, store=opened,
                                           tolerance=args.tolerance)
    except LookupError as err:
        print(f"pneumo compare: {err}", file=sys.stderr)
        return 1
    table.render(rows, args.metric, fmt)
    return 0
