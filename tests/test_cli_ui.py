"""`make ui` and `pneumo ui` from a fresh clone: no activated venv, nothing but /usr/bin:/bin on PATH."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest

from pneumo.config import paths

from helpers import clean_env, empty_store, require
from store_fixture import start_server, stop

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent
PLAIN_PATH = "/usr/bin:/bin"


def a_store(tmp: Path) -> str:
    from mlflow import MlflowClient

    uri = empty_store(tmp / "mlruns")
    MlflowClient(uri).create_experiment("only-here")
    return uri


def experiments(url: str) -> list[str]:
    body = json.dumps({"max_results": 10}).encode()
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [e["name"] for e in json.load(r)["experiments"]]


def serve(cmd, tmp: Path, env: dict) -> list[str]:
    """cmd(port): the command line of a UI on that port; the experiments it lists."""
    proc, port = start_server(cmd, env, tmp / "ui.log", "/health")
    try:
        return experiments(f"http://127.0.0.1:{port}")
    finally:
        stop(proc)


def test_pneumo_ui_serves_the_store_without_mlflow_on_path(tmp_path):
    require((VENV / "bin" / "pneumo").exists(), f"pneumo is not installed in this interpreter's venv ({VENV})")
    uri = a_store(tmp_path)
    env = clean_env({"PATH": PLAIN_PATH, "MLFLOW_TRACKING_URI": uri})
    assert "only-here" in serve(lambda port: [str(VENV / "bin" / "pneumo"), "ui", "--port", str(port)], tmp_path, env)


def test_make_ui_works_without_activating_anything(tmp_path):
    require(shutil.which("make") is not None, "make is not installed")
    markers = sorted(VENV.glob(".installed-*"))  # make install BACKEND=... leaves .installed-<backend>
    require(bool(markers), f"{VENV} is not the Makefile's venv (make install)")
    backend = markers[0].name.removeprefix(".installed-")
    uri = a_store(tmp_path)
    env = clean_env({"PATH": PLAIN_PATH, "MLFLOW_TRACKING_URI": uri})
    # -o: the venv is installed already; do not let a newer pyproject.toml reinstall it mid-test
    cmd = lambda port: [shutil.which("make"), "-s", "-C", str(paths.ROOT), "ui", f"VENV={VENV}",  # noqa: E731
                        f"BACKEND={backend}", f"UI_PORT={port}", "-o", str(markers[0])]
    assert "only-here" in serve(cmd, tmp_path, env)
