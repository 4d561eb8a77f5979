"""Scale-out plumbing: Keras Tuner's own distributed search, and one GPU per process.

Keras Tuner decides a process's part from three environment variables, read
when a tuner is built and when `search` starts: KERASTUNER_TUNER_ID (an id
containing "chief" makes the process the chief), KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT. The chief's `search` serves the oracle over gRPC and
returns once every worker has been told the search is over; a worker's
`search` runs the trials the oracle hands out, then returns.

pneumo sets those variables from `cfg.distributed`. The chief owns the job's
parent MLflow run and publishes the oracle's address on it (tag
`pneumo.oracle`); a worker finds that run by the job key, reads the address
and logs each of its trials as a child of it. Only the chief evaluates on test
and registers the model, from the best trial's weights in the shared tuner
directory. No scheduler of our own: processes are started by hand, by Hydra's
joblib launcher, or by SLURM through the submitit launcher.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from pneumo.config.errors import ConfigError
from pneumo.record import names

log = logging.getLogger("pneumo")

ROLES = (None, "chief", "worker")
DEFAULT_IP, DEFAULT_PORT = "127.0.0.1", 8000
ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
ANY_INTERFACE = ("0.0.0.0", "::", "[::]")
POLL_S = 1.0  # worker: between looks for the chief's parent run

_held_gpu_locks: list = []  # open files whose flock marks a GPU as this process's, for its whole life


def prepare(dcfg: Mapping) -> None:
    """Check the role, pick this process's GPU and set (or clear) the Keras Tuner variables.

    Called at the start of every job: a multirun's next job in the same process
    must not inherit the previous one's role.
    """
    role = dcfg.get("role")
    if role not in ROLES:
        raise ConfigError(f"distributed.role: {role!r} is not one of null, chief, worker")
    worker_id = dcfg.get("worker_id")
    if role == "worker" and worker_id and "chief" in str(worker_id):
        raise ConfigError("distributed.worker_id: Keras Tuner takes any id containing 'chief' for the chief")
    claim_gpu(role)
    for name in ENV:
        os.environ.pop(name, None)
    if role == "chief":
        _set_env("chief", dcfg.get("oracle_ip") or DEFAULT_IP, dcfg.get("oracle_port") or DEFAULT_PORT)


def publish(record, dcfg: Mapping) -> None:
    """Chief: say on the job's run (`record`: a JobRecord) where its oracle listens (once the tuner is built)."""
    if dcfg.get("role") != "chief":
        return
    ip, port = os.environ["KERASTUNER_ORACLE_IP"], os.environ["KERASTUNER_ORACLE_PORT"]
    host = socket.getfqdn() if ip in ANY_INTERFACE else ip
    record.publish_oracle(f"{host}:{port}")
    log.info("chief: oracle on %s:%s for job run %s; start workers with distributed.role=worker", host, port,
             record.run_id)


def withdraw(record, dcfg: Mapping) -> None:
    """Chief: the search is over; a worker started now must not wait on a closed oracle."""
    if dcfg.get("role") == "chief":
        record.withdraw_oracle()


def join(store, exp_id: str, key: str, dcfg: Mapping):
    """Worker: wait for the chief's parent run of job `key`, point Keras Tuner at its oracle; that run."""
    deadline = time.monotonic() + float(dcfg.get("wait_s") or 0)
    while True:
        run = store.find_job(exp_id, key)
        if address := run and run.oracle:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"no chief is serving job {key} (no RUNNING parent run tagged {names.TAG_ORACLE} after "
                f"{dcfg.get('wait_s')} s): start `pneumo train distributed.role=chief ...` with the same overrides")
        time.sleep(POLL_S)
    host, _, port = address.rpartition(":")
    # Keras Tuner takes any id containing "chief" for the chief: mind hosts named chief01.
    worker_id = dcfg.get("worker_id") or f"{socket.gethostname()}-{os.getpid()}".replace("chief", "ch-ief")
    _set_env(f"worker-{worker_id}", dcfg.get("oracle_ip") or host, dcfg.get("oracle_port") or port)
    log.info("worker %s: running trials of job run %s (oracle %s)", worker_id, run.id, address)
    return run


def _set_env(tuner_id: str, ip: str, port) -> None:
    os.environ.update(KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP=str(ip), KERASTUNER_ORACLE_PORT=str(port))


# -- one GPU per process ------------------------------------------------------------


def gpu_count() -> int:
    """GPUs on this machine, from nvidia-smi (no framework import: the choice must precede it)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def claim_gpu(role: str | None = None, n_gpus: int | None = None, lock_dir: Path | None = None) -> str | None:
    """Give this process one GPU of several (CUDA_VISIBLE_DEVICES) so parallel jobs do not share one.

    Parallel jobs (Hydra's joblib launcher) and workers on one machine each take
    the first GPU nobody holds, by an flock kept for the life of the process:
    a framework cannot change GPUs once it has started, and joblib reuses its
    worker processes for later jobs. A chief only serves the oracle, and a
    framework on it would reserve memory the workers need, so it sees no GPU
    (its final evaluation runs on the CPU). Left alone when CUDA_VISIBLE_DEVICES
    is already set (by SLURM or by hand) or when there is at most one GPU for a job.
    Returns what it set, or None.
    """
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    n = gpu_count() if n_gpus is None else n_gpus
    if n == 0:
        return None
    if role == "chief":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return ""
    if n == 1:
        return None
    lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / f"pneumo-gpus-{os.getuid()}")
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = open(lock_dir / f"gpu{i}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        _held_gpu_locks.append(f)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
        return str(i)
    i = os.getpid() % n
    log.warning("all %d GPUs are held by other pneumo processes: sharing GPU %d (use fewer parallel jobs)", n, i)
    os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
    return str(i)
