"""The registered model's package: the Keras model as an MLflow pyfunc (models from code), with
its preprocessing size, threshold and pinned requirements; no pickle.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path


def log_model(model, image_size: int, threshold: float):
    """The Keras model as an MLflow pyfunc on the active run: models-from-code (pneumo/release/serving.py)
    plus a safe-mode .keras file and its preprocessing size and threshold; no pickle."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from pneumo.config import paths

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label"), ColSpec("string", "error")]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.keras")
        (tmp / "meta.json").write_text(json.dumps({"image_size": image_size, "threshold": threshold}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint and input-example advice
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(paths.ROOT / "pneumo" / "release" / "serving.py"),
                artifacts={"keras_model": str(tmp / "model.keras"), "meta": str(tmp / "meta.json")},
                code_paths=[str(paths.ROOT / "pneumo")],
                signature=signature,
                pip_requirements=requirements(),
            )


def requirements() -> list[str]:
    """What serving the model needs, pinned to this process's versions, the Keras backend it
    was trained on included (a model from a JAX job gets jax + jaxlib, not tensorflow)."""
    from importlib.metadata import version

    import keras

    from pneumo.runtime import backend

    pkgs = {p: version(p) for p in ("mlflow", "keras", "numpy", "pandas", "pillow")}
    pkgs.update(backend.packages(keras.backend.backend()))
    return [f"{p}=={v}" for p, v in pkgs.items()]
