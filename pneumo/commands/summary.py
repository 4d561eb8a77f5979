"""Hydra callback: a multirun ends with a leaderboard, the failed jobs named, and the UI command.

Hydra stops at the first failed job's exception once the whole batch has run
(other jobs are not stopped), so the summary is printed from the CLI after
Hydra returns or raises, from what the store says: it works the same for the
basic and the joblib launcher, whose jobs run in other processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from pneumo.config import paths


@dataclass(frozen=True)
class Sweep:
    """What the summary of a multirun needs, from its config; and the jobs that failed before opening a run."""

    experiment: str
    uri: str | None
    store: str | None
    objective: str
    sweep_dir: str  # the multirun's folder: its jobs' runs carry it (names.TAG_MULTIRUN)
    confidence: float
    failed: list[tuple[str, str]] = field(default_factory=list)  # (overrides, first line of the error)


# The sweep of this process: Hydra instantiates the callback itself, and pneumo.commands.run reads this after
# Hydra returns or raises (on_multirun_end is not called when a job failed).
SWEEPS: list[Sweep] = []


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        SWEEPS[:] = [Sweep(config.experiment, config.tracking.uri, config.tracking.store, config.tuner.objective,
                           str(Path(config.hydra.sweep.dir).resolve()), config.evaluation.confidence)]
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
        if SWEEPS and job_return.status == JobStatus.FAILED:
            error = str(job_return._return_value).strip().splitlines() or ["?"]
            SWEEPS[0].failed.append((" ".join(job_return.overrides or []), error[0]))


def summarize(out=sys.stdout) -> int:
    """Print the sweep's leaderboard; return the number of its jobs that did not finish."""
    if not SWEEPS:
        return 0
    from pneumo.commands import groups, leaderboard, table
    from pneumo.commands.output import command
    from pneumo.config.errors import StoreError
    from pneumo.record import store

    sweep = SWEEPS[0]
    try:
        opened = store.connect(sweep.uri, sweep.store)
    except StoreError:  # every job failed before creating it
        opened = None
    exp_id = opened.experiment_id(sweep.experiment) if opened else None
    if exp_id is None:
        for overrides, error in sweep.failed:
            print(f"job FAILED: {overrides}: {error}", file=out)
        return len(sweep.failed)
    uri = opened.uri
    failed = opened.unfinished_jobs(exp_id, sweep.sweep_dir)
    # Ranked by what the search optimised (validation), not by a test metric: the table shows
    # the test numbers, but a sweep's jobs are chosen between on validation.
    rows = leaderboard.leaderboard(sweep.experiment, sweep.objective, store=opened)
    if groups.seeded(rows):  # a sweep over seeds: is a configuration better than its seed noise?
        found, left = groups.group(rows, sweep.objective, sweep.confidence)
        groups.render(found, left, sweep.objective, sweep.confidence, "table", out=out)
        store_env = "" if uri == paths.local_tracking_uri() else f"MLFLOW_TRACKING_URI={uri} "
        print(f"\nEach job: {store_env}{command('compare', '--experiment', sweep.experiment, '--by', 'job')}",
              file=out)
    else:
        table.render(rows, sweep.objective, "table", out=out)
    named = {run.name for run in failed}
    for run in failed:
        print(f"job FAILED: {run.name} (run {run.id}, {run.status})", file=out)
    for overrides, error in sweep.failed:
        if overrides not in named:
            print(f"job FAILED: {overrides}: {error}", file=out)
    n_failed = max(len(failed), len(sweep.failed))

    if uri.startswith(("http://", "https://")):
        print(f"\nThe runs are on the tracking server: {uri}", file=out)
    else:
        ui = command("ui") if uri == paths.local_tracking_uri() else command("ui", "--backend-store-uri", uri)
        print(f"\nOpen the runs in the MLflow UI:  {ui}  (then http://127.0.0.1:5000)", file=out)
    return n_failed
