"""Helpers for tests that run the installed app as a subprocess over a store in tmp_path."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from importlib.util import find_spec
from pathlib import Path

import pytest

from pneumo.config import paths
from pneumo.runtime import testpoints

# The real conf/, shrunk: tiny synthetic data, one epoch, 32 px, one trial. Seven validation
# images cannot tell a model from chance: the chance gate is off (tests/test_failures.py tries it).
TOY = [
    "data=synthetic", "data.n_images=48", "data.image_px=48",
    "trainer.epochs=1", "trainer.image_size=32", "trainer.batch_size=16", "trainer.chance_z=null",
    "tuner.max_trials=1", "evaluation.bootstrap=50",
    "evaluation.heatmaps=0",  # occlusion pictures: test_review asks for them (and the smoke sweep draws them)
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(present: bool, missing: str) -> None:
    """Skip a test whose prerequisite is missing, saying which, except in CI (CI=true), where
    a missing prerequisite fails: a skipped test in CI is a guarantee nobody checked."""
    if present:
        return
    if in_ci():
        pytest.fail(f"CI must run this test, but {missing}")
    pytest.skip(missing)


KERAS_BACKENDS = ("tensorflow", "jax", "torch")  # each the name of its module, and of pneumo's extra
PROMISED = "PNEUMO_BACKENDS"  # in CI: the backends it installs, space-separated (.ci/run)


def backends(*among: str) -> list[str]:
    """The backends of `among` a test is run on: all of them, but in CI those that PNEUMO_BACKENDS promises
    (one CI does not install is left out by a line in .ci/run, which pytest's header repeats, not skipped
    where nobody reads it). A backend run on and missing is a named skip, or in CI a failure (require_backend)."""
    promised = os.environ.get(PROMISED)
    if not in_ci() or promised is None:
        return list(among)
    unknown = sorted(set(promised.split()) - set(KERAS_BACKENDS))
    if unknown:
        raise ValueError(f"{PROMISED}={promised!r}: {', '.join(unknown)} is not one of {', '.join(KERAS_BACKENDS)}")
    return [b for b in among if b in promised.split()]


def require_backend(name: str) -> None:
    require(find_spec(name) is not None, f"the Keras backend {name} is not installed (pip install -e '.[{name}]'; "
                                         f"in CI, {PROMISED} names the backends it installs)")


def clean_env(extra: dict | None = None) -> dict:
    """The environment for a child pneumo: no inherited MLflow run or store, nor pytest's name for the test
    running (a user's pneumo has none, and it changes each test: every process would differ from the
    zygote's). A None in extra unsets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTEST_CURRENT_TEST"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **(extra or {})})
    return {k: v for k, v in env.items() if v is not None}


def isolate(tmp: Path) -> list[str]:
    """Overrides that keep every output of a job under tmp."""
    return [f"paths.cache={tmp}/cache", f"tracking.store={tmp}/mlruns",
            f"hydra.sweep.dir={tmp}/multirun", f"hydra.run.dir={tmp}/outputs"]


def run_pneumo(args, tmp: Path, env_extra=None, check=True, timeout=900, hydra=True, fresh=False,
               new_store=False, python: str | None = None):
    """`pneumo ARGS` in tmp (its outputs kept there with hydra=True), as a CompletedProcess.
    fresh: the installed `pneumo` script in a new interpreter, as a user types it, even where the zygote
    could fork it (a launcher that starts worker processes: joblib's loky workers, started from a forked
    zygote child, sat idle for minutes; the reliability tests).
    new_store: let pneumo create tmp's sqlite store itself (else a copy of an empty one is put there first).
    python: another environment's interpreter, whose `pneumo` script runs (that environment's MLflow makes
    the store)."""
    argv = [*args, *(isolate(tmp) if hydra else [])]
    if hydra and not new_store and python is None:
        seed_store(tmp / "mlruns")
    proc = pneumo_process(argv, tmp, clean_env(env_extra), timeout, fresh=fresh, python=python)
    if check and proc.returncode != 0:
        raise AssertionError(f"pneumo {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


_EMPTY_STORE: list[Path] = []


def seed_store(store: Path) -> None:
    """Put an empty, migrated MLflow sqlite database in `store` unless one is there.

    A new store runs MLflow's ~60 schema migrations (4-5 s of CPU here) in every job that opens it.
    pneumo creates one store per worker, once, with its own code (pneumo.record.store); each test's
    store starts as a copy of it. Tests of store creation itself pass new_store=True."""
    import shutil

    from pneumo.record import store as record_store

    db = store / "mlflow.db"
    if db.exists():
        return
    if not _EMPTY_STORE:
        empty = Path(tempfile.mkdtemp(prefix="pneumo-empty-store-")) / "mlflow.db"
        with contextlib.chdir(empty.parent):  # MLflow's Default experiment points under the cwd: not the repo's
            record_store._create_sqlite_store(f"sqlite:///{empty}")
        atexit.register(shutil.rmtree, empty.parent, True)
        _EMPTY_STORE.append(empty)
    store.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_EMPTY_STORE[0], db)


def empty_store(folder: Path) -> str:
    """The URI of a new, empty sqlite store in folder (a copy: see seed_store)."""
    seed_store(folder)
    return f"sqlite:///{folder}/mlflow.db"


# What a forked child may have otherwise than the zygote: variables read where a job uses them, long after
# the imports (MLflow reads its tracking URI when a job opens its store; pneumo.runtime.testpoints reads its
# own at each point). Any other difference (HOME, where Keras fixes its config folder at import; LANG and
# LC_*, read by the interpreter's start; CUDA_VISIBLE_DEVICES, PNEUMO_ROOT, other MLFLOW_*, a new one
# nobody listed) gets a new interpreter. The zygote checks the list: it says which variables its imports
# read, and one read there is not forked either (tests/test_zygote.py fails on it).
RUN_TIME = ("MLFLOW_TRACKING_URI", testpoints.KILL_AT, testpoints.HOLD, testpoints.RENDEZVOUS)
_ZYGOTE_ENV = clean_env()  # this worker's, before any test changes it: the zygote starts with it


def _zygote_differs(env: dict) -> set[str]:
    """The variables of env that keep the zygote from forking a child with it (an empty set: it may)."""
    zygote = _zygote()
    differ = {k for k in env.keys() | _ZYGOTE_ENV.keys()
              if env.get(k) != _ZYGOTE_ENV.get(k) and env.get(k) != zygote.environ.get(k)}  # set by the imports alike
    return (differ - set(RUN_TIME)) | (differ & zygote.read_at_import)


def _zygote_can_fork(env: dict, fresh: bool) -> bool:
    return not fresh and not _zygote_differs(env)


def pneumo_script(python: str | None = None) -> Path:
    """The `pneumo` console script installed beside this interpreter (or `python`): what a user types.
    Required: off CI a test that needs it skips, in CI it fails."""
    script = Path(python or sys.executable).parent / "pneumo"
    require(script.exists(), f"no pneumo script beside {python or sys.executable} (pip install -e . installs it)")
    return script


def pneumo_process(argv: list[str], cwd: Path, env: dict, timeout: float = 900,
                   fresh: bool = False, python: str | None = None) -> subprocess.CompletedProcess:
    """A new `pneumo ARGV` process, run to its end: forked from this worker's pre-imported zygote
    (tests/zygote.py) where the environment allows, else the installed script in a new interpreter.
    A kill is a negative returncode either way."""
    if python is None and _zygote_can_fork(env, fresh):
        return _zygote().run(argv, cwd, env, timeout)
    return subprocess.run([str(pneumo_script(python)), *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def pneumo_popen(argv: list[str], cwd: Path, env: dict, log: Path, session: bool = False, fresh: bool = False):
    """`pneumo ARGV` started and left running, stdout and stderr into log: for tests that run several at
    once, or signal one. Forked from the zygote where the environment allows and not `fresh` (else the
    installed script in a new interpreter), it answers Popen's pid, poll(), wait(timeout) and returncode;
    session: it leads its own session (killpg)."""
    if _zygote_can_fork(env, fresh):
        return _zygote().start(argv, cwd, env, str(log), None, session)
    with open(log, "w") as out:
        return subprocess.Popen([str(pneumo_script()), *argv], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=session)


class ZygoteChild:
    """A process the zygote forked, as far as Popen's pid / poll / wait / returncode go."""

    def __init__(self, argv, pid: int, ended: queue.Queue):
        self.args, self.pid, self._ended, self.returncode = argv, pid, ended, None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                message = self._ended.get(timeout=timeout)
            except queue.Empty:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            if message is None:
                raise RuntimeError("the test zygote died")
            self.returncode = message["code"]
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


class Zygote:
    """The client of one tests/zygote.py process (started on first use, ended with this process).
    A reader thread hands each reply to the request it answers, so children may run at once."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("zygote.py"))], env=_ZYGOTE_ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        atexit.register(self.proc.kill)
        ready = self.proc.stdout.readline()  # once it has imported everything
        if not ready:
            raise RuntimeError(f"the test zygote did not start (exit {self.proc.wait()})")
        ready = json.loads(ready)
        self.read_at_import, self.environ = frozenset(ready["read_at_import"]), ready["environ"]
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue] = {}
        self._next = itertools.count()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._lock:
                self._replies[message["id"]].put(message)
        with self._lock:  # the zygote is gone: nobody waits for ever
            for replies in self._replies.values():
                replies.put(None)

    def start(self, argv, cwd: Path, env: dict, out: str, err: str | None, session: bool = False) -> ZygoteChild:
        rid, replies = next(self._next), queue.Queue()
        with self._lock:
            self._replies[rid] = replies
            request = {"id": rid, "argv": list(argv), "cwd": str(cwd), "env": env, "out": out, "err": err,
                       "session": session}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        try:
            started = replies.get(timeout=60)
        except queue.Empty:
            started = None
        if started is None:
            raise RuntimeError(f"the test zygote did not start pneumo (zygote exit {self.proc.poll()})")
        return ZygoteChild(["pneumo", *argv], started["pid"], replies)

    def run(self, argv, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as logs:
            out, err = Path(logs) / "out", Path(logs) / "err"
            child = self.start(argv, cwd, env, str(out), str(err))
            try:
                code = child.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(60)
                raise subprocess.TimeoutExpired(["pneumo", *argv], timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(["pneumo", *argv], code, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))


_ZYGOTE: list[Zygote] = []


def _zygote() -> Zygote:
    if not _ZYGOTE or _ZYGOTE[0].proc.poll() is not None:
        _ZYGOTE[:] = [Zygote()]
    return _ZYGOTE[0]


def tracking_uri(tmp: Path) -> str:
    return paths.local_tracking_uri(tmp / "mlruns")


def client_for(tmp: Path):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(tmp))
    return mlflow.MlflowClient()
