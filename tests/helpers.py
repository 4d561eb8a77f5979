"""Helpers for tests that run the installed app as a subprocess over a store in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo.config import paths

# The real conf/, shrunk: tiny synthetic data, one epoch, 32 px, one trial. Seven validation
# images cannot tell a model from chance: the chance gate is off (tests/test_failures.py tries it).
TOY = [
    "data=synthetic", "data.n_images=48", "data.image_px=48",
    "trainer.epochs=1", "trainer.image_size=32", "trainer.batch_size=16", "trainer.chance_z=null",
    "tuner.max_trials=1", "evaluation.bootstrap=50",
]


def require(present: bool, missing: str) -> None:
    """Skip a test whose prerequisite is missing, saying which, except in CI (CI=true), where
    a missing prerequisite fails: a skipped test in CI is a guarantee nobody checked."""
    if present:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run this test, but {missing}")
    pytest.skip(missing)


def clean_env(extra: dict | None = None) -> dict:
    """The environment for a child pneumo: no inherited MLflow run or store. A None in extra unsets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(extra or {})})
    return {k: v for k, v in env.items() if v is not None}


def isolate(tmp: Path) -> list[str]:
    """Overrides that keep every output of a job under tmp."""
    return [f"paths.cache={tmp}/cache", f"tracking.store={tmp}/mlruns",
            f"hydra.sweep.dir={tmp}/multirun", f"hydra.run.dir={tmp}/outputs"]


def run_pneumo(args, tmp: Path, env_extra=None, check=True, timeout=900, hydra=True):
    argv = [sys.executable, "-m", "pneumo", *args, *(isolate(tmp) if hydra else [])]
    proc = subprocess.run(argv, env=clean_env(env_extra), cwd=tmp, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pneumo {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def tracking_uri(tmp: Path) -> str:
    return paths.local_tracking_uri(tmp / "mlruns")


def client_for(tmp: Path):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(tmp))
    return mlflow.MlflowClient()
