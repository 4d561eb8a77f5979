"""Hydra callback: the start-up check (pneumo.config.checks) of every job's config, before anything runs.

`pneumo train` checks its one job in `on_run_start`, before Hydra creates the job's output folder; a
multirun checks every job of its grid in `on_multirun_start`, before the first job trains. A config
error ends the command there with exit status 2 and one `pneumo:` line naming the key: nothing was
trained, nothing recorded. (A job's own `train` checks again: tests call it directly, and launchers
that run jobs elsewhere get no `on_multirun_start` of their own.)

The grid is expanded as Hydra's basic sweeper expands it (its `split_arguments`), and each point is
composed with Hydra's compose API, inside the running app. Another sweeper's grid (Optuna...) is left
to each job's own check.
"""

from __future__ import annotations

import copy
import sys

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pneumo.config import checks
from pneumo.config.errors import ConfigError
from pneumo.record.redact import redact_overrides, scrub_text

USAGE = 2  # the exit status of a usage or config error


def refuse(message: str) -> None:
    """End the command with one line and exit status 2. SystemExit passes through Hydra's error report,
    which would exit 1 (and print `Error executing job with overrides`)."""
    print(f"pneumo: {scrub_text(message)}", file=sys.stderr)
    raise SystemExit(USAGE)


# Set once Hydra has composed the primary config and handed it to a callback: an error before that
# (Hydra exits 1) was one of composing it, a config error too (pneumo.commands.run makes it exit 2).
REACHED: list[bool] = []


class StartupCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        REACHED.append(True)
        task = copy.deepcopy(config)  # the job's config as run_job hands it to the task: Hydra's node left out
        with read_write(task), open_dict(task):
            del task["hydra"]
        try:
            checks.check(task)
        except ConfigError as e:
            refuse(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        REACHED.append(True)
        try:
            grid = job_overrides(config)
            jobs = [(overrides, compose(config.hydra.job.config_name, overrides=overrides)) for overrides in grid]
        except Exception:  # noqa: BLE001 -- a grid this cannot expand or compose: Hydra reports it, or each job checks itself
            return
        for num, (overrides, cfg) in enumerate(jobs):
            try:
                checks.check(cfg)
            except ConfigError as e:
                where = f"job #{num} of {len(grid)}: {' '.join(redact_overrides(overrides)) or 'defaults'}"
                refuse(f"{e} [{where}; no job was started]")


def job_overrides(config: DictConfig) -> list[list[str]]:
    """Each job's task overrides, as Hydra's basic sweeper will launch them; [] for another sweeper."""
    if not str(config.hydra.sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return []
    params = config.hydra.sweeper.get("params")
    params = OmegaConf.to_container(params, resolve=False) if params else {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]

