"""One Hydra job: data -> Keras Tuner search -> best model(s) -> threshold on val -> test once -> MLflow.

`train(cfg)` reads as the pipeline: each phase (pneumo.job.phases) a function of the job's context
(pneumo.job.context.Job) returning a typed result; the reliability tests' kill points are passed between
phases by one hook. `train` is a plain function (tests call it); `main` is the Hydra entry point.
"""

from __future__ import annotations

import logging
import os
import warnings

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars per tiny artifact bury the log

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from pneumo.config import paths, schema, startup
from pneumo.config.errors import ConfigError
from pneumo.data import DataError
from pneumo.job import context, signals
from pneumo.search.failures import error_line

log = logging.getLogger("pneumo")
schema.register()
# Known-harmless library chatter that would bury a job's own log lines.
for message in (
    "Skipping variable loading for optimizer",  # best weights restored into a fresh model: no slots needed
    "The specified dataset source can be interpreted in multiple ways",
    ".*input example was not provided",
):
    warnings.filterwarnings("ignore", message=message)


@signals.stop_the_job()
def train(cfg: DictConfig) -> float:
    """Run one job; returns the best trial's validation objective (what a sweeper optimises)."""
    context.check(cfg)  # a bad config or store exits here: nothing recorded, Keras not yet imported
    import pneumo.job.phases as phases  # Keras and the rest: after context.check silenced their chatter

    job = phases.load(cfg)
    if job.worker:  # runs trials of the chief's search; the chief owns the parent run
        return phases.work(job)
    if job.done:
        log.info("job %s already finished as run %s; add restart=true to run it again", job.name.key, job.prior.id)
        return job.prior.metrics.get(cfg.tuner.objective, float("nan"))
    with job.store.open_job(job.experiment_id, resume=job.resumed, name=job.run_name,
                            system_metrics=job.system_metrics) as record:
        job = phases.begin(job, record)
        found = phases.run(phases.search, job)
        validated = phases.run(phases.validate, job, found)
        evaluated = phases.run(phases.evaluate, job, found, validated)
        packaged = phases.run(phases.package_model, job, found, evaluated)
        phases.run(phases.register, job, found, evaluated, packaged)
        phases.run(phases.seed_repeats, job, found)
    log.info("job %s: %s %.4f (run %s)", job.run_name, cfg.tuner.objective, found.score, record.run_id)
    return found.score


class JobError(CompactHydraException):
    """A job stopped for a reason the user can act on: Hydra prints the message, no traceback."""


@hydra.main(config_path=str(paths.CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except ConfigError as e:
        if not context.hydra_job()[2]:  # one job: a config error exits 2; in a multirun it fails this job only
            startup.refuse(str(e))
        raise JobError(f"pneumo: {e}") from None
    except DataError as e:
        raise JobError(f"pneumo: {e}") from None
    except RuntimeError as e:
        # Keras Tuner's consecutive-failure stop, or no trial completed: the reason, then the last failed
        # trial's error (the last line of its traceback), which names the config key where one is known
        first, *rest = str(e).strip().splitlines() or [""]
        if "consecutive failures" in first or "no trial completed" in first:
            limit = " (tuner.max_consecutive_failed_trials)" if "consecutive failures" in first else ""
            last = f"; last failure: {error_line(rest[-1])}" if rest else ""
            raise JobError(f"pneumo: search stopped: {first.rstrip('.')}{limit}{last}; "
                           "see the FAILED trial runs") from None
        raise
