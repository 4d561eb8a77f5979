"""`pneumo compare`: the leaderboard of the jobs in MLflow (pneumo.commands.leaderboard), with 95% CIs."""

from __future__ import annotations

import sys

from pneumo.commands import output
from pneumo.record import names


def register(sub) -> None:
    p = sub.add_parser("compare", help="leaderboard of the jobs in MLflow, with 95%% CIs")
    p.add_argument("--experiment", help="the sweep (MLflow experiment); default: every experiment")
    p.add_argument("--metric", default=names.TEST_AUC, choices=sorted(names.HIGHER_IS_BETTER), help="rank by")
    p.add_argument("--top", type=int, help="only the best N jobs")
    p.add_argument("--tolerance", type=float, help="a rerun differs from its original beyond this "
                   "(default: pneumo rerun's)")
    p.add_argument("--format", choices=output.FORMATS, help="default: table on a terminal, json otherwise")
    p.set_defaults(func=compare)


def compare(args) -> int:
    from pneumo.commands import leaderboard, table
    from pneumo.record import store

    client = store.connect()  # a missing store is refused, not created
    try:
        rows = leaderboard.leaderboard(args.experiment, args.metric, args.top, client=client, tolerance=args.tolerance)
    except LookupError as err:
        print(f"pneumo compare: {err}", file=sys.stderr)
        return 1
    if not rows and args.top != 0:
        print(f"pneumo compare: no jobs in {args.experiment or 'any experiment'} at {client.tracking_uri}: run a "
              "sweep first, or point MLFLOW_TRACKING_URI at the store that holds them", file=sys.stderr)
        return 2
    table.render(rows, args.metric, output.choose(args.format))
    return 0
