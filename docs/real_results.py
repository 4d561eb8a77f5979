"""The README's "Results on real data" table, from the MLflow store the runs wrote (not typed by hand).

    .venv/bin/python docs/real_results.py [--store mlruns [other-store ...]] [--experiments kermany-levers kermany ...]

One row per job of the given experiments (oldest first): its validation AUC (patients carved
from the training films), and the metrics of its test split when that is the external set
(`data.test_root`), else those of its test split carved from train beside those of the latest
`pneumo evaluate` run on another folder. Each metric with its patient-level 95% CI, the
threshold the job chose on validation, the job's wall time, and the commit it ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pneumo.evaluation import format  # noqa: E402 -- the checkout's pneumo, put on the path above
from pneumo.record import names  # noqa: E402

SHOWN = (names.TEST_AUC, names.TEST_ACCURACY, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY)


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
            minutes = (job.info.end_time - job.info.start_time) / 60000
            out.append(f"| {name} | {job.info.run_name} | {m.get(names.VAL_AUC, float('nan')):.4f} | "
                       + " | ".join(cell(tested, k) for k in SHOWN)
                       + f" | {m.get(names.THRESHOLD, float('nan')):.3f} | {carved}{minutes:.0f} min, "
                         f"{tags.get('mlflow.source.git.commit', '?')[:7]} |")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", nargs="+", default=[str(ROOT / "mlruns")],
                   help="store folders (mlflow.db, artifacts/), read in turn")
    p.add_argument("--experiments", nargs="+",
                   default=["kermany-levers", "kermany", "kermany-carved"])
    args = p.parse_args()
    from mlflow import MlflowClient

    from pneumo.config.paths import local_tracking_uri

    print("| sweep | job | val AUC | external AUC | accuracy | sensitivity | specificity | threshold | notes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for store in args.store:
        client = MlflowClient(local_tracking_uri(store))
        print("\n".join(rows(client, [e for e in args.experiments if client.get_experiment_by_name(e)])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
