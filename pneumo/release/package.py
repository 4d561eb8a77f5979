"""The registered model's package: the Keras model as an MLflow pyfunc (models from code), with
its preprocessing size, threshold and pinned requirements; no pickle.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path


def log_model(model, image_size: int, threshold: float, *, band=None, guard=None):
    """The Keras model as an MLflow pyfunc on the active run: models-from-code (pneumo/release/serving.py)
    plus a safe-mode .keras file and its preprocessing size and threshold; no pickle. `band`: the
    referral band (evaluation.refer); `guard`: the out-of-distribution statistics (pneumo.evaluation.ood)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from pneumo.config import paths
    from pneumo.record import names

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec("double", "probability"), ColSpec("string", "label"), ColSpec("string", "error"),
                        ColSpec("double", names.OOD_COLUMN), ColSpec("boolean", names.OOD_FLAG_COLUMN)]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.keras")
        meta = {"image_size": image_size, "threshold": threshold, "refer": list(band) if band is not None else None}
        (tmp / "meta.json").write_text(json.dumps(meta))
        artifacts = {"keras_model": str(tmp / "model.keras"), "meta": str(tmp / "meta.json")}
        if guard is not None:
            guard.save(tmp / "ood.npz")
            artifacts[names.OOD_ARTIFACT] = str(tmp / "ood.npz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint and input-example advice
            return mlflow.pyfunc.log_model(
                name="model",
                python_model=str(paths.ROOT / "pneumo" / "release" / "serving.py"),
                artifacts=artifacts,
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
