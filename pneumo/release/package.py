"""The registered model's package: the Keras model as an MLflow pyfunc (models from code), with
its preprocessing size, threshold and pinned requirements; no pickle. With pneumo/release/serving.py,
the only modules outside pneumo.record that import MLflow: its pyfunc flavour, to log and load models.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pneumo.config import paths
from pneumo.record import names
from pneumo.record import store as stores
from pneumo.record.entities import RecordError
from pneumo.record.versions import in_store


def log_model(model, image_size: int, threshold: float, *, band=None, guard=None) -> str:
    """The Keras model as an MLflow pyfunc on the active run (the job's: pneumo.record.jobs.opened), its
    URI: models-from-code (pneumo/release/serving.py) plus a safe-mode .keras file and its preprocessing
    size and threshold; no pickle. `band`: the referral band (evaluation.refer); `guard`: the
    out-of-distribution statistics (pneumo.evaluation.ood)."""
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", names.IMAGE_COLUMN)]),
        outputs=Schema([ColSpec("double", names.PROBABILITY_COLUMN), ColSpec("string", names.LABEL_COLUMN),
                        ColSpec("string", names.ERROR_COLUMN), ColSpec("double", names.OOD_COLUMN),
                        ColSpec("boolean", names.OOD_FLAG_COLUMN)]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.keras")
        meta = {"image_size": image_size, names.THRESHOLD: threshold, "refer": list(band) if band is not None else None}
        (tmp / "meta.json").write_text(json.dumps(meta))
        artifacts = {"keras_model": str(tmp / "model.keras"), "meta": str(tmp / "meta.json")}
        if guard is not None:
            guard.save(tmp / "ood.npz")
            artifacts[names.OOD_ARTIFACT] = str(tmp / "ood.npz")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # type-hint and input-example advice
            return mlflow.pyfunc.log_model(
                name=names.MODEL_ARTIFACT,
                python_model=str(paths.ROOT / "pneumo" / "release" / "serving.py"),
                artifacts=artifacts,
                code_paths=[str(paths.ROOT / "pneumo")],
                signature=signature,
                pip_requirements=requirements(),
            ).model_uri


def load_model(uri: str, store=None):
    """The pyfunc model at `uri` (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH, or a path),
    loaded from a private copy. Loading a models:/ URI in place makes MLflow write a
    registered_model_meta file into the version's folder in the store, and a command that reads must
    not change the store; a moved store's versions are found under its current folder (`store`, a
    pneumo.record Store: where the URI's files are). RecordError when MLflow cannot load it."""
    source = uri
    if in_store(uri):
        source = (store or stores.connect()).model_source(uri)
    copy = tempfile.mkdtemp(prefix="pneumo-model-")
    try:
        model = mlflow.pyfunc.load_model(source, dst_path=copy)
    except MlflowException as e:
        shutil.rmtree(copy, ignore_errors=True)
        raise RecordError(e.message) from e
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, copy, True)  # the copy lives as long as the model (or the process)
    return model


def requirements() -> list[str]:
    """What serving the model needs, pinned to this process's versions, the Keras backend it
    was trained on included (a model from a JAX job gets jax + jaxlib, not tensorflow)."""
    from importlib.metadata import version

    import keras

    from pneumo.runtime import backend

    pkgs = {p: version(p) for p in ("mlflow", "keras", "numpy", "pandas", "pillow")}
    pkgs.update(backend.packages(keras.backend.backend()))
    return [f"{p}=={v}" for p, v in pkgs.items()]
