"""The leaderboard by configuration: the seeds of one configuration grouped into one row (mean, SD and
CI over seeds of the ranking metric), each configuration judged against the best one by
pneumo.evaluation.seeds (Welch's t interval on the difference of means).

A configuration is the job's config without its seeds (the `pneumo.config_key` tag; from the params
for jobs recorded before it). Only FINISHED jobs count. A `pneumo rerun` job repeats a seed that is
already counted, and a job run again with restart=true replaces its earlier run: both are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pneumo.commands import output
from pneumo.commands.leaderboard import LeaderboardRow
from pneumo.config.keys import is_seed
from pneumo.evaluation import format, seeds
from pneumo.record import names
from pneumo.record.entities import FINISHED

BEST, TIED, WORSE, UNTESTED = "best", "tied", "worse", "untested"
VERDICTS = {BEST: "best", TIED: "tied with best", WORSE: "worse than best", UNTESTED: "1 seed: not tested"}


@dataclass(frozen=True)
class ConfigGroup:
    """One configuration: its seeds' jobs, the ranking metric's mean, SD and CI over them, and its verdict
    against the best configuration."""

    configuration: str  # the jobs' overrides without the seed
    config_key: str
    metric: str
    experiment: str
    n_seeds: int  # jobs with the metric
    seeds: tuple[str, ...]
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    means: dict[str, float]  # every shown metric's mean over the seeds
    jobs: tuple[str, ...]  # run ids
    spread: seeds.Spread | None
    rank: int | None = None
    difference: float | None = None  # from the best configuration's mean, with Welch's interval
    difference_low: float | None = None
    difference_high: float | None = None
    verdict: str | None = None  # BEST, TIED, WORSE, UNTESTED
    seed_sd_pooled: float | None = None  # the sweep's seed noise

    def record(self) -> dict:
        """The group as `pneumo compare --format json` prints it."""
        return {"rank": self.rank, "configuration": self.configuration, "config_key": self.config_key,
                "metric": self.metric, "experiment": self.experiment, "n_seeds": self.n_seeds,
                "seeds": list(self.seeds), "mean": self.mean, "sd": self.sd, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "difference": self.difference, "difference_low": self.difference_low,
                "difference_high": self.difference_high, "verdict": self.verdict, "means": self.means,
                "jobs": list(self.jobs), "seed_sd_pooled": self.seed_sd_pooled}


def _key(row: LeaderboardRow) -> str:
    return row.config_key or row.run_id  # a job without params or tag is a configuration of its own


def counted(rows: list[LeaderboardRow]) -> tuple[dict[str, list[LeaderboardRow]], dict[str, int]]:
    """configuration -> its counted jobs (first appearance order), and how many jobs each rule left out."""
    latest: dict[str, LeaderboardRow] = {}
    left = {"not finished": 0, "reruns": 0, "replaced by a restart": 0}
    for row in rows:
        if row.status != FINISHED:
            left["not finished"] += 1
        elif row.rerun_of:
            left["reruns"] += 1
        else:
            job = row.job_key or row.run_id
            if job in latest:
                left["replaced by a restart"] += 1
            if job not in latest or (row.start_time or 0) > (latest[job].start_time or 0):
                latest[job] = row
    by_config: dict[str, list[LeaderboardRow]] = {}
    for row in rows:
        if latest.get(row.job_key or row.run_id) is row:
            by_config.setdefault(_key(row), []).append(row)
    return by_config, left


def seeded(rows: list[LeaderboardRow]) -> bool:
    """Does some configuration among these jobs have two or more seeds (then the grouped view is the default)?"""
    return any(len(jobs) > 1 for jobs in counted(rows)[0].values())


def _name(row: LeaderboardRow) -> str:
    """The job's overrides without its seed: 'lever=cnn seed=2' -> 'lever=cnn'."""
    words = (row.run_name or "").split()
    return " ".join(w for w in words if not is_seed(w.partition("=")[0])) or "defaults"


def _seed_order(row: LeaderboardRow) -> tuple:
    seed = row.seed or ""
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def _group(key: str, jobs: list[LeaderboardRow], metric: str, confidence: float) -> ConfigGroup:
    jobs = sorted(jobs, key=_seed_order)
    values = [r.metric(metric) for r in jobs if r.metric(metric) is not None]
    spread = seeds.spread(values, confidence) if values else None
    return ConfigGroup(
        _name(jobs[0]), key, metric, ", ".join(sorted({r.experiment for r in jobs})), len(values),
        tuple(r.seed for r in jobs if r.metric(metric) is not None), spread and spread.mean, spread and spread.sd,
        spread and spread.low, spread and spread.high,
        {m: sum(v) / len(v) for m in names.SHOWN_METRICS if (v := [r.metric(m) for r in jobs if r.metric(m) is not None])},
        tuple(r.run_id for r in jobs), spread)


def group(rows: list[LeaderboardRow], metric: str, confidence: float) -> tuple[list[ConfigGroup], dict[str, int]]:
    """One record per configuration, ranked by its mean `metric`; and the jobs each rule left out."""
    higher = names.higher_is_better(metric)
    by_config, left = counted(rows)
    out = [_group(key, jobs, metric, confidence) for key, jobs in by_config.items()]
    out.sort(key=lambda g: (g.mean is None, 0 if g.mean is None else (-g.mean if higher else g.mean)))
    ranked = [g for g in out if g.mean is not None]
    best = next((g for g in ranked if g.n_seeds > 1), None)  # a lone seed cannot anchor a test
    noise = seeds.pooled_sd([g.spread for g in ranked])
    judged = {}
    for i, g in enumerate(ranked, 1):
        diff = seeds.versus(best.spread, g.spread, confidence) if best else None
        if g is best:
            judged[id(g)] = replace(g, rank=i, verdict=BEST)
        elif diff is None:
            judged[id(g)] = replace(g, rank=i, verdict=UNTESTED if g.n_seeds == 1 else None)
        else:
            judged[id(g)] = replace(g, rank=i, difference=diff.difference, difference_low=diff.low,
                                    difference_high=diff.high, verdict=TIED if diff.tied else WORSE)
    return [replace(judged.get(id(g), g), spread=None, seed_sd_pooled=noise) for g in out], left


def table_columns(metric: str, confidence: float) -> list[str]:
    pct = f"{confidence:.0%}"
    shown = [] if metric == names.TEST_AUC else [f"{names.TEST_AUC}\nmean"]
    return ["rank", "configuration", "seeds", f"{metric}\nmean ± sd", f"{pct} CI\nof the mean",
            f"difference from best\n[{pct} Welch interval]", "vs best", *shown]


def shared(groups: list[ConfigGroup]) -> list[str]:
    """The overrides every configuration has (TOY sizes, the sweep's fixed values): said once, not on each row."""
    words = [g.configuration.split() for g in groups]
    return [w for w in words[0] if all(w in other for other in words[1:])] if len(words) > 1 else []


def table_cells(g: ConfigGroup, metric: str, common: list[str] = ()) -> list[str]:
    sd = "" if g.sd is None else f" ± {format.number(g.sd)}"
    diff = "" if g.difference is None else (f"{g.difference:+.3f}\n"
                                           f"[{g.difference_low:+.3f}, {g.difference_high:+.3f}]")
    ci = "-" if g.ci_low is None else f"[{format.number(g.ci_low)}, {format.number(g.ci_high)}]"
    own = "\n".join(w for w in g.configuration.split() if w not in common) or "(the shared overrides)"
    return [str(g.rank or "-"), own, str(g.n_seeds),
            format.number(g.mean) + sd, ci,
            diff or "-", VERDICTS.get(g.verdict, "-"),
            *([] if metric == names.TEST_AUC else [format.number(g.means.get(names.TEST_AUC))])]


def flat(g: ConfigGroup) -> dict:
    """A CSV record: the group's numbers, its seeds and jobs joined by ';', every shown metric's mean."""
    out = {k: v for k, v in g.record().items() if k not in ("means", "seeds", "jobs")}
    out.update({f"{m}_mean": v for m, v in g.means.items()})
    return {**out, "seeds": ";".join(map(str, g.seeds)), "jobs": ";".join(g.jobs)}


def caption(groups: list[ConfigGroup], metric: str, confidence: float, left: dict[str, int]) -> str:
    lines = [f"every configuration: {' '.join(common)}" for common in [shared(groups)] if common]
    lines += [f"tied: Welch's t interval ({confidence:.0%}) on the difference of mean {metric} from the best "
             "configuration contains 0, so the two are not told apart by seed noise (each configuration against "
             "the best, no correction for multiple comparisons); a configuration with 1 seed is not tested"]
    if not any(g.n_seeds > 1 for g in groups):
        lines.append("no configuration has 2 seeds: nothing can be told from seed noise")
    elif groups and groups[0].seed_sd_pooled is not None:
        lines.append(f"seed noise: SD within a configuration, pooled: {format.number(groups[0].seed_sd_pooled)}")
    if any(left.values()):
        lines.append("left out: " + ", ".join(f"{n} {why}" for why, n in left.items() if n))
    return "\n".join(lines)


def render(groups: list[ConfigGroup], left: dict[str, int], metric: str, confidence: float, fmt: str,
           out=None) -> None:
    direction = "higher" if names.higher_is_better(metric) else "lower"
    common = shared(groups)
    output.write(groups, fmt, columns=table_columns(metric, confidence), cells=lambda g: table_cells(g, metric, common),
                 record=ConfigGroup.record, flat=flat, out=out,
                 title=f"pneumo configurations by mean {metric} over seeds ({direction} is better)",
                 caption=caption(groups, metric, confidence, left))
