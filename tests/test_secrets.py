"""Credentials given to a sweep leave no trace in the store, the Hydra outputs or the logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_pneumo

USER, KEY, TOKEN = "kaggle-user-7f3a9c", "kagglekey0d1e2f3a4b5c6d7e8f90", "hf_Tok3nValue9988776655"


def occurrences(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            found += [f"{f}: {n.decode()}" for n in needles if n in data]
    return found


@pytest.mark.slow
def test_smoke_sweep_leaves_no_credential_anywhere(tmp_path):
    proc = run_pneumo(["sweep", "smoke", "trainer.epochs=1", f"+hydra.job.env_set.HUB_TOKEN={TOKEN}"], tmp_path,
                      env_extra={"KAGGLE_USERNAME": USER, "KAGGLE_KEY": KEY})
    needles = [USER.encode(), KEY.encode(), TOKEN.encode()]
    assert (tmp_path / "mlruns" / "mlflow.db").stat().st_size > 0
    assert list((tmp_path / "multirun").rglob("*.log"))  # the Hydra outputs exist and were searched
    assert occurrences(tmp_path / "mlruns", needles) == []
    assert occurrences(tmp_path / "multirun", needles) == []
    for needle in ("7f3a9c", KEY, TOKEN):
        assert needle not in proc.stdout + proc.stderr


def test_scrub_survives_the_environment_changing_under_it(monkeypatch):
    """MLflow's telemetry thread sets and deletes variables while a job scrubs its params
    (a KeyError from `os.environ.items()` crashed a job at start)."""
    import os
    import sys
    import threading

    from pneumo import tracking

    monkeypatch.setenv("KAGGLE_KEY", KEY)
    stop = threading.Event()

    def flap():
        while not stop.is_set():
            os.environ["_PNEUMO_FLAPPING"] = "x"
            os.environ.pop("_PNEUMO_FLAPPING", None)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    thread = threading.Thread(target=flap, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            assert tracking.scrub(f"key {KEY}") == "key ***"
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
