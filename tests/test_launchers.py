"""Hydra launchers: joblib runs jobs in parallel for real; the SLURM one is checked up to `sbatch`.

SLURM is not installed here: a stand-in `sbatch` on PATH keeps the batch script
submitit writes from pneumo's launcher config and refuses the submission.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pneumo.config import paths, schema
from pneumo.record import names

from helpers import TOY, client_for, run_pneumo

schema.register()


def hydra_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


@pytest.mark.parametrize("launcher, expected", [
    ("submitit_slurm", {"timeout_min": 60, "gpus_per_node": None}),  # the plugin's own defaults
    ("slurm", {"timeout_min": 240, "gpus_per_node": 1, "tasks_per_node": 1}),  # conf/hydra/launcher/slurm.yaml
])
def test_slurm_launcher_configs_compose(launcher, expected):
    cfg = hydra_cfg(f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu")
    launcher_cfg = cfg.launcher
    assert launcher_cfg._target_.endswith("SlurmLauncher")
    assert launcher_cfg.partition == "gpu"
    for key, value in expected.items():
        assert launcher_cfg[key] == value, key


@pytest.mark.slow  # ~10-20 s: out of the fast suite, in make test-all
def test_slurm_sweep_submits_one_array_task_per_job(tmp_path):
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    fake = {"sbatch": f'cp "$1" {script}\necho "sbatch: no SLURM here (test)" >&2\nexit 1\n',
            "srun": "exit 1\n"}  # submitit looks for srun before it builds a script
    for name, body in fake.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    proc = run_pneumo(["train", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                       "hydra.launcher.timeout_min=90", "model=cnn,resnet", *TOY],
                      tmp_path, env_extra={"PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=False, timeout=300)
    assert proc.returncode != 0 and "no SLURM here" in proc.stdout + proc.stderr
    text = script.read_text()
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--ntasks-per-node=1", "--cpus-per-task=8",
                 "--job-name=pneumo"):
        assert f"#SBATCH {line}\n" in text, line
    assert re.search(r"#SBATCH --array=0-1%\d+\n", text)  # the 2-job grid, one array task each
    assert "submitit.core._submit" in text
    # Each job's pickled task (pneumo's Hydra main) was written for the nodes to run.
    assert len(list((tmp_path / "multirun" / ".submitit").glob("*.pkl"))) >= 1


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_against_one_sqlite_store(tmp_path):
    # Both jobs open a store that does not exist yet (new_store): its tables are created once, under a lock.
    # Each job waits at its start until both have arrived (pneumo.runtime.testpoints): run one after
    # the other, the first would wait alone and fail. Evidence that needs no clock.
    proc = run_pneumo(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=cnn,resnet",
                       "experiment=parallel", *TOY, "tuner.max_trials=2"], tmp_path,
                      env_extra={"PNEUMO_RENDEZVOUS": f"{tmp_path}/rendezvous:2"}, fresh=True, new_store=True)
    log = proc.stdout + proc.stderr
    for trouble in ("database is locked", "OperationalError", "marked job runs of killed processes"):
        assert trouble not in log, trouble
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("parallel")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2 and all(j.info.status == "FINISHED" for j in jobs)
    assert len({j.data.tags["pid"] for j in jobs}) == 2  # two processes, at once (the rendezvous)
    assert len(list((tmp_path / "rendezvous").iterdir())) == 2
    for job in jobs:
        trials = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{job.info.run_id}'")
        assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
        assert all(client.get_metric_history(t.info.run_id, names.VAL_AUC) for t in trials)
        assert job.data.metrics[names.TRIALS_COMPLETED] == 2
        assert {names.TEST_AUC, names.VAL_AUC, names.DATA_LOAD_S} <= job.data.metrics.keys()
        arts = {a.path for a in client.list_artifacts(job.info.run_id, "evaluation")}
        assert {"evaluation/roc.png", "evaluation/confusion_matrix.json"} <= arts
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert sorted(v.run_id for v in versions) == sorted(j.info.run_id for j in jobs)
    assert all(Path(j.info.artifact_uri.removeprefix("file://")).is_relative_to(tmp_path) for j in jobs)
