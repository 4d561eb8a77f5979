"""Validation under simulated shift (issue 20): `val_auc_shifted` is the worst validation AUC over fixed
re-renderings whose sizes come from the training films, and a job can select, stop and schedule on it."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pneumo.evaluation import renderings
from pneumo.record import names
from pneumo.search import shifted
from pneumo.search.fit import keras_callbacks

from helpers import TOY, client_for, run_pneumo


def films(n: int, brightness, seed: int = 0) -> np.ndarray:
    """n uint8 16x16 films whose median intensity is drawn from `brightness` (a (low, high) range)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(*brightness, size=(n, 1, 1))
    return (np.clip(level + rng.normal(0, 0.08, size=(n, 16, 16)), 0, 1) * 255).round().astype(np.uint8)


def test_the_sizes_come_from_the_training_films_spread():
    narrow, wide = renderings.ranges(films(200, (0.45, 0.55))), renderings.ranges(films(200, (0.2, 0.8)))
    for sizes in (narrow, wide):
        darker, brighter = sizes["gamma"]
        assert darker > 1 > brighter  # a gamma above 1 darkens a film in [0, 1]
    assert wide["gamma"][0] > narrow["gamma"][0] and wide["gamma"][1] < narrow["gamma"][1]
    # the same films, the same sizes: fixed, not drawn anew
    assert renderings.ranges(films(200, (0.2, 0.8))) == wide


def test_each_rendering_is_the_films_changed_as_named():
    x = films(20, (0.3, 0.7))[..., None]  # (n, h, w, 1), as the loader gives them
    sizes = {"gamma": (1.5, 0.7), "contrast": (0.8, 1.5)}
    out = renderings.renderings(x, sizes)
    assert list(out)[0] == "as acquired" and np.array_equal(out["as acquired"], x)
    assert len(out) == 7 and all(v.shape == x.shape and v.dtype == np.uint8 for v in out.values())
    assert out["gamma 1.50"].mean() < x.mean() < out["gamma 0.70"].mean()
    assert out["window x1.50"].std() > x.std() > out["window x0.80"].std()
    assert out["blur 1 px"].std() < x.std() < out["sharpened"].std()  # the noise smoothed / enhanced


def test_the_worst_auc_is_the_lowest_over_the_renderings():
    y = np.array([0, 0, 0, 1, 1, 1])
    sets = {"as acquired": np.array([0, 1, 2, 3, 4, 5]), "swapped": np.array([0, 1, 4, 3, 2, 5])}
    worst, each = renderings.worst_auc(lambda x: x, sets, y)
    assert each == {"as acquired": 1.0, "swapped": pytest.approx(7 / 9)} and worst == pytest.approx(7 / 9)
    assert np.isnan(renderings.worst_auc(lambda x: x, sets, np.zeros(6))[0])  # one class: no AUC


def test_the_callback_writes_before_the_callbacks_that_read_it():
    trainer = {"early_stopping": {"monitor": names.VAL_AUC_SHIFTED, "patience": 1, "start_from_epoch": 0},
               "reduce_lr": {"monitor": names.VAL_AUC_SHIFTED, "factor": 0.5, "patience": 1, "min_lr": 1e-6},
               "chance_z": None, "batch_size": 8}
    assert shifted.wanted(trainer, names.VAL_AUC) and not shifted.wanted({}, names.VAL_AUC)
    x, y = films(32, (0.3, 0.7)), np.arange(32) % 2
    x[y == 1] //= 2  # the sick films darker: learnable
    cb = keras_callbacks(trainer, y, shifted.ShiftedValidation(renderings.Renderings.of(x, x), y, 16))
    assert isinstance(cb[0], shifted.ShiftedValidation)
    inputs = keras.Input((16, 16))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(inputs / 255.0)))
    model.compile("adam", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    history = model.fit(x, y, validation_data=(x, y), epochs=3, batch_size=8, verbose=0, callbacks=cb)
    # Keras' EarlyStopping and ReduceLROnPlateau found it (with no direction given they raise on a metric
    # that is not compiled) and the history has it every epoch
    shifted_aucs = history.history[names.VAL_AUC_SHIFTED]
    assert len(shifted_aucs) == len(history.history["val_auc"]) and all(0 <= a <= 1 for a in shifted_aucs)


@pytest.mark.slow
def test_a_job_selects_and_stops_on_the_shifted_auc(tmp_path):
    # a multirun: its end-of-sweep table ranks the jobs by the objective (it once raised KeyError there)
    proc = run_pneumo(["train", "-m", *TOY, "experiment=shifted", f"tuner.objective={names.VAL_AUC_SHIFTED}",
                "tuner.max_trials=2", "trainer.epochs=2",
                f"trainer.early_stopping.monitor={names.VAL_AUC_SHIFTED}", "trainer.early_stopping.start_from_epoch=0"],
               tmp_path)
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name("shifted")
    (job,) = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_JOB}'")
    trials = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = '{names.ROLE_TRIAL}'")
    assert job.info.status == "FINISHED" and len(trials) == 2
    best = {t.info.run_id: max(m.value for m in client.get_metric_history(t.info.run_id, names.VAL_AUC_SHIFTED))
            for t in trials}
    # every epoch of every trial has it, and the job's objective is the best trial's best epoch
    assert all(len(client.get_metric_history(t.info.run_id, names.VAL_AUC_SHIFTED)) >= 1 for t in trials)
    assert job.data.metrics[names.VAL_AUC_SHIFTED] == pytest.approx(max(best.values()))
    assert names.VAL_AUC_SHIFTED in proc.stdout + proc.stderr  # the table's ranking column
