"""Ctrl-C and SIGTERM during a trial, sent to a real `pneumo` process (the installed script, as a user
types it): the job's run and its trial in flight end KILLED, every metric logged before stays, and the
same command resumes the search, keeping the finished trials and running the interrupted one again.

The signal lands while the job is held at a kill point inside a trial's second epoch (PNEUMO_HOLD:
pneumo.runtime.testpoints), or waits at its start for a peer that never comes (PNEUMO_RENDEZVOUS), so it
is never timed from outside.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from pneumo.record import names
from pneumo.runtime import testpoints

from helpers import TOY, clean_env, client_for, isolate, pneumo_popen, run_pneumo, seed_store

# test_resume's toy search, two epochs a trial: an interrupted trial has one epoch logged.
JOB = ["train", "experiment=resume", "data.n_images=64", "data.image_px=48", "trainer.image_size=32",
       "trainer.epochs=2", "trainer.batch_size=16", "tuner.max_trials=3", "evaluation.bootstrap=50",
       "trainer.early_stopping=null", "trainer.chance_z=null"]
HELD_WITHIN_S = 600  # the job reaches its second model's second epoch (a new interpreter: ~1 min here)


def wait_for(marker: Path, proc, log: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, f"never got there:\n{log.read_text()[-4000:]}"
        time.sleep(0.1)


def stopped(tmp: Path, name: str, sig: signal.Signals, group: bool):
    """Run the job until it holds inside its second model's second epoch, send it `sig` (to its process
    group, as a terminal's Ctrl-C, or to its pid, as `kill`), and return its exit status and log."""
    held = tmp / f"held-{name}"
    env = clean_env({testpoints.KILL_AT: "mid_epoch", testpoints.HOLD: str(held)})
    log = tmp / f"{name}.log"
    proc = pneumo_popen([*JOB, *isolate(tmp)], tmp, env, log, session=True, fresh=True)
    wait_for(held / str(proc.pid), proc, log, HELD_WITHIN_S)
    (os.killpg if group else os.kill)(proc.pid, sig)
    return proc.wait(timeout=120), log.read_text()


def trials(client, exp_id) -> dict[str, tuple[str, str, int]]:
    """{run id: (trial id, status, epochs of val_auc logged)} of the job's trial runs."""
    found = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'")
    return {r.info.run_id: (r.data.tags[names.TAG_TRIAL_ID], r.info.status,
                            len(client.get_metric_history(r.info.run_id, names.VAL_AUC))) for r in found}


@pytest.mark.slow
def test_ctrl_c_and_sigterm_mid_trial_end_the_runs_killed_and_the_same_command_resumes(tmp_path):
    seed_store(tmp_path / "mlruns")
    client = client_for(tmp_path)

    # Ctrl-C in the second trial: Python's KeyboardInterrupt, so the process ends by SIGINT, as a shell expects.
    code, log = stopped(tmp_path, "ctrl-c", signal.SIGINT, group=True)
    assert code == -signal.SIGINT, log[-4000:]
    assert "stopped by Ctrl-C" in log
    exp_id = client.get_experiment_by_name("resume").experiment_id
    (job,) = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'")
    assert job.info.status == "KILLED"  # not FAILED, not left RUNNING
    first = trials(client, exp_id)
    assert sorted(first.values()) == [("0", "FINISHED", 2), ("1", "KILLED", 1)]  # the epoch logged before stays

    # The same command resumes (the first trial kept, the second run again) and is stopped by SIGTERM in the
    # third: it unwinds as on Ctrl-C, then exits 143, as a shell reports a process SIGTERM ended.
    code, log = stopped(tmp_path, "sigterm", signal.SIGTERM, group=False)
    assert code == 128 + signal.SIGTERM, log[-4000:]
    assert "stopped by SIGTERM" in log
    assert client.get_run(job.info.run_id).info.status == "KILLED"
    second = trials(client, exp_id)
    assert {k: second[k] for k in first} == first  # nothing recorded before is changed
    assert sorted(v for k, v in second.items() if k not in first) == [("1", "FINISHED", 2), ("2", "KILLED", 1)]

    # And once more, left alone: the search completes in the same job run, no trial finished twice.
    done = run_pneumo(JOB, tmp_path, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    jobs = client.search_runs([exp_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'")
    assert [(j.info.run_id, j.info.status) for j in jobs] == [(job.info.run_id, "FINISHED")]
    final = trials(client, exp_id)
    assert {k: final[k] for k in second} == second
    assert sorted(t for t, status, _ in final.values() if status == "FINISHED") == ["0", "1", "2"]
    assert not client.search_runs([exp_id], "attributes.status = 'RUNNING'")
    assert [v.run_id for v in client.search_model_versions(f"name='{names.MODEL_NAME}'")] == [job.info.run_id]


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, -signal.SIGINT, "Ctrl-C"),
                                              (signal.SIGTERM, 128 + signal.SIGTERM, "SIGTERM")])
def test_a_signal_before_anything_is_recorded_exits_as_a_shell_expects(tmp_path, sig, code, said):
    """A job forked from the tests' pre-imported interpreter (tests/zygote.py), which leaves as a new one
    would: by SIGINT after a KeyboardInterrupt, 143 after a SIGTERM. The store is never opened."""
    arrived, log = tmp_path / "arrived", tmp_path / "job.log"
    env = clean_env({testpoints.RENDEZVOUS: f"{arrived}:2"})  # waits at its start for a second job
    proc = pneumo_popen(["train", *TOY, *isolate(tmp_path)], tmp_path, env, log, session=True)
    wait_for(arrived / str(proc.pid), proc, log, 300)
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=60) == code, log.read_text()[-4000:]
    assert f"stopped by {said}" in log.read_text()
    assert not (tmp_path / "mlruns").exists()
