"""The logged MLflow model, as code (MLflow "models from code"): nothing is unpickled.

Input: a DataFrame with a column `image` holding encoded image files (JPEG/PNG
bytes, or base64 text as sent over MLflow's REST server), any size, gray or
RGB. Output: `probability` of pneumonia, `label` at the job's validation-chosen
threshold, and `error` (empty, or why that row's image could not be used).
Preprocessing is pneumo.data.imaging.decode: the very function that fed training.
"""

from __future__ import annotations

import base64
import binascii
import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from pneumo.data.base import CLASSES
from pneumo.data.imaging import ImageError, decode



class PneumoniaModel(PythonModel):
    def load_context(self, context):
        import keras

        import pneumo.model.layers  # noqa: F401 -- registers pneumo's in-model layers (Augment: identity here; Standardize)

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False, safe_mode=True)
        with open(context.artifacts["meta"]) as f:
            meta = json.load(f)
        self.image_size = int(meta["image_size"])
        self.threshold = float(meta["threshold"])

    # The signature is given explicitly at logging (binary image in, probability/label/error out).
    # A DataFrame hint is one MLflow infers no schema from: it validates nothing more and no longer
    # warns, at every class definition, that hints are missing (a warnings filter cannot stop that
    # warning: MLflow resets the filters to "once" around it).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"image": list(model_input)})
        images, rows, errors = [], [], [""] * len(frame)
        for i, value in enumerate(frame["image"]):
            try:
                images.append(decode(_as_bytes(value), self.image_size))
                rows.append(i)
            except ImageError as e:
                errors[i] = str(e)
        prob = np.full(len(frame), np.nan)
        if images:
            batch = np.stack(images)[..., None]
            prob[rows] = self.model.predict(batch, verbose=0).reshape(-1)
        label = np.where(np.isnan(prob), "", np.where(prob >= self.threshold, CLASSES[1], CLASSES[0]))
        return pd.DataFrame({"probability": prob, "label": label, "error": errors})


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("not base64-encoded image bytes") from None
    raise ImageError(f"unsupported input type {type(value).__name__}")


mlflow.models.set_model(PneumoniaModel())
