"""A failing trial is recorded and the search goes on; a policy ends a job; a multirun survives a bad job."""

from __future__ import annotations

import pytest

from pneumo.record import names

from helpers import TOY, client_for, run_pneumo

pytestmark = pytest.mark.slow

# At 32 px, six or more pooling blocks shrink the map to nothing: those trials raise in build.
SOMETIMES_BROKEN = "model.blocks={int:[3,7]}"


def trials(client, exp_name):
    exp = client.get_experiment_by_name(exp_name)
    return client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'trial'")


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path):
    proc = run_pneumo(["train", *TOY, "experiment=failing", SOMETIMES_BROKEN, "tuner.max_trials=6", "seed=3",
                       "tuner.max_retries_per_trial=0", "tuner.max_consecutive_failed_trials=6"], tmp_path)
    client = client_for(tmp_path)
    runs = trials(client, "failing")
    failed = [r for r in runs if r.info.status == "FAILED"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert failed and finished, [(r.data.params.get("model.blocks"), r.info.status) for r in runs]
    for run in failed:
        blocks = int(run.data.params["model.blocks"])
        assert blocks >= 6
        error = client.download_artifacts(run.info.run_id, "error.txt")
        assert "Computed output size would be zero or negative" in open(error).read()
        # the error tag names the key that broke the build (the others tried alone build), not just Keras' words
        assert run.data.tags[names.TAG_ERROR].startswith(
            f"keras_tuner.src.errors.FailedTrialError: model.blocks={blocks} does not build a model at "
            "trainer.image_size=32: "), run.data.tags[names.TAG_ERROR]
        assert "(narrow the space in the config: model.blocks: {'int': [3, 7]" in run.data.tags[names.TAG_ERROR]
    job = client.search_runs([runs[0].info.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")[0]
    assert job.info.status == "FINISHED" and proc.returncode == 0
    assert job.data.metrics[names.TRIALS_FAILED] == len(failed)
    assert job.data.metrics[names.TRIALS_COMPLETED] == len(finished)


def test_consecutive_failures_end_the_job_with_a_summary(tmp_path):
    proc = run_pneumo(["train", *TOY, "experiment=stop", SOMETIMES_BROKEN, "tuner.max_trials=12", "seed=3",
                       "tuner.max_retries_per_trial=0", "tuner.max_consecutive_failed_trials=1"], tmp_path,
                      check=False)
    assert proc.returncode != 0
    said = [line for line in proc.stderr.splitlines() if line.startswith("pneumo: ")]
    assert len(said) == 1 and said[0].startswith("pneumo: search stopped: Number of consecutive failures exceeded "
                                                 "the limit of 1 (tuner.max_consecutive_failed_trials); last failure: "
                                                 "model.blocks="), proc.stderr[-3000:]
    assert said[0].count("see the FAILED trial runs") == 1 and said[0].endswith("; see the FAILED trial runs")
    assert "Traceback" not in proc.stderr
    client = client_for(tmp_path)
    runs = trials(client, "stop")
    assert [r.info.status for r in runs].count("FAILED") == 1
    job = client.search_runs([runs[0].info.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")[0]
    assert job.info.status == "FAILED"


@pytest.mark.ci
def test_a_failed_job_does_not_stop_the_multirun(tmp_path):
    # model.blocks=9 cannot build at 32 px: that job fails up front; the other still runs.
    proc = run_pneumo(["train", "-m", *TOY, "experiment=grid", "model.blocks=9,3"], tmp_path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "job FAILED:" in out and "model.blocks=9" in out and "do not build a model" in out
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("grid")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 1 and jobs[0].info.run_name.endswith("model.blocks=3")
    assert jobs[0].info.status == "FINISHED"


def test_an_oversized_model_fails_its_trial_not_the_search(tmp_path):
    # Keras Tuner's max_model_size turns a would-be out-of-memory model into a failed trial.
    run_pneumo(["train", *TOY, "experiment=oom", "model.dense_units={choice:[16,4096,8192],default:16}", "tuner.max_trials=4",
                "tuner.max_model_size=1000000", "tuner.max_consecutive_failed_trials=4", "seed=2"], tmp_path)
    client = client_for(tmp_path)
    runs = trials(client, "oom")
    statuses = [(r.data.params["model.dense_units"], r.info.status) for r in runs]
    assert all((units == "16") == (status == "FINISHED") for units, status in statuses), statuses
    assert {"FINISHED", "FAILED"} <= {status for _, status in statuses}, statuses
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "Oversized model" in open(client.download_artifacts(failed.info.run_id, "error.txt")).read()


def test_a_diverged_trial_is_recorded_failed_not_scored(tmp_path):
    # Adam's first step moves each weight by about the learning rate, whatever its gradient: at 1e30 (finite:
    # an infinite one is refused at start-up), four conv blocks deep, the next forward pass overflows float32
    # (two blocks only reached a loss of 3e29; plain SGD sometimes just saturated the sigmoid)
    proc = run_pneumo(["train", *TOY, "experiment=nan", "optimizer=adam", "optimizer.learning_rate=1e30", "model.blocks=4",
                       "tuner.max_trials=2", "tuner.max_retries_per_trial=0"], tmp_path, check=False)
    assert proc.returncode != 0 and "no trial completed" in proc.stderr and "Traceback" not in proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("pneumo: ")]
    assert len(said) == 1 and "search stopped: no trial completed (2 failed); last failure: " in said[0], said
    assert "diverged (learning rate too high?) at optimizer.learning_rate=1e+30" in said[0], said
    assert said[0].count("see the FAILED trial runs") == 1, said
    client = client_for(tmp_path)
    runs = trials(client, "nan")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    for run in runs:
        assert "diverged" in open(client.download_artifacts(run.info.run_id, "error.txt")).read()


def test_a_trial_no_better_than_chance_is_recorded_failed_and_nothing_is_registered(tmp_path):
    # chance_z=100: every model's val AUC is "within 100 standard errors of 0.5" on 7 images
    proc = run_pneumo(["train", *TOY, "experiment=chance", "trainer.chance_z=100", "tuner.max_trials=2",
                       "tuner.max_retries_per_trial=0"], tmp_path, check=False)
    assert proc.returncode != 0 and "no trial completed" in proc.stderr and "Traceback" not in proc.stderr
    client = client_for(tmp_path)
    runs = trials(client, "chance")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    for run in runs:
        assert "no better than chance" in open(client.download_artifacts(run.info.run_id, "error.txt")).read()
    assert client.search_model_versions(f"name='{names.MODEL_NAME}'") == []
