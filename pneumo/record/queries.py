"""The searches the commands need, through the Store: each one query (or one paged query), whatever the
number of runs, built here and nowhere else; each answer is pneumo.record.entities."""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.entities import ViewType

from pneumo.record import names
from pneumo.record.door import as_run, pages
from pneumo.record.entities import FINISHED, RUNNING, Evaluation, Run

MAX_CHILDREN = 5000  # trial runs of one job a search returns (MLflow caps one call at 50 000)


def _tag(name: str, value: str) -> str:
    return f"tags.`{name}` = '{value}'"


def _status(status: str, equal: bool = True) -> str:
    return f"attributes.status {'=' if equal else '!='} '{status}'"


JOBS = _tag(names.TAG_ROLE, names.ROLE_JOB)


class Queries:
    """The query half of pneumo.record.client.Store (it holds `_client`)."""

    def find_job(self, exp_id: str, key: str) -> Run | None:
        """The latest parent run of this job, if any (for resume / skip, and a worker's chief)."""
        found = self._client.search_runs([exp_id], f"{_tag(names.TAG_JOB_KEY, key)} and {JOBS}",
                                         order_by=[names.NEWEST_FIRST], max_results=1)
        return as_run(found[0]) if found else None

    def children(self, exp_id: str, parent_id: str, status: str | None = None) -> list[Run]:
        query = _tag(names.PARENT_RUN_ID, parent_id) + (f" and {_status(status)}" if status else "")
        return [as_run(r) for r in self._client.search_runs([exp_id], query, max_results=MAX_CHILDREN)]

    def running_jobs(self, exp_id: str) -> list[Run]:
        return [as_run(r) for r in self._client.search_runs([exp_id], f"{_status(RUNNING)} and {JOBS}")]

    def jobs(self, exp_ids: list[str], metric: str, higher: bool, page_size: int, top: int | None = None) -> list[Run]:
        """Job runs by `metric` in its direction (the newest first among equals), paged; with `top`, the search
        stops once it has `top` FINISHED ones (the unfinished that ranked among them are kept)."""
        out, finished = [], 0
        for run in pages(self._client.search_runs, exp_ids, filter_string=JOBS, run_view_type=ViewType.ACTIVE_ONLY,
                         max_results=page_size if top is None else min(page_size, top),
                         order_by=[f"metrics.`{metric}` {'DESC' if higher else 'ASC'}", names.NEWEST_FIRST]):
            out.append(as_run(run))
            finished += run.info.status == FINISHED
            if top is not None and finished >= top:
                break
        return out

    def runs_by_id(self, exp_ids: list[str], run_ids: Iterable[str]) -> list[Run]:
        wanted = sorted(set(run_ids))
        if not wanted:
            return []
        quoted = ", ".join(f"'{i}'" for i in wanted)
        return [as_run(r) for r in pages(self._client.search_runs, exp_ids, f"attributes.run_id IN ({quoted})",
                                         max_results=len(wanted))]

    def evaluations(self, exp_ids: list[str], page_size: int) -> list[Evaluation]:
        """The FINISHED `pneumo evaluate` runs, the latest of each version on each folder, one paged query."""
        out: dict[tuple, Evaluation] = {}
        for run in pages(self._client.search_runs, exp_ids, f"{_tag(names.TAG_ROLE, names.ROLE_EVALUATION)} and "
                         f"{_status(FINISHED)}", run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                         order_by=[names.NEWEST_FIRST]):
            tags = run.data.tags
            key = (tags.get(names.PARENT_RUN_ID), tags.get(names.TAG_FOLDER), tags.get(names.TAG_MODEL_VERSION))
            if key not in out:  # else an older evaluation of the same version on the same folder
                out[key] = Evaluation(run.info.run_id, *key, tags.get(names.TAG_TEST_DIGEST), dict(run.data.metrics))
        return list(out.values())

    def latest_rerun(self, run: Run) -> Run | None:
        """The newest job run that reruns `run`, in its experiment."""
        found = self._client.search_runs([run.experiment_id], _tag(names.TAG_RERUN_OF, run.id),
                                         order_by=[names.NEWEST_FIRST], max_results=1)
        return as_run(found[0]) if found else None

    def unfinished_jobs(self, exp_id: str, multirun: str) -> list[Run]:
        """The job runs of one multirun (its sweep folder) that did not finish."""
        query = f"{JOBS} and {_tag(names.TAG_MULTIRUN, multirun)} and {_status(FINISHED, equal=False)}"
        return [as_run(r) for r in self._client.search_runs([exp_id], query)]
