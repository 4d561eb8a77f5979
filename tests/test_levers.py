"""The screen's levers (conf/lever/): each reaches what it changes, and adding them kept every old job's identity."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pneumo.config import checks, keys, paths, schema
from pneumo.model import builders
from pneumo.model.preprocess import Clahe, View
from pneumo.record import params
from pneumo.search.schedules import WarmupCosine

schema.register()


def screen(*overrides):
    with initialize_config_dir(config_dir=str(paths.SWEEPS_DIR), version_base="1.3"):
        return compose("kermany-screen", overrides=[*overrides, "data.root=/tmp/x",
                                                    f"hydra.searchpath=[{paths.CONF_DIR.as_uri()}]"])


def films(n=4, size=32, lo=0.3, hi=0.6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, (n, size, size, 1)).astype("float32")


def test_old_jobs_keep_their_identity():
    """The keys the levers added are left out of a job's identity at their neutral values: a store made before
    them resumes its jobs (these keys were computed at c9f9a01, before the keys existed)."""
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        for overrides, key in (([], "159e8eba21164543"),
                               (["model=resnet", "optimizer=adam", "augmentation=light"], "f156ea27696b85f5")):
            plain = OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)
            assert params.job_key(plain, "data", "test") == key
            plain["trainer"]["label_smoothing"] = 0.1  # a lever that is on is part of the job
            assert params.job_key(plain, "data", "test") != key


def test_a_configuration_recorded_before_the_levers_is_the_same_configuration():
    """`pneumo compare` groups seeds by the config key; a job logged before the levers' keys existed (its
    params lack them) and one logged after (its params hold them at their neutral values) are one configuration."""
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        now = params.flatten(OmegaConf.to_container(compose("config"), resolve=True))
    before = {k: v for k, v in now.items() if k not in keys.NEUTRAL}
    assert len(before) < len(now)
    assert params.config_key(now, "d", "t") == params.config_key(before, "d", "t")
    assert params.config_key({**now, "trainer.label_smoothing": "0.1"}, "d", "t") != params.config_key(before, "d", "t")


@pytest.mark.parametrize("lever", sorted(p.stem for p in (paths.CONF_DIR / "lever").glob("*.yaml")))
def test_each_lever_changes_the_recipe_and_passes_the_check(lever):
    cfg, base = screen(f"lever={lever}"), screen()
    checks.check(cfg)
    a, b = (OmegaConf.to_container(c, resolve=True) for c in (cfg, base))
    assert (params.job_key(a, "d", "t") == params.job_key(b, "d", "t")) == (lever == "baseline")


def test_clahe_equalises_exposure():
    """A gamma change of the whole film (another machine's tone curve) moves CLAHE's output far less than
    the film itself: equalisation maps a film and any monotone re-rendering of it to about the same levels."""
    x = films()
    layer = Clahe(clip_limit=100.0, tiles=2, bins=64)  # a clip this high: plain adaptive equalisation
    a, b = (keras.ops.convert_to_numpy(layer(v)) for v in (x, x ** 2.0))
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.abs(a - b).mean() < 0.25 * np.abs(x - x ** 2.0).mean()
    assert a.std() > 2 * x.std()  # the narrow range (0.3-0.6) is spread over the levels


def test_clahe_clip_limits_the_contrast_it_adds():
    x = films()
    low, mid, high = (keras.ops.convert_to_numpy(Clahe(clip_limit=c, tiles=2, bins=64)(x)) for c in (0.01, 2.0, 100.0))
    assert low.std() < mid.std() < high.std()
    # a clip near 0 flattens every histogram: the tone curve is the identity ramp over the levels
    assert np.abs(low - (np.floor(x * 64) + 1) / 64).max() < 0.01


def test_a_view_shifts_by_whole_pixels_and_the_identity_is_exact():
    x = (np.arange(16 * 16).reshape(1, 16, 16, 1) % 251).astype("uint8")
    assert np.array_equal(keras.ops.convert_to_numpy(View()(x)), x)
    shifted = keras.ops.convert_to_numpy(View(dx=1 / 16)(x))
    assert np.array_equal(shifted[0, :, 1:, 0], x[0, :, :-1, 0])  # one pixel to the right
    assert np.all(shifted[0, :, 0, 0] == 0)  # in from outside the film: black


def test_tta_averages_its_views_and_survives_save_and_load(tmp_path):
    inputs = keras.Input((16, 16, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="pneumonia")(x))
    wrapped = builders.tta(model, shift=0.0625, zoom=0.0)
    film = (np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 1))).astype("uint8")
    views = [film] + [keras.ops.convert_to_numpy(View(**v)(film)) for v in ({"dy": 0.0625}, {"dy": -0.0625},
                                                                           {"dx": 0.0625}, {"dx": -0.0625})]
    expected = np.mean([model.predict(v, verbose=0) for v in views], axis=0)
    assert np.allclose(wrapped.predict(film, verbose=0), expected, atol=1e-6)
    wrapped.save(tmp_path / "m.keras")
    assert np.allclose(keras.saving.load_model(tmp_path / "m.keras").predict(film, verbose=0), expected, atol=1e-6)


@pytest.mark.parametrize("warmup, start, end, expected", [
    (0, 1.0, 0.0, [1.0, 0.75, 0.25, 0.0]),          # cosine: the peak first, zero at the last epoch
    (2, 0.04, 0.0, [0.04, 0.52, 1.0, 0.0]),         # one cycle: up from 1/25 over two epochs, then down
])
def test_the_learning_rate_schedule(warmup, start, end, expected):
    schedule = WarmupCosine(4, warmup_epochs=warmup, start_factor=start, end_factor=end)
    assert [schedule.factor(e) for e in range(4)] == pytest.approx(expected)


def test_label_smoothing_and_clahe_reach_the_built_model():
    cfg = screen("lever=label-smoothing")
    hm = builders.HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32, clahe={"clip_limit": 2.0, "tiles": 4,
                                                                                      "bins": 64},
                             label_smoothing=cfg.trainer.label_smoothing)
    import keras_tuner

    model = hm.build(keras_tuner.HyperParameters())
    assert model.loss.label_smoothing == pytest.approx(0.1)
    assert any(isinstance(layer, Clahe) for layer in model.layers)


@pytest.mark.parametrize("ema", [True, False])
def test_ema_is_what_the_epochs_end_callbacks_see(ema):
    """With optimizer.use_ema, what validation and the best epoch's weights see at an epoch's end is the
    average, not the weights training goes on from (and without it, the same weights)."""
    import keras_tuner

    cfg = screen("lever=ema" if ema else "lever=baseline")
    hm = builders.HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32, seed=0)
    model = hm.build(keras_tuner.HyperParameters())
    seen = {}

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.setdefault("end", self.model.get_weights())

        def on_train_batch_begin(self, batch, logs=None):
            if "end" in seen and "next" not in seen:
                seen["next"] = self.model.get_weights()

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (32, 32, 32, 1)).astype("uint8"), np.tile([0, 1], 16)
    hm.fit(None, model, x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=0, callbacks=[Watch()])
    same = all(np.array_equal(a, b) for a, b in zip(seen["end"], seen["next"]))
    assert same is (not ema)


def test_a_registered_model_with_the_levers_layers_loads_where_it_is_served(tmp_path):
    """The served model (pneumo.release.serving) loads a .keras file holding CLAHE and the test-time views in
    a fresh interpreter that imported nothing of pneumo's model code: its load_context registers them."""
    import json
    import subprocess
    import sys

    cfg = screen("lever=clahe")
    hm = builders.HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32, clahe=dict(cfg.trainer.clahe))
    import keras_tuner

    model = builders.tta(hm.build(keras_tuner.HyperParameters()), shift=0.04, zoom=0.08)
    model.save(tmp_path / "m.keras")
    (tmp_path / "meta.json").write_text(json.dumps({"image_size": 32, "threshold": 0.5}))
    film = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 1)).astype("uint8")
    np.save(tmp_path / "film.npy", film)
    expected = model.predict(film, verbose=0).reshape(-1)
    code = f"""
import types, numpy as np
from pneumo.release.serving import PneumoniaModel
m = PneumoniaModel()
m.load_context(types.SimpleNamespace(artifacts={{"keras_model": r"{tmp_path / 'm.keras'}",
                                                 "meta": r"{tmp_path / 'meta.json'}"}}))
print(" ".join(str(v) for v in m.model.predict(np.load(r"{tmp_path / 'film.npy'}"), verbose=0).reshape(-1)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.allclose([float(v) for v in out.stdout.split()], expected, atol=1e-5)
