"""Keras Tuner's distributed mode through pneumo: one chief, two workers, one shared MLflow server.

The store is what a cluster would use: an `mlflow server` on PostgreSQL with a
proxied artifact store. The chief and the workers are the installed app as
subprocesses of one job (same overrides but `distributed.*`), talking to the
oracle over gRPC on 127.0.0.1 and sharing the tuner directory on disk.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from pneumo.config.errors import ConfigError
from pneumo.record import names
from pneumo.search import distributed

from helpers import TOY, clean_env, pneumo_popen, pneumo_process, require
from store_fixture import ADDRESS_IN_USE, free_port, start_server

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
TRIALS = 4
JOB = [*(o for o in TOY if not o.startswith("tuner.max_trials")), f"tuner.max_trials={TRIALS}",
       "trainer.epochs=2", "data.n_images=64", "experiment=distributed"]


def _pg(name: str) -> str:
    found = shutil.which(name) or next((f"{b}/{name}" for b in reversed(PG_BIN) if Path(b, name).exists()), None)
    require(found is not None, f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


@contextmanager
def postgres():
    """A throwaway PostgreSQL on 127.0.0.1; yields its SQLAlchemy URI (psycopg2: the driver pneumo installs).

    PostgreSQL refuses to run as root, so under root (CI) it runs as the `postgres` user.
    """
    initdb, pg_ctl, createdb = _pg("initdb"), _pg("pg_ctl"), _pg("createdb")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="pneumo-pg-"))  # not tmp_path: postgres cannot enter pytest's 0700 dirs
    if as_user:
        shutil.chown(root, "postgres")
    data = root / "db"
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    try:
        run(initdb, "-D", str(data), "-A", "trust", "-U", "pneumo", "--no-sync")
        for attempt in range(3):  # the port may be taken between free_port() and the server's bind
            port = free_port()
            started = subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
                                      "start", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"],
                                     capture_output=True, timeout=120)
            if started.returncode == 0:
                break
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            if attempt == 2 or not ADDRESS_IN_USE.search(log):
                raise AssertionError(f"PostgreSQL did not start:\n{started.stderr.decode()[-2000:]}\n{log[-3000:]}")
        run(createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "pneumo", "mlflow")
        yield f"postgresql+psycopg2://pneumo@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], check=False, capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(backend: str, artifacts: Path):
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    cmd = lambda port: [str(mlflow_cli), "server", "--backend-store-uri", backend,  # noqa: E731
                        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
                        "--workers", "2"]
    proc, port = start_server(cmd, clean_env(), artifacts.parent / "mlflow-server.log", "/health", timeout=180)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)  # its own session: the server's uvicorn workers go too
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def pneumo(tmp: Path, name: str, uri: str, *overrides: str, env: dict | None = None):
    args = ["train", *JOB, *overrides, f"paths.cache={tmp}/cache", f"hydra.run.dir={tmp}/outputs/{name}"]
    return pneumo_popen(args, tmp, clean_env({"MLFLOW_TRACKING_URI": uri, **(env or {})}), tmp / f"{name}.log",
                        session=True)


@pytest.mark.slow
def test_chief_and_two_workers_share_one_search_on_a_postgres_backed_server(tmp_path):
    import mlflow

    with postgres() as db, mlflow_server(db, tmp_path / "artifacts") as uri:
        for attempt in range(3):  # the oracle's port may be taken between free_port() and the chief's bind
            experiment, procs = f"distributed-{attempt}", {}
            try:
                procs["chief"] = pneumo(tmp_path, "chief", uri, "distributed.role=chief", f"experiment={experiment}",
                                        f"distributed.oracle_port={free_port()}")
                # Both workers wait at their start until both are there (pneumo.runtime.testpoints), so
                # each asks the oracle for its first trial while the other runs one: no worker can take the
                # whole budget alone, however the scheduler orders them.
                for w in ("w1", "w2"):
                    procs[w] = pneumo(tmp_path, w, uri, "distributed.role=worker", f"distributed.worker_id={w}",
                                      "distributed.wait_s=300", f"experiment={experiment}",
                                      env={"PNEUMO_RENDEZVOUS": f"{tmp_path}/rendezvous-{attempt}:2"})
                chief_rc = procs["chief"].wait(timeout=600)
                # Workers leave as soon as the oracle says the search is over, before the chief evaluates.
                worker_rc = {w: procs[w].wait(timeout=60) for w in ("w1", "w2")} if chief_rc == 0 else {}
            finally:
                for p in procs.values():
                    _stop(p)
            logs = {n: (tmp_path / f"{n}.log").read_text()[-3000:] for n in procs}
            if chief_rc == 0 or not ADDRESS_IN_USE.search(logs["chief"]):
                break
        assert chief_rc == 0, logs["chief"]
        assert worker_rc == {"w1": 0, "w2": 0}, logs

        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
        assert len(jobs) == 1  # workers never open a parent run of their own
        job = jobs[0]
        assert job.info.status == "FINISHED"
        assert names.TAG_ORACLE not in job.data.tags  # withdrawn when the search ended
        assert {names.TEST_AUC, names.TEST_SENSITIVITY, names.TEST_SPECIFICITY, names.VAL_AUC} <= job.data.metrics.keys()
        assert job.data.metrics[names.TRIALS_COMPLETED] == TRIALS

        trials = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'trial'")
        assert all(t.data.tags["mlflow.parentRunId"] == job.info.run_id for t in trials)
        ids = sorted(t.data.tags[names.TAG_TRIAL_ID] for t in trials)
        assert ids == [str(i) for i in range(TRIALS)]  # the whole budget, each trial once
        assert all(t.info.status == "FINISHED" for t in trials)
        ran_by = {t.data.tags[names.TAG_TUNER_ID] for t in trials}
        assert ran_by == {"worker-w1", "worker-w2"}  # trials run on both workers, never on the chief
        print("trials per worker:", {w: sum(t.data.tags[names.TAG_TUNER_ID] == w for t in trials) for w in ran_by})

        versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
        assert [v.run_id for v in versions] == [job.info.run_id]
        arts = {a.path for a in client.list_artifacts(job.info.run_id, "evaluation")}
        assert "evaluation/roc.png" in arts
        assert list((tmp_path / "artifacts").rglob("model.keras"))  # the shared artifact store holds the model


@pytest.mark.slow
def test_a_worker_without_a_chief_gives_up_naming_the_fix(tmp_path):
    proc = pneumo_process(
        ["train", *TOY, "experiment=lonely", "distributed.role=worker", "distributed.wait_s=2",
         f"paths.cache={tmp_path}/cache", f"tracking.store={tmp_path}/mlruns", f"hydra.run.dir={tmp_path}/outputs"],
        tmp_path, clean_env(), timeout=300)
    assert proc.returncode != 0
    assert "distributed.role=chief" in proc.stdout + proc.stderr


# -- the pieces, without training -------------------------------------------------------


@pytest.fixture
def env(monkeypatch):
    for name in (*distributed.ENV, "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "gpu_count", lambda: 0)
    yield os.environ
    for f in distributed._held_gpu_locks:
        f.close()
    distributed._held_gpu_locks.clear()


def test_roles_set_and_clear_keras_tuner_variables(env):
    distributed.prepare({"role": "chief", "oracle_port": 8123})
    assert (env["KERASTUNER_TUNER_ID"], env["KERASTUNER_ORACLE_IP"], env["KERASTUNER_ORACLE_PORT"]) == (
        "chief", "127.0.0.1", "8123")
    distributed.prepare({"role": None})  # the next job of a multirun in the same process
    assert not any(name in env for name in distributed.ENV)


@pytest.mark.parametrize("dcfg, message", [
    ({"role": "cheif"}, "distributed.role"),
    ({"role": "worker", "worker_id": "chief-2"}, "distributed.worker_id"),
])
def test_a_bad_role_or_worker_id_fails_before_anything_runs(env, dcfg, message):
    with pytest.raises(ConfigError, match=message):
        distributed.prepare(dcfg)


def test_a_role_typo_fails_at_the_command_line_before_data(tmp_path):
    proc = pneumo_process(
        ["train", "distributed.role=cheif", f"paths.cache={tmp_path}/cache", f"tracking.store={tmp_path}/mlruns",
         f"hydra.run.dir={tmp_path}/outputs"], tmp_path, clean_env(), timeout=300)
    assert proc.returncode != 0 and "distributed.role" in proc.stdout + proc.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mlruns").exists()


def test_each_process_takes_a_free_gpu_and_the_chief_none(env, tmp_path):
    claim = lambda role=None: distributed.claim_gpu(role, n_gpus=2, lock_dir=tmp_path)  # noqa: E731
    assert claim() == "0" and env["CUDA_VISIBLE_DEVICES"] == "0"
    assert claim() is None  # already chosen: a framework cannot switch GPUs mid-process
    del env["CUDA_VISIBLE_DEVICES"]
    assert claim() == "1"  # as a second process would: GPU 0 is held
    del env["CUDA_VISIBLE_DEVICES"]
    assert claim() in ("0", "1")  # more processes than GPUs: shared, with a warning
    del env["CUDA_VISIBLE_DEVICES"]
    assert claim("chief") == ""  # the oracle needs no GPU and must not reserve the workers' memory
    del env["CUDA_VISIBLE_DEVICES"]
    assert distributed.claim_gpu(None, n_gpus=1, lock_dir=tmp_path) is None  # one GPU: nothing to choose
    env["CUDA_VISIBLE_DEVICES"] = "3"  # set by SLURM or by hand: left alone
    assert claim() is None and env["CUDA_VISIBLE_DEVICES"] == "3"
