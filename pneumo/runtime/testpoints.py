"""Points where the reliability tests act on a real job from outside, through the environment.

Off unless the variable is set. A kill is a real SIGKILL (nothing to catch or clean up); a
rendezvous proves that jobs ran at the same time without timing them: each waits until all
have arrived, which they only all do if they run at once.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_AT = "PNEUMO_KILL_AT"  # a fault point's name: the job SIGKILLs itself there
RENDEZVOUS = "PNEUMO_RENDEZVOUS"  # FOLDER:N: each job waits at its start until N jobs have arrived
RENDEZVOUS_WAIT_S = 300.0  # then it fails: its peers never ran beside it


def fault_point(name: str) -> None:
    """SIGKILL this process here when PNEUMO_KILL_AT=name."""
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
