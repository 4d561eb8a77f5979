"""docs/results.md's table of results on the real films, from the MLflow stores the runs wrote (not typed by hand).

    python docs/real_results.py --store DIR [DIR ...] [--experiments kermany-levers kermany ...] [--print]

One row per job of the given experiments (oldest first): its validation AUC (patients carved
from the training films), and the metrics of its test split when that is the external set
(`data.test_root`), else those of its test split carved from train beside those of the latest
`pneumo evaluate` run on another folder. Each metric with its patient-level 95% CI, the
threshold the job chose on validation, the job's wall time, and the commit it ran. The table is
written between the `results:real` markers of docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "docs")]

import docblocks as blocks  # noqa: E402 -- docs/docblocks.py, beside this file
from docblocks import COUNT, INTERVAL, NUMBER, Row  # noqa: E402

from pneumo.evaluation import format  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.record import names  # noqa: E402

SHOWN = (names.TEST_AUC, names.TEST_ACCURACY, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY)
PAGE, BLOCK = ROOT / "docs" / "results.md", "real"
HEADER = ["| sweep | job | val AUC | external AUC | accuracy | sensitivity | specificity | threshold | notes |",
          "|---|---|---:|---:|---:|---:|---:|---:|---|"]
TESTED = rf"{INTERVAL}|-"  # format.metric; "-" where a carved-test job has no evaluation on another folder
ROWS = {"job": Row("| {sweep} | {job} | {val_auc} | {auc} | {accuracy} | {sensitivity} | {specificity} | {threshold} "
                   "| {carved}{minutes} min, {commit} |",
                   {"val_auc": r"\d\.\d{4}", **dict.fromkeys(("auc", "accuracy", "sensitivity", "specificity"), TESTED),
                    "threshold": NUMBER, "carved": rf"(carved test: auc {INTERVAL}, accuracy {INTERVAL}, sensitivity "
                    rf"{INTERVAL}, specificity {INTERVAL}; )?", "minutes": COUNT, "commit": r"[0-9a-f]{7}|\?"})}


def cell(values: dict, name: str) -> str:
    return format.metric(values, name)


def rows(client, experiments: list[str]) -> list[str]:
    from pneumo.record.store import pages

    out = []
    for name in experiments:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise SystemExit(f"no experiment {name!r} in {client.tracking_uri}")
        runs = list(pages(client.search_runs, [exp.experiment_id], order_by=["attributes.start_time ASC"]))
        evaluations = {r.data.tags.get("mlflow.parentRunId"): r for r in runs
                       if r.data.tags.get(names.TAG_ROLE) == "evaluation" and r.info.status == "FINISHED"}
        for job in (r for r in runs if r.data.tags.get(names.TAG_ROLE) == "job" and r.info.status == "FINISHED"):
            m, tags = job.data.metrics, job.data.tags
            external = tags.get(names.TAG_TEST_SOURCE) != "carved from train"
            other = evaluations.get(job.info.run_id)
            tested = m if external else (other.data.metrics if other else {})
            carved = "" if external else ("carved test: " + ", ".join(
                f"{k.removeprefix('test_')} {cell(m, k)}" for k in SHOWN) + "; ")
            out.append(ROWS["job"].render(
                sweep=name, job=job.info.run_name, val_auc=f"{m.get(names.VAL_AUC, float('nan')):.4f}",
                auc=cell(tested, names.TEST_AUC), accuracy=cell(tested, names.TEST_ACCURACY),
                sensitivity=cell(tested, names.TEST_SENSITIVITY), specificity=cell(tested, names.TEST_SPECIFICITY),
                threshold=f"{m.get(names.THRESHOLD, float('nan')):.3f}", carved=carved,
                minutes=f"{(job.info.end_time - job.info.start_time) / 60000:.0f}",
                commit=tags.get("mlflow.source.git.commit", "?")[:7]))
    return out


def table(stores: list[str], experiments: list[str]) -> str:
    from mlflow import MlflowClient

    from pneumo.config.paths import local_tracking_uri

    lines = list(HEADER)
    for store in stores:
        client = MlflowClient(local_tracking_uri(store))
        lines += rows(client, [e for e in experiments if client.get_experiment_by_name(e)])
    return "\n".join(lines)


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    """The rows of a quoted table, in the form `rows` writes them (ValueError otherwise)."""
    return blocks.parse_rows(text, HEADER, ROWS)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", nargs="+", default=[str(ROOT / "mlruns")],
                   help="store folders (mlflow.db, artifacts/), read in turn")
    p.add_argument("--experiments", nargs="+",
                   default=["kermany-levers", "kermany", "kermany-carved"])
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    args = p.parse_args(argv)
    text = table(args.store, args.experiments)
    if not args.print:
        blocks.write(BLOCK, text, PAGE)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
