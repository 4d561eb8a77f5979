"""Kill a job with SIGKILL mid-search, rerun the same command: the search completes, nothing twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import clean_env, client_for, isolate

from pneumo import metrics

pytestmark = pytest.mark.slow

JOB = ["train", "experiment=resume", "data.n_images=64", "data.image_px=48", "trainer.image_size=32",
       "trainer.epochs=3", "trainer.batch_size=16", "tuner.max_trials=3", "evaluation.bootstrap=50",
       "trainer.early_stopping=null", "trainer.chance_z=null"]


def command(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "pneumo", *JOB, *isolate(tmp)]


env = clean_env  # the job's environment: no inherited MLflow run or store
store = client_for


def trial_runs(client, exp_id):
    return client.search_runs([exp_id], f"tags.`{metrics.TAG_ROLE}` = 'trial'")


def kill_when(tmp: Path, ready, timeout=300) -> None:
    """Start the job and SIGKILL it (no clean-up of any kind) once `ready(client, exp_id)`."""
    # Create the store first: a client opening a brand-new sqlite file while the job
    # creates its tables would race the job's schema migration.
    store(tmp).search_experiments()
    proc = subprocess.Popen(command(tmp), env=env(), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if not (tmp / "mlruns" / "mlflow.db").exists():
                continue
            client = store(tmp)
            exp = client.get_experiment_by_name("resume")
            if exp and ready(client, exp.experiment_id):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
        raise AssertionError(f"job ended (rc={proc.poll()}) before the kill point was reached")
    finally:
        if proc.poll() is None:
            proc.kill()


def second_trial_mid_epoch(client, exp_id) -> bool:
    runs = trial_runs(client, exp_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    running = [r for r in runs if r.info.status == "RUNNING"]
    return len(finished) >= 1 and any(client.get_metric_history(r.info.run_id, "val_auc") for r in running)


def test_killed_job_resumes_without_rerunning_or_duplicating(tmp_path):
    kill_when(tmp_path, second_trial_mid_epoch)
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    before = {r.info.run_id: r for r in trial_runs(client, exp_id)}
    done_before = {r.data.tags[metrics.TAG_TRIAL_ID] for r in before.values() if r.info.status == "FINISHED"}
    assert done_before and any(r.info.status == "RUNNING" for r in before.values())

    rerun = subprocess.run(command(tmp_path), env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]

    jobs = client.search_runs([exp_id], f"tags.`{metrics.TAG_ROLE}` = 'job'")
    assert len(jobs) == 1 and jobs[0].info.status == "FINISHED"  # the same parent run, resumed
    runs = trial_runs(client, exp_id)
    assert all(r.data.tags["mlflow.parentRunId"] == jobs[0].info.run_id for r in runs)
    finished = [r.data.tags[metrics.TAG_TRIAL_ID] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3  # the whole budget, no trial twice
    for run_id, old in before.items():  # completed trials were kept, not rerun
        if old.info.status == "FINISHED":
            assert client.get_run(run_id).info.status == "FINISHED"
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed) == 1 and killed[0].info.run_id in before  # the interrupted trial, ended as KILLED
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert jobs[0].data.metrics[metrics.TRIALS_COMPLETED] == 3
    versions = client.search_model_versions(f"name='{metrics.MODEL_NAME}'")
    assert [v.run_id for v in versions] == [jobs[0].info.run_id]

    # A finished job is not run again by the same command.
    again = subprocess.run(command(tmp_path), env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr
    assert len(trial_runs(client, exp_id)) == len(runs)
    assert len(client.search_model_versions(f"name='{metrics.MODEL_NAME}'")) == 1


SHORT = ["tuner.max_trials=2", "trainer.epochs=1"]


@pytest.mark.parametrize("point", ["after_search", "during_evaluation", "before_register"])
def test_kill_after_the_search_resumes_to_exactly_one_version(tmp_path, point):
    killed = subprocess.run(command(tmp_path) + SHORT, env={**env(), "PNEUMO_KILL_AT": point}, cwd=tmp_path,
                            capture_output=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    trials_before = {r.info.run_id for r in trial_runs(client, exp_id) if r.info.status == "FINISHED"}
    assert len(trials_before) == 2

    rerun = subprocess.run(command(tmp_path) + SHORT, env=env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    jobs = client.search_runs([exp_id], f"tags.`{metrics.TAG_ROLE}` = 'job'")
    assert len(jobs) == 1 and jobs[0].info.status == "FINISHED"
    assert {r.info.run_id for r in trial_runs(client, exp_id)} == trials_before  # no trial rerun
    assert "test_auc" in jobs[0].data.metrics
    versions = client.search_model_versions(f"name='{metrics.MODEL_NAME}'")
    assert [v.run_id for v in versions] == [jobs[0].info.run_id]


def test_a_killed_job_that_is_not_rerun_is_marked_killed_by_the_next_job(tmp_path):
    subprocess.run(command(tmp_path) + SHORT, env={**env(), "PNEUMO_KILL_AT": "after_search"}, cwd=tmp_path,
                   capture_output=True, timeout=600)
    other = subprocess.run(command(tmp_path) + SHORT + ["seed=7"], env=env(), cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert other.returncode == 0, other.stderr[-4000:]
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    statuses = sorted(j.info.status for j in client.search_runs([exp_id], f"tags.`{metrics.TAG_ROLE}` = 'job'"))
    assert statuses == ["FINISHED", "KILLED"]


def test_corrupt_tuner_state_gives_a_way_on(tmp_path):
    subprocess.run(command(tmp_path) + SHORT, env={**env(), "PNEUMO_KILL_AT": "after_search"}, cwd=tmp_path,
                   capture_output=True, timeout=600)
    oracle = next((tmp_path / "cache" / "tuner").rglob("oracle.json"))
    oracle.write_text(oracle.read_text()[:40])  # half-written
    broken = subprocess.run(command(tmp_path) + SHORT, env=env(), cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert broken.returncode != 0
    assert str(oracle.parent) in broken.stderr and "restart=true" in broken.stderr
    assert "Traceback" not in broken.stderr
    fresh = subprocess.run(command(tmp_path) + SHORT + ["restart=true"], env=env(), cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-4000:]
    client = store(tmp_path)
    assert len(client.search_model_versions(f"name='{metrics.MODEL_NAME}'")) == 1
