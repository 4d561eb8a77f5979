"""What a person sees while jobs run: one live line per job and per trial.

On a terminal (rich): a line for the job (job i/n, its overrides, trial j/m, the best
objective so far, ETA) and one per trial (epoch, its objective), redrawn in place;
finished trials stay on screen. In a log (stdout not a terminal), with
`trainer.verbose`, or in a worker process of a parallel launcher: the same facts as
plain log lines, one per epoch and one per finished trial. Keras Tuner's hooks
(pneumo.search.tuner.TrackedTuner) report to it; nothing here touches training.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Column

from pneumo.runtime import quiet

log = logging.getLogger("pneumo")
JOBS_ENV = "PNEUMO_SWEEP_JOBS"  # set by the sweep (pneumo.commands.summary) for its jobs, also in launcher workers
SWEEP_PID_ENV = "PNEUMO_SWEEP_PID"  # the process that draws live lines; others print plain ones
# -- how many jobs a sweep has ----------------------------------------------------------------


def count_jobs(sweep_params, overrides) -> int:
    """Jobs in a basic sweep: the product of the sweep overrides' lengths (a command-line override wins
    over the sweep file's for the same key, as Hydra's BasicSweeper does)."""
    items = [f"{k}={v}" for k, v in (sweep_params or {}).items()] + list(overrides or [])
    sizes = {}
    for o in OverridesParser.create().parse_overrides(items):
        sizes[o.get_key_element()] = len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1
    return math.prod(sizes.values())


def _hydra_job() -> tuple[int, int]:
    """(this job's number from 1, the sweep's job count or 0 when unknown)."""
    if not HydraConfig.initialized():
        return 1, 1
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return int(hc.job.get("num", 0) or 0) + 1, int(os.environ.get(JOBS_ENV, 0)) if multirun else 1


# -- progress ---------------------------------------------------------------------------------


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class JobProgress:
    """One job's trials and epochs, drawn live (rich) or logged as plain lines."""

    def __init__(self, name: str, number: int, total: int, max_trials: int | None, epochs: int | None,
                 objective: str, higher_is_better: bool, live=None, done: tuple = (), best: float | None = None):
        self.head = f"job {number}/{total or '?'} {name}".rstrip()
        self.max_trials, self.epochs, self.objective, self.higher = max_trials, epochs, objective, higher_is_better
        # distinct trials started; a resumed search counts those it ran before (Keras Tuner retries a
        # failed or interrupted trial under the same id)
        self.ids: list = list(done)
        self.trials = len(self.ids)
        self.retry = False
        self.epoch_s: list[float] = []
        self.finished_best = best  # over FINISHED trials, a resumed search's too: a failed trial's score is no result
        self.trial_best = None
        self.epoch = 0
        self.mark = self.started = time.monotonic()
        self.trial_started = self.mark
        self.progress = self.job_task = self.trial_task = None
        if live is not None:
            self._start_live(live)

    # what the lines say

    def _trial_name(self) -> str:
        return f"trial {self.trials}/{self.max_trials or '?'}" + (" (retry)" if self.retry else "")

    def _better(self, a, b) -> bool:
        return b is None or (a > b if self.higher else a < b)

    def eta(self) -> float | None:
        """Seconds left if every remaining trial runs every epoch (early stopping makes it shorter)."""
        if not self.epoch_s or not self.epochs:
            return None
        left = self.epochs - self.epoch
        if self.max_trials:
            left += (self.max_trials - self.trials) * self.epochs
        return left * sum(self.epoch_s) / len(self.epoch_s)

    @property
    def best(self) -> float | None:
        """The best objective so far: finished trials and the one running."""
        if self.trial_best is not None and self._better(self.trial_best, self.finished_best):
            return self.trial_best
        return self.finished_best

    def _best_text(self) -> str:
        return f"best {self.objective} so far {self.best:.3f}" if self.best is not None else f"no {self.objective} yet"

    # events (from pneumo.search.tuner.TrackedTuner)

    def trial_begin(self, trial_id=None) -> None:
        self.retry = trial_id is not None and trial_id in self.ids
        if not self.retry:
            self.ids.append(trial_id)
            self.trials += 1
        self.epoch, self.trial_best = 0, None
        self.mark = self.trial_started = time.monotonic()
        if self.progress is not None:
            self.trial_task = self.progress.add_task(f"  {self._trial_name()}", total=self.epochs, info="starting")
            self._update_job()

    def epoch_end(self, epoch: int, logs: dict) -> None:
        now = time.monotonic()
        self.epoch_s.append(now - self.mark)
        self.mark, self.epoch = now, epoch + 1
        value = logs.get(self.objective)
        if value is not None and math.isfinite(float(value)):
            value = float(value)
            if self._better(value, self.trial_best):
                self.trial_best = value
        shown = f"{self.objective} {value:.3f}" if isinstance(value, float) else f"no {self.objective}"
        epoch_text = f"epoch {self.epoch}/{self.epochs or '?'}"
        if self.progress is not None:
            self.progress.update(self.trial_task, completed=self.epoch, info=f"{epoch_text} · {shown}")
            self._update_job()
        else:
            log.info("%s · %s · %s · %s · %s · ETA %s", self.head, self._trial_name(), epoch_text, shown,
                     self._best_text(), _clock(self.eta()))

    def trial_end(self, status: str, message: str | None = None) -> None:
        took = _clock(time.monotonic() - self.trial_started)
        if status == "FINISHED" and self.trial_best is not None and self._better(self.trial_best, self.finished_best):
            self.finished_best = self.trial_best
        if self.epochs and self.epoch < self.epochs:
            # stopped early (or failed): its remaining epochs are not coming
            self.epoch = self.epochs
        end = f"{status} in {took}"
        if self.trial_best is not None:
            end += f" · best {self.objective} {self.trial_best:.3f}"
        self.trial_best = None
        if message and status != "FINISHED":
            end += f" · {message.strip().splitlines()[-1][:120]}"
        if self.progress is not None:
            self.progress.update(self.trial_task, completed=self.epochs, info=end)
            self._update_job()
        else:
            log.info("%s · %s %s", self.head, self._trial_name(), end)

    def _update_job(self) -> None:
        done = (self.trials - 1) * (self.epochs or 0) + self.epoch
        info = f"{self._trial_name()} · {self._best_text()} · ETA {_clock(self.eta())}"
        self.progress.update(self.job_task, completed=done, info=info)

    # the live display

    def _start_live(self, console) -> None:
        # A long job name (every override) is cut, never the facts after the bar.
        self.progress = Progress(
            TextColumn("{task.description}", table_column=Column(max_width=48, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            console=console, transient=False, redirect_stdout=True, redirect_stderr=True, expand=True)
        total = self.max_trials * self.epochs if self.max_trials and self.epochs else None
        real = sys.stdout, sys.stderr
        self.progress.start()
        self.job_task = self.progress.add_task(self.head, total=total, info="starting")
        # Hydra's log handlers hold the real stdout: send their lines through the live display too.
        self._swapped = []
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and h.stream in real:
                self._swapped.append((h, h.setStream(sys.stdout if h.stream is real[0] else sys.stderr)))

    def close(self) -> None:
        if self.progress is None:
            return
        done = self.trials * (self.epochs or 0)  # fewer than max_trials when the oracle ended the search sooner
        took = _clock(time.monotonic() - self.started)
        self.progress.update(self.job_task, total=done, completed=done,
                             info=f"{self.trials} trial(s) in {took} · {self._best_text().replace(' so far', '')}")
        for h, stream in self._swapped:
            h.setStream(stream)
        self.progress.stop()


_job: list[JobProgress] = []  # the job running in this process, if any


def live_console():
    """A rich Console on stdout when a person watches it, else None (plain log lines)."""
    if quiet.verbose() or not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        return None
    if os.environ.get(SWEEP_PID_ENV, str(os.getpid())) != str(os.getpid()):  # a launcher's worker process
        return None
    console = Console(file=sys.stdout)
    return None if console.is_dumb_terminal else console


@contextlib.contextmanager
def job(name: str, max_trials: int | None, epochs: int | None, objective: str, higher_is_better: bool,
        done: tuple = (), best: float | None = None):
    """The job's progress for the duration of its search (TrackedTuner.search); `done`: the ids of trials
    a resumed search has already ended, `best`: the best objective of those that finished."""
    number, total = _hydra_job()
    progress = JobProgress(name, number, total, max_trials, epochs, objective, higher_is_better, live_console(),
                           done, best)
    _job.append(progress)
    try:
        yield progress
    finally:
        _job.remove(progress)
        progress.close()


def trial_begin(trial_id=None) -> None:
    for p in _job:
        p.trial_begin(trial_id)


def epoch_end(epoch: int, logs: dict) -> None:
    for p in _job:
        p.epoch_end(epoch, logs)


def trial_end(status: str, message: str | None = None) -> None:
    for p in _job:
        p.trial_end(status, message)
