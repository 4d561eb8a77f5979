"""The leaderboard: one row per job (parent run), read from MLflow with a constant number of queries.

One paged search over the jobs, ordered by the metric in the store, one paged search of the
versions and one read of their aliases, joined by run id (pneumo.record's Store asks them). No
per-run calls, so a sweep of thousands of jobs costs a few pages (plus one query for the originals
of `pneumo rerun` jobs that are not among them). Works on any tracking store (sqlite, a tracking
server) through the public client API only.

`experiment=None` reads every active experiment: a job's row names its
experiment, and jobs of several sweeps rank together (the test digest column
says which are comparable).

Only FINISHED jobs are ranked (`rank` 1, 2, ...). Jobs that FAILED, were
KILLED or are still RUNNING follow them, in the metric's order, with `rank`
None and their status: their numbers exist but describe a job that did not
complete, and `pneumo promote` skips them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from pneumo.commands.reproduce import TOLERANCE, Verdict, differences
from pneumo.config.keys import SEEDS
from pneumo.data.subtypes import SUBTYPES
from pneumo.record import names
from pneumo.record.entities import FINISHED, Evaluation, Run
from pneumo.record.params import config_key

_SUBTYPE_METRICS = tuple(names.subtype_metric(m, s) for m in names.SUBTYPE_METRICS for s in SUBTYPES)  # issue 19
PAGE_SIZE = 1000  # runs per search_runs call (MLflow caps one call at 50 000)
RANKED_STATUS = FINISHED  # the only run status promotion accepts
# Every metric a row holds, in the order JSON and CSV give them: the objective's, the test metrics with their
# CIs, per subtype, then the job's own numbers and every other metric a job may be ranked by.
_WITH_CI = names.TEST_METRICS + _SUBTYPE_METRICS
METRICS = tuple(dict.fromkeys((
    names.VAL_AUC, names.VAL_LOSS, *(n for name in _WITH_CI for n in (name, *names.ci_names(name))),
    names.THRESHOLD, names.EPOCHS_TRAINED, names.TRIALS_COMPLETED, names.TRIALS_FAILED, *names.HIGHER_IS_BETTER)))
EXTERNAL = tuple(n for name in names.EXTERNAL_METRICS + _SUBTYPE_METRICS for n in (name, *names.ci_names(name)))


@dataclass(frozen=True)
class SeedStat:
    mean: float | None
    sd: float | None


@dataclass(frozen=True)
class RerunCheck:
    """A rerun's verdict against its original (pneumo.commands.reproduce); None: the original was not found."""

    of: str
    verdict: Verdict | None

    def record(self) -> dict:
        return {"of": self.of, **(asdict(self.verdict) if self.verdict else {"differs": None, "missing": True})}


@dataclass(frozen=True)
class LeaderboardRow:
    """One job: what it is, how it scored, what became of its model, and what a rerun or evaluate added."""

    run_id: str
    run_name: str
    experiment: str
    overrides: str
    status: str
    test_digest: str | None
    best_hp: dict[str, str]  # the best trial's hyperparameters, without the best_hp. prefix
    metrics: dict[str, float | None]  # METRICS, None where the job has none
    duration_s: float | None
    version: int | None  # its latest registered version
    aliases: tuple[str, ...]
    seed_repeats: float | None  # trainer.repeats: how many fits completed
    seeds: dict[str, SeedStat] | None  # each metric's mean and SD over those fits
    rerun_of: str | None
    job_key: str | None
    seed: str | None
    config_key: str | None  # what `pneumo compare` groups seeds by (pneumo.commands.groups)
    start_time: int | None
    params: dict[str, str] | None = None  # with leaderboard(params=True): its flat config and best_hp.*
    external: tuple[Evaluation, ...] = ()  # what `pneumo evaluate` measured on other folders: shown only
    rerun: RerunCheck | None = None
    rank: int | None = None  # FINISHED jobs only

    def metric(self, name: str) -> float | None:
        return self.metrics.get(name)

    def record(self) -> dict:
        """The row as `pneumo compare --format json` prints it."""
        out = {"rank": self.rank, "run_id": self.run_id, "run_name": self.run_name, "experiment": self.experiment,
               "overrides": self.overrides, "status": self.status, "test_digest": self.test_digest,
               "best_hp": self.best_hp, **self.metrics, "duration_s": self.duration_s, "version": self.version,
               "aliases": list(self.aliases), names.SEED_REPEATS: self.seed_repeats,
               "seeds": {k: asdict(v) for k, v in self.seeds.items()} if self.seeds else None,
               "rerun_of": self.rerun_of, "job_key": self.job_key, "seed": self.seed, "config_key": self.config_key,
               "start_time": self.start_time}
        if self.params is not None:
            out["params"] = self.params
        out["external"] = [external_record(e) for e in self.external]
        if self.rerun is not None:
            out["rerun"] = self.rerun.record()
        return out


def external_record(e: Evaluation) -> dict:
    return {"folder": e.folder, "version": e.version, "run_id": e.run_id, "test_digest": e.test_digest,
            **{k: names.finite(e.metrics.get(k)) for k in EXTERNAL}}


def _row(run: Run, experiment: str, version, params: bool = False) -> LeaderboardRow:
    m = {k: names.finite(v) for k, v in run.metrics.items()}
    seeds = {name: SeedStat(m.get(mean), m.get(sd)) for name in names.SEED_METRICS
             for mean, sd in [names.seed_names(name)] if m.get(mean) is not None}
    seed = run.params.get(SEEDS[0])
    # A job recorded before the config key tag gets it from its params, which give the same key, if they hold
    # its config (a job always logs its seed).
    key = run.tags.get(names.TAG_CONFIG_KEY) or (config_key(
        run.params, run.tags.get(names.TAG_DATA_DIGEST, ""), run.tags.get(names.TAG_TEST_DIGEST, ""))
        if seed is not None else None)
    return LeaderboardRow(
        run.id, run.name, experiment, run.tags.get(names.TAG_OVERRIDES, ""), run.status,
        run.tags.get(names.TAG_TEST_DIGEST),
        {k[len(names.BEST_HP_PREFIX):]: v for k, v in sorted(run.params.items()) if k.startswith(names.BEST_HP_PREFIX)},
        {name: m.get(name) for name in METRICS}, run.duration_s, version.number if version else None,
        version.aliases if version else (), m.get(names.SEED_REPEATS), seeds or None,
        run.tags.get(names.TAG_RERUN_OF), run.tags.get(names.TAG_JOB_KEY), seed, key, run.start_ms,
        dict(run.params) if params else None)


def leaderboard(experiment: str | None = None, metric: str = names.TEST_AUC, top: int | None = None,
                store=None, page_size: int = PAGE_SIZE, tolerance: float | None = None,
                params: bool = False) -> list[LeaderboardRow]:
    """Jobs ranked by `metric` in its direction; jobs without the metric come last. A rerun's row
    says whether it reproduced its original within `tolerance` (default: pneumo rerun's).
    `params`: each row also carries the job's params (its flat config, best_hp.*)."""
    higher = names.higher_is_better(metric)  # validates the name before any query
    if store is None:
        from pneumo.record.store import connect

        store = connect()
    exps = store.experiments(experiment)  # LookupError (NotFound) for an experiment the store does not hold
    if not exps or top == 0:
        return []
    # Unfinished jobs are listed, not hidden: the MLflow UI shows every run with its status, so a
    # leaderboard that dropped them would look like lost runs. Ranking them among the finished ones
    # put a FAILED job first (issue 13), so they come after the ranked ones, marked by status. With
    # `top`, the N best finished jobs are kept plus every unfinished one that scored among them.
    runs = store.jobs(list(exps), metric, higher, page_size, top)
    by_run = {}
    for v in store.versions():
        if v.run_id and (v.run_id not in by_run or v.number > by_run[v.run_id].number):
            by_run[v.run_id] = v
    evaluations: dict[str, list[Evaluation]] = {}
    for e in store.evaluations(list(exps), page_size):
        evaluations.setdefault(e.job_run_id, []).append(e)
    rows = [replace(_row(r, exps.get(r.experiment_id, ""), by_run.get(r.id), params),
                    external=tuple(evaluations.get(r.id, ()))) for r in runs]
    rows = _flag_reruns(store, rows, runs, list(exps), TOLERANCE if tolerance is None else tolerance)
    # the store already ordered them; re-sorting (stable) guards stores that order nan differently
    rows.sort(key=lambda r: (r.metric(metric) is None,
                             0 if r.metric(metric) is None else (-r.metric(metric) if higher else r.metric(metric))))
    ranked = [replace(r, rank=i) for i, r in enumerate((r for r in rows if r.status == RANKED_STATUS), 1)][:top]
    return ranked + [r for r in rows if r.status != RANKED_STATUS]


def _flag_reruns(store, rows: list[LeaderboardRow], runs: list[Run], exp_ids: list[str],
                 tolerance: float) -> list[LeaderboardRow]:
    """Each rerun's row with pneumo rerun's verdict against its original; one query for the originals not among
    the rows (another page, or left out by `top`)."""
    wanted = {r.rerun_of for r in rows if r.rerun_of}
    if not wanted:
        return rows
    found = {run.id: run.metrics for run in runs if run.id in wanted}
    found.update({run.id: run.metrics for run in store.runs_by_id(exp_ids, wanted - set(found))})
    by_id = {run.id: run.metrics for run in runs}
    return [replace(r, rerun=RerunCheck(r.rerun_of, differences(found[r.rerun_of], by_id[r.run_id], tolerance)
                                        if r.rerun_of in found else None)) if r.rerun_of else r for r in rows]
