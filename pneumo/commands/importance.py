"""`pneumo compare --importance`: which config keys and best_hp.* hyperparameters explain a metric
across a sweep's jobs (pneumo.evaluation.importance), read from the jobs' MLflow params.

The jobs are the ones the grouped leaderboard counts (FINISHED, reruns and restarted runs left out)
that have the metric. A job's keys are its params that decide training (pneumo.config.keys) without
its seeds: the seeds are the noise the keys must beat, and the pooled SD over seeds is printed beside.
"""

from __future__ import annotations

import json
import sys

from pneumo.commands import groups, leaderboard, output
from pneumo.config.keys import is_seed, part_of_job
from pneumo.evaluation import format
from pneumo.evaluation import importance as forest


def explain(experiment: str | None, metric: str, confidence: float, resamples: int, store=None) -> dict:
    """The report `pneumo compare --importance` prints (as JSON: this record)."""
    rows = leaderboard.leaderboard(experiment, metric, store=store, params=True)
    counted = [r for jobs in groups.counted(rows)[0].values() for r in jobs if r.metric(metric) is not None]
    keys = [{k: v for k, v in r.params.items() if part_of_job(k) and not is_seed(k)} for r in counted]
    report = forest.importance(keys, [r.metric(metric) for r in counted], confidence=confidence, resamples=resamples)
    found, _ = groups.group(rows, metric, confidence)
    return {
        "experiment": experiment, "metric": metric, "confidence": confidence, "jobs": report.jobs,
        "resamples": report.resamples, "reason": report.reason, "constant_keys": report.constant,
        "seed_sd_pooled": found[0].seed_sd_pooled if found else None,
        "error": report.error, "baseline_error": report.baseline,
        "importances": [{"key": i.keys[0], "keys": list(i.keys), "values": i.values, "mean": i.mean, "low": i.low,
                         "high": i.high, "clear_of_zero": i.low > 0} for i in report.importances],
    }


def _name(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]}\n(+{len(keys) - 1} keys that change with it)"


def render(result: dict, fmt: str, out=None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        json.dump(result, out, indent=2)
        out.write("\n")
        return
    if fmt == "csv":  # a record per key; the run's own numbers are in the JSON
        output.write(result["importances"], fmt, columns=[], cells=list, flat=lambda i: {**i, "keys": ";".join(i["keys"])},
                     out=out)
        return
    pct = f"{result['confidence']:.0%}"
    where = f"{result['experiment'] or 'every experiment'}, {result['jobs']} jobs"
    if result["reason"]:
        print(f"which keys explain {result['metric']} ({where}): nothing to say: {result['reason']}", file=out)
        return
    notes = [f"importance: how much the forest's mean absolute error in {result['metric']} grows on the jobs a "
             f"resample left out when the key is shuffled; mean and {pct} interval over {result['resamples']} "
             "bootstrap resamples of the jobs. An interval reaching 0: not told from noise.",
             f"the forest's error on left-out jobs {format.number(result['error'])}, predicting the mean "
             f"{format.number(result['baseline_error'])}; {result['constant_keys']} keys constant, left out"]
    if result["seed_sd_pooled"] is not None:
        notes.append(f"seed noise: SD within a configuration, pooled: {format.number(result['seed_sd_pooled'])}")
    output.write(result["importances"], "table", columns=["key", "values", "importance", f"{pct} interval", "verdict"],
                 cells=lambda i: [_name(i["keys"]), str(i["values"]), format.number(i["mean"], 4),
                                  f"[{format.number(i['low'], 4)}, {format.number(i['high'], 4)}]",
                                  "matters" if i["clear_of_zero"] else "not told from noise"],
                 title=f"which keys explain {result['metric']} ({where})", caption="\n".join(notes), out=out)
