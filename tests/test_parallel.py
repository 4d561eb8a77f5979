"""Parallel writers: two sweeps started at the same moment into one experiment lose nothing.

Once against the default sqlite store, once against a real `mlflow server`.
(Hydra's joblib launcher, 2 jobs at once, is tests/test_launchers.py.)
The race those sweeps can lose on their first write, a new data set, is also tried on its own, fast.
"""

from __future__ import annotations

import sys
import threading

import pytest

from pneumo.record import names
from pneumo.record.jobs import log_dataset

from helpers import clean_env, client_for, empty_store, pneumo_popen
from store_fixture import start_server, stop

EVALUATION = {"confusion_matrix.png", "confusion_matrix.json", "roc.png", "pr.png", "calibration.png",
              "training_curves.png", "classification_report.txt", "test_predictions.csv",
              "heatmaps.png", "heatmaps.json", "error_gallery.png", "errors.csv", "val_predictions.csv"}


def start_sweep(tmp, name, seed, env):
    argv = ["sweep", "smoke", "model=cnn", "trainer.epochs=1", f"seed={seed}", "data.n_images=48", "data.image_px=48",
            "evaluation.bootstrap=50", f"paths.cache={tmp}/cache", f"tracking.store={tmp}/mlruns",
            f"hydra.sweep.dir={tmp}/{name}"]
    return pneumo_popen(argv, tmp, env, tmp / f"{name}.log")


def run_two_at_once(tmp, env) -> None:
    procs = {name: start_sweep(tmp, name, seed, env) for name, seed in (("a", 1), ("b", 2))}
    codes = {name: p.wait(timeout=900) for name, p in procs.items()}
    for name, code in codes.items():
        out = (tmp / f"{name}.log").read_text()
        assert code == 0, out[-5000:]
        assert "database is locked" not in out


def assert_everything_recorded(client) -> None:
    exp = client.get_experiment_by_name("smoke")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2 and {j.info.status for j in jobs} == {"FINISHED"}  # 2 sweeps x model=cnn
    trials = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'trial'")
    assert len(trials) == 4 and {t.info.status for t in trials} == {"FINISHED"}  # 2 trials a job
    for t in trials:
        assert t.data.tags["mlflow.parentRunId"] in {j.info.run_id for j in jobs}
        assert t.data.params and len(client.get_metric_history(t.info.run_id, names.VAL_AUC)) == 1
    for j in jobs:
        assert {names.VAL_AUC, "test_auc", names.THRESHOLD} <= j.data.metrics.keys()
        assert len(j.data.params) > 40
        logged = {a.path.split("/")[-1] for a in client.list_artifacts(j.info.run_id, "evaluation")}
        assert logged == EVALUATION
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert sorted(v.run_id for v in versions) == sorted(j.info.run_id for j in jobs)


def test_jobs_logging_one_new_data_set_at_once_all_link_to_it(tmp_path):
    """MLflow looks a data set up and then inserts it, so jobs that log the same new one together race
    and the losers' inserts break its key: on CI a sweep's job failed this way against a server."""
    import mlflow

    uri = empty_store(tmp_path / "mlruns")
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("race")
    failures = []
    for digest in ("a" * 36, "b" * 36, "c" * 36):  # each round a data set nobody has logged yet
        runs = [client.create_run(exp).info.run_id for _ in range(6)]
        start = threading.Barrier(len(runs))

        def job(run_id, digest=digest, start=start):
            start.wait()
            try:
                with mlflow.start_run(run_id=run_id):
                    log_dataset("cache", digest, str(tmp_path), {"train": 1})
            except Exception as e:  # noqa: BLE001 -- collected, asserted below
                failures.append(e)

        threads = [threading.Thread(target=job, args=(r,)) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[0]
        for run_id in runs:
            (logged,) = client.get_run(run_id).inputs.dataset_inputs
            assert logged.dataset.digest == digest


@pytest.mark.slow
@pytest.mark.ci
def test_two_sweeps_at_once_into_the_sqlite_store(tmp_path):
    run_two_at_once(tmp_path, clean_env())
    assert_everything_recorded(client_for(tmp_path))


@pytest.mark.slow
def test_two_sweeps_at_once_against_a_tracking_server(tmp_path):
    import mlflow

    log = tmp_path / "server.log"
    cmd = lambda port: [sys.executable, "-m", "mlflow", "server",  # noqa: E731
                        "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
                        "--port", str(port), "--workers", "2"]
    server, port = start_server(cmd, clean_env(), log, "/health")
    uri = f"http://127.0.0.1:{port}"
    try:
        run_two_at_once(tmp_path, clean_env({"MLFLOW_TRACKING_URI": uri}))
        mlflow.set_tracking_uri(uri)
        assert_everything_recorded(mlflow.MlflowClient(uri))
        assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing went to the local store
    finally:
        stop(server)
