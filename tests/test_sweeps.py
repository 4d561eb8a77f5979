"""Named sweeps run end to end at toy size; the MLflow store has the promised shape.

These start the installed `pneumo` app as a subprocess (a real Hydra multirun,
real Keras Tuner searches, a real sqlite MLflow store in tmp_path).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest

from pneumo.config import defaults, paths
from pneumo.record import names

from helpers import TOY, client_for, run_pneumo, tracking_uri
from store_fixture import SWEEP_OUTPUT, smoke_store  # noqa: F401

pytestmark = pytest.mark.slow

def test_smoke_sweep_leaves_the_promised_store(smoke_store):
    """The shared smoke store (tests/store_fixture.py: `pneumo sweep smoke` as a user runs it, then promote)."""
    tmp_path = smoke_store
    output = (smoke_store / SWEEP_OUTPUT).read_text()
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("smoke")
    assert exp is not None
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert len(jobs) == 2  # model=cnn,resnet
    assert {j.data.params["model._target_"] for j in jobs} == {"pneumo.model.builders.cnn", "pneumo.model.builders.resnet"}
    versions = client.search_model_versions(f"name='{names.MODEL_NAME}'")
    assert sorted(v.run_id for v in versions) == sorted(j.info.run_id for j in jobs)
    for job in jobs:
        assert job.info.status == "FINISHED"
        assert job.info.run_name.startswith("model=")
        trials = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{job.info.run_id}'")
        assert len(trials) == 2 and all(t.info.status == "FINISHED" for t in trials)
        for t in trials:
            assert t.data.tags[names.TAG_ROLE] == "trial"
            assert "model.blocks" in t.data.params or "model.stages" in t.data.params
            history = client.get_metric_history(t.info.run_id, names.VAL_AUC)
            assert [m.step for m in history] == [0, 1]  # per-epoch, trainer.epochs=2
        m, p, tags = job.data.metrics, job.data.params, job.data.tags
        for name in names.TEST_METRICS:
            low, high = names.ci_names(name)
            if name in m:  # a metric undefined on a toy test split is left out, not faked
                assert low in m and high in m and m[low] <= m[name] <= m[high]
        assert {"test_auc", "test_sensitivity", "test_specificity", names.THRESHOLD, names.VAL_AUC} <= m.keys()
        assert m[names.TRIALS_COMPLETED] == 2
        assert p["trainer.epochs"] == "2" and p["tuner.max_trials"] == "2"
        assert any(k.startswith(names.BEST_HP_PREFIX) for k in p)
        for tag in (names.TAG_DATA_DIGEST, names.TAG_TEST_DIGEST, names.TAG_JOB_KEY, "keras.backend",
                    "mlflow.source.git.commit", names.TAG_BEST_TRIAL, names.TAG_SWEEP, names.TAG_JOB_NUM):
            assert tags.get(tag), tag
        arts = {a.path for a in client.list_artifacts(job.info.run_id, "evaluation")}
        for name in ("confusion_matrix.png", "confusion_matrix.json", "roc.png", "pr.png", "calibration.png",
                     "training_curves.png", "classification_report.txt", "test_predictions.csv"):
            assert f"evaluation/{name}" in arts
        assert {a.path for a in client.list_artifacts(job.info.run_id, "config")} >= {
            "config/config.yaml", "config/overrides.txt"}
        cm = json.loads(Path(client.download_artifacts(job.info.run_id, "evaluation/confusion_matrix.json")).read_text())
        preds = Path(client.download_artifacts(job.info.run_id, names.PREDICTIONS_ARTIFACT)).read_text().splitlines()
        assert sum(map(sum, cm["matrix"])) == len(preds) - 1 > 0  # every test image, once
        assert job.inputs.dataset_inputs and job.inputs.dataset_inputs[0].dataset.digest
    # The multirun ends with a leaderboard and a command that opens the UI as printed (venv not activated).
    ui = next(line for line in output.splitlines() if "Open the runs in the MLflow UI" in line)
    assert f"ui --backend-store-uri {tracking_uri(tmp_path)}" in ui and "pneumo" in ui


@pytest.mark.ci
def test_registered_version_predicts_on_a_jpeg(tmp_path):
    import mlflow
    import pandas as pd

    # system metrics off (sampled every second were they on): the switch turns MLflow's sampler off
    run_pneumo(["train", *TOY, "experiment=one", "tracking.system_metrics=false", "tracking.system_metrics_interval=1"],
               tmp_path)
    client = client_for(tmp_path)
    (job,) = client.search_runs([client.get_experiment_by_name("one").experiment_id],
                                f"tags.`{names.TAG_ROLE}` = 'job'")
    assert not [k for k in job.data.metrics if k.startswith("system/")]
    model = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}/1")
    jpegs = sorted((tmp_path / "cache").rglob("*.jpeg"))[:3]
    from PIL import Image

    big_rgb = io.BytesIO()
    Image.open(jpegs[0]).convert("RGB").resize((300, 260)).save(big_rgb, format="JPEG")
    out = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in jpegs] + [big_rgb.getvalue(), b"not an image"]}))
    assert list(out.columns) == ["probability", "label", "error", names.OOD_COLUMN, names.OOD_FLAG_COLUMN]
    assert out["probability"][:4].between(0, 1).all()
    assert set(out["label"][:4]) <= {"NORMAL", "PNEUMONIA", names.LABEL_OOD} and out["error"][:4].eq("").all()
    assert out["label"][4] == "" and "not an image" in out["error"][4]


def test_an_ensemble_of_the_best_trials_is_registered_as_one_model(tmp_path):
    import keras
    import mlflow
    import numpy as np
    import pandas as pd

    from pneumo.data.imaging import decode

    run_pneumo(["train", *TOY, "experiment=ens", "tuner.max_trials=3", "evaluation.ensemble=2"], tmp_path)
    client = client_for(tmp_path)
    job = client.search_runs([client.get_experiment_by_name("ens").experiment_id],
                             f"tags.`{names.TAG_ROLE}` = 'job'")[0]
    members = job.data.tags[names.TAG_ENSEMBLE].split()
    assert len(members) == 2 and job.data.tags[names.TAG_BEST_TRIAL] == members[0]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{names.MODEL_NAME}/1", dst_path=str(tmp_path / "m")))
    keras_file = next(local.rglob("*.keras"))
    inner = keras.saving.load_model(keras_file, compile=False, safe_mode=True)
    assert sum(layer.name.startswith("member_") for layer in inner.layers) == 2
    jpegs = sorted((tmp_path / "cache").rglob("*.jpeg"))[:4]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        served = mlflow.pyfunc.load_model(f"models:/{names.MODEL_NAME}/1")
    # the members' training optimizers are no business of inference: no warning about their state
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    out = served.predict(pd.DataFrame({"image": [p.read_bytes() for p in jpegs]}))
    x = np.stack([decode(p, 32) for p in jpegs])
    expected = inner.predict(x[..., None], verbose=0).reshape(-1)
    assert out["probability"].to_numpy() == pytest.approx(expected, abs=1e-5)  # the average is what is served


# Sweeps whose whole grid is too long for a test: the part that runs every code path. The screen's
# levers that only change a config value (wider, deeper, cnn, ...) are composed and checked in test_levers.
TOY_GRID = {"kermany-screen": ["lever=baseline,clahe,ema,tta,one-cycle,label-smoothing", "seed=0"],
            "kermany-fidelity": ["trainer.image_size=32", "lever=baseline", "seed=0,1", "data.train_fraction=0.6"]}
UNREGISTERED = {"kermany-screen", "kermany-fidelity"}  # screens rank levers: tracking.register=false


# smoke: the shared smoke store above is that sweep, run as a user runs it.
@pytest.mark.parametrize("sweep", sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml") if p.stem != "smoke"))
def test_every_named_sweep_runs_at_toy_size(sweep, tmp_path):
    # Eager: on a few toy batches tracing the graph is most of a job (MobileNetV2: 41 s a job, 17 s eager).
    # What runs traced is the smoke store's sweep, the default job and every family in test_review.
    extra = [*TOY, "trainer.run_eagerly=true"]
    if sweep.startswith("kermany"):  # real-data sweeps: point them at a tiny Kaggle-layout folder instead
        from pneumo.data import synthetic

        root = synthetic.generate(tmp_path / "kaggle-like", n_images=48, image_px=48, seed=3)
        extra = [e for e in extra if not e.startswith("data")] + [
            "data=folder", f"data.root={root}", "data.test_root=null"]
    run_pneumo(["sweep", sweep, *extra, *TOY_GRID.get(sweep, [])], tmp_path)
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name(sweep)
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert jobs and all(j.info.status == "FINISHED" for j in jobs)
    registered = 0 if sweep in UNREGISTERED else len(jobs)
    assert len(client.search_model_versions(f"name='{names.MODEL_NAME}'")) == registered
    assert {j.data.params["trainer.run_eagerly"] for j in jobs} == {"true"}
    for job in jobs:  # every job learned something: at least one trial FINISHED, not FAILED as chance
        trials = client.search_runs([exp.experiment_id], f"tags.`{names.PARENT_RUN_ID}` = '{job.info.run_id}' "
                                    f"and tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'")
        assert any(t.info.status == "FINISHED" for t in trials), (job.info.run_name, [t.info.status for t in trials])


def test_the_default_job_learns(tmp_path):
    """`pneumo train` with nothing shrunk, the first command a user runs: it finishes, its trials learn
    (none failed as chance after early stopping cut it short), and a version is registered."""
    run_pneumo(["train"], tmp_path, timeout=1200)
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("pneumo")
    (job,) = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'")
    assert job.info.status == "FINISHED" and job.info.run_name == "defaults"
    trials = client.search_runs([exp.experiment_id], f"tags.`{names.PARENT_RUN_ID}` = '{job.info.run_id}' "
                                f"and tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'")
    assert any(t.info.status == "FINISHED" for t in trials), [t.info.status for t in trials]
    # Early stopping waits out its warm-up: no trial was cut short (and then failed as chance) before it.
    stop = defaults.option("trainer", "default").early_stopping
    epochs = {t.info.run_name: len(client.get_metric_history(t.info.run_id, names.VAL_AUC)) for t in trials}
    assert min(epochs.values()) >= stop.start_from_epoch + stop.patience, epochs
    assert [v.run_id for v in client.search_model_versions(f"name='{names.MODEL_NAME}'")] == [job.info.run_id]
    # The registered model beats chance by the trial guard's own rule, with conf/'s z (TOY turns it off): its
    # validation AUC less chance_z Hanley-McNeil standard errors (from the validation class counts) is above 0.5.
    from hydra import compose, initialize_config_dir

    from pneumo import data
    from pneumo.config import schema
    from pneumo.search.guard import TrialGuard

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.cache={tmp_path}/cache"])
    assert cfg.trainer.chance_z == 1.645
    val = data.load(cfg.data, cfg.trainer.image_size, progress=False).val  # the job's decode cache: no decoding
    guard = TrialGuard(int(val.y.sum()), int(len(val.y) - val.y.sum()), cfg.trainer.chance_z)
    guard.on_train_begin()
    guard.on_epoch_end(0, {names.VAL_AUC: job.data.metrics[names.MODEL_VAL_AUC]})
    assert guard.n_pos > 0 < guard.n_neg and guard.best == job.data.metrics[names.MODEL_VAL_AUC]  # it will check
    guard.on_train_end()  # raises DegenerateModel: no better than chance
    assert job.data.metrics[names.ci_names(names.TEST_AUC)[0]] > 0.5  # and its test AUC's CI clears chance
