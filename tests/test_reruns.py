"""Issue 12: the README's numbers are what the code produces; `pneumo rerun` reproduces a job or says
what moved; trainer.repeats gives a job's seed spread; a job records what decides its numbers.

One real smoke sweep (Hydra multirun, Keras Tuner, sqlite MLflow store in tmp) is shared by
the module; each test that changes it (a file of the data set, a logged artifact) puts it back.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pneumo.config import paths
from pneumo.record import names

from helpers import TOY, client_for, run_pneumo, tracking_uri
from store_fixture import copy_store, smoke_store  # noqa: F401

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("demo_results", paths.ROOT / "docs" / "demo_results.py")
demo_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_results)


@pytest.fixture(scope="module")
def smoke(smoke_store, tmp_path_factory) -> Path:
    """The shared `pneumo sweep smoke` (run exactly as a user runs it), copied: these tests add reruns to it."""
    return copy_store(smoke_store, tmp_path_factory.mktemp("smoke"))


def env(tmp: Path, **extra) -> dict:
    return {"MLFLOW_TRACKING_URI": tracking_uri(tmp), **extra}


def jobs(tmp: Path, experiment: str = "smoke", reruns: bool = False) -> dict:
    """{run name: run} of the experiment's job runs: the originals, or the reruns."""
    client = client_for(tmp)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'",
                              order_by=["attributes.start_time DESC"])
    return {r.info.run_name: r for r in runs if bool(r.data.tags.get(names.TAG_RERUN_OF)) == reruns}


def store_state(tmp: Path) -> tuple:
    client = client_for(tmp)
    return (len(client.search_runs([e.experiment_id for e in client.search_experiments()], "")),
            len(client.search_model_versions(f"name='{names.MODEL_NAME}'")))


def test_the_docs_quote_what_the_smoke_sweep_produces(smoke):
    """docs/results.md's smoke table: the same jobs, columns and test images anywhere; the same numbers on the
    machine and versions that wrote it, elsewhere each column within its own tolerance
    (demo_results.TOLERANCES, measured by docs/spread.py). No xfail hides a difference."""
    quoted = demo_results.quoted("smoke")
    assert quoted, f"{demo_results.README} has no results:smoke block"
    produced = demo_results.block(smoke / "mlruns", "smoke", "python docs/demo_results.py smoke")
    assert demo_results.differences(quoted, produced, demo_results.TOLERANCES["smoke"]) == [], (
        f"{demo_results.README}'s smoke numbers are not what this code produces; regenerate them with "
        f"`python docs/demo_results.py smoke`.\nquoted:\n{quoted}\nnow:\n{produced}")


def test_a_job_records_what_decides_its_numbers(smoke):
    for job in jobs(smoke).values():
        tags = job.data.tags
        assert tags[names.TAG_SEEDS] == "seed=42 data.seed=0 tuner.seed=42 evaluation.seed=0"
        assert tags[names.TAG_CONFIG] == "sweeps/smoke"
        assert tags[names.TAG_DETERMINISTIC] == "false"
        assert re.fullmatch(r"cpu: .+ \(\d+ cores(, avx\w*)?\)", tags[names.TAG_DEVICE]), tags[names.TAG_DEVICE]
        assert re.fullmatch(r"[0-9a-f]{64}", tags[names.TAG_SPLIT_DIGEST])
        for name in ("keras.backend", "keras.version", "tensorflow.version", "python.version", "numpy.version",
                     "scikit-learn.version", names.TAG_DATA_DIGEST, names.TAG_TEST_DIGEST):
            assert tags.get(name), name


def test_rerun_reproduces_a_smoke_job_exactly(smoke):
    original = jobs(smoke)["model=cnn"]
    before = store_state(smoke)
    proc = run_pneumo(["rerun", original.info.run_id], smoke, env_extra=env(smoke))
    assert "reproduced" in proc.stdout, proc.stdout[-2000:]
    rerun = jobs(smoke, reruns=True)["model=cnn"]  # the same name: the same job
    assert rerun.data.tags[names.TAG_RERUN_OF] == original.info.run_id and rerun.info.status == "FINISHED"
    assert rerun.info.experiment_id == original.info.experiment_id
    assert rerun.data.tags[names.TAG_JOB_KEY] == original.data.tags[names.TAG_JOB_KEY]
    compared = [names.VAL_AUC, names.THRESHOLD, *names.TEST_METRICS, *(b for m in names.TEST_METRICS for b in names.ci_names(m))]
    assert {k: rerun.data.metrics.get(k) for k in compared} == {k: original.data.metrics.get(k) for k in compared}
    client = client_for(smoke)
    read = lambda run: Path(client.download_artifacts(run.info.run_id, names.PREDICTIONS_ARTIFACT)).read_text()  # noqa: E731
    assert read(rerun) == read(original)  # every test image's probability, to the printed digit
    assert store_state(smoke) == (before[0] + 1 + 2, before[1])  # the rerun and its 2 trials; no new version
    rows = json.loads(run_pneumo(["compare", "--experiment", "smoke", "--format", "json"], smoke,
                                 env_extra=env(smoke), hydra=False).stdout)
    row = next(r for r in rows if r["run_id"] == rerun.info.run_id)
    assert row["rerun"]["of"] == original.info.run_id and row["rerun"]["differs"] is False
    assert row["rerun"]["max_diff"] == 0


def test_rerun_flags_a_job_that_no_longer_reproduces(smoke):
    """Another backend (JAX for the job's TensorFlow) is a change a rerun runs through, warns about and measures."""
    original = jobs(smoke)["model=resnet"]
    proc = run_pneumo(["rerun", original.info.run_id], smoke, env_extra=env(smoke, KERAS_BACKEND="jax"), check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "warning: keras.backend: tensorflow -> jax" in proc.stderr
    assert f"of {original.info.run_id}: DIFFERS beyond 0.0005" in proc.stdout
    rerun = jobs(smoke, reruns=True)["model=resnet"]
    assert rerun.data.tags["keras.backend"] == "jax"
    assert "keras.backend: tensorflow -> jax" in rerun.data.tags[names.TAG_RERUN_CHANGES]
    rows = json.loads(run_pneumo(["compare", "--experiment", "smoke", "--format", "json"], smoke,
                                 env_extra=env(smoke), hydra=False).stdout)
    flagged = next(r for r in rows if r["run_id"] == rerun.info.run_id)["rerun"]
    assert flagged["differs"] is True and flagged["diffs"]
    for name, (was, now) in flagged["diffs"].items():
        assert was == original.data.metrics.get(name) and abs(was - now) > 0.0005
    table = run_pneumo(["compare", "--experiment", "smoke", "--format", "table"], smoke, env_extra=env(smoke),
                       hydra=False).stdout
    assert "DIFFERS" in table


@pytest.mark.parametrize("change", ["data", "config", "trial", "override"])
def test_rerun_refuses_what_would_not_be_the_same_job(smoke, change):
    """Exit 2, one line naming what changed, nothing written to the store."""
    client = client_for(smoke)
    original = jobs(smoke)["model=cnn"]
    run_id, args, undo = original.info.run_id, [], lambda: None
    if change == "data":  # one more film in the job's data set
        root = Path(original.data.tags[names.TAG_TEST_SOURCE]).parent
        film = next((root / "train" / "NORMAL").iterdir())
        extra = film.with_name(f"copy-of-{film.name}")
        extra.write_bytes(film.read_bytes())
        undo, expected = extra.unlink, "the data differ from run"
    elif change == "config":  # as if conf/ had changed a default since the job ran
        logged = Path(client.download_artifacts(run_id, "config/config.yaml"))
        text = yaml.safe_load(logged.read_text())
        artifact = Path(original.info.artifact_uri.removeprefix("file://")) / "config" / "config.yaml"
        saved = artifact.read_text()
        text["trainer"]["epochs"] = 3
        artifact.write_text(yaml.safe_dump(text))
        undo, expected = (lambda: artifact.write_text(saved)), "trainer.epochs: 3 -> 2"
    elif change == "trial":
        run_id = client.search_runs([original.info.experiment_id],
                                    f"tags.`mlflow.parentRunId` = '{run_id}'")[0].info.run_id
        expected = f"is not a job; rerun its job, run {original.info.run_id}"
    else:
        args, expected = ["model.dropout=0.1"], "only where things go or how it is driven may be added"
    before = store_state(smoke)
    try:
        proc = run_pneumo(["rerun", run_id, *args], smoke, env_extra=env(smoke), check=False)
    finally:
        undo()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert store_state(smoke) == before


def test_repeats_give_each_job_a_seed_spread(smoke):
    # One of the smoke sweep's two jobs, repeated: what a repeat records does not depend on the model.
    run_pneumo(["sweep", "smoke", "model=cnn", "trainer.repeats=3", "experiment=smoke-seeds"], smoke)
    client, plain = client_for(smoke), jobs(smoke)
    repeated = jobs(smoke, "smoke-seeds")
    assert len(repeated) == 1
    for name, job in repeated.items():
        m = job.data.metrics
        assert m[names.SEED_REPEATS] == 3
        children = client.search_runs([job.info.experiment_id], f"tags.`mlflow.parentRunId` = '{job.info.run_id}' "
                                      f"and tags.`{names.TAG_ROLE}` = 'repeat'", order_by=["attributes.run_name"])
        assert [(c.info.run_name, c.data.params["seed"], c.info.status) for c in children] == [
            ("repeat-0", "42", "FINISHED"), ("repeat-1", "43", "FINISHED"), ("repeat-2", "44", "FINISHED")]
        # repeat-0 is the search's own model: the job's numbers, which repeats leave as they were
        assert {k: children[0].data.metrics[k] for k in (names.TEST_AUC, names.TEST_BRIER, names.MODEL_VAL_AUC)} == {
            k: m[k] for k in (names.TEST_AUC, names.TEST_BRIER, names.MODEL_VAL_AUC)}
        same_job = plain[next(t for t in name.split() if t.startswith("model="))]
        assert m[names.TEST_BRIER] == same_job.data.metrics[names.TEST_BRIER]
        briers = [c.data.metrics[names.TEST_BRIER] for c in children]
        assert len(set(briers)) == 3  # three seeds, three different models
        for metric in (names.TEST_AUC, names.TEST_BRIER, names.MODEL_VAL_AUC):
            values = [c.data.metrics[metric] for c in children]
            mean, sd = names.seed_names(metric)
            assert m[mean] == pytest.approx(np.mean(values)) and m[sd] == pytest.approx(np.std(values, ddof=1))
    compare = ["compare", "--experiment", "smoke-seeds", "--format"]
    rows = json.loads(run_pneumo([*compare, "json"], smoke, env_extra=env(smoke), hydra=False).stdout)
    assert len(rows) == 1 and all(r["seeds"][names.TEST_AUC]["sd"] is not None and r[names.SEED_REPEATS] == 3
                                  for r in rows)
    table = run_pneumo([*compare, "table"], smoke, env_extra=env(smoke), hydra=False).stdout
    assert "3 seeds" in table and "±" in table


def test_a_deterministic_job_says_so(tmp_path):
    run_pneumo(["train", *TOY, "experiment=det", "trainer.deterministic=true"], tmp_path)
    job = next(iter(jobs(tmp_path, "det").values()))
    assert job.info.status == "FINISHED" and job.data.tags[names.TAG_DETERMINISTIC] == "true"
