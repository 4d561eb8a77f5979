"""One job: data -> Keras Tuner search -> best model(s) -> threshold on val -> test once -> MLflow.

`train(cfg)` is a plain function (tests call it); `main` is the Hydra entry point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
import warnings
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars per tiny artifact bury the log


import hydra
import mlflow
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

from pneumo import data
from pneumo.config import checks, keys, paths, schema
from pneumo.evaluation import plots, referral, scoring
from pneumo.record import names, provenance, redact, runs, store
from pneumo.release import package, registry
from pneumo.runtime import backend, testpoints
from pneumo.search import distributed
from pneumo.search.failures import error_line, last_failure

log = logging.getLogger("pneumo")
schema.register()
# Known-harmless library chatter that would bury a job's own log lines.
for message in (
    "Skipping variable loading for optimizer",  # best weights restored into a fresh model: no slots needed
    "The specified dataset source can be interpreted in multiple ways",
    ".*input example was not provided",
):
    warnings.filterwarnings("ignore", message=message)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill PID`), raised where the job is, so that it stops as on Ctrl-C."""


@contextlib.contextmanager
def _signals_stop_the_job():
    """Ctrl-C or SIGTERM: what the job recorded stays, its open runs end KILLED (runs.killed_if_interrupted)
    and the same command resumes it. SIGTERM's default would end the process on the spot, its runs left
    RUNNING; raised instead, it unwinds as Ctrl-C does, and the process exits 143 (128 + SIGTERM, as a
    shell reports a process SIGTERM ended). Ctrl-C goes on as Python's KeyboardInterrupt (exit by SIGINT)."""
    def stop(signum, frame):
        raise Terminated()

    main_thread = threading.current_thread() is threading.main_thread()  # the only one that may set a handler
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        yield
    except KeyboardInterrupt as e:
        how = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C (SIGINT)"
        log.warning("stopped by %s; what the job recorded is kept, the same command resumes it", how)
        if isinstance(e, Terminated):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


@_signals_stop_the_job()
def train(cfg: DictConfig) -> float:
    """Run one job; returns the best trial's validation objective (what a sweeper optimises)."""
    from pneumo.runtime import quiet

    # Everything that can be wrong with the config or the data fails here, before the store is touched
    # (a bad command leaves MLflow exactly as it was); the config first, before Keras is imported (seconds).
    checks.check(cfg)
    store.check(cfg.tracking.uri, cfg.tracking.store, _launched())
    quiet.libraries(cfg.trainer.verbose)  # before the Keras backend is imported: its chatter stays off the console
    import keras

    from pneumo.model.builders import HyperModel, ensemble, served
    from pneumo.search import repeats
    from pneumo.search.fit import fit_kwargs
    from pneumo.search.tuner import completed_trial_ids, make_tuner, trial_counts

    testpoints.rendezvous()  # tests of parallel jobs only (PNEUMO_RENDEZVOUS)
    distributed.prepare(cfg.distributed)  # before any framework touches a GPU
    trainer = cfg.trainer
    determinism = backend.determinism(trainer.deterministic)  # process-wide: every job sets it, on or off
    hypermodel = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, trainer.image_size,  # checks every space
                            jit_compile=trainer.jit_compile, seed=cfg.seed, standardize=trainer.standardize,
                            run_eagerly=trainer.run_eagerly, clahe=trainer.clahe,
                            label_smoothing=trainer.label_smoothing)
    hypermodel.check()
    started = time.perf_counter()
    splits = data.load(cfg.data, trainer.image_size)
    load_s = time.perf_counter() - started

    plain = OmegaConf.to_container(cfg, resolve=True)
    client = store.connect(cfg.tracking.uri, cfg.tracking.store, creates=True, cwd=_launched())
    exp_id = store.experiment_id(cfg.experiment)
    key = runs.job_key(plain, splits.digest, splits.test_digest)
    if cfg.distributed.role == "worker":  # runs trials of the chief's search; the chief owns the parent run
        return distributed.work(cfg, hypermodel, splits, client, exp_id, key, _tuner_dir(cfg))
    prior = runs.find_job(client, exp_id, key)
    if prior is not None and prior.info.status == "FINISHED" and not cfg.restart:
        log.info("job %s already finished as run %s; add restart=true to run it again", key, prior.info.run_id)
        return prior.data.metrics.get(cfg.tuner.objective, float("nan"))
    resume = prior is not None and not cfg.restart
    if runs.reap(client, exp_id, keep=prior.info.run_id if resume else None):
        log.info("marked job runs of killed processes as KILLED")
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(trainer.precision)

    overrides, num, multirun = _hydra_job()
    run_name = " ".join(o for o in overrides if keys.part_of_job(o.partition("=")[0])) or "defaults"
    if cfg.tracking.system_metrics:  # MLflow's own sampler: CPU, memory (GPU with pynvml) as system/* metrics
        import psutil

        mlflow.set_system_metrics_sampling_interval(cfg.tracking.system_metrics_interval)
        psutil.cpu_percent()  # a process's first reading is 0.0 (no interval yet): the first sample is real then
    with mlflow.start_run(run_id=prior.info.run_id if resume else None, experiment_id=exp_id,
                          run_name=None if resume else run_name,
                          log_system_metrics=cfg.tracking.system_metrics) as run, \
            runs.killed_if_interrupted(client, exp_id, run.info.run_id):
        run_id = run.info.run_id
        runs.log_job(client, run_id, plain, overrides, {
            names.TAG_ROLE: names.ROLE_JOB, names.TAG_JOB_KEY: key, names.TAG_SWEEP: cfg.experiment,
            names.TAG_CONFIG_KEY: runs.config_key(runs.flatten(plain), splits.digest, splits.test_digest),
            names.TAG_JOB_NUM: str(num), names.TAG_MULTIRUN: multirun, names.TAG_DATA_DIGEST: splits.digest,
            names.TAG_TEST_DIGEST: splits.test_digest, names.TAG_TEST_SOURCE: splits.test_source,
            **provenance.job_tags(cfg, splits, determinism),
            **({names.TAG_RERUN_OF: cfg.rerun_of} if cfg.rerun_of else {})})
        if not resume:
            counts = {s: int(len(getattr(splits, s))) for s in ("train", "val", "test")}
            runs.log_dataset(cfg.data.source, splits.digest, splits.root, counts)
        mlflow.log_metric(names.DATA_LOAD_S, load_s)

        tuner = make_tuner(cfg.tuner, hypermodel, directory=_tuner_dir(cfg), project_name=key,
                           overwrite=not resume, client=client, experiment_id=exp_id, parent_run_id=run_id)
        stale = runs.close_stale_trials(client, exp_id, run_id, completed_trial_ids(tuner))
        if stale:
            log.info("resumed job %s: closed %d trial run(s) left RUNNING by a killed process", key, stale)
        distributed.publish(client, run_id, cfg.distributed)
        # a chief serves the oracle here until the workers are done
        tuner.search(**fit_kwargs(trainer, splits, cfg.tuner.objective))
        distributed.withdraw(client, run_id, cfg.distributed)
        testpoints.fault_point("after_search")
        counts = trial_counts(tuner)
        mlflow.log_metrics({k: float(v) for k, v in counts.items()})
        if counts[names.TRIALS_COMPLETED] == 0:
            raise RuntimeError(f"no trial completed ({counts[names.TRIALS_FAILED]} failed)\n{last_failure(tuner)}")

        top = tuner.oracle.get_best_trials(cfg.evaluation.ensemble)
        model = ensemble([tuner.load_model(t) for t in top]) if len(top) > 1 else tuner.load_model(top[0])
        model = served(model, cfg.evaluation)
        _evaluate_and_register(cfg, model, top, splits, client, run_id)
        if trainer.repeats > 1:  # the seed spread of the best hyperparameters, reported beside the job's model
            repeats.run(cfg, tuner, top[0], hypermodel, splits, client, exp_id, run_id)
    log.info("job %s: %s %.4f (run %s)", run_name, cfg.tuner.objective, top[0].score, run_id)
    return float(top[0].score)


def _evaluate_and_register(cfg, model, top: list, splits, client, run_id: str) -> None:
    """The job's model (the best trial's, or the top trials' average): threshold on val, test once, report,
    register. The test split is touched here, once; nothing is chosen on it."""
    from pneumo.evaluation import explain
    from pneumo.release import card
    from pneumo.search.tuner import history

    best, objective = top[0], cfg.tuner.objective
    runs.log_params(client, run_id, {f"{names.BEST_HP_PREFIX}{k}": str(v)
                                         for k, v in best.hyperparameters.values.items()})
    tags = {names.TAG_BEST_TRIAL: best.trial_id}
    if len(top) > 1:
        tags[names.TAG_ENSEMBLE] = " ".join(t.trial_id for t in top)
    runs.log_tags(client, run_id, tags)

    batch, ev = cfg.trainer.batch_size, cfg.evaluation

    def validated(val: dict) -> None:  # logged before the test split is touched (resume reads them)
        mlflow.log_metrics({objective: float(best.score), names.EPOCHS_TRAINED: float((best.best_step or 0) + 1),
                            **{k: val[k] for k in (names.MODEL_VAL_AUC, names.MODEL_VAL_AUC_SHIFTED)
                               if names.finite(val[k]) is not None}})
        testpoints.fault_point("during_evaluation")

    scored = scoring.score_model(model, splits, ev, batch, after_validation=validated)
    threshold, p_test, results = scored.threshold, scored.p_test, scored.metrics
    guard, flagged, no_guard = _guard(model, splits, threshold, ev, batch)
    results.update(flagged)
    mlflow.log_metrics(results)
    with tempfile.TemporaryDirectory() as tmp:
        plots.write_report(Path(tmp), splits.test.y, p_test, threshold, history(best))
        if scored.band is not None:
            referral.write_curve(tmp, {"validation": (splits.val.y, scored.p_val), "test": (splits.test.y, p_test)},
                                 scored.band, threshold)
        explain.write_pictures(tmp, model, splits.test, p_test, threshold, per_outcome=ev.heatmaps,
                               gallery=ev.gallery, batch_size=batch)
        mlflow.log_artifacts(tmp, names.EVALUATION_DIR)
    test, val = splits.test, splits.val
    registry.log_predictions(client, run_id, test.hashes, test.patients, test.y, p_test)
    registry.log_predictions(client, run_id, val.hashes, val.patients, val.y, scored.p_val,
                             names.VAL_PREDICTIONS_ARTIFACT)
    if not cfg.tracking.register:
        return
    done = registry.registered(client, run_id)
    if done is not None:  # a resumed job that got as far as registering
        log.info("run %s already has a registered version", run_id)
        if not done.description:  # killed before its card was written
            card.record(client, run_id, done.version, card.render(cfg, splits, top, threshold, results, done.version,
                                                                  run_id, no_guard=registry.missing_guard(done)))
        return
    info = package.log_model(model, splits.image_size, threshold, band=scored.band, guard=guard)
    testpoints.fault_point("before_register")
    version = registry.register(client, run_id, info.model_uri, registry.version_tags(
        run_id, splits.digest, splits.test_digest, threshold, results, no_guard=no_guard))
    card.record(client, run_id, version, card.render(cfg, splits, top, threshold, results, version, run_id,
                                                     no_guard=no_guard))


def _guard(model, splits, threshold: float, ev, batch: int):
    """(guard, the shares it flags, None): the out-of-distribution guard the registered model carries
    (training films; threshold on validation). When it cannot be fitted: (None, {}, why): the model
    still ships, and its version says why (promotion then refuses it unless forced)."""
    import numpy as np

    from pneumo.evaluation import ood_fit

    try:
        return (*ood_fit.fit_guard(model, splits, threshold, ev, batch), None)
    except (ValueError, np.linalg.LinAlgError) as e:
        log.warning("no out-of-distribution guard for this model: %s", e)
        return None, {}, str(e).splitlines()[0][:500] or type(e).__name__


def _tuner_dir(cfg) -> Path:
    return Path(cfg.paths.cache) / "tuner" / cfg.experiment  # shared by a chief and its workers


def _hydra_job() -> tuple[list[str], int, str]:
    """(the job's overrides, credentials redacted; its number in a multirun; the multirun's folder or '')."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], 0, ""
    hc = HydraConfig.get()
    multirun = str(Path(hc.sweep.dir).resolve()) if str(hc.mode) == "RunMode.MULTIRUN" else ""
    return redact.redact_overrides(list(hc.overrides.task)), hc.job.get("num", 0), multirun


def _launched() -> Path | None:
    """The folder pneumo was started in (a relative store path is taken from it), not Hydra's job folder."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else None


class JobError(CompactHydraException):
    """A job stopped for a reason the user can act on: Hydra prints the message, no traceback."""


@hydra.main(config_path=str(paths.CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from pneumo.config import startup
    from pneumo.config.errors import ConfigError
    from pneumo.data import DataError

    try:
        return train(cfg)
    except ConfigError as e:
        if not _hydra_job()[2]:  # one job: a config error exits 2; in a multirun it fails this job only
            startup.refuse(str(e))
        raise JobError(f"pneumo: {e}") from None
    except DataError as e:
        raise JobError(f"pneumo: {e}") from None
    except RuntimeError as e:
        # Keras Tuner's consecutive-failure stop, or no trial completed: the reason, then the last failed
        # trial's error (the last line of its traceback), which names the config key where one is known
        first, *rest = str(e).strip().splitlines() or [""]
        if "consecutive failures" in first or "no trial completed" in first:
            limit = " (tuner.max_consecutive_failed_trials)" if "consecutive failures" in first else ""
            last = f"; last failure: {error_line(rest[-1])}" if rest else ""
            raise JobError(f"pneumo: search stopped: {first.rstrip('.')}{limit}{last}; "
                           "see the FAILED trial runs") from None
        raise
