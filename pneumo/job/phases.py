"""The phases of one job, each a function of its context (pneumo.job.context.Job) returning a typed result:
load -> search -> validate -> evaluate -> package -> register -> repeats. `run` calls a phase, then passes the
reliability tests' kill point that follows it, if any (pneumo.runtime.testpoints.passed): the one hook.

The test split is touched once, by `evaluate`; nothing is chosen on it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, replace

from omegaconf import OmegaConf

from pneumo import data
from pneumo.evaluation import explain, plots, referral, scoring
from pneumo.evaluation.ood_fit import fit_or_why
from pneumo.job import context
from pneumo.job.context import Job
from pneumo.model.builders import HyperModel
from pneumo.record import names, params
from pneumo.record import store as stores
from pneumo.record.jobs import JobName
from pneumo.release import card, package, registry
from pneumo.release.registry import Registered
from pneumo.runtime import backend, testpoints
from pneumo.search import distributed, repeats, session
from pneumo.search.session import Search, SearchResult
from pneumo.search.tuner import TunerState

log = logging.getLogger("pneumo")


@dataclass(frozen=True)
class Packaged:
    """The job's model logged as a pyfunc on its run, not yet registered."""

    model_uri: str


def run(phase, *args):
    """A phase's result, once the kill point after it (if any) has been passed."""
    result = phase(*args)
    testpoints.passed(phase.__name__)
    return result


def load(cfg) -> Job:
    """The data, the store and the job's identity in it; a config whose defaults build no model fails first.
    Job runs left RUNNING by dead processes are closed as KILLED (unless this job is done, or a worker)."""
    testpoints.rendezvous()  # tests of parallel jobs only (PNEUMO_RENDEZVOUS)
    distributed.prepare(cfg.distributed)  # before any framework touches a GPU
    determinism = backend.determinism(cfg.trainer.deterministic)  # process-wide: every job sets it, on or off
    hypermodel = HyperModel.configured(cfg.model, cfg.optimizer, cfg.augmentation, cfg.trainer, cfg.seed)
    hypermodel.check()  # every space's defaults build a model
    started = time.perf_counter()
    splits = data.load(cfg.data, cfg.trainer.image_size)
    load_s = time.perf_counter() - started
    plain = OmegaConf.to_container(cfg, resolve=True)
    store = stores.connect(cfg.tracking.uri, cfg.tracking.store, creates=True, cwd=context.launched())
    exp_id = store.experiment(cfg.experiment)
    digests = (splits.digest, splits.test_digest)
    key = params.job_key(plain, *digests)
    worker = cfg.distributed.role == "worker"
    prior = None if worker else store.find_job(exp_id, key)
    overrides, num, multirun = context.hydra_job()
    name = JobName(key, params.config_key(params.flatten(plain), *digests), cfg.experiment, tuple(overrides), num,
                   multirun, cfg.rerun_of or None)
    resume = prior is not None and not cfg.restart
    state = TunerState(context.tuner_dir(cfg), key, overwrite=not (resume or worker))
    job = Job(cfg, plain, store, exp_id, splits, load_s,
              Search(cfg.tuner, cfg.trainer, cfg.distributed, hypermodel, splits, state, cfg.seed),
              name, determinism, prior)
    if not (job.worker or job.done) and store.reap(exp_id, keep=prior.id if resume else None):
        log.info("marked job runs of killed processes as KILLED")
    return job


def begin(job: Job, record) -> Job:
    """The job's run, open (`record`), says what the job is, what it runs on and trains on, and how long
    loading took."""
    record.describe(job.plain, job.name, job.splits, job.determinism)
    if job.resumed is None:
        record.log_dataset(job.cfg.data.source, job.splits)
    record.log_metrics({names.DATA_LOAD_S: job.load_s})
    return replace(job, record=record)


def work(job: Job) -> float:
    """A distributed search's worker: the chief's trials, as children of its run."""
    return session.work(job.search, job.store, job.experiment_id)


def search(job: Job) -> SearchResult:
    return session.run(job.search, job.record, job.cfg.evaluation)


def validate(job: Job, found: SearchResult) -> scoring.Validated:
    """The job's model (the best trial's, or the top trials' average) on validation: the threshold, and the
    numbers logged before the test split is touched."""
    job.record.log_params(found.best_hp)
    job.record.set_tags(found.trial_tags)
    validated = scoring.validate(found.model, job.splits, job.cfg.evaluation, job.cfg.trainer.batch_size)
    job.record.log_metrics({job.search.objective: found.score, names.EPOCHS_TRAINED: float(found.epochs),
                            **{k: validated.metrics[k] for k in (names.MODEL_VAL_AUC, names.MODEL_VAL_AUC_SHIFTED)}})
    return validated


def evaluate(job: Job, found: SearchResult, validated: scoring.Validated) -> scoring.Evaluated:
    """The model on test, once; its out-of-distribution guard; the report's pictures; the predictions."""
    ev, batch, splits, model = job.cfg.evaluation, job.cfg.trainer.batch_size, job.splits, found.model
    scored = scoring.on_test(model, splits, ev, batch, validated)
    evaluated = scoring.Evaluated(scored, fit_or_why(model, splits, scored.threshold, ev, batch))
    job.record.log_metrics(evaluated.metrics)
    with tempfile.TemporaryDirectory() as tmp:
        plots.write_report(tmp, splits.test.y, scored.p_test, scored.threshold, found.history())
        if scored.band is not None:
            referral.write_curve(tmp, {"validation": (splits.val.y, scored.p_val),
                                       "test": (splits.test.y, scored.p_test)}, scored.band, scored.threshold)
        explain.write_pictures(tmp, model, splits.test, scored.p_test, scored.threshold, per_outcome=ev.heatmaps,
                               gallery=ev.gallery, batch_size=batch)
        job.record.log_artifacts(tmp, names.EVALUATION_DIR)
    test, val = splits.test, splits.val
    registry.log_predictions(job.record, test.hashes, test.patients, test.y, scored.p_test)
    registry.log_predictions(job.record, val.hashes, val.patients, val.y, scored.p_val, names.VAL_PREDICTIONS_ARTIFACT)
    return evaluated


def package_model(job: Job, found: SearchResult, evaluated: scoring.Evaluated) -> Packaged | None:
    """The model as a pyfunc on the job's run, unless it is not to be registered, or already was."""
    if not job.cfg.tracking.register or job.record.registered() is not None:
        return None
    guard = evaluated.guard.guard
    return Packaged(package.log_model(found.model, job.splits.image_size, evaluated.threshold,
                                      band=evaluated.scored.band, guard=guard))


def register(job: Job, found: SearchResult, evaluated: scoring.Evaluated, packaged: Packaged | None) -> Registered | None:
    """The packaged model as a new version of the registered model, with its card; a resumed job that got as far
    as registering keeps its version (and writes its card if it was killed before)."""
    if not job.cfg.tracking.register:
        return None
    if packaged is None:
        done = job.record.registered()
        log.info("run %s already has a registered version", job.record.run_id)
        registered = Registered(job.record.run_id, done.version, done.no_guard, resumed=True)
        if done.description:
            return registered
    else:
        registered = registry.register(job.record, packaged.model_uri, job.splits, evaluated)
    card.record(job.record, registered.version, card.render(job.cfg, job.splits, found, evaluated, registered))
    return registered


def seed_repeats(job: Job, found: SearchResult) -> dict[str, float] | None:
    """trainer.repeats: the seed spread of the best hyperparameters, reported beside the job's model."""
    if job.cfg.trainer.repeats <= 1:
        return None
    return repeats.run(job.search, found, job.cfg.evaluation, job.record)
