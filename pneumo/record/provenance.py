"""What decides a job's numbers besides its config, recorded on its parent run.

The config (params, `config/config.yaml`) says what was asked; these tags say what
it ran on: the seeds, the library versions, the device, the backend's determinism
and the exact split. `pneumo rerun` compares them with the environment it runs in
(pneumo.commands.rerun), so a rerun that cannot match its original says why before it runs.
"""

from __future__ import annotations

import hashlib
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pneumo.config import paths
from pneumo.record import names

# Versions beyond Keras and the backend (tracking.runtime_tags has those): the split uses
# scikit-learn's group-aware splitters, the bootstrap and the data numpy.
LIBRARIES = ("numpy", "scikit-learn")
# Tags a rerun compares with what it would run on: a difference can change the numbers.
# (mlflow.version, host and pid are recorded too, but do not decide a number.)
DECISIVE = (names.TAG_KERAS_BACKEND, "keras.version", "keras_tuner.version", "tensorflow.version", "jax.version",
            "jaxlib.version", "torch.version", "python.version", *(f"{lib}.version" for lib in LIBRARIES),
            names.TAG_DEVICE, names.TAG_GIT_COMMIT, names.TAG_GIT_DIRTY)


def environment() -> dict[str, str]:
    """This process's versions and device, under the tag names a job records them with."""
    from pneumo.runtime import backend

    out = {"python.version": platform.python_version(), names.TAG_DEVICE: backend.device()}
    for lib in LIBRARIES:
        try:
            out[f"{lib}.version"] = version(lib)
        except PackageNotFoundError:
            continue
    return out


def job_tags(cfg, splits, determinism: str) -> dict[str, str]:
    """The parent run's provenance tags (runtime_tags and git_tags add Keras, backend and commit)."""
    seeds = {"seed": cfg.seed, "data.seed": cfg.data.seed, "tuner.seed": cfg.tuner.seed,
             "evaluation.seed": cfg.evaluation.seed}
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
