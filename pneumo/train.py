"""One job: data -> Keras Tuner search -> best model -> threshold on val -> test once -> MLflow.

`train(cfg)` is a plain function (tests call it); `main` is the Hydra entry point.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars per tiny artifact bury the log

import signal  # noqa: E402

import hydra  # noqa: E402
from hydra.errors import CompactHydraException  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from pneumo import data, distributed, evaluate, metrics, paths, schema, tracking  # noqa: E402

log = logging.getLogger("pneumo")
schema.register()
# Known-harmless library chatter that would bury a job's own log lines.
for message in (
    "Skipping variable loading for optimizer",  # best weights restored into a fresh model: no slots needed
    "The specified dataset source can be interpreted in multiple ways",
    ".*input example was not provided",
):
    warnings.filterwarnings("ignore", message=message)


# Overrides that say where things go, not what is trained: left out of run names.
NOT_IN_NAME = ("paths.", "tracking.", "hydra.", "distributed.", "restart", "experiment", "data.root", "data.test_root",
               "data.cache_dir")


def train(cfg: DictConfig) -> float:
    """Run one job; returns the best trial's validation objective (what a sweeper optimises)."""
    import keras
    from mlflow.tracking import MlflowClient

    from pneumo.models import HyperModel
    from pneumo.tuning import completed_trial_ids, make_tuner, trial_counts

    # Everything that can be wrong with the config or the data fails here, before the
    # store is touched: a bad command leaves MLflow exactly as it was.
    schema.check(cfg)
    distributed.prepare(cfg.distributed)  # before any framework touches a GPU
    trainer = cfg.trainer
    hypermodel = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, trainer.image_size,
                            jit_compile=trainer.jit_compile, seed=cfg.seed, standardize=trainer.standardize)  # checks every space
    hypermodel.check()
    started = time.perf_counter()
    splits = data.load(cfg.data, trainer.image_size)
    load_s = time.perf_counter() - started

    plain = OmegaConf.to_container(cfg, resolve=True)
    tracking.setup(cfg.tracking.uri, cfg.tracking.store)
    client = MlflowClient()
    exp_id = tracking.experiment_id(cfg.experiment, cfg.tracking.store)
    key = tracking.job_key(distributed.job_config(plain))
    if cfg.distributed.role == "worker":  # runs trials of the chief's search; the chief owns the parent run
        return _work(cfg, hypermodel, splits, client, exp_id, key)
    prior = tracking.find_job(client, exp_id, key)
    if prior is not None and prior.info.status == "FINISHED" and not cfg.restart:
        log.info("job %s already finished as run %s; add restart=true to run it again", key, prior.info.run_id)
        return prior.data.metrics.get(metrics.VAL_AUC, float("nan"))
    resume = prior is not None and not cfg.restart
    if tracking.reap(client, exp_id, keep=prior.info.run_id if resume else None):
        log.info("marked job runs of killed processes as KILLED")
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(trainer.precision)

    overrides = tracking.redact_overrides(_hydra_overrides())
    job = _hydra_job()
    tags = {
        metrics.TAG_ROLE: "job",
        metrics.TAG_JOB_KEY: key,
        metrics.TAG_SWEEP: cfg.experiment,
        metrics.TAG_JOB_NUM: str(job.get("num", 0)),
        metrics.TAG_MULTIRUN: job.get("multirun", ""),
        metrics.TAG_OVERRIDES: " ".join(overrides),
        metrics.TAG_DATA_DIGEST: splits.digest,
        metrics.TAG_TEST_DIGEST: splits.test_digest,
        metrics.TAG_TEST_SOURCE: splits.test_source,
        **tracking.git_tags(),
        **tracking.runtime_tags(),
    }
    run_name = " ".join(o for o in overrides if not o.lstrip("+~").startswith(NOT_IN_NAME)) or "defaults"
    with mlflow.start_run(run_id=prior.info.run_id if resume else None, experiment_id=exp_id,
                          run_name=None if resume else run_name) as run:
        run_id = run.info.run_id
        tracking.log_tags(client, run_id, tags)
        tracking.log_params(client, run_id, tracking.flatten(plain))
        redacted = tracking.redact_config(plain)
        mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(redacted)), "config/config.yaml")
        mlflow.log_text("\n".join(overrides) + "\n", "config/overrides.txt")
        if not resume:
            counts = {s: int(len(getattr(splits, s))) for s in ("train", "val", "test")}
            tracking.log_dataset(cfg.data.source, splits.digest, splits.root, counts)
        mlflow.log_metric(metrics.DATA_LOAD_S, load_s)

        tuner = make_tuner(cfg.tuner, hypermodel, directory=_tuner_dir(cfg), project_name=key,
                           overwrite=not resume, client=client, experiment_id=exp_id, parent_run_id=run_id)
        stale = tracking.close_stale_trials(client, exp_id, run_id, completed_trial_ids(tuner))
        if stale:
            log.info("resumed job %s: closed %d trial run(s) left RUNNING by a killed process", key, stale)
        distributed.publish(client, run_id, cfg.distributed)
        tuner.search(**_fit(trainer, splits))  # a chief serves the oracle here until the workers are done
        distributed.withdraw(client, run_id, cfg.distributed)
        fault_point("after_search")
        counts = trial_counts(tuner)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        if counts[metrics.TRIALS_COMPLETED] == 0:
            raise RuntimeError(f"no trial completed ({counts[metrics.TRIALS_FAILED]} failed): see the FAILED trial runs")

        top = tuner.oracle.get_best_trials(cfg.evaluation.ensemble)
        best = top[0]
        model = _ensemble([tuner.load_model(t) for t in top]) if len(top) > 1 else tuner.load_model(best)
        if len(top) > 1:
            mlflow.set_tag(metrics.TAG_ENSEMBLE, " ".join(t.trial_id for t in top))
        _evaluate_and_register(cfg, model, best, splits, client, run_id, run_name)
    return float(best.score)


def _ensemble(members: list):
    """One model averaging the members' probabilities: served, saved and thresholded like any other."""
    import keras

    inputs = keras.Input(members[0].input_shape[1:], dtype="uint8", name="image")
    for i, m in enumerate(members):
        m.name = f"member_{i}_{m.name}"  # each member is a named sub-model of the ensemble
    outputs = keras.layers.Average(name="pneumonia", dtype="float32")([m(inputs) for m in members])
    return keras.Model(inputs, outputs, name="ensemble")


def _evaluate_and_register(cfg, model, best, splits, client, run_id: str, run_name: str) -> None:
    """The best trial's model: threshold on val, test once, report, register (on the active run)."""
    tracking.log_params(client, run_id, {f"{metrics.BEST_HP_PREFIX}{k}": str(v)
                                         for k, v in best.hyperparameters.values.items()})
    mlflow.set_tag(metrics.TAG_BEST_TRIAL, best.trial_id)
    mlflow.log_metrics({metrics.VAL_AUC: float(best.score), metrics.EPOCHS_TRAINED: float((best.best_step or 0) + 1)})

    # The test split is touched here, once; the threshold comes from validation.
    batch, ev = cfg.trainer.batch_size, cfg.evaluation
    p_val = model.predict(splits.val.x, batch_size=batch, verbose=0).reshape(-1)
    threshold = evaluate.choose_threshold(splits.val.y, p_val, ev.threshold, ev.target_sensitivity)
    fault_point("during_evaluation")
    p_test = model.predict(splits.test.x, batch_size=batch, verbose=0).reshape(-1)
    results = evaluate.evaluate(splits.test.y, p_test, splits.test.patients, threshold,
                                bootstrap=ev.bootstrap, confidence=ev.confidence, seed=ev.seed)
    mlflow.log_metrics({k: float(v) for k, v in results.items() if np.isfinite(v)})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        evaluate.write_report(tmp / "evaluation", splits.test.y, p_test, threshold, _history(best))
        _predictions_csv(tmp / "evaluation" / Path(metrics.PREDICTIONS_ARTIFACT).name, splits.test, p_test)
        mlflow.log_artifacts(str(tmp / "evaluation"), "evaluation")
        if cfg.tracking.register:
            _log_and_register(client, model, tmp, run_id, cfg.tracking.model_name, splits, threshold, results)
    log.info("job %s: val_auc %.4f, test_auc %.4f (run %s)", run_name, best.score,
             results.get("test_auc", float("nan")), run_id)


def _work(cfg, hypermodel, splits, client, exp_id: str, key: str) -> float:
    """A Keras Tuner worker: runs the trials the chief's oracle hands out, as children of its parent run."""
    import keras

    from pneumo.tuning import make_tuner

    parent_id = distributed.join(client, exp_id, key, cfg.distributed)
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(cfg.trainer.precision)
    tuner = make_tuner(cfg.tuner, hypermodel, directory=_tuner_dir(cfg), project_name=key, overwrite=False,
                       client=client, experiment_id=exp_id, parent_run_id=parent_id)
    tuner.search(**_fit(cfg.trainer, splits))
    return float("nan")  # the job's objective is the chief's to report


def _tuner_dir(cfg) -> Path:
    return Path(cfg.paths.cache) / "tuner" / cfg.experiment  # shared by a chief and its workers


def _fit(trainer, splits) -> dict:
    """What every trial's model.fit gets (Keras Tuner passes it through)."""
    from pneumo.tuning import callbacks

    return dict(
        x=splits.train.x, y=splits.train.y,
        validation_data=(splits.val.x, splits.val.y),
        epochs=trainer.epochs,
        batch_size=trainer.batch_size,
        class_weight=_class_weight(splits.train.y) if trainer.class_weight else None,
        callbacks=callbacks(trainer, splits.val.y),
        verbose=trainer.verbose,
    )


def _log_and_register(client, model, tmp: Path, run_id: str, name: str, splits, threshold: float, results) -> None:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    if client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        log.info("run %s already has a registered version of %s", run_id, name)
        return
    model.save(tmp / "model.keras")
    (tmp / "meta.json").write_text(json.dumps({"image_size": splits.image_size, "threshold": threshold}))
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label"), ColSpec("string", "error")]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # type-hint and input-example advice
        info = _log_model(tmp, signature)
    version_tags = {
        metrics.VERSION_TAG_RUN_ID: run_id,
        metrics.TAG_DATA_DIGEST: splits.digest,
        metrics.TAG_TEST_DIGEST: splits.test_digest,
        metrics.THRESHOLD: str(threshold),
        **{m: str(results[m]) for m in metrics.TEST_METRICS if m in results},
    }
    fault_point("before_register")
    mv = mlflow.register_model(info.model_uri, name, tags=version_tags)
    mlflow.set_tag("registered_version", mv.version)


def _log_model(tmp: Path, signature):
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(paths.ROOT / "pneumo" / "serving.py"),
        artifacts={"keras_model": str(tmp / "model.keras"), "meta": str(tmp / "meta.json")},
        code_paths=[str(paths.ROOT / "pneumo")],
        signature=signature,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    """What serving the model needs, pinned to this process's versions, the Keras backend it
    was trained on included (a model from a JAX job gets jax + jaxlib, not tensorflow)."""
    from importlib.metadata import version

    import keras

    from pneumo import backend

    pkgs = {p: version(p) for p in ("mlflow", "keras", "numpy", "pandas", "pillow")}
    pkgs.update(backend.packages(keras.backend.backend()))
    return [f"{p}=={v}" for p, v in pkgs.items()]


def _class_weight(y: np.ndarray) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    return {int(c): float(w) for c, w in zip(classes, compute_class_weight("balanced", classes=classes, y=y))}


def _history(trial) -> dict[str, list[float]]:
    out = {}
    for name in ("loss", "val_loss", metrics.AUC, metrics.VAL_AUC):
        if trial.metrics.exists(name):
            out[name] = [float(o.value[0]) for o in trial.metrics.get_history(name)]
    return out


def _predictions_csv(path: Path, subset, prob) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["hash", "patient", "y_true", "probability"])
        w.writerows(zip(subset.hashes, subset.patients, subset.y.tolist(), np.round(prob, 6).tolist()))


def _hydra_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _hydra_job() -> dict:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = str(hc.mode) == "RunMode.MULTIRUN"
    return {"num": hc.job.get("num", 0), "multirun": str(Path(hc.sweep.dir).resolve()) if multirun else ""}


class JobError(CompactHydraException):
    """A job stopped for a reason the user can act on: Hydra prints the message, no traceback."""


def fault_point(name: str) -> None:
    """Reliability tests SIGKILL the job here (PNEUMO_KILL_AT=name): a real, uncatchable kill."""
    if os.environ.get("PNEUMO_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@hydra.main(config_path=str(paths.CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from pneumo.data import DataError
    from pneumo.space import ConfigError

    try:
        return train(cfg)
    except (ConfigError, DataError) as e:
        raise JobError(f"pneumo: {e}") from None
    except RuntimeError as e:
        if "consecutive failures" in str(e) or "no trial completed" in str(e):
            raise JobError(f"pneumo: search stopped: {str(e).splitlines()[0]}; see the FAILED trial runs") from None
        raise
