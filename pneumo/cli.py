"""pneumo: search chest X-ray pneumonia classifiers honestly, track every run, ship the best one.

Sweeps of Keras Tuner searches composed by Hydra, every job and trial recorded in
MLflow, and a `champion` moved only behind gates. Each command below is thin: it
parses its arguments and calls the module that does the work. Nothing heavy is
imported at module level, so `pneumo --help` and the data commands never load
TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys

from pneumo.record import names as M
from pneumo.commands import output
from pneumo.config import paths

CHAMPION_URI = f"models:/{M.MODEL_NAME}@{M.CHAMPION}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # train/sweep hand their arguments to Hydra untouched (its own --help, -m, --cfg ...).
    if argv and argv[0] == "train":
        return _hydra(argv[1:])
    if argv and argv[0] == "sweep":
        return _sweep(argv[1:])
    args = parser().parse_args(argv)
    if not getattr(args, "func", None):
        parser().print_help()
        return 0 if not argv else 2
    return int(args.func(args) or 0)


def parser() -> argparse.ArgumentParser:
    from pneumo.release import gates
    from pneumo.commands.data import register as register_data
    from pneumo.config.schema import EvaluationConfig

    top = argparse.ArgumentParser(prog="pneumo", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="run one job (Hydra overrides follow; add -m for a multirun grid)", add_help=False)
    sub.add_parser("sweep", help="run a named sweep from sweeps/ (pneumo sweep NAME [overrides])", add_help=False)
    register_data(sub)

    p = sub.add_parser("compare", help="leaderboard of the jobs in MLflow, with 95%% CIs")
    p.add_argument("--experiment", help="the sweep (MLflow experiment); default: every experiment")
    p.add_argument("--metric", default=M.TEST_AUC, choices=sorted(M.HIGHER_IS_BETTER), help="rank by")
    p.add_argument("--top", type=int, help="only the best N jobs")
    p.add_argument("--tolerance", type=float, help="a rerun differs from its original beyond this "
                   "(default: pneumo rerun's)")
    p.add_argument("--format", choices=output.FORMATS, help="default: table on a terminal, json otherwise")
    p.set_defaults(func=_compare)

    p = sub.add_parser("promote", help="move the champion alias to the best version, behind gates")
    p.add_argument("--metric", default=M.TEST_AUC, choices=M.TEST_METRICS, help="rank and compare by")
    p.add_argument("--version", type=int, help="promote this version instead of the best")
    p.add_argument("--alias", default=M.CHAMPION)
    p.add_argument("--confidence", type=float, default=EvaluationConfig.confidence,
                   help="of the paired bootstrap interval (default %(default)s, as evaluation.confidence)")
    p.add_argument("--min-sensitivity", type=float, default=gates.MIN_SENSITIVITY,
                   help="floor on the candidate's test sensitivity (default %(default)s)")
    p.add_argument("--min-specificity", type=float, default=gates.MIN_SPECIFICITY,
                   help="floor on the candidate's test specificity (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="decide and print, change nothing")
    p.add_argument("--force", action="store_true", help="override failed gates (needs --reason)")
    p.add_argument("--reason", help="why a forced promotion is justified; recorded on the version")
    p.add_argument("--rollback", action="store_true", help="give the alias back to the 'previous' version")
    p.set_defaults(func=_promote)

    p = sub.add_parser("predict", help="classify image files or folders with a registered model")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--model", default=CHAMPION_URI, help="an MLflow model URI")
    p.add_argument("--format", choices=output.FORMATS, default=None)
    p.add_argument("--explain", metavar="DIR", help="also write an occlusion heatmap PNG per classified file into DIR")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="score a registered version on a labelled folder (NORMAL/, PNEUMONIA/)")
    p.add_argument("root", metavar="ROOT", help="a folder with NORMAL/ and PNEUMONIA/ (or a Kaggle root with test/)")
    p.add_argument("--model", default=CHAMPION_URI, help="a registered version's URI")
    p.add_argument("--bootstrap", type=int, default=EvaluationConfig.bootstrap,
                   help="patient-level resamples for the CIs (default %(default)s, as evaluation.bootstrap)")
    p.set_defaults(func=_evaluate)

    # -- pneumo rerun (issue 12): a finished job again, from its own record --------------------
    from pneumo.commands import rerun

    p = sub.add_parser("rerun", help="run a finished job again from its logged config; did it reproduce?")
    p.add_argument("run_id", metavar="RUN_ID", help="the job's parent run (MLFLOW_TRACKING_URI picks the store)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="where things go only: paths.*, tracking.*, hydra.* (the job itself runs as logged)")
    p.add_argument("--tolerance", type=float, default=rerun.TOLERANCE,
                   help="largest difference of a metric that still reproduces (default %(default)s)")
    p.set_defaults(func=_rerun)

    p = sub.add_parser("ui", help="open the MLflow UI on the local store (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--backend-store-uri", help="default: MLFLOW_TRACKING_URI, else the local store")
    p.set_defaults(func=_ui)
    return top


def _hydra(hydra_argv: list[str]) -> int:
    sys.argv = ["pneumo train", *hydra_argv]
    from pneumo.commands import summary
    from pneumo.job import main as hydra_main

    code = 0
    try:
        hydra_main()
    except SystemExit as e:  # Hydra exits 1 after reporting a failed job
        code = e.code if isinstance(e.code, int) else 1
    failed = summary.summarize()
    return code or (1 if failed else 0)


def _sweep(argv: list[str]) -> int:
    sweeps = sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml"))
    if not argv or argv[0].startswith("-"):
        print(f"usage: pneumo sweep NAME [overrides...]\nsweeps: {', '.join(sweeps)}", file=sys.stderr)
        return 2
    name, overrides = argv[0], argv[1:]
    if name not in sweeps:
        print(f"pneumo sweep: no sweep {name!r} in {paths.SWEEPS_DIR}; choose one of: {', '.join(sweeps)}",
              file=sys.stderr)
        return 2
    return _hydra(["--multirun", "--config-dir", str(paths.SWEEPS_DIR), "--config-name", name, *overrides])


def _compare(args) -> int:
    from pneumo.commands import leaderboard

    try:
        rows = leaderboard.leaderboard(args.experiment, args.metric, args.top, tolerance=args.tolerance)
    except LookupError as err:
        print(f"pneumo compare: {err}", file=sys.stderr)
        return 1
    leaderboard.render(rows, args.metric, output.choose(args.format))
    return 0


def _promote(args) -> int:
    from pneumo.release import promote

    if args.force and not (args.reason or "").strip():
        print("pneumo promote: --force needs --reason TEXT (the reason is recorded on the version)", file=sys.stderr)
        return 2
    if args.rollback and (args.version is not None or args.force):
        print("pneumo promote: --rollback takes no --version or --force", file=sys.stderr)
        return 2
    try:
        if args.rollback:
            decision = promote.rollback(args.alias, dry_run=args.dry_run)
        else:
            decision = promote.promote(args.metric, args.version, args.alias, confidence=args.confidence,
                                        min_sensitivity=args.min_sensitivity, min_specificity=args.min_specificity,
                                        dry_run=args.dry_run, force=args.force, reason=args.reason)
    except ValueError as err:
        print(f"pneumo promote: {err}", file=sys.stderr)
        return 2
    except LookupError as err:
        print(f"pneumo promote: {err}", file=sys.stderr)
        return 1
    print(decision.summary())
    return 0 if decision.promoted or decision.noop else 1


def _predict(args) -> int:
    from pneumo.release.predict import run

    return run(args.paths, args.model, args.format, args.explain)


def _evaluate(args) -> int:
    from pneumo.release.score import command

    return command(args)


def _rerun(args) -> int:
    """Exit 0: reproduced; 1: the rerun's numbers differ (or it failed); 2: refused before it ran."""
    from pneumo.record import names, runs, store
    from pneumo.commands import rerun

    client = store.connect()
    try:
        plan = rerun.plan(client, args.run_id, args.overrides)
        for warning in plan.warnings:
            print(f"pneumo rerun: warning: {warning}", file=sys.stderr)
        rerun.check_data(plan)
    except rerun.Refused as err:
        print(f"pneumo rerun: {err}", file=sys.stderr)
        return 2
    code = _hydra(plan.argv())
    again = rerun.latest_rerun(client, plan.run)
    if code or again is None or again.info.status != "FINISHED":
        print(f"pneumo rerun: the rerun of {args.run_id} did not finish", file=sys.stderr)
        return code or 1
    if plan.warnings:
        runs.log_tags(client, again.info.run_id, {names.TAG_RERUN_CHANGES: "; ".join(plan.warnings)})
    verdict = rerun.differences(plan.run.data.metrics, again.data.metrics, args.tolerance)
    print(rerun.describe(verdict, args.run_id, again.info.run_id, plan.changes))
    return 1 if verdict["differs"] else 0


def _ui(args) -> int:
    from pathlib import Path

    from pneumo.record import store

    uri = args.backend_store_uri or store.setup()
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
