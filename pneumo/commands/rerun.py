"""`pneumo rerun RUN_ID`: run a finished job again from its own record (pneumo.commands.reproduce
plans it), and say whether it reproduced."""

from __future__ import annotations

import sys

from pneumo.commands.reproduce import TOLERANCE, Refused, check_data, describe, differences, plan
from pneumo.config import checks, keys
from pneumo.config.errors import ConfigError
from pneumo.record import names


def register(sub) -> None:
    p = sub.add_parser("rerun", help="run a finished job again from its logged config; did it reproduce?")
    p.add_argument("run_id", metavar="RUN_ID", help="the job's parent run (MLFLOW_TRACKING_URI picks the store)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help=f"where things go or how the job is driven only: {', '.join(keys.NOT_PART_OF_JOB)} "
                        "(the job itself runs as logged)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="largest difference of a metric that still reproduces (default %(default)s)")
    p.set_defaults(func=rerun)


def rerun(args) -> int:
    """Exit 0: reproduced; 1: the rerun's numbers differ (or it failed); 2: refused before it ran."""
    from pneumo.commands import run
    from pneumo.record import store

    opened = store.connect(writes=True)  # a missing store is refused, not created
    try:
        job = plan(opened, args.run_id, args.overrides)
        checks.check(job.cfg)  # the start-up check of `pneumo train`, before the data is read
        for warning in job.warnings:
            print(f"pneumo rerun: warning: {warning}", file=sys.stderr)
        check_data(job)
    except (Refused, ConfigError) as err:
        print(f"pneumo rerun: {err}", file=sys.stderr)
        return 2
    code = run.train(job.argv())
    if code == 2:  # refused at start-up, the key named: nothing ran
        return code
    again = opened.latest_rerun(job.run)
    if code or again is None or not again.finished:
        print(f"pneumo rerun: the rerun of {args.run_id} did not finish", file=sys.stderr)
        return code or 1
    if job.warnings:
        opened.set_tags(again.id, {names.TAG_RERUN_CHANGES: "; ".join(job.warnings)})
    verdict = differences(job.run.metrics, again.metrics, args.tolerance)
    print(describe(verdict, args.run_id, again.id, job.changes))
    return 1 if verdict.differs else 0
