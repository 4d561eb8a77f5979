"""The logged MLflow model, as code (MLflow "models from code"): nothing is unpickled.

Input: a DataFrame with a column `image` holding encoded image files (JPEG/PNG
bytes, or base64 text as sent over MLflow's REST server), any size, gray or
RGB. Output: `probability` of pneumonia, `label` at the job's validation-chosen
threshold, `error` (empty, or why that row's image could not be used), and the
out-of-distribution guard's `ood` score and `ood_flag` (empty for a version
registered without its statistics). A flagged film's label reads OUT_OF_DISTRIBUTION
and one inside the referral band (evaluation.refer) REFER; the probability stays.
Preprocessing is pneumo.data.imaging.decode: the very function that fed training.
A request past pneumo.release.limits (rows, image bytes, pixels the headers declare) is refused
whole before anything is decoded: MlflowException(INVALID_PARAMETER_VALUE), which MLflow's scoring
server answers 400.
"""

from __future__ import annotations

import base64
import binascii
import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from pneumo.data.base import CLASSES
from pneumo.data.imaging import ImageError, decode
from pneumo.record import names
from pneumo.release import limits


class PneumoniaModel(PythonModel):
    limits = limits.SERVED  # what one request may hold; pneumo predict/evaluate/shift widen it to their --max-file-mb

    def load_context(self, context):
        import keras

        import pneumo.model.layers
        import pneumo.model.preprocess  # noqa: F401 -- and the levers' (Clahe; View: test-time augmentation)

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False, safe_mode=True)
        with open(context.artifacts["meta"]) as f:
            meta = json.load(f)
        self.image_size = int(meta["image_size"])
        self.threshold = float(meta[names.THRESHOLD])
        self.band = tuple(meta["refer"]) if meta.get("refer") else None
        self.guard, self.embed = None, None
        if names.OOD_ARTIFACT in context.artifacts:  # versions registered before the guard have none
            from pneumo.evaluation.ood import Guard
            from pneumo.model.embedding import embedder

            self.guard = Guard.load(context.artifacts[names.OOD_ARTIFACT])
            self.embed = embedder(self.model)

    def measure(self, blobs: list[bytes]) -> dict:
        """Everything the model sees of encoded files: probability, embedding and image features per
        readable file (arrays over `rows`), and the reason each other file failed."""
        from pneumo.evaluation import imagestats

        images, rows, feats, errors = [], [], [], [""] * len(blobs)
        for i, value in enumerate(blobs):
            try:
                data = _as_bytes(value)
                image = decode(data, self.image_size)
                feats.append(imagestats.features(data) if self.guard is not None else None)
                images.append(image)
                rows.append(i)
            except ImageError as e:
                errors[i] = str(e)
        out = {"rows": np.array(rows, int), "errors": errors, "prob": np.zeros(0), "emb": None, "feats": None}
        if images:
            batch = np.stack(images)[..., None]
            if self.embed is not None:
                prob, emb = self.embed.predict(batch, verbose=0)
                out["emb"], out["feats"] = np.asarray(emb, float).reshape(len(batch), -1), np.stack(feats)
            else:
                prob = self.model.predict(batch, verbose=0)
            out["prob"] = np.asarray(prob, float).reshape(-1)
        return out

    # The signature is given explicitly at logging (binary image in, probability/label/error/ood out).
    # A DataFrame hint is one MLflow infers no schema from: it validates nothing more and no longer
    # warns, at every class definition, that hints are missing (a warnings filter cannot stop that
    # warning: MLflow resets the filters to "once" around it).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        frame = (model_input if isinstance(model_input, pd.DataFrame)
                 else pd.DataFrame({names.IMAGE_COLUMN: list(model_input)}))
        blobs = [_bytes_or_reason(value) for value in frame[names.IMAGE_COLUMN]]
        try:
            limits.check(blobs, self.limits)
        except limits.TooLarge as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        m = self.measure(blobs)
        prob, rows = np.full(len(frame), np.nan), m["rows"]
        ood, flag = np.full(len(frame), np.nan), np.full(len(frame), None, dtype=object)
        if len(rows):
            prob[rows] = m["prob"]
            if self.guard is not None:
                score, flagged = self.guard.score(m["feats"], m["emb"])
                ood[rows] = score
                flag[rows] = [bool(f) for f in flagged]
        label = np.where(np.isnan(prob), "", np.where(prob >= self.threshold, CLASSES[1], CLASSES[0])).astype(object)
        if self.band is not None:
            label[(prob > self.band[0]) & (prob < self.band[1])] = names.LABEL_REFER
        label[flag == True] = names.LABEL_OOD  # noqa: E712 -- elementwise over an object array
        return pd.DataFrame({names.PROBABILITY_COLUMN: prob, names.LABEL_COLUMN: label, names.ERROR_COLUMN: m["errors"],
                             names.OOD_COLUMN: ood, names.OOD_FLAG_COLUMN: flag})


def _bytes_or_reason(value):
    """A row's image bytes, or the ImageError saying why the row holds none."""
    try:
        return _as_bytes(value)
    except ImageError as e:
        return e


def _as_bytes(value) -> bytes:
    if isinstance(value, ImageError):
        raise value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("not base64-encoded image bytes") from None
    raise ImageError(f"unsupported input type {type(value).__name__}")


mlflow.models.set_model(PneumoniaModel())
