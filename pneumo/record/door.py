"""The plumbing every door method shares: MLflow's exceptions as pneumo's, paged searches, and MLflow's
entities turned into pneumo.record.entities."""

from __future__ import annotations

import contextlib

from mlflow.exceptions import MlflowException

from pneumo.record import names
from pneumo.record.entities import NotFound, RecordError, Run, Version

MISSING = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")  # MLflow's error codes for what the store does not hold


@contextlib.contextmanager
def answers():
    """MLflow's exceptions as pneumo's: NotFound for what the store does not hold, else RecordError."""
    try:
        yield
    except MlflowException as e:
        kind = NotFound if e.error_code in MISSING else RecordError
        raise kind(e.message) from e


def pages(search, *args, **kwargs):
    """Every item of a paged MLflow search (search_runs, search_model_versions, search_experiments...)."""
    token = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        if not (token := page.token):
            return


def as_run(run) -> Run:
    info, data = run.info, run.data
    return Run(info.run_id, info.run_name or "", info.experiment_id, info.status, info.start_time, info.end_time,
               dict(data.metrics), dict(data.params), dict(data.tags))


def as_version(mv, aliases: tuple[str, ...] = ()) -> Version:
    tags = dict(mv.tags or {})
    return Version(mv.name, str(mv.version), mv.run_id or tags.get(names.VERSION_TAG_RUN_ID), mv.status, tags,
                   mv.description or "", tuple(sorted(aliases or getattr(mv, "aliases", None) or ())))
