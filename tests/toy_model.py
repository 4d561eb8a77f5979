"""A served model in seconds, for the fast tests of the release code: a two-weight Keras model packaged
the way package.log_model packages a job's model (serving.py as models-from-code, its .keras file, meta.json,
the guard's .npz), saved to a folder and loaded back by MLflow's own pyfunc loader. No store, no training.

Its P(pneumonia) of a film is sigmoid(8 * mean brightness - 4) and its embedding is the mean brightness,
so a test computes what it must answer (`p_of`) for the flat gray films `gray_png` writes.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

SIDE = 16  # the toy model's input size (px)


def gray_png(level: int, side: int = 24) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), level).save(buf, "PNG")
    return buf.getvalue()


def p_of(level: int) -> float:
    """The toy model's P(pneumonia) for a flat film of this gray level."""
    return 1 / (1 + math.exp(-(8 * level / 255 - 4)))


def keras_model(width: int = 1):
    """uint8 films (SIDE, SIDE, 1) in, P(pneumonia) out; its head is the Dense `pneumonia` every pneumo model ends in.
    width=2 makes the embedding (mean brightness b, 1 - b), as wide as a real model's is never 1."""
    import keras

    x = keras.Input((SIDE, SIDE, 1), dtype="uint8")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(x))
    if width == 2:
        h = keras.layers.Concatenate()([h, keras.layers.Rescaling(-1.0, offset=1.0)(h)])
    head = keras.layers.Dense(1, activation="sigmoid", name="pneumonia")
    model = keras.Model(x, head(h))
    head.set_weights([np.array([[8.0]] + [[0.0]] * (width - 1)), np.array([-4.0])])
    return model


def artifacts(folder: Path, *, threshold: float = 0.5, refer=None, guard=None, width: int = 1) -> dict[str, str]:
    """The toy model's artifacts in folder, named as package.log_model names them."""
    from pneumo.record import names

    folder.mkdir(parents=True, exist_ok=True)
    keras_model(width).save(folder / "model.keras")
    (folder / "meta.json").write_text(json.dumps({"image_size": SIDE, "threshold": threshold,
                                                  "refer": list(refer) if refer else None}))
    out = {"keras_model": str(folder / "model.keras"), "meta": str(folder / "meta.json")}
    if guard is not None:
        guard.save(folder / "ood.npz")
        out[names.OOD_ARTIFACT] = str(folder / "ood.npz")
    return out


def pyfunc(folder: Path, **kwargs):
    """The toy model saved as an MLflow pyfunc in folder/model and loaded back (mlflow.pyfunc.load_model)."""
    import mlflow

    from pneumo.config import paths
    from pneumo.release import package

    # the requirements a registered model names (inferring them instead runs the model in a subprocess: 6 s a call)
    mlflow.pyfunc.save_model(str(folder / "model"), python_model=str(paths.ROOT / "pneumo" / "release" / "serving.py"),
                             artifacts=artifacts(folder / "artifacts", **kwargs), pip_requirements=package.requirements())
    return mlflow.pyfunc.load_model(str(folder / "model"))


def splits(root, n_train=12, n_val=10, n_test=6, test_levels=(200, 240)):
    """(the toy model, Splits of noisy flat films for it): validation drawn like training, test brighter, labels
    PNEUMONIA above gray level 128; no file on disk under `root` (a job then measures each film from its
    decoded square)."""
    from pneumo.data.base import Splits, Subset

    rng = np.random.default_rng(0)

    def subset(n, low, high):
        levels = rng.integers(low, high, n)
        x = (levels[:, None, None, None] + rng.integers(0, 9, (n, SIDE, SIDE, 1))).astype(np.uint8)
        return Subset(x, (levels > 128).astype(np.int64), np.array([f"p{i}" for i in range(n)]),
                      np.array([f"h{i}" for i in range(n)]), np.array([f"gone/{low}-{i}.png" for i in range(n)]))

    return keras_model(), Splits(subset(n_train, 60, 200), subset(n_val, 60, 200), subset(n_test, *test_levels),
                                 "d", "t", SIDE, str(root), (), str(Path(root) / "no-test-folder"))
