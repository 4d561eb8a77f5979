"""Where the record lives: the tracking store, resolved once per command, and its experiments.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pneumo.config import paths
from pneumo.record import redact

_ours: dict = {}  # the tracking URI this process set, as MLflow mirrored it into the environment


def setup(uri: str | None = None, store: str | Path | None = None) -> str:
    """Point MLflow at the store: MLFLOW_TRACKING_URI wins, then `uri`, then local sqlite."""
    # A parent's MLFLOW_RUN_ID would hijack our nested runs: never inherit it.
    os.environ.pop("MLFLOW_RUN_ID", None)
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI: a value we put there
    # ourselves (an earlier job of this process) is not the user's choice.
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env != _ours.get("uri"):  # changed since we last set it: the user's (or the first call)
        _ours["user"] = env
    resolved = _credentials_to_env(_ours.get("user") or uri)
    if not resolved:
        store = Path(store) if store else paths.STORE
        store.mkdir(parents=True, exist_ok=True)
        resolved = paths.local_tracking_uri(store)
    mlflow.set_tracking_uri(resolved)
    _ours["uri"] = os.environ.get("MLFLOW_TRACKING_URI")
    if resolved.startswith("sqlite:"):
        _create_sqlite_store(resolved)
    return resolved


def _credentials_to_env(uri: str | None) -> str | None:
    """The URI without its `user:password@`, the credentials handed to MLflow as its documented
    MLFLOW_TRACKING_USERNAME / _PASSWORD (the same basic auth): in the URI they would be printed by
    MLflow itself ("View run ... at: <uri>/#/..."), and mirrored into MLFLOW_TRACKING_URI for every
    child process. A username or password already in the environment is the user's and wins.
    Only a tracking server's (http, https) URI: a database URI needs its password where it is."""
    if not uri or not uri.startswith(("http://", "https://")):
        return uri
    bare, user, password = redact.split_userinfo(uri)
    if user is not None:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", password)
    return bare


def connect(uri: str | None = None, store: str | Path | None = None) -> MlflowClient:
    """An MlflowClient on the store a command works on (resolved once, as `setup` does), to hand around."""
    return MlflowClient(tracking_uri=setup(uri, store))


def pages(search, *args, **kwargs):
    """Every item of a paged MLflow search (search_runs, search_model_versions, search_experiments...)."""
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        if not (token := page.token):
            return


def _create_sqlite_store(uri: str) -> None:
    """Create a new sqlite store's tables once, under a lock.

    Parallel jobs (Hydra's joblib launcher) opening a new store at the same time
    would each create its tables and fail ('table ... already exists').
    """
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(uri).search_experiments(max_results=1)


def experiment_id(name: str, store: str | Path | None = None) -> str:
    """Get or create the experiment; local artifacts go under <store>/artifacts/."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if store and mlflow.get_tracking_uri().startswith("sqlite:"):
        location = (Path(store).resolve() / "artifacts" / _slug(name)).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # a parallel job created it first
        return client.get_experiment_by_name(name).experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
