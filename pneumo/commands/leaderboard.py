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

from pathlib import Path

from pneumo.record import names as M
from pneumo.commands import output

PAGE_SIZE = 1000  # runs per search_runs call (MLflow caps one call at 50 000)
RANKED_STATUS = "FINISHED"  # the only run status promotion accepts
SHOWN_METRICS = (M.TEST_AUC, M.TEST_AUPRC, M.TEST_SENSITIVITY, M.TEST_SPECIFICITY, M.TEST_F1, M.TEST_BRIER)


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
    for mv in pages(client.search_model_versions, f"name='{M.MODEL_NAME}'"):
        run_id = mv.run_id or (mv.tags or {}).get(M.VERSION_TAG_RUN_ID)
        if run_id and (run_id not in by_run or int(mv.version) > int(by_run[run_id].version)):
            by_run[run_id] = mv
    aliases: dict[str, list[str]] = {}
    if by_run:
        try:
            for alias, version in client.get_registered_model(M.MODEL_NAME).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
        except MlflowException:
            pass
    return by_run, aliases


EXTERNAL_METRICS = (M.TEST_AUC, M.TEST_ACCURACY, M.TEST_SENSITIVITY, M.TEST_SPECIFICITY)


def _evaluations(client, exp_ids: list[str], page_size: int) -> dict[str, list[dict]]:
    """job run id -> its `pneumo evaluate` runs (latest per folder and version), one paged query."""
    from mlflow.entities import ViewType

    from pneumo.release.score import TAG_FOLDER, TAG_MODEL_VERSION
    from pneumo.record.store import pages

    out: dict[tuple, dict] = {}
    for run in pages(client.search_runs, exp_ids,
                     f"tags.`{M.TAG_ROLE}` = 'evaluation' and attributes.status = 'FINISHED'",
                     run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size,
                     order_by=["attributes.start_time DESC"]):
        tags = run.data.tags
        key = (tags.get("mlflow.parentRunId"), tags.get(TAG_FOLDER), tags.get(TAG_MODEL_VERSION))
        if key in out:  # an older evaluation of the same version on the same folder
            continue
        entry = {"folder": tags.get(TAG_FOLDER), "version": tags.get(TAG_MODEL_VERSION),
                 "run_id": run.info.run_id, "test_digest": tags.get(M.TAG_TEST_DIGEST)}
        for name in EXTERNAL_METRICS:
            for key_ in (name, *M.ci_names(name)):
                entry[key_] = M.finite(run.data.metrics.get(key_))
        out[key] = entry
    by_job: dict[str, list[dict]] = {}
    for (job, _, _), entry in out.items():
        by_job.setdefault(job, []).append(entry)
    return by_job


def _row(run, experiment: str, version, aliases: dict[str, list[str]]) -> dict:
    info, data = run.info, run.data
    m = {k: M.finite(v) for k, v in data.metrics.items()}
    row = {
        "rank": None,  # set by leaderboard(): FINISHED jobs only
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment": experiment,
        "overrides": data.tags.get(M.TAG_OVERRIDES, ""),
        "status": info.status,
        "test_digest": data.tags.get(M.TAG_TEST_DIGEST),
        "best_hp": {k[len(M.BEST_HP_PREFIX) :]: v for k, v in sorted(data.params.items())
                    if k.startswith(M.BEST_HP_PREFIX)},
        M.VAL_AUC: m.get(M.VAL_AUC),
        M.VAL_LOSS: m.get(M.VAL_LOSS),
    }
    for name in M.TEST_METRICS:
        row[name] = m.get(name)
        for bound in M.ci_names(name):
            row[bound] = m.get(bound)
    for name in (M.THRESHOLD, M.EPOCHS_TRAINED, M.TRIALS_COMPLETED, M.TRIALS_FAILED):
        row[name] = m.get(name)
    row["duration_s"] = (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    row["version"] = int(version.version) if version else None
    row["aliases"] = sorted(aliases.get(str(row["version"]), [])) if version else []
    # trainer.repeats: each metric's mean and SD over seeds (pneumo.search.repeats); `pneumo rerun`: what it reruns
    row[M.SEED_REPEATS] = m.get(M.SEED_REPEATS)
    row["seeds"] = {name: {"mean": m.get(mean), "sd": m.get(sd)} for name in M.SEED_METRICS
                    for mean, sd in [M.seed_names(name)] if m.get(mean) is not None} or None
    row["rerun_of"] = data.tags.get(M.TAG_RERUN_OF)
    return row


def leaderboard(experiment: str | None = None, metric: str = M.TEST_AUC, top: int | None = None,
                client=None, page_size: int = PAGE_SIZE, tolerance: float | None = None) -> list[dict]:
    """Jobs ranked by `metric` in its direction; jobs without the metric come last. A rerun's row
    says whether it reproduced its original within `tolerance` (default: pneumo rerun's)."""
    higher = M.higher_is_better(metric)  # validates the name before any query
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
    for run in pages(client.search_runs, list(exps), filter_string=f"tags.`{M.TAG_ROLE}` = 'job'",
                     run_view_type=ViewType.ACTIVE_ONLY, max_results=page_size if top is None else min(page_size, top),
                     order_by=[f"metrics.`{metric}` {'DESC' if higher else 'ASC'}", "attributes.start_time DESC"]):
        runs.append(run)
        n_ranked += run.info.status == RANKED_STATUS
        if top is not None and n_ranked >= top:
            break
    by_run, aliases = _versions(client)
    rows = [_row(r, exps.get(r.info.experiment_id, ""), by_run.get(r.info.run_id), aliases) for r in runs]
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
    from pneumo.commands import rerun

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
            verdict = rerun.differences(found[row["rerun_of"]], by_id[row["run_id"]],
                                         rerun.TOLERANCE if tolerance is None else tolerance)
            row["rerun"] = {"of": row["rerun_of"], **verdict}
        elif row["rerun_of"]:
            row["rerun"] = {"of": row["rerun_of"], "differs": None, "missing": True}


# -- presentation -----------------------------------------------------------------


def _fmt(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_ci(row: dict, name: str) -> str:
    low, high = (row.get(b) for b in M.ci_names(name))
    if row.get(name) is None:
        return "-"
    # the interval on its own line keeps 6+ metric columns readable in 120 terminal columns
    return _fmt(row[name]) + (f"\n[{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else "")


def _hp(best_hp: dict) -> str:
    """Compact 'blocks=3 learning_rate=0.001': the last key part unless two would clash."""
    short = [k.rsplit(".", 1)[-1] for k in best_hp]
    names = [s if short.count(s) == 1 else k for s, k in zip(short, best_hp)]
    return "\n".join(f"{n}={_short(v)}" for n, v in zip(names, best_hp.values()))


def _short(value: str) -> str:
    """0.30000000000000004 -> 0.3, 0.000306927 -> 0.000307: params are strings of floats."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(value) if number.is_integer() and "." not in str(value) else f"{number:.3g}"


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{s:02d}s"


SEEDS_COLUMN, RERUN_COLUMN = "over seeds\nmean ± sd", "rerun"


def table_columns(metric: str, rows: list[dict] = ()) -> list[str]:
    """The table's columns; the seeds and rerun columns only when some row has them."""
    shown = ([] if metric == M.VAL_AUC else [metric]) + [m for m in SHOWN_METRICS if m != metric]
    extra = [c for c, key in ((SEEDS_COLUMN, "seeds"), (RERUN_COLUMN, "rerun")) if any(r.get(key) for r in rows)]
    return ["rank", "job", "best hyperparameters", M.VAL_AUC, *shown, "threshold", "epochs", "duration", "version",
            "aliases", "pneumo evaluate", *extra]


def table_cells(row: dict, metric: str, columns: list[str] = ()) -> list[str]:
    shown = table_columns(metric)[4:-6]
    # The run name is the job's overrides (what it trains); one per line keeps the column narrow.
    job = (row["run_name"] or row["run_id"][:8]).replace(" ", "\n")
    rank = str(row["rank"]) if row["rank"] is not None else row["status"]  # FAILED, KILLED, RUNNING
    return [
        rank, job, _hp(row["best_hp"]), _fmt(row[M.VAL_AUC]),
        *(_with_ci(row, m) if m in M.TEST_METRICS else _fmt(row.get(m)) for m in shown),
        _fmt(row[M.THRESHOLD]), "-" if row[M.EPOCHS_TRAINED] is None else str(int(row[M.EPOCHS_TRAINED])),
        _duration(row["duration_s"]), "-" if row["version"] is None else str(row["version"]),
        ", ".join(row["aliases"]), "\n".join(_external(e) for e in row.get("external", [])),
        *([_seeds(row, metric)] if SEEDS_COLUMN in columns else []),
        *([_rerun(row)] if RERUN_COLUMN in columns else []),
    ]


def _seeds(row: dict, metric: str) -> str:
    """'test_auc 0.786 ± 0.021' for the ranking metric (and test AUC), then the number of seeds."""
    seeds = row.get("seeds") or {}
    names = [n for n in dict.fromkeys((metric, M.TEST_AUC)) if n in seeds]
    lines = [f"{n} {_fmt(seeds[n]['mean'])} ± {_fmt(seeds[n]['sd'])}" for n in names]
    return "\n".join([*lines, f"{int(row[M.SEED_REPEATS])} seeds"]) if lines else "-"


def _rerun(row: dict) -> str:
    r = row.get("rerun")
    if not r:
        return ""
    if r.get("missing"):
        return f"of {r['of'][:8]}\n(original not found)"
    if not r["differs"]:
        return f"of {r['of'][:8]}\nreproduced"
    name, (a, b) = max(r["diffs"].items(), key=lambda kv: abs((kv[1][0] or 0) - (kv[1][1] or 0)))
    return f"of {r['of'][:8]}\nDIFFERS\n{name} {_fmt(a)} -> {_fmt(b)}" + (
        f"\n(+{len(r['diffs']) - 1} more)" if len(r["diffs"]) > 1 else "")


def _external(e: dict) -> str:
    name = Path(e["folder"] or "?").name
    return (f"{name} (v{e['version']}): auc {_with_ci(e, M.TEST_AUC).replace(chr(10), ' ')}\n"
            f"sens {_fmt(e[M.TEST_SENSITIVITY])} spec {_fmt(e[M.TEST_SPECIFICITY])}")


def flat(row: dict) -> dict:
    """A CSV record: best_hp.* back as columns, aliases joined, evaluations as external.<folder>.<metric>."""
    out = {k: v for k, v in row.items() if k not in ("best_hp", "aliases", "external", "seeds", "rerun")}
    for name, stat in (row.get("seeds") or {}).items():
        out.update(zip(M.seed_names(name), (stat["mean"], stat["sd"])))
    if row.get("rerun"):
        out.update(rerun_differs=row["rerun"]["differs"], rerun_max_diff=row["rerun"].get("max_diff"))
    out.update({f"{M.BEST_HP_PREFIX}{k}": v for k, v in row["best_hp"].items()})
    for e in row.get("external", []):
        prefix = f"external.{Path(e['folder'] or '?').name}.v{e['version']}."
        out.update({prefix + k: e[k] for k in EXTERNAL_METRICS + tuple(b for k in EXTERNAL_METRICS
                                                                        for b in M.ci_names(k))})
    out["aliases"] = ";".join(row["aliases"])
    return out


def render(rows: list[dict], metric: str, fmt: str, out=None) -> None:
    unranked = sum(r["rank"] is None for r in rows)
    columns = table_columns(metric, rows)
    output.write(rows, fmt, columns=columns, cells=lambda r: table_cells(r, metric, columns), flat=flat, out=out,
                 title=f"pneumo jobs by {metric} ({'higher' if M.higher_is_better(metric) else 'lower'} is better)",
                 caption=f"{unranked} job(s) not FINISHED, listed after the ranked ones by status: not ranked, "
                         "promote skips them" if unranked else None)
