"""A console a person can follow: one live line per job and trial on a terminal, plain lines in a log,
and no TensorFlow/CUDA/MLflow chatter unless asked for (trainer.verbose)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys

import pytest

from pneumo.search import console

from store_fixture import SWEEP_OUTPUT, smoke_store  # noqa: F401

# What a newcomer saw from `make demo` before (TensorFlow's C++ logging, absl, CUDA probing on a
# machine without a GPU, MLflow's own prints and warnings).
CHATTER = re.compile(r"absl::InitializeLog|cuInit|cuda|cudart|oneDNN|cpu_feature_guard|tensorflow/|"
                     r"^[IWE]\d{4} |Successfully registered model|Created version|UserWarning|"
                     r"INFO mlflow|Creating initial MLflow database", re.I | re.M)


def _events(p: console.JobProgress) -> None:
    """Two trials of three epochs: the first finishes, the second fails after a better epoch."""
    p.trial_begin("00")
    for epoch, auc in enumerate((0.61, 0.70, 0.66)):
        p.epoch_end(epoch, {"val_auc": auc, "loss": 0.5})
    p.trial_end("FINISHED")
    p.trial_begin("01")
    p.epoch_end(0, {"val_auc": 0.91})
    p.trial_end("FAILED", "Traceback ...\nFloatingPointError: loss became nan in epoch 2")


def test_plain_lines_in_a_log_say_job_trial_epoch_best_so_far_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="pneumo")
    p = console.JobProgress("model=cnn optimizer=adam", 2, 4, 2, 3, "val_auc", True)
    _events(p)
    p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[1].startswith("job 2/4 model=cnn optimizer=adam · trial 1/2 · epoch 2/3 · val_auc 0.700 · "
                               "best val_auc so far 0.700 · ETA ")
    assert re.search(r"ETA \d:\d\d:\d\d$", lines[1])
    assert "trial 1/2 FINISHED in" in lines[3] and lines[3].endswith("best val_auc 0.700")
    assert "trial 2/2 · epoch 1/3 · val_auc 0.910 · best val_auc so far 0.910" in lines[4]  # the running trial counts
    assert "trial 2/2 FAILED" in lines[5] and "FloatingPointError: loss became nan" in lines[5]
    assert len(lines) == 6
    assert p.best == pytest.approx(0.70)  # a failed trial's score is not the job's best
    assert p.eta() == 0  # every trial over: nothing left
    p.trial_begin("01")  # Keras Tuner retries a failed trial under its id: still trial 2 of 2
    p.epoch_end(0, {"val_auc": 0.5})
    assert "trial 2/2 (retry) · epoch 1/3" in caplog.records[-1].getMessage()


def test_a_resumed_search_counts_the_trials_it_ran_before(caplog):
    caplog.set_level(logging.INFO, logger="pneumo")
    p = console.JobProgress("model=cnn", 1, 1, 6, 2, "val_auc", True, done=("00", "01", "02"), best=0.9)
    p.trial_begin("03")
    p.epoch_end(0, {"val_auc": 0.6})
    assert "trial 4/6 · epoch 1/2" in caplog.records[-1].getMessage()
    assert "best val_auc so far 0.900" in caplog.records[-1].getMessage()  # not the new trial's 0.600


def test_eta_counts_the_remaining_epochs_of_every_trial():
    p = console.JobProgress("x", 1, 1, 3, 10, "val_loss", False)
    p.trial_begin()
    p.epoch_end(0, {"val_loss": 0.9})
    p.epoch_s = [2.0]  # one epoch took 2 s: 9 more in this trial and 10 in each of 2 others
    assert p.eta() == pytest.approx(2.0 * 29)
    p.epoch_end(1, {"val_loss": 0.7})
    p.epoch_end(2, {"val_loss": 0.8})
    assert p.best == pytest.approx(0.7)  # lower is better for a loss


def test_live_lines_on_a_terminal_redraw_in_place_and_keep_log_lines_readable():
    from rich.console import Console

    screen = io.StringIO()
    term = Console(file=screen, force_terminal=True, width=160, color_system=None)
    logger, root = logging.getLogger("pneumo.test-live"), logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)  # as Hydra's console handler on the root holds the real stdout
    root.addHandler(handler)
    try:
        p = console.JobProgress("model=resnet", 1, 2, 2, 3, "val_auc", True, live=term)
        logger.warning("a log line while the display is live")
        _events(p)
        p.close()
    finally:
        root.removeHandler(handler)
    out = screen.getvalue()
    assert "\x1b[" in out  # cursor control: the lines are redrawn, not appended
    final = out.split("\x1b[2K")[-1]  # the last frame drawn
    assert "a log line while the display is live" in out  # printed above the live lines, not lost
    for text in ("job 1/2 model=resnet", "trial 2/2", "best val_auc so far 0.700", "ETA", "FINISHED in",
                 "FAILED in"):
        assert text in out, text
    assert re.search(r"job 1/2 model=resnet .* 2 trial\(s\) in \d:\d\d:\d\d · best val_auc 0.700", final)
    assert re.search(r"trial 1/2 .* FINISHED in .*\n.*trial 2/2 .* FAILED in", final)  # finished trials stay


def test_live_only_for_a_person_at_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a log file: no live lines
    assert console.live_console() is None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv(console.SWEEP_PID_ENV, str(os.getpid()))
    assert console.live_console() is not None
    monkeypatch.setenv(console.SWEEP_PID_ENV, str(os.getpid() + 1))  # a parallel launcher's worker
    assert console.live_console() is None


@pytest.mark.parametrize("params, overrides, jobs", [
    ({"model": "cnn,resnet", "optimizer": "rmsprop,adam"}, [], 4),
    ({"model": "cnn,resnet"}, ["model=transfer", "tuner.max_trials=1"], 1),  # the command line wins
    (None, ["seed=1,2,3", "trainer.epochs=range(1,3)"], 6),
    (None, [], 1),
])
def test_count_jobs_as_the_basic_sweeper_expands_them(params, overrides, jobs):
    assert console.count_jobs(params, overrides) == jobs


@pytest.mark.slow
@pytest.mark.ci
def test_smoke_sweep_console_has_progress_lines_and_no_library_chatter(smoke_store):
    """`pneumo sweep smoke` as a newcomer runs it (TF_CPP_MIN_LOG_LEVEL unset), stdout and stderr together."""
    text = (smoke_store / SWEEP_OUTPUT).read_text()
    assert not CHATTER.findall(text), [line for line in text.splitlines() if CHATTER.search(line)]
    for job, model in ((1, "cnn"), (2, "resnet")):
        for trial in (1, 2):
            assert re.search(rf"job {job}/2 model={model} · trial {trial}/2 · epoch 2/2 · val_auc [\d.]+ · "
                             rf"best val_auc so far [\d.]+ · ETA \d:\d\d:\d\d", text), (job, trial)
            assert f"job {job}/2 model={model} · trial {trial}/2 FINISHED in" in text
    assert "Open the runs in the MLflow UI" in text  # the sweep's own summary still prints


@pytest.mark.slow
def test_the_chatter_filter_is_what_keeps_it_out():
    """Check of the check: the same import with trainer.verbose (no filtering) does print TensorFlow's lines."""
    import importlib.util

    from helpers import require

    # The chatter is TensorFlow's (the test runs it under TensorFlow whatever KERAS_BACKEND says).
    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow is not installed")
    code = "from pneumo.runtime import quiet; quiet.libraries({}); import keras; keras.ops.ones(1)"
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "KERAS_BACKEND": "tensorflow"}
    quiet, loud = (subprocess.run([sys.executable, "-c", code.format(v)], env=env, capture_output=True, text=True,
                                  timeout=300) for v in (0, 1))
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert CHATTER.search(loud.stderr), loud.stderr  # verbose: TensorFlow's own lines reach the console
    assert not CHATTER.search(quiet.stdout + quiet.stderr), quiet.stderr


@pytest.mark.parametrize("mode, shown", [("RUN", (3, 1)), ("MULTIRUN", (3, 5))])
def test_a_job_takes_its_number_from_hydra_and_its_sweeps_size_only_in_a_multirun(monkeypatch, mode, shown):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from pneumo.config import paths, schema

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    cfg.hydra.mode, cfg.hydra.job.num = RunMode[mode], 2
    monkeypatch.setenv(console.JOBS_ENV, "5")
    HydraConfig.instance().set_config(cfg)
    try:
        assert console._hydra_job() == shown
    finally:
        HydraConfig.instance().cfg = None
