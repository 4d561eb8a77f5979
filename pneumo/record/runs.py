"""The job's runs in MLflow, with a fixed shape: experiment = sweep, parent run = job, child = trial.

Starts, logs and ends runs, flattens the config into params, and keeps the bookkeeping that
lets a killed job resume without duplicate or dangling runs. It decides nothing about which
model is best.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from pneumo.config import paths
from pneumo.config.keys import is_seed, job_config, neutral, part_of_job
from pneumo.config.space import is_space, plain
from pneumo.record import names
from pneumo.record.redact import REDACTED, SECRET_KEY, redact_config, scrub

PARAM_MAX = 6000  # MLflow's limit on a param value, in characters


def flatten(node, prefix: str = "") -> dict[str, str]:
    """Dotted params from a nested config; search spaces kept as compact JSON."""
    out: dict[str, str] = {}
    items = node.items() if isinstance(node, Mapping) else []
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not is_space(value):
            out.update(flatten(value, name + "."))
        elif SECRET_KEY.search(str(key)):
            out[name] = REDACTED
        else:
            text = value if isinstance(value, str) else json.dumps(plain(value))
            out[name] = scrub(str(text))[:PARAM_MAX]
    return out


def job_key(cfg_plain: Mapping, *digests: str) -> str:
    """Stable identity of a job: the part of its config that decides what is trained
    (pneumo.config.keys), and the digests of the data it is trained and tested on."""
    blob = json.dumps([job_config(cfg_plain), *digests], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_key(params: Mapping[str, str], *digests: str) -> str:
    """Identity of a job's configuration: its job key without the seeds, so that the jobs of one
    configuration trained with different seeds share it. From the flat params the job logs (`flatten`),
    so that it is computed again, to the same value, from the params of jobs recorded before the tag."""
    kept = {k: v for k, v in params.items()
            if part_of_job(k) and not is_seed(k) and not k.startswith(names.BEST_HP_PREFIX) and not neutral(k, v)}
    blob = json.dumps([kept, *digests], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_tags(root: Path = paths.ROOT) -> dict[str, str]:
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)

    try:
        sha = git("rev-parse", "HEAD")
        if sha.returncode != 0:
            return {}
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
        return {names.TAG_GIT_COMMIT: sha.stdout.strip(), names.TAG_GIT_DIRTY: str(dirty).lower()}
    except (OSError, subprocess.SubprocessError):
        return {}


def runtime_tags() -> dict[str, str]:
    import keras
    import keras_tuner

    tags = {
        names.TAG_KERAS_BACKEND: keras.backend.backend(),
        "keras.version": keras.__version__,
        "keras_tuner.version": keras_tuner.__version__,
        "mlflow.version": mlflow.__version__,
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        names.TAG_PID_STARTED: str(process_start(os.getpid()) or ""),  # tells a live job from a reused pid
    }
    from pneumo.runtime import backend

    tags.update({f"{dist}.version": v for dist, v in backend.packages(keras.backend.backend()).items()})
    return tags


def find_job(client: MlflowClient, exp_id: str, key: str):
    """The latest parent run of this job, if any (for resume / skip)."""
    runs = client.search_runs(
        [exp_id],
        f"tags.`{names.TAG_JOB_KEY}` = '{key}' and tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def reap(client: MlflowClient, exp_id: str, keep: str | None = None) -> int:
    """End as KILLED the job runs (and their trials) whose process died on this host.

    A SIGKILL leaves MLflow runs RUNNING forever; the next job in the experiment
    notices (same host, its pid gone) and says what happened. `keep` is the
    run the caller is about to resume (its trials are reconciled separately).
    """
    host, n = socket.gethostname(), 0
    for run in client.search_runs([exp_id], f"attributes.status = 'RUNNING' and tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'"):
        tags = run.data.tags
        started = float(tags[names.TAG_PID_STARTED]) if tags.get(names.TAG_PID_STARTED) else None
        if run.info.run_id == keep or tags.get("host") != host or _alive(int(tags.get("pid", "0") or 0), started):
            continue
        for child in children(client, exp_id, run.info.run_id, "RUNNING"):
            client.set_terminated(child.info.run_id, "KILLED")
        client.set_terminated(run.info.run_id, "KILLED")
        n += 1
    return n


def _alive(pid: int, started: float | None) -> bool:
    """Is `pid` still the process that tagged the run (started at `started`, epoch s)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A reused pid belongs to a process started later. (Not the command line: a job
    # under Hydra's joblib launcher runs in a loky worker, named as such.)
    now_started = process_start(pid)
    return now_started is None or started is None or abs(now_started - started) < 2  # btime: 1 s resolution


def process_start(pid: int) -> float | None:
    """Start time of a process (epoch seconds), from /proc; None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(int(x.split()[1]) for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime"))
    except (OSError, StopIteration, ValueError):
        return None
    return btime + int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")


def children(client: MlflowClient, exp_id: str, parent_id: str, status: str | None = None):
    query = f"tags.`{names.PARENT_RUN_ID}` = '{parent_id}'"
    if status:
        query += f" and attributes.status = '{status}'"
    return client.search_runs([exp_id], query, max_results=5000)


def close_stale_trials(client: MlflowClient, exp_id: str, parent_id: str, completed: set[str]) -> int:
    """A killed process leaves runs RUNNING: end them as what really happened."""
    n = 0
    for run in children(client, exp_id, parent_id, "RUNNING"):
        trial = run.data.tags.get(names.TAG_TRIAL_ID)
        status = "FINISHED" if trial in completed else "KILLED"
        client.set_terminated(run.info.run_id, status)
        n += 1
    return n


@contextlib.contextmanager
def killed_if_interrupted(client: MlflowClient, exp_id: str, run_id: str):
    """Inside the job's `mlflow.start_run`: Ctrl-C, or SIGTERM (pneumo.job raises it as a KeyboardInterrupt),
    ends the job's run and the trial runs it left open as KILLED; the interrupt goes on (epoch metrics still
    queued are written before the interpreter exits: `log_epoch`).

    Left to MLflow, the job's run would end FAILED and its trial in flight stay RUNNING for good (a later
    job reaps the trials of RUNNING jobs only). The same command resumes the job, as after a SIGKILL.
    """
    try:
        yield
    except KeyboardInterrupt:
        for child in children(client, exp_id, run_id, "RUNNING"):
            client.set_terminated(child.info.run_id, "KILLED")
        mlflow.end_run("KILLED")  # and off MLflow's stack: its start_run would end it FAILED on the way out
        raise


def start_trial(client: MlflowClient, exp_id: str, parent_id: str, trial_id: str, hp: Mapping,
                name_prefix: str = "trial") -> str:
    return start_child(client, exp_id, parent_id, f"{name_prefix}-{trial_id}", names.ROLE_TRIAL, hp,
                       {names.TAG_TRIAL_ID: trial_id})


def start_child(client: MlflowClient, exp_id: str, parent_id: str, name: str, role: str, params: Mapping,
                tags: Mapping[str, str] | None = None) -> str:
    """A child run of the job (a trial, or a seed repeat of the best trial), with its params."""
    tags = {names.PARENT_RUN_ID: parent_id, names.TAG_ROLE: role, **(tags or {})}
    run = client.create_run(exp_id, run_name=name, tags=tags)
    batch = [Param(k, scrub(str(v))[:PARAM_MAX]) for k, v in sorted(params.items())]
    if batch:
        client.log_batch(run.info.run_id, params=batch)
    return run.info.run_id


_epoch_writer: list[ThreadPoolExecutor] = []  # one background thread for per-epoch metrics, made on first use


def log_epoch(client: MlflowClient, run_id: str, epoch: int, logs: Mapping, synchronous: bool = True) -> Future | None:
    """One epoch's metrics (timestamped now, at the epoch's end) in one MLflow write.

    synchronous=False hands the write to a background thread, so training does not wait for the
    store (a sqlite commit per epoch is a large share of a short GPU epoch): writes happen one
    at a time, in order, and the returned Future says when (and whether) this one did. Wait for
    them with `wait_written` before ending the run. On a kill, what is lost is at most the write
    in flight; at a normal interpreter exit the queue is drained first.
    """
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, epoch) for k, v in logs.items() if names.finite(v) is not None]
    if not batch:
        return None
    if synchronous:
        client.log_batch(run_id, metrics=batch)
        return None
    if not _epoch_writer:
        _epoch_writer.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="pneumo-epoch-metrics"))
    return _epoch_writer[0].submit(client.log_batch, run_id, metrics=batch)


def wait_written(writes: list[Future]) -> None:
    """Block until every write has reached the store; raise the first one's error, if any."""
    for write in writes:
        write.result()


def end_trial(client: MlflowClient, run_id: str, status: str, message: str | None = None) -> None:
    if message:
        client.log_text(run_id, scrub(message), names.ERROR_ARTIFACT)
        client.set_tag(run_id, "error", scrub(message.strip().splitlines()[-1])[:500])
    client.set_terminated(run_id, status)


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, scrub(str(v))[:PARAM_MAX]) for k, v in tags.items()])


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Params are write-once in MLflow: a resumed job skips those already there."""
    have = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in have]
    for i in range(0, len(new), 100):  # log_batch takes at most 100 params a call
        client.log_batch(run_id, params=new[i : i + 100])


def log_job(client: MlflowClient, run_id: str, plain: Mapping, overrides: list[str], tags: Mapping[str, str]) -> None:
    """What a job run records about itself before training: its tags (plus git and runtime), the flattened
    config as params, and the config and overrides as artifacts, credentials redacted throughout."""
    from omegaconf import OmegaConf

    log_tags(client, run_id, {**tags, names.TAG_OVERRIDES: " ".join(overrides), **git_tags(), **runtime_tags()})
    log_params(client, run_id, flatten(plain))
    client.log_text(run_id, OmegaConf.to_yaml(OmegaConf.create(redact_config(plain))), names.CONFIG_ARTIFACT)
    client.log_text(run_id, "\n".join(overrides) + "\n", names.OVERRIDES_ARTIFACT)


def log_dataset(name: str, digest: str, source: str, counts: Mapping) -> None:
    """Record the data set on the active run: its identity is the index digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    source = scrub(source)  # before as_uri(), which percent-encodes a `user:password@` past recognising
    uri = Path(source).resolve().as_uri() if "://" not in source else source
    dataset = MetaDataset(source=resolve_dataset_source(uri), name=name, digest=digest[:36])
    log = lambda: mlflow.log_input(dataset, context="training", tags={"counts": json.dumps(counts)})  # noqa: E731
    try:
        log()
    except mlflow.exceptions.MlflowException:
        # A parallel job logged the same new data set first: MLflow looks it up, then inserts it, and the
        # loser's insert breaks its key (rolled back). It is there now; as for experiments (store.py).
        log()

