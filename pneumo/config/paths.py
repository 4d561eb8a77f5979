"""The project root, resolved once: Hydra changes the working directory per job."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("PNEUMO_ROOT", Path(__file__).resolve().parents[2]))
CONF_DIR = ROOT / "conf"
SWEEPS_DIR = ROOT / "sweeps"
STORE = ROOT / "mlruns"  # the local MLflow store: one folder, DATABASE and ARTIFACTS/ beside it
DATABASE = "mlflow.db"  # a store's sqlite database, in its folder
ARTIFACTS = "artifacts"  # a store's artifacts, beside its database: one folder an experiment


def local_tracking_uri(store: str | Path | None = None) -> str:
    """sqlite URI of the local store (MLflow 3 refuses a plain folder of files)."""
    store = Path(store) if store else STORE
    return f"sqlite:///{store.resolve() / DATABASE}"
