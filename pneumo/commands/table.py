"""The leaderboard as a person reads it: a rich table (one row per job, CIs under their values), or
flat records for CSV and JSON (pneumo.commands.output)."""

from __future__ import annotations

from pathlib import Path

from pneumo.commands import output
from pneumo.commands.leaderboard import LeaderboardRow
from pneumo.data.subtypes import SUBTYPES
from pneumo.evaluation import format
from pneumo.record import names
from pneumo.record.entities import Evaluation


def _with_ci(row: LeaderboardRow, name: str) -> str:
    return format.metric(row.metrics, name, sep="\n")  # its own line: 6+ metric columns fit 120 terminal columns


def _hp(best_hp: dict) -> str:
    """Compact 'blocks=3 learning_rate=0.001': the last key part unless two would clash."""
    short = [k.rsplit(".", 1)[-1] for k in best_hp]
    shown = [s if short.count(s) == 1 else k for s, k in zip(short, best_hp)]
    return "\n".join(f"{n}={_short(v)}" for n, v in zip(shown, best_hp.values()))


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
SUBTYPE_COLUMN = "sensitivity\nby subtype"  # where the test films' names carry bacteria / virus


def table_columns(metric: str, rows: list[LeaderboardRow] = ()) -> list[str]:
    """The table's columns; the seeds and rerun columns only when some row has them."""
    shown = ([] if metric == names.VAL_AUC else [metric]) + [m for m in names.SHOWN_METRICS if m != metric]
    extra = [c for c, there in ((SEEDS_COLUMN, lambda r: r.seeds), (RERUN_COLUMN, lambda r: r.rerun))
             if any(there(r) for r in rows)]
    if any(logged_subtypes(r) for r in rows):
        extra.insert(0, SUBTYPE_COLUMN)
    return ["rank", "job", "best hyperparameters", names.VAL_AUC, *shown, "threshold", "epochs", "duration", "version",
            "aliases", "pneumo evaluate", *extra]


def table_cells(row: LeaderboardRow, metric: str, columns: list[str] = ()) -> list[str]:
    shown = table_columns(metric)[4:-6]
    # The run name is the job's overrides (what it trains); one per line keeps the column narrow.
    job = (row.run_name or row.run_id[:8]).replace(" ", "\n")
    rank = str(row.rank) if row.rank is not None else row.status  # FAILED, KILLED, RUNNING
    epochs = row.metric(names.EPOCHS_TRAINED)
    return [
        rank, job, _hp(row.best_hp), format.number(row.metric(names.VAL_AUC)),
        *(_with_ci(row, m) if m in names.TEST_METRICS else format.number(row.metric(m)) for m in shown),
        format.number(row.metric(names.THRESHOLD)), "-" if epochs is None else str(int(epochs)),
        _duration(row.duration_s), "-" if row.version is None else str(row.version),
        ", ".join(row.aliases), "\n".join(_external(e) for e in row.external),
        *([_subtypes(row)] if SUBTYPE_COLUMN in columns else []),
        *([_seeds(row, metric)] if SEEDS_COLUMN in columns else []),
        *([_rerun(row)] if RERUN_COLUMN in columns else []),
    ]


def logged_subtypes(row: LeaderboardRow) -> list[str]:
    return [s for s in SUBTYPES if row.metric(names.subtype_metric(names.TEST_SENSITIVITY, s)) is not None]


def _subtypes(row: LeaderboardRow) -> str:
    """'bacteria 0.950 [0.90, 0.98]' a line per subtype the job's test names carry."""
    return "\n".join(f"{s} {format.metric(row.metrics, names.subtype_metric(names.TEST_SENSITIVITY, s))}"
                     for s in logged_subtypes(row)) or "-"


def _seeds(row: LeaderboardRow, metric: str) -> str:
    """'test_auc 0.786 ± 0.021' for the ranking metric (and test AUC), then the number of seeds."""
    seeds = row.seeds or {}
    metrics = [n for n in dict.fromkeys((metric, names.TEST_AUC)) if n in seeds]
    lines = [f"{n} {format.number(seeds[n].mean)} ± {format.number(seeds[n].sd)}" for n in metrics]
    return "\n".join([*lines, f"{int(row.seed_repeats)} seeds"]) if lines else "-"


def _rerun(row: LeaderboardRow) -> str:
    r = row.rerun
    if not r:
        return ""
    if r.verdict is None:
        return f"of {r.of[:8]}\n(original not found)"
    if not r.verdict.differs:
        return f"of {r.of[:8]}\nreproduced"
    diffs = r.verdict.diffs
    name, (a, b) = max(diffs.items(), key=lambda kv: abs((kv[1][0] or 0) - (kv[1][1] or 0)))
    return f"of {r.of[:8]}\nDIFFERS\n{name} {format.number(a)} -> {format.number(b)}" + (
        f"\n(+{len(diffs) - 1} more)" if len(diffs) > 1 else "")


def _external(e: Evaluation) -> str:
    name = Path(e.folder or "?").name
    return (f"{name} (v{e.version}): auc {format.metric(e.metrics, names.TEST_AUC)}\n"
            f"sens {format.number(e.metrics.get(names.TEST_SENSITIVITY))} "
            f"spec {format.number(e.metrics.get(names.TEST_SPECIFICITY))}")


def flat(row: LeaderboardRow) -> dict:
    """A CSV record: best_hp.* back as columns, aliases joined, evaluations as external.<folder>.<metric>."""
    out = {k: v for k, v in row.record().items() if k not in ("best_hp", "aliases", "external", "seeds", "rerun")}
    for name, stat in (row.seeds or {}).items():
        out.update(zip(names.seed_names(name), (stat.mean, stat.sd)))
    if row.rerun:
        out.update(rerun_differs=row.rerun.verdict.differs if row.rerun.verdict else None,
                   rerun_max_diff=row.rerun.verdict.max_diff if row.rerun.verdict else None)
    out.update({f"{names.BEST_HP_PREFIX}{k}": v for k, v in row.best_hp.items()})
    for e in row.external:
        prefix = f"external.{Path(e.folder or '?').name}.v{e.version}."
        out.update({prefix + k: names.finite(e.metrics.get(k)) for k in names.EXTERNAL_METRICS + tuple(
            b for k in names.EXTERNAL_METRICS for b in names.ci_names(k))})
    out["aliases"] = ";".join(row.aliases)
    return out


def record(row: LeaderboardRow) -> dict:
    return row.record()


def render(rows: list[LeaderboardRow], metric: str, fmt: str, out=None) -> None:
    unranked = sum(r.rank is None for r in rows)
    columns = table_columns(metric, rows)
    output.write(rows, fmt, columns=columns, cells=lambda r: table_cells(r, metric, columns), record=record,
                 flat=flat, out=out,
                 title=f"pneumo jobs by {metric} ({'higher' if names.higher_is_better(metric) else 'lower'} is better)",
                 caption=f"{unranked} job(s) not FINISHED, listed after the ranked ones by status: not ranked, "
                         "promote skips them" if unranked else None)
