"""Ctrl-C and SIGTERM stop a job as one: what it recorded stays, and the same command resumes it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

log = logging.getLogger("pneumo")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill PID`), raised where the job is, so that it stops as on Ctrl-C."""


@contextlib.contextmanager
def stop_the_job():
    """Ctrl-C or SIGTERM: what the job recorded stays, its open runs end KILLED (pneumo.record.jobs.opened)
    and the same command resumes it. SIGTERM's default would end the process on the spot, its runs left
    RUNNING; raised instead, it unwinds as Ctrl-C does, and the process exits 143 (128 + SIGTERM, as a
    shell reports a process SIGTERM ended). Ctrl-C goes on as Python's KeyboardInterrupt (exit by SIGINT)."""
    def stop(signum, frame):
        raise Terminated()

    main_thread = threading.current_thread() is threading.main_thread()  # the only one that may set a handler
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        yield
    except KeyboardInterrupt as e:
        how = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C (SIGINT)"
        log.warning("stopped by %s; what the job recorded is kept, the same command resumes it", how)
        if isinstance(e, Terminated):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
