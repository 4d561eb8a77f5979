"""The record's vocabulary: every tag, run role, metric name and artifact path pneumo writes to
MLflow and reads back, each spelled once (as mlflow/utils/mlflow_tags.py is for MLflow).

The tuner objective, the job, the trials, the leaderboard, promotion, `pneumo evaluate`, rerun
and the tests all import these names; tests/test_vocabulary.py fails when another module types
one of them as a string literal. Imports nothing heavy: `pneumo --help` reads it.
"""

from __future__ import annotations

# -- the shape of the record: experiment = sweep, parent run = job, child runs ----------------
TAG_ROLE = "pneumo.role"  # which kind of run this is, one of the roles below
ROLE_JOB = "job"  # a Hydra job: the parent run
ROLE_TRIAL = "trial"  # a Keras Tuner trial: a child of its job
ROLE_REPEAT = "repeat"  # trainer.repeats: the best hyperparameters with another seed, a child of its job
ROLE_EVALUATION = "evaluation"  # `pneumo evaluate`: a version scored on a folder, a child of the version's job


def __getattr__(name: str):
    # MLflow's own constant, imported on first use: importing MLflow costs ~1 s, and `pneumo --help` reads this module.
    if name == "PARENT_RUN_ID":
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        return MLFLOW_PARENT_RUN_ID
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- metrics: Keras compiles the model with these names; Keras prefixes "val_" -----------------
AUC = "auc"
AUPRC = "auprc"
ACCURACY = "accuracy"
LOSS = "loss"
LEARNING_RATE = "learning_rate"  # per epoch, on each trial run

VAL_AUC = "val_" + AUC
VAL_LOSS = "val_" + LOSS
# The registered model's own validation AUC (scikit-learn's, on its averaged predictions when it is an
# ensemble). Not the objective: the objective's name carries the best trial's Keras score, the
# number the job returns to Hydra.
MODEL_VAL_AUC = "model_val_auc"
VAL_AUC_SHIFTED = "val_auc_shifted"  # worst val AUC over fixed re-renderings of the validation films (evaluation/renderings.py)
MODEL_VAL_AUC_SHIFTED = "model_val_auc_shifted"  # the same for the registered model (an ensemble's too), once per job

# The final, once-only evaluation on the test split (threshold chosen on validation).
TEST_AUC = "test_auc"
TEST_AUPRC = "test_auprc"
TEST_ACCURACY = "test_accuracy"
TEST_SENSITIVITY = "test_sensitivity"
TEST_SPECIFICITY = "test_specificity"
TEST_PRECISION = "test_precision"
TEST_NPV = "test_npv"
TEST_F1 = "test_f1"
TEST_BRIER = "test_brier"
TEST_METRICS = (TEST_AUC, TEST_AUPRC, TEST_ACCURACY, TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_PRECISION, TEST_NPV,
                TEST_F1, TEST_BRIER)
THRESHOLD = "threshold"  # the decision threshold, chosen on validation
# What the leaderboard shows of a job's test split, and of each `pneumo evaluate` run beside it.
SHOWN_METRICS = (TEST_AUC, TEST_AUPRC, TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_F1, TEST_BRIER)
EXTERNAL_METRICS = (TEST_AUC, TEST_ACCURACY, TEST_SENSITIVITY, TEST_SPECIFICITY)
IMAGES = "images"  # `pneumo evaluate`: how many files were scored

# Direction of every metric a user may sort or gate on: True = higher is better.
HIGHER_IS_BETTER = {
    VAL_AUC: True,
    VAL_AUC_SHIFTED: True,
    VAL_LOSS: False,
    MODEL_VAL_AUC: True,
    MODEL_VAL_AUC_SHIFTED: True,
    **{name: True for name in TEST_METRICS},
    TEST_BRIER: False,
}

# Parent-run metrics beyond the test metrics (written by the job, read by the leaderboard).
DATA_LOAD_S = "data_load_s"  # seconds to load the splits (a decode-cache hit is ~1 s)
EPOCHS_TRAINED = "epochs_trained"  # of the best trial
TRIALS_COMPLETED = "trials_completed"
TRIALS_FAILED = "trials_failed"
BEST_HP_PREFIX = "best_hp."  # best trial's hyperparameters as params: best_hp.model.blocks, ...
# trainer.repeats: the best hyperparameters trained with N seeds; the parent run gets each metric's spread.
SEED_REPEATS = "seed_repeats"  # how many of the N fits completed
SEED_METRICS = (MODEL_VAL_AUC, *TEST_METRICS)


def finite(value) -> float | None:
    """A metric's value as a float, or None when it is missing, not a number, NaN or infinite."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def ci_names(metric: str) -> tuple[str, str]:
    """Names of the 95% bootstrap interval bounds logged next to `metric`."""
    return f"{metric}_ci_low", f"{metric}_ci_high"


def seed_names(metric: str) -> tuple[str, str]:
    """Names of the mean and the sample standard deviation of `metric` over trainer.repeats seeds."""
    return f"{metric}_seed_mean", f"{metric}_seed_sd"


def higher_is_better(metric: str) -> bool:
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(f"unknown metric {metric!r}; known metrics: {known}") from None


# -- tags on the job's parent run ---------------------------------------------------------------
TAG_JOB_KEY = "pneumo.job_key"  # hash of the resolved config: identifies a job across restarts
# hash of the same config without its seeds (pneumo.config.keys.SEEDS): the jobs of one configuration
# trained with different seeds share it, and `pneumo compare` groups them by it
TAG_CONFIG_KEY = "pneumo.config_key"
TAG_DATA_DIGEST = "pneumo.data_digest"
TAG_TEST_DIGEST = "pneumo.test_digest"  # identity of the test images (promotion compares on it)
TAG_TEST_SOURCE = "pneumo.test_source"  # where the test images came from: a folder, or "carved from train"
TAG_SWEEP = "pneumo.sweep"
TAG_JOB_NUM = "pneumo.job_num"
TAG_OVERRIDES = "pneumo.overrides"
TAG_MULTIRUN = "pneumo.multirun"  # the multirun's sweep dir: tells concurrent sweeps' jobs apart
TAG_BEST_TRIAL = "best_trial_id"
TAG_ENSEMBLE = "pneumo.ensemble"  # the trial ids whose models the registered one averages
TAG_REGISTERED_VERSION = "registered_version"  # the model version the job registered
TAG_ORACLE = "pneumo.oracle"  # a distributed search's chief, while its oracle serves: host:port
# What decides a job's numbers besides its config (record.provenance writes them, `pneumo rerun` reads them).
TAG_CONFIG = "pneumo.config"  # the Hydra config the overrides apply to: conf/config, sweeps/smoke, ...
TAG_SPLIT_DIGEST = "pneumo.split_digest"  # which images are in train, val and test (the split itself)
TAG_SEEDS = "pneumo.seeds"
TAG_DEVICE = "pneumo.device"  # cpu: <model> (<n> cores, <widest vector unit>) | gpu: <name> (x<n>)
TAG_DETERMINISTIC = "pneumo.deterministic"  # whether the backend's kernels ran deterministically
TAG_RERUN_OF = "pneumo.rerun_of"  # `pneumo rerun`: the run this job reruns
TAG_RERUN_CHANGES = "pneumo.rerun_changes"  # what differed from the original before it ran (versions, device)
# The process and the code that ran the job (record.provenance writes them; resume and rerun read them).
TAG_HOST = "host"  # the machine's name: a job reaps only the dead jobs of its own host
TAG_PID = "pid"
TAG_PID_STARTED = "pid.started"  # the process's start time: tells a live job from a reused pid
TAG_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own name, so its UI links the commit
TAG_GIT_DIRTY = "git.dirty"
TAG_KERAS_BACKEND = "keras.backend"
# The versions a job ran with, one tag a library (`pneumo rerun` compares the decisive ones).
TAG_PYTHON_VERSION = "python.version"
TAG_KERAS_VERSION = "keras.version"
TAG_KERAS_TUNER_VERSION = "keras_tuner.version"
TAG_MLFLOW_VERSION = "mlflow.version"  # recorded, not decisive: the store's library decides no number
# {distribution: its tag} for the Keras backends' packages (pneumo.runtime.backend.PACKAGES) and the libraries
# the split and the bootstrap use
VERSION_TAGS = {"tensorflow": "tensorflow.version", "jax": "jax.version", "jaxlib": "jaxlib.version",
                "torch": "torch.version", "numpy": "numpy.version", "scikit-learn": "scikit-learn.version"}
# The job's dataset input (MLflow's dataset tracking): its context and the tag holding the split sizes.
DATASET_CONTEXT = "training"
DATASET_COUNTS = "counts"  # {"train": n, "val": n, "test": n}, as JSON


# -- tags on child runs ----------------------------------------------------------------------------
TAG_TRIAL_ID = "pneumo.trial_id"
TAG_TUNER_ID = "pneumo.tuner_id"  # a distributed search's trial: the worker that ran it
TAG_REPEAT = "pneumo.repeat"  # a seed repeat's index
PARAM_REPEAT_SEED = "seed"  # a seed repeat's params: the seed it trained from, the trial it repeats
PARAM_REPEAT_TRIAL = "trial"
TAG_ERROR = "error"  # a FAILED run's last error line (the whole traceback is ERROR_ARTIFACT)
TAG_MODEL_VERSION = "pneumo.model_version"  # an evaluation run: the version it scored
TAG_MODEL_URI = "pneumo.model_uri"
TAG_FOLDER = "pneumo.folder"  # an evaluation run: the folder it scored

# -- the Model Registry ----------------------------------------------------------------------------
MODEL_NAME = "pneumonia-classifier"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
MODELS_SCHEME = "models:/"  # a registered version's URI: models:/NAME/VERSION or models:/NAME@ALIAS
RUNS_SCHEME = "runs:/"  # a run's artifact: runs:/RUN_ID/PATH


def version_uri(name: str, version) -> str:
    return f"{MODELS_SCHEME}{name}/{version}"


def alias_uri(name: str, alias: str) -> str:
    return f"{MODELS_SCHEME}{name}@{alias}"


CHAMPION_URI = alias_uri(MODEL_NAME, CHAMPION)  # what predict, evaluate and serving use by default
VERSION_TAG_RUN_ID = "run_id"  # on a version: the job run that registered it
PROMOTION_PREFIX = "promotion."  # a version's promotion.* tags: the latest decision and its numbers
TAG_PROMOTION_DECISION = PROMOTION_PREFIX + "decision"  # PROMOTED or REFUSED
PROMOTED, REFUSED = "promoted", "refused"
TAG_PROMOTION_ALIAS = PROMOTION_PREFIX + "alias"
TAG_PROMOTION_REASON = PROMOTION_PREFIX + "reason"  # every gate's line, '; '-joined
TAG_PROMOTION_AT = PROMOTION_PREFIX + "at"  # UTC, ISO 8601, to the second
TAG_PROMOTION_FORCED = PROMOTION_PREFIX + "forced_reason"  # --force's --reason


def promotion_tag(number: str) -> str:
    """The tag of one of a decision's numbers (pneumo.release.promote.Decision.numbers): promotion.delta, ..."""
    return PROMOTION_PREFIX + number


TAG_ROLLBACK_RESTORED = "rollback.restored_at"
TAG_ROLLBACK_DISPLACED = "rollback.displaced_at"
# How searches order runs: the newest first (a job's latest run, an evaluation's latest on a folder).
NEWEST_FIRST = "attributes.start_time DESC"

# -- artifacts -------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config/config.yaml"  # the job's resolved config, credentials redacted
OVERRIDES_ARTIFACT = "config/overrides.txt"  # the job's overrides, one a line
EVALUATION_DIR = "evaluation"  # the job's (or an evaluation run's) plots, predictions and pictures
PREDICTIONS_ARTIFACT = EVALUATION_DIR + "/test_predictions.csv"  # what a paired bootstrap between versions reads
VAL_PREDICTIONS_ARTIFACT = EVALUATION_DIR + "/val_predictions.csv"  # the same for validation: jobs ensembled later
PREDICTION_COLUMNS = ("hash", "patient", "y_true", "probability")  # of PREDICTIONS_ARTIFACT
EVALUATION_PREDICTIONS = "predictions.csv"  # an evaluation run's, under EVALUATION_DIR
EVALUATION_COLUMNS = ("path", "patient", "y_true", "probability")  # of EVALUATION_PREDICTIONS
UNREADABLE_ARTIFACT = "unreadable.txt"  # an evaluation run's files it could not score, with why (under EVALUATION_DIR)
ERROR_ARTIFACT = "error.txt"  # a FAILED run's traceback
MODEL_ARTIFACT = "model"  # the logged pyfunc model
CARD_ARTIFACT = "model_card.md"


# -- knowing when not to trust the model (issue 19) ---------------------------------------------
# Per-subtype metrics (Kermany's bacteria / virus names): the metric's name, then the subtype;
# the subtypes themselves are the data's vocabulary (pneumo.data.subtypes).
SUBTYPE_METRICS = (TEST_SENSITIVITY,)  # specificity stays the NORMAL films': subtypes are of pneumonia


def subtype_metric(metric: str, subtype: str) -> str:
    """test_sensitivity_bacteria: `metric` on the films of one pneumonia subtype."""
    return f"{metric}_{subtype}"


# evaluation.refer: the band of probabilities (chosen on validation) inside which the model answers REFER.
REFER_LOW = "refer_low"
REFER_HIGH = "refer_high"
TEST_COVERAGE = "test_coverage"  # share of test films decided (outside the band)
TEST_DECIDED_ACCURACY = "test_decided_accuracy"
TEST_DECIDED_SENSITIVITY = "test_decided_sensitivity"
TEST_DECIDED_SPECIFICITY = "test_decided_specificity"
DECIDED_METRICS = (TEST_COVERAGE, TEST_DECIDED_ACCURACY, TEST_DECIDED_SENSITIVITY, TEST_DECIDED_SPECIFICITY)
COVERAGE_PLOT = EVALUATION_DIR + "/coverage_accuracy.png"
LABEL_REFER = "REFER"  # the served label inside the band
LABEL_OOD = "OUT_OF_DISTRIBUTION"  # the served label of a film flagged out-of-distribution

# The out-of-distribution guard: the served model's extra columns and its statistics (an artifact of the pyfunc).
# The served model's columns (its signature): in, an encoded image file; out, per row.
IMAGE_COLUMN = "image"
PROBABILITY_COLUMN = "probability"  # of PNEUMONIA; NaN where the file could not be used
LABEL_COLUMN = "label"  # NORMAL / PNEUMONIA at the threshold, or LABEL_REFER / LABEL_OOD
ERROR_COLUMN = "error"  # why the row's image could not be used ('' when it was)
OOD_COLUMN = "ood"  # score: 1.0 is the threshold (distances: ~1% of validation films reach it; orientation: ~1% more)
OOD_FLAG_COLUMN = "ood_flag"
OOD_ARTIFACT = "ood_stats"  # the pyfunc artifact's key (an .npz: arrays only, no pickle)
# On a version whose job could not fit its guard: why. It serves every decodable film a label, however
# foreign, so promotion refuses it unless forced (pneumo.release.gates).
TAG_NO_GUARD = "pneumo.no_ood_guard"
VAL_OOD_FLAGGED = "val_ood_flagged"  # share of validation films flagged (by construction ~1-2%)
TEST_OOD_FLAGGED = "test_ood_flagged"  # share of test films flagged

# `pneumo shift`: a folder compared with the version's training films, without labels.
ROLE_SHIFT = "shift-check"  # a shift check run, a child of the version's job
SHIFT_AUC = "shift_auc"  # cross-validated AUC of a classifier telling the folder from training films (0.5: alike)
SHIFT_OOD_FLAGGED = "shift_ood_flagged"  # share of the folder's films the guard flags
SHIFT_PREVALENCE = "shift_predicted_prevalence"  # share of the folder's films called PNEUMONIA
TRAIN_PREVALENCE = "train_predicted_prevalence"  # the same on the training sample
TAG_SHIFT_VERDICT = "pneumo.shift_verdict"
SHIFT_REPORT = "shift/report.json"  # the shift run's numbers and what differs
