"""Kill a job with SIGKILL mid-search, rerun the same command: the search completes, nothing twice.

The kills are real SIGKILLs at fixed points of the job (PNEUMO_KILL_AT: inside an epoch
through a Keras callback, or at testpoints.fault_point), never timed from outside. The first test
kills and resumes the installed `pneumo` script in new interpreters, as a user's commands run;
Ctrl-C and SIGTERM are tests/test_signals.py.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pneumo.record import names, provenance
from pneumo.record.client import Store

from helpers import client_for, run_pneumo

JOB = ["train", "experiment=resume", "data.n_images=64", "data.image_px=48", "trainer.image_size=32",
       "trainer.epochs=3", "trainer.batch_size=16", "tuner.max_trials=3", "evaluation.bootstrap=50",
       "trainer.early_stopping=null", "trainer.chance_z=null"]


def job(tmp: Path, *extra: str, fresh: bool = False, **env) -> subprocess.CompletedProcess:
    """The job as a new process, its outputs under tmp (tests/helpers.py); env adds variables.
    fresh: the installed script in a new interpreter, not a fork of the tests' pre-imported one."""
    return run_pneumo([*JOB, *extra], tmp, env_extra=env, check=False, timeout=600, fresh=fresh)


store = client_for


def trial_runs(client, exp_id):
    return client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = 'trial'")


def killed_at(tmp: Path, point: str, extra=(), fresh: bool = False) -> None:
    """Run the job until PNEUMO_KILL_AT=point SIGKILLs it (no clean-up of any kind)."""
    proc = job(tmp, *extra, fresh=fresh, PNEUMO_KILL_AT=point)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.ci  # a sweep killed and resumed through the installed `pneumo` script, as a user runs it
def test_killed_job_resumes_without_rerunning_or_duplicating(tmp_path):
    killed_at(tmp_path, "mid_epoch", fresh=True)  # the second trial, after the first batch of its second epoch
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    before = {r.info.run_id: r for r in trial_runs(client, exp_id)}
    assert sorted(r.info.status for r in before.values()) == ["FINISHED", "RUNNING"]
    interrupted = next(r for r in before.values() if r.info.status == "RUNNING")
    assert len(client.get_metric_history(interrupted.info.run_id, "val_auc")) == 1  # one epoch done, one cut

    rerun = job(tmp_path, fresh=True)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    # Its progress lines count the trial finished before the kill, and its score as the best so far.
    kept = max(m.value for r in before.values() if r.info.status == "FINISHED"
               for m in client.get_metric_history(r.info.run_id, "val_auc"))
    line = next(x for x in (rerun.stdout + rerun.stderr).splitlines() if "epoch 1/3" in x)
    shown, best = (float(re.search(p + r" (\d\.\d+)", line).group(1)) for p in ("val_auc", "so far"))
    assert "trial 2/3" in line and best == pytest.approx(max(kept, shown), abs=6e-4), line

    jobs = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 1 and jobs[0].info.status == "FINISHED"  # the same parent run, resumed
    runs = trial_runs(client, exp_id)
    assert all(r.data.tags["mlflow.parentRunId"] == jobs[0].info.run_id for r in runs)
    finished = [r.data.tags[names.TAG_TRIAL_ID] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == 3  # the whole budget, no trial twice
    for run_id, old in before.items():  # completed trials were kept, not rerun
        if old.info.status == "FINISHED":
            assert client.get_run(run_id).info.status == "FINISHED"
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert [r.info.run_id for r in killed] == [interrupted.info.run_id]  # the interrupted trial, ended as KILLED
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert jobs[0].data.metrics[names.TRIALS_COMPLETED] == 3
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert [v.run_id for v in versions] == [jobs[0].info.run_id]

    # A finished job is not run again by the same command (forked: a new interpreter would show nothing more).
    again = job(tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout + again.stderr
    assert len(trial_runs(client, exp_id)) == len(runs)
    assert len(client.search_model_versions(f"name='{names.MODEL_NAME}'")) == 1


SHORT = ["tuner.max_trials=2", "trainer.epochs=1"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_search", "during_evaluation", "before_register"])
def test_kill_after_the_search_resumes_to_exactly_one_version(tmp_path, point):
    killed_at(tmp_path, point, SHORT)
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    trials_before = {r.info.run_id for r in trial_runs(client, exp_id) if r.info.status == "FINISHED"}
    assert len(trials_before) == 2

    rerun = job(tmp_path, *SHORT)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    jobs = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 1 and jobs[0].info.status == "FINISHED"
    assert {r.info.run_id for r in trial_runs(client, exp_id)} == trials_before  # no trial rerun
    assert "test_auc" in jobs[0].data.metrics
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert [v.run_id for v in versions] == [jobs[0].info.run_id]


@pytest.mark.slow
def test_a_killed_job_that_is_not_rerun_is_marked_killed_with_its_trials_by_the_next_job(tmp_path):
    killed_at(tmp_path, "mid_epoch:1:0", SHORT)  # inside the second trial's only epoch
    client = store(tmp_path)
    exp_id = client.get_experiment_by_name("resume").experiment_id
    (dead,) = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    trials = {r.info.run_id: r.info.status for r in trial_runs(client, exp_id)}
    assert sorted(trials.values()) == ["FINISHED", "RUNNING"]

    other = job(tmp_path, *SHORT, "seed=7")
    assert other.returncode == 0, other.stderr[-4000:]
    assert "marked job runs of killed processes as KILLED" in other.stdout + other.stderr
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    after = {run_id: client.get_run(run_id).info.status for run_id in trials}
    assert after == {run_id: "KILLED" if status == "RUNNING" else status for run_id, status in trials.items()}
    jobs = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert sorted(j.info.status for j in jobs) == ["FINISHED", "KILLED"]
    assert not client.search_runs([exp_id], "attributes.status = 'RUNNING'")


@pytest.mark.slow
def test_corrupt_tuner_state_gives_a_way_on(tmp_path):
    killed_at(tmp_path, "after_search", SHORT)
    oracle = next((tmp_path / "cache" / "tuner").rglob("oracle.json"))
    oracle.write_text(oracle.read_text()[:40])  # half-written
    broken = job(tmp_path, *SHORT)
    assert broken.returncode != 0
    assert str(oracle.parent) in broken.stderr and "restart=true" in broken.stderr
    assert "Traceback" not in broken.stderr
    fresh = job(tmp_path, *SHORT, "restart=true")
    assert fresh.returncode == 0, fresh.stderr[-4000:]
    client = store(tmp_path)
    assert len(client.search_model_versions(f"name='{names.MODEL_NAME}'")) == 1


# -- whose runs the next job may end: same host, pid gone or reused ---------------------------


@pytest.fixture(scope="module")
def reap_store(tmp_path_factory):
    client = store(tmp_path_factory.mktemp("reap"))
    client.search_experiments()  # create the store's tables once
    return client


@pytest.fixture(scope="module")
def live_process():
    """A process that is alive for the whole module: (pid, its start time)."""
    proc = subprocess.Popen(["sleep", "600"])
    deadline = time.monotonic() + 10
    while provenance.process_start(proc.pid) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc.pid, provenance.process_start(proc.pid)
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("case, ended", [
    ("this host, pid gone", True),
    ("this host, pid alive, same process", False),
    ("this host, pid alive, reused by a later process", True),
    ("this host, pid alive, no start time recorded", False),  # runs logged before pid.started: can't tell
    ("another host, pid gone here", False),  # its process may be running there: not ours to judge
])
def test_the_next_job_ends_only_runs_whose_process_is_gone(reap_store, live_process, case, ended):
    client, (pid, started) = reap_store, live_process
    host = "another-host.example" if "another host" in case else socket.gethostname()
    tags = {
        "this host, pid gone": {"pid": str(dead_pid()), "pid.started": str(time.time() - 60)},
        "this host, pid alive, same process": {"pid": str(pid), "pid.started": str(started)},
        "this host, pid alive, reused by a later process": {"pid": str(pid), "pid.started": str(started - 3600)},
        "this host, pid alive, no start time recorded": {"pid": str(pid), "pid.started": ""},
        "another host, pid gone here": {"pid": str(dead_pid()), "pid.started": str(time.time() - 60)},
    }[case]
    exp_id = client.create_experiment(f"reap {case}")
    job = client.create_run(exp_id, tags={names.TAG_ROLE: "job", names.TAG_HOST: host, **tags}).info.run_id
    trial = client.create_run(exp_id, tags={names.TAG_ROLE: "trial", "mlflow.parentRunId": job}).info.run_id
    done = client.create_run(exp_id, tags={names.TAG_ROLE: "trial", "mlflow.parentRunId": job}).info.run_id
    client.set_terminated(done, "FINISHED")

    assert Store(client.tracking_uri).reap(exp_id) == int(ended)
    expected = "KILLED" if ended else "RUNNING"
    assert (client.get_run(job).info.status, client.get_run(trial).info.status) == (expected, expected)
    assert client.get_run(done).info.status == "FINISHED"  # a finished trial stays what it was


def test_the_mid_epoch_kill_point_is_the_only_per_batch_hook_and_only_when_asked(monkeypatch):
    """A per-batch callback costs a device sync per step on a GPU: a job's own callbacks have none."""
    import keras
    import numpy as np

    from pneumo.config import defaults
    from pneumo.search.fit import keras_callbacks as callbacks

    def per_batch(cbs):
        return [c for c in cbs if type(c).on_train_batch_end is not keras.callbacks.Callback.on_train_batch_end]

    trainer, y_val = defaults.option("trainer", "default"), np.array([0, 1, 1, 0, 1])
    monkeypatch.delenv("PNEUMO_KILL_AT", raising=False)
    assert len(callbacks(trainer, y_val)) == 3 and per_batch(callbacks(trainer, y_val)) == []
    monkeypatch.setenv("PNEUMO_KILL_AT", "after_search")  # a kill point outside the fit: no hook either
    assert per_batch(callbacks(trainer, y_val)) == []
    for spec, at in (("mid_epoch", (1, 1)), ("mid_epoch:0", (0, 1)), ("mid_epoch:2:0", (2, 0))):
        monkeypatch.setenv("PNEUMO_KILL_AT", spec)
        (kill,) = per_batch(callbacks(trainer, y_val))
        assert (kill.trial, kill.epoch) == at
