"""The metric vocabulary: every metric name pneumo logs, defined once.

Tuner objective, MLflow metrics, the leaderboard, promotion gates and the UI
columns all import these names, so they cannot drift apart.
"""

from __future__ import annotations

# Keras compiles the model with metrics of these names; Keras prefixes "val_".
AUC = "auc"
AUPRC = "auprc"
ACCURACY = "accuracy"
LOSS = "loss"

VAL_AUC = "val_" + AUC
VAL_LOSS = "val_" + LOSS

# Final, once-only evaluation on the test split (threshold chosen on validation).
TEST_METRICS = (
    "test_auc",
    "test_auprc",
    "test_accuracy",
    "test_sensitivity",
    "test_specificity",
    "test_precision",
    "test_npv",
    "test_f1",
    "test_brier",
)
THRESHOLD = "threshold"

# Direction of every metric a user may sort or gate on: True = higher is better.
HIGHER_IS_BETTER = {
    VAL_AUC: True,
    VAL_LOSS: False,
    **{name: True for name in TEST_METRICS},
    "test_brier": False,
}


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


def higher_is_better(metric: str) -> bool:
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        known = ", ".join(sorted(HIGHER_IS_BETTER))
        raise ValueError(f"unknown metric {metric!r}; known metrics: {known}") from None


# Names of what a job leaves in MLflow, shared by tracking (writer) and registry (reader).
MODEL_NAME = "pneumonia-classifier"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
PREDICTIONS_ARTIFACT = "evaluation/test_predictions.csv"

# Run tags.
TAG_ROLE = "pneumo.role"  # "job" (parent run) or "trial" (child run)
TAG_JOB_KEY = "pneumo.job_key"  # hash of the resolved config: identifies a job across restarts
TAG_DATA_DIGEST = "pneumo.data_digest"
TAG_TEST_DIGEST = "pneumo.test_digest"  # identity of the test images (promotion compares on it)
TAG_TEST_SOURCE = "pneumo.test_source"  # where the test images came from: a folder, or "carved from train"
TAG_TRIAL_ID = "pneumo.trial_id"
TAG_SWEEP = "pneumo.sweep"
TAG_JOB_NUM = "pneumo.job_num"
TAG_OVERRIDES = "pneumo.overrides"
TAG_MULTIRUN = "pneumo.multirun"  # the multirun's sweep dir: tells concurrent sweeps' jobs apart
# What decides a job's numbers besides its config (pneumo.record.provenance writes them, `pneumo rerun` reads them).
TAG_CONFIG = "pneumo.config"  # the Hydra config the overrides apply to: conf/config, sweeps/smoke, ...
TAG_SPLIT_DIGEST = "pneumo.split_digest"  # which images are in train, val and test (the split itself)
TAG_SEEDS = "pneumo.seeds"
TAG_DEVICE = "pneumo.device"  # cpu: <model> (<n> cores, <widest vector unit>) | gpu: <name> (x<n>)
TAG_DETERMINISTIC = "pneumo.deterministic"  # whether the backend's kernels ran deterministically
TAG_RERUN_OF = "pneumo.rerun_of"  # `pneumo rerun`: the run this job reruns
TAG_RERUN_CHANGES = "pneumo.rerun_changes"  # what differed from the original before it ran (versions, device)

# Parent-run metrics and params beyond the test metrics (written by the job, read by the leaderboard).
DATA_LOAD_S = "data_load_s"  # seconds to load the splits (a decode-cache hit is ~1 s)
EPOCHS_TRAINED = "epochs_trained"  # of the best trial
TRIALS_COMPLETED = "trials_completed"
TRIALS_FAILED = "trials_failed"
BEST_HP_PREFIX = "best_hp."  # best trial's hyperparameters as params: best_hp.model.blocks, ...
TAG_BEST_TRIAL = "best_trial_id"
TAG_ENSEMBLE = "pneumo.ensemble"  # the trial ids whose models the registered one averages
# trainer.repeats: the best hyperparameters trained with N seeds; the parent run gets each metric's spread.
SEED_REPEATS = "seed_repeats"  # how many of the N fits completed
SEED_METRICS = (VAL_AUC, *TEST_METRICS)


def seed_names(metric: str) -> tuple[str, str]:
    """Names of the mean and the sample standard deviation of `metric` over trainer.repeats seeds."""
    return f"{metric}_seed_mean", f"{metric}_seed_sd"


# Model-version tags set at registration (string values), read by promotion.
VERSION_TAG_RUN_ID = "run_id"

# One name per test metric, for code that needs a particular one (promotion's sensitivity floor, ...).
TEST_AUC = "test_auc"
TEST_AUPRC = "test_auprc"
TEST_ACCURACY = "test_accuracy"
TEST_SENSITIVITY = "test_sensitivity"
TEST_SPECIFICITY = "test_specificity"
TEST_PRECISION = "test_precision"
TEST_NPV = "test_npv"
TEST_F1 = "test_f1"
TEST_BRIER = "test_brier"
if {TEST_AUC, TEST_AUPRC, TEST_ACCURACY, TEST_SENSITIVITY, TEST_SPECIFICITY, TEST_PRECISION, TEST_NPV, TEST_F1,
        TEST_BRIER} != set(TEST_METRICS):
    raise ImportError("pneumo.record.names: the TEST_* names and TEST_METRICS disagree")
