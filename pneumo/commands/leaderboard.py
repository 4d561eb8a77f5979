"""The leaderboard: one row per job (parent run), read from MLflow with a constant number of queries.

One paged search_runs over the jobs, ordered by the metric in the store, one
paged search_model_versions and one get_registered_model (for the aliases,
which version search may leave empty) joined by run id. No per-run calls, so
a sweep of thousands of jobs costs a few pages (plus one query for the
originals of `pneumo rerun` jobs that are not among them). Works on any tracking store
(sqlite, a tracking server) through the public client API only.

`experiment=None` reads every active experiment: a job's row names its
experiment, and jobs of several sweeps rank together (the test digest column
says which are comparable).

Only FINISHED jobs are ranked (`rank` 1, 2, ...). Jobs that FAILED, were
KILLED or are still RUNNING follow them, in the metric's order, with `rank`
None and their status: their numbers exist but describe a job that did not
complete, and `pneumo promote` skips them.
"""

from __future__ import annotations

from pneumo.config.keys import SEEDS
from pneumo.data.subtypes import SUBTYPES
from pneumo.record import names
from pneumo.record.runs import config_key

_SUBTYPE_METRICS = tuple(names.subtype_metric(m, s) for m in names.SUBTYPE_METRICS for s in SUBTYPES)  # issue 19
PAGE_SIZE = 1000  # runs per search_runs call (MLflow caps one call at 50 000)
RANKED_STATUS = "FINISHED"  # the only run status promotion accepts


def _experiments(client, name: str | None) -> dict[str, str]:
    from pneumo.record.store import pages

    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise LookupError(f"no MLflow experiment named {name!r} at {client.tracking_uri}")
        return {exp.experiment_id: exp.name}
    return {e.experiment_id: e.name for e in pages(client.search_experiments, max_results=PAGE_SIZE)}


def _versions(client) -> tuple[dict[str, object], dict[str, list[str]]]:
    """run id -> its latest registered version; version -> aliases."""
    from mlflow.exceptions import MlflowException

    from pneumo.record.store import pages

    by_run = {}
    for mv in pages(client.search_model_versions, f"name='{names.MODEL_NAME}'"):
        run_id = mv.run_id or (mv.tags or {}).get(names.VERSION_TAG_RUN_ID)
        if run_id and (run_id not in by_run or int(mv.version) > int(by_run[run_id].version)):
            by_run[run_id] = mv
    aliases: dict[str, list[str]] = {}
    if by_run:
        try:
            for alias, version in client.get_registered_model(names.MODEL_NAME).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
        except MlflowException:
            pass
    return by_run, aliases


def _evaluations(client, exp_ids: list[str], page_size: int) -> dict[str, list[dict]]:
    """job run id -> its `pneumo evaluate` runs (latest per folder and version), one paged query."""
    from mlflow.entities import ViewType

    from pneumo.record.store import pages

    out: dict[tuple, dict] = {}
    for run in pages(client.search_runs, exp_ids,
                     f"tags.`{names.TAG_ROLE}` = '{names.ROLE_EVALUATION}' and attributes.status = 'FINISHED'",
                     run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                     order_by=["attributes.start_time DESC"]):
        tags = run.data.tags
        key = (tags.get(names.PARENT_RUN_ID), tags.get(names.TAG_FOLDER), tags.get(names.TAG_MODEL_VERSION))
        if key in out:  # an older evaluation of the same version on the same folder
            continue
        entry = {"folder": tags.get(names.TAG_FOLDER), "version": tags.get(names.TAG_MODEL_VERSION),
                 "run_id": run.info.run_id, "test_digest": tags.get(names.TAG_TEST_DIGEST)}
        for name in names.EXTERNAL_METRICS + _SUBTYPE_METRICS:
            for key_ in (name, *names.ci_names(name)):
                entry[key_] = names.finite(run.data.metrics.get(key_))
        out[key] = entry
    by_job: dict[str, list[dict]] = {}
    for (job, _, _), entry in out.items():
        by_job.setdefault(job, []).append(entry)
    return by_job


def _row(run, experiment: str, version, aliases: dict[str, list[str]], params: bool = False) -> dict:
    info, data = run.info, run.data
    m = {k: names.finite(v) for k, v in data.metrics.items()}
    row = {
        "rank": None,  # set by leaderboard(): FINISHED jobs only
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment": experiment,
        "overrides": data.tags.get(names.TAG_OVERRIDES, ""),
        "status": info.status,
        "test_digest": data.tags.get(names.TAG_TEST_DIGEST),
        "best_hp": {k[len(names.BEST_HP_PREFIX) :]: v for k, v in sorted(data.params.items())
                    if k.startswith(names.BEST_HP_PREFIX)},
        names.VAL_AUC: m.get(names.VAL_AUC),
        names.VAL_LOSS: m.get(names.VAL_LOSS),
    }
    for name in names.TEST_METRICS + _SUBTYPE_METRICS:
        row[name] = m.get(name)
        for bound in names.ci_names(name):
            row[bound] = m.get(bound)
    for name in (names.THRESHOLD, names.EPOCHS_TRAINED, names.TRIALS_COMPLETED, names.TRIALS_FAILED):
        row[name] = m.get(name)
    for name in names.HIGHER_IS_BETTER:  # every metric a job may be ranked by (an objective, model_val_auc)
        row.setdefault(name, m.get(name))
    row["duration_s"] = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    row["version"] = int(version.version) if version else None
    row["aliases"] = sorted(aliases.get(str(row["version"]), [])) if version else []
    # trainer.repeats: each metric's mean and SD over seeds (pneumo.search.repeats); `pneumo rerun`: what it reruns
    row[names.SEED_REPEATS] = m.get(names.SEED_REPEATS)
    row["seeds"] = {name: {"mean": m.get(mean), "sd": m.get(sd)} for name in names.SEED_METRICS
                    for mean, sd in [names.seed_names(name)] if m.get(mean) is not None} or None
    row["rerun_of"] = data.tags.get(names.TAG_RERUN_OF)
    # What `pneumo compare` groups seeds by (pneumo.commands.groups). A job recorded before the tag existed
    # gets it from its params, which give the same key, if they hold its config (a job always logs its seed).
    row["job_key"] = data.tags.get(names.TAG_JOB_KEY)
    row["seed"] = data.params.get(SEEDS[0])
    row["config_key"] = data.tags.get(names.TAG_CONFIG_KEY) or (config_key(
        data.params, data.tags.get(names.TAG_DATA_DIGEST, ""), data.tags.get(names.TAG_TEST_DIGEST, ""))
        if row["seed"] is not None else None)
    row["start_time"] = info.start_time
    if params:
        row["params"] = dict(data.params)
    return row


def leaderboard(experiment: str | None = None, metric: str = names.TEST_AUC, top: int | None = None,
                client=None, page_size: int = PAGE_SIZE, tolerance: float | None = None,
                params: bool = False) -> list[dict]:
    """Jobs ranked by `metric` in its direction; jobs without the metric come last. A rerun's row
    says whether it reproduced its original within `tolerance` (default: pneumo rerun's).
    `params`: each row also carries the job's params (its flat config, best_hp.*)."""
    higher = names.higher_is_better(metric)  # validates the name before any query
    if client is None:
        from pneumo.record.store import connect

        client = connect()
    from mlflow.entities import ViewType

    exps = _experiments(client, experiment)
    if not exps or top == 0:
        return []
    # Unfinished jobs are listed, not hidden: the MLflow UI shows every run with its status, so a
    # leaderboard that dropped them would look like lost runs. Ranking them among the finished ones
    # put a FAILED job first (issue 13), so they come after the ranked ones, marked by status. With
    # `top`, the N best finished jobs are kept plus every unfinished one that scored among them.
    from pneumo.record.store import pages

    runs, n_ranked = [], 0
    for run in pages(client.search_runs, list(exps), filter_string=f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'",
                     run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size if top is None else min(page_size, top),
                     order_by=[f"metrics.`{metric}` {'DESC' if higher else 'ASC'}", "attributes.start_time DESC"]):
        runs.append(run)
        n_ranked += run.info.status == RANKED_STATUS
        if top is not None and n_ranked >= top:
            break
    by_run, aliases = _versions(client)
    rows = [_row(r, exps.get(r.info.experiment_id, ""), by_run.get(r.info.run_id), aliases, params) for r in runs]
    # What `pneumo evaluate` measured on other folders, beside the job's own test split. Only shown:
    # nothing ranks or promotes on it.
    evaluations = _evaluations(client, list(exps), page_size)
    for row in rows:
        row["external"] = evaluations.get(row["run_id"], [])
    _flag_reruns(client, rows, runs, list(exps), tolerance)
    # the store already ordered them; re-sorting (stable) guards stores that order nan differently
    rows.sort(key=lambda r: (r[metric] is None, 0 if r[metric] is None else (-r[metric] if higher else r[metric])))
    ranked = [r for r in rows if r["status"] == RANKED_STATUS][:top]
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    return ranked + [r for r in rows if r["status"] != RANKED_STATUS]


def _flag_reruns(client, rows: list[dict], runs: list, exp_ids: list[str], tolerance: float | None) -> None:
    """row['rerun'] = pneumo rerun's verdict against the original, for each rerun; one query for
    originals not among the rows (another page, or left out by `top`)."""
    from pneumo.commands import reproduce

    wanted = {r["rerun_of"] for r in rows if r["rerun_of"]}
    if not wanted:
        return
    found = {run.info.run_id: run.data.metrics for run in runs if run.info.run_id in wanted}
    missing = sorted(wanted - set(found))
    if missing:
        from pneumo.record.store import pages

        quoted = ", ".join(f"'{i}'" for i in missing)
        found.update({run.info.run_id: run.data.metrics for run in pages(
            client.search_runs, exp_ids, f"attributes.run_id IN ({quoted})", max_results=len(missing))})
    by_id = {run.info.run_id: run.data.metrics for run in runs}
    for row in rows:
        if row["rerun_of"] in found:
            verdict = reproduce.differences(found[row["rerun_of"]], by_id[row["run_id"]],
                                         reproduce.TOLERANCE if tolerance is None else tolerance)
            row["rerun"] = {"of": row["rerun_of"], **verdict}
        elif row["rerun_of"]:
            row["rerun"] = {"of": row["rerun_of"], "differs": None, "missing": True}
