"""`make ui` and `pneumo ui` from a fresh clone: no activated venv, nothing but /usr/bin:/bin on PATH."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import clean_env
from store_fixture import free_port, start, stop, wait_until_up

from pneumo import paths

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent
PLAIN_PATH = "/usr/bin:/bin"


def a_store(tmp: Path) -> str:
    from mlflow import MlflowClient

    uri = paths.local_tracking_uri(tmp / "mlruns")
    (tmp / "mlruns").mkdir()
    MlflowClient(uri).create_experiment("only-here")
    return uri


def experiments(url: str) -> list[str]:
    body = json.dumps({"max_results": 10}).encode()
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [e["name"] for e in json.load(r)["experiments"]]


def serve(cmd: list[str], tmp: Path, env: dict, port: int) -> list[str]:
    log = tmp / "ui.log"
    proc = start(cmd, env, log)
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/health", log, timeout=120)
        return experiments(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


@pytest.mark.skipif(not (VENV / "bin" / "pneumo").exists(), reason="pneumo is not installed in this interpreter's venv")
def test_pneumo_ui_serves_the_store_without_mlflow_on_path(tmp_path):
    uri, port = a_store(tmp_path), free_port()
    env = clean_env({"PATH": PLAIN_PATH, "MLFLOW_TRACKING_URI": uri})
    assert "only-here" in serve([str(VENV / "bin" / "pneumo"), "ui", "--port", str(port)], tmp_path, env, port)


@pytest.mark.skipif(shutil.which("make") is None or not (VENV / ".installed").exists(),
                    reason="needs make and the Makefile's venv (make install)")
def test_make_ui_works_without_activating_anything(tmp_path):
    uri, port = a_store(tmp_path), free_port()
    env = clean_env({"PATH": PLAIN_PATH, "MLFLOW_TRACKING_URI": uri})
    # -o: the venv is installed already; do not let a newer pyproject.toml reinstall it mid-test
    cmd = [shutil.which("make"), "-s", "-C", str(paths.ROOT), "ui", f"VENV={VENV}", f"UI_PORT={port}",
           "-o", f"{VENV}/.installed"]
    assert "only-here" in serve(cmd, tmp_path, env, port)
