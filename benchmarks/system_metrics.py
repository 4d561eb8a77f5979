"""CPU that MLflow's system-metrics sampler costs per sample, measured alone.

    python benchmarks/system_metrics.py [--interval 0.2] [--seconds 20]

An idle process holds an MLflow run (sqlite store in a temp folder) for --seconds, with
the sampler off and on, twice each, sampling every --interval seconds; it prints the
process's CPU time and the samples logged. A job samples every
`tracking.system_metrics_interval` (10 s): its cost is the per-sample figure / 10 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--seconds", type=float, default=20)
    args = p.parse_args()
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="pneumo-sysmetrics-")
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    exp = mlflow.create_experiment("system-metrics", artifact_location=f"file://{tmp}/artifacts")
    mlflow.set_system_metrics_sampling_interval(args.interval)
    for on in (False, True, False, True):
        with mlflow.start_run(experiment_id=exp, log_system_metrics=on) as run:
            cpu = time.process_time()
            time.sleep(args.seconds)
            cpu = time.process_time() - cpu
        n = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "system/cpu_utilization_percentage"))
        per = f", {cpu * 1000 / n:.1f} ms CPU per sample" if n else ""
        print(f"sampler {'on ' if on else 'off'}: {cpu * 1000:.0f} ms CPU in {args.seconds:g} s, {n} samples{per}")


if __name__ == "__main__":
    main()
