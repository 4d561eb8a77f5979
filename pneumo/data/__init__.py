"""Data: sources, the patient-aware file index, leak-free splits and the decode cache.

    from pneumo.data import load
    splits = load(cfg.data, image_size=128)  # Splits(train, val, test, digest, ...)

Imports no Keras, TensorFlow or MLflow: `pneumo data ...` must start fast.
"""

from pneumo.data.base import CLASSES, DataError, Splits, Subset
from pneumo.data.loader import load

__all__ = ["CLASSES", "DataError", "Splits", "Subset", "load"]
