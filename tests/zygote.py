"""A pre-imported `pneumo` for the tests: one per pytest worker, forked once per command.

Every job a test runs is a new process, as a user's is, but importing TensorFlow, Keras, Keras Tuner,
MLflow and pneumo costs ~15 s of CPU per process on the dev machine, more than a toy job's training.
This process pays it once: it imports them (running no TensorFlow op, so no thread pool exists to be
lost in a fork), then for each request forks a child that sets the request's environment, working
directory and argv and runs `pneumo.cli.main` as the `pneumo` script does, its stdout and stderr in
files and its exit status (or the signal that killed it) reported back. The child leaves as an
interpreter does (`_exit`: threads joined, atexit, an uncaught KeyboardInterrupt ends it by SIGINT).

Only requests whose environment differs from this process's in variables read after the imports come
here (helpers.py `pneumo_process` decides); as evidence, this process records every variable its imports
read through os.environ and says which on its first line. What a fork cannot be: a process in which only
what its command needs is imported, and that imported it in its own order; the suite's sweeps and
reliability tests that run the installed `pneumo` script in a new interpreter are that.
Several children may run at once (two sweeps into one store, a chief and its workers): each is
reaped by its own thread, and forks happen only while no thread is writing to the protocol pipe.

Protocol, one JSON object per line: first out {"read_at_import": [names]}; then in {"id", "argv", "cwd",
"env", "out", "err", "session"} (err null: stderr joins stdout; session: the child leads a new session,
as Popen's start_new_session); out {"id", "pid"} at once, then {"id", "code"} when that child has ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading


@contextlib.contextmanager
def _environment_reads():
    """The names of the variables read through os.environ (or os.getenv, `in`) meanwhile."""
    environ, read = type(os.environ), set()
    get = environ.__getitem__

    def recorded(self, key):
        read.add(key.decode() if isinstance(key, bytes) else key)
        return get(self, key)

    environ.__getitem__ = recorded
    try:
        yield read
    finally:
        environ.__getitem__ = get


def _imports() -> None:
    import importlib
    import pkgutil

    from pneumo.runtime import quiet

    with quiet.native_stderr_filtered():  # the backend's load-time lines; loggers left as a new process has them
        import keras

        keras.backend.backend()
    import keras_tuner  # noqa: F401
    import mlflow
    import mlflow.store.model_registry.sqlalchemy_store
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.utils import requirements_utils

    import pneumo

    # The installed distributions, which MLflow reads on every model log (~1 s): read once here. A private
    # name: should a release move it, each child reads them itself again, as before.
    getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()

    for mod in pkgutil.walk_packages(pneumo.__path__, "pneumo."):
        if mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)


def _become(request: dict) -> None:
    """In the forked child: become `pneumo ARGV` in the request's environment, folder and files."""
    import tempfile

    if request.get("session"):
        os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    if request.get("err"):
        os.dup2(os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    else:
        os.dup2(1, 2)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__  # now on those files
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # read TMPDIR afresh, as a new process does
    os.chdir(request["cwd"])
    import pneumo.cli

    sys.argv = [os.path.join(os.path.dirname(sys.executable), "pneumo"), *request["argv"]]
    code, interrupted = 1, False
    try:
        code = pneumo.cli.main()  # what the console script does: sys.exit(main())
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)  # sys.exit("message"): the interpreter prints it
    except BaseException as e:  # noqa: BLE001 - what an uncaught exception does to a real interpreter
        import traceback

        traceback.print_exc()
        interrupted = isinstance(e, KeyboardInterrupt)
    finally:
        _exit(int(code or 0), interrupted)


def _exit(code: int, interrupted: bool) -> None:
    """The interpreter's exit, in its order: threads joined (and threading's own exit hooks, such as a
    ThreadPoolExecutor's, which drain its queue), atexit handlers (MLflow ends its runs there), streams
    flushed; an uncaught KeyboardInterrupt ends the process by SIGINT. Not the teardown of every module
    and the last collection after them, which free memory only and cost ~3 s of CPU a process with
    TensorFlow loaded (the tests that run the `pneumo` script in a new interpreter have them)."""
    import atexit
    import signal

    try:
        getattr(threading, "_shutdown", lambda: None)()  # private; absent in a Python to come: threads unjoined
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        if interrupted:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        os._exit(code)


def serve() -> None:
    with _environment_reads() as read:
        _imports()

    protocol = sys.stdout
    sys.stdout = sys.stderr  # nothing but the protocol on the pipe
    # Held while writing to the pipe and while forking: a child never inherits the pipe's buffer
    # half-written or its lock taken by a reaper thread (the child's sys.stdout is that object).
    writing = threading.Lock()

    def say(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    def reap(rid, pid: int) -> None:
        _, status = os.waitpid(pid, 0)
        with writing:
            say({"id": rid, "code": os.waitstatus_to_exitcode(status)})

    # And what the imports set themselves (TensorFlow sets TF2_BEHAVIOR, KMP_*, TPU_*...): a test process
    # that has imported them too carries the same values, which a new interpreter would set alike.
    say({"read_at_import": sorted(read), "environ": dict(os.environ)})
    for line in sys.stdin:
        request = json.loads(line)
        with writing:
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                break  # the child: out of the loop (releasing its copy of the lock) to become the job
            say({"id": request["id"], "pid": pid})
        threading.Thread(target=reap, args=(request["id"], pid), daemon=True).start()
    else:
        return  # stdin closed: the tests are over
    _become(request)


if __name__ == "__main__":
    serve()
