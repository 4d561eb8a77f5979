"""What pneumo costs around training: per-epoch overhead, a job's fixed part, data load per sweep job.

    [KERAS_BACKEND=jax] python benchmarks/overhead.py [--data synthetic|kermany] [--root DIR] [--size 128]
        [--n-images 600] [--epochs 3] [--batch 32] [--repeats 3] [--models cnn resnet] [--parts trial job sweep]
        [--set tracking.system_metrics=false ...]

trial  The same model (each search space at its default), data, epochs and batch size trained
       (a) by a bare `model.fit` on the in-memory arrays and (b) as one pneumo trial: the real
       tracked Keras Tuner (`pneumo.search.tuner.make_tuner`) under a parent run in a real sqlite
       MLflow store (MLflow's system-metrics sampler on, as `tracking.system_metrics` has it by
       default), with pneumo's callbacks. Repeated, a/b order alternating (ABBA), each
       epoch timed by a Keras callback from one epoch's start to the next (so the tuner's
       per-epoch MLflow logging and best-epoch bookkeeping land in the epoch that caused them).
       Prints (b)/(a) per epoch and for the whole fit, training images/s per model, and checks
       what keeps (b) cheap: no callback of the trial's fit has a per-batch hook (Keras keeps its
       asynchronous step dispatch) and the best epoch's weights are written at most once per fit.
job    One whole job, `pneumo.job.train` with tuner.max_trials=1, phases timed by wrapping
       the calls it makes: config composition, data load (cold, then warm cache), MLflow setup
       and bookkeeping, tuner setup, training, evaluation (predict, threshold, metrics with
       patient bootstrap), plots, model logging + registration.
sweep  `pneumo train -m model=cnn,resnet optimizer=adam,rmsprop` at one trial of one epoch,
       from an empty cache: each job's `data_load_s` as its parent run recorded it.

Data: the built-in synthetic set (--n-images at 128 px JPEGs), or --data kermany for
../shared/data/kermany-224 (the Kaggle train split; not part of the project) or --root.
Runs on any Keras backend (KERAS_BACKEND, else the installed one, as pneumo chooses).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KERMANY = Path(__file__).resolve().parents[2] / "shared" / "data" / "kermany-224"
SEED = 42
IMPORT_S = 0.0
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

def load_libraries() -> float:
    """Import Keras (and its backend), MLflow and pneumo's job modules; the seconds it took.

    Not at module level: pneumo decodes in worker processes started with `spawn`,
    which re-import this file, and each would pay for the backend again.
    """
    global keras, keras_tuner, mlflow, MlflowClient, data, paths, schema, names, provenance, store, stats
    global package, registry, fit_module, tuner_module, job_module, HyperModel, EpochClock, Store, JobRecord
    global SystemMetrics
    start = time.perf_counter()
    import pneumo  # noqa: F401  (first: picks the installed Keras backend when KERAS_BACKEND is unset)

    # isort: split
    import keras
    import keras_tuner
    import mlflow
    from mlflow.tracking import MlflowClient

    from pneumo import data
    from pneumo import job as job_module
    from pneumo.config import paths, schema
    from pneumo.evaluation import stats
    from pneumo.model.builders import HyperModel
    from pneumo.record import names, provenance, store
    from pneumo.record.client import Store
    from pneumo.record.jobs import JobRecord, SystemMetrics
    from pneumo.release import package, registry
    from pneumo.search import fit as fit_module
    from pneumo.search import tuner as tuner_module

    class EpochClock(keras.callbacks.Callback):
        """Marks each epoch's start and the end of training, in wall and in CPU seconds.

        CPU seconds (all threads of this process) move less than wall seconds when other
        processes share the cores. Keras Tuner deep-copies callbacks: a class attribute
        is shared by the copies.
        """

        marks: ClassVar[list[tuple[float, float]]] = []

        def on_epoch_begin(self, epoch, logs=None):
            EpochClock.marks.append((time.perf_counter(), time.process_time()))

        def on_train_end(self, logs=None):
            EpochClock.marks.append((time.perf_counter(), time.process_time()))

        @staticmethod
        def epochs() -> list[tuple[float, float]]:
            m = EpochClock.marks
            return [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(m)]

    return time.perf_counter() - start


# -- configuration -------------------------------------------------------------------------


def data_overrides(args) -> list[str]:
    if args.data == "kermany":
        if not (args.root / "train").is_dir():
            sys.exit(f"{args.root} has no train/: pass --root <Kaggle-layout folder> or use --data synthetic")
        return ["data=folder", f"data.root={args.root}"]
    return ["data=synthetic", f"data.n_images={args.n_images}", "data.image_px=128"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def fixed_overrides(model: str) -> list[str]:
    """Every search space of the model and optimizer pinned to its default: one architecture for a and b."""
    cfg = compose([f"model={model}"])
    hp = keras_tuner.HyperParameters()
    HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32).build(hp)
    return [f"{name}={value}" for name, value in hp.values.items()]


def base_overrides(args, model: str, tmp: Path) -> list[str]:
    return [*data_overrides(args), f"model={model}", *fixed_overrides(model), f"trainer.image_size={args.size}",
            f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch}", "trainer.early_stopping=null",
            "trainer.chance_z=null",  # timing, not learning: a 3-epoch trial may well be no better than chance
            "tuner.max_trials=1", f"paths.cache={tmp}/cache", f"tracking.store={tmp}/mlruns", f"seed={SEED}",
            *args.set]


# -- part 1: one trial, bare vs tracked -------------------------------------------------------


def bare_fit(hypermodel, fit) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    keras.utils.set_random_seed(SEED)
    EpochClock.marks = []
    start = time.perf_counter(), time.process_time()
    model = hypermodel.build(keras_tuner.HyperParameters())
    model.fit(**{**fit, "callbacks": [EpochClock()]})
    return (time.perf_counter() - start[0], time.process_time() - start[1]), EpochClock.epochs()


@contextmanager
def hook_clock(tuner, totals: dict):
    """Time spent in what (b) adds around the training steps: the tracked tuner's hooks (MLflow
    runs, per-epoch metrics), the best epoch's weights kept and written, pneumo's callbacks; and
    how many times the weights were written."""
    from pneumo.search.fit import BestEpochWeights
    from pneumo.search.guard import TrialGuard

    def wrap(owner, name, bucket):
        original = getattr(owner, name)

        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                totals[bucket] += time.perf_counter() - start
                totals[f"{name} calls"] += 1

        setattr(owner, name, timed)
        return owner, name, original

    per_epoch = [(tuner, "on_epoch_end"), (BestEpochWeights, "on_epoch_end"),
                 (keras.callbacks.ReduceLROnPlateau, "on_epoch_end"), (TrialGuard, "on_epoch_end")]
    patches = [wrap(o, n, "epoch") for o, n in per_epoch]
    patches += [wrap(tuner, "on_trial_begin", "trial"), wrap(tuner, "on_trial_end", "trial"),
                wrap(BestEpochWeights, "on_train_end", "trial"),  # the best epoch's weights, written once
                wrap(keras.Model, "save_weights", "writes")]  # inside on_train_end: counted, timed there
    try:
        yield
    finally:
        for owner, name, original in reversed(patches):
            if isinstance(owner, type):
                setattr(owner, name, original)
            else:
                delattr(owner, name)


def per_batch_hooks(callbacks: list) -> list[str]:
    """The callbacks among `callbacks` that override a batch hook: any one makes Keras wait for every
    step's logs on the host."""
    hooks = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
    return [type(c).__name__ for c in callbacks
            if any(getattr(type(c), h) is not getattr(keras.callbacks.Callback, h) for h in hooks)]


def tracked_trial(cfg, hypermodel, fit, tmp: Path, n: int, hooks: dict):
    db = store.connect(None, tmp / "mlruns", creates=True)
    exp_id = db.experiment("overhead")
    keras.utils.set_random_seed(SEED)
    sampled = SystemMetrics(cfg.tracking.system_metrics_interval) if cfg.tracking.system_metrics else None
    # as a job opens its run: system metrics sampled (default on)
    with db.open_job(exp_id, resume=None, name=f"overhead-{n}", system_metrics=sampled) as record:
        state = tuner_module.TunerState(tmp / "tuner", f"p{n}", overwrite=True)
        tuner = tuner_module.make_tuner(cfg.tuner, hypermodel, state, record)
        EpochClock.marks = []
        fits = []  # the callbacks each of the trial's fits got

        def recording_fit(hp, model, *a, **kw):
            fits.append(kw["callbacks"])
            return type(hypermodel).fit(hypermodel, hp, model, *a, **kw)

        hypermodel.fit = recording_fit
        try:
            with hook_clock(tuner, hooks):
                start = time.perf_counter(), time.process_time()
                tuner.search(**{**fit, "callbacks": [EpochClock(), *fit["callbacks"]]})
                wall = time.perf_counter() - start[0], time.process_time() - start[1]
        finally:
            del hypermodel.fit
    (trial,) = tuner.oracle.trials.values()
    assert str(trial.status) == "COMPLETED", trial.message
    slow = [name for callbacks in fits for name in per_batch_hooks(callbacks)]
    assert not slow, f"per-batch hooks in a trial's fit (Keras then waits for every step): {slow}"
    hooks["fits"] += len(fits)
    return wall, EpochClock.epochs()


def part_trial(args, tmp: Path) -> None:
    for model in args.models:
        cfg = compose(base_overrides(args, model, tmp))
        splits = data.load(cfg.data, cfg.trainer.image_size, progress=False)
        hypermodel = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, cfg.trainer.image_size, seed=SEED)
        fit = fit_module.fit_kwargs(cfg.trainer, splits)
        runs, hooks = {"a": [], "b": []}, defaultdict(float)
        for r in range(args.repeats):
            for variant in ("ab" if r % 2 == 0 else "ba"):
                if variant == "a":
                    runs["a"].append(bare_fit(hypermodel, fit))
                else:
                    runs["b"].append(tracked_trial(cfg, hypermodel, fit, tmp, len(runs["b"]), hooks))
                (wall, cpu), epochs = runs[variant][-1]
                print(f"  {model} repeat {r} ({variant}): fit {wall:.2f} s wall, {cpu:.2f} s CPU; epochs (wall/CPU) "
                      + " ".join(f"{w:.2f}/{c:.2f}" for w, c in epochs), flush=True)
        report_trial(model, args, runs, hooks, len(splits.train), len(splits.val))


def _epoch(e: int):
    return lambda run, k: run[1][e][k]


def _later_epochs(run, k: int) -> float:
    return sum(ep[k] for ep in run[1][1:])


def _whole_fit(run, k: int) -> float:
    return run[0][k]


def report_trial(model: str, args, runs: dict, hooks: dict, n_train: int, n_val: int) -> None:
    """Medians over repeats; k = 0 wall seconds, 1 CPU seconds."""
    def med(variant, value, k):
        return statistics.median(value(run, k) for run in runs[variant])

    print(f"\n### {model}: {n_train} train + {n_val} val images, {args.size} px, batch {args.batch}, "
          f"{args.epochs} epochs, {args.repeats} repeats (medians)\n")
    print("| epoch | (a) bare fit, wall s | (b) pneumo trial, wall s | (b)/(a) wall | (a) CPU s | (b) CPU s "
          "| (b)/(a) CPU |\n|---|---:|---:|---:|---:|---:|---:|")
    rows = [(f"{e + 1}" + (" (graph tracing)" if e == 0 else ""), _epoch(e)) for e in range(args.epochs)]
    if args.epochs > 1:
        rows.append((f"epochs 2-{args.epochs}", _later_epochs))
    rows.append(("whole fit (build + all epochs)", _whole_fit))
    for label, value in rows:
        aw, bw, ac, bc = (med(v, value, k) for k in (0, 1) for v in "ab")
        print(f"| {label} | {aw:.2f} | {bw:.2f} | {bw / aw:.3f} | {ac:.2f} | {bc:.2f} | {bc / ac:.3f} |")
    bare_epoch = statistics.median(ep[0] for run in runs["a"] for ep in (run[1][1:] or run[1]))
    hook_epoch = hooks["epoch"] / args.repeats / args.epochs
    print(f"\ntime inside what (b) adds (tracked tuner hooks, best-epoch weights, pneumo callbacks): "
          f"{hook_epoch:.3f} s per epoch = {hook_epoch / bare_epoch:.1%} of a bare epoch; "
          f"{hooks['trial'] / args.repeats:.2f} s per trial to open and close its run and write the best "
          f"epoch's weights ({hooks['save_weights calls']:.0f} writes in {hooks['fits']:.0f} fits; "
          "no per-batch hook in any)")
    assert hooks["save_weights calls"] <= hooks["fits"], "the best epoch's weights written more than once a fit"
    if args.epochs > 1:
        per = args.epochs - 1
        a, b = med("a", _later_epochs, 0), med("b", _later_epochs, 0)
        print(f"training throughput ({model}, epochs 2+, wall; an epoch includes its validation pass): "
              f"(a) {n_train * per / a:.0f} images/s, (b) {n_train * per / b:.0f} images/s\n")


# -- part 2: one whole job, phase by phase --------------------------------------------------------


@contextmanager
def phase_clock(totals: dict):
    """Wrap the calls a job makes, summing wall time per phase (nested calls count once)."""
    active = []
    book, reload = "MLflow setup + bookkeeping", "evaluation: reload best weights, predict, threshold"

    def wrap(owner, name, label):
        original = getattr(owner, name)

        def timed(*a, **kw):
            if active:  # already inside a timed phase
                return original(*a, **kw)
            active.append(label)
            start = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                totals[label] += time.perf_counter() - start
                active.pop()

        setattr(owner, name, timed)
        return owner, name, original

    def make_tuner(*a, **kw):
        tuner = make_tuner.original(*a, **kw)
        wrap(tuner, "search", "training (the trial's search)")
        wrap(tuner, "load_model", reload)
        return tuner

    patches = [wrap(data, "load", "data load"),
               wrap(store, "connect", book),
               *(wrap(Store, n, book) for n in ("experiment", "find_job", "reap")),
               *(wrap(JobRecord, n, book) for n in ("describe", "log_params", "set_tags", "log_dataset")),
               wrap(provenance, "git_tags", book),
               wrap(provenance, "job_tags", book),
               wrap(keras.Model, "predict", reload),
               wrap(stats, "choose_threshold", reload),
               wrap(stats, "evaluate", "evaluation: test metrics + patient bootstrap"),
               wrap(stats, "write_report", "plots (confusion, ROC, PR, calibration, curves)"),
               wrap(package, "log_model", "model logging + registration"),
               wrap(registry, "register", "model logging + registration")]
    make_tuner.original = tuner_module.make_tuner
    tuner_module.make_tuner = make_tuner
    try:
        yield
    finally:
        tuner_module.make_tuner = make_tuner.original
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


def part_job(args, tmp: Path) -> None:
    model = args.models[0]
    columns = {}
    for label in ("cold cache", "warm cache"):
        totals: dict[str, float] = defaultdict(float)
        start = time.perf_counter()
        cfg = compose([*base_overrides(args, model, tmp / "job"), f"experiment=job-{label.split()[0]}"])
        totals["config composition + checks"] = time.perf_counter() - start
        with phase_clock(totals):
            start = time.perf_counter()
            job_module.train(cfg)
            total = time.perf_counter() - start
        totals["other (start/end run, config artifacts, Keras Tuner bookkeeping)"] = (
            total - sum(v for k, v in totals.items() if k != "config composition + checks"))
        totals["total"] = total + totals["config composition + checks"]
        columns[label] = totals
        print(f"  job ({label}): {totals['total']:.1f} s", flush=True)
    print(f"\n### One job: {model}, 1 trial x {args.epochs} epochs, {args.size} px, batch {args.batch}, "
          f"bootstrap {compose([]).evaluation.bootstrap}\n")
    print("| phase | cold cache, s | warm cache, s | warm, % of job |\n|---|---:|---:|---:|")
    warm = columns["warm cache"]
    for phase in [k for k in columns["cold cache"] if k != "total"] + ["total"]:
        print(f"| {phase} | {columns['cold cache'][phase]:.2f} | {warm[phase]:.2f} | "
              f"{100 * warm[phase] / warm['total']:.0f}% |")
    train_s = warm["training (the trial's search)"]
    print(f"\nfixed part (everything but training), warm cache: {warm['total'] - train_s:.1f} s = "
          f"{(warm['total'] - train_s) / train_s:.2f} x the training time; plus {IMPORT_S:.1f} s of imports "
          "(Keras and its backend, MLflow) that every `pneumo train` process pays once\n")


# -- part 3: data load per job of a multirun ----------------------------------------------------------


def part_sweep(args, tmp: Path) -> None:
    store, experiment = tmp / "sweep" / "mlruns", "sweep"
    cmd = [sys.executable, "-m", "pneumo", "train", "-m", "model=cnn,resnet", "optimizer=adam,rmsprop",
           *data_overrides(args), f"trainer.image_size={args.size}", "trainer.epochs=1",
           f"trainer.batch_size={args.batch}", "tuner.max_trials=1", "evaluation.bootstrap=200",
           f"experiment={experiment}", f"paths.cache={tmp}/sweep/cache", f"tracking.store={store}",
           f"hydra.sweep.dir={tmp}/sweep/multirun"]
    print("  " + " ".join(cmd[1:]), flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    client = MlflowClient(paths.local_tracking_uri(store))
    exp = client.get_experiment_by_name(experiment)
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    jobs.sort(key=lambda r: int(r.data.tags[names.TAG_JOB_NUM]))
    print(f"\n### Data load per job of one multirun ({len(jobs)} jobs, one process, empty cache at start; "
          f"{wall:.0f} s in all)\n")
    print("| job | overrides | data_load_s | job run, s |\n|---|---|---:|---:|")
    for j in jobs:
        swept = " ".join(o for o in j.data.tags[names.TAG_OVERRIDES].split() if o.startswith(("model=", "optimizer=")))
        print(f"| {j.data.tags[names.TAG_JOB_NUM]} | {swept} | {j.data.metrics[names.DATA_LOAD_S]:.2f} | "
              f"{(j.info.end_time - j.info.start_time) / 1000:.1f} |")
    print()


def machine() -> str:
    from pneumo.runtime import backend

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    found = backend.accelerators()
    runtime = " ".join(f"{k} {v}" for k, v in backend.packages(keras.backend.backend()).items())
    return (f"{os.cpu_count()} cores ({cpu}), {len(found)} GPU{': ' + ', '.join(found) if found else ''}, "
            f"Python {platform.python_version()}, Keras {keras.__version__} on {keras.backend.backend()} "
            f"({runtime or 'no version'}), Keras Tuner {keras_tuner.__version__}, MLflow {mlflow.__version__}, "
            f"load average at start {os.getloadavg()[0]:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["synthetic", "kermany"], default="synthetic")
    p.add_argument("--root", type=Path, default=KERMANY, help="the Kaggle-layout folder for --data kermany")
    p.add_argument("--n-images", type=int, default=600, help="synthetic set size")
    p.add_argument("--size", type=int, default=128, help="px the models train at")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["cnn", "resnet"])
    p.add_argument("--parts", nargs="+", choices=["trial", "job", "sweep"], default=["trial", "job", "sweep"])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="more overrides for (b) and the job, e.g. tracking.system_metrics=false")
    args = p.parse_args()
    global IMPORT_S
    IMPORT_S = load_libraries()  # what every `pneumo train` process pays before its job starts
    print(f"python benchmarks/overhead.py {' '.join(sys.argv[1:])}\n{machine()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="pneumo-overhead-") as tmp:
        for part in args.parts:
            {"trial": part_trial, "job": part_job, "sweep": part_sweep}[part](args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
