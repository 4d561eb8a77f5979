"""What decides a job's numbers besides its config, recorded on its parent run.

The config (params, `config/config.yaml`) says what was asked; these tags say what
it ran on: the seeds, the library versions, the device, the backend's determinism
and the exact split. `pneumo rerun` compares them with the environment it runs in
(pneumo.commands.rerun), so a rerun that cannot match its original says why before it runs.
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pneumo.config import paths
from pneumo.config.keys import SEEDED
from pneumo.record import names
from pneumo.record.entities import Change
from pneumo.runtime import backend

# Versions beyond Keras and the backend (runtime_tags has those): the split uses
# scikit-learn's group-aware splitters, the bootstrap and the data numpy.
LIBRARIES = ("numpy", "scikit-learn")
# Tags a rerun compares with what it would run on: a difference can change the numbers.
# (mlflow.version, host and pid are recorded too, but do not decide a number.)
DECISIVE = (names.TAG_KERAS_BACKEND, names.TAG_KERAS_VERSION, names.TAG_KERAS_TUNER_VERSION,
            *(names.VERSION_TAGS[d] for ds in backend.PACKAGES.values() for d in ds), names.TAG_PYTHON_VERSION,
            *(names.VERSION_TAGS[lib] for lib in LIBRARIES), names.TAG_DEVICE, names.TAG_GIT_COMMIT,
            names.TAG_GIT_DIRTY)


def environment() -> dict[str, str]:
    """This process's versions and device, under the tag names a job records them with."""
    out = {names.TAG_PYTHON_VERSION: platform.python_version(), names.TAG_DEVICE: backend.device()}
    for lib in LIBRARIES:
        try:
            out[names.VERSION_TAGS[lib]] = version(lib)
        except PackageNotFoundError:
            continue
    return out


def changes(tags: Mapping[str, str]) -> list[Change]:
    """What decides the numbers and differs now from a run's `tags` (its versions, device, commit)."""
    now = {**runtime_tags(), **git_tags(), **environment()}
    return [Change(k, tags.get(k, "(not recorded)"), now.get(k, "(none)")) for k in DECISIVE
            if (k in tags or k in now) and tags.get(k) != now.get(k)]


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
    """Keras, its backend and their versions, and the process (host, pid and its start: resume reaps by them)."""
    import keras  # late: the CLI imports pneumo.record without loading a Keras backend
    import keras_tuner
    import mlflow

    tags = {
        names.TAG_KERAS_BACKEND: keras.backend.backend(),
        names.TAG_KERAS_VERSION: keras.__version__,
        names.TAG_KERAS_TUNER_VERSION: keras_tuner.__version__,
        names.TAG_MLFLOW_VERSION: mlflow.__version__,
        names.TAG_HOST: socket.gethostname(),
        names.TAG_PID: str(os.getpid()),
        names.TAG_PID_STARTED: str(process_start(os.getpid()) or ""),  # tells a live job from a reused pid
    }
    tags.update({names.VERSION_TAGS[dist]: v for dist, v in backend.packages(keras.backend.backend()).items()})
    return tags


def alive(pid: int, started: float | None) -> bool:
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


def job_tags(plain: Mapping, splits, determinism: str) -> dict[str, str]:
    """The parent run's provenance tags from its resolved config (runtime_tags and git_tags add Keras,
    backend and commit)."""
    def get(key: str):
        node = plain
        for part in key.split("."):
            node = node[part]
        return node

    seeds = {k: get(k) for k in SEEDED}
    return {**environment(), names.TAG_SPLIT_DIGEST: split_digest(splits), names.TAG_DETERMINISTIC: determinism,
            names.TAG_SEEDS: " ".join(f"{k}={v}" for k, v in seeds.items()), names.TAG_CONFIG: config_source()}


def split_digest(splits) -> str:
    """Identity of the split itself: which images (by bytes) and labels are in train, val and test.

    The data digest names the files and the split's parameters; this one catches a split that
    came out differently from the same inputs (another scikit-learn, another split algorithm).
    """
    from pneumo.data.loader import labels_digest

    parts = [labels_digest(s.hashes, s.y) for s in (splits.train, splits.val, splits.test)]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def config_source() -> str:
    """The Hydra config the job's overrides were applied to, relative to the project: 'sweeps/smoke',
    'conf/config'; '' outside Hydra (a test calling train directly)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    folder = paths.CONF_DIR
    for source in hc.runtime.config_sources:  # --config-dir is the command line's source
        if source.provider == "command-line" and source.schema == "file":
            folder = Path(source.path)
    try:
        folder = folder.resolve().relative_to(paths.ROOT.resolve())
    except ValueError:
        pass  # a config folder outside the project: kept absolute
    return f"{folder.as_posix()}/{hc.job.config_name}"
