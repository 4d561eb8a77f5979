"""A pre-imported `python -m pneumo` for the tests: one per pytest worker, forked once per command.

Every job a test runs is a new process, as a user's is, but importing TensorFlow, Keras, Keras Tuner,
MLflow and pneumo costs ~15 s of CPU per process on the dev machine, more than a toy job's training.
This process pays it once: it imports them (running no TensorFlow op, so no thread pool exists to be
lost in a fork), then for each request forks a child that sets the request's environment, working
directory and argv and runs `pneumo.cli.main` exactly as `python -m pneumo` would, its stdout and
stderr in files and its exit status (or the signal that killed it) reported back.

Only requests whose environment leaves the import-time settings alone come here (helpers.py
`pneumo_process` decides): a different KERAS_BACKEND or TF_CPP_MIN_LOG_LEVEL needs a real interpreter.
Several children may run at once (two sweeps into one store, a chief and its workers): each is
reaped by its own thread, and forks happen only while no thread is writing to the protocol pipe.

Protocol, one JSON object per line: in {"id", "argv", "cwd", "env", "out", "err", "session"} (err null:
stderr joins stdout; session: the child leads a new session, as Popen's start_new_session); out
{"id", "pid"} at once, then {"id", "code"} when that child has ended.
"""

from __future__ import annotations

import json
import os
import sys
import threading


def _child(request: dict) -> None:
    """In the forked child: become `python -m pneumo ARGV` and never return."""
    import tempfile

    code = 1
    try:
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

        sys.argv = [str(os.path.join(os.path.dirname(pneumo.cli.__file__), "__main__.py")), *request["argv"]]
        try:
            code = pneumo.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, int | None):
                print(e.code, file=sys.stderr)  # sys.exit("message"): the interpreter prints it
        except BaseException:  # noqa: BLE001 - what an uncaught exception does to a real interpreter
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        # A real interpreter's exit: atexit handlers (MLflow ends its runs there), then flushed streams.
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code or 0))


def serve() -> None:
    from pneumo.runtime import quiet

    quiet.libraries(0)  # Keras and its backend, as a job imports them (chatter filtered)
    import importlib
    import pkgutil

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

    for line in sys.stdin:
        request = json.loads(line)
        with writing:
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request)
            say({"id": request["id"], "pid": pid})
        threading.Thread(target=reap, args=(request["id"], pid), daemon=True).start()


if __name__ == "__main__":
    serve()
