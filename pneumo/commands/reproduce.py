"""`pneumo rerun RUN_ID`: run a finished job again from its own record, and say whether it reproduced.

What a rerun takes from the original run: the Hydra config its overrides were applied to
(tag `pneumo.config`), the overrides (`config/overrides.txt`), and, to check against,
the resolved config (`config/config.yaml`), the data and split digests and the versions
and device it ran on (pneumo.record.provenance). Before anything trains it refuses (exit 2) when
the rerun could not be the same job:

- the overrides no longer compose the logged config (a default in conf/ or sweeps/ changed
  since, or a key was removed): the keys are named, with the commit the job ran at;
- the data or the split differ (other files, or the same files split otherwise);
- the run is not a FINISHED job, was a distributed search, or its overrides hold redacted values.

Versions, device, commit and options added since (at their defaults) are warnings: the
rerun then measures what they change. The rerun goes into the same experiment as a new job
run tagged `pneumo.rerun_of`, with restart=true (the job key would skip a finished job) and
no model registered (the original's version stands). Its test and validation numbers are
then compared with the original's (`differences`); `pneumo compare` shows the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pneumo.config import keys, paths
from pneumo.evaluation import format
from pneumo.record import names, provenance
from pneumo.record.entities import FINISHED, Change, RecordError, Run

# A rerun reproduces when every compared number is within this of the original's. pneumo
# prints and the README quotes 3 decimals: below half a unit of the third, no number a user
# reads moves (bar rounding at a boundary). Training noise is far above it: one seed moves a
# demo job's test AUC by 0.01-0.1. On one machine and one set of versions a CPU job
# reproduces exactly (difference 0); the tolerance is for what a user would see.
TOLERANCE = 5e-4
COMPARED = (names.VAL_AUC, names.THRESHOLD, *names.TEST_METRICS)
# Keys that say where things go, not what is computed (the data digests check what data.* points at).
SET_BY_RERUN = ("restart", "rerun_of", "tracking.register")


class Refused(Exception):
    """The rerun could not be the same job: the message says why and what to do."""


@dataclass(frozen=True)
class Verdict:
    """A rerun's numbers against its original's: whether any compared metric moved past the tolerance."""

    differs: bool
    max_diff: float
    tolerance: float
    diffs: dict[str, list]  # {metric: [original's, rerun's]} past the tolerance


@dataclass(frozen=True)
class Plan:
    run: Run  # the original run
    config_dir: Path
    config_name: str
    overrides: tuple[str, ...]
    cfg: object  # the composed config (DictConfig)
    warnings: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()  # versions, device, commit: what differs from the original's record

    @property
    def run_id(self) -> str:
        return self.run.id

    def argv(self) -> list[str]:
        """The `pneumo train` arguments of the rerun."""
        return ["--config-dir", str(self.config_dir), "--config-name", self.config_name, *self.overrides,
                "restart=true", f"rerun_of={self.run_id}", "tracking.register=false"]


def plan(store, run_id: str, extra: list[str]) -> Plan:
    """What the rerun of `run_id` runs, or Refused; `extra` may only say where things go."""
    try:
        run = store.run(run_id)
    except RecordError:
        raise Refused(f"no run {run_id} in {store.uri} (MLFLOW_TRACKING_URI picks the store)") from None
    tags = run.tags
    if run.role != names.ROLE_JOB:
        raise Refused(f"run {run_id} is not a job" + (f"; rerun its job, run {run.parent_id}" if run.parent_id else ""))
    if run.status != FINISHED:
        raise Refused(f"run {run_id} ended {run.status}: resume it with the command that started it "
                      f"(its completed trials are kept), or rerun a {FINISHED} job")
    where_not = [o for o in extra if keys.part_of_job(_key(o))]
    if where_not:
        raise Refused(f"a rerun runs the job as logged; only where things go or how it is driven may be added "
                      f"({', '.join(keys.NOT_PART_OF_JOB)}), not: {' '.join(where_not)}")
    logged = [line for line in _text(store, run_id, names.OVERRIDES_ARTIFACT).splitlines() if line.strip()]
    if any("***" in o for o in logged):
        raise Refused(f"run {run_id}'s overrides hold redacted values ({' '.join(o for o in logged if '***' in o)}): "
                      "run it again by hand with them")
    extra_keys = {_key(o) for o in extra}
    overrides = [o for o in logged if _key(o) not in (*SET_BY_RERUN, *extra_keys)] + list(extra)
    config_dir, config_name = _source(tags)
    cfg = _compose(config_dir, config_name, [o for o in overrides if not _key(o).startswith("hydra.")])
    if cfg.distributed.role:
        raise Refused(f"run {run_id} was a distributed search's chief: rerun its chief and workers with their commands")
    changes = tuple(provenance.changes(tags))
    warnings = (*_config_changes(store, run, cfg), *(f"{c.tag}: {c.was} -> {c.now}" for c in changes))
    return Plan(run, config_dir, config_name, tuple(overrides), cfg, warnings, changes)


def check_data(plan: Plan) -> None:
    """Refuse when the data or the split the rerun would load are not the original's."""
    from pneumo import data
    from pneumo.record import provenance

    try:
        splits = data.load(plan.cfg.data, plan.cfg.trainer.image_size)
    except data.DataError as e:
        raise Refused(f"the data of run {plan.run_id} cannot be loaded: {e}") from None
    now = {names.TAG_DATA_DIGEST: splits.digest, names.TAG_TEST_DIGEST: splits.test_digest,
           names.TAG_SPLIT_DIGEST: provenance.split_digest(splits)}
    tags = plan.run.tags
    changed = [f"{k} {tags[k][:12]}... -> {v[:12]}..." for k, v in now.items() if k in tags and tags[k] != v]
    if changed:
        raise Refused(f"the data differ from run {plan.run_id}'s ({'; '.join(changed)}): other files, or the same "
                      "files split otherwise; a rerun would test something else")


def differences(original: dict, rerun: dict, tolerance: float = TOLERANCE) -> Verdict:
    """Compare two runs' metrics: whether they differ, by how much at most, and which differ past `tolerance`.

    A metric one run has and the other lacks (undefined on its test split) differs too.
    """
    diffs, largest = {}, 0.0
    for name in COMPARED:
        a, b = names.finite(original.get(name)), names.finite(rerun.get(name))
        if a is None and b is None:
            continue
        gap = float("inf") if a is None or b is None else abs(a - b)
        largest = max(largest, gap)
        if gap > tolerance:
            diffs[name] = [a, b]
    return Verdict(bool(diffs), largest, tolerance, diffs)


def describe(verdict: Verdict, original_id: str, rerun_id: str, changes: tuple[Change, ...] = ()) -> str:
    """The verdict in a few lines, as `pneumo rerun` prints it; `changes` as provenance.changes gives them."""
    head = f"rerun {rerun_id} of {original_id}"
    if not verdict.differs:
        return (f"{head}: reproduced: every compared metric ({', '.join(COMPARED)}) within {verdict.tolerance:g} "
                f"(largest difference {verdict.max_diff:.3g})")
    lines = [f"{head}: DIFFERS beyond {verdict.tolerance:g}:"]
    for name, (a, b) in verdict.diffs.items():
        lines.append(f"  {name}: {format.number(a, 4)} -> {format.number(b, 4)}")
    decisive = {c.tag for c in changes if c.tag not in (names.TAG_GIT_COMMIT, names.TAG_GIT_DIRTY)}
    if decisive:
        lines.append(f"  it ran on other {', '.join(sorted(decisive))} (the warnings above)")
    elif changes:
        lines.append("  same versions and device, other code: the commit changed what the job computes")
    else:
        lines.append("  nothing recorded changed: the job does not run deterministically here "
                     "(try trainer.deterministic=true)")
    return "\n".join(lines)


# -- helpers ---------------------------------------------------------------------


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _text(store, run_id: str, path: str) -> str:
    try:
        return store.text(run_id, path)
    except Exception as e:  # noqa: BLE001 -- a run logged without it, or an artifact store gone
        raise Refused(f"run {run_id} has no readable {path} ({type(e).__name__}): it cannot be rerun from its record") \
            from None


def _source(tags: dict) -> tuple[Path, str]:
    """The config folder and name the job was composed from. Runs older than the `pneumo.config` tag:
    the sweep named like its experiment, else conf/config (the config check catches a wrong guess)."""
    recorded = tags.get(names.TAG_CONFIG)
    if recorded:
        folder, _, name = recorded.rpartition("/")
        folder = Path(folder) if Path(folder).is_absolute() else paths.ROOT / folder
    elif (paths.SWEEPS_DIR / f"{tags.get(names.TAG_SWEEP)}.yaml").exists():
        folder, name = paths.SWEEPS_DIR, tags[names.TAG_SWEEP]
    else:
        folder, name = paths.CONF_DIR, "config"
    if not (folder / f"{name}.yaml").exists():
        raise Refused(f"the job's config {folder / name}.yaml is not in this checkout")
    return folder, name


def _compose(config_dir: Path, name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from pneumo.config import schema

    schema.register()
    try:
        # conf/ stays on the search path, as under `pneumo train --config-dir`: sweeps build on conf/config
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            return compose(name, overrides=[*overrides, f"hydra.searchpath=[{paths.CONF_DIR.resolve().as_uri()}]"])
    except HydraException as e:
        raise Refused(f"the job's overrides no longer compose ({str(e).splitlines()[0]}): the code changed since; "
                      "rerun it at the commit it ran at") from None


def _config_changes(store, run: Run, cfg) -> list[str]:
    """Refuse a config that differs from the logged one; return the keys added since, as warnings."""
    import yaml
    from omegaconf import OmegaConf

    from pneumo.record.params import flatten, redacted

    logged = flatten(yaml.safe_load(_text(store, run.id, names.CONFIG_ARTIFACT)) or {})
    now = redacted(OmegaConf.to_container(cfg, resolve=True))
    def keep(flat):
        return {k for k in flat if keys.part_of_job(k)}

    changed = sorted(k for k in keep(logged) & keep(now) if logged[k] != now[k])
    removed = sorted(keep(logged) - keep(now))
    if changed or removed:
        commit = run.tags.get(names.TAG_GIT_COMMIT, "")
        detail = [f"{k}: {logged[k]} -> {now[k]}" for k in changed] + [f"{k}: no longer a key" for k in removed]
        raise Refused(f"run {run.id}'s overrides now compose another config ({'; '.join(detail)}): "
                      "conf/ or sweeps/ changed since" + (f"; rerun it at commit {commit[:12]}" if commit else ""))
    return [f"{k}={now[k]}: a key added since run {run.id}, at its default"
            for k in sorted(keep(now) - keep(logged))]
