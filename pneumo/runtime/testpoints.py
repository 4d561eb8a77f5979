"""Points where the reliability tests act on a real job from outside, through the environment.

Off unless the variable is set. A kill is a real SIGKILL (nothing to catch or clean up), or,
with PNEUMO_HOLD, a hold: the job waits at the kill point for the test to send it a signal
(Ctrl-C's SIGINT, a scheduler's SIGTERM), so the signal lands mid-trial without being timed.
A rendezvous proves that jobs ran at the same time without timing them: each waits until all
have arrived, which they only all do if they run at once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_AT = "PNEUMO_KILL_AT"  # a fault point's name: the job SIGKILLs itself there
HOLD = "PNEUMO_HOLD"  # FOLDER: at its kill point the job leaves FOLDER/<pid> and waits there for a signal instead
HOLD_S = 300.0  # then it fails: no signal came
RENDEZVOUS = "PNEUMO_RENDEZVOUS"  # FOLDER:N: each job waits at its start until N jobs have arrived
RENDEZVOUS_WAIT_S = 300.0  # then it fails: its peers never ran beside it


# The kill points between a job's phases (pneumo.job.phases.run passes them), by the phase they follow:
# the search done; its model validated, the test split not yet touched; its model logged, not yet registered.
AFTER_PHASE = {"search": "after_search", "validate": "during_evaluation", "package_model": "before_register"}


def fault_point(name: str) -> None:
    """Stop this process here when PNEUMO_KILL_AT=name."""
    if os.environ.get(KILL_AT) == name:
        stop_here()


def passed(phase: str) -> None:
    """The job finished `phase`: stop here if the kill point after it is PNEUMO_KILL_AT's."""
    if phase in AFTER_PHASE:
        fault_point(AFTER_PHASE[phase])


def stop_here() -> None:
    """What a kill point does: SIGKILL this process, or under PNEUMO_HOLD=FOLDER say so in FOLDER/<pid> and
    wait for a signal from outside (its handler raises out of the sleep, where the job is)."""
    folder = os.environ.get(HOLD)
    if not folder:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / str(os.getpid())).touch()
    time.sleep(HOLD_S)
    raise RuntimeError(f"{HOLD}: held {HOLD_S:.0f} s at a kill point and no signal came")


def rendezvous() -> None:
    """Wait until PNEUMO_RENDEZVOUS's N jobs have all reached this point (each leaves a file)."""
    spec = os.environ.get(RENDEZVOUS)
    if not spec:
        return
    folder, _, n = spec.rpartition(":")
    here = Path(folder)
    here.mkdir(parents=True, exist_ok=True)
    (here / f"{os.getpid()}").touch()
    deadline = time.monotonic() + RENDEZVOUS_WAIT_S
    while len(list(here.iterdir())) < int(n):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{RENDEZVOUS}: {len(list(here.iterdir()))} of {n} jobs arrived in "
                               f"{RENDEZVOUS_WAIT_S:.0f} s: they did not run at the same time")
        time.sleep(0.05)
