"""Library chatter stays off the console unless asked for (`trainer.verbose`).

TensorFlow logs through absl from C++: `TF_CPP_MIN_LOG_LEVEL=3` silences what it logs
once running (the `E0000 ... failed call to cuInit` of a machine without a GPU), but
the lines its shared libraries write while being loaded (`cudart_stub.cc ... Could not
find cuda drivers`, oneDNN's notice, absl's "All log messages before
absl::InitializeLog()") ignore it. So the backend is imported with file descriptor 2
(where C++ writes; sys.stderr is Python's) redirected and those lines dropped; anything
else written meanwhile is passed on. Processes started later (the decode pool, a
parallel launcher's workers) inherit the environment, and the workers run this too.
MLflow's INFO log lines (its logger set to WARNING) and what it prints, such as
"Successfully registered model" (`printed()`), stay out too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile

# absl's log line format (severity, date, time, thread, file:line]) and its pre-init notice.
NATIVE_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|"
                            r"[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|"
                            r"To enable the following instructions: .* rebuild TensorFlow)")
CHATTY_LOGGERS = ("mlflow", "absl", "jax._src.xla_bridge", "h5py")
_state = {"verbose": 0}


def verbose() -> int:
    return _state["verbose"]


def libraries(level: int) -> None:
    """Before the Keras backend is first imported: keep its chatter (and MLflow's) off the console."""
    _state["verbose"] = int(level or 0)
    if _state["verbose"]:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # a value the user set is theirs
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if name == "mlflow" else logging.ERROR)
    if "keras" not in sys.modules:
        with native_stderr_filtered():
            import keras

            keras.backend.backend()


@contextlib.contextmanager
def native_stderr_filtered(pattern: re.Pattern = NATIVE_CHATTER):
    """Redirect file descriptor 2 (C++ writes there, not to sys.stderr) and pass on what is not chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(keepends=True)
                    if not pattern.match(line)]
            if kept:
                sys.stderr.write("".join(kept))


@contextlib.contextmanager
def printed():
    """What a library prints meanwhile (MLflow's "Successfully registered model ...") is dropped unless verbose."""
    if _state["verbose"]:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
