"""Hydra callback: a multirun ends with a leaderboard, the failed jobs named, and the UI command.

Hydra stops at the first failed job's exception once the whole batch has run
(other jobs are not stopped), so the summary is printed from the CLI after
Hydra returns or raises, from what the store says: it works the same for the
basic and the joblib launcher, whose jobs run in other processes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from pneumo.config import paths

# Filled in the sweeping process by on_multirun_start; read by pneumo.cli after the sweep.
MULTIRUN: dict = {}


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        MULTIRUN.update(experiment=config.experiment, uri=config.tracking.uri, store=config.tracking.store,
                        objective=config.tuner.objective, sweep_dir=str(Path(config.hydra.sweep.dir).resolve()),
                        confidence=config.evaluation.confidence, failed=[])
        # For each job's progress line (job i/n), also in a parallel launcher's worker processes.
        from pneumo.search import console

        try:
            os.environ[console.JOBS_ENV] = str(console.count_jobs(config.hydra.sweeper.get("params"),
                                                                  config.hydra.overrides.task))
        except Exception:  # noqa: BLE001 -- another sweeper's syntax: the lines say "job i/?"
            os.environ.pop(console.JOBS_ENV, None)
        os.environ[console.SWEEP_PID_ENV] = str(os.getpid())

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        # Hydra has just saved the job's .hydra/*.yaml (and, for a multirun, multirun.yaml)
        # with the raw overrides: scrub credentials from them before anything else runs.
        from pneumo.record.redact import redact_yaml

        hydra = config.hydra
        files = []
        if hydra.output_subdir is not None:
            files += (Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml")
        if hydra.mode == RunMode.MULTIRUN:
            files.append(Path(hydra.sweep.dir) / "multirun.yaml")
        for f in files:
            try:
                text = f.read_text()
            except OSError:
                continue
            clean = redact_yaml(text)
            if clean != text:
                tmp = f.with_suffix(".tmp")
                tmp.write_text(clean)
                os.replace(tmp, f)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        # In-process launchers only (basic): catches jobs that failed before opening a run.
        if MULTIRUN and job_return.status == JobStatus.FAILED:
            error = str(job_return._return_value).strip().splitlines() or ["?"]
            MULTIRUN["failed"].append((" ".join(job_return.overrides or []), error[0]))


def summarize(out=sys.stdout) -> int:
    """Print the sweep's leaderboard; return the number of its jobs that did not finish."""
    if not MULTIRUN:
        return 0
    from pneumo.commands import groups, leaderboard, table
    from pneumo.config.errors import StoreError
    from pneumo.record import names, store

    try:
        client = store.connect(MULTIRUN["uri"], MULTIRUN["store"])
    except StoreError:  # every job failed before creating it
        client = None
    exp = client.get_experiment_by_name(MULTIRUN["experiment"]) if client else None
    if exp is None:
        for overrides, error in MULTIRUN.get("failed", []):
            print(f"job FAILED: {overrides}: {error}", file=out)
        return len(MULTIRUN.get("failed", []))
    uri = client.tracking_uri
    ours = f"tags.`{names.TAG_MULTIRUN}` = '{MULTIRUN['sweep_dir']}'"
    failed = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}' and {ours} "
                                                     "and attributes.status != 'FINISHED'")
    # Ranked by what the search optimised (validation), not by a test metric: the table shows
    # the test numbers, but a sweep's jobs are chosen between on validation.
    rows = leaderboard.leaderboard(MULTIRUN["experiment"], MULTIRUN["objective"], client=client)
    from pneumo.commands.output import command

    if groups.seeded(rows):  # a sweep over seeds: is a configuration better than its seed noise?
        found, left = groups.group(rows, MULTIRUN["objective"], MULTIRUN["confidence"])
        groups.render(found, left, MULTIRUN["objective"], MULTIRUN["confidence"], "table", out=out)
        store_env = "" if uri == paths.local_tracking_uri() else f"MLFLOW_TRACKING_URI={uri} "
        print(f"\nEach job: {store_env}{command('compare', '--experiment', MULTIRUN['experiment'], '--by', 'job')}",
              file=out)
    else:
        table.render(rows, MULTIRUN["objective"], "table", out=out)
    named = {run.info.run_name for run in failed}
    for run in failed:
        print(f"job FAILED: {run.info.run_name} (run {run.info.run_id}, {run.info.status})", file=out)
    for overrides, error in MULTIRUN.get("failed", []):
        if overrides not in named:
            print(f"job FAILED: {overrides}: {error}", file=out)
    n_failed = max(len(failed), len(MULTIRUN.get("failed", [])))

    if uri.startswith(("http://", "https://")):
        print(f"\nThe runs are on the tracking server: {uri}", file=out)
    else:
        ui = command("ui") if uri == paths.local_tracking_uri() else command("ui", "--backend-store-uri", uri)
        print(f"\nOpen the runs in the MLflow UI:  {ui}  (then http://127.0.0.1:5000)", file=out)
    return n_failed
