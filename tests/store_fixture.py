"""One real smoke-sweep store per test session, with a `champion`, shared by the serving/predict/UI tests.

Import the fixture into a test module with `from store_fixture import smoke_store  # noqa: F401`.
pytest registers an imported fixture once per importing module, so a session-scoped
fixture imported into three modules would still run three times: the store is built
once per run by `built_once` (any expensive read-only folder can be) and cached at module
level (and so is a failure, to fail fast, not retrain).

Also: the small helpers those tests need to run real servers on 127.0.0.1.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pneumo.record import names

from helpers import client_for, run_pneumo, tracking_uri

_BUILT: dict = {}
SWEEP_OUTPUT = "sweep-console.txt"  # the sweep's stdout + stderr, as a newcomer's terminal shows them


def build_smoke_store(tmp: Path) -> Path:
    """`pneumo sweep smoke` then `pneumo promote` into tmp; returns tmp."""
    # As a newcomer runs it: no TF_CPP_MIN_LOG_LEVEL of ours (tests/test_console.py reads its output).
    # Its store is new, as a newcomer's is (MLflow's table creation prints must not reach the console either).
    proc = run_pneumo(["sweep", "smoke"], tmp, env_extra={"TF_CPP_MIN_LOG_LEVEL": None}, new_store=True)
    # ~18 toy test images cannot clear the gates reliably (the AUC's CI alone spans
    # ~0.4); the gates are tested in test_registry.py, here some version only needs to
    # hold the alias: the best by test AUC, forced, as a user would with a reason.
    client = client_for(tmp)
    versions = client.search_model_versions(f"name = '{names.MODEL_NAME}'")
    assert versions, "the smoke sweep registered no model version"
    best = max(versions, key=lambda v: float(client.get_run(v.run_id).data.metrics.get(names.TEST_AUC, 0.0)))
    run_pneumo(["promote", "--version", str(best.version), "--force", "--reason", "smoke fixture: toy data"], tmp,
               hydra=False, env_extra={"MLFLOW_TRACKING_URI": tracking_uri(tmp)})
    champion = client_for(tmp).get_model_version_by_alias(names.MODEL_NAME, names.CHAMPION)
    assert champion.status == "READY", champion
    (tmp / SWEEP_OUTPUT).write_text(proc.stdout + proc.stderr)
    return tmp


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `build(folder)` fills, built once per test run and read by every xdist worker.

    The first worker to ask builds it in the folder all workers share; the others wait on its
    lock and read it. A failure is kept too, so the others fail fast instead of building again.
    Tests read the folder; a test that writes copies it (copy_store)."""
    if name in _BUILT:
        if isinstance(_BUILT[name], str):
            pytest.fail(f"{name} failed to build earlier: {_BUILT[name]}")
        return _BUILT[name]
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    path, done, failed = shared / name, shared / f"{name}.done", shared / f"{name}.failed"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            _BUILT[name] = failed.read_text()
            pytest.fail(f"{name} failed to build in another worker: {_BUILT[name]}")
        if not done.exists():
            try:
                path.mkdir(exist_ok=True)
                build(path)
            except BaseException as e:
                _BUILT[name] = f"{type(e).__name__}: {str(e)[:2000]}"
                failed.write_text(_BUILT[name])
                raise
            done.touch()  # last: its presence says the folder is complete
    _BUILT[name] = path
    return path


@pytest.fixture(scope="session")
def smoke_store(tmp_path_factory) -> Path:
    """A tmp dir holding the smoke sweep's MLflow store (mlruns/), its data cache (cache/) and a champion,
    built once per test run (built_once)."""
    return built_once(tmp_path_factory, "smoke-store", build_smoke_store)


def copy_store(source: Path, dest: Path) -> Path:
    """A private copy of a built store folder (mlruns/ and cache/), for a test that writes to it: the
    sqlite database's absolute paths (artifact locations, model sources) rewritten to the copy's."""
    import shutil
    import sqlite3

    shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.lock"))
    old, new = str(source.resolve()), str(dest.resolve())
    with sqlite3.connect(dest / "mlruns" / "mlflow.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                if any(t in (kind or "").upper() for t in ("CHAR", "TEXT", "CLOB")):
                    db.execute(f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", ?, ?) '
                               f'WHERE "{column}" LIKE ?', (old, new, f"%{old}%"))
    return dest


@pytest.fixture
def smoke_copy(smoke_store, tmp_path) -> Path:
    """The shared smoke store, copied for a test that adds runs, versions or aliases to it."""
    return copy_store(smoke_store, tmp_path / "smoke")


def smoke_jpegs(store: Path, n: int) -> list[Path]:
    """n real JPEGs of the synthetic set the smoke sweep trained on, both classes."""
    files = sorted((store / "cache").rglob("*.jpeg"))
    normal = [f for f in files if f.parent.name == "NORMAL"]
    pneumonia = [f for f in files if f.parent.name == "PNEUMONIA"]
    picked = normal[: n // 2] + pneumonia[: n - n // 2]
    assert len(picked) == n, f"expected {n} JPEGs under {store / 'cache'}"
    return picked


# -- real servers on 127.0.0.1 -------------------------------------------------------------


def free_port() -> int:
    """A port nothing listens on now, chosen below the kernel's ephemeral range.

    Any port is free only until someone binds it: a port from bind(0) is an ephemeral one,
    which the kernel hands to the next outgoing connection of any process (the many HTTP
    connections of a sweep to its tracking server) before our server binds it. Below the
    ephemeral range only an explicit bind can take it; `start_server` retries that case.
    """
    low, high = ephemeral_range()
    outside = [*range(10000, min(low, 65536)), *range(max(high + 1, 10000), 65536)]  # never handed out by the kernel
    for _ in range(200):
        port = random.choice(outside)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise AssertionError("no free port found")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux' default where /proc does not say)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


ADDRESS_IN_USE = re.compile(r"address already in use|errno 98|eaddrinuse|could not bind", re.I)


class PortTaken(Exception):
    """The server could not bind its port: someone took it after free_port() chose it."""


def start_server(command, env: dict, log: Path, health: str, timeout: float = 120,
                 attempts: int = 3) -> tuple[subprocess.Popen, int]:
    """Start `command(port)` on a free port and wait until `http://127.0.0.1:<port><health>` answers 200.

    A server that exits because its port was taken meanwhile is started again on a fresh port
    (up to `attempts` times); any other failure fails the test with the server's log.
    Returns the running process and its port.
    """
    for attempt in range(1, attempts + 1):
        port = free_port()
        proc = start(command(port), env, log)
        try:
            wait_until_up(proc, f"http://127.0.0.1:{port}{health}", log, timeout)
            return proc, port
        except PortTaken:
            stop(proc)
            if attempt == attempts:
                pytest.fail(f"port taken {attempts} times in a row; last log:\n{tail(log)}")
        except BaseException:
            stop(proc)
            raise
    raise AssertionError("unreachable")


def server_env(store: Path) -> dict:
    """The env of a server process: the store's tracking URI, no inherited MLflow run, the venv's tools on PATH."""
    from helpers import clean_env

    env = clean_env({"MLFLOW_TRACKING_URI": tracking_uri(store)})  # drops MLFLOW_RUN_ID & co.
    # `mlflow models serve` / `mlflow server` exec `uvicorn` by name: find the venv's even when not activated.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Start a server in its own process group (it forks workers), output to a log file."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    """Poll url until it answers 200; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if ADDRESS_IN_USE.search(tail(log)):
                raise PortTaken(url)
            pytest.fail(f"server exited {proc.returncode} before answering {url}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200 and proc.poll() is None:  # ours, not whoever took the port
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"no answer from {url} within {timeout:.0f} s:\n{tail(log)}")


def post_json(url: str, body: dict) -> tuple[int, str]:
    """POST `body` as JSON: (the HTTP status, the response's text), an error's too."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (it forks workers), SIGKILL whatever lingers."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or the group never looks empty
            if not _group_alive(proc.pid):
                break
            time.sleep(0.2)
        else:
            continue
        break
    proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def tail(log: Path, n: int = 6000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


# -- a real job's registered model, wired end to end (issue 27) ----------------------------------

WIRED_REFER = 0.99  # evaluation.refer of the wired jobs: the referral band's target accuracy
WIRED_EXPERIMENT = "wired"


def build_wired_store(tmp: Path) -> Path:
    """Two real toy jobs in one multirun (the real conf/ shrunk by TOY, plus evaluation.refer): one whose
    registered model carries its out-of-distribution guard and referral band, and one whose guard cannot
    be fitted (evaluation.ood_sample=0: no training film to fit it on), registered saying so."""
    from helpers import TOY

    # TOY's one epoch on 48 films leaves a coin (val AUC ~0.5 on 5 films) and an empty band (every film decided);
    # 160 films and 4 epochs give a model that ranks (val AUC ~0.6) and a band around its threshold.
    toy = [o for o in TOY if not o.startswith(("data.n_images=", "trainer.epochs="))]
    run_pneumo(["train", "-m", *toy, "data.n_images=160", "trainer.epochs=4", f"experiment={WIRED_EXPERIMENT}",
                f"evaluation.refer={WIRED_REFER}", "evaluation.ood_sample=2000,0"], tmp)
    return tmp


@pytest.fixture(scope="session")
def wired_store(tmp_path_factory) -> Path:
    """A tmp dir holding build_wired_store's MLflow store (mlruns/) and data cache (cache/), built once per run."""
    return built_once(tmp_path_factory, "wired-store", build_wired_store)
