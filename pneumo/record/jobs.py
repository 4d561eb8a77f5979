"""The job's parent run, with a fixed shape: experiment = sweep, parent run = job, child = trial.

`opened` starts (or resumes) it as MLflow's active run, so that MLflow's own system-metrics sampler
and the pyfunc's log_model find it; `JobRecord` is what the job writes through while it is open.
It keeps the bookkeeping that lets a killed job resume without duplicate or dangling runs. It
decides nothing about which model is best.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psutil
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from omegaconf import OmegaConf

from pneumo.record import names, provenance
from pneumo.record.entities import FINISHED, KILLED, RUNNING, Run, Version
from pneumo.record.params import flatten
from pneumo.record.redact import redact_config, scrub


@dataclass(frozen=True)
class JobName:
    """What names a job in the record besides its config: its identity and where it ran from."""

    key: str  # pneumo.record.params.job_key: the same job across restarts
    config_key: str  # the same without its seeds: the jobs of one configuration
    sweep: str  # the experiment
    overrides: tuple[str, ...]  # credentials redacted
    num: int = 0  # its number in a multirun
    multirun: str = ""  # the multirun's folder
    rerun_of: str | None = None  # `pneumo rerun`: the run it reruns


@dataclass(frozen=True)
class SystemMetrics:
    """MLflow's own sampler of CPU, memory (GPU with pynvml) as system/* metrics on the job run."""

    interval_s: float


class JobRecord:
    """The job's parent run while it is open: everything the job writes about itself goes through it."""

    def __init__(self, store, experiment_id: str, run_id: str, name: str = ""):
        self.store, self.experiment_id, self.run_id, self.name = store, experiment_id, run_id, name

    def describe(self, plain: Mapping, name: JobName, splits, determinism: str) -> None:
        """What the run records about itself before training: its tags (the job's name, its data, what it
        runs on), the flattened config as params, and the config and overrides as artifacts, credentials
        redacted throughout."""
        tags = {names.TAG_ROLE: names.ROLE_JOB, names.TAG_JOB_KEY: name.key, names.TAG_SWEEP: name.sweep,
                names.TAG_CONFIG_KEY: name.config_key, names.TAG_JOB_NUM: str(name.num),
                names.TAG_MULTIRUN: name.multirun, names.TAG_DATA_DIGEST: splits.digest,
                names.TAG_TEST_DIGEST: splits.test_digest, names.TAG_TEST_SOURCE: splits.test_source,
                **provenance.job_tags(plain, splits, determinism),
                **({names.TAG_RERUN_OF: name.rerun_of} if name.rerun_of else {}),
                names.TAG_OVERRIDES: " ".join(name.overrides), **provenance.git_tags(), **provenance.runtime_tags()}
        self.store.set_tags(self.run_id, tags)
        self.log_config(plain, name.overrides)

    def log_config(self, plain: Mapping, overrides) -> None:
        """The flattened config as params, the config and the overrides as artifacts (what a rerun reads back)."""
        self.store.log_params(self.run_id, flatten(plain))
        self.store.log_text(self.run_id, OmegaConf.to_yaml(OmegaConf.create(redact_config(plain))),
                            names.CONFIG_ARTIFACT)
        self.store.log_text(self.run_id, "\n".join(overrides) + "\n", names.OVERRIDES_ARTIFACT)

    def log_dataset(self, source: str, splits) -> None:
        """The data set as MLflow's dataset input: its identity is the index digest."""
        counts = {s: len(getattr(splits, s)) for s in ("train", "val", "test")}
        log_dataset(source, splits.digest, splits.root, counts)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        self.store.log_metrics(self.run_id, metrics)

    def log_params(self, params: Mapping[str, str]) -> None:
        self.store.log_params(self.run_id, params)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.store.set_tags(self.run_id, tags)

    def log_text(self, text: str, path: str) -> None:
        self.store.log_text(self.run_id, text, path)

    def log_artifacts(self, folder, path: str) -> None:
        self.store.log_artifacts(self.run_id, folder, path)

    # -- child runs ----------------------------------------------------------------------------------

    def start_trial(self, trial_id: str, hp: Mapping, tuner_id: str | None = None) -> str:
        """A Keras Tuner trial's run; `tuner_id`: the worker of a distributed search that runs it."""
        tags = {names.TAG_TRIAL_ID: trial_id, **({names.TAG_TUNER_ID: tuner_id} if tuner_id else {})}
        return self.store.start_child(self.experiment_id, self.run_id, f"{names.ROLE_TRIAL}-{trial_id}",
                                      names.ROLE_TRIAL, hp, tags)

    def start_repeat(self, index: int, seed: int, trial_id: str) -> str:
        """trainer.repeats: the best trial's hyperparameters trained from another seed."""
        return self.store.start_child(self.experiment_id, self.run_id, f"{names.ROLE_REPEAT}-{index}",
                                      names.ROLE_REPEAT, {names.PARAM_REPEAT_SEED: seed,
                                                          names.PARAM_REPEAT_TRIAL: trial_id},
                                      {names.TAG_REPEAT: str(index)})

    def log_epoch(self, run_id: str, epoch: int, logs: Mapping, synchronous: bool = True):
        """A child run's epoch metrics (pneumo.record.client.Store.log_epoch: a Future when not synchronous)."""
        return self.store.log_epoch(run_id, epoch, logs, synchronous)

    def wait_written(self, writes: list) -> None:
        self.store.wait_written(writes)

    def end_child(self, run_id: str, status: str, message: str | None = None) -> None:
        """A child run ends: FINISHED, or FAILED / KILLED with the message that says why."""
        self.store.end_run(run_id, status, message)

    def close_stale_trials(self, completed: set[str]) -> int:
        """A killed process leaves trial runs RUNNING: end them as what really happened."""
        stale = self.store.children(self.experiment_id, self.run_id, RUNNING)
        for run in stale:
            self.store.end_run(run.id, FINISHED if run.tags.get(names.TAG_TRIAL_ID) in completed else KILLED)
        return len(stale)

    # -- a distributed search's oracle ----------------------------------------------------------------

    def publish_oracle(self, address: str) -> None:
        """Chief: say on the run where its oracle listens (host:port)."""
        self.store.set_tags(self.run_id, {names.TAG_ORACLE: address})

    def withdraw_oracle(self) -> None:
        """Chief: the search is over; a worker started now must not wait on a closed oracle."""
        self.store.delete_tag(self.run_id, names.TAG_ORACLE)

    # -- the job's registered version -----------------------------------------------------------------

    def registered(self) -> Version | None:
        return self.store.registered(self.run_id)

    def register(self, model_uri: str, tags: Mapping[str, str]) -> str:
        return self.store.register(self.run_id, model_uri, tags)


@contextlib.contextmanager
def opened(store, experiment_id: str, *, resume: Run | None, name: str,
           system_metrics: SystemMetrics | None) -> Iterator[JobRecord]:
    """The job's run as MLflow's active run: a new one named `name`, or `resume`'s. Ctrl-C, or SIGTERM
    (pneumo.job raises it as a KeyboardInterrupt), ends it and the trial runs it left open as KILLED and
    goes on (epoch metrics still queued are written before the interpreter exits).

    Left to MLflow, the job's run would end FAILED and its trial in flight stay RUNNING for good (a later
    job reaps the trials of RUNNING jobs only). The same command resumes the job, as after a SIGKILL.
    """
    if system_metrics is not None:
        mlflow.set_system_metrics_sampling_interval(system_metrics.interval_s)
        psutil.cpu_percent()  # a process's first reading is 0.0 (no interval yet): the first sample is real then
    with mlflow.start_run(run_id=resume.id if resume else None, experiment_id=experiment_id,
                          run_name=None if resume else name, log_system_metrics=system_metrics is not None) as run:
        record = JobRecord(store, experiment_id, run.info.run_id, run.info.run_name or "")
        try:
            yield record
        except KeyboardInterrupt:
            for child in store.children(experiment_id, record.run_id, RUNNING):
                store.end_run(child.id, KILLED)
            mlflow.end_run(KILLED)  # and off MLflow's stack: its start_run would end it FAILED on the way out
            raise


def reap(store, experiment_id: str, keep: str | None = None) -> int:
    """End as KILLED the job runs (and their trials) whose process died on this host.

    A SIGKILL leaves MLflow runs RUNNING forever; the next job in the experiment notices (same
    host, its pid gone) and says what happened. `keep` is the run the caller is about to resume
    (its trials are reconciled separately).
    """
    host, n = socket.gethostname(), 0
    for run in store.running_jobs(experiment_id):
        tags = run.tags
        started = float(tags[names.TAG_PID_STARTED]) if tags.get(names.TAG_PID_STARTED) else None
        if run.id == keep or tags.get(names.TAG_HOST) != host or \
                provenance.alive(int(tags.get(names.TAG_PID, "0") or 0), started):
            continue
        for child in store.children(experiment_id, run.id, RUNNING):
            store.end_run(child.id, KILLED)
        store.end_run(run.id, KILLED)
        n += 1
    return n


def log_dataset(name: str, digest: str, source: str, counts: Mapping[str, int]) -> None:
    """Record the data set on the active run: its identity is the index digest."""
    source = scrub(source)  # before as_uri(), which percent-encodes a `user:password@` past recognising
    uri = Path(source).resolve().as_uri() if "://" not in source else source
    dataset = MetaDataset(source=resolve_dataset_source(uri), name=name, digest=digest[:36])

    def log():
        mlflow.log_input(dataset, context=names.DATASET_CONTEXT, tags={names.DATASET_COUNTS: json.dumps(counts)})

    try:
        log()
    except mlflow.exceptions.MlflowException:
        # A parallel job logged the same new data set first: MLflow looks it up, then inserts it, and the
        # loser's insert breaks its key (rolled back). It is there now; as for experiments (client.py).
        log()

