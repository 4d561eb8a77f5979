"""The one door to MLflow: a `Store` on one tracking store, handing back pneumo.record.entities.

Runs, params, metrics, tags and artifacts here; registered versions and aliases in
pneumo.record.versions; the searches a command needs in pneumo.record.queries; the job's own
parent run in pneumo.record.jobs. Nothing outside pneumo.record talks to MLflow's tracking or
registry APIs, nor builds a query string or a models:/ URI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import mlflow
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pneumo.config import paths
from pneumo.record import jobs, local, names
from pneumo.record.door import answers, as_run, pages
from pneumo.record.entities import FAILED, FINISHED, NotFound, RecordError, Run
from pneumo.record.queries import Queries
from pneumo.record.redact import scrub
from pneumo.record.versions import Versions

log = logging.getLogger("pneumo")
PARAM_MAX = 6000  # MLflow's limit on a param or tag value, in characters
PARAMS_A_CALL = 100  # log_batch takes at most 100 params a call
_moves: dict = {}  # tracking URI -> {recorded artifact location: where it is now}, read once a process
_epoch_writer: list[ThreadPoolExecutor] = []  # one background thread for per-epoch metrics, made on first use


class Store(Versions, Queries):
    """One tracking store (resolved by pneumo.record.store.connect), its runs, versions and queries."""

    def __init__(self, uri: str):
        self.uri = uri
        self._client = MlflowClient(tracking_uri=uri)

    @property
    def tracking_uri(self) -> str:
        return self.uri

    # -- experiments ---------------------------------------------------------------------------------

    def experiments(self, name: str | None = None) -> dict[str, str]:
        """{experiment id: name}: the one named (NotFound if there is none), or every active one."""
        if name is not None:
            exp = self._client.get_experiment_by_name(name)
            if exp is None:
                raise NotFound(f"no MLflow experiment named {name!r} at {self.uri}")
            return {exp.experiment_id: exp.name}
        return {e.experiment_id: e.name for e in pages(self._client.search_experiments, max_results=1000)}

    def experiment_id(self, name: str) -> str | None:
        exp = self._client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else None

    def experiment(self, name: str) -> str:
        """Get or create the experiment; a local store's artifacts go under <store folder>/artifacts/."""
        db = local.database(self.uri)
        exp = self._client.get_experiment_by_name(name)
        if exp is not None:
            if db is not None and (away := local.outside(exp.artifact_location, db)):
                log.warning("experiment %r keeps its artifacts in %s, outside the store folder %s (it was created "
                            "so): copying or deleting the folder leaves them behind", name, away, db.parent)
            return exp.experiment_id
        location = (db.parent / paths.ARTIFACTS / _slug(name)).as_uri() if db is not None else None
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except MlflowException:  # a parallel job created it first
            return self._client.get_experiment_by_name(name).experiment_id

    # -- the job's run -------------------------------------------------------------------------------

    def open_job(self, experiment_id: str, *, resume: Run | None, name: str,
                 system_metrics: jobs.SystemMetrics | None = None):
        """The job's parent run, opened (or resumed) as MLflow's active run: a JobRecord (pneumo.record.jobs)."""
        return jobs.opened(self, experiment_id, resume=resume, name=name, system_metrics=system_metrics)

    def job_record(self, run: Run) -> jobs.JobRecord:
        """A record of another process's job run (a distributed search's chief), for its trials."""
        return jobs.JobRecord(self, run.experiment_id, run.id, run.name)

    def reap(self, experiment_id: str, keep: str | None = None) -> int:
        """End as KILLED the job runs (and their trials) whose process died on this host (pneumo.record.jobs)."""
        return jobs.reap(self, experiment_id, keep)

    # -- runs ----------------------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        with answers():
            return as_run(self._client.get_run(run_id))

    def find_run(self, run_id: str | None) -> Run | None:
        """The run, or None when there is no such run (or no id)."""
        try:
            return self.run(run_id) if run_id else None
        except RecordError:
            return None

    def start_child(self, exp_id: str, parent_id: str, name: str, role: str, params: Mapping = (),
                    tags: Mapping[str, str] | None = None) -> str:
        """A child run of a job (a trial, a seed repeat, an evaluation, a shift check), with its params."""
        tags = {names.PARENT_RUN_ID: parent_id, names.TAG_ROLE: role, **(tags or {})}
        run_id = self._client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        self.log_params(run_id, dict(params), new=True)
        return run_id

    @contextlib.contextmanager
    def child(self, exp_id: str, parent_id: str, name: str, role: str, tags: Mapping[str, str]) -> Iterator[str]:
        """A child run that ends FINISHED when the block does, FAILED when it raises."""
        run_id = self.start_child(exp_id, parent_id, name, role, tags=tags)
        try:
            yield run_id
        except BaseException:
            self._client.set_terminated(run_id, FAILED)
            raise
        self._client.set_terminated(run_id, FINISHED)

    def end_run(self, run_id: str, status: str, message: str | None = None) -> None:
        """End a run with `status`; a failure's message is its error tag (last line) and artifact (all of it)."""
        if message:
            self._client.log_text(run_id, scrub(message), names.ERROR_ARTIFACT)
            self._client.set_tag(run_id, names.TAG_ERROR, scrub(message.strip().splitlines()[-1])[:500])
        self._client.set_terminated(run_id, status)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._client.log_batch(run_id, tags=[RunTag(k, scrub(str(v))[:PARAM_MAX]) for k, v in tags.items()])

    def delete_tag(self, run_id: str, key: str) -> None:
        self._client.delete_tag(run_id, key)

    def log_params(self, run_id: str, params: Mapping[str, str], new: bool = False) -> None:
        """Params are write-once in MLflow: a resumed job skips those already there (`new`: none are)."""
        have = {} if new else self._client.get_run(run_id).data.params
        batch = [Param(k, scrub(str(v))[:PARAM_MAX]) for k, v in sorted(params.items()) if k not in have]
        for i in range(0, len(batch), PARAMS_A_CALL):
            self._client.log_batch(run_id, params=batch[i : i + PARAMS_A_CALL])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Finite values only, timestamped now."""
        batch = _metrics(metrics, step)
        if batch:
            self._client.log_batch(run_id, metrics=batch)

    def log_epoch(self, run_id: str, epoch: int, logs: Mapping, synchronous: bool = True) -> Future | None:
        """One epoch's metrics (timestamped now, at the epoch's end) in one MLflow write.

        synchronous=False hands the write to a background thread, so training does not wait for the
        store (a sqlite commit per epoch is a large share of a short GPU epoch): writes happen one
        at a time, in order, and the returned Future says when (and whether) this one did. Wait for
        them with `wait_written` before ending the run. On a kill, what is lost is at most the write
        in flight; at a normal interpreter exit the queue is drained first.
        """
        batch = _metrics(logs, epoch)
        if not batch:
            return None
        if synchronous:
            self._client.log_batch(run_id, metrics=batch)
            return None
        if not _epoch_writer:
            _epoch_writer.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumo-epoch-metrics"))
        return _epoch_writer[0].submit(self._client.log_batch, run_id, metrics=batch)

    @staticmethod
    def wait_written(writes: list[Future]) -> None:
        """Block until every write has reached the store; raise the first one's error, if any."""
        for write in writes:
            write.result()

    # -- artifacts -----------------------------------------------------------------------------------

    def log_text(self, run_id: str, text: str, path: str) -> None:
        self._client.log_text(run_id, text, path)

    def log_artifacts(self, run_id: str, folder, path: str) -> None:
        self._client.log_artifacts(run_id, str(folder), path)

    def moved(self) -> dict[str, str]:
        """{recorded experiment location: its folder now} for a local store that was moved or copied."""
        db = local.database(self.uri)
        if db is None:
            return {}
        if self.uri not in _moves:
            experiments = pages(self._client.search_experiments, view_type=ViewType.ALL)
            _moves[self.uri] = local.mapping([e.artifact_location for e in experiments], db)
        return _moves[self.uri]

    def forget_moves(self) -> None:
        _moves.pop(self.uri, None)

    def located(self, recorded: str) -> str:
        """Where an artifact URI recorded in the store is now: in a moved or copied store, under its folder."""
        for old, new in self.moved().items():
            if recorded == old or recorded.startswith(old + "/"):
                return new + recorded[len(old):]
        return recorded

    def artifact_uri(self, run_id: str, path: str = "") -> str:
        with answers():
            base = self.located(self._client.get_run(run_id).info.artifact_uri)
        return f"{base}/{path}" if path else base

    def download(self, run_id: str, path: str, dst: str) -> str:
        """A run's artifact, copied into dst (found where `located` says), without a progress bar; its path."""
        with _no_progress_bar():
            return mlflow.artifacts.download_artifacts(artifact_uri=self.artifact_uri(run_id, path), dst_path=dst,
                                                       tracking_uri=self.uri)

    def text(self, run_id: str, path: str) -> str:
        """A run's text artifact."""
        with _no_progress_bar():
            return mlflow.artifacts.load_text(self.artifact_uri(run_id, path))


def _metrics(values: Mapping, step: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items() if names.finite(v) is not None]


@contextlib.contextmanager
def _no_progress_bar():
    """One small file: MLflow's progress bar would be noise in a command's printout."""
    before = os.environ.get(BAR.name)
    os.environ[BAR.name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(BAR.name, None)
        else:
            os.environ[BAR.name] = before


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
