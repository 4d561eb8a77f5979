"""Where the record lives: the tracking store, resolved once per command, and the Store that opens it
(pneumo.record.client).

A local store is one folder (pneumo.record.local): its artifacts sit beside its database, a command
that only reads writes nothing to it, and a store that does not exist is created only by a command
that makes runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow

from pneumo.config import paths
from pneumo.record import local, redact
from pneumo.record.client import Store
from pneumo.record.door import pages

log = logging.getLogger("pneumo")
_ours: dict = {}  # the tracking URI this process set, as MLflow mirrored it into the environment


def _chosen(uri: str | None, store: str | Path | None, given: str = "tracking.uri") -> tuple[str, str]:
    """(the tracking URI, how to name it to the user): MLFLOW_TRACKING_URI wins, then `uri` (named as
    `given`), then the local store folder `store`."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI: a value we put there
    # ourselves (an earlier job of this process) is not the user's choice.
    if env != _ours.get("uri"):  # changed since we last set it: the user's (or the first call)
        _ours["user"] = env
    if _ours.get("user"):
        user = _credentials_to_env(_ours["user"])
        return user, f"MLFLOW_TRACKING_URI={user}"
    if uri:
        uri = _credentials_to_env(uri)
        return uri, f"{given}={uri}"
    local_uri = paths.local_tracking_uri(store)
    return local_uri, f"tracking.store={store}" if store else f"the local store {local_uri} (MLFLOW_TRACKING_URI unset)"


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


def check(uri: str | None = None, store: str | Path | None = None, cwd: Path | None = None) -> None:
    """Refuse now, naming it, a store that cannot become one (a folder, a file that is not a database),
    without creating or changing anything (a job checks before it loads data)."""
    local.check(*_chosen(uri, store), cwd)


def resolve(uri: str | None = None, store: str | Path | None = None, *, creates: bool = False,
            cwd: Path | None = None, given: str = "tracking.uri") -> str:
    """The store a command works on (`_chosen`); a local one is checked, and created with `creates`,
    before MLflow opens it. A relative sqlite path is taken from `cwd` (a job's: the folder pneumo was
    started in, not Hydra's job folder)."""
    resolved, named = _chosen(uri, store, given)
    db = local.ready(resolved, named, creates=creates, cwd=cwd)
    return f"{local.SQLITE}{db}" if db is not None else resolved


def setup(uri: str | None = None, store: str | Path | None = None, *, writes: bool = False, creates: bool = False,
          **where) -> str:
    """Point MLflow at the store (see `resolve`). `writes`: the command adds to the store, so a moved
    store's recorded locations are first set to its current folder; `creates`: it makes runs, so a
    store that does not exist yet is created."""
    # A parent's MLFLOW_RUN_ID would hijack our nested runs: never inherit it.
    os.environ.pop("MLFLOW_RUN_ID", None)
    resolved = resolve(uri, store, creates=creates, **where)
    mlflow.set_tracking_uri(resolved)
    _ours["uri"] = os.environ.get("MLFLOW_TRACKING_URI")
    db = local.database(resolved)
    if db is not None and (writes or creates) and (moves := (opened := Store(resolved)).moved()):
        n = local.relocate(db, moves)
        opened.forget_moves()
        log.warning("store %s was moved: %d recorded artifact locations now point into it (were under %s)",
                 db.parent, n, ", ".join(sorted({str(local.local_path(old).parent.parent) for old in moves})))
    return resolved


def connect(uri: str | None = None, store: str | Path | None = None, **how) -> Store:
    """The Store a command works on (resolved once, as `setup` does), to hand around."""
    return Store(setup(uri, store, **how))


def _create_sqlite_store(uri: str) -> None:
    """A new sqlite store's tables (tests/helpers.py seeds its stores with it)."""
    local.create(local.database(uri))


__all__ = ["Store", "check", "connect", "pages", "resolve", "setup"]
