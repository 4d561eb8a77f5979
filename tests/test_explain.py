"""Occlusion heatmaps find what a model looks at, on every architecture; the pictures say what they claim.

Fast: untrained or hand-built Keras models on 32 px arrays, no store. The jobs that log these
pictures for each model family are in tests/test_review.py.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pneumo.data.base import Subset
from pneumo.evaluation import explain

SIZE = 32


def quadrant_model(sign: float = 1.0):
    """P(pneumonia) = sigmoid(sign * (10 x mean brightness of the top-left 8x8 corner - 9)): nothing else counts."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Cropping2D(((0, SIZE - 8), (0, SIZE - 8)))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, out)
    model.layers[-1].set_weights([np.array([[10.0 * sign]]), np.array([-9.0 * sign])])  # p = 0.5 at the corner's 230
    return model


def films(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(60, 120, (n, SIZE, SIZE, 1)).astype(np.uint8)
    x[:, :8, :8] = 230  # a bright corner: the quadrant model calls it pneumonia
    return x


def test_heat_is_where_the_model_looks_and_signed_by_what_hiding_does():
    x = films(3)
    for sign in (1.0, -1.0):
        heat, p = explain.occlusion(quadrant_model(sign), x)
        assert heat.shape == (3, SIZE, SIZE) and p.shape == (3,)
        corner, rest = heat[:, :8, :8], heat[:, 12:, 12:]
        assert np.abs(rest).max() < 1e-5  # hiding what the model never reads changes nothing
        # Hiding the bright corner lowers P(pneumonia) when brightness there raises it, and the reverse.
        assert np.all(np.sign(corner.mean(axis=(1, 2))) == sign)
        assert np.abs(corner).mean() > 0.05


@pytest.mark.parametrize("family", ["cnn", "resnet", pytest.param("transfer", marks=pytest.mark.slow)])
def test_occlusion_runs_on_every_family_and_on_an_ensemble(family):
    import keras_tuner
    from hydra import compose, initialize_config_dir

    from pneumo.config import paths, schema
    from pneumo.model.builders import HyperModel, ensemble

    schema.register()
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"model={family}", "trainer.standardize=true"])
    hm = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, SIZE, standardize=True)
    one = hm.build(keras_tuner.HyperParameters())
    models = {"single": one, "ensemble": ensemble([one, hm.build(keras_tuner.HyperParameters())])}
    x = films(2, seed=1)
    for name, model in models.items():
        heat, p = explain.occlusion(model, x)
        assert heat.shape == (2, SIZE, SIZE) and np.isfinite(heat).all(), name
        assert p == pytest.approx(model.predict(x, verbose=0).reshape(-1), abs=1e-5), name


def test_patches_cover_every_pixel_at_any_input_size():
    for size in (16, 32, 33, 64, 100, 128):
        patch, starts = explain._positions(size)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + patch] = True
        assert covered.all() and len(starts) >= 2 * explain.PATCH - 2, size  # 15 x 15 when 8 divides the side


def _subset(y, seed=0) -> Subset:
    n = len(y)
    return Subset(x=films(n, seed), y=np.asarray(y), patients=np.array([f"person{i // 2}" for i in range(n)]),
                  hashes=np.array([f"{(i * 7919) % 97:04d}" for i in range(n)]),
                  paths=np.array([f"test/{'PNEUMONIA' if t else 'NORMAL'}/f{i}.jpeg" for i, t in enumerate(y)]))


def test_error_gallery_lists_every_error_most_confident_first(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.53, 0.15, 0.8, 0.45, 0.7, 0.6])
    test, threshold = _subset(y), 0.5
    explain.write_pictures(tmp_path, quadrant_model(), test, p, threshold, per_outcome=0, gallery=2)
    rows = list(csv.DictReader(open(tmp_path / "errors.csv")))
    # wrong: 0 (FP 0.9), 2 (FP 0.53), 3 (FN 0.15), 5 (FN 0.45), 7 (FP 0.6); by |p - threshold|
    assert [r["path"] for r in rows] == [test.paths[i] for i in (0, 3, 7, 5, 2)]
    assert [r["outcome"] for r in rows] == ["FP", "FN", "FP", "FN", "FP"]
    assert rows[0]["patient"] == "person0" and float(rows[0]["threshold"]) == threshold
    assert (tmp_path / "error_gallery.png").stat().st_size > 5000
    assert not (tmp_path / "heatmaps.png").exists()  # per_outcome=0: no heatmap grid


def test_heatmap_grid_shows_each_outcome_from_a_fixed_sample(tmp_path):
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.1, 0.1, 0.8, 0.45, 0.7, 0.6, 0.95, 0.3])
    test = _subset(y)
    explain.write_pictures(tmp_path, quadrant_model(), test, p, 0.5, per_outcome=2, gallery=24)
    shown = json.loads((tmp_path / "heatmaps.json").read_text())["films"]
    by = {}
    for f in shown:
        by.setdefault(f["outcome"], []).append(f["path"])
    assert sorted(by) == ["FN", "FP", "TN", "TP"] and all(len(v) == 2 for v in by.values())
    for f in shown:  # each film sits in the column of what happened to it
        i = list(test.paths).index(f["path"])
        assert explain.outcome(y[i], p[i], 0.5) == f["outcome"] and f["probability"] == pytest.approx(p[i])
    # Fixed: chosen by file hash, so a different model's probabilities do not reshuffle an outcome's films.
    again = explain.sample(y, p * 0.99 + 0.001, 0.5, test.hashes, 2)
    assert again == explain.sample(y, p, 0.5, test.hashes, 2)
    assert (tmp_path / "heatmaps.png").stat().st_size > 5000
