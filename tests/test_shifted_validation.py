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


def _by_definition(x_train):
    """The sizes as the module's docstring defines them, computed here from all of x_train."""
    f = x_train.reshape(len(x_train), -1) / 255.0
    medians, spreads = np.median(f, axis=1), f.std(axis=1)
    clip = lambda v: min(max(v, 0.02), 0.98)  # noqa: E731
    mid = clip(np.median(medians))
    return {"gamma": tuple(np.log(clip(q)) / np.log(mid) for q in np.quantile(medians, [0.05, 0.95])),
            "contrast": tuple(np.quantile(spreads, [0.05, 0.95]) / np.median(spreads))}


@pytest.mark.parametrize("brightness", [(0.2, 0.8), (0.0, 0.3), (0.75, 1.0)])  # the last two reach the 0.02/0.98 clip
def test_the_sizes_are_the_gammas_and_contrast_ratios_of_the_definition(brightness):
    x = films(300, brightness, seed=3)
    got, want = renderings.ranges(x), _by_definition(x)
    for key in ("gamma", "contrast"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5)
    if brightness == (0.75, 1.0):
        assert got["gamma"][1] == pytest.approx(np.log(0.98) / np.log(_clipped_mid(x)), rel=1e-5)


def _clipped_mid(x):
    return min(max(float(np.median(np.median(x.reshape(len(x), -1) / 255.0, axis=1))), 0.02), 0.98)


def test_past_the_sample_the_sizes_come_from_a_fixed_sample_drawn_without_replacement():
    x = films(renderings.SAMPLE + 500, (0.1, 0.9), seed=4)[:, :4, :4]
    pick = np.sort(np.random.default_rng(0).choice(len(x), renderings.SAMPLE, replace=False))
    assert renderings.ranges(x) == renderings.ranges(x[pick]) == renderings.ranges(x, seed=0)
    assert renderings.ranges(x, seed=1) != renderings.ranges(x)


def test_each_rendering_is_its_formula_on_each_film_alone():
    """Two films of different means: the window scales each about its own mean; the blur stays inside a film."""
    from scipy.ndimage import gaussian_filter

    x = np.stack([films(1, (0.2, 0.2), seed=5)[0], films(1, (0.7, 0.7), seed=6)[0]])[..., None]
    out = renderings.renderings(x, {"gamma": (2.0, 0.5), "contrast": (3.0, 0.5)})
    f = x.astype(np.float32) / np.float32(255.0)
    u8 = lambda v: np.rint(v * 255.0).astype(np.uint8)  # noqa: E731
    mean = f.mean(axis=(1, 2, 3), keepdims=True)
    blur = np.stack([gaussian_filter(film[..., 0], 1.0)[..., None] for film in f])
    want = {"as acquired": x, "gamma 2.00": u8(f**2), "gamma 0.50": u8(f**0.5),
            "window x3.00": u8(np.clip(mean + (f - mean) * 3, 0, 1)), "window x0.50": u8(mean + (f - mean) * 0.5),
            "blur 1 px": u8(blur), "sharpened": u8(np.clip(2 * f - blur, 0, 1))}
    assert list(out) == list(want)
    for name, films_ in want.items():
        assert out[name].dtype == np.uint8
        np.testing.assert_array_equal(out[name], films_, err_msg=name)
    assert out["window x3.00"].min() == 0 and out["window x3.00"].max() == 255  # clipped to the detector's range
    assert np.abs(out["sharpened"].astype(int) - x).max() > 1 and out["sharpened"].max() <= 255


def test_the_renderings_of_a_split_are_fixed_and_their_worst_auc_is_the_lowest():
    x_val, x_train = films(12, (0.2, 0.8), seed=7)[..., None], films(50, (0.2, 0.8), seed=8)
    fixed = renderings.Renderings.of(x_val, x_train)
    assert [k for k, _ in fixed.films] == list(renderings.renderings(x_val, renderings.ranges(x_train)))
    y = (np.arange(12) % 2).astype(int)
    brightness = lambda v: v.reshape(len(v), -1).mean(axis=1)  # noqa: E731
    worst, each = renderings.worst_auc(brightness, dict(fixed.films), y)
    assert fixed.worst_auc(brightness, y) == worst == min(each.values()) and len(each) == 7
    assert renderings.worst_auc(brightness, dict(fixed.films), np.array([1] * 12)) == (pytest.approx(np.nan, nan_ok=True), {})


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
